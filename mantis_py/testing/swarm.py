"""Many simulated agents in one trio program, speaking the real protocol (tests and benchmarks).

Each simulated agent is a real :class:`~mantis_py.agents.core.AgentCore` (hello, stats, pongs,
subscriptions, window partials: exactly what ``Agent`` sends) over its own ``websockets.trio``
connection. What is simulated is the runner: instead of polling every 10 ms, an agent wakes once
a second, just after the second begins (plus a little jitter), publishes ``events`` events and
polls its core, so the part of the window that just ended goes out at once. That keeps the cost
per agent low enough to run thousands of agents per process.

``light=True`` goes further for benchmarks of the gateway: the agents' cores still do the
handshake, subscriptions and pongs, but the window parts are not computed per agent: the swarm
folds ``events`` events into one real part per window and query (the engine's ``SourceRunner``)
and every agent sends that same encoded ``partial`` frame. The gateway receives and merges exactly
what it would from real agents publishing those events; the simulator saves the per-agent work.

    swarm = Swarm(url, count=300, events=2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(swarm.run)
        await swarm.wait_open(300)

Every agent publishes ``{"country": ..., "latency_ms": ...}`` on stream ``default`` of app
``app``; agent ``i`` is instance ``f"{prefix}{i}"``. With ``events`` per second each window of one
second counts ``count * events`` events once every agent is subscribed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

import trio
from websockets.trio.client import connect
from websockets.typing import Subprotocol

from ..agents.core import AgentConfig, AgentCore
from ..wire.messages import SUBPROTOCOL

__all__ = ["COUNTRIES", "Swarm"]

COUNTRIES = ("BR", "US", "DE", "JP", "FR", "IN")


class Swarm:
    """``count`` simulated agents (see the module docstring)."""

    def __init__(self, url: str | Sequence[str], count: int, *, first: int = 0, events: int = 0,
                 app: str = "bench", prefix: str = "sim-", seed: int = 1,
                 warm: Sequence[str] = (), light: bool = False) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        self.urls = [u if u.endswith("/v1/agent") else u.rstrip("/") + "/v1/agent" for u in urls]
        self.count = count
        self.first = first
        self.events = events
        self.app = app
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.seed = seed
        self.warm = tuple(warm)
        self.light = light
        self._frames: dict[tuple[str, int], bytes] = {}  # (sub id, window) -> partial frame
        self.cores: list[AgentCore] = []
        self.opened = 0  # agents that got their first welcome
        self.connects = 0
        self.errors = 0

    def open_now(self) -> int:
        """Agents whose link is open right now."""
        return sum(1 for c in self.cores if c.is_open)

    async def wait_open(self, n: int, timeout: float = 60.0) -> bool:  # noqa: ASYNC109
        """Until ``n`` agents have an open link (False after ``timeout`` seconds)."""
        with trio.move_on_after(timeout):
            while self.open_now() < n:  # noqa: ASYNC110 (agents are tasks, not events)
                await trio.sleep(0.05)
            return True
        return False

    async def run(self) -> None:
        """Run every agent until cancelled (connections are opened 50 at a time)."""
        if self.warm:
            # the engine caches compiled queries: compile once here, not in every agent's task
            from ..query import prepare

            for text in self.warm:
                prepare(prepare(text, mode="live").canonical, mode="live")
        async with trio.open_nursery() as nursery:
            for i in range(self.first, self.first + self.count):
                nursery.start_soon(self._agent, i)
                if i % 50 == 49:
                    await trio.sleep(0.02)

    def _part_frame(self, core: AgentCore, sid: str, k: int) -> bytes:
        """The ``partial`` frame of window ``k`` of subscription ``sid`` (light mode), made once
        per swarm from ``events`` events folded by the engine's real ``SourceRunner``."""
        frame = self._frames.get((sid, k))
        if frame is None:
            from ..query import prepare
            from ..wire import codec
            from ..wire.messages import Partial

            if len(self._frames) > 64:
                self._frames.clear()
            src = prepare(core.subs[sid].query, mode="live").source(app=self.app, instance="sim")
            src.start(float(k))
            for n in range(self.events):
                src.offer({"country": COUNTRIES[n % 6], "latency_ms": (n * 37) % 500}, k + 0.5)
            parts = [p for p in src.poll(k + 1.0) if p["k"] == k]
            frame = self._frames[(sid, k)] = codec.encode(Partial(sid, parts[0]))
        return frame

    async def _agent(self, i: int) -> None:
        # max_poll_gap_s: this runner polls once a second by design, not every 10 ms
        core = AgentCore(AgentConfig(app=self.app, instance=f"{self.prefix}{i}", cpu_budget=1.0,
                                     max_poll_gap_s=3.0),
                         random.Random(self.seed * 100_003 + i))
        self.cores.append(core)
        rng = self.rng
        index = rng.randrange(len(self.urls))
        opened = False
        first_k: dict[str, int] = {}
        while True:
            try:
                async with connect(self.urls[index], subprotocols=[Subprotocol(SUBPROTOCOL)],
                                   compression=None, open_timeout=60, ping_interval=None,
                                   max_size=1 << 20) as ws:
                    self.connects += 1
                    core.connected(time.time())

                    async def reader(ws: Any = ws) -> None:
                        async for data in ws:
                            core.receive_data(data, time.time())
                        raise ConnectionError("closed by the gateway")

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(reader)
                        n = 0
                        while True:
                            now = time.time()
                            if core.is_open and not opened:
                                opened = True
                                self.opened += 1
                            if self.light and core.subs:
                                for f in core.data_to_send(now, force=True):  # pongs
                                    await ws.send(f.data, text=True)
                                k = int(now) - 1  # the window that just ended
                                for sid, sub in list(core.subs.items()):
                                    if sub.ships != "partials":
                                        continue
                                    if sid not in first_k:  # the subscription's first window
                                        first_k[sid] = getattr(sub.source, "_next_k", None) or k + 1
                                    if k >= first_k[sid]:
                                        await ws.send(self._part_frame(core, sid, k), text=True)
                                await trio.sleep(1.0 - (time.time() % 1.0)
                                                 + rng.uniform(0.01, 0.15))
                                continue
                            if core.subs and self.events:
                                for _ in range(self.events):
                                    core.offer({"country": COUNTRIES[(i + n) % 6],
                                                "latency_ms": (i * 7 + n * 37) % 500},
                                               "default", now)
                                    n += 1
                            core.poll(now)
                            for f in core.data_to_send(now, force=True):
                                await ws.send(f.data, text=True)
                            silent = getattr(core, "link_silent", None)  # older cores: none
                            if silent is not None and silent(now):
                                raise ConnectionError("gateway silent")
                            # once a second, just after the second begins (+ jitter)
                            await trio.sleep(1.0 - (time.time() % 1.0) + rng.uniform(0.01, 0.15))
            except Exception:
                self.errors += 1
            core.disconnected(time.time())
            index = (index + 1) % len(self.urls)  # fail over like the real agent
            await trio.sleep(rng.uniform(0.25, 0.5))
