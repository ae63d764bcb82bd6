"""AgentCore: the embedded agent without I/O (docs/agent.md, docs/protocol.md). Pure.

Theory of operation. Two kinds of callers share one core:

- *Host threads* call :meth:`AgentCore.offer` (inlined in ``Agent.publish``). It is O(1), never
  blocks and never raises: for a stream nobody subscribed to it is one dict subscript and one
  step of a ``for`` loop over that stream's ``itertools.count`` (``route``; no call at all);
  otherwise it takes a shallow copy of the event and appends
  it to the stream's bounded :class:`~.buffer.Ingress` deque (``queues``), dropping and counting
  when full. It uses only operations atomic under the GIL, so any number of threads may publish
  (the count cap may be overshot by at most the number of publishing threads).
- *The runner* (one agent thread or trio task) calls everything else: ``connected`` /
  ``receive_data`` / ``disconnected`` for the link, ``poll(now)`` to drain the ingress queues
  (convert, mask, SAMPLE + WHERE, project once to the union of fields, tag, encode, buffer) and to
  expire leases, ``data_to_send(now)`` for frames (batches are cut at 64 KiB or after 50 ms),
  ``report_cpu`` for the CPU budget, ``statistics()`` for the counters.

Accounting, exact per stream (checked by tests; see docs/agent.md §Statistics):

    offered  = skipped_no_subscription + enqueued + sum(dropped)       # at the host
    enqueued = unmatched + folded + sent + sum(lost) + pending           # in the agent

``dropped`` holds host-side drops (``queue_full``, ``not_an_object``); ``lost`` every later one
(``too_large``, ``unserializable``, ``cycle``, ``bad_key``, ``too_deep``, ``queue_full``,
``cpu_budget``, ``disconnected``, ``expired``, ``agent_error``). Nothing the engine or the host's
data does raises out of the core: failures are counted and reported upstream (``sub_error``).

Masking happens before anything looks at the event (docs/operations.md): the event is serialized once,
and a masked key anywhere in it sends the event through :func:`~.convert.convert`, which returns
a masked copy; queries, projection and the wire only ever see that copy. A subscription whose
``caps`` carry ``"unmasked": true`` (the gateway sends those for tokens that may see masked
fields) sees the unmasked event instead; an event holding a masked key while such subscriptions
run takes :meth:`AgentCore._split_event`, which never lets an unmasked byte into a record tagged
with a masked subscription (one record per kind when their projections differ).
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..errors import ConfigurationError, RemoteProtocolError
from ..wire.agent_link import AgentLink
from ..wire.codec import VALUE_OPTS, Fragment, decode, dumps, encode_value_slow
from ..wire.messages import (
    Events,
    Hello,
    Message,
    Partial,
    Ping,
    Pong,
    Stats,
    SubError,
    Subscribe,
    Unsubscribe,
    Welcome,
)
from .buffer import Ingress, Pending, counter_value
from .convert import Mask, Unconvertible, convert
from .subscriptions import Engine, StreamPlan, Subscription, default_engine, plan_for

__all__ = [
    "AgentConfig",
    "AgentCore",
    "AgentStatistics",
    "Frame",
    "StreamStatistics",
    "SubscriptionStatistics",
]

SUBSCRIBED: Iterator[int] = iter(())
"""``AgentCore.route`` value of a stream with queries: an exhausted iterator, so the host's
``for`` loop over it stops at once without allocating (an empty tuple would build an iterator)."""

NO_MASK = Mask()
"""Nothing masked: converts the event of unmasked subscriptions to JSON types."""

OVERFLOW_STREAM = "_overflow"
"""Counters for events on streams beyond ``max_known_streams``."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Every agent setting, with its default (docs/agent.md §Settings)."""

    app: str
    instance: str
    zone: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    streams: tuple[str, ...] = ("default",)
    mask: tuple[str, ...] = ()
    mask_ignore_case: bool = True
    version: str = __version__
    pid: int = 0
    max_queue_events: int = 1000
    max_queue_bytes: int = 2 * 1024 * 1024
    max_queries_per_stream: int = 20
    max_streams: int = 5
    max_known_streams: int = 100
    max_event_bytes: int = 64 * 1024
    max_depth: int = 64
    batch_interval_s: float = 0.05
    batch_max_bytes: int = 64 * 1024
    stats_interval_s: float = 1.0
    stats_max_interval_s: float = 60.0
    expire_after_s: float = 30.0
    resubscribe_grace_s: float = 10.0
    cpu_budget: float = 0.05
    min_sample_rate: float = 0.001
    error_report_interval_s: float = 10.0
    max_control_frames: int = 1000
    max_poll_gap_s: float = 1.0
    subscribe_rate_per_s: float = 1.0
    subscribe_burst: int = 30
    compile_cpu_burst_s: float = 0.2
    allow_unmasked: bool = False

    def __post_init__(self) -> None:
        if not self.app or not isinstance(self.app, str):
            raise ConfigurationError("app must be a non-empty string")
        if not self.instance or not isinstance(self.instance, str):
            raise ConfigurationError("instance must be a non-empty string")
        if isinstance(self.mask, str):
            raise ConfigurationError("mask must be a sequence of field names, not a string")
        for name in (
            "max_queue_events", "max_queue_bytes", "max_queries_per_stream", "max_streams",
            "max_known_streams", "max_event_bytes", "max_depth", "batch_max_bytes",
            "max_control_frames", "subscribe_burst",
        ):  # fmt: skip
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigurationError(f"{name} must be an integer >= 1, got {v!r}")
        for name in (
            "batch_interval_s", "stats_interval_s", "expire_after_s", "resubscribe_grace_s",
            "error_report_interval_s", "stats_max_interval_s", "max_poll_gap_s",
            "subscribe_rate_per_s", "compile_cpu_burst_s",
        ):  # fmt: skip
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v <= 0:
                raise ConfigurationError(f"{name} must be a number > 0, got {v!r}")
        if not 0 < self.cpu_budget <= 1:
            raise ConfigurationError("cpu_budget must be in (0, 1]")
        if not 0 < self.min_sample_rate <= 1:
            raise ConfigurationError("min_sample_rate must be in (0, 1]")


@dataclass(frozen=True, slots=True)
class Frame:
    """One outgoing text frame; ``stream``/``records`` say which events it carries."""

    data: bytes
    stream: str | None = None
    records: int = 0


@dataclass(frozen=True, slots=True)
class StreamStatistics:
    """Counters of one stream (see the module docstring for the two invariants)."""

    offered: int
    skipped_no_subscription: int
    enqueued: int
    dropped: Mapping[str, int]
    unmatched: int
    folded: int
    sent: int
    lost: Mapping[str, int]
    pending: int

    def to_json(self) -> dict[str, Any]:
        """The ``stats`` message form: ``dropped`` there holds every loss (host and agent side,
        what users are shown); ``lost`` repeats the agent-side part."""
        every = dict(self.dropped)
        for k, v in self.lost.items():
            every[k] = every.get(k, 0) + v
        return {
            "offered": self.offered,
            "skipped_no_subscription": self.skipped_no_subscription,
            "enqueued": self.enqueued,
            "dropped": every,
            "unmatched": self.unmatched,
            "folded": self.folded,
            "sent": self.sent,
            "lost": dict(self.lost),
            "pending": self.pending,
        }


@dataclass(frozen=True, slots=True)
class SubscriptionStatistics:
    """Counters of one subscription."""

    stream: str
    ships: str
    matched: int
    folded: int
    errors: int
    sample_rate: float
    parts_sent: int
    parts_dropped: int

    def to_json(self) -> dict[str, Any]:
        """The ``stats`` message form of this record."""
        return {
            "stream": self.stream,
            "ships": self.ships,
            "matched": self.matched,
            "folded": self.folded,
            "errors": self.errors,
            "sample_rate": self.sample_rate,
            "parts_sent": self.parts_sent,
            "parts_dropped": self.parts_dropped,
            "dropped": {"partials_undelivered": self.parts_dropped} if self.parts_dropped else {},
        }


@dataclass(frozen=True, slots=True)
class AgentStatistics:
    """A snapshot of every counter (``Agent.statistics()``)."""

    streams: Mapping[str, StreamStatistics]
    subs: Mapping[str, SubscriptionStatistics]
    connected: bool
    connects: int
    sample_rate: float

    @property
    def offered(self) -> int:
        """Events published, all streams."""
        return sum(s.offered for s in self.streams.values())

    @property
    def skipped(self) -> int:
        """Events published on streams nobody subscribed to."""
        return sum(s.skipped_no_subscription for s in self.streams.values())

    @property
    def matched(self) -> int:
        """Events that some subscription kept (shipped or folded)."""
        return sum(s.sent + s.folded + sum(s.lost.values()) for s in self.streams.values())

    @property
    def sent(self) -> int:
        """Events handed to the link."""
        return sum(s.sent for s in self.streams.values())

    @property
    def dropped(self) -> dict[str, int]:
        """Every loss by reason, host side and agent side together."""
        out: dict[str, int] = {}
        for s in self.streams.values():
            for d in (s.dropped, s.lost):
                for k, v in d.items():
                    out[k] = out.get(k, 0) + v
        return out


class _Stream:
    """Per-stream state. ``subs``/``plan`` are replaced (never mutated) by the agent thread."""

    __slots__ = (
        "folded", "in_hand", "ingress", "lost", "name", "not_object", "pending", "plan", "sent", "seq",
        "skipped", "subs", "unmatched",
    )  # fmt: skip

    def __init__(self, name: str, cfg: AgentConfig) -> None:
        self.name = name
        self.ingress = Ingress(cfg.max_queue_events)
        self.pending = Pending(cfg.max_queue_events, cfg.max_queue_bytes)
        self.skipped = itertools.count()
        self.not_object = itertools.count()
        self.subs: tuple[Subscription, ...] = ()
        self.plan = StreamPlan()
        self.seq = 0
        self.in_hand = 0
        self.unmatched = 0
        self.folded = 0
        self.sent = 0
        self.lost: dict[str, int] = {}

    def lose(self, reason: str, n: int = 1) -> None:
        self.lost[reason] = self.lost.get(reason, 0) + n


class AgentCore:
    """The agent's state machine. See the module docstring for who calls what.

    Args:
        config: identity, limits and intervals.
        rng: the random generator (CPU sampling, seeds of the queries' samplers).
        engine: the query engine entry points (default: :mod:`mantis_py.query`).
    """

    def __init__(
        self, config: AgentConfig, rng: random.Random | None = None, engine: Engine | None = None
    ) -> None:
        self.config = config
        self.rng = rng if rng is not None else random.Random()
        self._engine = engine
        self.mask = Mask(tuple(config.mask), config.mask_ignore_case)
        self.streams: dict[str, _Stream] = {}
        # The host path reads ``route`` (below) and ``queues`` (docs/agent.md §Cost): subscribed
        # streams map to their ingress deque here.
        self.queues: dict[str, deque[tuple[float, Any]]] = {}
        # ``route`` is what the host path reads first: every known stream maps to its skip
        # counter while nobody subscribed to it (``for _ in route[s]: return`` counts and
        # leaves, no call), or to the exhausted iterator ``SUBSCRIBED`` while queries run (the
        # loop falls through to ``queues``). An unknown stream is a KeyError: the slow path.
        self.route: dict[str, Iterable[int]] = {}
        self.queue_cap = config.max_queue_events
        self.subs: dict[str, Subscription] = {}
        self.link: AgentLink | None = None
        self.link_gen = 0
        self.connects = 0
        self.last_heard = 0.0
        self.link_heard = 0.0  # last frame on the current link (or its start): link liveness
        self.heartbeat_s: float | None = None  # the gateway's ping period (from welcome)
        self.next_stats = 0.0
        self._stats_sent: Any = None  # the loss counters of the last stats sent on this link
        self._stats_due = 0.0
        self.now = 0.0
        self.sample_rate = 1.0
        self._cpu_mark: tuple[float, float] | None = None
        # subscription churn cap: new queries compiled, a token bucket (rate, burst)
        self._sub_tokens = float(config.subscribe_burst)
        self._sub_last: float | None = None
        # compile CPU: earned at cpu_budget seconds per second, at most compile_cpu_burst_s
        self._compile_cpu = config.compile_cpu_burst_s
        self._compile_last: float | None = None
        self._out: list[Frame] = []
        for name in config.streams:
            self._register(name)

    @property
    def engine(self) -> Engine:
        """The query engine, loaded on the first subscription."""
        if self._engine is None:
            self._engine = default_engine()
        return self._engine

    # ------------------------------------------------------------ host side (any thread)

    def offer(self, event: Any, stream: str = "default", t: float = 0.0) -> None:
        """Publish one event (host thread). Never blocks, never raises, never mutates ``event``.

        ``Agent.publish`` inlines this same code (one call less on the host's hot path).

        Args:
            event: a mapping (copied shallowly; later changes by the caller are not seen).
            stream: the stream name.
            t: the event time, float seconds since the epoch.
        """
        try:
            for _ in self.route[stream]:  # nobody subscribed: counted, done
                return
            q = self.queues[stream]
            if type(event) is dict and len(q) < self.queue_cap:
                q.append((t, event.copy()))
                return
        except Exception:  # unknown stream (KeyError), or a race with the runner
            pass
        self.offer_slow(event, stream, t)

    def offer_slow(self, event: Any, stream: str, t: float) -> None:
        """The rare cases of :meth:`offer`: a new stream, a full queue, a non-dict event."""
        try:
            st = self.streams.get(stream)
            if st is None:
                st = self._register(stream)
            if not st.subs:
                next(st.skipped)
                return
            if type(event) is dict:
                ev = event.copy()
            elif isinstance(event, Mapping):
                ev = dict(event)
            else:
                next(st.not_object)
                return
            st.ingress.put_nowait(t, ev)
        except Exception:  # a host Mapping whose copy fails; never raise into the host
            try:
                next(self._stream(str(stream)).not_object)
            except Exception:
                pass

    def has_subscribers(self, stream: str = "default") -> bool:
        """Whether any subscription runs on ``stream`` (cheap; for callers to skip work)."""
        st = self.streams.get(stream)
        return st is not None and bool(st.subs)

    def _register(self, name: str) -> _Stream:
        if not isinstance(name, str):
            name = str(name)
        if len(self.streams) >= self.config.max_known_streams and name not in self.streams:
            name = OVERFLOW_STREAM
        st = self.streams.setdefault(name, _Stream(name, self.config))
        if not st.subs and name != OVERFLOW_STREAM:
            self.route.setdefault(name, st.skipped)
        return st

    def _stream(self, name: str) -> _Stream:
        st = self.streams.get(name)
        return st if st is not None else self._register(name)

    # ------------------------------------------------------------ link (runner thread)

    def connected(self, now: float) -> None:
        """A websocket is open: start the mantis handshake (queues ``hello``)."""
        self.now = now
        self.link = AgentLink()
        self.link_gen += 1
        self.link_heard = now
        self.heartbeat_s = None
        self.connects += 1
        self._out = []
        cfg = self.config
        names = sorted(n for n in self.streams if n != OVERFLOW_STREAM)
        hello = Hello(
            app=cfg.app,
            instance=cfg.instance,
            streams=tuple(names),
            tags=dict(cfg.tags),
            zone=cfg.zone,
            version=cfg.version,
            pid=cfg.pid,
        )
        self._out.append(Frame(self.link.send(hello)))

    def receive_data(self, data: bytes | str, now: float) -> None:
        """Handle one received frame.

        Raises:
            RemoteProtocolError: the gateway broke the protocol; close with ``close_code``.
        """
        if self.link is None:
            raise RemoteProtocolError("no link", close_code=4000)
        self.receive(decode(data, self.link.THEIRS), now)

    def receive(self, msg: Message, now: float) -> None:
        """Handle one decoded gateway message (``receive_data`` without the codec)."""
        if self.link is None:
            raise RemoteProtocolError("no link", close_code=4000)
        self.link.receive(msg)
        self.now = now
        self.last_heard = now
        self.link_heard = now
        _HANDLERS[type(msg)](self, msg, now)

    def disconnected(self, now: float, unsent: Iterable[Frame] = ()) -> None:
        """The websocket closed. ``unsent``: frames taken from :meth:`data_to_send` that never
        reached the socket; their events are counted as lost (``disconnected``)."""
        self.now = now
        for f in unsent:  # (self._out never holds events frames: those are cut on demand)
            if f.stream is not None and f.records:
                st = self._stream(f.stream)
                st.sent -= f.records
                st.lose("disconnected", f.records)
        self._out = []
        if self.link is not None:
            self.link.close()
        self.link = None
        self._cpu_mark = None

    @property
    def is_open(self) -> bool:
        """True while the link is open (welcome received)."""
        return self.link is not None and self.link.is_open

    def _send(self, msg: Message) -> bool:
        if self.link is None or not self.link.is_open:
            return False
        if len(self._out) >= self.config.max_control_frames:
            return False
        self._out.append(Frame(self.link.send(msg)))
        return True

    def _on_welcome(self, msg: Welcome, now: float) -> None:
        # Subscriptions from an older link survive a short disconnect, but the gateway must
        # re-send them on this link (docs/protocol.md §Leases).
        for sub in self.subs.values():
            if sub.link_gen != self.link_gen:
                sub.confirm_by = now + self.config.resubscribe_grace_s
        self.next_stats = now
        self.heartbeat_s = float(msg.heartbeat_s) if msg.heartbeat_s > 0 else None
        self._stats_sent = None  # the first stats of a link always goes out

    def link_silent(self, now: float) -> bool:
        """True when the current link has been silent for three ping periods (the gateway
        announced the period in ``welcome``; 10 s until then): the runner drops the link and
        reconnects, to the next gateway of its list. The websocket's own keepalive pings are
        off for agent links (docs/protocol.md §Liveness), so this is how a half-open link ends."""
        if self.link is None:
            return False
        return now - self.link_heard > 3.0 * (self.heartbeat_s or 10.0)

    def _on_ping(self, msg: Ping, now: float) -> None:
        self._send(Pong(nonce=msg.nonce))

    def _on_unsubscribe(self, msg: Unsubscribe, now: float) -> None:
        sub = self.subs.get(msg.sub)
        if sub is not None:
            self._remove(sub)

    def _on_subscribe(self, msg: Subscribe, now: float) -> None:
        cfg = self.config
        sub = self.subs.get(msg.sub)
        if sub is not None:
            sub.link_gen = self.link_gen
            sub.confirm_by = None
            return
        st = self.streams.get(msg.stream)
        if st is None and len(self.streams) >= cfg.max_known_streams:
            self._send(SubError(sub=msg.sub, code="limit_streams", message="too many streams"))
            return
        st = self._stream(msg.stream)
        if len(st.subs) >= cfg.max_queries_per_stream:
            text = f"stream {msg.stream!r} already runs {len(st.subs)} queries (limit)"
            self._send(SubError(sub=msg.sub, code="limit_queries", message=text))
            return
        busy = sum(1 for s in self.streams.values() if s.subs)
        if not st.subs and busy >= cfg.max_streams:
            text = f"queries already run on {busy} streams (limit {cfg.max_streams})"
            self._send(SubError(sub=msg.sub, code="limit_streams", message=text))
            return
        # Churn cap: compiling is the expensive part of a subscription; a gateway that keeps
        # subscribing and unsubscribing gets refusals instead of the host's CPU.
        if self._sub_last is not None:
            self._sub_tokens = min(float(cfg.subscribe_burst), self._sub_tokens + max(
                0.0, now - self._sub_last) * cfg.subscribe_rate_per_s)
        self._sub_last = now
        self.report_control_cpu(now, 0.0)
        if self._sub_tokens < 1.0 or self._compile_cpu < 0.0:
            text = (f"too many new queries: at most {cfg.subscribe_rate_per_s:g} per second "
                    f"(burst {cfg.subscribe_burst}) and {cfg.cpu_budget:.0%} of a core compiling")
            self._send(SubError(sub=msg.sub, code="limit_churn", message=text))
            return
        self._sub_tokens -= 1.0
        try:
            engine = self.engine
            prepared = engine.prepare(msg.query)
            source = prepared.source(
                app=cfg.app,
                stream=msg.stream,
                instance=cfg.instance,
                zone=cfg.zone,
                rng=random.Random(self.rng.getrandbits(64)),
                caps=engine.make_caps(msg.caps),
            )
            # Never catch up windows that started before this agent received the query; a poll
            # gap over max_gap marks windows not covered; never more than 30 s of catch-up.
            source.start(max(msg.start, now), max_gap=cfg.max_poll_gap_s, horizon=30.0)
            a = prepared.analysis
            sub = Subscription(
                id=msg.sub,
                stream=st.name,
                query=msg.query,
                ships=str(prepared.ships),
                source=source,
                field_paths=tuple(tuple(p) for p in a.field_paths),
                prefixes=tuple(a.field_prefixes),
                star=bool(a.star),
                link_gen=self.link_gen,
                # the service, not whoever answers on the gateway's address, decides
                unmasked=cfg.allow_unmasked is True and msg.caps.get("unmasked") is True,
            )
        except Exception as exc:
            self._send(SubError(sub=msg.sub, code="compile", message=str(exc)[:1000]))
            return
        self.subs[sub.id] = sub
        self._set_subs(st, (*st.subs, sub))

    def _remove(self, sub: Subscription) -> None:
        self.subs.pop(sub.id, None)
        st = self.streams[sub.stream]
        self._set_subs(st, tuple(s for s in st.subs if s is not sub))

    def _set_subs(self, st: _Stream, subs: tuple[Subscription, ...]) -> None:
        st.plan = plan_for(subs, self._engine)
        st.subs = subs
        # order matters for host threads reading without a lock: the queue exists before the
        # route points to it, and the route counts skips again before the queue goes away
        if subs:
            self.queues[st.name] = st.ingress.items
            self.route[st.name] = SUBSCRIBED
        elif st.name != OVERFLOW_STREAM:
            self.route[st.name] = st.skipped
            self.queues.pop(st.name, None)

    def _sync_gate(self) -> None:
        # A host thread registering a new stream may race with a subscription; heal it here.
        for name, st in list(self.streams.items()):
            if st.subs:
                if name not in self.queues:
                    self.queues[name] = st.ingress.items
                if self.route.get(name) is not SUBSCRIBED:
                    self.route[name] = SUBSCRIBED
            elif name != OVERFLOW_STREAM and self.route.get(name) is not st.skipped:
                self.route[name] = st.skipped
                self.queues.pop(name, None)

    # ------------------------------------------------------------ work (runner thread)

    def poll(self, now: float, max_events: int = 1024) -> bool:
        """Do the agent's work up to ``now``: leases, queued events, window partials, stats.

        Args:
            now: the current time (epoch seconds).
            max_events: process at most this many queued events per stream in this call.

        Returns:
            True when queued events remain (call again soon).
        """
        self.now = now
        self._sync_gate()
        self._expire(now)
        more = False
        for st in list(self.streams.values()):
            if st.ingress.items:
                batch = st.ingress.take(max_events)
                st.in_hand = len(batch)  # taken but not yet accounted (statistics snapshots)
                plan = st.plan
                if len(plan.event_subs) == 1 and not plan.partial_subs:
                    self._process_one(st, batch, now)
                else:
                    self._process_batch(st, batch, now)
                more = more or bool(st.ingress.items)
        for sub in list(self.subs.values()):
            if sub.ships == "partials":
                # A window closes only once the events queued before its end were folded:
                # under a backlog (more than max_events per tick) closing at `now` would turn
                # the still-queued events of that window into late drops.
                queued = self.streams[sub.stream].ingress.items
                oldest = queued[0][0] if queued else now
                self._poll_partials(sub, min(now, oldest) if oldest > 0 else now)
            self._report_errors(sub, now)
        if self.is_open and now >= self.next_stats:
            # Checked every stats_interval_s, sent only when a loss counter moved (what the
            # gateway reads: drops, errors, sampling), and at least every stats_max_interval_s:
            # an idle agent costs the gateway no stats frames (docs/agent.md §Statistics).
            self.next_stats = now + self.config.stats_interval_s
            msg = self._stats_message()
            losses = _losses(msg)
            if (losses != self._stats_sent or now >= self._stats_due) and self._send(msg):
                self._stats_sent = losses
                self._stats_due = now + self.config.stats_max_interval_s
        return more

    def _process_batch(self, st: _Stream, batch: list[tuple[float, Any]], now: float) -> None:
        """The agent's per-event recipe; locals hoisted because this is the hot loop.

        For each event: CPU sampling -> serialize once (validates JSON types, measures the size,
        finds masked keys) -> convert and mask if needed -> SAMPLE + WHERE of every subscription
        on the masked event -> project once to the union of fields -> tag, encode, buffer.
        """
        cfg = self.config
        mask = self.mask
        pattern = mask.pattern
        max_event = cfg.max_event_bytes
        plan = st.plan
        event_subs = plan.event_subs
        partial_subs = plan.partial_subs
        project = plan.project
        split = plan.split and pattern is not None
        pending = st.pending
        records = pending.records
        sizes = pending.sizes
        max_records, max_pbytes = pending.max_records, pending.max_bytes
        rate = self.sample_rate
        rand = self.rng.random
        lose = st.lose
        for t, ev in batch:
            st.in_hand -= 1
            try:
                if rate < 1.0 and rand() >= rate:
                    lose("cpu_budget")
                    continue
                try:
                    data: Any = dumps(ev, None, VALUE_OPTS)
                    masked = pattern is not None and pattern.search(data) is not None
                except TypeError:
                    data, masked = None, True
                if masked:
                    if split:  # unmasked subscriptions run: each kind sees its own copy
                        self._split_event(st, t, ev, data, now)
                        continue
                    ev = convert(ev, mask, cfg.max_depth)  # masked JSON-typed copy
                    data = encode_value_slow(ev)  # never reuse the unmasked bytes
                if len(data) > max_event:
                    lose("too_large")
                    continue
                tags: list[str] = []
                for sub in event_subs:
                    try:
                        if sub.source.matches(ev, t):
                            sub.matched += 1
                            tags.append(sub.id)
                    except Exception as exc:
                        self._sub_failed(sub, exc)
                for sub in partial_subs:
                    try:
                        sub.source.offer(ev, t)
                        sub.folded += 1
                    except Exception as exc:
                        self._sub_failed(sub, exc)
                if not tags:
                    if partial_subs:
                        st.folded += 1
                    else:
                        st.unmatched += 1
                    continue
                # The shipped object is serialized now (what was checked for masked keys is
                # exactly what leaves, whatever the host does later with nested objects); the
                # record around it is serialized with its whole batch, in one C call.
                if project is None:
                    eb = data
                else:
                    e = project(ev)
                    try:
                        eb = dumps(e, None, VALUE_OPTS)
                    except TypeError:
                        eb = encode_value_slow(e)
                n = len(eb) + 64
                if len(records) >= max_records or pending.nbytes + n > max_pbytes:
                    lose("queue_full")
                    continue
                if not records:
                    # a batch is due batch_interval_s after its oldest event was *published*
                    pending.first_at = t if t < now else now
                records.append({"subs": tags, "t": int(t * 1000), "s": st.seq, "e": Fragment(eb)})
                sizes.append(n)
                pending.nbytes += n
                st.seq += 1
            except Unconvertible as u:
                lose(u.reason)
            except Exception:
                lose("agent_error")

    def _process_one(self, st: _Stream, batch: list[tuple[float, Any]], now: float) -> None:
        """:meth:`_process_batch` for the most common plan, one events-mode query on the
        stream: the same recipe and counters without the per-event tag list and loops (every
        record shares one ``subs`` list, never mutated)."""
        cfg = self.config
        mask = self.mask
        pattern = mask.pattern
        max_event = cfg.max_event_bytes
        plan = st.plan
        sub = plan.event_subs[0]
        matches = sub.source.matches
        split = plan.split and pattern is not None
        tags = [sub.id]
        project = plan.project
        pending = st.pending
        records = pending.records
        sizes = pending.sizes
        max_records, max_pbytes = pending.max_records, pending.max_bytes
        rate = self.sample_rate
        rand = self.rng.random
        lose = st.lose
        opts = VALUE_OPTS
        for t, ev in batch:
            st.in_hand -= 1
            try:
                if rate < 1.0 and rand() >= rate:
                    lose("cpu_budget")
                    continue
                try:
                    data: Any = dumps(ev, None, opts)
                    masked = pattern is not None and pattern.search(data) is not None
                except TypeError:
                    data, masked = None, True
                if masked:
                    if split:
                        self._split_event(st, t, ev, data, now)
                        continue
                    ev = convert(ev, mask, cfg.max_depth)
                    data = encode_value_slow(ev)
                if len(data) > max_event:
                    lose("too_large")
                    continue
                try:
                    if not matches(ev, t):
                        st.unmatched += 1
                        continue
                except Exception as exc:
                    self._sub_failed(sub, exc)
                    st.unmatched += 1
                    continue
                sub.matched += 1
                if project is None:
                    eb = data
                else:
                    e = project(ev)
                    try:
                        eb = dumps(e, None, opts)
                    except TypeError:
                        eb = encode_value_slow(e)
                n = len(eb) + 64
                if len(records) >= max_records or pending.nbytes + n > max_pbytes:
                    lose("queue_full")
                    continue
                if not records:
                    pending.first_at = t if t < now else now
                records.append({"subs": tags, "t": int(t * 1000), "s": st.seq, "e": Fragment(eb)})
                sizes.append(n)
                pending.nbytes += n
                st.seq += 1
            except Unconvertible as u:
                lose(u.reason)
            except Exception:
                lose("agent_error")

    def _split_event(self, st: _Stream, t: float, ev: Any, data: bytes | None, now: float) -> None:
        """One event holding a masked key (or not plain JSON) while masked and unmasked
        subscriptions may both run on its stream (docs/operations.md, docs/agent.md §Masking).

        Masked subscriptions match, fold and project the masked copy; unmasked ones the original
        converted to JSON types. When both kinds keep it, the two projections are serialized and
        compared: equal bytes ship as one record tagged with both, otherwise as two records (the
        second glued to the first, same ``s``), so no byte of the masked subscriptions' record
        comes from the unmasked event. Raises :class:`Unconvertible` like the hot loop.
        """
        cfg = self.config
        plan = st.plan
        masked_subs, unmasked_subs = plan.masked_events, plan.unmasked_events
        masked_parts, unmasked_parts = plan.masked_partials, plan.unmasked_partials
        if data is None:  # not plain JSON: the unmasked copy is converted too
            uev: Any = convert(ev, NO_MASK, cfg.max_depth)
            data = encode_value_slow(uev)
        else:
            uev = ev
        size = len(data)
        mev: Any = None
        if masked_subs or masked_parts:
            mev = convert(ev, self.mask, cfg.max_depth)
            size = max(size, len(encode_value_slow(mev)))
        if size > cfg.max_event_bytes:
            st.lose("too_large")
            return
        mtags = self._match(masked_subs, mev, t)
        utags = self._match(unmasked_subs, uev, t)
        for subs, e in ((masked_parts, mev), (unmasked_parts, uev)):
            for sub in subs:
                try:
                    sub.source.offer(e, t)
                    sub.folded += 1
                except Exception as exc:
                    self._sub_failed(sub, exc)
        if not mtags and not utags:
            if plan.partial_subs:
                st.folded += 1
            else:
                st.unmatched += 1
            return
        project = plan.project
        mb = self._project_bytes(project, mev) if mtags else b""
        ub = self._project_bytes(project, uev) if utags else b""
        pending = st.pending
        ms = int(t * 1000)
        if not mtags or not utags or mb == ub:
            eb = mb if mtags else ub
            n = len(eb) + 64
            rec = {"subs": mtags + utags, "t": ms, "s": st.seq, "e": Fragment(eb)}
            ok = pending.add(rec, n, t if t < now else now)
        else:
            first = {"subs": mtags, "t": ms, "s": st.seq, "e": Fragment(mb)}
            second = {"subs": utags, "t": ms, "s": st.seq, "e": Fragment(ub)}
            ok = pending.add_pair(first, len(mb) + 64, second, len(ub) + 64, t if t < now else now)
        if not ok:
            st.lose("queue_full")
            return
        st.seq += 1

    def _match(self, subs: tuple[Subscription, ...], ev: Any, t: float) -> list[str]:
        tags: list[str] = []
        for sub in subs:
            try:
                if sub.source.matches(ev, t):
                    sub.matched += 1
                    tags.append(sub.id)
            except Exception as exc:
                self._sub_failed(sub, exc)
        return tags

    @staticmethod
    def _project_bytes(project: Callable[[Any], Any] | None, ev: Any) -> bytes:
        e = ev if project is None else project(ev)
        try:
            return dumps(e, None, VALUE_OPTS)  # type: ignore[no-any-return]
        except TypeError:
            return encode_value_slow(e)

    def _sub_failed(self, sub: Subscription, exc: Exception) -> None:
        sub.raised += 1
        sub.last_message = f"{type(exc).__name__}: {exc}"[:500]

    def _report_errors(self, sub: Subscription, now: float) -> None:
        n = sub.errors
        if n > sub.reported_errors and now - sub.last_report >= self.config.error_report_interval_s:
            text = f"{n} evaluation errors so far"
            if sub.last_message:
                text += f"; last: {sub.last_message}"
            if self._send(SubError(sub=sub.id, code="runtime", message=text)):
                sub.reported_errors = n
                sub.last_report = now

    def _poll_partials(self, sub: Subscription, now: float) -> None:
        try:
            parts = sub.source.poll(now)
        except Exception as exc:
            self._sub_failed(sub, exc)
            return
        for part in parts:
            if self._send(Partial(sub=sub.id, part=part)):
                sub.parts_sent += 1
            else:
                sub.parts_dropped += 1

    def _expire(self, now: float) -> None:
        if not self.subs:
            return
        if now - self.last_heard > self.config.expire_after_s:
            # the gateway is gone: drop every query and what was waiting for it
            for sub in list(self.subs.values()):
                self._remove(sub)
            for st in self.streams.values():
                n = st.pending.clear()
                if n:
                    st.lose("expired", n)
            return
        for sub in list(self.subs.values()):
            if sub.confirm_by is not None and now > sub.confirm_by:
                self._remove(sub)

    def report_control_cpu(self, now: float, cpu_seconds: float) -> None:
        """CPU the runner spent handling gateway messages (compiling queries, mostly). It is paid
        from a bucket earned at ``cpu_budget`` seconds per second (at most
        ``compile_cpu_burst_s``); while the bucket is overdrawn, new queries are refused
        (``limit_churn``), so compiling stays within the budget over time."""
        last = self._compile_last
        if last is not None and now > last:
            self._compile_cpu = min(self.config.compile_cpu_burst_s,
                                    self._compile_cpu + (now - last) * self.config.cpu_budget)
        self._compile_last = now if last is None else max(last, now)
        self._compile_cpu -= cpu_seconds

    def report_cpu(self, now: float, cpu_seconds: float) -> None:
        """Feed the agent thread's cumulative CPU time; adjusts the sample rate to the budget.

        Above the budget the rate falls in proportion; well below it, it recovers by 1.5x a
        second. The rate is reported per subscription (``sample_rate``) and every event it
        skips is counted as lost (``cpu_budget``).
        """
        mark = self._cpu_mark
        if mark is None or now < mark[0]:
            self._cpu_mark = (now, cpu_seconds)
            return
        dt = now - mark[0]
        if dt < 1.0:
            return
        usage = max(0.0, cpu_seconds - mark[1]) / dt
        budget = self.config.cpu_budget
        if usage > budget:
            self.sample_rate = max(
                self.config.min_sample_rate, self.sample_rate * budget / usage * 0.9
            )
        elif usage < budget * 0.5 and self.sample_rate < 1.0:
            self.sample_rate = min(1.0, self.sample_rate * 1.5)
        self._cpu_mark = (now, cpu_seconds)

    # ------------------------------------------------------------ output

    def data_to_send(
        self, now: float, max_bytes: int = 1 << 62, force: bool = False
    ) -> list[Frame]:
        """Frames to write now: control messages, then events batches that are due.

        A stream's batch is due when it holds ``batch_max_bytes`` or its oldest record waited
        ``batch_interval_s`` (or ``force``, for the final flush). Events frames are counted as
        sent when returned here; hand the unwritten ones back to :meth:`disconnected`.

        Args:
            now: the current time.
            max_bytes: stop adding events frames once this many bytes are returned.
            force: flush every pending record regardless of age.
        """
        out, self._out = self._out, []
        if not self.is_open or self.link is None:
            return out
        cfg = self.config
        budget = max_bytes - sum(len(f.data) for f in out)
        for st in self.streams.values():
            p = st.pending
            while (
                p.records
                and budget > 0
                and (
                    force
                    or p.nbytes >= cfg.batch_max_bytes
                    or now - p.first_at >= cfg.batch_interval_s
                )
            ):
                records, events = p.cut(cfg.batch_max_bytes)
                data = self.link.send(Events(stream=st.name, records=records))
                out.append(Frame(data, st.name, events))
                st.sent += events
                budget -= len(data)
                if p.records:
                    p.first_at = now
        return out

    def messages_to_send(self, now: float | None = None, force: bool = False) -> list[Message]:
        """:meth:`data_to_send`, decoded (for tests and in-memory pairs)."""
        frames = self.data_to_send(self.now if now is None else now, force=force)
        return [decode(f.data) for f in frames]

    # ------------------------------------------------------------ statistics

    def _stream_stats(self, st: _Stream) -> StreamStatistics:
        ing = st.ingress
        enqueued = ing.enqueued
        skipped = counter_value(st.skipped)
        dropped = {}
        if ing.dropped:
            dropped["queue_full"] = ing.dropped
        n = counter_value(st.not_object)
        if n:
            dropped["not_an_object"] = n
        return StreamStatistics(
            offered=skipped + enqueued + sum(dropped.values()),
            skipped_no_subscription=skipped,
            enqueued=enqueued,
            dropped=dropped,
            unmatched=st.unmatched,
            folded=st.folded,
            sent=st.sent,
            lost=dict(st.lost),
            pending=len(ing.items) + st.in_hand + st.pending.events,
        )

    def statistics(self) -> AgentStatistics:
        """A snapshot of every counter (callable from any thread)."""
        subs = {
            s.id: SubscriptionStatistics(
                stream=s.stream,
                ships=s.ships,
                matched=s.matched,
                folded=s.folded,
                errors=s.errors,
                sample_rate=self.sample_rate,
                parts_sent=s.parts_sent,
                parts_dropped=s.parts_dropped,
            )
            for s in list(self.subs.values())
        }
        return AgentStatistics(
            streams={name: self._stream_stats(st) for name, st in list(self.streams.items())},
            subs=subs,
            connected=self.is_open,
            connects=self.connects,
            sample_rate=self.sample_rate,
        )

    def _stats_message(self) -> Stats:
        s = self.statistics()
        return Stats(
            streams={k: v.to_json() for k, v in s.streams.items()},
            subs={k: v.to_json() for k, v in s.subs.items()},
        )


def _losses(msg: Stats) -> tuple[dict[str, Any], dict[str, Any]]:
    """The members of a stats message the gateway acts on (losses, errors, sampling); flow
    counters (offered, sent, matched, ...) change with every event and are left out."""
    streams = {name: (c.get("dropped"), c.get("lost")) for name, c in msg.streams.items()}
    subs = {sid: (c.get("dropped"), c.get("errors"), c.get("parts_dropped"),
                  c.get("sample_rate")) for sid, c in msg.subs.items()}
    return streams, subs


_HANDLERS: dict[type[Any], Callable[[AgentCore, Any, float], None]] = {
    Welcome: AgentCore._on_welcome,
    Subscribe: AgentCore._on_subscribe,
    Unsubscribe: AgentCore._on_unsubscribe,
    Ping: AgentCore._on_ping,
}
"""gateway message class -> handler (docs/protocol.md §Agent link)."""
