"""The gateway core: agents, clients, runs and their merges, with no I/O. ``now`` is an argument.

Theory of operation. The shells (``handlers.py``) feed the core what they read and drain what it
produced:

- agents: ``open_agent`` / ``receive_agent_data`` / ``close_agent``; produced frames wait in
  ``agent_data_to_send()``. The core holds each agent's :class:`~mantis_py.wire.GatewayLink`, so
  ``hello`` -> ``welcome`` -> ``subscribe``... is checked in one place.
- clients: ``open_client`` / ``receive_client_data`` (or ``submit`` / ``cancel`` for internal
  subscribers) / ``close_client``; every frame for a client goes into that client's bounded
  :class:`~mantis_py.gateway.limits.OutboundQueue` and the client id into ``clients_to_wake()``;
  the shell's sender task drains the queue with :meth:`next_frame`.
- time: ``poll(now)`` emits due windows (grace, docs/mql.md#windows), meta frames (at least once a second
  while something was dropped, docs/protocol.md), agent pings, and names the clients to evict
  (``clients_to_close()``).

A *run* (``merge.py``) is one merger of one canonical query, shared by every client that submitted
the same canonical text under the same visibility, unless LIMIT completes the query (then each
client has its own run, since each has its own count). The registry (``registry.py``) turns runs
into agent subscriptions, once per distinct agent part.

Every query decision (accepted, refused, error, rate limited) produces one audit record in
``audit_to_log()``; none contains a token.
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import QueryError, RemoteProtocolError
from ..query.run import outputs
from ..query.run.outputs import CompleteReason
from ..wire import codec
from ..wire.agent_link import GatewayLink
from ..wire.client_link import ClientLink
from ..wire.messages import (
    Accepted,
    Cancel,
    Complete,
    Error,
    Events,
    Hello,
    Meta,
    Partial,
    Ping,
    Pong,
    Query,
    Rows,
    Stats,
    SubError,
    Subscribe,
    Unsubscribe,
    Welcome,
)
from .auth import Principal, audit_record
from .config import GatewayConfig
from .limits import TOO_SLOW, OutboundItem, OutboundQueue, TokenBucket
from .merge import Attachment, PreparedSide, Run, member_key
from .metrics import Metrics
from .registry import AgentInfo, Registry
from .registry import Subscribe as SubscribeOut

__all__ = ["ClientState", "GatewayCore", "error_object"]

Prepare = Callable[..., PreparedSide]


def error_object(message: str, code: str, kind: str = "limit", hint: str | None = None) -> dict[str, Any]:
    """A gateway-made error object with the members of docs/mql.md#errors (position: the whole query)."""
    return {
        "kind": kind,
        "code": code,
        "message": message,
        "line": 1,
        "column": 1,
        "length": 0,
        "snippet": "",
        "expected": [],
        "suggestion": None,
        "hint": hint,
    }


@dataclass(eq=False)
class ClientState:
    """One connected client (websocket, SSE or internal subscriber)."""

    client_id: str
    principal: Principal
    queue: OutboundQueue
    link: ClientLink
    bucket: TokenBucket
    attachments: dict[str, Attachment] = field(default_factory=dict)
    kind: str = "ws"


@dataclass(eq=False)
class AgentState:
    """One agent connection: its link, its hello, its last stats."""

    agent_id: str
    link: GatewayLink
    principal: Principal
    info: AgentInfo | None = None
    last_ping: float = 0.0
    last_heard: float = 0.0  # any frame from the agent (pongs answer every ping)


def _default_prepare() -> Prepare:
    from ..query import prepare  # imported lazily: the engine is heavy and optional in unit tests

    return prepare


class GatewayCore:
    """All gateway state; pure. See the module header for the calling protocol."""

    def __init__(
        self,
        config: GatewayConfig,
        now: float,
        prepare: Prepare | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.limits = config.limits
        self.prepare = prepare or _default_prepare()
        self.metrics = metrics or Metrics()
        self.registry = Registry()
        self.agents: dict[str, AgentState] = {}
        self.clients: dict[str, ClientState] = {}
        self.runs: dict[str, Run] = {}
        self._shared_runs: dict[tuple[str, str], str] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._check_buckets: dict[str, TokenBucket] = {}
        self._compile_buckets: dict[str, TokenBucket] = {}
        self._failed: dict[tuple[str, str], QueryError] = {}
        self._ids = itertools.count(1)
        self._agent_out: dict[str, list[bytes]] = {}
        self._wake: set[str] = set()
        self._close: list[tuple[str, int, str]] = []
        self._close_agents: list[str] = []
        # agent pings, due time order (one period for all): the tick pops the due ones instead
        # of looking at every agent
        self._pings: deque[tuple[float, str]] = deque()
        self._audit: list[dict[str, Any]] = []
        self._started = now
        self._caps = self._build_caps(config.caps)
        self._stats: dict[tuple[str, str], tuple[dict[str, dict[str, int]],
                                                 dict[str, dict[str, int]]]] = {}
        # Cluster mode: gateway/cluster/node.py sets it (docs/cluster.md); None = a single gateway.
        self.cluster: Any = None

    @staticmethod
    def _build_caps(raw: Mapping[str, Any]) -> Any:
        from ..query.state.caps import Caps

        return Caps.from_json(dict(raw))

    # ------------------------------------------------------------------ swap-and-return outputs

    def agent_data_to_send(self) -> dict[str, list[bytes]]:
        """Frames to send, per agent id, in order."""
        out, self._agent_out = self._agent_out, {}
        return out

    def clients_to_wake(self) -> set[str]:
        """Clients whose outbound queue got something since the last call."""
        out, self._wake = self._wake, set()
        return out

    def clients_to_close(self) -> list[tuple[str, int, str]]:
        """Clients to close: (client id, websocket close code, reason)."""
        out, self._close = self._close, []
        return out

    def agents_to_close(self) -> list[str]:
        """Agent connections to drop: silent for three ping periods (a dead peer)."""
        out, self._close_agents = self._close_agents, []
        return out

    def audit_to_log(self) -> list[dict[str, Any]]:
        """Audit records of query decisions made since the last call."""
        out, self._audit = self._audit, []
        return out

    # ------------------------------------------------------------------ agents

    def open_agent(self, agent_id: str, principal: Principal, now: float) -> None:
        """An agent websocket was accepted (after auth); its hello is expected next."""
        self.agents[agent_id] = AgentState(agent_id, GatewayLink(), principal, last_ping=now,
                                           last_heard=now)
        self._pings.append((now + self.config.heartbeat_s, agent_id))
        self.metrics.inc("connections_total", kind="agent")

    def _send_agent(self, agent_id: str, msg: Any) -> None:
        state = self.agents.get(agent_id)
        if state is None:
            return
        self._agent_out.setdefault(agent_id, []).append(state.link.send(msg))

    def receive_agent_data(self, agent_id: str, data: bytes | str, now: float) -> None:
        """One frame from an agent.

        Raises:
            RemoteProtocolError: malformed or out-of-order frame; close with ``close_code``.
        """
        state = self.agents[agent_id]
        state.last_heard = now
        self.metrics.inc("frames_in_total", kind="agent")
        self.metrics.inc("bytes_in_total", len(data), kind="agent")
        msg = state.link.receive_data(data)
        handler = self._AGENT_DISPATCH[msg.type]
        handler(self, state, msg, now)

    def _on_hello(self, state: AgentState, msg: Hello, now: float) -> None:
        pattern_ok = state.principal.read == ("*",) or any(
            state.principal.may_read(msg.app, s) for s in (*msg.streams, "default")
        )
        if "agent" not in state.principal.roles or not pattern_ok:
            raise RemoteProtocolError(
                f"user {state.principal.user!r} may not publish app {msg.app!r}", close_code=1008
            )
        info = AgentInfo(
            state.agent_id, msg.app, msg.instance, tuple(msg.streams), dict(msg.tags),
            msg.zone, msg.version, msg.pid, now,
        )
        state.info = info
        # Stats are cumulative per agent process; remember them across reconnects.
        self._stats.setdefault((msg.app, msg.instance), ({}, {}))
        self._send_agent(state.agent_id, Welcome(state.agent_id, self.config.heartbeat_s))
        for sub in self.registry.add_agent(info):
            self._send_subscribe(sub)
            self._agent_joined_sub(sub.sub, state.agent_id, now)

    def _send_subscribe(self, sub: SubscribeOut) -> None:
        self._send_agent(
            sub.agent_id, Subscribe(sub.sub, sub.query, sub.stream, sub.start, dict(sub.caps))
        )

    def _member(self, agent_id: str, stream: str) -> str:
        """The merger member of one agent connection's part of ``stream`` (app + instance +
        stream: the same member whichever connection or gateway carries it)."""
        info = self.registry.agents.get(agent_id)
        if info is None:
            return f"{agent_id}/{stream}"
        return member_key(info.app, info.instance, stream)

    def _agent_joined_sub(self, sid: str, agent_id: str, now: float) -> None:
        stream = self.registry.subs[sid].stream
        key = self._member(agent_id, stream)
        if self.cluster is not None:
            self.cluster.local_joined(sid, key, agent_id, now)
        for run_id in self.registry.runs_of(sid):
            self.runs[run_id].add_agent(key, agent_id, now)

    def _on_events(self, state: AgentState, msg: Events, now: float) -> None:
        info = state.info
        assert info is not None
        self.metrics.inc("events_in_total", len(msg.records))
        meta = {"_app": info.app, "_instance": info.instance, "_zone": info.zone,
                "_stream": msg.stream}
        instance = info.instance
        routes: dict[Any, list[list[dict[str, Any]]]] = {}  # subs tag -> record lists of runs
        by_run: dict[str, list[dict[str, Any]]] = {}
        unknown: dict[Any, int] = {}  # subs tag -> how many of its ids are not (or no longer) ours
        unknown_records = 0
        # Hot path (ingest): records are the freshly decoded dicts; the merger's record shape
        # {"t", "i", "s", "e", "m"} is made by adding the two gateway-known members in place.
        try:
            for rec in msg.records:
                # The record's shape is checked here, in the routing loop (the codec checks only
                # the list; docs/protocol.md): any bad member raises TypeError -> close 4000.
                if type(rec["t"]) is not int or type(rec["s"]) is not int \
                        or type(rec["e"]) is not dict:
                    raise TypeError("t and s must be integers and e an object")
                rec["i"] = instance
                rec["m"] = meta
                tags = rec["subs"]
                key = tags[0] if len(tags) == 1 else tuple(tags)
                targets = routes.get(key)
                if targets is None:
                    if type(tags) is not list or not all(type(x) is str for x in tags):
                        raise TypeError("subs must be a list of subscription ids")
                    targets = routes[key] = self._route(tags, msg.stream, by_run)
                    lost = self._unknown_tags(tags, msg.stream)
                    if lost:
                        unknown[key] = lost
                if unknown and key in unknown:  # dropped records are counted one by one
                    unknown_records += unknown[key]
                for target in targets:
                    target.append(rec)
        except (KeyError, TypeError, IndexError) as exc:
            raise RemoteProtocolError(f"events: malformed record ({exc})", close_code=4000) from None
        if unknown_records:
            self.metrics.inc("dropped_total", unknown_records, reason="unknown_subscription")
        key = member_key(info.app, instance, msg.stream)
        for run_id, records in by_run.items():
            run = self.runs.get(run_id)
            if run is not None and records:
                try:
                    run.merger.receive_events(key, records, now)
                except Exception as exc:  # an engine bug ends that query, never the agent link
                    self._fail_run(run, exc, now)
                    continue
                self._poll_run(run, now)

    def _route(self, tags: list[str], stream: str,
               by_run: dict[str, list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
        """The record lists (one per run) that events tagged ``tags`` go to."""
        targets: list[list[dict[str, Any]]] = []
        seen: set[str] = set()
        for sid in tags:
            sub = self.registry.subs.get(sid)
            if sub is None or sub.stream != stream:
                # withdrawn a moment ago (in flight) or never ours: counted per record by the
                # caller (_unknown_tags), not an error
                continue
            for run_id in sub.runs:
                if run_id not in seen:
                    seen.add(run_id)
                    targets.append(by_run.setdefault(run_id, []))
        return targets

    def _unknown_tags(self, tags: list[str], stream: str) -> int:
        """How many subscription ids of ``tags`` are not (or no longer) live on ``stream``."""
        subs = self.registry.subs
        return sum(1 for sid in tags if (s := subs.get(sid)) is None or s.stream != stream)

    def _on_partial(self, state: AgentState, msg: Partial, now: float) -> None:
        self.metrics.inc("parts_in_total")
        sub = self.registry.subs.get(msg.sub)
        if sub is None:
            self.metrics.inc("dropped_total", reason="unknown_subscription")
            return
        info = state.info
        assert info is not None
        key = member_key(info.app, info.instance, sub.stream)
        for run_id in list(sub.runs):
            run = self.runs.get(run_id)
            if run is not None:
                try:
                    ready = run.merger.receive_part(key, msg.part, now)
                except Exception as exc:
                    self._fail_run(run, exc, now)
                    continue
                # O(1) per part: the window goes out now when this was its last expected part,
                # otherwise on the tick (``poll``) once its grace is over.
                if ready:
                    self._poll_run(run, now)

    def _on_stats(self, state: AgentState, msg: Stats, now: float) -> None:
        info = state.info
        assert info is not None
        # Stats are cumulative since the agent started; attachments get the increments.
        stream_drops, sub_counts = self._stats[(info.app, info.instance)]
        for stream, counters in msg.streams.items():
            dropped = counters.get("dropped", {}) if isinstance(counters, dict) else {}
            delta = _delta(stream_drops.get(stream), dropped)
            stream_drops[stream] = dict(dropped)
            if delta:
                for sid, sub in self.registry.subs.items():
                    if sub.app == info.app and sub.stream == stream and state.agent_id in sub.agents:
                        self._add_agent_drops(sid, delta, (info.app, info.instance, "s",
                                                           stream, dropped))
        for sid, counters in msg.subs.items():
            if not isinstance(counters, dict) or sid not in self.registry.subs:
                continue
            flat = dict(counters.get("dropped", {}) or {})
            if isinstance(counters.get("errors"), int):
                flat["evaluation_errors"] = counters["errors"]
            delta = _delta(sub_counts.get(sid), flat)
            sub_counts[sid] = flat
            if delta:
                self._add_agent_drops(sid, delta, (info.app, info.instance, "q", sid, flat))

    def _add_agent_drops(self, sid: str, delta: Mapping[str, int],
                         source: tuple[str, str, str, str, Mapping[str, int]]) -> None:
        """``delta``: new losses for ``sid``; ``source``: (app, instance, "s" + stream or
        "q" + sub id, the cumulative counters ``delta`` came from)."""
        for run_id in self.registry.runs_of(sid):
            for att in self.runs[run_id].attachments.values():
                att.dropped.update(delta)
        if self.cluster is not None:  # an edge forwards them to the owners (docs/cluster.md)
            self.cluster.agent_drops(sid, delta, *source)

    def _on_sub_error(self, state: AgentState, msg: SubError, now: float) -> None:
        self.registry.refuse(state.agent_id, msg.sub, msg.message)
        sub = self.registry.subs.get(msg.sub)
        if sub is None:
            return
        key = self._member(state.agent_id, sub.stream)
        for run_id in list(sub.runs):
            run = self.runs[run_id]
            run.remove_agent(key, state.agent_id, now)
            for att in run.attachments.values():
                att.dropped["agent_refused"] += 1
                att.force_meta = True

    def _on_pong(self, state: AgentState, msg: Pong, now: float) -> None:
        return None

    _AGENT_DISPATCH: ClassVar[dict[str, Callable[[GatewayCore, AgentState, Any, float], None]]] = {
        "hello": _on_hello,
        "events": _on_events,
        "partial": _on_partial,
        "stats": _on_stats,
        "sub_error": _on_sub_error,
        "pong": _on_pong,
    }

    def close_agent(self, agent_id: str, now: float) -> None:
        """An agent connection ended (closed, killed or evicted)."""
        state = self.agents.pop(agent_id, None)
        self._agent_out.pop(agent_id, None)
        if state is None or state.info is None:
            return
        info = state.info
        for sid in self.registry.remove_agent(agent_id):
            sub = self.registry.subs[sid]
            key = member_key(info.app, info.instance, sub.stream)
            if self.cluster is not None:
                self.cluster.local_left(sid, key)
            for run_id in sub.runs:
                self.runs[run_id].remove_agent(key, agent_id, now)

    # ------------------------------------------------------------------ clients

    def admit_check(self, user: str, now: float) -> bool:
        """Take one ``POST /v1/check`` from ``user``'s rate limit: the same rate and burst as query
        submissions, in a bucket of its own (checking while typing never starves submitting)."""
        bucket = self._check_buckets.get(user)
        if bucket is None:
            lim = self.limits
            if len(self._check_buckets) >= 10_000:  # one per configured user; bounded anyway
                self._check_buckets.clear()
            bucket = self._check_buckets[user] = TokenBucket(lim.submissions_per_s,
                                                             lim.submissions_burst, now)
        return bucket.try_take(now)

    def prepare_for(self, principal: Principal, text: str, mode: str = "live") -> PreparedSide:
        """``prepare`` for a client, safe to call from a worker thread: no app list (a query for
        an app with no agent yet waits for it, and no error names an app the client may not
        read). A failure is remembered for a moment, so the core does not compile twice what
        the shell just compiled off the event loop."""
        key = (text, mode)
        failed = self._failed.get(key)
        if failed is not None:
            raise failed
        try:
            return self.prepare(text, mode=mode, apps=None)
        except QueryError as exc:
            if len(self._failed) >= 256:
                self._failed.clear()
            self._failed[key] = exc
            raise exc from None

    # -- compile budget: CPU seconds of query compilation per user ---------------------------

    def _compile_bucket(self, user: str, now: float) -> TokenBucket:
        bucket = self._compile_buckets.get(user)
        if bucket is None:
            if len(self._compile_buckets) >= 10_000:
                self._compile_buckets.clear()
            lim = self.limits
            bucket = self._compile_buckets[user] = TokenBucket(
                lim.compile_cpu_per_s, lim.compile_cpu_burst_s, now)
        return bucket

    def charge_compile(self, user: str, cpu_seconds: float, now: float) -> None:
        """The shell measured ``cpu_seconds`` of compilation for ``user``: account it
        (``compile_cpu_seconds_total{user}``) and debit the user's compile budget."""
        self.metrics.inc("compile_cpu_seconds_total", cpu_seconds, user=user)
        self._compile_bucket(user, now).charge(now, cpu_seconds)

    def compile_allowed(self, user: str, now: float) -> bool:
        """False while ``user`` owes compile CPU (its budget is negative)."""
        return self._compile_bucket(user, now).available(now) >= 0.0

    def compile_request(self, client_id: str, data: bytes | str,
                        now: float) -> tuple[Principal, str] | None:
        """Shell hook, before :meth:`receive_client_data`: when ``data`` is a query this client
        may submit now (rate limit and compile budget), (principal, text) to compile off
        the event loop; ``receive_client_data`` then finds the result in the prepare cache."""
        client = self.clients.get(client_id)
        if client is None:
            return None
        try:
            msg = codec.decode(data, ("query",))
        except Exception:
            return None
        if not isinstance(msg, Query) or client.bucket.available(now) < 1.0:
            return None
        if not self.compile_allowed(client.principal.user, now):
            return None
        return client.principal, msg.query

    def open_client(self, client_id: str, principal: Principal, now: float, kind: str = "ws",
                    queue: OutboundQueue | None = None) -> ClientState:
        """A client connection was accepted (after auth and connection caps)."""
        lim = self.limits
        bucket = self._buckets.get(principal.user)
        if bucket is None:
            bucket = TokenBucket(lim.submissions_per_s, lim.submissions_burst, now)
            self._buckets[principal.user] = bucket
        state = ClientState(
            client_id,
            principal,
            queue or OutboundQueue(lim.client_queue_frames, lim.client_queue_bytes,
                                   lim.slow_client_s),
            ClientLink("gateway"),
            bucket,
            kind=kind,
        )
        self.clients[client_id] = state
        self.metrics.inc("connections_total", kind=kind)
        return state

    def receive_client_data(self, client_id: str, data: bytes | str, now: float) -> None:
        """One frame from a websocket client.

        Raises:
            RemoteProtocolError: malformed frame or illegal message; close with ``close_code``.
        """
        client = self.clients[client_id]
        self.metrics.inc("frames_in_total", kind="client")
        self.metrics.inc("bytes_in_total", len(data), kind="client")
        msg = client.link.receive_data(data)
        if isinstance(msg, Query):
            self._submit(client, msg.id, msg.query, now)
        elif isinstance(msg, Cancel):
            self.cancel(client_id, msg.id, now)

    def submit(self, client_id: str, qid: str, text: str, now: float) -> None:
        """Submit a query as if the client had sent ``{"type": "query", ...}``."""
        client = self.clients[client_id]
        client.link.receive(Query(qid, text))
        self._submit(client, qid, text, now)

    def _refuse(self, client: ClientState, qid: str, text: str, apps: list[str],
                error: dict[str, Any], decision: str, now: float) -> None:
        self._audit.append(audit_record(client.principal.user, apps, text, decision,
                                        error.get("code"), client.client_id))
        self.metrics.inc("queries_total", decision=decision)
        self._put(client, OutboundItem("control", qid, {}, None), Error(qid, error), now)

    def _submit(self, client: ClientState, qid: str, text: str, now: float) -> None:
        user = client.principal.user
        if not client.bucket.try_take(now):
            err = error_object(
                f"rate limited: at most {self.limits.submissions_per_s:g} queries per second "
                f"(burst {self.limits.submissions_burst})", "rate_limited",
                hint="wait a moment and submit again",
            )
            self._refuse(client, qid, text, [], err, "rate_limited", now)
            return
        if not self.compile_allowed(user, now):
            err = error_object(
                "rate limited: this user's queries took too much compile CPU recently "
                f"(budget {self.limits.compile_cpu_per_s:g} s per second)", "rate_limited",
                hint="wait a moment and submit again; smaller queries compile faster",
            )
            self._refuse(client, qid, text, [], err, "rate_limited", now)
            return
        try:
            # no app list: an application with no agent yet is not an error; the query is
            # accepted and waits for its agents (a ``waiting`` meta names it, see poll()), and
            # no error ever names an application the client may not read.
            prepared = self.prepare_for(client.principal, text)
        except QueryError as exc:
            self._refuse(client, qid, text, [], exc.to_dict(), "error", now)
            return
        except Exception as exc:  # an engine bug: the user gets an error, the socket lives on
            err = error_object(f"internal error while checking the query: {type(exc).__name__}",
                               "internal", kind="semantic")
            self._refuse(client, qid, text, [], err, "error", now)
            return
        sources = [_source(s) for s in prepared.sources]
        apps = [app for app, _ in sources]
        refused = client.principal.first_refused(sources)
        if refused is not None:
            app, stream = refused
            err = error_object(f"user {user!r} may not read application {app!r}"
                               + ("" if stream == "default" else f" stream {stream!r}"),
                               "forbidden", kind="semantic")
            self._refuse(client, qid, text, apps, err, "refused", now)
            return
        variant = "unmasked" if client.principal.masked else ""
        over = None if client.kind == "internal" else self._over_live_budget(user, prepared,
                                                                               variant)
        if over is not None:
            err = error_object(
                f"too many live queries: this user's live queries would total {over:,} columns "
                f"(select items and GROUP BY keys; at most {self.limits.live_columns_per_user:,} "
                "per user)", "live_budget",
                hint="cancel a live query first, or select fewer columns")
            self._refuse(client, qid, text, apps, err, "rate_limited", now)
            return
        run = self._run_for(prepared, sources, variant, now)
        att = Attachment(client.client_id, qid, run.run_id, start=now, last_meta=now)
        run.attachments[(client.client_id, qid)] = att
        client.attachments[qid] = att
        self._audit.append(audit_record(user, apps, text, "accepted", None, client.client_id))
        self.metrics.inc("queries_total", decision="accepted")
        expected = self._expected(run)
        self._put(client, OutboundItem("control", qid, {}), Accepted(qid, prepared.canonical,
                                                                    expected), now)
        waiting = self._waiting(run)
        if waiting is not None:
            cov = run.coverage(expected)
            self._put(client, OutboundItem("meta", qid, {}, urgent=True),
                      Meta(qid, {}, cov.to_json(), waiting), now)
            att.last_meta = now

    def _over_live_budget(self, user: str, prepared: PreparedSide, variant: str) -> int | None:
        """The columns ``user`` would run with ``prepared`` when that is over its budget, else
        None. The user's live runs are read off its clients' attachments (whatever ended them,
        cancel, LIMIT, error or a closed socket, they are gone from there). Joining a run the
        user already has costs nothing (a second browser tab); the gateway's own subscribers
        (alert rules) are not budgeted."""
        runs = {att.run_id for c in self.clients.values()
                if c.principal.user == user and c.kind != "internal"
                for att in c.attachments.values()}
        if runs and not prepared.completes:
            shared = self._shared_runs.get((prepared.canonical, variant))
            if shared is not None and shared in runs:
                return None
        total = prepared.columns + sum(self.runs[r].columns for r in runs if r in self.runs)
        return total if total > self.limits.live_columns_per_user else None

    def _run_for(self, prepared: PreparedSide, sources: list[tuple[str, str]], variant: str,
                 now: float) -> Run:
        canonical = prepared.canonical
        shared_key = (canonical, variant)
        if not prepared.completes:
            run_id = self._shared_runs.get(shared_key)
            if run_id is not None:
                return self.runs[run_id]
        run_id = f"r{next(self._ids)}"
        caps = self._caps.to_json() if hasattr(self._caps, "to_json") else dict(self._caps)
        if variant:
            caps["unmasked"] = True
        merger = prepared.merger(start=now, grace=self.config.grace_s, caps=self._caps)
        if self.cluster is not None:
            merger = self.cluster.wrap_merger(merger)
        run = Run(run_id, prepared, merger, canonical, tuple(sources), shared_key,
                  shared=not prepared.completes)
        self.runs[run_id] = run
        if run.shared:
            self._shared_runs[shared_key] = run_id
        subs, out = self.registry.attach(run_id, canonical, sources, now, caps, variant)
        run.subs = subs
        for sid in subs:
            sub = self.registry.subs[sid]
            for agent_id in sorted(sub.agents):
                if agent_id not in sub.refused:
                    run.add_agent(self._member(agent_id, sub.stream), agent_id, now)
        for msg in out:
            self._send_subscribe(msg)
        return run

    def cancel(self, client_id: str, qid: str, now: float,
               reason: CompleteReason = CompleteReason.CANCELLED) -> None:
        """End query ``qid`` of a client and tell it ``complete`` (unknown ids are ignored)."""
        client = self.clients.get(client_id)
        if client is None:
            return
        att = client.attachments.get(qid)
        if att is None:
            return
        self._detach(client, att, now)
        client.queue.discard_query(qid)
        self._put(client, OutboundItem("control", qid, {}), Complete(qid, str(reason)), now)

    def _detach(self, client: ClientState, att: Attachment, now: float) -> None:
        client.attachments.pop(att.qid, None)
        run = self.runs.get(att.run_id)
        if run is None:
            return
        run.attachments.pop((client.client_id, att.qid), None)
        if not run.attachments:
            self._end_run(run)

    def _end_run(self, run: Run) -> None:
        self.runs.pop(run.run_id, None)
        if self._shared_runs.get(run.shared_key) == run.run_id:
            del self._shared_runs[run.shared_key]
        for un in self.registry.detach(run.run_id):
            self._send_agent(un.agent_id, Unsubscribe(un.sub))

    def close_client(self, client_id: str, now: float) -> None:
        """A client connection ended: withdraw everything it was running."""
        client = self.clients.pop(client_id, None)
        if client is None:
            return
        client.link.close()
        for att in list(client.attachments.values()):
            self._detach(client, att, now)

    # ------------------------------------------------------------------ outbound

    def _put(self, client: ClientState, item: OutboundItem, msg: Any, now: float) -> None:
        item.msg = msg
        if item.kind != "meta" and item.data is None and item.kind != "control":
            item.data = codec.encode(msg)
            item.size = len(item.data)
        client.queue.put(item, now)
        self._wake.add(client.client_id)

    def next_frame(self, client_id: str, now: float) -> tuple[bytes, Any] | None:
        """The next frame for a client: (encoded bytes, message), or None when its queue is empty.

        Control frames are checked against the client link here, in send order; meta frames are
        rendered now, so their drop counts are exact.
        """
        client = self.clients.get(client_id)
        if client is None:
            return None
        while True:
            item = client.queue.get_nowait(now)
            if item is None:
                return None
            msg = item.msg
            if item.kind == "meta":
                att = client.attachments.get(item.qid)
                if att is None:
                    continue
                msg = self._meta(client, att, item.msg.coverage, item.msg.waiting)
                att.sent_dropped = dict(msg.dropped)
                data = codec.encode(msg)
            elif item.kind == "control":
                data = client.link.send(msg)
            else:
                if item.qid not in client.link.queries:
                    continue  # the query ended while this frame waited
                data = item.data if item.data is not None else codec.encode(msg)
            self.metrics.inc("frames_out_total")
            self.metrics.inc("bytes_out_total", len(data))
            return data, msg

    def _meta(self, client: ClientState, att: Attachment, coverage: Mapping[str, Any],
              waiting: dict[str, Any] | None = None) -> Meta:
        dropped = Counter(att.dropped)
        dropped.update(client.queue.drops_for(att.qid))
        return Meta(att.qid, {k: int(v) for k, v in sorted(dropped.items()) if v},
                    dict(coverage), waiting)

    def _waiting(self, run: Run) -> dict[str, Any] | None:
        """``{"app", "suggestion"}`` for the first application of ``run`` with no connected
        agent, or None when every application has one. The suggestion is the nearest name among
        applications this gateway has seen (a typo shows up here), None for a known app."""
        if len(run.sources) == 1 and self.registry.expected_agents(run.run_id) > 0:
            return None  # the common case, without a walk over every agent
        # In a cluster, the applications other gateways have agents of count too (heartbeats).
        remote = self.cluster.remote_apps() if self.cluster is not None else set()
        for app, _stream in run.sources:
            if self.registry.has_agents(app) or app in remote:
                continue
            suggestion = None
            if app not in self.registry.apps_seen and app not in remote:
                try:
                    from ..query.syntax.diagnostics import suggest

                    suggestion = suggest(app, sorted(self.registry.apps_seen | remote))
                except ImportError:  # pragma: no cover - the engine is always present
                    suggestion = None
            return {"app": app, "suggestion": suggestion}
        return None

    def _total_dropped(self, client: ClientState, att: Attachment) -> dict[str, int]:
        dropped = Counter(att.dropped)
        dropped.update(client.queue.drops_for(att.qid))
        return {k: v for k, v in dropped.items() if v}

    # ------------------------------------------------------------------ merging and time

    def _poll_run(self, run: Run, now: float) -> None:
        try:
            outs = run.merger.poll(now)
        except Exception as exc:
            self._fail_run(run, exc, now)
            return
        if not outs:
            return
        i = 0
        while i < len(outs):
            out = outs[i]
            i += 1
            if isinstance(out, outputs.Complete):
                self._complete_run(run, out.reason, now)
                return
            if isinstance(out, outputs.Notice):  # without its window: count it for the next meta
                run.notice(out)
                continue
            # The notices that follow a window's rows belong to that window (engine contract).
            while i < len(outs) and isinstance(nxt := outs[i], outputs.Notice):
                run.notice(nxt)
                i += 1
            self._deliver_rows(run, out, now)

    def _deliver_rows(self, run: Run, out: outputs.Rows, now: float) -> None:
        window = (out.window[0], out.window[1]) if out.window is not None else None
        windowed = window is not None or out.count is not None
        rows = list(out.rows)
        coverage = run.window_coverage(out.coverage, self._expected(run)) if windowed else None
        notices = run.take_notices()
        for (client_id, qid), att in list(run.attachments.items()):
            client = self.clients.get(client_id)
            if client is None:
                continue
            att.dropped.update(notices)
            if not windowed:
                step = self.limits.raw_batch_rows
                for i in range(0, len(rows), step):
                    chunk = rows[i:i + step]
                    self._put(client, OutboundItem("rows", qid, {}, n_rows=len(chunk)),
                              Rows(qid, None, chunk), now)
                continue
            if window is not None and window[0] < att.start:
                continue  # this client joined after the window began (docs/mql.md#windows)
            self._put(client, OutboundItem("window", qid, {}, n_rows=len(rows)),
                      Rows(qid, window, rows), now)
            self._put(client, OutboundItem("meta", qid, {}),
                      Meta(qid, {}, coverage.to_json() if coverage is not None else {}), now)
            att.last_meta = now

    def _expected(self, run: Run) -> int:
        """How many agent parts a run expects: its members (app + instance + stream, so two
        connections of one agent count once); in a cluster, every gateway's members."""
        if self.cluster is not None:
            return int(self.cluster.expected_agents(run))
        return len(run.members)

    def _fail_run(self, run: Run, exc: Exception, now: float) -> None:
        """The engine raised for this run: end it for its clients, keep everything else."""
        self.metrics.inc("dropped_total", reason="engine_error")
        self._audit.append({"event": "engine_error", "run": run.run_id,
                            "error": f"{type(exc).__name__}: {exc}"[:300]})
        self._complete_run(run, CompleteReason.ERROR, now)

    def _complete_run(self, run: Run, reason: CompleteReason, now: float) -> None:
        for (client_id, qid), _att in list(run.attachments.items()):
            client = self.clients.get(client_id)
            if client is None:
                continue
            client.attachments.pop(qid, None)
            self._put(client, OutboundItem("control", qid, {}), Complete(qid, str(reason)), now)
        run.attachments.clear()
        self._end_run(run)

    def poll(self, now: float) -> None:
        """Advance time: due windows, meta cadence, agent pings, slow clients."""
        for run in list(self.runs.values()):
            if run.run_id in self.runs:
                self._poll_run(run, now)
        interval = self.limits.meta_interval_s
        for client in self.clients.values():
            for att in client.attachments.values():
                if now - att.last_meta < interval:
                    continue
                total = self._total_dropped(client, att)
                run = self.runs[att.run_id]
                # Live queries never complete because agents are missing: they wait, and say
                # for which application (at least once a second) until its first agent arrives.
                waiting = self._waiting(run)
                if total != att.sent_dropped or att.force_meta or waiting is not None:
                    cov = run.coverage(self._expected(run))
                    self._put(client, OutboundItem("meta", att.qid, {}, urgent=True),
                              Meta(att.qid, {}, cov.to_json(), waiting), now)
                    att.last_meta = now
                    att.force_meta = False
            if client.queue.too_slow(now):
                self._close.append((client.client_id, 4008, TOO_SLOW))
        self._ping_agents(now)

    def _ping_agents(self, now: float) -> None:
        """Ping the agents whose period is over (renews their leases; they answer ``pong``),
        and name those silent for three periods in ``agents_to_close()``. O(due agents)."""
        heartbeat = self.config.heartbeat_s
        pings = self._pings
        while pings and pings[0][0] <= now:
            _, agent_id = pings.popleft()
            agent = self.agents.get(agent_id)
            if agent is None:
                continue  # closed since
            if now - agent.last_heard > 3 * heartbeat:
                self._close_agents.append(agent_id)
                continue
            if agent.link.is_open:
                agent.last_ping = now
                self._send_agent(agent_id, Ping(f"{now:.3f}"))
            pings.append((now + heartbeat, agent_id))

    # ------------------------------------------------------------------ views

    def gauges(self) -> dict[str, float]:
        """Gauges for ``GET /metrics``."""
        return {
            "agents_connected": sum(1 for a in self.agents.values() if a.info is not None),
            "clients_connected": len(self.clients),
            "queries_live": sum(len(c.attachments) for c in self.clients.values()),
            "subscriptions_live": len(self.registry.subs),
        }

    def inventory(self) -> dict[str, Any]:
        """``GET /v1/apps``."""
        return self.registry.inventory()


def _delta(before: Mapping[str, int] | None, after: Mapping[str, Any]) -> dict[str, int]:
    before = before or {}
    out = {}
    for reason, value in after.items():
        if isinstance(value, int):
            d = value - before.get(reason, 0)
            if d > 0:
                out[reason] = d
    return out


def _source(source: Any) -> tuple[str, str]:
    """(app, stream) of an entry of ``PreparedQuery.sources`` (a pair or an object)."""
    if isinstance(source, tuple | list):
        return str(source[0]), str(source[1] if len(source) > 1 and source[1] else "default")
    app = getattr(source, "app", None) or getattr(source, "name", None)
    stream = getattr(source, "stream", None) or "default"
    return str(app), str(stream)
