"""JOIN and ANOMALY through the engines (MQL.md §3.19): replay, the live merger, check plans."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from mantis_py.query.run.engine import Notice, Rows, prepare
from mantis_py.query.run.replay import ReplayEngine, replay_rows

FIXTURES = Path(__file__).parent / "fixtures"
JOIN_CASES = [json.loads(x) for x in (FIXTURES / "join_cases.jsonl").read_text().splitlines() if x.strip()]


def _replay(query: str, events: list[dict[str, Any]], tf: str | None) -> tuple[list[Any], dict[str, int]]:
    p = prepare(query)
    rows: list[Any] = []
    notices: dict[str, int] = {}

    def on_notice(scope: str, name: str, detail: str) -> None:
        notices[name] = notices.get(name, 0) + int(detail.split()[0])

    eng = ReplayEngine(p, on_rows=lambda scope, r: rows.extend(r), on_notice=on_notice)
    for i, e in enumerate(events, 1):
        eng.feed(e, e[tf] if tf else 0, i)
    eng.finish()
    return rows, notices


@pytest.mark.parametrize("case", [c for c in JOIN_CASES if "capacity" not in c], ids=lambda c: c["name"])
def test_join_fixtures_through_replay(case: dict[str, Any]) -> None:
    rows, notices = _replay(case["query"], case["events"], case["time_field"])
    assert rows == case["rows"]
    assert notices == case["notices"]


def test_join_then_where_select_window_group() -> None:
    q = ("select title, count(*) as n, sum(bytes) as b from play join cdn 5 seconds on sid "
         "where bytes > 1 window 10 group by title")
    ev = [
        {"_app": "cdn", "sid": "a", "ts": 100, "bytes": 5},
        {"_app": "play", "sid": "a", "ts": 101, "title": "T1", "bytes": 0},  # A wins: bytes 0
        {"_app": "play", "sid": "b", "ts": 102, "title": "T2"},
        {"_app": "cdn", "sid": "b", "ts": 103, "bytes": 7},
        {"_app": "play", "sid": "c", "ts": 108, "title": "T2"},
        {"_app": "cdn", "sid": "c", "ts": 111, "bytes": 9},  # joined at t=111: next window
        {"_app": "x", "ts": 125},
    ]
    out = replay_rows(prepare(q), [(e, e["ts"]) for e in ev])
    assert out == [
        ("window [100, 110)", {"title": "T2", "n": 1, "b": 7}),
        ("window [110, 120)", {"title": "T2", "n": 1, "b": 9}),
    ]


def test_join_sample_runs_on_source_lines() -> None:
    # STICKY on the key keeps or drops both sides of a session together
    q = ("select * from play join cdn 5 seconds on sid "
         "sample {'strategy': 'STICKY', 'keys': ['sid'], 'threshold': 5000}")
    ev = []
    for i in range(200):
        ev.append(({"_app": "play", "sid": f"s{i}"}, 0))
        ev.append(({"_app": "cdn", "sid": f"s{i}", "b": i}, 0))
    out = replay_rows(prepare(q), ev)
    assert 40 < len(out) < 160  # about half the sessions, each joined whole
    assert all(r["b"] == int(r["sid"][1:]) for _, r in out)


def test_anomaly_replay_plain_spec_example() -> None:
    out = replay_rows(prepare("select v from x anomaly mad v 1 2.5"),
                      [({"v": v}, 0) for v in (11, 10.1, 12.5, 200)] + [({"w": 1}, 0)])
    assert [r for _, r in out] == [
        {"v": 11, "anomalous": False}, {"v": 10.1, "anomalous": False},
        {"v": 12.5, "anomalous": False}, {"v": 200, "anomalous": True}, {"anomalous": False},
    ]


def test_anomaly_replay_select_star_and_window_order_by() -> None:
    ev = [({"v": v, "ts": i}, i) for i, v in enumerate((11, 10.1, 12.5, 200))]
    out = replay_rows(prepare("select * from x window 100 anomaly mad v 1 2.5 order by v desc"), ev)
    # flags are given in event order, then ORDER BY sorts
    assert [(r["v"], r["anomalous"]) for _, r in out] == [(200, True), (12.5, False), (11, False), (10.1, False)]


def test_anomaly_replay_aggregate_per_group_before_having() -> None:
    q = ("select country, count(*) as n from x window 1 group by country "
         "anomaly mad n 1 2 having n > 1")
    ev = []
    for w, counts in enumerate([{"US": 2, "BR": 3}, {"US": 2, "BR": 3}, {"US": 9, "BR": 1}]):
        for c, k in counts.items():
            ev.extend(({"country": c}, w + 0.5) for _ in range(k))
    out = replay_rows(prepare(q), ev)
    assert [r for _, r in out] == [
        {"country": "US", "n": 2, "anomalous": False}, {"country": "BR", "n": 3, "anomalous": False},
        {"country": "US", "n": 2, "anomalous": False}, {"country": "BR", "n": 3, "anomalous": False},
        {"country": "US", "n": 9, "anomalous": True},  # BR (1) fails HAVING but stepped its estimate
    ]


def test_check_plan_places_each_part() -> None:
    plan = prepare("select count(*) as n from play join cdn/log 5 seconds on sid where b > 0 "
                   "window 10 anomaly mad n 1 2", mode="live").plan()
    assert plan["sources"] == [{"app": "play", "stream": "default", "side": "A"},
                               {"app": "cdn", "stream": "log", "side": "B"}]
    assert plan["agent"]["where"] is None
    assert plan["agent"]["ships"] == "events"
    assert plan["gateway"]["where"] == "b > 0"
    assert plan["gateway"]["join"]["on"] == "sid"
    assert plan["gateway"]["anomaly"]["operand"] == "n"
    assert prepare("select * from play join cdn 5 seconds on sid", mode="live").sources == (
        ("play", "default"), ("cdn", "default"))


# --------------------------------------------------------------------------- live: merger


def _records(events: list[dict[str, Any]], agents: int, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """Ship events as the gateway would hand them to the merger (meta filled in), in event
    order, each to one random agent of its app."""
    out = []
    seqs: dict[str, int] = {}
    for e in events:
        app = e["_app"]
        inst = f"{app}-{rng.randrange(agents)}"
        s = seqs.get(inst, 0)
        seqs[inst] = s + 1
        meta = {"_app": app, "_instance": inst, "_zone": None, "_stream": "default"}
        body = {k: v for k, v in e.items() if k not in ("_app", "ts")}
        out.append((f"{inst}/default", {"t": int(e["ts"] * 1000), "i": inst, "s": s, "e": body, "m": meta}))
    return out


def _live(query: str, events: list[dict[str, Any]], seed: int) -> tuple[list[Any], dict[str, int]]:
    p = prepare(query, mode="live")
    m = p.merger(start=100.0, grace=1.0)  # the first event is just after 100
    rows: list[Any] = []
    notices: dict[str, int] = {}
    for key, rec in _records(events, 3, random.Random(seed)):
        m.add_agent(key, 100.0)
        m.receive_events(key, [rec], rec["t"] / 1000)
        for o in m.poll(rec["t"] / 1000):
            if isinstance(o, Rows):
                rows.extend(o.rows)
            elif isinstance(o, Notice):
                notices[o.name] = notices.get(o.name, 0) + o.value
    last = events[-1]["ts"]
    for o in m.poll((last // 10 + 1) * 10 + 1.5):  # just past the grace of the last window
        if isinstance(o, Rows):
            rows.extend(o.rows)
        elif isinstance(o, Notice):
            notices[o.name] = notices.get(o.name, 0) + o.value
    return rows, notices


def _session_events(seed: int, n: int = 300) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    t = 100.0
    for _ in range(n):
        t += rng.choice([0.25, 0.5, 1.0])
        app = rng.choice(["play", "cdn"])
        e: dict[str, Any] = {"_app": app, "sid": f"s{rng.randrange(40)}", "ts": t}
        e["bytes" if app == "cdn" else "title"] = rng.randrange(100) if app == "cdn" else rng.choice("XYZ")
        out.append(e)
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("query", [
    "select sid, title, bytes from play join cdn 3 seconds on sid where bytes > 20",
    "select title, count(*) as n, sum(bytes) as b from play join cdn 3 seconds on sid window 10 group by title",
    "select count(*) as n from play join cdn 3 seconds on sid window 10 anomaly mad n 1 1.5",
    "select sid, bytes from play join cdn 3 seconds on sid window 5 anomaly mad bytes 2 1.5",
])
def test_live_merger_equals_replay_for_in_order_arrival(query: str, seed: int) -> None:
    events = _session_events(seed)
    live_rows, live_notices = _live(query, events, seed)
    # replay of the same events: the first window live is the first whole one after start 0,
    # so compare from the first replay window on (both start at window 100 here)
    replay_events = [({**{k: v for k, v in e.items() if k != "ts"}, "_app": e["_app"]}, e["ts"]) for e in events]
    replay = [r for _, r in replay_rows(prepare(query), replay_events)]
    strip = ("_app", "_instance", "_zone", "_stream")
    assert [{k: v for k, v in r.items() if k not in strip} for r in live_rows] == [
        {k: v for k, v in r.items() if k not in strip} for r in replay]
    assert live_notices.get("join-unpaired", 0) > 0


def test_agents_run_sample_only_for_a_join_query() -> None:
    p = prepare("select sid from play join cdn 5 seconds on sid where bytes > 10", mode="live")
    for app in ("play", "cdn"):
        src = p.source(app=app, instance="i-1")
        assert src.matches({"sid": "a", "bytes": 1}, 0.0)  # WHERE is not pushed down
        assert src.matches({"title": "x"}, 0.0)
    assert p.ships == "events"
    assert "sid" in p.analysis.fields
    assert "bytes" in p.analysis.fields
    plain = prepare("select sid from play where bytes > 10", mode="live").source(app="play")
    assert not plain.matches({"sid": "a", "bytes": 1}, 0.0)


def test_live_join_drops_are_notices_for_unwindowed_queries() -> None:
    p = prepare("select * from play join cdn 1 seconds on sid", mode="live")
    m = p.merger(start=0.0, grace=0.5)
    meta = {"_app": "play", "_instance": "i", "_zone": None, "_stream": "default"}
    m.add_agent("a/default", 0.0)
    m.receive_events("a/default", [{"t": 1000, "i": "i", "s": 0, "e": {"sid": "x"}, "m": meta}], 1.0)
    assert [o for o in m.poll(1.0) if isinstance(o, Notice)] == []
    notices = [o for o in m.poll(5.0) if isinstance(o, Notice)]
    assert [(n.name, n.value, n.window) for n in notices] == [("join-unpaired", 1, None)]
