"""The single-node engine over the fixture cases (tour T1-T12 and the example tables of §3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mantis_py.query.run.engine import prepare
from mantis_py.query.run.replay import ReplayEngine, replay_rows

CASES = [json.loads(line) for line in (Path(__file__).parent / "fixtures" / "cases.jsonl").read_text().splitlines() if line.strip()]


def run_case(query: str, events: list[dict[str, Any]], time_field: str | None, seed: int = 0) -> tuple[list[Any], list[str]]:
    p = prepare(query, mode="replay")
    rows: list[Any] = []
    errs: list[str] = []
    eng = ReplayEngine(
        p,
        on_rows=lambda scope, rs: rows.extend(rs),
        on_notice=lambda scope, name, detail: errs.append(f"notice: {scope}: {name}: {detail}"),
        on_late=lambda line, t: errs.append(f"late {line}"),
        seed=seed,
    )
    for i, e in enumerate(events, 1):
        t = e.get(time_field) if time_field else 0
        eng.feed(e, t, i)
        if eng.done:
            break
    eng.finish()
    return rows, errs


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_fixture_case(case: dict[str, Any]) -> None:
    rows, _ = run_case(case["query"], case["events"], case["time_field"])
    assert rows == case["rows"]
    # key order is part of the contract (§3.6, §3.7.1)
    assert [list(r) for r in rows] == [list(r) for r in case["rows"]]


def test_late_event_is_reported_and_skipped() -> None:
    rows, errs = run_case("select count(*) as n from s window 10", [{"ts": 100}, {"ts": 115}, {"ts": 105}], "ts")
    assert rows == [{"n": 1}, {"n": 1}]
    assert errs == ["late 3"]


def test_event_before_first_window_is_late() -> None:
    rows, errs = run_case("select count(*) as n from s window 10", [{"ts": 100}, {"ts": 95}], "ts")
    assert rows == [{"n": 1}]
    assert errs == ["late 2"]


def test_grouped_query_skips_empty_windows_and_long_gaps_quickly() -> None:
    rows, _ = run_case("select k, count(*) as n from s window 1 group by k", [{"ts": 0, "k": 1}, {"ts": 10**9, "k": 2}], "ts")
    assert rows == [{"k": 1, "n": 1}, {"k": 2, "n": 1}]


def test_no_valid_line_emits_nothing_for_windows() -> None:
    assert run_case("select count(*) as n from s window 10", [], "ts")[0] == []


def test_limit_on_plain_stream_completes() -> None:
    p = prepare("select a from s limit 1", mode="replay")
    out: list[Any] = []
    eng = ReplayEngine(p, on_rows=lambda s, r: out.extend(r))
    eng.feed({"a": 1}, 0, 1)
    assert eng.done
    eng.feed({"a": 2}, 0, 2)
    eng.finish()
    assert out == [{"a": 1}]


def test_order_by_without_window_sorts_at_end() -> None:
    rows = replay_rows(prepare("select a from s order by a desc limit 2"), [({"a": i}, 0) for i in range(5)])
    assert [r for _, r in rows] == [{"a": 4}, {"a": 3}]


def test_group_cap_folds_into_other() -> None:
    from mantis_py.query.state.caps import Caps

    p = prepare("select k, count(*) as n from s group by k", mode="replay")
    out: list[Any] = []
    notes: list[str] = []
    eng = ReplayEngine(p, on_rows=lambda s, r: out.extend(r), on_notice=lambda s, n, d: notes.append(f"{s}: {n}: {d}"), caps=Caps(group_cap=2))
    for i, k in enumerate(["a", "b", "c", "a", "d"], 1):
        eng.feed({"k": k}, 0, i)
    eng.finish()
    assert out == [{"k": "a", "n": 2}, {"k": "b", "n": 1}, {"k": "__other__", "n": 2}]
    assert notes == ["result: groups-folded: 2 events"]


def test_row_cap_truncates_plain_window() -> None:
    from mantis_py.query.state.caps import Caps

    p = prepare("select a from s window 10", mode="replay")
    out: list[Any] = []
    notes: list[str] = []
    eng = ReplayEngine(p, on_rows=lambda s, r: out.extend(r), on_notice=lambda s, n, d: notes.append(f"{s}: {n}: {d}"), caps=Caps(row_cap=2))
    for i in range(3):
        eng.feed({"a": i}, 1, i + 1)
    eng.finish()
    assert out == [{"a": 0}, {"a": 1}]
    assert notes == ["window [0, 10): rows-truncated: 1 rows"]


def test_random_sampling_is_seeded_and_draws_once_per_line() -> None:
    import random

    q = "select a from s sample 50%"
    events = [({"a": i}, 0) for i in range(200)]
    got = [r["a"] for _, r in replay_rows(prepare(q), events, seed=7)]
    rng = random.Random(7)
    assert got == [i for i in range(200) if rng.randrange(10000) < 5000]


def test_evaluation_never_raises_on_odd_values() -> None:
    from mql_gen import VALUES

    q = "select k, count(*) as n, sum(a), list(distinct a), p50(a), max(a) from s where a == a or e['l'][*] > 1 group by k order by n"
    events = [({"a": v, "k": w, "l": [v, w]}, 0) for v in VALUES for w in VALUES]
    rows = replay_rows(prepare(q), events)
    assert rows


@pytest.mark.parametrize("seed", range(40))
def test_feed_batch_equals_feed(seed: int) -> None:
    import random

    from mql_gen import random_aggregate_query, random_event, random_plain_query

    rng = random.Random(seed)
    kind = rng.randrange(4)
    if kind == 0:
        text = random_plain_query(rng)
    elif kind == 1:
        text = random_aggregate_query(rng, rng.choice(["window 10", "window 1", "window 10 5"]))
    elif kind == 2:
        text = random_aggregate_query(rng, "").replace("  ", " ")
    else:
        text = random_plain_query(rng) + " window 5"
    events = [random_event(rng) for _ in range(rng.randrange(60))]
    times = []
    t = 100.0
    for _ in events:
        t += rng.choice([0, 0.5, 3, 11, -4])  # some late events too
        times.append(t)
    p = prepare(text)

    def run(batch: bool) -> tuple[list[Any], list[Any]]:
        rows: list[Any] = []
        other: list[Any] = []
        eng = ReplayEngine(p, on_rows=lambda s, r: rows.extend((s, x) for x in r),
                           on_notice=lambda *a: other.append(a), on_late=lambda *a: other.append(a))
        if batch:
            cut = rng.randrange(len(events) + 1)
            lines = list(range(1, len(events) + 1))
            eng.feed_batch(events[:cut], times[:cut], lines[:cut])
            eng.feed_batch(events[cut:], times[cut:], lines[cut:])
        else:
            for i, e in enumerate(events):
                eng.feed(e, times[i], i + 1)
                if eng.done:
                    break
        eng.finish()
        return rows, other

    assert run(True) == run(False), text


def test_value_cap_notice_in_replay() -> None:
    from mantis_py.query.state.caps import Caps

    p = prepare("select list(a) as l, count(distinct a) as d from s window 10", mode="replay")
    out: list[Any] = []
    notes: list[str] = []
    eng = ReplayEngine(p, on_rows=lambda s, r: out.extend(r), on_notice=lambda s, n, d: notes.append(f"notice: {s}: {n}: {d}"), caps=Caps(value_cap=2))
    for i in range(4):
        eng.feed({"a": i}, 1, i + 1)
    eng.finish()
    assert out == [{"l": [0, 1], "d": 2}]
    assert notes
    assert all(n.startswith("notice: window [0, 10): values-truncated: ") for n in notes)
