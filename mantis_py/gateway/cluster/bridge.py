"""The NATS thread: the official ``nats-py`` client on its own thread and asyncio loop, joined to
the gateway's trio loop by two bounded, batched hand-off queues.

Why a thread: bridging each message through an asyncio-in-trio adapter costs far more per message
than handing over batches, and a busy trio loop must never stop NATS pings from being answered
(the server would cut us off as a slow or dead client). The NATS protocol is not re-implemented.

- trio -> NATS: :meth:`NatsBridge.publish` appends a batch and wakes the asyncio loop once.
- NATS -> trio: every subscription's callback appends ``(subject, data, reply)`` to the inbound
  queue and wakes trio once (``wake`` is called from this thread; the runner passes a function
  that schedules a callback on the trio loop). :meth:`take` swaps the queue out.
- Both queues are bounded; overflow is dropped and counted per subject, like a slow consumer.
- Interest: :meth:`set_interest` subscribes / unsubscribes to reach exactly the given subjects.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from ...errors import ConfigurationError
from .config import ClusterConfig

__all__ = ["NatsBridge"]

log = logging.getLogger("mantis_py.cluster")


def _ssl_context(config: ClusterConfig) -> ssl.SSLContext | None:
    """The client TLS context for the NATS servers (None without TLS).

    Raises:
        ConfigurationError: a CA, certificate or key file that cannot be read or used.
    """
    if not config.tls:
        return None
    try:
        ctx = ssl.create_default_context(cafile=config.tls_ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cluster.tls_ca: cannot load {config.tls_ca}: {_why(exc)}") \
            from None
    if config.tls_cert is not None:
        try:
            ctx.load_cert_chain(config.tls_cert, config.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"cluster.tls_cert/tls_key: cannot load {config.tls_cert} "
                                     f"and {config.tls_key}: {_why(exc)}") from None
    return ctx


def _check_nkey(path: str) -> None:
    """The seed file exists, holds an NKey seed, and the ``nkeys`` package can sign with it.

    Raises:
        ConfigurationError: one line saying which.
    """
    try:
        import nkeys
    except ImportError:
        raise ConfigurationError("cluster.nkey_seed needs the nkeys package: "
                                 "pip install 'mantis_py[cluster]'") from None
    try:
        with open(path, "rb") as f:
            seed = bytearray(f.read().strip())
    except OSError as exc:
        raise ConfigurationError(f"cluster.nkey_seed: cannot read {path}: {_why(exc)}") from None
    try:
        nkeys.from_seed(seed).wipe()
    except Exception:
        raise ConfigurationError(f"cluster.nkey_seed: {path} does not hold an NKey seed "
                                 "(a line starting with SU)") from None


def _why(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)


class NatsBridge:
    """See the module header."""

    def __init__(self, config: ClusterConfig, name: str, wake: Callable[[], None], *,
                 max_inbound: int = 100_000, max_outbound: int = 100_000,
                 pending_msgs: int = 50_000) -> None:
        """Raises:
            ConfigurationError: unusable TLS files or NKey seed (checked here, at start-up,
                not on the NATS thread where it would only be logged).
        """
        self._tls = _ssl_context(config)
        if config.nkey_seed is not None:
            _check_nkey(config.nkey_seed)
        self.config = config
        self.name = name
        self._wake_trio = wake
        self.max_inbound = max_inbound
        self.max_outbound = max_outbound
        self.pending_msgs = pending_msgs
        self._inbound: deque[tuple[str, bytes, str | None]] = deque()
        self._outbound: deque[tuple[str, bytes]] = deque()
        self._commands: deque[tuple[str, Any]] = deque()
        self._trio_woken = False
        self.drops: Counter[str] = Counter()  # subject -> messages lost (bridge or NATS)
        self.events: deque[str] = deque(maxlen=100)  # connect / disconnect history, for logs
        self.connected_url: str | None = None
        self.reconnects = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kick: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()

    # ------------------------------------------------------------------ called from trio

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="mantis-nats", daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    def stop(self) -> None:
        self._stopping = True
        self._command("stop", None)
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:  # also ends a connection attempt in progress (a refused or absent server)
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(5.0)

    def publish(self, batch: list[tuple[str, bytes]]) -> None:
        if not batch:
            return
        room = self.max_outbound - len(self._outbound)
        if room < len(batch):
            for subject, _ in batch[max(room, 0):]:
                self.drops[subject] += 1
            batch = batch[:max(room, 0)]
        self._outbound.extend(batch)
        self._kick_loop()

    def set_interest(self, subjects: set[str]) -> None:
        self._command("interest", frozenset(subjects))

    def request_all(self, subject: str, data: bytes, want: int, timeout: float,
                    done: Callable[[list[bytes]], None]) -> None:
        """Publish a request and collect up to ``want`` replies for at most ``timeout`` s;
        ``done(replies)`` is then called on the NATS thread."""
        self._command("gather", (subject, data, want, timeout, done))

    def take(self) -> list[tuple[str, bytes, str | None]]:
        """Everything received since the last call (oldest first)."""
        self._trio_woken = False
        q = self._inbound
        out = []
        for _ in range(len(q)):
            out.append(q.popleft())
        return out

    def take_drops(self) -> Counter[str]:
        out, self.drops = self.drops, Counter()
        return out

    # ------------------------------------------------------------------ internals

    def _command(self, name: str, arg: Any) -> None:
        self._commands.append((name, arg))
        self._kick_loop()

    def _kick_loop(self) -> None:
        loop, kick = self._loop, self._kick
        if loop is not None and kick is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(kick.set)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def _deliver(self, subject: str, data: bytes, reply: str | None) -> None:
        if len(self._inbound) >= self.max_inbound:
            self.drops[subject] += 1
            return
        self._inbound.append((subject, data, reply))
        if not self._trio_woken:
            self._trio_woken = True
            try:
                self._wake_trio()
            except RuntimeError:  # trio is gone
                pass

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._kick = asyncio.Event()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            loop.run_until_complete(self._run())
        except Exception:
            log.exception("the NATS thread failed")
        finally:
            loop.close()

    async def _connect(self) -> Any:
        import nats

        cfg = self.config

        async def on_error(exc: Exception) -> None:
            from nats.errors import SlowConsumerError

            if isinstance(exc, SlowConsumerError):
                self.drops[exc.subject] += 1
            else:
                self.events.append(f"error: {exc}")
                log.warning("NATS: %s", exc)

        async def on_disconnected() -> None:
            self.connected_url = None
            self.events.append("disconnected")
            log.warning("NATS: disconnected")

        async def on_reconnected() -> None:
            self.reconnects += 1
            url = nc.connected_url
            self.connected_url = f"{url.scheme}://{url.netloc}" if url is not None else None
            self.events.append(f"reconnected to {self.connected_url}")
            log.warning("NATS: reconnected to %s", self.connected_url)

        kwargs: dict[str, Any] = {
            # the URLs in the order given (list the nearest node first); the other nodes of the
            # NATS cluster are learned from the server and tried after them
            "servers": list(cfg.nats), "name": self.name, "no_echo": True,
            "dont_randomize": True,
            "allow_reconnect": True, "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.2, "connect_timeout": 2,
            "ping_interval": cfg.ping_interval_s, "max_outstanding_pings": cfg.max_outstanding_pings,
            "error_cb": on_error, "disconnected_cb": on_disconnected,
            "reconnected_cb": on_reconnected,
        }
        if cfg.user is not None:
            kwargs["user"], kwargs["password"] = cfg.user, cfg.password
        if cfg.token is not None:
            kwargs["token"] = cfg.token
        if cfg.nkey_seed is not None:
            kwargs["nkeys_seed"] = cfg.nkey_seed
        if self._tls is not None:
            kwargs["tls"] = self._tls
        assert self._stop is not None
        stop = self._stop
        while not self._stopping:
            attempt = asyncio.ensure_future(nats.connect(**kwargs))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({attempt, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not attempt.done():  # stop() while connecting
                attempt.cancel()
                await asyncio.gather(attempt, return_exceptions=True)
                return None
            try:
                nc = attempt.result()
            except Exception as exc:  # no server reachable yet: keep trying, say why
                self.events.append(f"connect failed: {exc}")
                log.warning("NATS: cannot connect to %s: %s", ", ".join(cfg.nats), exc)
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except TimeoutError:
                    pass
                continue
            if self._stopping:
                await asyncio.gather(nc.close(), return_exceptions=True)
                return None
            url = nc.connected_url
            self.connected_url = f"{url.scheme}://{url.netloc}" if url is not None else None
            return nc
        return None

    async def _run(self) -> None:
        nc = await self._connect()
        if nc is None:
            return
        subs: dict[str, Any] = {}
        assert self._kick is not None
        kick = self._kick

        async def on_msg(msg: Any) -> None:
            self._deliver(msg.subject, msg.data, msg.reply or None)

        async def gather(subject: str, data: bytes, want: int, wait_s: float,
                         done: Callable[[list[bytes]], None]) -> None:
            replies: list[bytes] = []
            enough = asyncio.Event()

            async def on_reply(msg: Any) -> None:
                replies.append(msg.data)
                if len(replies) >= want:
                    enough.set()

            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox, cb=on_reply)
            try:
                await nc.publish(subject, data, reply=inbox)
                try:
                    await asyncio.wait_for(enough.wait(), wait_s)
                except TimeoutError:
                    pass
            finally:
                await sub.unsubscribe()
                done(replies)

        tasks: set[asyncio.Task[None]] = set()
        while True:
            await kick.wait()
            kick.clear()
            while self._commands:
                name, arg = self._commands.popleft()
                if name == "stop":
                    try:
                        await asyncio.wait_for(nc.close(), 2.0)
                    except Exception:
                        pass
                    return
                if name == "interest":
                    for subject in [s for s in subs if s not in arg]:
                        try:
                            await subs.pop(subject).unsubscribe()
                        except Exception:
                            pass
                    for subject in sorted(arg - subs.keys()):
                        subs[subject] = await nc.subscribe(
                            subject, cb=on_msg, pending_msgs_limit=self.pending_msgs,
                            pending_bytes_limit=256 * 1024 * 1024)
                elif name == "gather":
                    task = asyncio.ensure_future(gather(*arg))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            q = self._outbound
            for _ in range(len(q)):
                subject, data = q.popleft()
                try:
                    await nc.publish(subject, data)
                except Exception:  # disconnected with a full reconnect buffer, or closed
                    self.drops[subject] += 1
