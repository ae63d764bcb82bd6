"""ANOMALY MAD core (MQL.md §3.19): fixture cases, an exact reference model, mapping types."""

from __future__ import annotations

import json
from collections import UserDict
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mantis_py.query.run.anomaly import (
    ANOMALOUS,
    AnomalyRunner,
    AnomalySpec,
    AnomalyState,
    mark,
    resolve_any,
)

FIXTURES = Path(__file__).parent / "fixtures" / "anomaly_cases.jsonl"
CASES = [json.loads(line) for line in FIXTURES.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_fixture_case(case: dict[str, Any]) -> None:
    state = AnomalyState(case["alpha"], case["beta"], case.get("group_cap", 10000))
    groups = case.get("groups") or [None] * len(case["values"])
    flags, estimates = [], []
    for v, g in zip(case["values"], groups, strict=True):
        flags.append(state.step(v, g))
        est = state.estimate(g)
        estimates.append(None if est is None else float(est))
    assert flags == case["flags"]
    for got, want in zip(estimates, case["estimates"], strict=True):
        if want is None:
            assert got is None
        else:
            assert got == pytest.approx(want, abs=1e-9)


def test_group_cap_notice() -> None:
    case = next(c for c in CASES if "group_cap" in c)
    state = AnomalyState(case["alpha"], case["beta"], case["group_cap"])
    for v, g in zip(case["values"], case["groups"], strict=True):
        state.step(v, g)
    assert state.evicted == 3
    assert state.groups == 2
    assert state.take_notices() == {"anomaly-groups-evicted": 3}
    assert state.take_notices() == {}


def test_spec_example_is_exact_with_int_estimates() -> None:
    s = AnomalyState(1, 2.5)
    out = [s.step(v) for v in (11, 10.1, 12.5, 200)]
    assert out == [False, False, False, True]
    assert s.estimate() == 12
    assert type(s.estimate()) is int


def test_nan_and_infinity_are_missing() -> None:
    s = AnomalyState(1, 2)
    assert s.step(float("nan")) is False
    assert s.step(float("inf")) is False
    assert s.estimate() is None
    assert s.step(3) is False
    assert s.estimate() == 3


def test_big_ints_are_exact() -> None:
    s = AnomalyState(1, 1)
    big = 10**30
    assert s.step(big) is False
    assert s.step(big + 5) is True  # estimate big + 1; big + 5 > big + 1
    assert s.estimate() == big + 1


def test_float_first_value_exact() -> None:
    s = AnomalyState(1, 1)
    s.step(0.1)
    assert s.estimate() == Fraction(0.1)
    assert s.step(0.1) is False  # equal: unchanged, not greater


def test_unhashable_group_never_raises() -> None:
    s = AnomalyState(1, 2)
    assert s.step(5, ["not", "hashable"]) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(("alpha", "beta"), [(0, 1), (1, 0), (-1, 2), (True, 2), (1, "2"),
                                             (float("nan"), 1), (1, float("inf")), (None, 1)])
def test_bad_parameters(alpha: Any, beta: Any) -> None:
    with pytest.raises(ValueError, match="ANOMALY"):
        AnomalySpec(alpha, beta)
    with pytest.raises(ValueError, match="ANOMALY"):
        AnomalyState(alpha, beta)


def test_bad_group_cap() -> None:
    with pytest.raises(ValueError, match="group_cap"):
        AnomalyState(1, 2, 0)


def _reference(alpha: Any, beta: Any, values: list[Any], groups: list[Any]) -> list[bool]:
    est: dict[Any, Fraction] = {}
    out = []
    for v, g in zip(values, groups, strict=True):
        if type(v) not in (int, float) or v != v or v in (float("inf"), float("-inf")):
            out.append(False)
            continue
        x = Fraction(v)
        if g not in est:
            est[g] = x
        elif x > est[g]:
            est[g] += Fraction(alpha)
        elif x < est[g]:
            est[g] -= Fraction(alpha)
        out.append(x > Fraction(beta) * est[g])
    return out


VALUES = st.one_of(
    st.integers(-1000, 1000),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([None, "5", True, False, [1], {"a": 1}, float("nan")]),
)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.integers(1, 10), st.sampled_from([0.1, 0.5, 2.5])),
    st.one_of(st.integers(1, 5), st.sampled_from([0.5, 1.5, 2.5])),
    st.lists(st.tuples(VALUES, st.sampled_from([None, "a", "b", ("k", 1)])), max_size=40),
)
def test_matches_exact_reference(alpha: Any, beta: Any, rows: list[tuple[Any, Any]]) -> None:
    s = AnomalyState(alpha, beta)
    values = [v for v, _ in rows]
    groups = [g for _, g in rows]
    got = [s.step(v, g) for v, g in rows]
    assert got == _reference(alpha, beta, values, groups)


# --------------------------------------------------------------------------- rows of any mapping type


class _Event(Mapping[str, Any]):
    """A host's own read-only mapping type (what the reference failed on)."""

    def __init__(self, **kw: Any) -> None:
        self._d = kw

    def __getitem__(self, k: str) -> Any:
        return self._d[k]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)


class _Seq(Sequence[Any]):
    def __init__(self, *items: Any) -> None:
        self._items = items

    def __getitem__(self, i: Any) -> Any:
        return self._items[i]

    def __len__(self) -> int:
        return len(self._items)


@pytest.mark.parametrize("row", [
    {"latency": 5, "x": 1},
    MappingProxyType({"latency": 5, "x": 1}),
    UserDict({"latency": 5, "x": 1}),
    _Event(latency=5, x=1),
])
def test_mark_any_mapping(row: Any) -> None:
    out = mark(row, True)
    assert type(out) is dict
    assert out == {"latency": 5, "x": 1, ANOMALOUS: True}
    assert list(out) == ["latency", "x", ANOMALOUS]
    assert ANOMALOUS not in row  # never mutated


def test_mark_keeps_an_existing_member_in_place() -> None:
    row = {"anomalous": "user data", "v": 1}
    assert list(mark(row, False).items()) == [("anomalous", False), ("v", 1)]
    assert row["anomalous"] == "user data"


def test_mark_non_mapping() -> None:
    assert mark(None, False) == {ANOMALOUS: False}
    assert mark([1, 2], True) == {ANOMALOUS: True}


def test_resolve_any() -> None:
    ev = _Event(m=MappingProxyType({"l": _Seq(1, (2, 3))}), s="abc", n=None)
    assert resolve_any(ev, ("m", "l", 0)) == 1
    assert resolve_any(ev, ("m", "l", -1, 1)) == 3
    assert resolve_any(ev, ("m", "l", 5)) is None
    assert resolve_any(ev, ("s", 0)) is None  # strings are not indexable
    assert resolve_any(ev, ("n", "x")) is None
    assert resolve_any(ev, ("m", 0)) is None
    assert resolve_any({"a": [1]}, ("a", "0")) is None
    assert resolve_any(ev, ("missing",)) is None
    assert resolve_any(ev, ()) is ev


def test_select_star_on_a_host_mapping_end_to_end() -> None:
    # The reference only managed `select *` on its own map type; here any mapping works.
    s = AnomalyState(1, 2.5)
    events = [_Event(v=11), MappingProxyType({"v": 10.1}), UserDict({"v": 12.5}), _Event(v=200), _Event()]
    rows = [mark(e, s.step(resolve_any(e, ("v",)))) for e in events]
    assert [r[ANOMALOUS] for r in rows] == [False, False, False, True, False]
    assert rows[3] == {"v": 200, ANOMALOUS: True}


# --------------------------------------------------------------------------- AnomalyRunner


def _clause(text: str) -> Any:
    from mantis_py.query.syntax.parser import parse

    q = parse(text)
    assert q.anomaly is not None
    return q


def test_runner_plain_rows_on_projected_row_and_alias() -> None:
    q = _clause("select latency as 'l', host from api anomaly mad l 1 2.5")
    r = AnomalyRunner(q.anomaly, aggregate=False)
    rows = [{"l": 11, "host": "a"}, {"l": 10.1}, {"host": "b"}, {"l": 12.5}, {"l": 200}]
    out = r.mark_rows(rows)
    assert [o[ANOMALOUS] for o in out] == [False, False, False, False, True]
    assert out[0] == {"l": 11, "host": "a", ANOMALOUS: False}
    assert ANOMALOUS not in rows[0]


def test_runner_plain_path_on_nested_row() -> None:
    q = _clause("select e['m']['lat'] from api anomaly mad e['m']['lat'] 1 1")
    r = AnomalyRunner(q.anomaly, aggregate=False)
    out = r.mark_rows([{"m": {"lat": 5}}, {"m": {"lat": 9}}])
    assert [o[ANOMALOUS] for o in out] == [False, True]


def test_runner_plain_non_property_operand_is_never_anomalous() -> None:
    q = _clause("select * from api anomaly mad 5 1 1")
    r = AnomalyRunner(q.anomaly, aggregate=False)
    assert [o[ANOMALOUS] for o in r.mark_rows([{"a": 1}, {"a": 100}])] == [False, False]


def _agg_runner(text: str, columns: list[tuple[str, Any, bool]]) -> AnomalyRunner:
    q = _clause(text)
    return AnomalyRunner(q.anomaly, aggregate=True, columns=columns, group_by=q.group_by)


def test_runner_aggregate_column_key_call_and_groups() -> None:
    from mantis_py.query.syntax import ast

    count = ast.Call("count", (ast.STAR,))
    cols = [("country", ast.Property(("country",)), False), ("n", count, False),
            ("AVERAGE(x)", ast.Call("average", (ast.Property(("x",)),)), True)]
    base = "select country, count(*) as n from x window 10 group by country "
    for clause in ("anomaly mad n 1 2", "anomaly mad count(*) 1 2", "anomaly mad e['n'] 1 2"):
        r = _agg_runner(base + clause, cols)
        # window 1: US 10, BR 100; window 2: US 30 (anomalous vs its own 11), BR 100
        assert r.flags([([ "US", 10, 0], ("US",)), (["BR", 100, 0], ("BR",))]) == [False, False]
        assert r.flags([(["US", 30, 0], ("US",)), (["BR", 100, 0], ("BR",))]) == [True, False]
    # a GROUP BY key that is not a column
    r = _agg_runner("select count(*) as n from x window 10 group by v anomaly mad v 1 2",
                    [("n", count, False)])
    assert r.flags([([1], (10,)), ([1], (50,))]) == [False, False]  # two groups, two firsts
    # hidden columns and unknown names give false
    r = _agg_runner("select count(*) as n from x window 10 anomaly mad e['AVERAGE(x)'] 1 2", cols)
    assert r.flags([(["US", 1, 99], ())]) == [False]
    r = _agg_runner("select count(*) as n from x window 10 anomaly mad nope 1 2", cols)
    assert r.flags([(["US", 1, 99], ())]) == [False]


def test_runner_aggregate_dotted_column_and_rest() -> None:
    from mantis_py.query.syntax import ast

    cols = [("geo.country", ast.Property(("geo", "country")), False),
            ("s", ast.Call("list", (ast.Property(("x",)),)), False)]
    r = _agg_runner("select e['geo']['country'], list(x) as s from x window 10 "
                    "anomaly mad e['s'][0] 1 2", cols)
    assert r.flags([(["US", [5]], ()), (["US", [50]], ()), (["US", None], ())]) == [False, True, False]
    r = _agg_runner("select e['geo']['country'], list(x) as s from x window 10 "
                    "anomaly mad e['geo']['country'] 1 2", cols)
    assert r._col == 0
