"""Tests for mantis_py.query.syntax.parser: text -> AST, syntax and read-time limit errors (MQL.md §2, §5)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mantis_py.errors import QueryError, QueryLimitError, QuerySyntaxError, error_class_for
from mantis_py.query.syntax import ast, parser
from mantis_py.query.syntax.format import format_query
from mantis_py.query.syntax.parser import parse

FIXTURES = Path(__file__).parent / "fixtures"


def _error_cases() -> list[dict[str, Any]]:
    lines = (FIXTURES / "syntax_errors.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _id(case: dict[str, Any]) -> str:
    q = case["query"]
    return f"{case['code']}:{q[:40]!r}"


ERROR_CASES = _error_cases()


def _raises(text: str) -> QueryError:
    with pytest.raises(QueryError) as info:
        parse(text)
    return info.value


# --------------------------------------------------------------------------- error fixture


@pytest.mark.parametrize("case", ERROR_CASES, ids=[_id(c) for c in ERROR_CASES])
def test_syntax_error_fixture(case: dict[str, Any]) -> None:
    err = _raises(case["query"])
    d = err.to_dict()
    assert d["code"] == case["code"]
    assert isinstance(err, error_class_for(case["code"]))
    assert (d["line"], d["column"], d["length"]) == (case["line"], case["column"], case["length"])
    for key in ("message", "expected", "suggestion", "hint", "snippet"):
        if key in case:
            assert d[key] == case[key], key


def test_fixture_covers_every_read_time_code() -> None:
    codes = {c["code"] for c in ERROR_CASES}
    wanted = {f"E1{n:02d}" for n in range(27)} | {"E301", "E302", "E303", "E304", "E305", "E307"}
    assert wanted <= codes


def test_spec_example_error_object_exactly() -> None:
    expected = {
        "kind": "syntax",
        "code": "E102",
        "message": "expected ',', AS, FROM, WHERE, WINDOW, GROUP BY, HAVING, ORDER BY, LIMIT, "
        "SAMPLE or end of query, found 'form'",
        "line": 1,
        "column": 10,
        "length": 4,
        "snippet": "select a form playback\n         ^^^^",
        "expected": [
            ",",
            "AS",
            "FROM",
            "WHERE",
            "WINDOW",
            "GROUP BY",
            "HAVING",
            "ORDER BY",
            "LIMIT",
            "SAMPLE",
            "end of query",
        ],
        "suggestion": "FROM",
        "hint": None,
    }
    assert _raises("select a form playback").to_dict() == expected


def test_error_kinds() -> None:
    assert isinstance(_raises("select a form x"), QuerySyntaxError)
    deep = "select a from s where " + "(" * 65
    assert isinstance(_raises(deep), QueryLimitError)
    assert _raises(deep).kind == "limit"
    # the first '(' of a select item is already a syntax error: the first offending token wins
    assert _raises("select " + "(" * 65).code == "E102"


def test_limits_at_the_boundary_are_accepted() -> None:
    parse("select a from s where " + "(" * 64 + "a == 1" + ")" * 64)
    parse("select a from s where a in (" + ",".join(["1"] * 1000) + ")")
    parse("select e" + "['a']" * 64 + " from s")
    parse("select '" + "x" * 4096 + "' from s")
    parse("select " + "9" * 4300 + " from s")
    text = "select a from x where a == 'é'"
    text += " " * (16384 - len(text.encode()))
    assert parse(text).where is not None
    assert _raises(text + " ").code == "E301"


def test_lexical_error_after_a_grammar_error_is_not_reported() -> None:
    # the first offending token wins: the grammar error comes before the ';'
    assert _raises("select a form x;").code == "E102"
    assert _raises("select a from x where a == 1 ;").code == "E110"


def test_unicode_columns_count_code_points() -> None:
    err = _raises("select 'é€😀', a form x")
    assert (err.line, err.column) == (1, 17)


def test_error_at_end_of_query_ignores_trailing_whitespace() -> None:
    err = _raises("select a from x where   \n\n  ")
    assert (err.code, err.line, err.column, err.length) == ("E101", 1, 22, 0)


def test_crlf_and_cr_line_breaks() -> None:
    err = _raises("select a\r\nfrom x\rwhere a")
    assert (err.code, err.line, err.column) == ("E118", 3, 7)


def test_e303_position_is_the_1001st_item() -> None:
    text = "select a from s where a in (" + ",".join(str(i) for i in range(1001)) + ")"
    err = _raises(text)
    assert err.code == "E303"
    assert text[err.column - 1 :].startswith("1000)")


def test_e302_on_calls_and_in_lists_too() -> None:
    assert _raises("select " + "count(" * 65 + "a" + ")" * 65).code == "E302"
    deep = "select a from s where a in (" + "count(" * 64
    assert _raises(deep).code == "E302"


def test_huge_nesting_is_a_limit_error_not_a_recursion_error() -> None:
    assert _raises("select a from s where " + "(" * 5000).code == "E302"
    assert _raises("select a from s where " + "not (" * 2000).code == "E302"
    # a very long flat condition does not recurse either
    q = parse("select a from s where " + " and ".join(["a == 1"] * 600))
    assert isinstance(q.where, ast.And)
    assert len(q.where.items) == 600


# --------------------------------------------------------------------------- the AST


def test_basic_query_ast_and_spans() -> None:
    text = "select a, count(*) as n from app/str where b == 1 window 10 group by a"
    q = parse(text)
    assert q.text == text
    assert q.select_star is False
    a, n = q.items
    assert a == ast.SelectItem(ast.Property(("a",)))
    assert n == ast.SelectItem(ast.Call("count", (ast.STAR,)), "n")
    assert text[n.span.start : n.span.end] == "count(*) as n"
    assert isinstance(n.operand, ast.Call)
    assert text[n.operand.name_span.start : n.operand.name_span.end] == "count"
    assert text[n.alias_span.start : n.alias_span.end] == "n"
    assert q.sources == (ast.Source("app", "str"),)
    assert q.where == ast.Comparison(ast.Property(("b",)), "==", ast.Literal(1))
    assert q.window == ast.TimeWindow(10, 10)
    assert q.group_by == (ast.Property(("a",)),)
    spans = {k: text[v.start : v.end] for k, v in q.clause_spans.items()}
    assert spans == {
        "SELECT": "select",
        "FROM": "from",
        "WHERE": "where",
        "WINDOW": "window",
        "GROUP BY": "group by",
    }
    assert (q.span.start, q.span.end) == (0, len(text))


def test_keywords_are_not_reserved() -> None:
    q = parse("select from from playback where limit == 5 limit 10")
    assert q.items == (ast.SelectItem(ast.Property(("from",))),)
    assert q.where == ast.Comparison(ast.Property(("limit",)), "==", ast.Literal(5))
    assert q.limit == 10
    assert q.limit_span == ast.Span(49, 51)


def test_literals_keep_their_type() -> None:
    q = parse("select 1, 1.0, true, 'x', null, -0, 1E2 from s")
    values = [i.operand for i in q.items]
    assert values == [
        ast.Literal(1),
        ast.Literal(1.0),
        ast.Literal(True),
        ast.Literal("x"),
        ast.Literal(None),
        ast.Literal(0),
        ast.Literal(100.0),
    ]
    assert ast.Literal(1) != ast.Literal(1.0) != ast.Literal(True)
    assert [type(v.value) for v in values if isinstance(v, ast.Literal)] == [
        int,
        float,
        bool,
        str,
        type(None),
        int,
        float,
    ]


def test_operand_negation_and_condition_not() -> None:
    q = parse("select a from s where not a == true and not (b == 1) and !c != !d")
    assert isinstance(q.where, ast.And)
    first, second, third = q.where.items
    assert first == ast.Comparison(ast.Negation(ast.Property(("a",))), "==", ast.Literal(True))
    assert second == ast.Not(ast.Comparison(ast.Property(("b",)), "==", ast.Literal(1)))
    assert third == ast.Comparison(
        ast.Negation(ast.Property(("c",))), "!=", ast.Negation(ast.Property(("d",)))
    )


def test_precedence_and_flattening() -> None:
    q = parse("select a from s where a == 1 or b == 2 and c == 3 or (d == 4 or e == 5)")
    assert isinstance(q.where, ast.Or)
    assert len(q.where.items) == 4
    assert isinstance(q.where.items[1], ast.And)


def test_bool_conditions() -> None:
    q = parse("select a from s where true and (false or a == 1)")
    assert q.where == ast.And(
        (
            ast.BoolCondition(True),
            ast.Or(
                (
                    ast.BoolCondition(False),
                    ast.Comparison(ast.Property(("a",)), "==", ast.Literal(1)),
                )
            ),
        )
    )


def test_predicates() -> None:
    q = parse(
        "select a from s where a ==~ /x\\/y/ and b !~ /z/ and c is null and d is not null "
        "and e in (1, 'x') and f not in (g) and h ==+ 'k'"
    )
    assert isinstance(q.where, ast.And)
    m1, m2, n1, n2, i1, i2, c = q.where.items
    assert m1 == ast.Match(ast.Property(("a",)), "x\\/y")
    assert m2 == ast.Match(ast.Property(("b",)), "z", negated=True)
    assert n1 == ast.IsNull(ast.Property(("c",)))
    assert n2 == ast.IsNull(ast.Property(("d",)), negated=True)
    assert i1 == ast.In(ast.Property(("e",)), (ast.Literal(1), ast.Literal("x")))
    assert i2 == ast.In(ast.Property(("f",)), (ast.Property(("g",)),), negated=True)
    assert c == ast.Comparison(ast.Property(("h",)), "==+", ast.Literal("k"))
    assert isinstance(m1, ast.Match)
    assert q.text[m1.pattern_span.start : m1.pattern_span.end] == "/x\\/y/"


def test_paths_and_prefix_selectors() -> None:
    q = parse("select e['a'][0][-1][*]['b'], E[\"it's\"], e['x'], e[^'nf.'] from s")
    p1, p2, p3, p4 = (i.operand for i in q.items)
    assert p1 == ast.Property(("a", 0, -1, ast.STAR, "b"))
    assert isinstance(p1, ast.Property)
    assert p1.has_star
    assert p2 == ast.Property(("it's",))
    assert p3 == ast.Property(("x",)) == parse("select x from s").items[0].operand
    assert p4 == ast.PrefixSelector("nf.")


def test_calls() -> None:
    q = parse(
        "select count(distinct a), COUNT (*), percentile(x, 99.9), tick(), count(distinct *) from s"
    )
    ops = [i.operand for i in q.items]
    assert ops == [
        ast.Call("count", (ast.Property(("a",)),), True),
        ast.Call("count", (ast.STAR,)),
        ast.Call("percentile", (ast.Property(("x",)), ast.Literal(99.9))),
        ast.Call("tick", ()),
        ast.Call("count", (ast.STAR,), True),
    ]


def test_clause_orders_and_window_forms() -> None:
    a = parse("select a from s window 10 where b == 1 limit 5 order by a")
    b = parse("select a from s where b == 1 window 10 10 order by a asc limit 5")
    assert a == b
    assert a.order_by == (ast.OrderKey(ast.Property(("a",))),)
    assert parse("select a from s window 60 30").window == ast.TimeWindow(60, 30)
    assert parse("select a from s window |100|").window == ast.CountWindow(100)
    w = parse("select a from s window 1.5 -2").window
    assert w == ast.TimeWindow(1.5, -2)
    assert parse("select a from s limit 2.5").limit == 2.5


def test_aliases() -> None:
    q = parse("select a as x, b as 'y z', c as \"it's\", d as from from s")
    assert [i.alias for i in q.items] == ["x", "y z", "it's", "from"]


def test_sources_are_kept_as_written() -> None:
    q = parse('select a from app, app/stream, a/b/c, "quoted"')
    assert [s.text for s in q.sources] == ["app", "app/stream", "a/b/c", '"quoted"']
    assert q.sources[2] == ast.Source("a", "b/c")


def test_join_and_anomaly_parse() -> None:
    q = parse("select a from s join t, u 10 seconds on k anomaly mad x 1 2.5")
    assert q.joins == (ast.Join((ast.Source("t"), ast.Source("u")), 10, ast.Property(("k",))),)
    assert q.anomaly == ast.Anomaly(ast.Property(("x",)), 1, 2.5)
    assert set(q.clause_spans) >= {"JOIN", "ANOMALY"}


def test_sample_forms() -> None:
    q = parse("select a from s sample {'Strategy': 'sticky', 'keys': ['k'], 'salt': 7}")
    assert q.sample == ast.Sample("STICKY", ("k",), "7", 10000, 10000)
    assert q.sample is not None
    assert q.sample.problem is None
    q = parse("select a from s sample 2.5 %")
    assert q.sample == ast.Sample("RANDOM", threshold=250, percent="2.5")
    q = parse("select a from s sample {\n  'strategy': 'RANDOM',\n  'threshold': 200\n}")
    assert q.sample == ast.Sample("RANDOM", threshold=200)


@pytest.mark.parametrize(
    ("clause", "code", "fragment"),
    [
        ("{}", "E212", "{}"),
        ("{'strategy': 'RPS'}", "E212", "'RPS'"),
        ("{'strategy': 'STICKY'}", "E212", "{'strategy': 'STICKY'}"),
        ("{'stratgy': 'RANDOM'}", "E212", "'stratgy'"),
        ("{'strategy': 'RANDOM', 'factor': 0}", "E212", "0"),
        ("{'strategy': 'RANDOM', 'extrapolate': true}", "E212", "true"),
        ("{'strategy': 'RANDOM', 'strategy': 'RANDOM'}", "E212", "'strategy'"),
        ("{'strategy': 'RANDOM', 'threshold': 1.5}", "E212", "1.5"),
        ("{'strategy': 'STICKY', 'keys': []}", "E212", "[]"),
        ("0%", "E213", "0%"),
        ("150%", "E213", "150%"),
        ("0.125%", "E213", "0.125%"),
    ],
)
def test_sample_problems_are_stored_not_raised(clause: str, code: str, fragment: str) -> None:
    text = f"select a from s sample {clause}"
    q = parse(text)
    assert q.sample is not None
    problem = q.sample.problem
    assert isinstance(problem, QueryError)
    assert problem.code == code
    assert problem.message.startswith("SAMPLE")
    start = problem.column - 1
    assert text[start : start + problem.length] == fragment


def test_sample_suggestions() -> None:
    q = parse("select a from s sample {'stratgy': 'RANDOM'}")
    assert q.sample is not None
    assert isinstance(q.sample.problem, QueryError)
    assert q.sample.problem.suggestion == "strategy"
    q = parse("select a from s sample {'strategy': 'STIKY', 'keys': ['a']}")
    assert q.sample is not None
    assert isinstance(q.sample.problem, QueryError)
    assert q.sample.problem.suggestion == "STICKY"


# --------------------------------------------------------------------------- robustness

_FRAGMENTS = [
    "select",
    "SELECT",
    "*",
    "from",
    "x",
    "a/b",
    "where",
    "(",
    ")",
    "'a'",
    '"b"',
    "e['x']",
    "e[0]",
    "e[*]",
    "e[^'p']",
    "==",
    "=",
    "!=",
    "<>",
    "<",
    ">=",
    "==~",
    "!~",
    "==+",
    "/x/",
    "/a\\/b/",
    "and",
    "or",
    "&&",
    "||",
    "not",
    "!",
    "in",
    "is",
    "null",
    "true",
    "FALSE",
    "group",
    "by",
    "order",
    "asc",
    "desc",
    "having",
    "limit",
    "sample",
    "{",
    "}",
    "'strategy'",
    ":",
    "'RANDOM'",
    "[",
    "]",
    "5%",
    "%",
    "|5|",
    "window",
    "10",
    "-1",
    "1.5",
    "1e3",
    "010",
    "+1",
    ".5",
    "count",
    "p99",
    "percentile",
    "tick",
    "avg",
    "distinct",
    ",",
    ";",
    "--",
    "//",
    "~",
    "=~",
    "===",
    "\u00a0",
    "\u2018",
    "as",
    "join",
    "seconds",
    "on",
    "anomaly",
    "mad",
    "-",
    "{'strategy': 'STICKY', 'keys': ['k']}",
    "\n",
    "\t",
    "\r\n",
    "é",
    "😀",
    "1E999",
]

_mql_ish = st.lists(
    st.tuples(st.sampled_from(_FRAGMENTS), st.sampled_from(["", " ", " ", "\n"])),
    max_size=40,
).map(lambda parts: "".join(f + s for f, s in parts))


def _check_any_text(text: str) -> None:
    try:
        q = parse(text)
    except QueryError as e:
        d = e.to_dict()
        assert d["code"][0] == "E"
        assert d["line"] >= 1
        assert d["column"] >= 1
        assert d["length"] >= 0
        assert "\n" in d["snippet"]
        return
    canonical = format_query(q)
    again = parse(canonical)
    assert again == q, canonical
    assert format_query(again) == canonical


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mql_ish)
def test_any_mql_ish_text_parses_or_raises_query_error(text: str) -> None:
    _check_any_text(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_raises_query_error(text: str) -> None:
    _check_any_text(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120).map(lambda t: "select a from s where " + t))
def test_any_condition_text_parses_or_raises_query_error(text: str) -> None:
    _check_any_text(text)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("select a from s where 0[²", "E117"),  # found by hypothesis: a non-ASCII digit
        ("select e[²] from s", "E116"),
        ("select a from s where a ==~ /x/é", "E115"),
        ("select a from s where a in (1, 2", "E122"),
        ("select a from s where not a", "E118"),
        ("select a from s where a == 1 having", "E101"),
    ],
)
def test_regressions(text: str, code: str) -> None:
    assert _raises(text).code == code


def test_long_adversarial_inputs_are_bounded() -> None:
    for text in [
        "select " + ",".join(["a"] * 7000),
        "select a from s where " + " or ".join(["(a == 1 and b != 'x')"] * 600),
        "select a from s where a in (" + ",".join(["'x'"] * 999) + ") and",
        "select " + "e['a']" * 2000,
        "select a from s where " + "not " * 3000 + "a",
        "select a from s where a ==~ /" + "\\" * 4000,
        "select a from s sample {" + "[" * 3000,
        "select a from s sample {'keys': " + "[" * 3000 + "]" * 3000 + "}",
        "select " + "'" * 16000,
    ]:
        try:
            outcome: object = parse(text[:16384])
        except QueryError as err:  # one precise error, never a crash or a RecursionError
            outcome = err
        assert isinstance(outcome, ast.Query | QueryError)


def test_spans_point_at_the_source_text() -> None:
    text = (
        "SELECT count(DISTINCT a) AS n, e['x'][0] FROM app JOIN b 5 SECONDS ON k "
        "WHERE NOT (a == 1) AND b IN (1, 2) AND c IS NOT NULL AND d ==~ /r/ WINDOW 60 30 "
        "GROUP BY a ANOMALY MAD x 1 2 HAVING n > 1 ORDER BY n DESC LIMIT 3 SAMPLE 5%"
    )
    q = parse(text)

    def at(span: ast.Span) -> str:
        return text[span.start : span.end]

    assert at(q.items[0].span) == "count(DISTINCT a) AS n"
    assert at(q.items[1].operand.span) == "e['x'][0]"  # type: ignore[union-attr]
    assert at(q.sources[0].span) == "app"
    assert at(q.joins[0].span) == "JOIN b 5 SECONDS ON k"
    assert isinstance(q.where, ast.And)
    assert [at(c.span) for c in q.where.items] == [
        "NOT (a == 1)",
        "b IN (1, 2)",
        "c IS NOT NULL",
        "d ==~ /r/",
    ]
    assert at(q.where.span) == "NOT (a == 1) AND b IN (1, 2) AND c IS NOT NULL AND d ==~ /r/"
    assert isinstance(q.window, ast.TimeWindow)
    assert at(q.window.span) == "WINDOW 60 30"
    assert (at(q.window.length_span), at(q.window.every_span)) == ("60", "30")
    assert at(q.group_by[0].span) == "a"  # type: ignore[union-attr]
    assert q.anomaly is not None
    assert at(q.anomaly.span) == "ANOMALY MAD x 1 2"
    assert q.having is not None
    assert at(q.having.span) == "n > 1"
    assert at(q.order_by[0].span) == "n DESC"
    assert at(q.limit_span) == "3"
    assert q.sample is not None
    assert at(q.sample.span) == "5%"
    assert {k: at(v) for k, v in q.clause_spans.items()} == {
        "SELECT": "SELECT",
        "FROM": "FROM",
        "JOIN": "JOIN",
        "WHERE": "WHERE",
        "WINDOW": "WINDOW",
        "GROUP BY": "GROUP BY",
        "ANOMALY": "ANOMALY",
        "HAVING": "HAVING",
        "ORDER BY": "ORDER BY",
        "LIMIT": "LIMIT",
        "SAMPLE": "SAMPLE",
    }
    assert at(q.span) == text


def test_first_use_from_many_threads_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parser, "_TABLES", None)  # as if nothing had been parsed yet
    barrier = threading.Barrier(6)
    results: list[object] = []

    def work() -> None:
        barrier.wait(timeout=30)
        try:
            results.append(parse("select a from s where b == 1 and c in (1, 2) order by a"))
        except Exception as e:  # pragma: no cover - the failure being tested for
            results.append(e)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 6
    assert all(isinstance(r, ast.Query) for r in results), results
