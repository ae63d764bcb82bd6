"""A few hundred simulated agents (real AgentCores, real websockets, ``testing/swarm.py``) on a
real gateway: the windowed group-by of the scale benchmark gets full-coverage windows whose counts
are exactly what the agents published, and each agent is one merger member."""

from __future__ import annotations

import json
from typing import Any

import trio

from mantis_py.gateway.config import GatewayConfig, Limits
from mantis_py.testing.swarm import Swarm

from .conftest import open_client, open_gateway, recv_json

AGENTS = 200
EVENTS = 2
QUERY = ("select country, count(*) as n, p99(latency_ms) as p99 from bench window 1 "
         "group by country")


async def test_hundreds_of_agents_give_full_coverage_windows() -> None:
    config = GatewayConfig(port=0, grace_s=5.0, limits=Limits(connections_per_user=5000,
                                                               connections_total=5000))
    with trio.fail_after(30):
        async with open_gateway(config) as gw, trio.open_nursery() as nursery:
            swarm = Swarm(f"ws://127.0.0.1:{gw.port}", AGENTS, events=EVENTS, warm=[QUERY])
            nursery.start_soon(swarm.run)
            assert await swarm.wait_open(AGENTS, timeout=25)
            async with open_client(gw.port) as ws:
                await ws.send(json.dumps({"type": "query", "id": "q", "query": QUERY}))
                reply = await recv_json(ws)
                assert reply["type"] == "accepted", reply
                assert reply["agents"] == AGENTS, reply
                (run,) = gw.core.runs.values()
                assert len(run.members) == AGENTS  # app + instance + stream: one each
                full: list[dict[str, Any]] = []
                last: dict[str, Any] | None = None
                while len(full) < 2:
                    msg = await recv_json(ws)
                    if msg["type"] == "rows":
                        last = msg
                    elif msg["type"] == "meta" and last is not None:
                        cov = msg["coverage"]
                        assert cov["expected"] == AGENTS, msg
                        assert not msg["dropped"].get("duplicate_parts"), msg
                        if cov["reporting"] == AGENTS:
                            total = sum(r["n"] for r in last["rows"])
                            assert {r["country"] for r in last["rows"]} <= {
                                "BR", "US", "DE", "JP", "FR", "IN"}
                            # the first windows may start before every agent subscribed
                            if total == AGENTS * EVENTS:
                                full.append(last)
                        last = None
            nursery.cancel_scope.cancel()
    assert all(sum(r["n"] for r in w["rows"]) == AGENTS * EVENTS for w in full)
