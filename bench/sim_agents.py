"""Simulated agents speaking the real mantis.v1 protocol, many per process (asyncio websockets).

``python bench/sim_agents.py CONFIG_JSON``; config: {"app", "prefix", "n", "urls": [ws urls in
fail-over order], "out": result file, "seed"}. Each agent: hello -> welcome; answers pings;
for every subscribe it sends, each second, one partial for the window that just ended (a part
computed once per process by the real query engine, re-stamped per window), starting with the
first window that began after it received the subscription. On a lost link it tries the next URL
after a jittered delay (first retry <= 0.5 s). On SIGTERM it writes {"welcomes": {instance:
[times]}, "parts": n} to ``out``.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import websockets

from mantis_py.query import prepare

TEMPLATES: dict[str, dict[str, Any]] = {}
COUNTRIES = ("fr", "de", "us", "br", "jp")


def template(query: str) -> dict[str, Any]:
    got = TEMPLATES.get(query)
    if got is None:
        p = prepare(query)
        src = p.source(app="x", stream="default", instance="sim", rng=random.Random(0))
        src.start(1000.0)
        for i in range(30):
            src.offer({"country": COUNTRIES[i % 5], "latency_ms": i * 7}, 1000.01 + i / 40)
        got = TEMPLATES[query] = src.poll(1001.001)[0]
    return got


class Sim:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.welcomes: dict[str, list[float]] = {}
        self.parts = 0
        self.stopping = asyncio.Event()

    async def agent(self, instance: str, rng: random.Random) -> None:
        urls = [u.rstrip("/") + "/v1/agent" for u in self.cfg["urls"]]
        at = 0
        while not self.stopping.is_set():
            try:
                async with websockets.connect(urls[at], subprotocols=["mantis.v1"],
                                              open_timeout=5, max_size=None,
                                              ping_interval=None, compression=None) as ws:
                    await ws.send(json.dumps({"type": "hello", "app": self.cfg["app"],
                                              "instance": instance, "streams": ["default"],
                                              "tags": {}, "version": "sim", "pid": 0}))
                    subs: dict[str, tuple[str, int]] = {}  # sid -> (query, first k)
                    sender = asyncio.ensure_future(self.send_parts(ws, subs, rng))
                    try:
                        async for raw in ws:
                            msg = json.loads(raw)
                            kind = msg.get("type")
                            if kind == "welcome":
                                self.welcomes.setdefault(instance, []).append(time.time())
                            elif kind == "ping":
                                await ws.send(json.dumps({"type": "pong", "nonce": msg.get("nonce")}))
                            elif kind == "subscribe":
                                subs[msg["sub"]] = (msg["query"], math.floor(time.time()) + 1)
                            elif kind == "unsubscribe":
                                subs.pop(msg["sub"], None)
                    finally:
                        sender.cancel()
            except (TimeoutError, OSError, websockets.exceptions.WebSocketException):
                pass
            if self.stopping.is_set():
                return
            at = (at + 1) % len(urls)
            await asyncio.sleep(rng.uniform(0.05, 0.5))

    async def send_parts(self, ws: Any, subs: dict[str, tuple[str, int]],
                         rng: random.Random) -> None:
        while True:
            now = time.time()
            k = math.floor(now)  # the window in progress: its part leaves shortly after its end
            await asyncio.sleep(k + 1 + rng.uniform(0.02, 0.15) - now)
            for sid, (query, first) in list(subs.items()):
                if k < first:
                    continue
                part = dict(template(query))
                part["k"] = k
                part["window"] = [k, k + 1]
                await ws.send(json.dumps({"type": "partial", "sub": sid, "part": part}))
                self.parts += 1

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        rng = random.Random(self.cfg.get("seed", 0))
        tasks = []
        for i in range(self.cfg["n"]):
            tasks.append(asyncio.ensure_future(
                self.agent(f"{self.cfg['prefix']}{i}", random.Random(rng.getrandbits(32)))))
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # do not open a thousand sockets in one instant
        await self.stopping.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        Path(self.cfg["out"]).write_text(  # noqa: ASYNC240 - once, at exit
            json.dumps({"welcomes": self.welcomes, "parts": self.parts}))


if __name__ == "__main__":
    asyncio.run(Sim(json.loads(sys.argv[1])).main())
