"""Aggregates and their partial states (MQL.md §3.7.3–§3.7.8, §4.3, §4.4)."""

from __future__ import annotations

import math
import random
from fractions import Fraction
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mantis_py.query.state.aggregates import (
    PERCENTILE_FUNCTIONS,
    Aggregate,
    decode_value,
    encode_value,
    make_aggregate,
    make_first,
)
from mantis_py.query.state.caps import DEFAULT_CAPS, Caps

NAN = float("nan")
ALL_NAMES = ["count", "sum", "average", "min", "max", "list", *PERCENTILE_FUNCTIONS, "percentile"]


def strict_eq(a: Any, b: Any) -> bool:
    """Equal with the same types everywhere (1 is not 1.0, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return repr(a) == repr(b)
    if type(a) is list:
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(strict_eq(a[k], b[k]) for k in a)
    return bool(a == b)


def run(agg: Aggregate, values: list[Any], *, offset: int = 0) -> Any:
    s = agg.create()
    for i, v in enumerate(values):
        s = agg.add(s, v, (offset + i,))
    return s


def result(name: str, values: list[Any], **kw: Any) -> Any:
    agg = make_aggregate(name, **kw)
    return agg.result(run(agg, values))


def roundtrip(agg: Aggregate, state: Any) -> Any:
    return agg.decode(orjson.loads(orjson.dumps(agg.encode(state))))


# --------------------------------------------------------------------------- §3.7.3


def test_functions_table() -> None:
    vals = [1, "2", True, 3.5, None, [1], {"a": 1}]
    assert result("count", vals) == 6
    assert result("count", [True] * 4) == 4  # count(*) / count(literal): caller passes True
    assert strict_eq(result("sum", vals), 4.5)
    assert strict_eq(result("sum", [1, 2, "x"]), 3)
    assert strict_eq(result("average", vals), 2.25)
    assert strict_eq(result("min", vals), 1)
    assert strict_eq(result("max", vals), 3.5)
    assert result("list", vals) == [1, "2", True, 3.5, [1], {"a": 1}]


def test_empty_batch() -> None:
    assert strict_eq(result("count", []), 0)
    assert strict_eq(result("sum", []), 0)
    assert strict_eq(result("sum", ["a", None]), 0)
    for name in ["average", "min", "max", "list", *PERCENTILE_FUNCTIONS]:
        assert result(name, []) is None
        assert result(name, [None, "x", True]) is None or name == "list"
    assert result("percentile", [], q=50) is None
    assert make_first().result(make_first().create()) is None


# --------------------------------------------------------------------------- §3.7.4

PCT_TABLE = [
    ([5, 6], [5, 6, 6, 5, 6]),
    ([5, 6, 7], [6, 7, 7, 5, 7]),
    (list(range(100)), [49, 89, 98, 0, 99]),
    ([3], [3, 3, 3, 3, 3]),
    ([4, 1.0, -2.5, 1], [1, 4, 4, -2.5, 4]),
    ([], [None] * 5),
]


@pytest.mark.parametrize(("numbers", "expected"), PCT_TABLE)
def test_percentile_table(numbers: list[Any], expected: list[Any]) -> None:
    got = [
        result("p50", numbers),
        result("p90", numbers),
        result("p99", numbers),
        result("percentile", numbers, q=0),
        result("percentile", numbers, q=100),
    ]
    assert all(strict_eq(g, e) for g, e in zip(got, expected, strict=True)), got


def test_percentile_details() -> None:
    assert strict_eq(result("p995", list(range(1, 201))), 199)  # ceil(99.5*200/100) = 199
    assert strict_eq(result("percentile", list(range(1, 1001)), q=99.9), 999)
    assert strict_eq(result("percentile", list(range(1, 1001)), q=Fraction(1, 3)), 4)
    assert strict_eq(result("percentile", list(range(1, 1001)), q="99.9"), 999)
    # 0.1 is taken as exactly 1/10: ceil(0.1 * 1000 / 100) = 1; the binary float would give 2
    assert strict_eq(result("percentile", list(range(1, 1001)), q=0.1), 1)
    assert strict_eq(result("p1", [7]), 7)
    assert strict_eq(result("p50", [1.0, 1]), 1)  # the int of equal numbers
    assert strict_eq(result("percentile", [1.0, 1], q=100), 1)
    assert strict_eq(result("percentile", [2.0, 1.0, 1, 2], q=75), 2)
    assert strict_eq(result("p50", [-0.0, -0.0, 5]), 0.0)
    assert strict_eq(result("p50", ["x", True, 2]), 2)
    with pytest.raises(ValueError, match="percentile"):
        make_aggregate("percentile", q=101)


def _exact_nearest_rank(nums: list[float], q: Fraction) -> float:
    s = sorted(nums)
    r = max(1, math.ceil(q * len(s) / 100))
    return s[r - 1]


def test_histogram_mode_bound_and_switch() -> None:
    rng = random.Random(7)
    nums: list[Any] = [rng.lognormvariate(0, 3) * rng.choice([-1, 1]) for _ in range(12000)]
    nums += [0, 0.0, 1e-9, 123456, -7]
    agg = make_aggregate("p50")
    s = run(agg, nums[:10000])
    assert s.vals is not None  # exact mode up to PERCENTILE_EXACT_MAX
    s = agg.add(s, nums[10000], (10000,))
    assert s.vals is None  # the 10,001st number switches to histogram mode
    for q in (0, 1, 10, 25, 50, 75, 90, 99, 99.5, 99.9, 100):
        got = result("percentile", nums, q=q)
        exact = _exact_nearest_rank(nums, Fraction(repr(float(q))))
        assert type(got) is float
        assert abs(got - exact) <= 0.001 * abs(exact) + 1e-6, (q, got, exact)
    assert make_aggregate("p50").notices(run(make_aggregate("p50"), nums)) == {}


def test_histogram_clamp_notice() -> None:
    agg = make_aggregate("p99")
    s = run(agg, [1.0] * 10000 + [1e13, -1e300, 5])
    assert agg.notices(s) == {"percentile-clamped": 2}
    assert abs(agg.result(s) - 1.0) <= 0.001 + 1e-6
    low = make_aggregate("percentile", q=0)
    assert low.result(run(low, [1.0] * 10000 + [-1e300])) == -(
        4616189618054758399 / 1_000_000
    )
    assert agg.result(roundtrip(agg, s)) == agg.result(s)


# --------------------------------------------------------------------------- §3.7.6 DISTINCT


def test_distinct() -> None:
    vals = [1, 1.0, True, "1", None, [1], [1.0], {"a": 1}, {"a": 1.0}, 2, 1]
    assert result("count", vals, distinct=True) == 6
    assert result("list", vals, distinct=True) == [1, True, "1", [1], {"a": 1}, 2]
    assert strict_eq(result("list", [1.0, 1], distinct=True), [1.0])
    assert strict_eq(result("sum", [1, 1.0, 2, 2], distinct=True), 3)
    assert strict_eq(result("sum", [1.0, 1, 2], distinct=True), 3.0)
    assert strict_eq(result("average", [2, 2, 4], distinct=True), 3.0)
    assert strict_eq(result("p50", [5, 5, 5, 6], distinct=True), 5)


# --------------------------------------------------------------------------- §3.7.7


def test_numeric_results() -> None:
    assert strict_eq(result("sum", [0.1, 0.2, 0.3]), 0.6)
    assert strict_eq(result("sum", [0.3, 0.2, 0.1]), 0.6)
    assert strict_eq(result("average", [1, 2]), 1.5)
    assert strict_eq(result("average", [2, 2]), 2.0)
    assert strict_eq(result("average", [0.1, 0.2, 0.3]), 0.2)
    assert strict_eq(result("sum", [10**30, 1]), 10**30 + 1)
    assert strict_eq(result("sum", [10**30, 1.0]), 1e30)
    assert strict_eq(result("sum", [1e308, 1e308]), None)
    assert strict_eq(result("sum", [1e308, 1e308, -1e308]), 1e308)
    assert strict_eq(result("sum", [10**400, 0.5]), None)
    assert strict_eq(result("sum", [10**400, -(10**400), 0.5]), 0.5)
    assert strict_eq(result("average", [10**400, 1]), None)
    assert strict_eq(result("sum", [1e16, 1.0, -1e16]), 1.0)
    assert strict_eq(result("sum", [-0.0]), 0.0)
    assert strict_eq(result("sum", [5e-324, 5e-324]), 1e-323)
    assert strict_eq(result("sum", [0.1] * 1000), math.fsum([0.1] * 1000))
    assert strict_eq(result("min", [1.0, 1]), 1)
    assert strict_eq(result("min", [1, 1.0]), 1)
    assert strict_eq(result("max", [4, 1.0, -2.5, 1]), 4)
    assert strict_eq(result("min", [4, 1.0, -2.5, 1]), -2.5)
    assert strict_eq(result("max", [-0.0]), 0.0)
    assert strict_eq(result("min", [0.0, -0.0]), 0.0)
    assert strict_eq(result("min", [-0.0, 0]), 0)
    assert strict_eq(result("max", [10**20, 1e20]), 10**20)


# --------------------------------------------------------------------------- §3.7.8 caps


def test_value_caps() -> None:
    vals = list(range(10001))
    lst = make_aggregate("list")
    s = run(lst, vals)
    assert lst.result(s) == vals[:10000]
    assert lst.notices(s) == {"values-truncated": 1}
    cd = make_aggregate("count", distinct=True)
    s2 = run(cd, vals)
    assert cd.result(s2) == 10000
    assert cd.notices(s2) == {"values-truncated": 1}
    assert cd.notices(run(cd, [*vals[:10000], 5])) == {}
    small = Caps(value_cap=3)
    assert make_aggregate("list", caps=small).result(run(make_aggregate("list", caps=small), [1, 2, None, 3, 4])) == [1, 2, 3]


def test_first() -> None:
    f = make_first()
    s = run(f, [None, 0, 1])
    assert strict_eq(f.result(s), 0)
    later = f.add(f.create(), "late", (5,))
    earlier = f.add(f.create(), "early", (1,))
    assert f.result(f.merge(later, earlier)) == "early"
    assert f.result(f.merge(earlier, f.create())) == "early"
    assert f.result(roundtrip(f, earlier)) == "early"


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    "value",
    [10**30, -(10**30), 2**63, -(2**63) - 1, {"$int": "5"}, {"$obj": 1}, {"a": [10**40]},
     [1.0, -0.0, 1e-300, 0.1], "$int", {"$x": {"$int": "2"}}],
    ids=range(10),
)
def test_encode_value_roundtrip(value: Any) -> None:
    back = decode_value(orjson.loads(orjson.dumps(encode_value(value))))
    assert strict_eq(back, value)


def test_order_keys_roundtrip() -> None:
    lst = make_aggregate("list")
    s = lst.add(lst.create(), "x", (1700000000000, "i-1", 3))
    back = roundtrip(lst, s)
    assert back.items == [((1700000000000, "i-1", 3), "x")]


# --------------------------------------------------------------------------- merge = single node

scalar = (
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(-1000, 1000, allow_nan=False)
    | st.sampled_from([0, 0.0, -0.0, 1, 1.0, 2, 2.0, 0.1, 0.2, 0.3, 1e308, -1e308, 5e-324, 1e13])
    | st.text(max_size=2)
)
json_value = st.recursive(
    scalar,
    lambda c: st.lists(c, max_size=2) | st.dictionaries(st.sampled_from(["a", "b", "$int"]), c, max_size=2),
    max_leaves=4,
)

SMALL = Caps(value_cap=4, percentile_exact_max=6)


def _variants() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for name in ALL_NAMES:
        kw: dict[str, Any] = {"q": 37.5} if name == "percentile" else {}
        out.append((name, kw))
        out.append((name, {**kw, "distinct": True}))
    return out


VARIANTS = _variants()


def _split_merge(agg: Aggregate, values: list[Any], rng: random.Random, parts: int) -> Any:
    assign = [rng.randrange(parts) for _ in values]
    states = []
    for p in range(parts):
        s = agg.create()
        for i, v in enumerate(values):
            if assign[i] == p:
                s = agg.add(s, v, (i,))
        states.append(roundtrip(agg, s))
    rng.shuffle(states)
    # random merge tree, with round trips through JSON in between
    while len(states) > 1:
        i = rng.randrange(len(states) - 1)
        a, b = states[i], states[i + 1]
        if rng.random() < 0.5:
            a, b = b, a
        merged = roundtrip(agg, agg.merge(a, b))
        states[i : i + 2] = [merged]
    return states[0]


@settings(max_examples=100, deadline=None)
@given(st.lists(json_value, max_size=25), st.integers(0, 2**32), st.integers(1, 5),
       st.sampled_from([DEFAULT_CAPS, SMALL]))
def test_merge_of_any_split_equals_single_node(
    values: list[Any], seed: int, parts: int, caps: Caps
) -> None:
    rng = random.Random(seed)
    for name, kw in VARIANTS:
        agg = make_aggregate(name, caps=caps, **kw)
        single = run(agg, values)
        want = agg.result(single)
        want_notices = agg.notices(single)
        merged = _split_merge(agg, values, rng, parts)
        assert strict_eq(agg.result(merged), want), (name, kw)
        assert agg.notices(merged) == want_notices, (name, kw)
    f = make_first()
    assert strict_eq(f.result(_split_merge(f, values, rng, parts)), f.result(run(f, values)))


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-10**6, 10**6),
                min_size=20, max_size=60), st.integers(0, 2**32))
def test_histogram_mode_merge_is_exact(values: list[Any], seed: int) -> None:
    caps = Caps(percentile_exact_max=10)
    rng = random.Random(seed)
    for name in ("p1", "p50", "p995"):
        agg = make_aggregate(name, caps=caps)
        want = agg.result(run(agg, values))
        assert strict_eq(agg.result(_split_merge(agg, values, rng, 4)), want)
        exact = _exact_nearest_rank(values, PERCENTILE_FUNCTIONS[name])
        assert abs(want - exact) <= 0.001 * abs(exact) + 1e-6


# --------------------------------------------------------------------------- never raises

NASTY: list[Any] = [None, True, False, 0, -0.0, NAN, float("inf"), 10**5000, -(10**400), "",
                    "\ud800", [], {}, [NAN], {"$int": "x"}, 1e308, 5e-324, [[[]]]]


@pytest.mark.parametrize(("name", "kw"), VARIANTS, ids=[f"{n}-{k}" for n, k in VARIANTS])
def test_never_raises(name: str, kw: dict[str, Any]) -> None:
    agg = make_aggregate(name, **kw)
    s = agg.create()
    for i, v in enumerate(NASTY):
        s = agg.add(s, v, (i,))
    agg.result(s)
    agg.notices(s)
    # A lone surrogate is not valid JSON text (orjson refuses it), so it cannot travel.
    s = agg.create()
    for i, v in enumerate(NASTY):
        if v != "\ud800":
            s = agg.add(s, v, (i,))
    s2 = roundtrip(agg, s)
    agg.result(agg.merge(s2, roundtrip(agg, s)))


def test_fast_histogram_recording_matches_record_value() -> None:
    from hdrh.histogram import HdrHistogram

    from mantis_py.query.state.percentiles import HIST_MAX, _record_batch

    rng = random.Random(11)
    units = [1, 2, 2047, 2048, 2049, 4095, 4096, 10**6, HIST_MAX, HIST_MAX - 1]
    units += [rng.randrange(1, HIST_MAX) for _ in range(2000)]
    units += [rng.randrange(1, 10**7) for _ in range(2000)]
    fast = HdrHistogram(1, HIST_MAX, 3)
    _record_batch(fast, units)
    slow = HdrHistogram(1, HIST_MAX, 3)
    for u in units:
        assert slow.record_value(u)
    assert list(fast.counts) == list(slow.counts)
    assert (fast.total_count, fast.min_value, fast.max_value) == (
        slow.total_count, slow.min_value, slow.max_value)
    assert fast.encode() == slow.encode()


def _reference_float(x: Fraction) -> float | None:
    try:
        f = float(x)  # correctly rounded, ties to even
    except OverflowError:
        return None
    return 0.0 if f == 0.0 else f


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False)
                | st.floats(-10, 10, allow_nan=False)
                | st.integers(-(10**20), 10**20), max_size=200))
def test_sum_and_average_are_correctly_rounded(nums: list[Any]) -> None:
    exact = sum((Fraction(v) for v in nums), Fraction(0))
    got_sum = result("sum", nums)
    if all(type(v) is int for v in nums):
        assert strict_eq(got_sum, sum(nums))
    else:
        assert strict_eq(got_sum, _reference_float(exact))
    got_avg = result("average", nums)
    if not nums:
        assert got_avg is None
    else:
        assert strict_eq(got_avg, _reference_float(exact / len(nums)))
