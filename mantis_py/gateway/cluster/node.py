"""One gateway's part in the cluster, pure: the glue between :class:`GatewayCore` and NATS
subjects. It takes messages (subject, bytes) and ``now`` in and hands out messages to publish and
the set of subjects it needs; the NATS thread (``bridge.py``) and the trio task (``runner.py``)
move the bytes.

Subjects, under the prefix ``mantis.<cluster name>``:

=====================  ====================================================================
``.hb``                heartbeat of every gateway, each second: node id, dashboard URL, the
                       applications of its agents (cluster-wide known apps) and how many
                       distinct instances of each (a new query's cluster-wide expected agents)
``.inv``               request/reply: each gateway answers with its ``/v1/apps`` inventory
``.lease.<app>``       an owner's leases for ``<app>``: every live agent part of its queries
                       (sub id, canonical text, app, stream, start, caps), each second
``.data.<sub>``        an edge's flush for one subscription: tagged event records or window
                       partials of all its agents, plus their membership (agent keys) and
                       the losses they reported since the last flush (``meta`` drops)
=====================  ====================================================================

Interest decides traffic: an edge subscribes ``.lease.<app>`` only for apps it has agents of,
an owner subscribes ``.data.<sub>`` only while it runs a query using that subscription, and an
edge publishes data only for leases another gateway renews. With no query running, nothing but
heartbeats crosses NATS.

Roles: as an *edge* a leased subscription becomes a pseudo-run in the core whose "merger" is a
:class:`~.state.Forwarder`; the registry then subscribes the agents (once, shared with any local
run of the same canonical text) and routes their output there. As an *owner* the remote
members and parts are fed to the run's merger under the same keys (app + instance + stream) the
core uses for local agents in cluster mode.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from ...wire import codec
from ..merge import Run
from .config import ClusterConfig
from .state import ClusterState, FloorMerger, Forwarder, Lease, subject_token

__all__ = ["ClusterNode"]


def _encode(obj: Any) -> bytes:
    try:
        return codec.encode_value(obj)
    except TypeError:
        return codec.encode_value_slow(obj)


class ClusterNode:
    """See the module header. ``core`` is the gateway's :class:`GatewayCore`."""

    def __init__(self, core: Any, config: ClusterConfig, node: str, url: str, now: float, *,
                 hb_every: float = 1.0, lease_every: float = 1.0, members_every: float = 1.0,
                 state: ClusterState | None = None) -> None:
        self.core = core
        self.config = config
        self.node = node
        self.url = url
        self.state = state or ClusterState(node, now)
        self.prefix = f"mantis.{config.name}"
        self.hb_every = hb_every
        self.lease_every = lease_every
        self.members_every = members_every
        self._out: list[tuple[str, bytes]] = []
        self._last_hb = float("-inf")
        self._last_lease = float("-inf")
        self._leased: frozenset[str] = frozenset()
        self.counters: Counter[str] = Counter()
        core.cluster = self

    # ------------------------------------------------------------------ hooks the core calls

    def remote_apps(self) -> set[str]:
        return self.state.remote_apps()

    def wrap_merger(self, merger: Any) -> Any:
        return FloorMerger(merger)

    def local_joined(self, sid: str, key: str, conn: str, now: float) -> None:
        """An agent of this gateway (connection ``conn``) runs ``sid`` as member ``key``."""
        previous = self.state.holder(sid, key)
        self.state.claim_local(sid, key, now)
        info = self.core.registry.agents.get(conn)
        stats = self.core._stats.get((info.app, info.instance)) if info is not None else None
        if stats is not None and info is not None:
            # the losses other gateways already reported for this agent are not new here
            for kind, name, cum in self.state.drop_baselines(sid, info.app, info.instance):
                stats[0 if kind == "s" else 1][name] = cum
        if previous is not None and previous != self.node:  # it moved here from another gateway
            for run in self._owner_runs(sid):
                _rejoin(run, key, conn, now)

    def local_left(self, sid: str, key: str) -> None:
        self.state.release_local(sid, key)
        app, _, rest = key.partition("\x1f")  # member_key: app, instance, stream
        instance, _, stream = rest.partition("\x1f")
        stats = self.core._stats.get((app, instance))
        if stats is not None and self._owner_runs(sid):
            # where its loss counters stood here: if it shows up on another gateway, only
            # what it loses from now on is new
            for kind, name, cum in (("s", stream, stats[0].get(stream)),
                                    ("q", sid, stats[1].get(sid))):
                if cum is not None:
                    self.state.on_drops(sid, (app, instance, kind, name), cum, {})

    def agent_drops(self, sid: str, delta: Mapping[str, int], app: str, instance: str,
                    kind: str, name: str, cumulative: Mapping[str, int]) -> None:
        """An agent of this gateway reported losses for ``sid`` (``delta``, from the
        ``cumulative`` counters of its stream or subscription): when other gateways' queries
        use ``sid`` (a leased subscription), they travel to those owners with the next message;
        when this gateway's own queries do, it remembers the counters (the agent may move)."""
        key = (app, instance, kind, name)
        run = self.core.runs.get(_remote_run_id(sid))
        if run is not None and isinstance(run.merger, Forwarder):
            run.merger.add_drops(key, cumulative, delta)
        if self._owner_runs(sid):
            self.state.on_drops(sid, key, cumulative, {})

    def expected_agents(self, run: Run) -> int:
        """Agent parts ``run`` expects cluster-wide: its members (local and announced by
        edges), plus the heartbeat counts of gateways that have not announced theirs yet."""
        total = len(run.members)
        for sid in run.subs:
            st = self.core.registry.subs.get(sid)
            if st is not None:
                total += self.state.unreported(sid, st.app)
        return total

    # ------------------------------------------------------------------ I/O surface

    def outgoing(self) -> list[tuple[str, bytes]]:
        """(subject, payload) to publish, in order."""
        out, self._out = self._out, []
        return out

    def interest(self) -> set[str]:
        """The subjects this gateway must be subscribed to right now."""
        p = self.prefix
        subjects = {f"{p}.hb", f"{p}.inv"}
        for info in self.core.registry.agents.values():
            subjects.add(f"{p}.lease.{subject_token(info.app)}")
        for sid in self._owner_subs():
            subjects.add(f"{p}.data.{sid}")
        return subjects

    def receive(self, subject: str, data: bytes, reply: str | None, now: float) -> None:
        """One NATS message."""
        p = self.prefix
        if not subject.startswith(p + "."):
            return
        kind, _, rest = subject[len(p) + 1:].partition(".")
        try:
            msg = codec.decode_value(data)
        except Exception:
            self.counters["bad_messages"] += 1
            return
        if not isinstance(msg, dict):
            self.counters["bad_messages"] += 1
            return
        self.counters[f"in_{kind}"] += 1
        try:
            if kind == "hb":
                self.state.on_heartbeat(msg, now)
            elif kind == "lease":
                self._on_lease(msg, now)
            elif kind == "data":
                self._on_data(rest, msg, now)
            elif kind == "inv" and reply:
                self._out.append((reply, _encode({"n": self.node, "url": self.url,
                                                  **self.core.inventory()})))
        except (KeyError, TypeError, ValueError, AttributeError):
            self.counters["bad_messages"] += 1

    def slow_consumer(self, subject: str, count: int = 1) -> None:
        """NATS dropped messages on ``subject`` (slow consumer): losses shown in ``meta``."""
        self.counters["slow_consumer"] += count
        head = f"{self.prefix}.data."
        if subject.startswith(head):
            for run in self._owner_runs(subject[len(head):]):
                for att in run.attachments.values():
                    att.dropped["nats_slow_consumer"] += count
                    att.force_meta = True

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> None:
        """Heartbeat, leases, edge flushes, expiries. Call every ~0.1 s."""
        state = self.state
        if now - self._last_hb >= self.hb_every:
            self._last_hb = now
            self.counters["out_hb"] += 1
            instances: dict[str, set[str]] = {}
            for a in self.core.registry.agents.values():
                instances.setdefault(a.app, set()).add(a.instance)
            self._out.append((f"{self.prefix}.hb", _encode(
                {"n": self.node, "t": now, "url": self.url, "apps": sorted(instances),
                 "agents": {app: len(i) for app, i in sorted(instances.items())}})))
        state.dead_nodes(now)
        self._announce(now)
        # edge: leases that stopped, leases to (re)attach, flushes
        for lease in state.expired_leases(now):
            run = self.core.runs.get(_remote_run_id(lease.sub))
            if run is not None:
                self.core._end_run(run)
        local_apps = {a.app for a in self.core.registry.agents.values()}
        for lease in state.leases.values():
            if lease.app in local_apps and _remote_run_id(lease.sub) not in self.core.runs:
                self._attach(lease, now)
        for lease in state.leases.values():
            run = self.core.runs.get(_remote_run_id(lease.sub))
            if run is None or not isinstance(run.merger, Forwarder):
                continue
            body = run.merger.take(self.node, now, self.members_every)
            if body is not None:
                self.counters["out_data"] += 1
                self._out.append((f"{self.prefix}.data.{lease.sub}", _encode(body)))
        # owner: remote members whose gateway went silent
        for sid, key, holder in state.expire_members(now):
            for run in self._owner_runs(sid):
                run.remove_agent(key, _remote(holder), now)
        live = self._owner_subs()
        for sid in [s for s in {*state.holders, *state.drop_base} if s not in live]:
            state.forget_sub(sid)

    # ------------------------------------------------------------------ owner side

    def _owner_runs(self, sid: str) -> list[Run]:
        runs = self.core.runs
        return [runs[r] for r in sorted(self.core.registry.runs_of(sid))
                if r in runs and not isinstance(runs[r].merger, Forwarder)]

    def _owner_subs(self) -> set[str]:
        return {sid for run in self.core.runs.values() if not isinstance(run.merger, Forwarder)
                for sid in run.subs}

    def _announce(self, now: float) -> None:
        subs = self._owner_subs()
        leased = frozenset(subs)
        if leased == self._leased and now - self._last_lease < self.lease_every:
            return
        fresh = leased - self._leased
        self._leased = leased
        due = now - self._last_lease >= self.lease_every
        if due:
            self._last_lease = now
        by_app: dict[str, list[dict[str, Any]]] = {}
        for sid in sorted(subs if due else fresh):
            st = self.core.registry.subs.get(sid)
            if st is None:
                continue
            by_app.setdefault(st.app, []).append(
                Lease(sid, st.canonical, st.app, st.stream, st.start, st.caps).as_json())
        for app, items in sorted(by_app.items()):
            self.counters["out_lease"] += 1
            self._out.append((f"{self.prefix}.lease.{subject_token(app)}",
                              _encode({"n": self.node, "subs": items})))

    def _on_data(self, sid: str, msg: Mapping[str, Any], now: float) -> None:
        node = str(msg["n"])
        runs = self._owner_runs(sid)
        if not runs or node == self.node:
            return
        members = msg.get("m")
        if members is not None:
            keys = [str(k) for k in members]
            moved, removed = self.state.on_members(sid, node, keys, now)
            conn = _remote(node)
            for run in runs:
                for key in moved:
                    _rejoin(run, key, conn, now)
                for key in keys:
                    if key not in run.members and self.state.holder(sid, key) == node:
                        run.add_agent(key, conn, now)
                for key in removed:
                    run.remove_agent(key, conn, now)
        dropped = msg.get("d")
        if dropped:
            total: Counter[str] = Counter()
            for app, instance, kind, name, cum, inc in dropped:
                total.update(self.state.on_drops(sid, (str(app), str(instance), str(kind),
                                                       str(name)), _counts(cum), _counts(inc)))
            if total:
                for run in runs:
                    for att in run.attachments.values():
                        att.dropped.update(total)
        recs = msg.get("r") or ()
        parts = msg.get("p") or ()
        for run in runs:
            try:
                for key, records in recs:
                    if records:
                        run.merger.receive_events(str(key), records, now)
                for key, part in parts:
                    run.merger.receive_part(str(key), part, now)
            except Exception as exc:  # an engine bug ends that query, never the cluster link
                self.core._fail_run(run, exc, now)
                continue
            self.core._poll_run(run, now)

    # ------------------------------------------------------------------ edge side

    def _on_lease(self, msg: Mapping[str, Any], now: float) -> None:
        local_apps = {a.app for a in self.core.registry.agents.values()}
        for lease in self.state.on_lease(msg, now):
            if lease.app in local_apps:
                self._attach(lease, now)

    def _attach(self, lease: Lease, now: float) -> None:
        core = self.core
        run_id = _remote_run_id(lease.sub)
        if run_id in core.runs:
            return
        variant = "unmasked" if lease.caps.get("unmasked") else ""
        ids, out = core.registry.attach(run_id, lease.query, [(lease.app, lease.stream)],
                                        lease.start, lease.caps, variant)
        if ids != (lease.sub,):  # another version's id scheme: do not run a part we cannot name
            for un in core.registry.detach(run_id):
                core._send_agent(un.agent_id, _unsubscribe(un.sub))
            self.counters["lease_mismatch"] += 1
            return
        fwd = Forwarder(lease.sub)
        run = Run(run_id, None, fwd, lease.query, ((lease.app, lease.stream),),
                  ("\0cluster", lease.sub), shared=False)
        run.subs = ids
        core.runs[run_id] = run
        st = core.registry.subs[lease.sub]
        for agent_id in sorted(st.agents):
            if agent_id not in st.refused:
                run.add_agent(core._member(agent_id, st.stream), agent_id, now)
                # where the agents' loss counters stand: an owner that heard of an agent on
                # another gateway counts what it lost in between (no increment of its own here)
                info = core.registry.agents.get(agent_id)
                stats = core._stats.get((info.app, info.instance)) if info is not None else None
                if info is not None and stats is not None:
                    for kind, name, cum in (("s", st.stream, stats[0].get(st.stream)),
                                            ("q", lease.sub, stats[1].get(lease.sub))):
                        if cum:
                            fwd.add_drops((info.app, info.instance, kind, name), cum, {})
        for msg in out:
            core._send_subscribe(msg)


def _counts(obj: Any) -> dict[str, int]:
    """A ``{reason: n}`` object from the wire (anything else in it is ignored)."""
    if not isinstance(obj, dict):
        raise TypeError("expected an object of counts")
    return {str(k): v for k, v in obj.items() if type(v) is int and v >= 0}


def _remote(node: str) -> str:
    """The connection name under which a remote gateway carries its members in a run."""
    return f"@{node}"


def _rejoin(run: Run, key: str, conn: str, now: float) -> None:
    """``key`` moved gateway at ``now`` and is now carried by ``conn`` only: the merger ends its
    membership and starts a new one, so the window in progress neither waits for it nor takes its
    partial part (its coverage shows the agent missing), and the next windows expect it again."""
    if key in run.members:
        run.merger.remove_agent(key, now)
        run.merger.add_agent(key, now)
        run.members[key] = {conn}
    else:
        run.add_agent(key, conn, now)


def _remote_run_id(sid: str) -> str:
    return f"x{sid}"


def _unsubscribe(sid: str) -> Any:
    from ...wire.messages import Unsubscribe

    return Unsubscribe(sid)
