"""End to end with the real engine and real agents (threads and a subprocess): raw, filtered,
projected, sampled and windowed-aggregate queries return exactly what ``mantis-py replay``
computes for the same events; an agent killed mid-window shows in coverage."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import trio

from mantis_py.agents import Agent
from mantis_py.gateway.config import GatewayConfig
from mantis_py.query import prepare
from mantis_py.query.run.replay import replay_rows

from .conftest import open_client, open_gateway, recv_json, wait_until

COUNTRIES = ("BR", "US", "DE", "JP")


def events_for(agent_no: int, n: int = 60) -> list[dict[str, Any]]:
    return [
        {"event": "play" if i % 3 else "stop", "country": COUNTRIES[(i + agent_no) % 4],
         "latency_ms": (i * 7 + agent_no * 13) % 100, "user": f"u{(i * agent_no) % 11}",
         "password": "hunter2", "device": {"os": "tv" if i % 2 else "ios"}}
        for i in range(n)
    ]


QUERIES = {
    "raw": "select * from play",
    "filtered": "select * from play where country == 'BR' and latency_ms > 20",
    "projected": "select country, latency_ms as lat, e['device']['os'] from play where event == 'play'",
    "sampled": "select user, country from play sample {'strategy': 'STICKY', 'keys': ['user'], "
               "'factor': 2}",
    "who": "select _instance from play",
    "agg": "select country, count(*), average(latency_ms), max(latency_ms) from play window 2 "
           "group by country",
}

SUBPROCESS_AGENT = """
import sys, time
from mantis_py.agents import Agent
port, n = int(sys.argv[1]), int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
from test_e2e_events import events_for
agent = Agent(app="play", gateway=f"ws://127.0.0.1:{port}", instance="sub-1", mask=("password",),
              cpu_budget=1.0)
agent.start()
print("ready", flush=True)
sys.stdin.readline()
while len(agent.statistics().subs) < int(sys.argv[4]):  # the first compile takes a while
    time.sleep(0.01)
print("subscribed", flush=True)
sys.stdin.readline()
for e in events_for(n):
    agent.publish(e)
time.sleep(0.3)
print("published", flush=True)
sys.stdin.readline()
agent.close()
"""


def expected(name: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if name == "who":
        return []
    p = prepare(QUERIES[name], mode="replay")
    masked = [{**e, "password": "[masked]"} for e in events]  # what the agents' mask does
    return [row for _, row in replay_rows(p, [(e, 0) for e in masked])]


def canon(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(json.dumps(r, sort_keys=True) for r in rows)


async def test_queries_through_real_agents_equal_replay(tmp_path: Any) -> None:
    # the subprocess imports events_for from a tiny module next to it
    (tmp_path / "test_e2e_events.py").write_text(
        "from typing import Any\nCOUNTRIES = ('BR', 'US', 'DE', 'JP')\n"
        + "def events_for(agent_no, n=60):\n    return " + _source_of_events() + "\n")
    config = GatewayConfig(port=0, grace_s=2.0)
    with trio.fail_after(60):
        async with open_gateway(config) as gw:
            url = f"ws://127.0.0.1:{gw.port}"
            agents = [Agent(app="play", gateway=url, instance=f"thr-{i}", mask=("password",),
                            cpu_budget=1.0)  # no CPU auto-sampling: exact results
                      for i in (1, 2)]
            for a in agents:
                a.start()
            proc = subprocess.Popen(  # noqa: ASYNC220 - started once, never waited on here
                [sys.executable, "-c", SUBPROCESS_AGENT, str(gw.port), "3", str(tmp_path),
                 str(len(QUERIES))],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            try:
                assert await trio.to_thread.run_sync(proc.stdout.readline) == "ready\n"
                await wait_until(lambda: len(gw.core.registry.agents) == 3)
                async with open_client(gw.port) as ws:
                    for name, text in QUERIES.items():
                        await ws.send(json.dumps({"type": "query", "id": name, "query": text}))
                        reply = await recv_json(ws)
                        assert reply["type"] == "accepted", reply
                        assert reply["agents"] == 3
                    # every agent runs every query before anything is published
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                    assert await trio.to_thread.run_sync(proc.stdout.readline) == "subscribed\n"
                    await wait_until(lambda: all(len(a.statistics().subs) == len(QUERIES)
                                                 for a in agents))
                    # publish everything inside one 2-second window, after acceptance
                    boundary = math.ceil(time.time() / 2) * 2
                    await trio.sleep(boundary - time.time() + 0.05)
                    for a, n in zip(agents, (1, 2), strict=True):
                        for e in events_for(n):
                            a.publish(e)
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                    assert await trio.to_thread.run_sync(proc.stdout.readline) == "published\n"
                    all_events = events_for(1) + events_for(2) + events_for(3)
                    got: dict[str, list[dict[str, Any]]] = {name: [] for name in QUERIES}
                    windows: list[dict[str, Any]] = []
                    metas: list[dict[str, Any]] = []
                    other_meta: list[dict[str, Any]] = []
                    want = {name: expected(name, all_events) for name in QUERIES}
                    stop_at = math.inf
                    while time.time() < stop_at:
                        with trio.move_on_after(max(0.0, min(stop_at - time.time(), 30))):
                            msg = await recv_json(ws)
                        if time.time() >= stop_at:
                            break
                        if msg["type"] == "rows" and msg["id"] == "agg":
                            if msg["rows"]:
                                windows.append(msg)
                        elif msg["type"] == "rows":
                            got[msg["id"]].extend(msg["rows"])
                        elif msg["type"] == "meta" and msg["id"] == "agg":
                            metas.append(msg)
                        elif msg["type"] == "meta":
                            other_meta.append(msg)
                        if windows and metas and stop_at == math.inf:
                            stop_at = time.time() + 1.0  # raw rows are long in by now
            finally:
                proc.stdin.write("bye\n")
                proc.stdin.flush()
                for a in agents:
                    a.close()
                await trio.to_thread.run_sync(proc.wait, 10)
    who = Counter(r["_instance"] for r in got.pop("who"))
    assert who == {"thr-1": 60, "thr-2": 60, "sub-1": 60}
    for name in QUERIES:
        if name not in ("agg", "who"):
            g, w = canon(got[name]), canon(want[name])
            assert g == w, (other_meta, name, len(got[name]), len(want[name]), list((g - w).items())[:3],
                            list((w - g).items())[:3])
    assert len(windows) == 1
    assert windows[0]["window"] == [boundary, boundary + 2]
    # group order follows live event order (time, instance, seq), which the replay cannot know
    by_country = sorted(windows[0]["rows"], key=lambda r: r["country"])
    assert by_country == sorted(want["agg"], key=lambda r: r["country"])
    assert metas[-1]["coverage"] == {"reporting": 3, "expected": 3}
    # masking happened at the agent: the masked value never reached a client
    assert all(r.get("password") != "hunter2" for r in got["raw"])


def _source_of_events() -> str:
    return ('[{"event": "play" if i % 3 else "stop", "country": COUNTRIES[(i + agent_no) % 4], '
            '"latency_ms": (i * 7 + agent_no * 13) % 100, "user": f"u{(i * agent_no) % 11}", '
            '"password": "hunter2", "device": {"os": "tv" if i % 2 else "ios"}} '
            'for i in range(n)]')


KILLABLE_AGENT = """
import sys, time
from mantis_py.agents import Agent
agent = Agent(app="play", gateway=f"ws://127.0.0.1:{sys.argv[1]}", instance="doomed",
              cpu_budget=1.0)
agent.start()
while len(agent.statistics().subs) < 1:
    time.sleep(0.01)
print("subscribed", flush=True)
sys.stdin.readline()
for i in range(5):
    agent.publish({"n": i})
print("published", flush=True)
time.sleep(60)
"""


async def test_agent_killed_mid_window_shows_in_coverage_and_window_is_emitted() -> None:
    config = GatewayConfig(port=0, grace_s=1.0)
    with trio.fail_after(30):
        async with open_gateway(config) as gw:
            survivor = Agent(app="play", gateway=f"ws://127.0.0.1:{gw.port}", instance="alive",
                             cpu_budget=1.0)
            survivor.start()
            await wait_until(lambda: len(gw.core.registry.agents) == 1)
            proc = subprocess.Popen(  # noqa: ASYNC220 - killed below, reaped in finally
                [sys.executable, "-c", KILLABLE_AGENT, str(gw.port)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            try:
                await wait_until(lambda: len(gw.core.registry.agents) == 2)
                async with open_client(gw.port) as ws:
                    await ws.send(json.dumps({"type": "query", "id": "w",
                                              "query": "select count(*) from play window 2"}))
                    assert (await recv_json(ws))["agents"] == 2
                    assert await trio.to_thread.run_sync(proc.stdout.readline) == "subscribed\n"
                    await wait_until(lambda: len(survivor.statistics().subs) == 1)
                    boundary = math.ceil(time.time() / 2) * 2
                    await trio.sleep(boundary - time.time() + 0.05)
                    for i in range(10):
                        survivor.publish({"n": i})
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                    assert await trio.to_thread.run_sync(proc.stdout.readline) == "published\n"
                    proc.kill()  # mid-window: its part for this window never ships
                    while True:
                        msg = await recv_json(ws)
                        if msg["type"] == "rows" and msg["window"][0] == boundary:
                            break
                    meta = await recv_json(ws)
            finally:
                survivor.close()
                proc.kill()
                await trio.to_thread.run_sync(proc.wait, 10)
    assert msg["rows"] == [{"COUNT(*)": 10}]
    assert meta["type"] == "meta"
    assert meta["coverage"] == {"reporting": 1, "expected": 2}


async def test_dedupe_one_subscription_per_agent_and_one_shipment_per_event() -> None:
    with trio.fail_after(30):
        async with open_gateway(GatewayConfig(port=0)) as gw:
            agents = [Agent(app="play", gateway=f"ws://127.0.0.1:{gw.port}", instance=f"d{i}",
                            cpu_budget=1.0) for i in range(2)]
            for a in agents:
                a.start()
            try:
                await wait_until(lambda: len(gw.core.registry.agents) == 2)
                async with open_client(gw.port) as c1, open_client(gw.port) as c2:
                    for ws in (c1, c2):
                        await ws.send(json.dumps({"type": "query", "id": "same",
                                                  "query": "select * from play"}))
                        assert (await recv_json(ws))["type"] == "accepted"
                    await wait_until(lambda: all(len(a.statistics().subs) == 1 for a in agents))
                    await c2.send(json.dumps({"type": "query", "id": "other",
                                              "query": "select n from play where n > 0"}))
                    assert (await recv_json(c2))["type"] == "accepted"
                    await wait_until(lambda: all(len(a.statistics().subs) == 2 for a in agents))
                    assert len(gw.core.registry.subs) == 2
                    agents[0].publish({"n": 1, "x": "y"})
                    got1 = await recv_json(c1)
                    got2 = [await recv_json(c2), await recv_json(c2)]
                    await wait_until(lambda: agents[0].statistics().streams["default"].sent == 1)
            finally:
                for a in agents:
                    a.close()
    assert got1 == {"type": "rows", "id": "same", "window": None, "rows": [{"n": 1, "x": "y"}]}
    assert sorted((m["id"], m["rows"]) for m in got2) == [("other", [{"n": 1}]),
                                                           ("same", [{"n": 1, "x": "y"}])]
    # one event shipped once for both subscriptions
    assert gw.metrics.value("events_in_total") == 1
