"""Query-engine benchmark (issue #2): every figure is a ratio against a baseline from the same run.

    .venv/bin/python bench/query_bench.py [--events N] [--json]

- filter: ``where status == 500 and latency_ms > 100`` through the engine vs a hand-written loop;
- group: filter + ``group by country`` + count and average per 1 s window vs a hand-written loop;
- replay: ``mantis-py replay`` over a JSONL file vs a loop that only ``orjson.loads`` the lines;
- compile: parse + analyse + compile of a ~400-character query, p99 in ms (and vs lark's bare parse);
- join (issue #6): the replay JOIN stage (``select * from play join cdn 60 seconds on sid``: side
  from ``_app``, key, bounded core, joined rows) vs a hand-written dict-based join with the same
  semantics (held per side, first partner within the bound, expiry); the bare dict join without
  expiry is printed for information;
- join_flood: a flood of unique keys through a join bounded at 10,000 events per side: the peak
  held stays at the bound and traced memory stops growing (``--only join`` runs just these).
A ratio >= 1 means the engine is at least as fast as the baseline (for compile: ratio = p99 / 5 ms).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import orjson  # noqa: E402

from mantis_py.query.run.engine import prepare  # noqa: E402
from mantis_py.query.run.join import JoinCore, JoinSpec, ReplayJoin  # noqa: E402
from mantis_py.query.run.replay import replay_events  # noqa: E402
from mantis_py.query.syntax.parser import parse  # noqa: E402

FILTER_Q = "select * from api where status == 500 and latency_ms > 100"
REPLAY_Q = "select path, latency_ms from api where status == 503 and latency_ms > 300"
GROUP_Q = (
    "select country, count(*) as n, average(latency_ms) as avg_ms from api "
    "where status == 500 and latency_ms > 100 window 1 group by country"
)
COMPILE_Q = (
    "select e['geo']['country'] as country, count(*) as n, average(latency_ms) as avg_ms, "
    "p99(latency_ms) as p99_ms, max(latency_ms) as max_ms, count(distinct user) as users "
    "from api where status >= 500 and latency_ms > 100 and path ==~ /\\/v1\\/titles\\/[0-9]+/ "
    "and region in ('us-east-1', 'eu-west-1', 'ap-south-1') and not (user == null) "
    "window 60 group by e['geo']['country'] having count(*) >= 10 order by p99_ms desc limit 20"
)


def make_events(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    countries = ["US", "BR", "FR", "IN", "JP", "DE", "MX", "GB"]
    statuses = [200, 200, 200, 200, 404, 500, 503, 500]
    return [
        {
            "ts": 1_700_000_000 + i / 10_000,
            "status": rng.choice(statuses),
            "latency_ms": rng.choice([rng.randrange(1, 400), rng.random() * 400]),
            "country": rng.choice(countries),
            "path": "/v1/titles/1",
        }
        for i in range(n)
    ]


ROUNDS = 5


def paired(engine: Callable[[], Any], hand: Callable[[], Any], n: int, rounds: int = ROUNDS) -> tuple[float, float]:
    """(engine, baseline) items per second: best of ``rounds`` runs each, interleaved so that
    both see the same machine load."""
    te, th = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        engine()
        te.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        hand()
        th.append(time.perf_counter() - t0)
    return n / min(te), n / min(th)


def bench_filter(events: list[dict[str, Any]]) -> tuple[float, float]:
    def hand() -> list[Any]:
        out = []
        for e in events:
            s = e.get("status")
            if s == 500 and s.__class__ is not bool:
                v = e.get("latency_ms")
                if (v.__class__ is int or v.__class__ is float) and v > 100:
                    out.append(e)
        return out

    p = prepare(FILTER_Q)

    def engine() -> list[Any]:
        return p.filter(events)

    assert hand() == engine()
    return paired(engine, hand, len(events))


def bench_group(events: list[dict[str, Any]]) -> tuple[float, float]:
    def hand() -> list[Any]:
        out: list[Any] = []
        win = None
        groups: dict[Any, list[Any]] = {}
        for e in events:
            t = e["ts"]
            w = int(t // 1)
            if w != win:
                if groups:
                    out.extend((c, g[0], g[1] / g[0]) for c, g in groups.items())
                groups = {}
                win = w
            s = e.get("status")
            if s == 500 and s.__class__ is not bool:
                v = e.get("latency_ms")
                if (v.__class__ is int or v.__class__ is float) and v > 100:
                    c = e.get("country")
                    g = groups.get(c)
                    if g is None:
                        g = groups[c] = [0, 0]
                    g[0] += 1
                    g[1] += v
        out.extend((c, g[0], g[1] / g[0]) for c, g in groups.items())
        return out

    p = prepare(GROUP_Q)

    def engine() -> list[Any]:
        rows: list[Any] = []
        replay_events(p, events, "ts", rows.extend)
        return rows

    assert len(engine()) == len(hand())
    return paired(engine, hand, len(events))


def bench_replay(events: list[dict[str, Any]]) -> tuple[float, float]:
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as f:
        for e in events:
            f.write(orjson.dumps(e) + b"\n")
        path = f.name
    try:
        def hand() -> None:
            with open(path, "rb") as fh:
                for line in fh:
                    orjson.loads(line)

        def engine() -> None:
            from mantis_py.commands import replay as cmd

            args = argparse.Namespace(query=REPLAY_Q, input=path, time_field="ts", seed=0)
            saved = sys.stdout
            with open(os.devnull, "wb") as sink:
                sys.stdout = io.TextIOWrapper(sink)
                try:
                    cmd.run(args)
                finally:
                    sys.stdout = saved

        return paired(engine, hand, len(events))
    finally:
        os.unlink(path)


def bench_compile() -> tuple[float, float, float]:
    """p99 (ms) of parse + analyse + compile of a ~400-character query, of our compile step
    alone, and of ``parse`` alone. ``parser.py`` feeds lark its own tokens, so the nearest thing
    to "lark's bare parse" is ``parse`` itself."""
    from hdrh.histogram import HdrHistogram

    from mantis_py.query.compile.compiler import _compile
    from mantis_py.query.semantics.analyze import analyze
    from mantis_py.query.syntax.parser import parse

    full, comp, bare = (HdrHistogram(1, 10_000_000, 3) for _ in range(3))
    for i in range(300):
        text = COMPILE_Q + f" sample {{'strategy': 'RANDOM', 'threshold': {i + 1}}}"
        t0 = time.perf_counter_ns()
        q = parse(text)
        t1 = time.perf_counter_ns()
        a = analyze(q, mode="replay")
        t2 = time.perf_counter_ns()
        _compile(a)
        t3 = time.perf_counter_ns()
        full.record_value(max(1, (t3 - t0) // 1000))
        comp.record_value(max(1, (t3 - t2) // 1000))
        bare.record_value(max(1, (t1 - t0) // 1000))
    return tuple(h.get_value_at_percentile(99) / 1000 for h in (full, comp, bare))  # type: ignore[return-value]


def bench_duckdb(duckdb: Any, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The group-by query on duckdb over a pandas-free table of the same events."""
    con = duckdb.connect()
    con.execute("create table api(ts double, status integer, latency_ms double, country varchar)")
    con.executemany(
        "insert into api values (?, ?, ?, ?)",
        [(e["ts"], e["status"], float(e["latency_ms"]), e["country"]) for e in events],
    )
    sql = (
        "select floor(ts) as w, country, count(*), avg(latency_ms) from api "
        "where status = 500 and latency_ms > 100 group by w, country"
    )
    p = prepare(GROUP_Q)

    def engine() -> None:
        replay_events(p, events, "ts", lambda rows: None)

    def other() -> None:
        con.execute(sql).fetchall()

    eng, base = paired(engine, other, len(events), rounds=3)
    return {"name": "group_vs_duckdb_events_per_s", "value": eng, "baseline": base, "ratio": eng / base}


JOIN_Q = "select * from play join cdn 60 seconds on sid"


def make_join_events(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Two applications' lines in time order (1,000 per second), sessions of a few events."""
    rng = random.Random(seed)
    return [
        {"_app": "play" if rng.random() < 0.5 else "cdn", "sid": f"s{rng.randrange(n // 10 or 1)}",
         "ts": 1_700_000_000 + i / 1000, "v": i}
        for i in range(n)
    ]


def _hand_join(events: list[dict[str, Any]], bound: float, bounded: bool) -> list[dict[str, Any]]:
    """A hand-written dict-based join: dicts of lists per side; an A takes the first held B
    within the bound, or waits for the next one. ``bounded`` adds what a streaming join needs
    and the engine does: a deque that drops events once they are older than the bound."""
    held_a: dict[Any, list[Any]] = {}
    held_b: dict[Any, list[Any]] = {}
    order: deque[Any] = deque()
    out: list[dict[str, Any]] = []
    for e in events:
        app = e.get("_app")
        if app != "play" and app != "cdn":
            continue
        t = e["ts"]
        key = e.get("sid")
        if bounded:
            while order and t - order[0][0] > bound:
                _, d, k = order.popleft()
                lst = d.get(k)
                if lst:
                    lst[:] = [x for x in lst if t - x[0] <= bound]
                    if not lst:
                        del d[k]
        if app == "cdn":
            waiting = held_a.pop(key, None)
            if waiting:
                still = []
                for ta, a in waiting:
                    if abs(t - ta) <= bound:
                        out.append({**e, **a})
                    else:
                        still.append((ta, a))
                if still:
                    held_a[key] = still
            held_b.setdefault(key, []).append((t, e))
            if bounded:
                order.append((t, held_b, key))
        else:
            for tb, b in held_b.get(key, ()):
                if abs(t - tb) <= bound:
                    out.append({**b, **e})
                    break
            else:
                held_a.setdefault(key, []).append((t, e))
                if bounded:
                    order.append((t, held_a, key))
    return out


def bench_join(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The JOIN stage (side from ``_app``, key, bounded core, joined rows) vs hand-written
    dict joins: the same semantics with expiry (the gate), and a bare one without expiry."""
    spec = JoinSpec.from_query(parse(JOIN_Q))
    assert spec is not None

    def engine() -> list[Any]:
        rj = ReplayJoin(spec, capacity=1_000_000)
        feed = rj.feed
        out: list[Any] = []
        for line, e in enumerate(events, 1):
            r = feed(e, e["ts"], line)
            if r:
                out.extend(r)
        return out

    n_engine = len(engine())
    n_hand = len(_hand_join(events, 60, True))
    assert n_engine == n_hand, (n_engine, n_hand)
    eng, hand = paired(engine, lambda: _hand_join(events, 60, True), len(events))
    _, bare = paired(engine, lambda: _hand_join(events, 60, False), len(events), rounds=3)
    return {"engine": eng, "hand": hand, "ratio": eng / hand, "bare_hand": bare,
            "ratio_vs_bare": eng / bare, "pairs": n_engine}


def bench_join_flood(n: int, capacity: int = 10_000) -> dict[str, Any]:
    """A flood of unique keys (nothing pairs, nothing expires within the bound): the join
    must hold at most ``capacity`` events per side, and its memory must stop growing."""
    import tracemalloc

    core = JoinCore(600, capacity)
    tracemalloc.start()
    marks = []
    ev = {"v": 0}
    for i in range(n):
        (core.offer_a if i & 1 else core.offer_b)(i, ev, i / 1_000_000, i)
        if i + 1 in (n // 4, n // 2, n):
            marks.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    s = core.stats()
    return {"events": n, "capacity_per_side": capacity, "peak_held_a": s.peak_a,
            "peak_held_b": s.peak_b, "evicted": s.a_evicted + s.b_evicted,
            "bytes_at_quarter_half_end": marks,
            "within_bound": s.peak_a <= capacity and s.peak_b <= capacity}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--join-events", type=int, default=200_000)
    ap.add_argument("--only", choices=("join",), default=None)
    args = ap.parse_args()
    metrics = []
    j = bench_join(make_join_events(args.join_events))
    metrics.append({"name": "join_events_per_s", "value": j["engine"], "baseline": j["hand"],
                    "ratio": j["ratio"], "target": 0.5})
    metrics.append({"name": "join_vs_bare_dict_join", "value": j["engine"], "baseline": j["bare_hand"],
                    "ratio": j["ratio_vs_bare"]})
    flood = bench_join_flood(max(4 * 10_000, args.join_events * 2))
    grow = flood["bytes_at_quarter_half_end"]
    metrics.append({"name": "join_flood_peak_held", "value": max(flood["peak_held_a"], flood["peak_held_b"]),
                    "baseline": flood["capacity_per_side"],
                    "ratio": max(flood["peak_held_a"], flood["peak_held_b"]) / flood["capacity_per_side"],
                    "target": "<= 1"})
    metrics.append({"name": "join_flood_mem_end_vs_half", "value": grow[2], "baseline": grow[1],
                    "ratio": grow[2] / grow[1], "target": "~1 (flat)"})
    if args.only == "join":
        return _report(metrics, args.json)
    events = make_events(args.events)
    eng, base = bench_filter(events)
    metrics.append({"name": "filter_events_per_s", "value": eng, "baseline": base, "ratio": eng / base, "target": 0.8})
    eng, base = bench_group(events)
    metrics.append({"name": "group_window_events_per_s", "value": eng, "baseline": base, "ratio": eng / base, "target": 0.7})
    eng, base = bench_replay(events)
    metrics.append({"name": "replay_lines_per_s", "value": eng, "baseline": base, "ratio": eng / base, "target": 0.6})
    p99, comp_p99, parse_p99 = bench_compile()
    metrics.append({"name": "prepare_p99_ms", "value": p99, "baseline": 5.0, "ratio": p99 / 5.0, "target": "<= 1"})
    metrics.append({"name": "prepare_p99_vs_parse_p99", "value": p99, "baseline": parse_p99, "ratio": p99 / parse_p99})
    metrics.append({"name": "compile_step_p99_ms", "value": comp_p99, "baseline": 5.0, "ratio": comp_p99 / 5.0})
    try:
        import duckdb  # type: ignore[import-not-found]

        metrics.append(bench_duckdb(duckdb, events))
    except ImportError:
        pass  # optional comparison (pip install '.[bench]'); bytewax is not compared yet
    return _report(metrics, args.json)


def _report(metrics: list[dict[str, Any]], as_json: bool) -> int:
    if as_json:
        print(json.dumps({"metrics": metrics}))
    else:
        for m in metrics:
            r = m["ratio"]
            print(f"{m['name']:<28} value={m['value']:>14.3f} baseline={m['baseline']!s:>22} ratio={r if r is None else round(r, 3)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
