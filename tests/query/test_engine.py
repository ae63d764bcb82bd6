"""Split execution (sources at agents + merger at the gateway) equals single-node replay (§4.4)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from mql_gen import random_aggregate_query, random_event, random_plain_query

from mantis_py.query.run.engine import Complete, Notice, Rows, prepare
from mantis_py.query.run.replay import replay_rows
from mantis_py.query.state.projection import project
from mantis_py.query.state.windows import first_replay_window, window_bounds


def _events(rng: random.Random, n: int, t0: float = 1000.0) -> list[tuple[dict[str, Any], float]]:
    # distinct milliseconds, so that live order (t_ms, instance, seq) is the line order (§3.17)
    out = []
    ms = int(t0 * 1000)
    for _ in range(n):
        ms += rng.choice([2, 250, 1500, 3000, 7250])
        out.append((random_event(rng), ms / 1000))
    return out


def _replay_by_window(text: str, events: list[tuple[dict[str, Any], float]]) -> dict[tuple[int, int], list[Any]]:
    out: dict[tuple[int, int], list[Any]] = {}
    for scope, row in replay_rows(prepare(text, mode="replay"), events):
        assert scope is not None
        assert scope.startswith("window [")
        s, e = scope[len("window ["):-1].split(", ")
        out.setdefault((int(s), int(e)), []).append(row)
    return out


def _split_partials(text: str, events: list[tuple[dict[str, Any], float]], rng: random.Random, agents: int) -> tuple[dict[tuple[int, int], list[Any]], list[Any]]:
    live = prepare(text, mode="live")
    n, m = live.time_window  # type: ignore[misc]
    t_first = events[0][1]
    start = window_bounds(first_replay_window(t_first, n, m), n, m)[0]
    merger = live.merger(start=start, grace=5.0)
    sources = []
    for i in range(agents):
        merger.add_agent(f"a{i}", start - 1)
        src = live.source(app="s", instance=f"i-{i}", rng=random.Random(i))
        src.start(start)
        sources.append(src)
    for e, t in events:
        sources[rng.randrange(agents)].offer(json.loads(json.dumps(e)), t)
    end = events[-1][1] + 3 * n + 10
    parts = [(f"a{i}", part) for i, s in enumerate(sources) for part in s.poll(end)]
    rng.shuffle(parts)
    for aid, part in parts:
        merger.receive_part(aid, json.loads(json.dumps(part)), end)
    out: dict[tuple[int, int], list[Any]] = {}
    notices = []
    for o in merger.poll(end + 10):
        if isinstance(o, Rows):
            assert o.window is not None
            if o.rows:
                out[o.window] = o.rows
        else:
            notices.append(o)
    return out, notices


@pytest.mark.parametrize("seed", range(60))
def test_partials_split_equals_replay(seed: int) -> None:
    rng = random.Random(seed)
    window = rng.choice(["window 10", "window 10 5", "window 5 10", "window 1", "window 30 10"])
    text = random_aggregate_query(rng, window)
    events = _events(rng, rng.randrange(1, 60))
    expected = _replay_by_window(text, events)
    got, _ = _split_partials(text, events, rng, rng.randrange(1, 4))
    last = max(expected, default=None)
    got = {w: r for w, r in got.items() if last is None or w <= last}
    assert got == expected, text


def _split_events(text: str, events: list[tuple[dict[str, Any], float]], rng: random.Random, agents: int) -> list[Any]:
    live = prepare(text, mode="live")
    a = live.analysis
    start = 0.0
    merger = live.merger(start=start, grace=5.0)
    sources = [live.source(app="s", instance=f"i-{i}") for i in range(agents)]
    seqs = [0] * agents
    records = []
    for e, t in events:
        i = rng.randrange(agents)
        if sources[i].matches(e, t):
            from mantis_py.query.compile.runtime import tick_ms

            shipped = project(e, a.field_paths, a.field_prefixes, a.star)
            records.append((f"a{i}", {"t": tick_ms(t), "i": f"i-{i}", "s": seqs[i], "e": json.loads(json.dumps(shipped)), "m": sources[i].meta_values()}))
            seqs[i] += 1
    for aid, rec in records:
        merger.receive_events(aid, [rec], 0)
    rows = []
    for o in merger.poll(events[-1][1] + 1000 if events else 1000):
        if isinstance(o, Rows):
            rows.extend((o.count, r) for r in o.rows)
    return rows


@pytest.mark.parametrize("seed", range(60))
def test_events_split_equals_replay(seed: int) -> None:
    rng = random.Random(1000 + seed)
    text = random_plain_query(rng)
    kind = rng.randrange(3)
    if kind == 1:
        text += " window 10"
    elif kind == 2:
        text = random_aggregate_query(rng, "window |3|")
    events = _events(rng, rng.randrange(1, 40))
    expected = replay_rows(prepare(text, mode="replay"), events)
    got = _split_events(text, events, rng, rng.randrange(1, 4))
    if kind == 2:
        # live discards the last, incomplete count window (§3.8.6); replay flushes it
        where = prepare(text).compiled.where
        complete = sum(1 for e, _ in events if where(e, {}, None)) // 3
        expected = [(int(s.split()[-1]), r) for s, r in expected]
        expected = [(k, r) for k, r in expected if k <= complete]
        assert got == expected, text
    else:
        assert [r for _, r in got] == [r for _, r in expected], text


def test_fixture_cases_split_equal_replay() -> None:
    from mql_gen import CASES

    checked = 0
    for case in CASES:
        text = case["query"]
        if case["time_field"] is None or "window" not in text or "|" in text or "limit" in text.lower():
            continue
        events = [(e, e[case["time_field"]]) for e in case["events"]]
        times = [t for _, t in events]
        if times != sorted(set(times)):
            continue  # out-of-order input: replay reports late lines, agents see their own clock
        rng = random.Random(0)
        try:
            live = prepare(text, mode="live")
        except Exception:
            continue
        if live.ships != "partials":
            continue
        got, _ = _split_partials(text, events, rng, 3)
        expected = _replay_by_window(text, events)
        # replay ends with the last window starting at or before the last event (§3.8.5)
        assert {w: r for w, r in got.items() if w[0] <= times[-1]} == expected, text
        checked += 1
    assert checked >= 5


def test_merger_waits_for_every_agent_then_emits_once_with_coverage() -> None:
    p = prepare("select count(*) as n from s window 10", mode="live")
    m = p.merger(start=100.0, grace=5.0)
    m.add_agent("a", 99.0)
    m.add_agent("b", 99.0)
    sa = p.source(app="s", instance="a")
    sa.start(100.0)
    sa.offer({}, 101.0)
    sa.offer({}, 102.0)
    for part in sa.poll(110.0):
        m.receive_part("a", part, 110.0)
    assert m.poll(110.5) == []  # b has not reported; grace not over
    out = m.poll(115.0)
    assert out[0] == Rows((100, 110), [{"n": 2}])
    assert any(isinstance(o, Notice) and o.name == "coverage" for o in out)
    # a late part from b is dropped and counted
    sb = p.source(app="s", instance="b")
    sb.start(100.0)
    for part in sb.poll(110.0):
        m.receive_part("b", part, 116.0)
    assert m.statistics()["dropped"]["late"] == 1


def test_merger_emits_when_all_reported_before_grace() -> None:
    p = prepare("select k, count(*) as n from s window 10 group by k", mode="live")
    m = p.merger(start=100.0)
    m.add_agent("a", 99.0)
    s = p.source(app="s", instance="a")
    s.start(100.0)
    s.offer({"k": "x"}, 105.0)
    for part in s.poll(110.0):
        m.receive_part("a", part, 110.0)
    assert m.poll(110.1) == [Rows((100, 110), [{"k": "x", "n": 1}])]


def test_first_live_window_starts_at_or_after_start() -> None:
    p = prepare("select count(*) as n from s window 10", mode="live")
    s = p.source(app="s", instance="a")
    s.start(103.0)
    s.offer({}, 104.0)  # before the first window: ignored
    s.offer({}, 111.0)
    parts = s.poll(120.0)
    assert [(pt["window"], pt["groups"][0][2][0]) for pt in parts] == [([110, 120], 1)]


def test_plain_limit_completes_and_drops_the_rest() -> None:
    p = prepare("select a from s limit 2", mode="live")
    m = p.merger(start=0.0)
    recs = [{"t": i, "i": "x", "s": i, "e": {"a": i}, "m": {}} for i in range(5)]
    m.receive_events("x", recs, 0.0)
    out = m.poll(0.0)
    assert out == [Rows(None, [{"a": 0}, {"a": 1}]), Complete("limit")]
    assert m.statistics()["dropped"]["after-complete"] == 3


def test_live_meta_fields_come_from_the_source_not_the_event() -> None:
    p = prepare("select _app, a from s where _instance == 'i-1'", mode="live")
    src = p.source(app="s", instance="i-1", stream="default")
    assert src.meta_values() == {"_app": "s", "_instance": "i-1"}
    assert src.matches({"_instance": "nope", "a": 1}, 0.0)
    m = p.merger(start=0.0)
    m.receive_events("x", [{"t": 0, "i": "i-1", "s": 0, "e": {"a": 1, "_app": "fake"}, "m": src.meta_values()}], 0.0)
    assert m.poll(0.0) == [Rows(None, [{"_app": "s", "a": 1}])]


def test_source_counts_errors_and_never_raises() -> None:
    p = prepare("select a from s where a == 1", mode="live")
    src = p.source(app="s", instance="i")
    assert src.matches(None, 0.0) is False  # type: ignore[arg-type]
    assert src.errors == 1


def test_non_grouped_aggregate_limit_counts_windows_then_completes() -> None:
    p = prepare("select count(*) as n from s window 1 limit 2", mode="live")
    m = p.merger(start=10.0, grace=1.0)
    out = m.poll(100.0)
    assert out[:2] == [Rows((10, 11), [{"n": 0}]), Rows((11, 12), [{"n": 0}])]
    assert out[-1] == Complete("limit")
    assert len(out) == 3


def test_count_window_aggregate_at_the_gateway() -> None:
    p = prepare("select count(*) as n, list(a) as l from s window |2|", mode="live")
    assert p.ships == "events"
    m = p.merger(start=0.0)
    m.receive_events("x", [{"t": i, "i": "x", "s": i, "e": {"a": i}, "m": {}} for i in range(5)], 0.0)
    assert [o for o in m.poll(0.0) if isinstance(o, Rows)] == [
        Rows(None, [{"n": 2, "l": [0, 1]}], 1), Rows(None, [{"n": 2, "l": [2, 3]}], 2),
    ]


def test_plain_time_window_at_the_gateway_sorts_by_event_order_and_counts_late() -> None:
    p = prepare("select a from s window 10", mode="live")
    m = p.merger(start=100.0, grace=2.0)
    recs = [
        {"t": 105_000, "i": "b", "s": 0, "e": {"a": 2}, "m": {}},
        {"t": 101_000, "i": "a", "s": 0, "e": {"a": 1}, "m": {}},
        {"t": 105_000, "i": "a", "s": 1, "e": {"a": 3}, "m": {}},
    ]
    m.receive_events("x", recs, 106.0)
    assert m.poll(111.0) == []  # grace
    assert m.poll(112.0) == [Rows((100, 110), [{"a": 1}, {"a": 3}, {"a": 2}])]
    m.receive_events("x", [{"t": 109_000, "i": "a", "s": 2, "e": {"a": 9}, "m": {}}], 113.0)
    out = m.poll(122.0)
    assert out[0] == Rows((110, 120), [])
    assert any(isinstance(o, Notice) and o.name == "late" for o in out)


@pytest.mark.parametrize("seed", range(10))
def test_split_equals_replay_in_histogram_mode_and_at_value_caps(seed: int) -> None:
    from mantis_py.query.run.replay import ReplayEngine
    from mantis_py.query.state.caps import Caps

    caps = Caps(value_cap=3, percentile_exact_max=4)
    rng = random.Random(seed)
    text = "select k, p50(a) as p, percentile(a, 90) as q, list(a) as l, count(distinct a) as d from s window 10 group by k"
    events = [({"k": rng.choice("xy"), "a": rng.choice([rng.randrange(-50, 50), rng.random() * 100])}, 1000 + i * 0.25) for i in range(80)]
    expected: dict[Any, list[Any]] = {}
    scope_rows: list[Any] = []
    eng = ReplayEngine(prepare(text), on_rows=lambda s, r: scope_rows.extend((s, x) for x in r), caps=caps)
    for i, (e, t) in enumerate(events, 1):
        eng.feed(e, t, i)
    eng.finish()
    for scope, row in scope_rows:
        s, e = scope[len("window ["):-1].split(", ")
        expected.setdefault((int(s), int(e)), []).append(row)
    live = prepare(text, mode="live")
    merger = live.merger(start=1000.0, caps=caps)
    sources = []
    for i in range(3):
        merger.add_agent(f"a{i}", 999.0)
        src = live.source(app="s", instance=f"i-{i}", caps=caps)
        src.start(1000.0)
        sources.append(src)
    for e, t in events:
        sources[rng.randrange(3)].offer(e, t)
    parts = [(f"a{i}", p) for i, s in enumerate(sources) for p in s.poll(1100.0)]
    rng.shuffle(parts)
    for aid, part in parts:
        merger.receive_part(aid, json.loads(json.dumps(part)), 1100.0)
    got = {o.window: o.rows for o in merger.poll(1100.0) if isinstance(o, Rows) and o.rows}
    assert {w: r for w, r in got.items() if w[0] <= events[-1][1]} == expected
