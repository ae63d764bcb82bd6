"""Agent benchmark: host-thread and total CPU cost as ratios against baselines from the same run.

    .venv/bin/python bench/agent_bench.py [--json] [--quick]

Figures (issue #3, "Performance"):
- publish_no_sub:        publish() with nobody subscribed        / an empty method call (<= 1.5)
- publish_nonmatching:   publish() with one non-matching filter  / an empty method call (<= 6),
                         host thread only (the agent's work is drained outside the timing)
- pipeline_one_query:    publish + match + project + batch + encode, all threads' work
                         / orjson.dumps of the same event (<= 5)
- pipeline_20_queries:   the same with 20 queries on the stream / the one-query figure (<= 20)
- superset_bytes_saved:  bytes shipped with one union-projected, multi-tagged record per event
                         vs one projected record per matching query

Times are CPU times of the measuring thread (``time.thread_time_ns``), so time-slicing on a busy
machine does not count; baseline and candidate runs are interleaved and the median ratio is kept.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mantis_py.agents import Agent
from mantis_py.agents.core import AgentConfig, AgentCore
from mantis_py.query.run.engine import prepare
from mantis_py.query.state.projection import project
from mantis_py.testing import LinkPair

EVENT = {
    "event": "play",
    "country": "BR",
    "latency_ms": 41,
    "user": {"id": 7, "plan": "premium"},
    "device": "tv",
    "title_id": 12345,
    "session": "abc123",
}
T0 = 1_800_000_000.0


class Empty:
    def method(self, event: Any, stream: str = "default") -> None:
        pass


def loop_calls(f: Callable[[Any], None], n: int) -> Callable[[], None]:
    ev = EVENT

    def run() -> None:
        for _ in range(n):
            f(ev)

    return run


def subscribed_agent(queries: list[str]) -> tuple[Agent, LinkPair]:
    agent = Agent("app", "ws://127.0.0.1:9")  # never started: no thread, no socket
    pair = LinkPair(agent._core, now=time.time())
    for i, q in enumerate(queries):
        pair.subscribe(f"q{i}", q, start=time.time())
    return agent, pair


def paired(
    candidate: Callable[[], int], baseline: Callable[[], int], repeats: int
) -> tuple[float, float, float]:
    """Interleave baseline / candidate / baseline runs (each returns ns per item) so machine
    noise hits both; returns (median candidate ns, median baseline ns, median of the ratios)."""
    cs, bs, rs = [], [], []
    for _ in range(repeats):
        b1 = baseline()
        c = candidate()
        b2 = baseline()
        cs.append(c)
        bs.append((b1 + b2) / 2)
        rs.append(c / ((b1 + b2) / 2))
    return statistics.median(cs), statistics.median(bs), statistics.median(rs)


def timed(fn: Callable[[], None], n: int) -> Callable[[], float]:
    def run() -> float:
        t0 = time.thread_time_ns()
        fn()
        return (time.thread_time_ns() - t0) / n

    return run


def nonmatching_runner(n: int) -> Callable[[], float]:
    """publish() with one non-matching filter query: host-thread time only."""
    agent, _ = subscribed_agent(["select country, latency_ms from app where country == 'US'"])
    core = agent._core
    batch = 500  # below the ingress cap: nothing is dropped while timing
    publish = agent.publish

    def run() -> float:
        total = 0
        rounds = max(1, n // batch)
        for _ in range(rounds):
            fn = loop_calls(publish, batch)
            t0 = time.thread_time_ns()
            fn()
            total += time.thread_time_ns() - t0
            while core.poll(time.time()):  # the agent thread's work, not timed here
                pass
        s = core.statistics().streams["default"]
        assert s.unmatched == s.enqueued, s
        assert not s.dropped, s
        return total / (rounds * batch)

    return run


def pipeline_runner(queries: list[str], n: int, info: dict[str, int]) -> Callable[[], float]:
    """Total CPU per event: publish + poll (match, project, tag, encode) + frames."""
    core = AgentCore(AgentConfig(app="app", instance="b1"), random.Random(1))
    pair = LinkPair(core, now=T0)
    for i, q in enumerate(queries):
        pair.subscribe(f"q{i}", q, start=T0)
    offer = core.offer
    batch = 500
    clock = [T0]

    def run() -> float:
        total = 0
        rounds = max(1, n // batch)
        for _ in range(rounds):
            clock[0] += 1.0
            now = clock[0]
            pair.ping(now)  # keep the subscriptions' lease (the gateway would)
            t0 = time.thread_time_ns()
            for _ in range(batch):
                offer(EVENT, "default", now)
            while core.poll(now):
                pass
            frames = core.data_to_send(now + 1.0, force=True)
            total += time.thread_time_ns() - t0
            info["bytes"] = info.get("bytes", 0) + sum(len(f.data) for f in frames if f.stream)
        s = core.statistics().streams["default"]
        assert s.sent == s.enqueued, s
        assert not s.lost, s
        assert not s.dropped, s
        info["sent"] = s.sent
        return total / (rounds * batch)

    return run


QUERY_1 = "select country, latency_ms from app where country == 'BR'"


def twenty_queries() -> list[str]:
    fields = ["country", "latency_ms", "device", "title_id", "session", "event", "e['user']['id']"]
    out = []
    for i in range(20):
        sel = ", ".join(fields[(i + k) % len(fields)] for k in range(2 + i % 3))
        out.append(f"select {sel} from app where latency_ms > {i}")  # all match EVENT
    return out


def superset_saving(queries: list[str]) -> dict[str, float]:
    """Bytes of one union-projected record tagged with every query vs one record per query."""
    preps = [prepare(q, mode="live") for q in queries]
    subs = [f"q{i}" for i in range(len(queries))]
    per_query = sum(
        len(
            orjson.dumps(
                {
                    "subs": [s],
                    "t": 1,
                    "s": 1,
                    "e": project(EVENT, p.analysis.field_paths, p.analysis.field_prefixes),
                }
            )
        )
        for s, p in zip(subs, preps, strict=True)
    )
    paths = [fp for p in preps for fp in p.analysis.field_paths]
    union = len(orjson.dumps({"subs": subs, "t": 1, "s": 1, "e": project(EVENT, paths, [])}))
    return {"per_query_bytes": per_query, "superset_bytes": union, "saved": 1 - union / per_query}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    args = ap.parse_args()
    n, repeats = (20_000, 5) if args.quick else (100_000, 15)

    empty = Empty()
    base_call = timed(loop_calls(empty.method, n), n)
    idle = Agent("app", "ws://127.0.0.1:9")
    no_sub, call_ns, no_sub_r = paired(timed(loop_calls(idle.publish, n), n), base_call, repeats)
    nonmatch, _, nonmatch_r = paired(nonmatching_runner(n // 4), base_call, repeats)
    dumps = timed(loop_calls(orjson.dumps, n // 10), n // 10)
    one_info: dict[str, int] = {}
    one, dumps_ns, one_r = paired(pipeline_runner([QUERY_1], n // 10, one_info), dumps, repeats)
    twenty_info: dict[str, int] = {}
    one_again = pipeline_runner([QUERY_1], n // 20, {})
    twenty, _, twenty_r = paired(
        pipeline_runner(twenty_queries(), n // 20, twenty_info), one_again, repeats
    )
    saving = superset_saving(twenty_queries())

    result = {
        "baseline_empty_call_ns": round(call_ns, 1),
        "baseline_orjson_dumps_ns": round(dumps_ns, 1),
        "publish_no_sub": {"ns": round(no_sub, 1), "ratio": round(no_sub_r, 2), "target": 1.5},
        "publish_nonmatching": {
            "ns": round(nonmatch, 1),
            "ratio": round(nonmatch_r, 2),
            "target": 6,
        },
        "pipeline_one_query": {"ns": round(one, 1), "ratio": round(one_r, 2), "target": 5},
        "pipeline_20_queries": {"ns": round(twenty, 1), "ratio": round(twenty_r, 2), "target": 20},
        "superset_projection": {k: round(v, 3) for k, v in saving.items()},
        "events": {"one_query": one_info, "twenty_queries": twenty_info},
    }
    if args.json:
        print(json.dumps(result))
        return
    for k, v in result.items():
        print(f"{k:28s} {v}")


if __name__ == "__main__":
    main()
