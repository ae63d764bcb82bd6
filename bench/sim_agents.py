"""Simulated agents speaking the real mantis.v1 protocol, thousands per process, cheaply.

``python bench/sim_agents.py CONFIG_JSON``; config: {"app", "prefix", "n", "urls": [ws urls in
fail-over order], "out": result file, "seed", "events": events per agent and window (30)}. Each agent: hello -> welcome; answers pings;
for every subscribe it sends, each second, one partial for the window that just ended (a part
computed once per process by the real query engine, re-stamped per window), starting with the
first window that began after it received the subscription. On a lost link it tries the next URL
after a jittered delay (first retry <= 0.5 s). On SIGTERM it writes {"welcomes": {instance:
[times]}, "parts": n} to ``out``. With ``"report": true`` it prints ``open N`` (agents welcomed
and connected) every 2 s.

The websocket client is a minimal RFC 6455 client on asyncio streams (a fixed upgrade request,
text frames with a zero masking key, no extensions): a simulator must cost far less than the
gateway it measures, and a full websocket client library costs about as much per connection as
the gateway's side does. What the gateway receives is byte-for-byte valid websocket traffic.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import random
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mantis_py.query import prepare

TEMPLATES: dict[str, dict[str, Any]] = {}
COUNTRIES = ("fr", "de", "us", "br", "jp")
OPEN_TIMEOUT_S = 15.0  # a storm of thousands of handshakes queues at the gateway


def template(query: str, events: int) -> dict[str, Any]:
    """One real window part of ``query`` (``events`` events folded by the engine), reused by every
    agent."""
    p = prepare(query)
    src = p.source(app="x", stream="default", instance="sim", rng=random.Random(0))
    src.start(1000.0)
    for i in range(events):
        src.offer({"country": COUNTRIES[i % 5], "latency_ms": i * 7}, 1000.01 + i / (events + 1))
    part: dict[str, Any] = src.poll(1001.001)[0]
    return part


def frame(payload: bytes, opcode: int = 1) -> bytes:
    """A client frame: FIN, ``opcode``, masked with the zero key (so the payload is as is)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, payload) of the next server frame (servers never mask; no fragmentation here)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0 & 0x0F, await reader.readexactly(n)


class Link:
    """One websocket connection to ``url`` (``ws://host:port/path``)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> Link:
        u = urlsplit(url)
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(u.hostname, u.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mantis.v1\r\n\r\n"
                      ).encode())
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        return cls(reader, writer)

    def send(self, msg: dict[str, Any] | bytes) -> None:
        payload = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
        self.writer.write(frame(payload))

    async def recv(self) -> dict[str, Any] | None:
        """The next text message, or None when the connection closed."""
        while True:
            opcode, payload = await read_frame(self.reader)
            if opcode == 1:
                msg: dict[str, Any] = json.loads(payload)
                return msg
            if opcode == 8:
                return None
            if opcode == 9:  # a websocket ping (the gateway uses mantis pings; answer anyway)
                self.writer.write(frame(payload, 10))

    def close(self) -> None:
        self.writer.close()


class Sim:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.welcomes: dict[str, list[float]] = {}
        self.parts = 0
        self.open = 0
        self.stopping = asyncio.Event()
        self.links: dict[str, tuple[Link, dict[str, int]]] = {}  # instance -> (link, sid -> k0)
        self.queries: dict[str, str] = {}  # sid -> query text

    async def agent(self, instance: str, rng: random.Random) -> None:
        urls = [u.rstrip("/") + "/v1/agent" for u in self.cfg["urls"]]
        at = 0
        hello = {"type": "hello", "app": self.cfg["app"], "instance": instance,
                 "streams": ["default"], "tags": {}, "version": "sim", "pid": 0}
        while not self.stopping.is_set():
            link = None
            try:
                link = await Link.open(urls[at])
                link.send(hello)
                subs: dict[str, int] = {}
                while (msg := await link.recv()) is not None:
                    kind = msg.get("type")
                    if kind == "welcome":
                        self.welcomes.setdefault(instance, []).append(time.time())
                        self.links[instance] = (link, subs)
                        self.open += 1
                    elif kind == "ping":
                        link.send({"type": "pong", "nonce": msg.get("nonce")})
                    elif kind == "subscribe":
                        subs[msg["sub"]] = math.floor(time.time()) + 1
                        self.queries[msg["sub"]] = msg["query"]
                    elif kind == "unsubscribe":
                        subs.pop(msg["sub"], None)
            except (TimeoutError, OSError, ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                if self.links.get(instance, (None,))[0] is link and link is not None:
                    del self.links[instance]
                    self.open -= 1
                if link is not None:
                    link.close()
            if self.stopping.is_set():
                return
            at = (at + 1) % len(urls)
            await asyncio.sleep(rng.uniform(0.05, 0.5))

    async def send_parts(self) -> None:
        """Every second, just after it ends, the window's part to every agent's subscriptions
        (encoded once per query and window; the agents' sends are spread over 0.02-0.15 s)."""
        rng = random.Random(self.cfg.get("seed", 0))
        while True:
            now = time.time()
            k = math.floor(now)  # the window in progress: its part leaves shortly after its end
            await asyncio.sleep(k + 1.02 - now)
            encoded: dict[str, bytes] = {}
            links = list(self.links.values())
            rng.shuffle(links)
            spread = 0.13 / max(1, len(links))
            for i, (link, subs) in enumerate(links):
                for sid, first in list(subs.items()):
                    if k < first:
                        continue
                    query = self.queries[sid]
                    body = encoded.get(query)
                    if body is None:
                        part = dict(self.template(query))
                        part["k"] = k
                        part["window"] = [k, k + 1]
                        body = encoded[query] = json.dumps(part).encode()
                    link.send(b'{"type":"partial","sub":"' + sid.encode() + b'","part":' + body
                              + b"}")
                    self.parts += 1
                if i % 50 == 49:
                    await asyncio.sleep(spread * 50)

    def template(self, query: str) -> dict[str, Any]:
        got = TEMPLATES.get(query)
        if got is None:
            got = TEMPLATES[query] = template(query, self.cfg.get("events", 30))
        return got

    async def report(self) -> None:
        while True:
            print(f"open {self.open}", flush=True)
            await asyncio.sleep(2.0)

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        rng = random.Random(self.cfg.get("seed", 0))
        helpers = [asyncio.ensure_future(self.send_parts())]
        if self.cfg.get("report"):
            helpers.append(asyncio.ensure_future(self.report()))
        tasks = []
        for i in range(self.cfg["n"]):
            tasks.append(asyncio.ensure_future(
                self.agent(f"{self.cfg['prefix']}{i}", random.Random(rng.getrandbits(32)))))
            if i % 100 == 99:
                await asyncio.sleep(0.02)  # do not open thousands of sockets in one instant
        await self.stopping.wait()
        for t in tasks + helpers:
            t.cancel()
        await asyncio.gather(*tasks, *helpers, return_exceptions=True)
        Path(self.cfg["out"]).write_text(  # noqa: ASYNC240 - once, at exit
            json.dumps({"welcomes": self.welcomes, "parts": self.parts}))


if __name__ == "__main__":
    asyncio.run(Sim(json.loads(sys.argv[1])).main())
