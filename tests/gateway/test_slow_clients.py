"""Slow and hostile clients (SYSTEM.md §5): one reading at ~1 % of the rate, one that never
reads, ten normal clients on a windowed query. The normal ones get every window; the slow one
gets drop counts and is evicted with 4008; the stuck one is closed by the send deadline; nothing
leaks afterwards."""

from __future__ import annotations

import json
import math
import socket
import time
from typing import Any

import pytest
import trio
from websockets.exceptions import ConnectionClosed

from mantis_py.gateway.config import GatewayConfig, Limits
from mantis_py.wire.messages import Events, Partial

from .conftest import open_agent, open_client, open_gateway, recv_json, wait_until
from .fakes import CACHE, fake_prepare

WINDOWS = 3


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    CACHE.clear()


def count_tasks() -> int:
    def walk(task: Any) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


async def test_slow_and_stuck_clients_do_not_hurt_the_others() -> None:
    limits = Limits(client_queue_frames=32, client_queue_bytes=512 * 1024, send_deadline_s=2.0,
                    slow_client_s=1.0, meta_interval_s=0.2, submissions_burst=20)
    config = GatewayConfig(port=0, grace_s=3.0, limits=limits)
    blob = "x" * 400
    with trio.fail_after(40):
        async with open_gateway(config, prepare=fake_prepare) as gw, open_agent(gw.port) as agent:
            tasks_before = count_tasks()
            results: dict[str, list[dict[str, Any]]] = {}
            slow_log: list[dict[str, Any]] = []
            closed: dict[str, int | None] = {}
            raw_sub: list[str] = []
            last = [math.inf]

            async with trio.open_nursery() as nursery:

                async def normal(i: int) -> None:
                    got: list[dict[str, Any]] = []
                    results[f"n{i}"] = got
                    async with open_client(gw.port) as ws:
                        await ws.send(json.dumps({"type": "query", "id": "w",
                                                  "query": "select count(*) from play window 1"}))
                        while not got or got[-1].get("window") is None or \
                                got[-1]["window"][0] < last[0]:
                            got.append(await recv_json(ws))

                async def slow() -> None:
                    # a small receive buffer, so the kernel does not hide the backlog
                    sock = trio.socket.socket()
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
                    await sock.connect(("127.0.0.1", gw.port))
                    async with open_client(gw.port, max_size=None, max_queue=(4, 2),
                                           stream=trio.SocketStream(sock)) as ws:
                        await ws.send(json.dumps({"type": "query", "id": "r",
                                                  "query": "select * from play"}))
                        try:
                            while True:
                                slow_log.append(await recv_json(ws))
                                await trio.sleep(0.2)
                        except ConnectionClosed as exc:
                            closed["slow"] = exc.rcvd.code if exc.rcvd else None

                async def stuck() -> None:
                    async with open_client(gw.port, max_size=None, max_queue=1) as ws:
                        await ws.send(json.dumps({"type": "query", "id": "r",
                                                  "query": "select * from play"}))
                        await trio.sleep_forever()

                for i in range(10):
                    nursery.start_soon(normal, i)
                nursery.start_soon(slow)
                stuck_scope = trio.CancelScope()

                async def run_stuck() -> None:
                    with stuck_scope:
                        await stuck()

                nursery.start_soon(run_stuck)

                # the agent: raw events as fast as it can, and one part per window
                window_sub = None
                while window_sub is None or not raw_sub:
                    msg = await agent.recv_type("subscribe")
                    if "WINDOW" in msg["query"]:
                        window_sub = msg
                    else:
                        raw_sub.append(msg["sub"])
                first = math.ceil(window_sub["start"])
                last[0] = first + WINDOWS - 1
                sent_windows = 0
                seq = 0
                while sent_windows < WINDOWS:
                    records = [{"subs": raw_sub, "t": 1, "s": seq + j, "e": {"b": blob}}
                               for j in range(100)]
                    seq += 100
                    await agent.send(Events("default", records))
                    s = first + sent_windows
                    if time.time() >= s + 1:
                        await agent.send(Partial(window_sub["sub"], {"window": [s, s + 1],
                                                                     "count": s}))
                        sent_windows += 1
                    await trio.sleep(0.005)
                # keep the stream going until the slow client has been evicted
                with trio.move_on_after(10):
                    while "slow" not in closed:
                        await agent.send(Events("default", [
                            {"subs": raw_sub, "t": 1, "s": seq, "e": {"b": blob}}]))
                        seq += 1
                        await trio.sleep(0.01)
                with trio.fail_after(10):
                    await wait_until(lambda: gw.metrics.value(
                        "clients_evicted_total", reason="send_deadline") >= 1)
                stuck_scope.cancel()

            for name, got in results.items():
                windows = [m for m in got if m["type"] == "rows"]
                # every window from the first one starting after the client's T0 (a client
                # that connected just after a boundary starts one window later)
                starts = [w["window"][0] for w in windows]
                assert starts[0] in (first, first + 1), name
                assert starts == list(range(int(starts[0]), int(last[0]) + 1)), name
                assert [w["rows"] for w in windows] == [[{"count": s}] for s in starts]
                metas = [m for m in got if m["type"] == "meta"]
                assert all(m["coverage"] == {"reporting": 1, "expected": 1} for m in metas)
            assert closed["slow"] == 4008
            drops = [m["dropped"].get("client_queue", 0) for m in slow_log if m["type"] == "meta"]
            assert drops
            assert max(drops) > 0
            assert any(m == {"type": "complete", "id": "r", "reason": "evicted"}
                       for m in slow_log) or closed["slow"] == 4008
            assert gw.metrics.value("clients_evicted_total", reason="too_slow") == 1
            assert gw.metrics.value("clients_evicted_total", reason="send_deadline") == 1
            # nothing leaks: no client state, no subscription, no extra task
            with trio.fail_after(5):
                await wait_until(lambda: not gw.core.clients and not gw.sessions
                                 and count_tasks() <= tasks_before)
            assert gw.core.runs == {}
            assert gw.core.registry.subs == {}


async def test_a_slow_sse_client_is_evicted_and_counted() -> None:
    """The SSE transport shares the WS eviction path: the slow reader is cut off and counted in
    ``clients_evicted_total{reason="too_slow"}`` (it was not counted before)."""
    limits = Limits(client_queue_frames=16, client_queue_bytes=256 * 1024, send_deadline_s=5.0,
                    slow_client_s=0.5, meta_interval_s=0.2)
    config = GatewayConfig(port=0, grace_s=3.0, limits=limits)
    blob = "x" * 400
    with trio.fail_after(40):
        async with open_gateway(config, prepare=fake_prepare) as gw, open_agent(gw.port) as agent:
            sock = trio.socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            await sock.connect(("127.0.0.1", gw.port))
            stream = trio.SocketStream(sock)
            ended = trio.Event()
            received = bytearray()

            async def read_slowly() -> None:
                try:
                    while chunk := await stream.receive_some(1024):
                        received.extend(chunk)
                        await trio.sleep(0.05)
                except trio.BrokenResourceError:
                    pass
                ended.set()

            async with stream, trio.open_nursery() as nursery:
                await stream.send_all(b"GET /v1/sse?q=select%20*%20from%20play HTTP/1.1\r\n"
                                      b"Host: x\r\n\r\n")
                sub = await agent.recv_type("subscribe")
                nursery.start_soon(read_slowly)
                seq = 0
                with trio.move_on_after(20):
                    while not ended.is_set():
                        await agent.send(Events("default", [
                            {"subs": [sub["sub"]], "t": 1, "s": seq + j, "e": {"b": blob}}
                            for j in range(50)]))
                        seq += 50
                        await trio.sleep(0.01)
                assert ended.is_set(), "the slow SSE client was never cut off"
                nursery.cancel_scope.cancel()
            assert received.startswith(b"HTTP/1.1 200")
            assert gw.metrics.value("clients_evicted_total", reason="too_slow") == 1
            assert gw.metrics.value("clients_evicted_total", reason="send_deadline") == 0
            with trio.fail_after(5):
                await wait_until(lambda: not gw.core.clients and not gw.sessions)


async def test_a_busy_gateway_loop_does_not_count_against_a_clients_send_deadline() -> None:
    """Before: at 5,000 agents the gateway's own loop ran seconds late and evicted its one client
    with 4008 "send deadline exceeded" although the client read everything. The ticker now gives
    sends in progress back the time the loop was late."""
    from mantis_py.gateway.server import GatewayServer

    server = GatewayServer(GatewayConfig(port=0))

    def hog_the_loop() -> None:  # what thousands of agents' frames do to a saturated loop
        time.sleep(0.2)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_ticker)
            await trio.sleep(0.1)  # the ticker runs
            with trio.move_on_after(0.5) as send:  # as handlers._pump does around a send
                server.send_scopes.add(send)
                for _ in range(6):  # the loop is busy: each turn blocks it for 0.2 s
                    hog_the_loop()
                    await trio.lowlevel.checkpoint()
                server.send_scopes.discard(send)
            assert not send.cancelled_caught  # 1.2 s of a busy loop are not the client's
            with trio.move_on_after(0.3) as idle:  # a quiet loop: the deadline holds as before
                await trio.sleep(1.0)
            assert idle.cancelled_caught
            assert server.metrics.value("loop_lag_seconds_total") > 0.8
            nursery.cancel_scope.cancel()
