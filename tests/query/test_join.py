"""JOIN core (MQL.md §3.19): fixture cases, the brute-force property, bounded memory, counters."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mantis_py.query.run.join import (
    JoinCore,
    JoinSpec,
    Pair,
    Side,
    brute_force_join,
    overlay,
)
from mantis_py.query.semantics.values import equals, resolve
from mantis_py.query.syntax.parser import parse

FIXTURES = Path(__file__).parent / "fixtures" / "join_cases.jsonl"
CASES = [json.loads(line) for line in FIXTURES.read_text().splitlines() if line.strip()]


def run_case(case: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, int], JoinCore]:
    """Feed a fixture's lines the way replay does: side from _app/_stream, key from ON, time
    from the time field (0 without one), order = line number."""
    spec = JoinSpec.from_query(parse(case["query"]))
    assert spec is not None
    core = spec.core(case.get("capacity", 10000))
    rows: list[dict[str, Any]] = []
    notices: dict[str, int] = {}
    tf = case["time_field"]
    for line, e in enumerate(case["events"], 1):
        side = spec.side_of_event(e)
        if side is None:
            continue
        t = e[tf] if tf is not None else 0
        for p in core.offer(side, spec.key_of(e), e, t, line):
            rows.append(overlay(p.a, p.b))
        for k, v in core.take_notices().items():
            notices[k] = notices.get(k, 0) + v
    core.finish()
    for k, v in core.take_notices().items():
        notices[k] = notices.get(k, 0) + v
    return rows, notices, core


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_fixture_case(case: dict[str, Any]) -> None:
    rows, notices, _ = run_case(case)
    assert rows == case["rows"]
    # key order too: B's members first, overlaid by A's, then A's new members
    assert [list(r) for r in rows] == [list(r) for r in case["rows"]]
    assert notices == case["notices"]


def test_reference_example_counts() -> None:
    case = CASES[0]
    _, _, core = run_case(case)
    s = core.stats()
    assert (s.a_in, s.b_in, s.pairs, s.held_a, s.held_b) == (1, 2, 1, 0, 0)
    assert s.b_unpaired == 1  # the second table2 event never paired


# --------------------------------------------------------------------------- JoinSpec


def test_spec_sides_and_key() -> None:
    spec = JoinSpec.from_query(parse("select * from play, web/log join cdn 10 seconds on e['s']['id']"))
    assert spec is not None
    assert spec.a_sources == (("play", "default"), ("web", "log"))
    assert spec.b_sources == (("cdn", "default"),)
    assert spec.seconds == 10
    assert spec.key == ("s", "id")
    assert spec.side_of("play") == "A"
    assert spec.side_of("web", "log") == "A"
    assert spec.side_of("web") is None
    assert spec.side_of("cdn", None) == "B"
    assert spec.side_of("cdn", "x") is None
    assert spec.side_of(None) is None
    assert spec.side_of(3) is None
    assert spec.side_of_event({"_app": "cdn", "_stream": None}) == "B"
    assert spec.side_of_event([1]) is None
    assert spec.key_of(MappingProxyType({"s": {"id": 4}})) == 4
    assert spec.key_of({"s": "x"}) is None
    assert JoinSpec.from_query(parse("select * from a")) is None


def test_spec_non_property_key_is_null() -> None:
    spec = JoinSpec.from_query(parse("select * from a join b 1 seconds on 'k'"))
    assert spec is not None
    assert spec.key is None
    assert spec.key_of({"k": 1}) is None


def test_overlay_any_mapping() -> None:
    assert overlay(MappingProxyType({"a": 1, "k": 2}), {"k": 0, "b": 3}) == {"k": 2, "b": 3, "a": 1}
    assert overlay({"a": 1}, None) == {"a": 1}
    assert overlay(None, {"b": 1}) == {"b": 1}


def test_bad_configuration() -> None:
    for bad in (-1, float("nan"), float("inf"), "5", True):
        with pytest.raises(ValueError, match="join bound"):
            JoinCore(bad)  # type: ignore[arg-type]
    for cap in (0, 1.5, -3):
        with pytest.raises(ValueError, match="join capacity"):
            JoinCore(5, cap)  # type: ignore[arg-type]


def test_non_numeric_times_are_ignored() -> None:
    core = JoinCore(5)
    assert not core.offer_b("k", "b", None, 1)
    assert not core.offer_b("k", "b", float("nan"), 2)
    assert not core.offer_b("k", "b", True, 3)
    assert not core.offer_a("k", "a", 0, 4)
    assert core.stats().b_in == 0
    assert core.stats().held_a == 1


def test_live_order_keys_pick_the_smallest_held_partner() -> None:
    # Live: B events can reach the gateway out of event order; among the held partners the
    # one with the smallest (t_ms, instance, seq) wins.
    core = JoinCore(5)
    core.offer_b("k", "late-arrival", 1.0, (1000, "i-2", 0))
    core.offer_b("k", "earliest", 1.0, (1000, "i-1", 7))
    core.offer_b("k", "later", 2.0, (2000, "i-1", 8))
    [p] = core.offer_a("k", "a", 3.0, (3000, "i-3", 0))
    assert p == Pair("a", "earliest", 3.0, ((3000, "i-3", 0), (3000, "i-3", 0)))


def test_advance_expires_without_events() -> None:
    core = JoinCore(10)
    core.offer_a("k", "a", 100, 1)
    core.offer_b("j", "b", 100, 2)
    core.advance(105)
    assert core.stats().held_a == 1
    core.advance(110.5)
    s = core.stats()
    assert (s.held_a, s.held_b, s.a_unpaired, s.b_unpaired) == (0, 0, 1, 1)
    assert core.take_notices() == {"join-unpaired": 1}
    assert core.take_notices() == {}
    core.advance(None)  # ignored
    core.advance(50)  # the clock never goes back
    assert core.clock == 110.5


def test_paired_b_that_expires_is_not_unpaired() -> None:
    core = JoinCore(1)
    core.offer_b("k", "b", 0, 1)
    assert len(core.offer_a("k", "a", 0, 2)) == 1
    core.advance(5)
    assert core.stats().b_unpaired == 0


def test_joined_time_is_the_later_of_the_two() -> None:
    core = JoinCore(5)
    core.offer_a("k", "a", 7, 1)
    [p] = core.offer_b("k", "b", 9.5, 2)
    assert p.t == 9.5
    assert p.order == (2, 1)
    core.offer_b("j", "b2", 12, 3)
    [p] = core.offer_a("j", "a2", 10, 4)
    assert p.t == 12


# --------------------------------------------------------------------------- properties

KEYS = st.sampled_from([None, 0, 1, 1.0, True, False, "1", "a", "b", [1], [1.0], {"x": 1}])
TIMES = st.one_of(st.integers(0, 30), st.sampled_from([0.5, 2.25, 7.75, 10.0, 12.5]))
EVENT = st.tuples(st.sampled_from(["A", "B"]), KEYS, TIMES)


def _run(events: list[tuple[Side, Any, Any]], seconds: int | float, capacity: int
         ) -> tuple[list[tuple[int, int]], JoinCore]:
    core = JoinCore(seconds, capacity)
    out: list[tuple[int, int]] = []
    for i, (side, key, t) in enumerate(events):
        for p in core.offer(side, key, i, t, i):
            out.append((p.a, p.b))
        _check_bounded(core)
    return out, core


def _check_bounded(core: JoinCore) -> None:
    for store in (core._a, core._b):
        assert store.live <= core.capacity
        assert len(store.arrival) + store.in_buckets <= 4 * store.live + 136


@settings(max_examples=300, deadline=None)
@given(st.lists(EVENT, max_size=40), st.sampled_from([0, 1, 2.5, 5, 10]), st.booleans())
def test_join_equals_brute_force_nested_loop(events: list[Any], seconds: Any, in_time_order: bool) -> None:
    if in_time_order:
        events = sorted(events, key=lambda e: e[2])
    got, core = _run(events, seconds, 10000)
    want = brute_force_join([(s, k, t, i) for i, (s, k, t) in enumerate(events)], seconds)
    assert sorted(got) == sorted(want)
    # emission order: by completing event, then A order
    assert got == sorted(got, key=lambda p: (max(p), p[0]))
    # every pair really is a pair (independent of the oracle)
    for ia, ib in got:
        sa, ka, ta = events[ia]
        sb, kb, tb = events[ib]
        assert (sa, sb) == ("A", "B")
        assert equals(ka, kb)
        assert abs(ta - tb) <= seconds
    # accounting: every A paired, unpaired or (never here) evicted
    core.finish()
    s = core.stats()
    n_a = sum(1 for e in events if e[0] == "A")
    assert s.a_in == n_a == s.pairs + s.a_unpaired
    assert s.a_evicted == 0
    paired_b = {ib for _, ib in got}
    assert s.b_unpaired == sum(1 for i, e in enumerate(events) if e[0] == "B" and i not in paired_b)


@settings(max_examples=200, deadline=None)
@given(st.lists(EVENT, max_size=60), st.sampled_from([0, 3, 10]), st.integers(1, 4))
def test_small_capacity_stays_bounded_and_sound(events: list[Any], seconds: Any, capacity: int) -> None:
    got, core = _run(events, seconds, capacity)
    s = core.stats()
    assert s.peak_a <= capacity
    assert s.peak_b <= capacity
    for ia, ib in got:
        assert equals(events[ia][1], events[ib][1])
        assert abs(events[ia][2] - events[ib][2]) <= seconds
    assert len({ia for ia, _ in got}) == len(got)  # an A pairs at most once
    if s.a_evicted == 0 and s.b_evicted == 0:
        want = brute_force_join([(sd, k, t, i) for i, (sd, k, t) in enumerate(events)], seconds)
        assert sorted(got) == sorted(want)
    core.finish()
    s = core.stats()
    assert s.a_in == s.pairs + s.a_unpaired + s.a_evicted
    assert core.held() == 0


def test_flood_memory_stays_within_bound() -> None:
    rng = random.Random(6)
    core = JoinCore(60, capacity=1000)
    t = 0.0
    pairs = 0
    for i in range(50_000):
        t += 0.001
        side: Side = "A" if rng.random() < 0.5 else "B"
        pairs += len(core.offer(side, rng.randrange(1_000_000), {"i": i}, t, i))
        if i % 997 == 0:
            _check_bounded(core)
    s = core.stats()
    assert s.peak_a == 1000
    assert s.peak_b == 1000
    assert s.a_evicted + s.b_evicted > 40_000
    assert core.take_notices()["join-evicted"] == s.a_evicted + s.b_evicted
    _check_bounded(core)


def test_unique_keys_expire_and_free_their_buckets() -> None:
    core = JoinCore(1)
    for i in range(20_000):
        core.offer_b(i, i, i * 0.5, i)
        _check_bounded(core)
    assert core.stats().held_b <= 3
    assert core.stats().b_unpaired >= 19_990
    assert len(core._b.buckets) <= 4 * 3 + 136


def test_same_key_flood_is_linear() -> None:
    # every A of one key waits, then one B pairs them all; a flood of one key must not go
    # quadratic (bucket scans touch each entry a bounded number of times)
    core = JoinCore(1000, capacity=5000)
    for i in range(5000):
        core.offer_a(None, i, 0, i)
    out = core.offer_b(None, "b", 1, 5000)
    assert [p.a for p in out] == list(range(5000))
    for i in range(20_000):
        assert len(core.offer_a(None, i, 2, 6000 + i)) == 1


def test_resolve_matches_key_of() -> None:
    spec = JoinSpec.from_query(parse("select * from a join b 1 seconds on e['x'][0]"))
    assert spec is not None
    ev = {"x": [5, 6]}
    assert spec.key_of(ev) == resolve(ev, (("x"), 0)) == 5


# --------------------------------------------------------------------------- engine stages


def test_replay_stage() -> None:
    from mantis_py.query.run.join import ReplayJoin

    spec = JoinSpec.from_query(parse("select * from play join cdn 5 seconds on sid"))
    assert spec is not None
    st_ = ReplayJoin(spec)
    b = {"_app": "cdn", "sid": "x", "bytes": 1}
    a = {"_app": "play", "sid": "x"}
    assert st_.side({"_app": "zzz"}) is None
    assert not st_.offer("B", b, 10, 1)
    assert st_.offer("A", a, 12, 2) == [({"_app": "play", "sid": "x", "bytes": 1}, 12, (2, 2))]
    st_.advance(100)
    st_.offer("A", {"_app": "play", "sid": "y"}, 100, 3)
    st_.finish()
    assert st_.take_notices() == {"join-unpaired": 1}


def test_live_stage_records() -> None:
    from mantis_py.query.run.join import LiveJoin

    spec = JoinSpec.from_query(parse("select * from play join cdn/log 2 seconds on sid"))
    assert spec is not None
    lj = LiveJoin(spec, capacity=10)
    meta_a = {"_app": "play", "_instance": "i-a", "_zone": None, "_stream": "default"}
    meta_b = {"_app": "cdn", "_instance": "i-b", "_zone": "z", "_stream": "log"}
    ra = {"t": 1000, "i": "i-a", "s": 0, "e": {"sid": "x", "v": 1}, "m": meta_a}
    rb = {"t": 2500, "i": "i-b", "s": 4, "e": {"sid": "x", "bytes": 9, "v": 0}, "m": meta_b}
    other = {"t": 1000, "i": "i-c", "s": 0, "e": {"sid": "x"}, "m": {**meta_b, "_stream": "default"}}
    assert lj.offer_record(ra) == []
    assert lj.offer_record(other) == []
    [j] = lj.offer_record(rb)
    assert j == {"t": 2500, "i": "i-b", "s": 4, "j": (1000, "i-a", 0),
                 "e": {"sid": "x", "bytes": 9, "v": 1},
                 "m": {"_app": "play", "_instance": "i-a", "_zone": None, "_stream": "default"}}
    # the bound is exact in milliseconds: 3001 ms later is too late
    lj.offer_record({**ra, "t": 10_000, "s": 1})
    assert lj.offer_record({**rb, "t": 13_001, "s": 5}) == []
    lj.advance_ms(20_000)
    assert lj.take_notices() == {"join-unpaired": 1}
    assert lj.offer_record({"t": "bad", "e": {}, "m": meta_a}) == []


def test_paired_waiting_events_do_not_pile_up() -> None:
    # A events wait, B events pair them at once: the dead A entries must not accumulate for
    # the whole bound (60 s here) beyond the structure bound
    core = JoinCore(60, capacity=100)
    for i in range(30_000):
        t = i * 0.001
        core.offer_a(i, i, t, 2 * i)
        assert len(core.offer_b(i, i, t, 2 * i + 1)) == 1
        if i % 101 == 0:
            _check_bounded(core)
    assert core.stats().a_evicted == 0


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_fixture_case_through_replay_stage(case: dict[str, Any]) -> None:
    from mantis_py.query.run.join import ReplayJoin

    spec = JoinSpec.from_query(parse(case["query"]))
    assert spec is not None
    rj = ReplayJoin(spec, case.get("capacity", 10000))
    rows = []
    tf = case["time_field"]
    for line, e in enumerate(case["events"], 1):
        side = rj.side(e)
        assert side == spec.side_of_event(e)
        assert side == rj.side(MappingProxyType(e))
        if side is not None:
            rows.extend(r for r, _, _ in rj.offer(side, e, e[tf] if tf else 0, line))
    rj.finish()
    assert rows == case["rows"]
    # feed() = side() + offer() in one call
    rj2 = ReplayJoin(spec, case.get("capacity", 10000))
    fed = []
    for line, e in enumerate(case["events"], 1):
        fed.extend(r for r, _, _ in rj2.feed(e, e[tf] if tf else 0, line))
    assert fed == case["rows"]
    rj3 = ReplayJoin(spec, case.get("capacity", 10000))
    fed = []
    for line, e in enumerate(case["events"], 1):
        fed.extend(r for r, _, _ in rj3.feed(MappingProxyType(e), e[tf] if tf else 0, line))
    assert fed == case["rows"]
