"""The agent against the real gateway: both runners, a real client, real MQL (SYSTEM.md §3.1)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
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


# ------------------------------------------------------------------ restart of a real gateway


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_gateway(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mantis_py", "gateway", "--port", str(port), "--log-level", "ERROR"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("gateway did not start")


def rows_flow(port: int, agent: Agent, timeout: float = 15.0) -> int:
    """Submit a query as a client while the agent publishes; return the rows seen."""
    from websockets.sync.client import connect as sync_connect

    deadline = time.monotonic() + timeout
    while not agent.connected and time.monotonic() < deadline:  # the gateway must know the app
        time.sleep(0.02)
    stop = threading.Event()

    def publisher() -> None:
        i = 0
        while not stop.is_set():
            agent.publish({"i": i})
            i += 1
            time.sleep(0.005)

    t = threading.Thread(target=publisher, daemon=True)
    t.start()
    rows = 0
    try:
        with sync_connect(f"ws://127.0.0.1:{port}/v1/query", legacy=True) as ws:
            ws.send(json.dumps({"type": "query", "id": "q", "query": "select i from playback"}))
            deadline = time.monotonic() + timeout
            while rows < 3 and time.monotonic() < deadline:
                msg = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
                assert msg["type"] != "error", msg
                if msg["type"] == "rows":
                    rows += len(msg["rows"])
    finally:
        stop.set()
        t.join(5)
    return rows


def test_agent_survives_a_real_gateway_restart_and_expires_queries_after() -> None:
    port = free_port()
    gw = start_gateway(port)
    settings = {"expire_after_s": 2.0, "resubscribe_grace_s": 1.0, **FAST}
    try:
        with Agent("playback", f"ws://127.0.0.1:{port}", **settings) as agent:
            assert rows_flow(port, agent) >= 3
            connects = agent.statistics().connects
            gw.kill()
            gw.wait(10)
            gw = start_gateway(port)
            deadline = time.monotonic() + 15
            while agent.statistics().connects <= connects and time.monotonic() < deadline:
                time.sleep(0.02)
            assert agent.statistics().connects > connects
            assert rows_flow(port, agent) >= 3
            # a client is subscribed while the gateway dies for good: the query expires
            from websockets.sync.client import connect as sync_connect

            with sync_connect(f"ws://127.0.0.1:{port}/v1/query", legacy=True) as ws:
                ws.send(json.dumps({"type": "query", "id": "q", "query": "select i from playback"}))
                assert json.loads(ws.recv(timeout=10))["type"] == "accepted"
                deadline = time.monotonic() + 10
                while not agent.has_subscribers() and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert agent.has_subscribers()
                gw.kill()
                gw.wait(10)
            deadline = time.monotonic() + 10
            while agent.has_subscribers() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not agent.has_subscribers()
    finally:
        if gw.poll() is None:
            gw.kill()
            gw.wait(10)
