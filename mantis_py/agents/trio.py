"""The trio runner: ``async with open_agent(...) as agent`` inside a trio program.

Theory of operation: the same core and the same recipe as the thread runner (``sync.py``), but as
tasks in the caller's nursery: one task keeps a websocket (``websockets.trio``) open with jittered
backoff, one reads frames into the core, one polls the core every tick and writes due frames
(each write bounded by ``send_timeout_s``; a stuck write aborts the link). ``publish`` is the
same lock-free host path, callable from the trio thread or any other thread. Work is done in
chunks with checkpoints between them so the host's tasks keep running; the CPU budget is
measured as time spent inside the core. Leaving the ``async with`` flushes for at most
``close_timeout_s`` and cancels the tasks.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio
from websockets.exceptions import ConnectionClosed
from websockets.trio.client import connect
from websockets.typing import Subprotocol

from ..errors import RemoteProtocolError
from ..wire.messages import SUBPROTOCOL
from .core import AgentCore
from .host import HostSide
from .sync import WS_LOGGER, GatewayList, agent_urls, backoff_delays, make_config

if TYPE_CHECKING:
    import ssl as ssl_module

    from .subscriptions import Engine

__all__ = ["TrioAgent", "open_agent"]



class TrioAgent(HostSide):
    """The agent object ``open_agent`` yields; same public methods as :class:`~.sync.Agent`."""

    def __init__(
        self,
        app: str,
        gateway: str | Sequence[str],
        token: str | None,
        instance: str | None,
        mask: Sequence[str],
        tags: Mapping[str, str] | None,
        zone: str | None,
        ssl: ssl_module.SSLContext | None,
        engine: Engine | None,
        rng: random.Random | None,
        settings: Mapping[str, Any],
    ) -> None:
        self.config, self.settings, _ = make_config(app, instance, mask, tags, zone, settings)
        self._rng = rng if rng is not None else random.Random()
        self.gateways = GatewayList(agent_urls(gateway), self._rng)
        self.token = token
        self.ssl = ssl
        self._bind_core(AgentCore(self.config, random.Random(self._rng.getrandbits(64)), engine))
        self._busy = 0.0  # seconds spent inside the core (the CPU budget's measure)
        self._unsent: list[Any] = []
        self._closing = False  # on exit: the writer flushes everything, not only due batches
        self.last_error: str | None = None

    @property
    def url(self) -> str:
        """The agent endpoint in use (or tried next)."""
        return self.gateways.current

    # ------------------------------------------------------------ tasks

    def _poll(self, now: float, max_events: int = 256) -> bool:
        t0 = time.perf_counter()
        more = self._core.poll(now, max_events)
        self._busy += time.perf_counter() - t0
        self._core.report_cpu(now, self._busy)
        return more

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff; until cancelled."""
        s = self.settings
        delays = backoff_delays(s.reconnect_min_s, s.reconnect_max_s, self._rng)
        while True:
            welcomed = await self._connect_and_serve()
            self.gateways.failed()  # sticky until it fails; then the next one
            if welcomed:
                delays = backoff_delays(s.reconnect_min_s, s.reconnect_max_s, self._rng)
            deadline = trio.current_time() + next(delays)
            while trio.current_time() < deadline:
                self._poll(time.time())
                await trio.sleep(min(s.idle_tick_s, max(0.0, deadline - trio.current_time())))

    async def _connect_and_serve(self) -> bool:
        s = self.settings
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        core = self._core
        welcomed = False
        try:
            async with connect(
                self.url,
                subprotocols=[Subprotocol(SUBPROTOCOL)],
                additional_headers=headers,
                ssl=self.ssl,
                compression=None,
                proxy=None,
                open_timeout=s.open_timeout_s,
                close_timeout=min(s.close_timeout_s, 0.5),
                max_size=s.max_frame_bytes,
                logger=WS_LOGGER,
                ping_interval=None,  # liveness: the gateway's mantis pings (link_silent)
            ) as ws:
                core.connected(time.time())
                async with trio.open_nursery() as nursery:

                    async def reader() -> None:
                        nonlocal welcomed
                        try:
                            async for data in ws:
                                t0, loaded = time.thread_time(), core.engine_loaded
                                core.receive_data(data, time.time())
                                if loaded:  # (the frame that loads the engine is not charged)
                                    core.report_control_cpu(time.time(), time.thread_time() - t0)
                                welcomed = welcomed or core.is_open
                                # a burst of subscribes must not hold back due windows: let
                                # the writer poll between two frames; a flood waits in the
                                # socket while its CPU is over budget
                                await trio.lowlevel.checkpoint()
                                while core.control_overdrawn(time.time()):  # noqa: ASYNC110
                                    await trio.sleep(s.tick_s)  # (refills with time: no event)
                        except RemoteProtocolError as exc:
                            self.last_error = f"protocol: {exc}"
                            await ws.aclose(exc.close_code, str(exc)[:100])
                        except ConnectionClosed as exc:
                            self.last_error = f"closed: {exc}"
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(reader)
                    await self._writer(ws)
                    nursery.cancel_scope.cancel()
        except (OSError, ConnectionClosed, TimeoutError, trio.TooSlowError) as exc:
            self.last_error = f"link: {exc!r}"
        except Exception as exc:  # handshake refused, bad URL, ...: retry later
            self.last_error = f"link: {exc!r}"
        finally:
            if core.link is not None:
                core.disconnected(time.time(), self._unsent)
            self._unsent = []
        return welcomed

    async def _writer(self, ws: Any) -> None:
        s = self.settings
        core = self._core
        while True:
            now = time.time()
            more = self._poll(now)
            frames = core.data_to_send(now, max_bytes=s.max_send_backlog, force=self._closing)
            if not await self._send(ws, frames):
                return
            if core.link_silent(now):
                self.last_error = "gateway silent for three ping periods"
                return
            tick = s.tick_s if core.subs or not core.is_open else s.idle_tick_s
            await trio.sleep(0 if more else tick)

    async def _send(self, ws: Any, frames: list[Any]) -> bool:
        for i, f in enumerate(frames):
            with trio.move_on_after(self.settings.send_timeout_s) as scope:
                try:
                    await ws.send(f.data, text=True)
                except ConnectionClosed:
                    self._unsent = frames[i:]
                    return False
            if scope.cancelled_caught:
                self.last_error = "send stalled"
                self._unsent = frames[i:]
                return False
        return True


@asynccontextmanager
async def open_agent(
    app: str,
    gateway: str | Sequence[str] = "ws://127.0.0.1:7100",
    token: str | None = None,
    instance: str | None = None,
    mask: Sequence[str] = (),
    tags: Mapping[str, str] | None = None,
    *,
    zone: str | None = None,
    ssl: ssl_module.SSLContext | None = None,
    engine: Engine | None = None,
    rng: random.Random | None = None,
    allow_unmasked: bool = False,
    **settings: Any,
) -> AsyncIterator[TrioAgent]:
    """Run an agent in the caller's trio program (arguments as for :class:`~.sync.Agent`;
    ``gateway`` may be a list of URLs: fail-over as in docs/agent.md §Fail-over).

    Example::

        async with open_agent(app="playback", gateway="ws://127.0.0.1:7100") as agent:
            agent.publish({"event": "play"})
    """
    settings["allow_unmasked"] = allow_unmasked  # masked values leave only if the service says so
    agent = TrioAgent(app, gateway, token, instance, mask, tags, zone, ssl, engine, rng, settings)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.run)
        try:
            yield agent
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(agent.settings.close_timeout_s):
                    await _final_flush(agent)
            nursery.cancel_scope.cancel()


async def _final_flush(agent: TrioAgent) -> None:
    core = agent._core
    agent._closing = True
    deadline = trio.current_time() + agent.settings.close_timeout_s * 0.6
    # let the writer task (still running) ship everything that is pending
    while trio.current_time() < deadline and core.is_open:
        pending = any(len(st.pending) or st.ingress.items for st in core.streams.values())
        if not pending:
            return
        await trio.sleep(agent.settings.tick_s)
