"""The merger's incremental membership: O(1) work per part, the same coverage and emission as
walking every member (the old way), duplicates dropped and counted, early and tick emission."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from mantis_py.query import prepare
from mantis_py.query.run.engine import Notice, Rows

Q = "select k, count(*) as n from s window 1 group by k"


def part_for(member: int, k: int, n: int = 1) -> dict[str, Any]:
    p = prepare(Q, mode="live")
    src = p.source(app="s", instance=f"i{member}")
    src.start(float(k))
    for j in range(n):
        src.offer({"k": f"g{(member + j) % 3}"}, k + 0.5)
    (part,) = src.poll(k + 1.0)
    return json.loads(json.dumps(part))


@pytest.mark.parametrize("members", [100, 1000, 3000])
def test_work_per_part_does_not_grow_with_members(members: int) -> None:
    m = prepare(Q, mode="live").merger(start=100.0, grace=5.0)
    for i in range(members):
        m.add_member(f"m{i}", 99.0)
    part = part_for(0, 100)
    ready = []
    for window in range(100, 103):
        for i in range(members):
            ready.append(m.receive_part(f"m{i}", {**part, "k": window}, window + 1.2))
        out = m.poll(window + 1.2)  # the caller polls when receive_part said so
        assert isinstance(out[0], Rows)
        assert out[0].window == (window, window + 1)
    # the last part of each window completed it, no other part did
    assert sum(ready) == 3
    assert ready[members - 1]
    assert ready[-1]
    parts = 3 * members
    # each member record is touched a bounded number of times overall (promotion once), not
    # once per part: the old merger walked every member for every part (members² per window)
    assert m.members.visits <= members + 3 * 4, (m.members.visits, parts)
    assert m.statistics()["coverage"] == {"reporting": members, "expected": members}


def naive_coverage(history: dict[str, list[list[float | None]]], reported: set[str],
                   start: float) -> tuple[int, int, bool]:
    """The old merger's rule, walking every member: (reporting, expected, all waited reported)."""
    expected, waiting = set(), set()
    for name, recs in history.items():
        for added, removed in recs:
            if added is not None and added <= start and (removed is None or removed > start):
                expected.add(name)
                if removed is None:
                    waiting.add(name)
    return len(reported & expected), len(expected), bool(expected) and waiting <= reported


@pytest.mark.parametrize("seed", range(12))
def test_random_joins_leaves_and_parts_match_the_naive_rule(seed: int) -> None:
    rng = random.Random(seed)
    grace = 3.0
    m = prepare(Q, mode="live").merger(start=10.0, grace=grace)
    history: dict[str, list[list[float | None]]] = {}
    live: set[str] = set()
    names = [f"m{i}" for i in range(12)]
    sent: dict[int, set[str]] = {}
    now = 9.0
    got: list[tuple[tuple[int, int], tuple[int, int]]] = []
    want: list[tuple[tuple[int, int], tuple[int, int]]] = []
    expect_counts: dict[int, int] = {}
    while now < 40.0:
        now = round(now + rng.choice((0.05, 0.1, 0.25, 0.4)), 2)
        name = rng.choice(names)
        roll = rng.random()
        if roll < 0.15 and name not in live:
            live.add(name)
            history.setdefault(name, []).append([now, None])
            m.add_member(name, now)
        elif roll < 0.25 and name in live:
            live.discard(name)
            history[name][-1][1] = now
            m.remove_member(name, now)
        elif name in live and now >= 11.0:
            k = int(now) - 1 - rng.choice((0, 0, 0, 1))
            if k >= m._next_k and name not in sent.get(k, set()):
                sent.setdefault(k, set()).add(name)
                expect_counts[k] = expect_counts.get(k, 0) + 1
                m.receive_part(name, {**part_for(1, 0), "k": k}, now)
        # what must go out now, by the naive rule, before the merger polls
        k = m._next_k
        while True:
            start, end = float(k), float(k + 1)
            rep, exp, complete = naive_coverage(history, sent.get(k, set()), start)
            if now >= end + grace or (now >= end and complete):
                want.append(((k, k + 1), (rep, exp)))
                k += 1
            else:
                break
        # a window's coverage: the notice right after its rows when some member is missing
        for o in m.poll(now):
            if isinstance(o, Rows):
                total = sum(r["n"] for r in o.rows)
                assert total == expect_counts.get(o.window[0], 0)  # type: ignore[index]
                got.append((o.window, "full"))  # type: ignore[arg-type]
            elif isinstance(o, Notice) and o.name == "coverage":
                rep, exp = o.detail.split()[0].split("/")
                got[-1] = (got[-1][0], (int(rep), int(exp)))  # type: ignore[assignment]
    want = [(w, "full" if rep == exp else (rep, exp))  # type: ignore[misc]
            for w, (rep, exp) in want]
    assert got == want
    assert len(got) >= 20


def test_second_part_for_the_same_member_and_window_is_dropped_and_counted() -> None:
    m = prepare(Q, mode="live").merger(start=100.0, grace=5.0)
    m.add_member("a", 99.0)
    m.add_member("b", 99.0)
    pa = part_for(1, 100, n=3)
    assert m.receive_part("a", pa, 101.1) is False
    assert m.receive_part("a", pa, 101.2) is False  # again (a replay after a reconnect)
    assert m.receive_part("b", part_for(2, 100, n=1), 101.3) is True
    out = m.poll(101.3)
    assert sum(r["n"] for r in out[0].rows) == 4  # a's part merged once
    assert Notice("duplicate-parts", "1 parts", 1, (100, 101)) in out


def test_window_goes_out_when_the_last_expected_part_arrives_or_on_the_tick() -> None:
    m = prepare(Q, mode="live").merger(start=100.0, grace=5.0)
    for name in ("a", "b", "c"):
        m.add_member(name, 99.0)
    m.add_member("late-joiner", 100.5)  # joined mid-window: not waited for in window 100
    assert m.receive_part("a", part_for(1, 100), 101.1) is False
    assert m.receive_part("b", part_for(2, 100), 101.1) is False
    assert m.poll(101.2) == []
    m.remove_member("c", 101.5)  # c leaves: nobody left to wait for, but it stays expected
    assert next(o for o in m.poll(101.5) if isinstance(o, Rows)).window == (100, 101)
    assert m.statistics()["coverage"] == {"reporting": 2, "expected": 3}
    # window 101: the joiner is waited for now; without its part the window waits for the grace
    assert m.receive_part("a", part_for(1, 101), 102.1) is False
    assert m.receive_part("b", part_for(2, 101), 102.1) is False
    assert m.poll(106.9) == []
    out = m.poll(107.0)  # the tick after end + grace
    assert out[0].window == (101, 102)
    # expected: a, b, the joiner, and c (live when the window began, gone since)
    assert m.statistics()["coverage"] == {"reporting": 2, "expected": 4}


def test_a_member_that_reconnects_is_one_member() -> None:
    m = prepare(Q, mode="live").merger(start=100.0, grace=5.0)
    m.add_member("a", 99.0)
    m.add_member("a", 99.5)  # a second add while live changes nothing
    m.remove_member("a", 100.3)
    m.add_member("a", 100.4)  # back within the window
    m.receive_part("a", part_for(1, 100), 101.1)
    out = m.poll(106.0)
    assert out[0].window == (100, 101)
    assert m.statistics()["coverage"] == {"reporting": 1, "expected": 1}
