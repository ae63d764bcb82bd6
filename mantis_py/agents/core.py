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
  through the pipeline and to expire leases, ``data_to_send(now)`` for frames (batches are cut
  at 64 KiB or after 50 ms), ``report_cpu`` for the CPU budget, ``statistics()`` for the counters.

The core composes the parts, each in its own module (read them in this order):

- :mod:`.config` — ``AgentConfig``, every setting, validated once;
- :mod:`.stream` — one stream's queues, query plan and counters;
- :mod:`.subscriptions` — one running query (``Subscription``) and a stream's plan;
- :mod:`.pipeline` — the per-event recipe (sample, serialize, mask, match, project, buffer);
- :mod:`.link` — the gateway connection's state (handshake, liveness, control frames);
- :mod:`.budget` — the CPU budget (event sampling, compile CPU, the churn cap);
- :mod:`.stats` — statistics snapshots and when ``stats`` goes upstream.

What stays here is the glue: the host-side routing tables, the gateway's messages
(``subscribe`` with its limits, ``unsubscribe``, leases), ``poll`` and ``data_to_send``.
Nothing the engine or the host's data does raises out of the core: failures are counted and
reported upstream (``sub_error``).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..wire.agent_link import AgentLink
from ..wire.codec import decode
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
from .budget import CpuBudget
from .config import AgentConfig
from .convert import Mask
from .link import Frame, Link
from .pipeline import Pipeline, sub_failed
from .stats import AgentStatistics, StatsSchedule, StreamStatistics, SubscriptionStatistics
from .stream import OVERFLOW_STREAM, Stream
from .subscriptions import Engine, Subscription, default_engine, plan_for

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
        self.pipeline = Pipeline(config, self.mask, self.rng)
        self.budget = CpuBudget(config)
        self._link = Link(config.max_control_frames)
        self._stats = StatsSchedule(config.stats_interval_s, config.stats_max_interval_s)
        self.streams: dict[str, Stream] = {}
        # The host path reads ``route`` (below) and ``queues`` (docs/agent.md §What it costs):
        # subscribed streams map to their ingress deque here.
        self.queues: dict[str, deque[tuple[float, Any]]] = {}
        # ``route`` is what the host path reads first: every known stream maps to its skip
        # counter while nobody subscribed to it (``for _ in route[s]: return`` counts and
        # leaves, no call), or to the exhausted iterator ``SUBSCRIBED`` while queries run (the
        # loop falls through to ``queues``). An unknown stream is a KeyError: the slow path.
        self.route: dict[str, Iterable[int]] = {}
        self.queue_cap = config.max_queue_events
        self.subs: dict[str, Subscription] = {}
        self.now = 0.0
        for name in config.streams:
            self._register(name)

    @property
    def engine(self) -> Engine:
        """The query engine, loaded on the first subscription."""
        if self._engine is None:
            self._engine = default_engine()
        return self._engine

    @property
    def engine_loaded(self) -> bool:
        """Whether the engine is loaded. Runners do not charge the compile budget for the frame
        that loads it: imports and parser tables are paid once per process, not per query."""
        return self._engine is not None

    @property
    def sample_rate(self) -> float:
        """The fraction of events the pipeline processes (lowered to keep the CPU budget)."""
        return self.budget.sample_rate

    @property
    def link(self) -> AgentLink | None:
        """The open link's protocol state (None between connections)."""
        return self._link.wire

    @property
    def is_open(self) -> bool:
        """True while the link is open (welcome received)."""
        return self._link.is_open

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

    def _register(self, name: str) -> Stream:
        if not isinstance(name, str):
            name = str(name)
        if len(self.streams) >= self.config.max_known_streams and name not in self.streams:
            name = OVERFLOW_STREAM
        st = self.streams.setdefault(name, Stream(name, self.config))
        if not st.subs and name != OVERFLOW_STREAM:
            self.route.setdefault(name, st.skipped)
        return st

    def _stream(self, name: str) -> Stream:
        st = self.streams.get(name)
        return st if st is not None else self._register(name)


    # ------------------------------------------------------------ link (runner thread)

    def connected(self, now: float) -> None:
        """A websocket is open: start the mantis handshake (queues ``hello``)."""
        self.now = now
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
        self._link.open(now, hello)

    def receive_data(self, data: bytes | str, now: float) -> None:
        """Handle one received frame.

        Raises:
            RemoteProtocolError: the gateway broke the protocol; close with ``close_code``.
        """
        self.receive(self._link.decode(data), now)

    def receive(self, msg: Message, now: float) -> None:
        """Handle one decoded gateway message (``receive_data`` without the codec)."""
        self._link.receive(msg, now)
        self.now = now
        _HANDLERS[type(msg)](self, msg, now)

    def disconnected(self, now: float, unsent: Iterable[Frame] = ()) -> None:
        """The websocket closed. ``unsent``: frames taken from :meth:`data_to_send` that never
        reached the socket; their events are counted as lost (``disconnected``)."""
        self.now = now
        for f in unsent:  # (the control queue never holds events frames: those are cut on demand)
            if f.stream is not None and f.records:
                st = self._stream(f.stream)
                st.sent -= f.records
                st.lose("disconnected", f.records)
        self._link.close()
        self.budget.forget_cpu_mark()

    def link_silent(self, now: float) -> bool:
        """True when the current link has been silent for three ping periods: the runner drops
        it and reconnects, to the next gateway of its list (:meth:`.link.Link.silent`)."""
        return self._link.silent(now)

    def _send(self, msg: Message) -> bool:
        return self._link.send(msg)

    def _on_welcome(self, msg: Welcome, now: float) -> None:
        # Subscriptions from an older link survive a short disconnect, but the gateway must
        # re-send them on this link (docs/protocol.md §Leases).
        gen = self._link.gen
        for sub in self.subs.values():
            if sub.link_gen != gen:
                sub.confirm_by = now + self.config.resubscribe_grace_s
        self._stats.link_opened(now)  # the first stats of a link always goes out

    def _on_ping(self, msg: Ping, now: float) -> None:
        self._send(Pong(nonce=msg.nonce))

    # ------------------------------------------------------------ subscriptions (runner thread)

    def _on_unsubscribe(self, msg: Unsubscribe, now: float) -> None:
        sub = self.subs.get(msg.sub)
        if sub is not None:
            self._remove(sub)

    def _on_subscribe(self, msg: Subscribe, now: float) -> None:
        cfg = self.config
        sub = self.subs.get(msg.sub)
        if sub is not None:
            sub.link_gen = self._link.gen
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
        if not self.budget.admit_query(now):
            text = (f"too many new queries: at most {cfg.subscribe_rate_per_s:g} per second "
                    f"(burst {cfg.subscribe_burst}) and {cfg.cpu_budget:.0%} of a core compiling")
            self._send(SubError(sub=msg.sub, code="limit_churn", message=text))
            return
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
                link_gen=self._link.gen,
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

    def _set_subs(self, st: Stream, subs: tuple[Subscription, ...]) -> None:
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
        run = self.pipeline.run
        rate = self.budget.sample_rate
        for st in list(self.streams.values()):
            if st.ingress.items:
                batch = st.ingress.take(max_events)
                st.in_hand = len(batch)  # taken but not yet accounted (statistics snapshots)
                run(st, batch, now, rate)
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
        if self._link.is_open:
            self._stats.check(now, self._stats_message, self._send)
        return more

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
            sub_failed(sub, exc)
            return
        for part in parts:
            if self._send(Partial(sub=sub.id, part=part)):
                sub.parts_sent += 1
            else:
                sub.parts_dropped += 1

    def _expire(self, now: float) -> None:
        if not self.subs:
            return
        if now - self._link.last_heard > self.config.expire_after_s:
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
        """CPU the runner spent handling gateway messages (compiling queries, mostly), paid from
        the compile bucket; while it is overdrawn, new queries are refused (``limit_churn``), so
        compiling stays within ``cpu_budget`` over time (:mod:`.budget`)."""
        self.budget.report_control_cpu(now, cpu_seconds)

    def control_overdrawn(self, now: float) -> bool:
        """True while the CPU spent on gateway messages is over its budget: the runner does not
        read the link then, so a gateway flooding subscribes cannot take more than the budget."""
        return self.budget.control_overdrawn(now)

    def report_cpu(self, now: float, cpu_seconds: float) -> None:
        """Feed the agent thread's cumulative CPU time; adjusts the sample rate to the budget.

        Above the budget the rate falls in proportion; well below it, it recovers by 1.5x a
        second. The rate is reported per subscription (``sample_rate``) and every event it
        skips is counted as lost (``cpu_budget``).
        """
        self.budget.report_cpu(now, cpu_seconds)

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
        out = self._link.take()
        wire = self._link.wire
        if wire is None or not wire.is_open:
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
                data = wire.send(Events(stream=st.name, records=records))
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

    def statistics(self) -> AgentStatistics:
        """A snapshot of every counter (callable from any thread)."""
        rate = self.budget.sample_rate
        subs = {
            s.id: SubscriptionStatistics(
                stream=s.stream,
                ships=s.ships,
                matched=s.matched,
                folded=s.folded,
                errors=s.errors,
                sample_rate=rate,
                parts_sent=s.parts_sent,
                parts_dropped=s.parts_dropped,
            )
            for s in list(self.subs.values())
        }
        return AgentStatistics(
            streams={name: st.statistics() for name, st in list(self.streams.items())},
            subs=subs,
            connected=self.is_open,
            connects=self._link.connects,
            sample_rate=rate,
        )

    def _stats_message(self) -> Stats:
        s = self.statistics()
        return Stats(
            streams={k: v.to_json() for k, v in s.streams.items()},
            subs={k: v.to_json() for k, v in s.subs.items()},
        )


_HANDLERS: dict[type[Any], Callable[[AgentCore, Any, float], None]] = {
    Welcome: AgentCore._on_welcome,
    Subscribe: AgentCore._on_subscribe,
    Unsubscribe: AgentCore._on_unsubscribe,
    Ping: AgentCore._on_ping,
}
"""gateway message class -> handler (docs/protocol.md §Agent link)."""
