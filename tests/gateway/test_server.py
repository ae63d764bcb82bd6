"""A real gateway on 127.0.0.1 with scripted websocket agents and clients (fake engine)."""

from __future__ import annotations

import json

import pytest
import trio
from websockets.exceptions import ConnectionClosed

from mantis_py.gateway.config import GatewayConfig, Limits
from mantis_py.wire.messages import Events

from .conftest import open_agent, open_client, open_gateway, recv_json
from .fakes import CACHE, fake_prepare


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    CACHE.clear()


async def test_raw_rows_flow_from_agent_to_client() -> None:
    with trio.fail_after(10):
        async with open_gateway(prepare=fake_prepare) as gw, open_agent(gw.port) as agent, \
                open_client(gw.port) as ws:
            await ws.send(json.dumps({"type": "query", "id": "q1", "query": "select * from play"}))
            accepted = await recv_json(ws)
            assert accepted == {"type": "accepted", "id": "q1", "canonical": "SELECT * FROM PLAY",
                                "agents": 1}
            sub = await agent.recv_type("subscribe")
            await agent.send(Events("default", [{"subs": [sub["sub"]], "t": 1, "s": 0,
                                                 "e": {"n": 1}}]))
            rows = await recv_json(ws)
            assert rows == {"type": "rows", "id": "q1", "window": None, "rows": [{"n": 1}]}
            await ws.send(json.dumps({"type": "cancel", "id": "q1"}))
            assert (await recv_json(ws))["type"] == "complete"
            assert (await agent.recv_type("unsubscribe"))["sub"] == sub["sub"]


async def test_malformed_frames_close_with_the_right_code_and_gateway_keeps_serving() -> None:
    config = GatewayConfig(port=0, limits=Limits(client_frame_max=1024))
    with trio.fail_after(20):
        async with open_gateway(config, prepare=fake_prepare) as gw:
            cases = [("{not json", 1007), ('{"type":"launch"}', 4000), ("x" * 5000, 1009),
                     (b"\x00\xff\xfe random", 1003), ('"\\ud800"', 1007), ('[1,2]', 4000),
                     ('{"type":"query","id":"q"}', 4000)]
            for payload, code in cases:
                async with open_client(gw.port) as ws:
                    await ws.send(payload)
                    with pytest.raises(ConnectionClosed) as info:
                        await ws.recv()
                    got = info.value.rcvd.code if info.value.rcvd else info.value.sent.code
                    assert got == code, payload
            async with open_client(gw.port) as ws:
                await ws.send(json.dumps({"type": "query", "id": "q", "query": "select bad"}))
                assert (await recv_json(ws))["type"] == "error"


async def test_random_bytes_after_the_handshake_close_with_1002() -> None:
    import random

    rng = random.Random(4)
    with trio.fail_after(20):
        async with open_gateway(prepare=fake_prepare) as gw:
            for _ in range(5):
                stream = await trio.open_tcp_stream("127.0.0.1", gw.port)
                async with stream:
                    await stream.send_all(
                        b"GET /v1/query HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        b"Sec-WebSocket-Version: 13\r\n\r\n")
                    head = b""
                    while b"\r\n\r\n" not in head:
                        head += await stream.receive_some(4096)
                    assert head.startswith(b"HTTP/1.1 101")
                    rest = head.split(b"\r\n\r\n", 1)[1]
                    # unmasked frames with reserved bits: never valid from a client
                    await stream.send_all(bytes([0xF0 | rng.randrange(16)])
                                          + rng.randbytes(200))
                    data = rest
                    try:
                        while chunk := await stream.receive_some(4096):
                            data += chunk
                    except trio.BrokenResourceError:
                        pass
                    assert data[0] == 0x88  # a close frame
                    assert int.from_bytes(data[2:4], "big") == 1002
            # still serving
            async with open_client(gw.port) as ws:
                await ws.send(json.dumps({"type": "query", "id": "q", "query": "select bad"}))
                assert (await recv_json(ws))["type"] == "error"


async def test_no_sockets_leak_after_many_connections() -> None:
    import os

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    with trio.fail_after(30):
        async with open_gateway(prepare=fake_prepare) as gw, open_agent(gw.port) as agent, \
                trio.open_nursery() as nursery:

            async def read_agent() -> None:
                while True:
                    await agent.recv()

            nursery.start_soon(read_agent)
            before = fds()
            for i in range(30):
                async with open_client(gw.port) as ws:
                    await ws.send(json.dumps({"type": "query", "id": "q",
                                              "query": f"select * from play limit {i + 1}"}))
                    await recv_json(ws)
            with trio.move_on_after(5):
                while fds() > before or gw.core.clients:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            assert (fds() - before, list(gw.core.clients)) == (0, [])
            assert gw.core.runs == {}
            nursery.cancel_scope.cancel()
