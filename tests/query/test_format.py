"""Tests for mantis_py.query.syntax.format: canonical text and the round trip (MQL.md §8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mantis_py.query.syntax import ast
from mantis_py.query.syntax.format import (
    format_condition,
    format_number,
    format_operand,
    format_property,
    format_query,
    format_sample,
    format_window,
    is_bare_name,
)
from mantis_py.query.syntax.parser import FUNCTIONS, parse

FIXTURES = Path(__file__).parent / "fixtures"


def _pairs() -> list[tuple[str, str]]:
    out = []
    for line in (FIXTURES / "canonical.mql").read_text("utf-8").splitlines():
        if line.strip():
            text, canonical = line.split(" ⇒ ")
            out.append((text, canonical))
    return out


def _identity() -> list[str]:
    lines = (FIXTURES / "identity.mql").read_text("utf-8").splitlines()
    return [line for line in lines if line.strip()]


@pytest.mark.parametrize(("text", "canonical"), _pairs())
def test_canonical_pairs(text: str, canonical: str) -> None:
    q = parse(text)
    assert format_query(q) == canonical
    assert parse(canonical) == q
    assert format_query(parse(canonical)) == canonical


@pytest.mark.parametrize("text", _identity())
def test_identity(text: str) -> None:
    assert format_query(parse(text)) == text


def test_spec_table_is_in_the_fixture() -> None:
    inputs = {t for t, _ in _pairs()}
    assert "select from from s where ! a == true" in inputs
    assert "select count( distinct user ) , percentile(lat,99.90) from s window 10 10" in inputs


def test_helpers() -> None:
    assert format_number(2.50) == "2.5"
    assert format_number(1e20) == "1e+20"
    assert format_number(100) == "100"
    assert format_number(10**30) == str(10**30)
    with pytest.raises(TypeError):
        format_number(True)
    assert format_property(("country",)) == "country"
    assert format_property(("from",)) == "e['from']"
    assert format_property(("Count",)) == "e['Count']"
    assert format_property(("TRUE",)) == "e['TRUE']"
    assert format_property(("1.5e3",)) == "e['1.5e3']"
    assert format_property(("+1",)) == "e['+1']"
    assert format_property(("a b",)) == "e['a b']"
    assert format_property(("it's",)) == 'e["it\'s"]'
    assert format_property(("l", -1, ast.STAR, "k")) == "e['l'][-1][*]['k']"
    assert format_property(("a&&b",)) == "e['a&&b']"
    assert format_property(("a&b",)) == "a&b"
    assert format_property(("--x",)) == "e['--x']"
    assert format_property(("",)) == "e['']"
    assert is_bare_name("nf.app")
    assert not is_bare_name("sample{x}")
    call = ast.Call("count", (ast.Property(("a",)),), True)
    assert format_operand(call) == "count(DISTINCT a)"
    assert format_operand(ast.Call("tick", ())) == "tick()"
    assert format_operand(ast.Call("count", (ast.STAR,))) == "count(*)"
    assert format_operand(ast.Negation(ast.Literal(None))) == "NOT null"
    assert format_operand(ast.PrefixSelector("it's")) == 'e[^"it\'s"]'
    cond = ast.And(
        (
            ast.Or((ast.BoolCondition(True), ast.BoolCondition(False))),
            ast.Not(ast.IsNull(ast.Property(("a",)), True)),
        )
    )
    assert format_condition(cond) == "(true OR false) AND NOT (a IS NOT NULL)"
    assert format_window(ast.TimeWindow(10, 10)) == "WINDOW 10"
    assert format_window(ast.TimeWindow(60, 30)) == "WINDOW 60 30"
    assert format_window(ast.CountWindow(100)) == "WINDOW |100|"
    assert format_sample(ast.Sample("RANDOM", threshold=500, percent="5")) == "SAMPLE 5%"
    assert (
        format_sample(ast.Sample("RANDOM", ("k",), "x", 100, 2))
        == 'SAMPLE {"strategy": "RANDOM", "factor": 100, "threshold": 2}'
    )


# --------------------------------------------------------------------------- generated ASTs

_NAMES = [
    "a",
    "country",
    "nf.app",
    "_app",
    "from",
    "count",
    "TRUE",
    "by",
    "1.5",
    "010",
    "+1",
    "-x",
    "",
    "it's",
    'say "hi"',
    "a b",
    "a&&b",
    "a&b",
    "a|b",
    "--x",
    "/*x",
    "/x",
    "é",
    "5%",
    "|5|",
    "sample{x}",
    "e",
    "E",
    "x[0]",
    "a;b",
    "tab\there",
    "\u00a0nbsp",
    "\u2028",
    "{}",
    "Not",
]


def _no_line_break_one_quote(s: str) -> bool:
    return "\n" not in s and "\r" not in s and not ("'" in s and '"' in s)


_text = st.text(max_size=8).filter(_no_line_break_one_quote)
_name = st.one_of(st.sampled_from(_NAMES), _text)
_segment = st.one_of(_name, st.integers(-5, 12), st.just(ast.STAR))
_property = st.one_of(
    _name.map(lambda n: ast.Property((n,))),
    st.lists(_segment, min_size=1, max_size=4).map(lambda s: ast.Property(tuple(s))),
)
_number = st.one_of(
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
)
_literal = st.one_of(
    _text.map(ast.Literal),
    _number.map(ast.Literal),
    st.booleans().map(ast.Literal),
    st.just(ast.Literal(None)),
)
_simple = st.one_of(
    _property,
    _literal,
    _text.map(ast.PrefixSelector),
    st.one_of(_property, _literal).map(ast.Negation),
)


def _calls(inner: st.SearchStrategy[ast.Operand]) -> st.SearchStrategy[ast.Operand]:
    arg = st.one_of(inner, st.just(ast.STAR))
    return st.builds(
        lambda name, args, distinct: ast.Call(name, tuple(args), distinct and bool(args)),
        st.sampled_from(FUNCTIONS),
        st.lists(arg, max_size=3),
        st.booleans(),
    )


_operand: st.SearchStrategy[ast.Operand] = st.recursive(_simple, _calls, max_leaves=6)
_regex = st.lists(
    st.one_of(st.characters(blacklist_characters="/\\"), st.just("\\/"), st.just("\\d")),
    max_size=6,
).map("".join)
_OPS = ["==", "!=", "<", "<=", ">", ">=", "==+"]
_predicate = st.one_of(
    st.builds(ast.Comparison, _operand, st.sampled_from(_OPS), _operand),
    st.builds(ast.Match, _operand, _regex, st.booleans()),
    st.builds(ast.IsNull, _operand, st.booleans()),
    st.builds(
        lambda o, items, neg: ast.In(o, tuple(items), neg),
        _operand,
        st.lists(_operand, min_size=1, max_size=3),
        st.booleans(),
    ),
    st.booleans().map(ast.BoolCondition),
)


def _combine(inner: st.SearchStrategy[ast.Condition]) -> st.SearchStrategy[ast.Condition]:
    def flat(cls: Any, items: list[ast.Condition]) -> ast.Condition:
        out: list[ast.Condition] = []
        for i in items:
            out.extend(cast(Any, i).items if isinstance(i, cls) else (i,))
        node: ast.Condition = cls(tuple(out))
        return node

    return st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: flat(ast.And, xs)),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: flat(ast.Or, xs)),
        inner.map(ast.Not),
    )


_condition: st.SearchStrategy[ast.Condition] = st.recursive(_predicate, _combine, max_leaves=6)
_SOURCES = ["app", "playback", "a/b", "x-y.z:1", "from", "A_1/s-2"]
_whole = st.integers(-3, 700)
_window = st.one_of(
    st.builds(
        lambda a, b: ast.TimeWindow(a, b),
        st.one_of(_whole, st.floats(-5, 700)),
        st.one_of(_whole, st.floats(-5, 700)),
    ),
    st.integers(-3, 20000).map(ast.CountWindow),
)
_percent = st.sampled_from([1, 5, 100, 0.25, 12.5, 99.99, 50]).map(
    lambda p: ast.Sample("RANDOM", threshold=round(p * 100), percent=format_number(p))
)
_sample = st.one_of(
    _percent,
    st.builds(
        lambda f, t: ast.Sample("RANDOM", factor=f, threshold=t),
        st.integers(1, 2**31 - 1),
        st.integers(0, 10**6),
    ),
    st.builds(
        lambda keys, salt, f, t: ast.Sample("STICKY", tuple(keys), salt, f, t),
        st.lists(_text, min_size=1, max_size=3),
        _text,
        st.integers(1, 2**31 - 1),
        st.integers(0, 10**6),
    ),
)
_item = st.builds(ast.SelectItem, _operand, st.one_of(st.none(), _text))
_join = st.builds(
    lambda srcs, secs, on: ast.Join(tuple(ast.Source(s) for s in srcs), secs, on),
    st.lists(st.sampled_from(["b", "c"]), min_size=1, max_size=2),
    st.integers(0, 100),
    _operand,
)


@st.composite
def _queries(draw: st.DrawFn) -> ast.Query:
    star = draw(st.booleans())
    sources = tuple(
        ast.Source(s.split("/")[0], s.split("/", 1)[1] if "/" in s else None)
        for s in draw(st.lists(st.sampled_from(_SOURCES), max_size=2))
    )
    return ast.Query(
        select_star=star,
        items=() if star else tuple(draw(st.lists(_item, min_size=1, max_size=3))),
        sources=sources,
        joins=tuple(draw(st.lists(_join, max_size=1))) if sources else (),
        where=draw(st.one_of(st.none(), _condition)),
        window=draw(st.one_of(st.none(), _window)),
        group_by=tuple(draw(st.lists(_operand, max_size=2))),
        anomaly=draw(
            st.one_of(st.none(), st.builds(ast.Anomaly, _operand, _number, st.integers(0, 9)))
        ),
        having=draw(st.one_of(st.none(), _condition)),
        order_by=tuple(
            draw(st.lists(st.builds(ast.OrderKey, _operand, st.booleans()), max_size=2))
        ),
        limit=draw(st.one_of(st.none(), _whole, st.floats(-5, 1e6))),
        sample=draw(st.one_of(st.none(), _sample)),
    )


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_queries())
def test_generated_queries_round_trip(q: ast.Query) -> None:
    text = format_query(q)
    parsed = parse(text)
    assert parsed == q, text
    assert format_query(parsed) == text


@settings(max_examples=200, deadline=None)
@given(_operand)
def test_generated_operands_round_trip(op: ast.Operand) -> None:
    text = "SELECT " + format_operand(op)
    q = parse(text)
    assert q.items[0].operand == op
    assert format_query(q) == text


@settings(max_examples=200, deadline=None)
@given(_condition)
def test_generated_conditions_round_trip(c: ast.Condition) -> None:
    text = "SELECT * WHERE " + format_condition(c)
    q = parse(text)
    assert q.where == c
    assert format_query(q) == text
