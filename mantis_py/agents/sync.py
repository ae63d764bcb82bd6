"""The thread runner: ``Agent``, for threaded, asyncio and plain programs (docs/agent.md).

Theory of operation: ``Agent.publish`` runs on the host's threads and only touches the core's
lock-free host path (:meth:`AgentCore.offer`). Everything else runs in one daemon thread,
``mantis-agent``, which loops: connect (websockets.sync, subprotocol ``mantis.v1``) -> receive with
a short timeout -> ``core.poll(now)`` -> hand due frames to a small sender thread -> repeat. Writes
go through the sender thread so a gateway that stops reading can never stall the loop: its
backlog is capped (the core then buffers, bounded, and counts drops), and a write stuck for
``send_timeout_s`` aborts the connection. On any failure the loop reconnects with jittered
exponential backoff while still polling the core (leases expire after 30 s without a gateway).

Host protection: every thread is a daemon; ``close()`` (also run at interpreter exit) flushes for
at most ``close_timeout_s`` (default 0.9 s) and returns; after ``os.fork()`` the child's agents
rebuild their state and start a fresh thread (new instance id when it was defaulted). The loop
measures its own CPU (``time.thread_time``) and the core samples down beyond ``cpu_budget``.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import random
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

# Imported here, not lazily: websockets imports logging, whose at-fork handler (re-creating its
# lock) must be registered before ours so it runs first in a forked child.
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from ..errors import ConfigurationError, RemoteProtocolError
from ..wire.messages import SUBPROTOCOL
from .config import AgentConfig
from .core import AgentCore
from .host import HostSide
from .link import Frame

if TYPE_CHECKING:
    import ssl as ssl_module

    from .subscriptions import Engine

__all__ = ["Agent", "GatewayList", "RunnerSettings", "agent_url", "agent_urls", "backoff_delays"]


_CONFIG_FIELDS = frozenset(f.name for f in fields(AgentConfig))
_LIVE: weakref.WeakSet[Agent] = weakref.WeakSet()

WS_LOGGER = logging.getLogger("mantis_py.agents.websocket")
"""websockets' own logger for agent links. Silent by default (the agent reports through
``last_error`` and its statistics, never by printing into the host's logs); lower its level to
debug a link."""
WS_LOGGER.setLevel(logging.CRITICAL)


class RunnerSettings:
    """Connection settings shared by both runners (docs/agent.md §Settings)."""

    def __init__(
        self,
        *,
        tick_s: float = 0.01,
        idle_tick_s: float = 0.1,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        open_timeout_s: float = 5.0,
        send_timeout_s: float = 10.0,
        close_timeout_s: float = 0.9,
        max_send_backlog: int = 512 * 1024,
        max_frame_bytes: int = 1 << 20,
    ) -> None:
        self.tick_s = tick_s
        self.idle_tick_s = idle_tick_s
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.open_timeout_s = open_timeout_s
        self.send_timeout_s = send_timeout_s
        self.close_timeout_s = min(close_timeout_s, 1.0)
        self.max_send_backlog = max_send_backlog
        self.max_frame_bytes = max_frame_bytes
        for k, v in vars(self).items():
            if not isinstance(v, (int, float)) or v <= 0:
                raise ConfigurationError(f"{k} must be a number > 0, got {v!r}")


_RUNNER_FIELDS = frozenset(vars(RunnerSettings()))


def split_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], RunnerSettings]:
    """Split keyword settings into AgentConfig fields and RunnerSettings.

    Raises:
        ConfigurationError: an unknown setting name.
    """
    unknown = set(settings) - _CONFIG_FIELDS - _RUNNER_FIELDS
    if unknown:
        raise ConfigurationError(f"unknown agent setting(s): {', '.join(sorted(unknown))}")
    core = {k: v for k, v in settings.items() if k in _CONFIG_FIELDS}
    runner = RunnerSettings(**{k: v for k, v in settings.items() if k in _RUNNER_FIELDS})
    return core, runner


def backoff_delays(lo: float, hi: float, rng: random.Random) -> Iterator[float]:
    """Jittered exponential backoff ("full jitter"): uniform in [lo/2, min(hi, lo * 2**n)]."""
    for n in itertools.count():
        yield rng.uniform(lo / 2, min(hi, lo * 2.0**n))


def agent_url(gateway: str) -> str:
    """The agent endpoint of a gateway address: ``ws://h:p`` -> ``ws://h:p/v1/agent``.

    Raises:
        ConfigurationError: not a ``ws://`` or ``wss://`` URL.
    """
    if not gateway.startswith(("ws://", "wss://")):
        raise ConfigurationError(f"gateway must be a ws:// or wss:// URL, got {gateway!r}")
    scheme, rest = gateway.split("://", 1)
    if "/" not in rest or (rest.endswith("/") and rest.count("/") == 1):
        return f"{scheme}://{rest.rstrip('/')}/v1/agent"
    return gateway


def agent_urls(gateway: str | Sequence[str]) -> list[str]:
    """The agent endpoints of one gateway address or a list of them (fail-over order).

    Raises:
        ConfigurationError: an empty list, or an entry that is not a ``ws://`` / ``wss://`` URL.
    """
    gateways = [gateway] if isinstance(gateway, str) else list(gateway)
    if not gateways:
        raise ConfigurationError("gateway: give at least one ws:// or wss:// URL")
    for g in gateways:
        if not isinstance(g, str):
            raise ConfigurationError(f"gateway must be a ws:// or wss:// URL, got {g!r}")
    return [agent_url(g) for g in gateways]


class GatewayList:
    """Which gateway of the list to use (docs/agent.md §Fail-over): a random one first (so a
    fleet spreads over the gateways), the same one for as long as links to it work, the next one
    after any failure (a refused connection, a lost or silent link). Both runners share it."""

    def __init__(self, urls: list[str], rng: random.Random) -> None:
        self.urls = urls
        self.index = rng.randrange(len(urls))

    @property
    def current(self) -> str:
        return self.urls[self.index]

    def failed(self) -> None:
        """The current gateway failed: move on to the next one."""
        self.index = (self.index + 1) % len(self.urls)


def make_config(
    app: str,
    instance: str | None,
    mask: Sequence[str],
    tags: Mapping[str, str] | None,
    zone: str | None,
    settings: Mapping[str, Any],
) -> tuple[AgentConfig, RunnerSettings, bool]:
    """Build the core config; returns it, the runner settings, and whether instance was defaulted."""
    core_settings, runner = split_settings(settings)
    tags = dict(tags or {})
    defaulted = instance is None
    inst = instance or f"{socket.gethostname()}-{os.getpid()}"
    cfg = AgentConfig(
        app=app,
        instance=inst,
        zone=zone if zone is not None else tags.get("zone"),
        tags=tags,
        mask=tuple(mask),
        pid=os.getpid(),
        **core_settings,
    )
    return cfg, runner, defaulted


def _abort(ws: Any) -> None:
    """Drop the connection at once, even while another thread is blocked writing to it.

    ``shutdown`` wakes a ``sendall`` stuck on a peer that stopped reading (``close`` alone does
    not), which releases the websocket's mutex so ``close_socket`` can finish.
    """
    try:
        ws.socket.shutdown(socket.SHUT_RDWR)
    except Exception:
        pass
    try:
        ws.close_socket()
    except Exception:
        pass


class _Sender(threading.Thread):
    """Writes frames to the websocket so the agent loop never blocks on a slow gateway."""

    def __init__(self, ws: Any) -> None:
        super().__init__(name="mantis-agent-send", daemon=True)
        self.ws = ws
        self.frames: deque[Frame] = deque()
        self.cond = threading.Condition()
        self.backlog = 0
        self.busy_since: float | None = None
        self.in_flight: Frame | None = None
        self.failed = False
        self.stopping = False

    def put(self, frames: list[Frame]) -> None:
        with self.cond:
            self.frames.extend(frames)
            self.backlog += sum(len(f.data) for f in frames)
            self.cond.notify()

    def run(self) -> None:
        while True:
            with self.cond:
                while not self.frames and not self.stopping:
                    self.cond.wait()
                if not self.frames:
                    return
                frame = self.in_flight = self.frames.popleft()
                self.busy_since = time.monotonic()
            try:
                self.ws.send(frame.data, text=True)
            except Exception:
                with self.cond:
                    self.failed = True
                return
            with self.cond:
                self.backlog -= len(frame.data)
                self.in_flight = None
                self.busy_since = None

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()

    def idle(self) -> bool:
        with self.cond:
            return not self.frames and self.in_flight is None

    def unsent(self) -> list[Frame]:
        with self.cond:
            out = ([self.in_flight] if self.in_flight is not None else []) + list(self.frames)
            self.frames.clear()
            self.in_flight = None
            return out


class Agent(HostSide):
    """The embedded agent for threaded, asyncio and plain programs (docs/agent.md).

    Args:
        app: the application name queries use in FROM.
        gateway: the gateway URL (``ws://host:port`` or ``wss://``; ``/v1/agent`` is appended),
            or a list of them: the agent starts on a random one, stays while it works and moves
            to the next one after a failure (docs/agent.md §Fail-over).
        token: bearer token for the gateway, if it requires one.
        instance: this process's id (default ``hostname-pid``).
        mask: field names (any depth) or dotted paths (from the root) to mask before matching.
        allow_unmasked: let subscriptions the gateway marks unmasked (users whose token may see
            masked fields) receive masked values. False by default: masked values never leave
            the process, whatever a gateway asks.
        tags: free-form labels sent in hello; ``tags["zone"]`` is the default zone.
        zone: availability zone (the ``_zone`` meta field).
        ssl: an ``ssl.SSLContext`` for ``wss://``.
        engine: the query engine (default :mod:`mantis_py.query`; tests pass a fake).
        rng: random generator (CPU sampling, query samplers, backoff jitter).
        **settings: any :class:`AgentConfig` or :class:`RunnerSettings` field (docs/agent.md).

    Raises:
        ConfigurationError: bad settings.
    """

    def __init__(
        self,
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
    ) -> None:
        settings["allow_unmasked"] = allow_unmasked
        self._args = (app, instance, tuple(mask), dict(tags or {}), zone, dict(settings))
        self.config, self.settings, self._default_instance = make_config(
            app, instance, mask, tags, zone, settings
        )
        self._rng = rng if rng is not None else random.Random()
        self.gateways = GatewayList(agent_urls(gateway), self._rng)
        self.token = token
        self.ssl = ssl
        self._engine = engine
        self._thread: threading.Thread | None = None
        self._forked = False
        self._started = False
        self._closed = False
        self._setup()
        _LIVE.add(self)

    @property
    def url(self) -> str:
        """The agent endpoint in use (or tried next)."""
        return self.gateways.current

    def _setup(self) -> None:
        self._bind_core(
            AgentCore(self.config, random.Random(self._rng.getrandbits(64)), self._engine)
        )
        self._stop = threading.Event()
        self._cpu_excluded = 0.0
        self._ws: Any = None
        self.last_error: str | None = None

    # ------------------------------------------------------------ public API

    def start(self) -> Agent:
        """Start the background thread (idempotent). Returns self."""
        if self._closed:
            raise ConfigurationError("agent is closed")
        if not self._started:
            self._started = True
            self._thread = threading.Thread(target=self._run, name="mantis-agent", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """Flush what is pending (bounded) and stop. Never takes more than ``close_timeout_s``."""
        if self._closed:
            return
        self._closed = True
        timeout = self.settings.close_timeout_s if timeout is None else min(timeout, 1.0)
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(max(0.0, timeout))

    def __enter__(self) -> Agent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ the agent thread

    def _run(self) -> None:
        stop = self._stop
        if self._forked:
            # In a fresh fork child, let every other after-fork handler finish first.
            self._forked = False
            stop.wait(0.05)
        delays = backoff_delays(
            self.settings.reconnect_min_s, self.settings.reconnect_max_s, self._rng
        )
        while not stop.is_set():
            try:
                welcomed = self._connect_and_serve()
                if stop.is_set():
                    break
                self.gateways.failed()  # sticky until it fails; then the next one
                if welcomed:  # a link that worked resets the backoff
                    delays = backoff_delays(
                        self.settings.reconnect_min_s, self.settings.reconnect_max_s, self._rng
                    )
                self._idle_until(time.monotonic() + next(delays))
            except Exception as exc:  # a bug of ours: note it, back off, keep serving the host
                self.last_error = f"agent: {exc!r}"
                stop.wait(self.settings.reconnect_max_s)

    def _idle_until(self, deadline: float) -> None:
        core = self._core
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            core.poll(time.time())
            self._report_cpu()
            self._stop.wait(min(left, self.settings.idle_tick_s))

    def _report_cpu(self) -> None:
        # Handling gateway messages (compiling queries) is charged separately
        # (``report_control_cpu``): over time it stays within ``cpu_budget`` because new queries
        # are refused while it is overdrawn, and a one-off compile never samples events down.
        self._core.report_cpu(time.time(), time.thread_time() - self._cpu_excluded)

    def _connect_and_serve(self) -> bool:
        s = self.settings
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            ws = connect(
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
                legacy=True,
            )
        except Exception as exc:
            self.last_error = f"connect: {exc!r}"
            return False
        self._ws = ws
        core = self._core
        sender = _Sender(ws)
        sender.start()
        welcomed = False
        core.connected(time.time())
        try:
            while True:
                if self._stop.is_set():
                    self._final_flush(sender)
                    break
                tick = s.tick_s if core.subs or not core.is_open else s.idle_tick_s
                if core.control_overdrawn(time.time()):  # a flood of gateway messages waits
                    self._stop.wait(tick)
                    data: Any = None
                else:
                    try:
                        data = ws.recv(timeout=tick)
                    except TimeoutError:
                        data = None
                now = time.time()
                batch = 0.0
                while data is not None:
                    c0, loaded = time.thread_time(), core.engine_loaded
                    core.receive_data(data, now)
                    spent = time.thread_time() - c0
                    self._cpu_excluded += spent
                    if loaded:  # compiles: their own share of the budget
                        core.report_control_cpu(now, spent)
                    welcomed = welcomed or core.is_open
                    batch += spent
                    if batch >= s.tick_s:
                        break  # a burst of subscribes waits a tick: due windows ship first
                    try:
                        data = ws.recv(timeout=0)
                    except TimeoutError:
                        data = None
                more = core.poll(now)
                room = s.max_send_backlog - sender.backlog
                if room > 0:
                    frames = core.data_to_send(now, max_bytes=room)
                    if frames:
                        sender.put(frames)
                busy = sender.busy_since
                if sender.failed or (
                    busy is not None and time.monotonic() - busy > s.send_timeout_s
                ):
                    self.last_error = "send failed or stalled"
                    break
                self._report_cpu()
                if core.link_silent(now):
                    self.last_error = "gateway silent for three ping periods"
                    break
                if more:
                    time.sleep(0)  # let host threads run between chunks
        except RemoteProtocolError as exc:
            self.last_error = f"protocol: {exc}"
            try:
                ws.close(exc.close_code, str(exc)[:100])
            except Exception:
                pass
        except ConnectionClosed as exc:
            self.last_error = f"closed: {exc}"
        except Exception as exc:
            self.last_error = f"link: {exc!r}"
        finally:
            sender.stop()
            if sender.idle() and not sender.failed:
                try:
                    ws.close()  # bounded by close_timeout
                except Exception:
                    _abort(ws)
            else:
                _abort(ws)
            core.disconnected(time.time(), sender.unsent())
            self._ws = None
        return welcomed

    def _final_flush(self, sender: _Sender) -> None:
        core = self._core
        deadline = time.monotonic() + self.settings.close_timeout_s * 0.6
        now = time.time()
        while core.poll(now) and time.monotonic() < deadline:
            pass
        frames = core.data_to_send(now, force=True)
        if frames:
            sender.put(frames)
        while not sender.idle() and time.monotonic() < deadline and not sender.failed:
            time.sleep(0.005)

    # ------------------------------------------------------------ fork

    def _after_fork_in_child(self) -> None:
        app, instance, mask, tags, zone, settings = self._args
        self.config, self.settings, _ = make_config(app, instance, mask, tags, zone, settings)
        self._rng = random.Random()
        self._setup()
        self._thread = None
        self._forked = True
        if self._started and not self._closed:
            self._started = False
            self.start()


def _reinit_after_fork() -> None:
    for agent in list(_LIVE):
        try:
            agent._after_fork_in_child()
        except Exception:
            pass


def _close_all_at_exit() -> None:
    deadline = time.monotonic() + 0.9
    for agent in list(_LIVE):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            agent.close(timeout=left)
        except Exception:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
atexit.register(_close_all_at_exit)
