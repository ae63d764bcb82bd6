"""Compiled evaluators: agree with the interpreter, never raise, never paste user text."""

from __future__ import annotations

import random
from typing import Any

import pytest
from mql_gen import VALUES, random_condition, random_event, random_plain_query

from mantis_py.query.compile.compiler import compile_query
from mantis_py.query.compile.interpret import Context, eval_condition, project_plain
from mantis_py.query.run.engine import prepare
from mantis_py.query.syntax import ast


@pytest.mark.parametrize("seed", range(40))
def test_compiled_where_equals_interpreter(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(10):
        text = f"select a from s where {random_condition(rng)}"
        p = prepare(text, mode="replay")
        cq = p.compiled
        where = p.analysis.query.where
        for _ in range(30):
            e = random_event(rng)
            assert cq.where(e, {}, None) == eval_condition(where, Context(e)), (text, e, cq.source)


@pytest.mark.parametrize("seed", range(20))
def test_compiled_projection_equals_interpreter(seed: int) -> None:
    rng = random.Random(500 + seed)
    for _ in range(10):
        text = random_plain_query(rng)
        p = prepare(text, mode="replay")
        for _ in range(20):
            e = random_event(rng)
            got = p.compiled.project(e, {}, None)  # type: ignore[misc]
            want = project_plain(p.analysis.query, Context(e))
            assert got == want, (text, e)
            assert list(got) == list(want), (text, e)


def _all_positions() -> list[dict[str, Any]]:
    out = []
    for v in [*VALUES, float("nan"), float("inf"), -0.0, 2 ** 64, "x" * 50, [[[]]], {"": {"": None}}]:
        out.append({"a": v, "b": v, "k": v, "nf.x": v, "o": v, "l": v})
        out.append({"o": {"p": v, "q": [v]}, "l": [v, {"sku": v}]})
    return out


def test_evaluation_never_raises_over_every_json_type() -> None:
    rng = random.Random(1)
    events = _all_positions()
    for _ in range(150):
        text = f"select a from s where {random_condition(rng)}"
        cq = prepare(text).compiled
        for e in events:
            assert cq.where(e, {}, None) in (True, False)  # a boolean, never an exception


def test_source_holds_no_user_text() -> None:
    p = prepare("select a from s where a == 'x\"); import os; (\"' and b ==~ /evil.*/ and c in ('__import__')")
    src = p.compiled.source
    assert "import os" not in src
    assert "evil" not in src
    assert "__import__" not in src
    assert p.compiled.where({"a": "x\"); import os; (\"", "b": "evil!", "c": "__import__"}, {}, None)


def test_fast_paths_respect_types() -> None:
    w = prepare("select a from s where a == 500").compiled.where
    assert w({"a": 500}, {}, None)
    assert w({"a": 500.0}, {}, None)
    assert not w({"a": True}, {}, None)
    assert not w({"a": "500"}, {}, None)
    w = prepare("select a from s where a == 1").compiled.where
    assert not w({"a": True}, {}, None)
    w = prepare("select a from s where a > 100").compiled.where
    assert w({"a": 101}, {}, None)
    assert w({"a": 100.5}, {}, None)
    assert not w({"a": True}, {}, None)
    assert not w({"a": float("inf")}, {}, None)
    assert not w({"a": "200"}, {}, None)
    w = prepare("select a from s where a < 'b'").compiled.where
    assert w({"a": "a"}, {}, None)
    assert not w({"a": 1}, {}, None)
    assert not w({}, {}, None)


def test_compiled_queries_are_cached_by_canonical_and_mode() -> None:
    a1 = prepare("select a from s where a == 1").analysis
    assert compile_query(a1) is compile_query(a1)


def test_live_meta_fields_resolve_to_meta_values() -> None:
    w = prepare("select a from s where _app == 'x' and e['_zone'] == null", mode="live").compiled.where
    assert w({"_app": "y"}, {"_app": "x", "_zone": None}, None)
    assert not w({"_app": "x"}, {"_app": "y"}, None)
    r = prepare("select a from s where _app == 'x'", mode="replay").compiled.where
    assert r({"_app": "x"}, {}, None)


def test_tick_uses_exact_milliseconds() -> None:
    from mantis_py.query.compile.runtime import tick_ms

    assert tick_ms(1.001) == 1000  # the float 1.001 is just below 1.001
    assert tick_ms(1.5) == 1500
    assert tick_ms(0.1) == 100
    assert tick_ms(-0.0005) == -1
    assert tick_ms(100) == 100000
    assert tick_ms(1e300) is not None
    p = prepare("select a from s where tick() >= 1001")
    assert p.compiled.uses_tick
    assert p.compiled.where({}, {}, 1001)


def test_interpreter_is_an_ast_walker() -> None:
    c = ast.Comparison(ast.Property(("a",)), "==", ast.Literal(1))
    assert eval_condition(c, Context({"a": 1.0}))
    assert not eval_condition(c, Context({"a": True}))


# --------------------------------------------------------------------------- hypothesis

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=4),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["p", "q", "sku", "0"]), children, max_size=3),
    max_leaves=8,
)
_EVENTS = st.dictionaries(st.sampled_from(["a", "b", "k", "nf.x", "o", "l"]), _JSON, max_size=6)
_QUERIES = [f"select a from s where {random_condition(random.Random(i))}" for i in range(60)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=_EVENTS, which=st.integers(min_value=0, max_value=len(_QUERIES) - 1))
def test_hypothesis_compiled_equals_interpreter_and_never_raises(event: dict[str, Any], which: int) -> None:
    from mantis_py.query.semantics.values import clean

    p = prepare(_QUERIES[which])
    raw = p.compiled.where(event, {}, None)  # any JSON value, non-finite floats included: no raise
    assert raw in (True, False)
    e = clean(event)  # values enter cleaned (§3.1): then the fast paths equal the oracle
    assert p.compiled.where(e, {}, None) == eval_condition(p.analysis.query.where, Context(e))


@settings(max_examples=100, deadline=None)
@given(event=_EVENTS, seed=st.integers(min_value=0, max_value=50))
def test_hypothesis_projection_and_aggregation_never_raise(event: dict[str, Any], seed: int) -> None:
    from mantis_py.query.run.replay import replay_rows

    rng = random.Random(seed)
    p = prepare(random_plain_query(rng))
    p.compiled.project(event, {}, None)  # type: ignore[misc]
    q = prepare("select k, count(*), sum(a), list(distinct b), p50(a), max(a), average(a) from s group by k order by e['COUNT(*)']")
    assert replay_rows(q, [(event, 0), (event, 1)])


# --------------------------------------------------------------------------- folds


@pytest.mark.parametrize("seed", range(30))
def test_compiled_fold_equals_the_aggregates_own_add(seed: int) -> None:
    """The fold loops built from each aggregate's inline template (``Aggregate.inline``) give the
    same groups as calling every aggregate's ``add`` (``GroupTable.add_generic``), event by event
    (``fold``) and over a whole window (``fold_run``), with enough floats to fill sum buffers."""
    from mql_gen import random_aggregate_query

    from mantis_py.query.run.groups import GroupTable

    rng = random.Random(seed)
    p = prepare(random_aggregate_query(rng, "window 10"))
    plan = p.agg_plan()
    events = [random_event(rng) for _ in range(300)]
    for e in events[::2]:
        e["a"] = rng.choice([rng.uniform(-1e6, 1e6), rng.randrange(-1000, 1000), 0.1, 1e300])
        e["b"] = rng.uniform(-1, 1)
    fast, slow, run = GroupTable(plan), GroupTable(plan), GroupTable(plan)
    for i, e in enumerate(events):
        if p.compiled.where(e, {}, None):
            fast.add(e, {}, None, (i,))
            slow.add_generic(e, {}, None, (i,))
    assert plan.fold_run is not None
    rest, _, errors = plan.fold_run(run, [(e, 5, i) for i, e in enumerate(events)], 0, 10, {})
    assert rest is None
    assert errors == 0
    assert fast.rows() == slow.rows() == run.rows(), plan.fold_source


def test_fold_templates_come_from_the_aggregates() -> None:
    """count, sum/average and first values fold inline (no call per event); DISTINCT calls add."""
    plan = prepare("select k, count(*), count(a), sum(a), average(b), count(distinct a) as d "
                   "from s window 10 group by k").agg_plan()
    src = plan.fold_source.split("def fold_run")[0]
    assert "+= 1" in src  # count
    assert ".buf" in src  # sum / average: floats wait in the buffer
    assert "s.i += v" in src  # and ints add up inline
    assert "ok < s[0]" in src  # the first value of k
    calls = [ln for ln in src.splitlines() if "(st[" in ln and "ok)" in ln]
    assert len(calls) == 3  # the DISTINCT add, and the two buffer-full calls of sum and average
