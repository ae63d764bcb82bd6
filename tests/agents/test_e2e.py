"""The agent against the real gateway: both runners, a real client, real MQL (SYSTEM.md §3.1)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from websockets.trio.client import connect

from mantis_py.agents import Agent, open_agent
from mantis_py.gateway.config import GatewayConfig
from mantis_py.gateway.server import GatewayServer, serve_gateway

FAST = {"reconnect_min_s": 0.05, "reconnect_max_s": 0.4}


@asynccontextmanager
async def real_gateway() -> AsyncIterator[GatewayServer]:
    async with trio.open_nursery() as nursery:
        server: GatewayServer = await nursery.start(
            lambda task_status: serve_gateway(
                GatewayConfig(port=0, grace_s=0.5, heartbeat_s=1.0),
                alerts=False,
                task_status=task_status,
            )
        )
        yield server
        nursery.cancel_scope.cancel()


async def query(
    port: int, text: str, want_rows: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run one query on WS /v1/query until ``want_rows`` rows arrived."""
    async with connect(f"ws://127.0.0.1:{port}/v1/query") as ws:
        await ws.send(json.dumps({"type": "query", "id": "q1", "query": text}))
        accepted = json.loads(await ws.recv())
        rows: list[dict[str, Any]] = []
        while len(rows) < want_rows:
            msg = json.loads(await ws.recv())
            if msg["type"] == "rows":
                rows.extend(msg["rows"])
        return accepted, rows


async def publish_until(agent: Any, done: trio.Event, event: dict[str, Any]) -> None:
    while not done.is_set():
        agent.publish(event)
        agent.publish({"country": "US", "latency_ms": 1, "password": "pw"})
        await trio.sleep(0.01)


async def test_trio_agent_with_the_real_gateway() -> None:
    with trio.fail_after(30):
        async with (
            real_gateway() as gw,
            open_agent(
                "playback", f"ws://127.0.0.1:{gw.port}", mask=("password",), **FAST
            ) as agent,
        ):
            while not agent.connected:  # noqa: ASYNC110 - bounded by fail_after
                await trio.sleep(0.01)
            done = trio.Event()
            async with trio.open_nursery() as nursery:
                ev = {"country": "BR", "latency_ms": 41, "password": "hunter2"}
                nursery.start_soon(publish_until, agent, done, ev)
                accepted, rows = await query(
                    gw.port, "select country, password from playback where country == 'BR'", 3
                )
                done.set()
            assert accepted["type"] == "accepted"
            assert rows[0] == {"country": "BR", "password": "[masked]"}
            s = agent.statistics().streams["default"]
            assert s.sent > 0


async def test_threaded_agent_with_the_real_gateway() -> None:
    with trio.fail_after(30):
        async with real_gateway() as gw:
            agent = Agent("playback", f"ws://127.0.0.1:{gw.port}", **FAST).start()
            try:
                deadline = time.monotonic() + 10
                while not agent.connected and time.monotonic() < deadline:  # noqa: ASYNC110
                    await trio.sleep(0.01)
                done = trio.Event()
                async with trio.open_nursery() as nursery:
                    ev = {"country": "BR", "latency_ms": 41}
                    nursery.start_soon(publish_until, agent, done, ev)
                    accepted, rows = await query(
                        gw.port, "select count(*) as n from playback window 1", 2
                    )
                    done.set()
                assert accepted["type"] == "accepted"
                assert all(r["n"] >= 0 for r in rows)
                assert any(r["n"] > 0 for r in rows)
            finally:
                agent.close()
