"""Fixtures: a real gateway on 127.0.0.1 (port 0) and scripted websocket agents/clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from websockets.trio.client import connect

from mantis_py.gateway.config import GatewayConfig
from mantis_py.gateway.server import GatewayServer, serve_gateway
from mantis_py.wire import codec
from mantis_py.wire.messages import SUBPROTOCOL, Hello

__all__ = [
    "ScriptedAgent", "http_request", "open_agent", "open_client", "open_gateway", "recv_json",
    "wait_until",
]


@asynccontextmanager
async def open_gateway(config: GatewayConfig | None = None,
                       prepare: Callable[..., Any] | None = None) -> AsyncIterator[GatewayServer]:
    config = config or GatewayConfig(port=0, grace_s=1.0)
    async with trio.open_nursery() as nursery:
        server: GatewayServer = await nursery.start(
            lambda task_status: serve_gateway(config, prepare=prepare, task_status=task_status))
        yield server
        nursery.cancel_scope.cancel()


class ScriptedAgent:
    """A websocket agent driven by hand: hello, then whatever the test sends."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.subs: dict[str, dict[str, Any]] = {}

    async def recv(self) -> dict[str, Any]:
        msg = codec.to_plain(codec.decode(await self.ws.recv()))
        if msg["type"] == "subscribe":
            self.subs[msg["sub"]] = msg
        elif msg["type"] == "unsubscribe":
            self.subs.pop(msg["sub"], None)
        return msg

    async def recv_type(self, kind: str) -> dict[str, Any]:
        while True:
            msg = await self.recv()
            if msg["type"] == kind:
                return msg

    async def send(self, msg: Any) -> None:
        await self.ws.send(codec.encode(msg).decode())


@asynccontextmanager
async def open_agent(port: int, app: str = "play", instance: str = "i-1",
                     token: str | None = None, scheme: str = "ws",
                     **kwargs: Any) -> AsyncIterator[ScriptedAgent]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with connect(f"{scheme}://127.0.0.1:{port}/v1/agent", subprotocols=[SUBPROTOCOL],
                       additional_headers=headers, **kwargs) as ws:
        agent = ScriptedAgent(ws)
        await agent.send(Hello(app, instance, ("default",)))
        welcome = await agent.recv()
        assert welcome["type"] == "welcome"
        yield agent


@asynccontextmanager
async def open_client(port: int, token: str | None = None, path: str = "/v1/query",
                      **kwargs: Any) -> AsyncIterator[Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with connect(f"ws://127.0.0.1:{port}{path}", additional_headers=headers,
                       **kwargs) as ws:
        yield ws


async def recv_json(ws: Any) -> dict[str, Any]:
    return dict(json.loads(await ws.recv()))


async def http_request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
                       body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """A minimal HTTP/1.1 client (Connection: close): status, lower-case headers, body."""
    import h11

    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        hdrs = [("host", f"127.0.0.1:{port}"), ("connection", "close"),
                *((headers or {}).items())]
        if body or method == "POST":
            hdrs.append(("content-length", str(len(body))))
        await stream.send_all(conn.send(h11.Request(method=method, target=path, headers=hdrs)))
        if body:
            await stream.send_all(conn.send(h11.Data(data=body)))
        await stream.send_all(conn.send(h11.EndOfMessage()))
        status, rheaders, data = 0, {}, bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                rheaders = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                data += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return status, rheaders, bytes(data)


async def wait_until(predicate: Callable[[], bool], interval: float = 0.02) -> None:
    """Poll ``predicate`` (bounded by the caller's ``trio.fail_after``)."""
    while not predicate():  # noqa: ASYNC110 - polling state owned by other threads/processes
        await trio.sleep(interval)
