"""Tests for mantis_py.query.semantics.analyze: static and live rules (MQL.md §5.4), output names (§3.7.2),
HAVING / ORDER BY resolution (§3.10, §3.11), fields (§4.2), and the other Analysis members."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from mantis_py.errors import QueryCompileError, QueryError, QueryLimitError
from mantis_py.query.semantics.analysis import Analysis
from mantis_py.query.semantics.analyze import analyze
from mantis_py.query.syntax import ast
from mantis_py.query.syntax.parser import parse

FIXTURES = Path(__file__).parent / "fixtures"


def _parse(text: str) -> ast.Query:
    return parse(text)


def check(text: str, mode: str = "replay", apps: Any = None) -> Analysis:
    return analyze(_parse(text), mode=mode, apps=apps)  # type: ignore[arg-type]


def reject(text: str, mode: str = "replay", apps: Any = None) -> QueryError:
    with pytest.raises(QueryError) as info:
        check(text, mode, apps)
    return info.value


def _load(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


SEMANTIC = _load("semantic_errors.jsonl")


# --------------------------------------------------------------------------- the error table


@pytest.mark.parametrize("case", SEMANTIC, ids=[f"{c['code']}:{c['query']}" for c in SEMANTIC])
def test_semantic_error_fixture(case: dict[str, Any]) -> None:
    err = reject(case["query"], case["mode"])
    assert err.code == case["code"], err.to_dict()
    assert err.kind == ("limit" if case["code"].startswith("E3") else "semantic")
    assert err.expected == []
    for member in ("line", "column", "length", "message", "suggestion", "hint"):
        if member in case:
            assert getattr(err, member) == case[member], (member, err.to_dict())


def test_error_classes_by_code() -> None:
    assert isinstance(reject("select count(*) from x window 3600"), QueryLimitError)
    assert isinstance(reject("select a from x having a > 1"), QueryCompileError)


def test_spec_example_error_object_of_7_1() -> None:
    err = reject("select count(*) from x where count(*) > 1")
    assert err.to_dict() == {
        "kind": "semantic",
        "code": "E201",
        "message": "aggregate count() cannot be used in WHERE",
        "line": 1,
        "column": 30,
        "length": 8,
        "snippet": "select count(*) from x where count(*) > 1\n                             ^^^^^^^^",
        "expected": [],
        "suggestion": None,
        "hint": "filter on aggregates with HAVING",
    }


def test_positions_on_later_lines() -> None:
    err = reject("select a\nfrom x\nwhere count(a) > 1")
    assert (err.code, err.line, err.column, err.length) == ("E201", 3, 7, 8)


def test_join_and_anomaly_are_no_longer_reserved() -> None:
    # issue #6 implemented both; the reserved-feature check (E217) went with them
    check("select a from a join b 10 seconds on k")
    check("select count(*) as n from a join b/log 5 seconds on e['s']['id'] window 10 "
          "anomaly mad n 1 2.5", "live")


# --------------------------------------------------------------------------- live rules


def test_live_rules_apply_only_in_live_mode() -> None:
    for text in ("select a from x order by a", "select count(*) from x", "select * where a == 1"):
        check(text, "replay")
        assert reject(text, "live").code in ("E220", "E221", "E222")


def test_unknown_application_with_known_apps() -> None:
    err = reject("select * from playbak", "live", apps={"playback", "api"})
    assert (err.code, err.message, err.suggestion) == (
        "E222",
        "unknown application 'playbak'",
        "playback",
    )
    assert (err.column, err.length) == (15, 7)
    assert err.hint is None


@pytest.mark.parametrize("name", ["stream", "observable"])
def test_unknown_default_stream_names_get_a_hint(name: str) -> None:
    err = reject(f"select * from {name}", "live", apps={"playback"})
    assert err.code == "E222"
    assert err.hint is not None
    assert "replay" in err.hint


def test_known_application_and_unlooked_apps_pass() -> None:
    check("select * from playback/log", "live", apps={"playback"})
    check("select * from stream", "live", apps=None)


def test_live_e221_at_first_aggregate_call() -> None:
    err = reject("select a, sum(b), count(*) from x group by a", "live")
    assert (err.code, err.column, err.length) == ("E221", 11, 6)


def test_source_with_default_stream_is_the_same_source() -> None:
    assert reject("select a from a, a/default").code == "E223"
    check("select a from a, a/log")


# --------------------------------------------------------------------------- output names


def test_output_names_of_3_7_2() -> None:
    a = check(
        "select count(*), count(a), average(e['metrics']['latency']), count(e['l'][0]), "
        "p99(nf.lat), sum(1), count('x'), count(true), percentile(latency, 99.9), "
        "e['geo']['country'], e['l'][0], 'abc', 2.50, tick() from x"
    )
    assert [c.name for c in a.columns] == [
        "COUNT(*)",
        "COUNT(a)",
        "AVERAGE(metrics.latency)",
        "COUNT(l.0)",
        "P99(nf.lat)",
        "SUM(1)",
        "COUNT(x)",
        "COUNT(true)",
        "PERCENTILE(latency, 99.9)",
        "geo.country",
        "l.0",
        "abc",
        "2.5",
        "tick",
    ]
    roles = [c.role for c in a.columns]
    assert roles[:9] == ["aggregate"] * 9
    assert roles[9:] == ["first", "first", "literal", "literal", "first"]
    assert not any(c.hidden for c in a.columns)


def test_distinct_has_the_same_name_and_aliases_win() -> None:
    assert [c.name for c in check("select count(distinct a) from x").columns] == ["COUNT(a)"]
    a = check("select count(a), count(distinct a) as 'd', a as 'COUNT(x)' from x")
    assert [c.name for c in a.columns] == ["COUNT(a)", "d", "COUNT(x)"]


def test_plain_queries_have_no_columns() -> None:
    a = check("select a, b as 'c' from x")
    assert (a.kind, a.columns) == ("plain", ())


@pytest.mark.parametrize(
    "select",
    [
        "e['m']['x'], e['m']",
        "e['m']['y'], n, e['l'][1]",
        "e['l'][0], e['l'][-1]",
        "e['m']['x'] as 'mx', 'v1' as version, 3",
        "e[^'nf.'], e['m']['x']",
        "a, a",
        "e[^'x'], 'x'",
        "a as 'x.y', e['x']['z']",
    ],
)
def test_plain_projection_examples_do_not_conflict(select: str) -> None:
    assert check(f"select {select} from s").kind == "plain"


def test_plain_conflict_scales_linearly() -> None:
    items = ", ".join(f"e['k{i}']['v']" for i in range(249))
    start = time.perf_counter()
    check(f"select {items} from s")
    err = reject(f"select {items}, 'k7' from s")
    assert err.code == "E207"
    assert err.message.endswith("'k7'")
    assert time.perf_counter() - start < 10  # generous: quadratic would be far slower


# --------------------------------------------------------------------------- HAVING / ORDER BY


def _having_left(text: str) -> Any:
    a = check(text)
    assert isinstance(a.having, ast.Comparison)
    return a.having.left


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        (
            "select count(a) from x window 10 having e['COUNT(a)'] > 2",
            ast.OutputRef("column", 0),
        ),
        ("select count(a) as n from x window 10 having n > 2", ast.OutputRef("column", 0)),
        (
            "select e['geo']['country'], count(*) from x window 10 group by e['geo']['country'] "
            "having e['geo']['country'] == 'US'",
            ast.OutputRef("column", 0),
        ),
        (
            "select count(*) from x window 10 group by country having country != null",
            ast.OutputRef("key", 0),
        ),
        (
            "select list(x) from y window 10 having e['LIST(x)'][*] > 100",
            ast.OutputRef("column", 0, (ast.STAR,)),
        ),
        (
            "select a as 'm', count(*) from x window 10 group by a having e['m']['k'][0] > 1",
            ast.OutputRef("column", 0, ("k", 0)),
        ),
        (
            "select count(*) as 'a.b', x from s window 10 group by x having e['a']['b']['c'] > 1",
            ast.OutputRef("column", 0, ("c",)),
        ),
    ],
)
def test_having_name_resolution_of_3_10(text: str, ref: ast.OutputRef) -> None:
    assert _having_left(text) == ref


def test_longest_run_wins_between_columns_and_keys() -> None:
    left = _having_left(
        "select count(*) as 'a' from x window 10 group by e['a']['b'] having e['a']['b']['c'] > 1"
    )
    assert left == ast.OutputRef("key", 0, ("c",))
    left = _having_left("select count(*) as 'a.b' from x window 10 group by e['a']['b'] having e['a']['b'] > 1")
    assert left == ast.OutputRef("column", 0)


def test_having_aggregate_matches_select_aggregate_by_canonical_call() -> None:
    a = check(
        "select endpoint, count(*) as errors from api where status >= 500 "
        "window 60 group by endpoint having count(*) >= 2"
    )
    assert a.having == ast.Comparison(ast.OutputRef("column", 1), ">=", ast.Literal(2))
    assert [c.hidden for c in a.columns] == [False, False]


def test_hidden_having_aggregates_come_last_and_are_shared() -> None:
    a = check(
        "select country, count(a) from x window 10 group by country "
        "having count(distinct a) > 1 and sum(b) > 2 or count(distinct a) < 100"
    )
    assert [(c.name, c.hidden) for c in a.columns] == [
        ("country", False),
        ("COUNT(a)", False),
        ("COUNT(a)", True),
        ("SUM(b)", True),
    ]
    refs = []

    def walk(c: Any) -> None:
        if isinstance(c, (ast.And, ast.Or)):
            for i in c.items:
                walk(i)
        else:
            refs.append(c.left)

    walk(a.having)
    assert refs == [
        ast.OutputRef("column", 2),
        ast.OutputRef("column", 3),
        ast.OutputRef("column", 2),
    ]


def test_having_percentile_literal_types_must_match() -> None:
    a = check("select percentile(x, 99) from s window 10 having percentile(x, 99.0) > 1")
    assert [c.hidden for c in a.columns] == [False, True]


def test_aggregate_order_by_resolves_names() -> None:
    a = check(
        "select title, count(*) as starts from playback where event == 'start' "
        "window 60 group by title order by starts desc, e['title'] limit 2"
    )
    assert [(k.operand, k.desc) for k in a.order_by] == [
        (ast.OutputRef("column", 1), True),
        (ast.OutputRef("column", 0), False),
    ]


def test_aggregate_order_by_unknown_name_is_e206() -> None:
    err = reject("select count(*) as n from x window 10 order by nn desc")
    assert (err.code, err.suggestion, err.column) == ("E206", "n", 48)


def test_plain_order_by_alias_and_event_keys() -> None:
    a = check("select user as u, b from api window 10 order by u, e['u'], latency desc limit 5")
    assert [k.operand for k in a.order_by] == [
        ast.OutputRef("alias", 0),
        ast.OutputRef("alias", 0),
        ast.Property(("latency",)),
    ]
    assert a.fields == ("user", "b", "latency")


# --------------------------------------------------------------------------- fields (§4.2)


@pytest.mark.parametrize(
    ("text", "mode", "fields"),
    [
        (
            "select country, count(*) from playback where event == 'play' window 10 "
            "group by country",
            "live",
            ["country", "event"],
        ),
        (
            "select e['device']['type'], e['tags'][0] from playback "
            "where e['device']['os'] ==~ /tv.*/",
            "live",
            ["e['device']['type']", "tags", "e['device']['os']"],
        ),
        ("select e['m'], e['m']['x'] from a", "live", ["m"]),
        ("select * from api where _instance == 'i-1'", "live", ["*", "_instance"]),
        (
            "select user from api where e['items'][*]['sku'] == 'X' window 10 "
            "order by latency desc",
            "live",
            ["user", "items", "latency"],
        ),
        (
            "select id from a sample {'strategy': 'STICKY', 'keys': ['sessionId']}",
            "live",
            ["id", "sessionId"],
        ),
    ],
)
def test_fields_table_of_4_2(text: str, mode: str, fields: list[str]) -> None:
    assert list(check(text, mode).fields) == fields


def test_fields_prefix_selectors_cover_first_segments_except_meta() -> None:
    a = check(
        "select e[^'_'], e[^'nf.'], nf.app, e['nf.x']['y'], _app, _x, other from x "
        "where _zone == 'z'",
        "live",
    )
    assert a.fields == ("e[^'_']", "e[^'nf.']", "_app", "other", "_zone")
    assert a.field_paths == (("_app",), ("other",), ("_zone",))
    assert a.field_prefixes == ("_", "nf.")
    assert a.meta_fields == ("_app", "_zone")
    assert not a.star


def test_fields_skip_literals_count_star_tick_and_output_names() -> None:
    a = check(
        "select count(*), 'x', tick(), sum(v) as s from x window 10 having s > 1 and max(w) > 2 "
        "order by s"
    )
    assert a.fields == ("v", "w")


def test_fields_star_paths_and_indices() -> None:
    assert check("select a from x where e[*] == 1").fields == ("e[^'']",)
    assert check("select a from x where e[*] == 1").field_prefixes == ("",)
    assert check("select e[0], a from x").fields == ("a",)


def test_select_star_fields() -> None:
    a = check("select * from api where _instance == 'i-1' and b > 1", "replay")
    assert (a.fields, a.star, a.meta_fields, a.field_paths) == (("*",), True, (), ())
    b = check("select * from api where b > 1 sample {'strategy': 'STICKY', 'keys': ['_app']}", "live")
    assert (b.fields, b.meta_fields) == (("*", "_app"), ("_app",))


def test_meta_fields_live_only_and_one_segment_only() -> None:
    text = "select e['_app']['x'], _stream from x where e['_instance'] == 'i'"
    assert check(text, "replay").meta_fields == ()
    live = check(text, "live")
    assert live.meta_fields == ("_stream", "_instance")
    # a two-segment path under _app reads the event, so the meta field does not subsume it
    assert live.fields == ("e['_app']['x']", "_stream", "_instance")
    assert check(text, "replay").fields == ("e['_app']['x']", "_stream", "_instance")


def test_meta_fields_in_group_by_and_sticky_keys() -> None:
    a = check(
        "select count(*) from x window 10 group by _zone "
        "sample {'strategy': 'STICKY', 'keys': ['_instance', 'u']}",
        "live",
    )
    assert a.meta_fields == ("_zone", "_instance")


# --------------------------------------------------------------------------- kind, ships, completes


@pytest.mark.parametrize(
    ("text", "kind", "ships", "completes"),
    [
        ("select a from x", "plain", "events", False),
        ("select a from x limit 5", "plain", "events", True),
        ("select a from x window 10 limit 5", "plain", "events", False),
        ("select count(*) from x window 10", "aggregate", "partials", False),
        ("select count(*) from x window 1 limit 10", "aggregate", "partials", True),
        ("select count(*) from x window 10 group by a limit 10", "aggregate", "partials", False),
        ("select count(*) from x window |100| limit 3", "aggregate", "events", True),
        ("select a from x group by a", "aggregate", "events", False),
        ("select a from x group by a limit 2", "aggregate", "events", True),
        ("select count(*) from x window 60 30", "aggregate", "partials", False),
    ],
)
def test_kind_ships_completes(text: str, kind: str, ships: str, completes: bool) -> None:
    a = check(text)
    assert (a.kind, a.ships, a.completes) == (kind, ships, completes)


def test_analysis_members() -> None:
    a = check("select a from x where b == 1", "live")
    assert a.mode == "live"
    assert a.canonical == "SELECT a FROM x WHERE b == 1"
    assert a.having is None
    assert a.order_by == ()


def test_bad_mode_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="mode"):
        check("select a from x", "both")


# --------------------------------------------------------------------------- hand-built ASTs


def test_hand_built_ast_without_spans_or_text() -> None:
    q = ast.Query(
        select_star=False,
        items=(ast.SelectItem(ast.Call("count", (ast.STAR,))),),
        where=ast.Comparison(ast.Call("sum", (ast.Property(("a",)),)), ">", ast.Literal(1)),
    )
    with pytest.raises(QueryCompileError) as info:
        analyze(q)
    assert info.value.code == "E201"


def test_hand_built_ast_accepted() -> None:
    q = ast.Query(
        select_star=False,
        items=(ast.SelectItem(ast.Property(("a",))),),
        window=ast.CountWindow(5),
    )
    a = analyze(q)
    assert (a.kind, a.fields, a.ships) == ("plain", ("a",), "events")


# --------------------------------------------------------------------------- robustness

_GOOD_ITEMS = [
    "a", "b", "e['l'][0]", "count(*)", "count(a)", "count(distinct a)", "p99(a)",
    "percentile(a, 50)", "tick()", "'s'", "2.5", "_app", "max(e['m']['x'])", "list(x)",
]  # fmt: skip
_BAD_ITEMS = [
    "e['l'][*]", "e[^'n']", "sum(*)", "count(a, b)", "count(distinct 1)", "percentile(a, x)",
    "tick(1)", "null", "not a", "count(sum(a))",
]  # fmt: skip
_GOOD_CONDS = [
    "a == 1", "not a == true", "e['l'][*] == 1", "a ==~ /x.*/", "a in (1, 'x')", "a is null",
    "a ==+ 'x'", "_zone == 'z'", "tick() > 0", "not (a > 1 or b < 2)", "COUNT(a) > 1",
    "e['COUNT(*)'] > 1", "n > 1", "count(distinct a) >= 2", "count(*) > 1",
]  # fmt: skip
_BAD_CONDS = [
    "not a == 1", "1 == e['l'][*]", "a ==~ /(a)\\1/", "a in (1, b)", "a ==+ 5", "e[^'a'] == 1",
]  # fmt: skip


def _pick(rng: Any, good: list[str], bad: list[str]) -> str:
    return str(rng.choice(bad if rng.random() < 0.05 else good))


def _soup(rng: Any) -> str:
    """A random query, mostly valid, with a few misused constructs mixed in."""
    items = ", ".join(
        _pick(rng, _GOOD_ITEMS, _BAD_ITEMS) + rng.choice(["", "", "", " as n", " as ''"][: 4 + (rng.random() < 0.1)])
        for _ in range(rng.randrange(1, 3))
    )
    parts = [f"select {items if rng.random() < 0.95 else '*'}"]
    if rng.random() < 0.9:
        parts.append(rng.choice(["from x", "from x, y", "from a/b", "from stream", "from x, x"][: 4 + (rng.random() < 0.1)]))
    if rng.random() < 0.5:
        parts.append("where " + _pick(rng, _GOOD_CONDS[:11], _BAD_CONDS))
    if rng.random() < 0.7:
        parts.append(rng.choice(["window 10", "window 60 30", "window |5|", "window 10", "window 0"]))
    if rng.random() < 0.4:
        parts.append("group by " + _pick(rng, ["a", "a, b", "_app"], ["1", "e['l'][*]", "count(a)"]))
    if rng.random() < 0.3:
        parts.append("having " + _pick(rng, _GOOD_CONDS, _BAD_CONDS))
    if rng.random() < 0.3:
        parts.append("order by " + _pick(rng, ["a", "n desc", "e['COUNT(a)'] desc"], ["count(*)", "1"]))
    if rng.random() < 0.3:
        parts.append(rng.choice(["limit 3", "limit 3", "limit 0"]))
    if rng.random() < 0.2:
        parts.append(rng.choice(["sample 5%", "sample {'strategy': 'STICKY', 'keys': ['_app']}"]))
    return " ".join(parts)


def test_random_queries_are_accepted_or_rejected_with_a_query_error() -> None:
    import random

    rng = random.Random(20261127)
    accepted = rejected = 0
    kinds: set[str] = set()
    for _ in range(600):
        text = _soup(rng)
        for mode in ("replay", "live"):
            try:
                a = analyze(_parse(text), mode=mode)  # type: ignore[arg-type]
            except QueryError as exc:
                rejected += 1
                kinds.add(exc.kind)
                continue
            accepted += 1
            json.dumps(a.plan())
            assert a.plan()["canonical"] == a.canonical
    assert accepted > 100
    assert rejected > 100
    assert kinds <= {"syntax", "semantic", "limit"}


def test_doctests_of_names() -> None:
    import doctest

    from mantis_py.query.semantics import names

    assert doctest.testmod(names).failed == 0


# --------------------------------------------------------------------------- the §4.2 invariant

_KEYS = ["a", "b", "l", "m", "x", "k", "n", "nf.x", "p0", "_app", "_zone", "COUNT(a)", "s"]


def _random_value(rng: Any, depth: int = 0) -> Any:
    r = rng.random()
    if depth < 3 and r < 0.25:
        return {rng.choice(_KEYS): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    if depth < 3 and r < 0.45:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return rng.choice([None, True, 0, 1.5, "x", "", "a"])


def _query_operands(a: Analysis) -> Any:
    """Every property/prefix selector the query evaluates on events (not on output rows)."""
    from mantis_py.query.semantics.analyze import _condition_properties, _operand_properties

    q = a.query
    for item in q.items:
        yield from _operand_properties(item.operand)
    if q.where is not None:
        yield from _condition_properties(q.where)
    for key in q.group_by:
        yield from _operand_properties(key)
    for column in a.columns:
        if column.hidden:
            yield from _operand_properties(column.operand)
    for key in a.order_by:
        if isinstance(key.operand, ast.Property):
            yield key.operand
    if q.sample is not None:
        for k in q.sample.keys:
            yield ast.Property((k,))


def _evaluate(op: Any, event: Any) -> Any:
    from mantis_py.query.semantics.values import prefix_items, resolve, resolve_star

    if isinstance(op, ast.PrefixSelector):
        return prefix_items(event, op.prefix)
    if op.has_star:
        return resolve_star(event, op.segments)
    return resolve(event, op.segments)


_INVARIANT_QUERIES = [
    "select e['m']['x'], e['l'][0], e['l'][-1]['k'] from s where e['m'][*]['a'] == 1",
    "select e[^'nf.'], e[^'_'], nf.x, _app, e['_app']['x'] from s where e[*] == 'x'",
    "select e[0], e['m'][0]['x'], m from s where e['l'][*][*] == 'a' window 10 "
    "order by e['x']['k'] desc",
    "select count(*), max(e['m']['k']) from s window 10 group by e['b']['a'] having sum(e['l'][1]) > 0",
    "select a from s sample {'strategy': 'STICKY', 'keys': ['_zone', 'k']}",
]


@pytest.mark.parametrize("mode", ["replay", "live"])
def test_fields_invariant_every_property_evaluates_the_same_on_the_shipped_object(
    mode: str,
) -> None:
    import random

    from mantis_py.query.state.projection import project

    rng = random.Random(42)
    texts = list(_INVARIANT_QUERIES)
    while len(texts) < 80:
        text = _soup(rng)
        try:
            check(text, mode)
        except QueryError:
            continue
        texts.append(text)
    for text in texts:
        a = check(text, mode)
        operands = [
            op
            for op in _query_operands(a)
            if not (mode == "live" and isinstance(op, ast.Property) and op.is_bare
                    and op.segments[0] in ("_app", "_instance", "_zone", "_stream"))
        ]  # fmt: skip
        for _ in range(20):
            event = {k: _random_value(rng) for k in rng.sample(_KEYS, rng.randrange(len(_KEYS)))}
            shipped = project(event, a.field_paths, a.field_prefixes, a.star)
            for op in operands:
                assert _evaluate(op, shipped) == _evaluate(op, event), (text, op, event)
