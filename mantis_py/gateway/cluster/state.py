"""The cluster's decisions, pure: which gateways are alive, which leases an edge serves, which
agent holds which membership, which gateway owns an alert rule. Time is always an argument.

Theory of operation (docs/cluster.md has the user's view):

- **Gateways.** Every gateway publishes a heartbeat each ``hb_every`` seconds; a gateway not
  heard for ``node_ttl`` seconds is dead. :meth:`ClusterState.live_nodes` (self included) is the
  member list that rendezvous hashing (:func:`rendezvous`) uses to give each alert rule exactly one
  owner; a gateway claims nothing until it has listened for ``settle`` seconds, so a fresh node
  does not believe it is alone.
- **Leases (edge side).** An owner re-announces each live agent part of its queries every
  ``lease_every`` seconds. :meth:`on_lease` returns the leases this edge had not seen; a lease no
  owner renewed for ``lease_ttl`` seconds is returned once by :meth:`expired_leases` and the
  edge withdraws that subscription from its agents.
- **Members (owner side).** Edges send, with their data and at least every ``members_every``
  seconds, the agent keys (app + instance + stream) running a subscription.
  :meth:`on_members` answers which keys to add to the owner's merge and which to remove; a key
  is held by one gateway at a time (the last that announced it), so an agent that moved is never
  counted twice and the old gateway's silence cannot remove it. :meth:`expire_members` removes
  keys whose holder has been silent for ``member_ttl`` seconds (a dead gateway's agents).
- **Expected agents.** Heartbeats carry each gateway's count of distinct agent instances per
  application. A query's expected agents (``accepted.agents``, coverage) are its members plus,
  for each gateway that has not announced the members of a subscription yet
  (:meth:`unreported`), that gateway's count: right from submission the figure is cluster-wide.
- **Drops.** An edge's :class:`Forwarder` collects the losses its agents report for the
  subscription (their ``stats`` increments, with the cumulative counters they came from) and
  sends them with the next message. The owner (:meth:`on_drops`) keeps the last cumulative
  counters of each agent for the subscription's lifetime and counts what grew since, so an agent
  that moved gateway (whose new gateway sees its whole history as new) is never counted twice;
  for an agent it has not heard of yet it takes the edge's increment, as a single gateway would.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...query.state.windows import window_bounds

__all__ = ["ClusterState", "DropKey", "Lease", "rendezvous", "subject_token"]

DropKey = tuple[str, str, str, str]  # app, instance, "s" (a stream's losses) or "q" (a sub's), name


def rendezvous(key: str, nodes: Iterable[str]) -> str | None:
    """The node with the highest hash of (key, node): stable, and when a node leaves only the
    keys it owned move.

    >>> rendezvous("r", ["a", "b"]) == rendezvous("r", ["b", "a"])
    True
    """
    best: tuple[bytes, str] | None = None
    for node in nodes:
        h = hashlib.blake2b(f"{key}\x00{node}".encode(), digest_size=8).digest()
        if best is None or (h, node) > best:
            best = (h, node)
    return best[1] if best is not None else None


def subject_token(name: str) -> str:
    """A NATS subject token for an application name: the name itself when it is plain
    (letters, digits, ``-``, ``_``), else ``x`` + 16 hex digits of its hash (dots, spaces and
    wildcards would change the subject's meaning)."""
    if name and all((c.isalnum() and c.isascii()) or c in "-_" for c in name):
        return name
    return "x" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(slots=True)
class Lease:
    """One agent part an owner asked this edge to run."""

    sub: str
    query: str
    app: str
    stream: str
    start: float
    caps: Mapping[str, Any]
    owners: dict[str, float] = field(default_factory=dict)  # owner node -> last renewal

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> Lease:
        return Lease(str(obj["sub"]), str(obj["q"]), str(obj["app"]), str(obj["stream"]),
                     float(obj["start"]), dict(obj.get("caps") or {}))

    def as_json(self) -> dict[str, Any]:
        return {"sub": self.sub, "q": self.query, "app": self.app, "stream": self.stream,
                "start": self.start, "caps": dict(self.caps)}


@dataclass(slots=True)
class _Node:
    last: float
    apps: tuple[str, ...] = ()
    url: str = ""
    agents: dict[str, int] = field(default_factory=dict)  # app -> distinct instances there


class ClusterState:
    """See the module header."""

    def __init__(self, node: str, now: float, *, node_ttl: float = 3.0, lease_ttl: float = 4.0,
                 member_ttl: float = 3.0, settle: float = 1.5) -> None:
        self.node = node
        self.started = now
        self.node_ttl = node_ttl
        self.lease_ttl = lease_ttl
        self.member_ttl = member_ttl
        self.settle = settle
        self.nodes: dict[str, _Node] = {}
        self.leases: dict[str, Lease] = {}
        # owner side: sub id -> key -> (holder node, last announced)
        self.holders: dict[str, dict[str, tuple[str, float]]] = {}
        # owner side: sub id -> the gateways that announced its members (an empty list too)
        self.reported: dict[str, set[str]] = {}
        # owner side: sub id -> (app, instance, kind, name) -> last cumulative loss counters
        self.drop_base: dict[str, dict[DropKey, dict[str, int]]] = {}

    # ------------------------------------------------------------------ gateways

    def on_heartbeat(self, msg: Mapping[str, Any], now: float) -> bool:
        """A heartbeat; True when it is a gateway not known before."""
        node = str(msg.get("n", ""))
        if not node or node == self.node:
            return False
        new = node not in self.nodes
        counts = msg.get("agents")
        agents = ({str(a): n for a, n in counts.items() if type(n) is int and n > 0}
                  if isinstance(counts, Mapping) else {})
        self.nodes[node] = _Node(now, tuple(str(a) for a in msg.get("apps") or ()),
                                 str(msg.get("url", "")), agents)
        return new

    def dead_nodes(self, now: float) -> list[str]:
        """Forget and return the gateways silent for ``node_ttl`` seconds."""
        dead = [n for n, st in self.nodes.items() if now - st.last > self.node_ttl]
        for n in dead:
            del self.nodes[n]
        return dead

    def live_nodes(self) -> list[str]:
        return sorted([self.node, *self.nodes])

    def settled(self, now: float) -> bool:
        return now - self.started >= self.settle

    def owns(self, key: str, now: float) -> bool:
        """Whether this gateway owns ``key`` (an alert rule) among the live gateways."""
        return self.settled(now) and rendezvous(key, self.live_nodes()) == self.node

    def remote_apps(self) -> set[str]:
        """Applications other live gateways have agents of (for hints and the inventory)."""
        return {a for st in self.nodes.values() for a in st.apps}

    def remote_agents(self) -> dict[str, dict[str, int]]:
        """Per live gateway: application -> distinct agent instances (its last heartbeat)."""
        return {n: dict(st.agents) for n, st in sorted(self.nodes.items())}

    def unreported(self, sub: str, app: str) -> int:
        """Agents of ``app`` that the live gateways which have not announced ``sub``'s members
        yet hold (their heartbeats' counts): what a query just submitted here will also expect
        once their edges run it. Gateways that announced are counted by their members."""
        told = self.reported.get(sub, ())
        return sum(st.agents.get(app, 0) for n, st in self.nodes.items() if n not in told)

    # ------------------------------------------------------------------ edge: leases

    def on_lease(self, msg: Mapping[str, Any], now: float) -> list[Lease]:
        """An owner's lease announcement; returns the leases that are new here."""
        owner = str(msg.get("n", ""))
        if owner == self.node:
            return []
        new = []
        for obj in msg.get("subs") or ():
            try:
                lease = Lease.from_json(obj)
            except (KeyError, TypeError, ValueError):
                continue
            have = self.leases.get(lease.sub)
            if have is None:
                self.leases[lease.sub] = have = lease
                new.append(lease)
            have.owners[owner] = now
        return new

    def expired_leases(self, now: float) -> list[Lease]:
        """Leases no owner renewed for ``lease_ttl`` seconds (forgotten once returned)."""
        out = []
        for sid, lease in list(self.leases.items()):
            for owner, last in list(lease.owners.items()):
                if now - last > self.lease_ttl:
                    del lease.owners[owner]
            if not lease.owners:
                del self.leases[sid]
                out.append(lease)
        return out

    # ------------------------------------------------------------------ owner: members

    def on_members(self, sub: str, node: str, keys: Iterable[str], now: float
                   ) -> tuple[list[str], list[str]]:
        """Edge ``node`` runs ``sub`` on exactly ``keys`` now.

        Returns:
            (keys that are new here or moved from another gateway, keys ``node`` no longer
            runs). A key this gateway's own agent runs stays local.
        """
        held = self.holders.setdefault(sub, {})
        self.reported.setdefault(sub, set()).add(node)
        added, removed = [], []
        listed = set(keys)
        for key in listed:
            had = held.get(key)
            if had is not None and had[0] == self.node:
                continue  # the agent is here now; the old gateway has not noticed yet
            if had is None or had[0] != node:
                added.append(key)
            held[key] = (node, now)
        for key, (holder, _) in list(held.items()):
            if holder == node and key not in listed:
                del held[key]
                removed.append(key)
        return added, removed

    def holder(self, sub: str, key: str) -> str | None:
        got = self.holders.get(sub, {}).get(key)
        return got[0] if got is not None else None

    def claim_local(self, sub: str, key: str, now: float) -> None:
        """An agent of this gateway runs ``sub`` (it moved here: it is no longer remote)."""
        self.holders.setdefault(sub, {})[key] = (self.node, now)

    def release_local(self, sub: str, key: str) -> None:
        held = self.holders.get(sub)
        if held is not None and held.get(key, ("",))[0] == self.node:
            del held[key]

    def expire_members(self, now: float) -> list[tuple[str, str, str]]:
        """(sub, key, holder) held by a remote gateway silent about them for ``member_ttl``."""
        out = []
        for sub, held in self.holders.items():
            for key, (holder, last) in list(held.items()):
                if holder != self.node and now - last > self.member_ttl:
                    del held[key]
                    out.append((sub, key, holder))
        return out

    def forget_sub(self, sub: str) -> None:
        self.holders.pop(sub, None)
        self.reported.pop(sub, None)
        self.drop_base.pop(sub, None)

    def on_drops(self, sub: str, key: DropKey, cumulative: Mapping[str, int],
                 delta: Mapping[str, int]) -> dict[str, int]:
        """An agent's loss counters for ``sub`` (``key``: app, instance, ``"s"`` + stream or
        ``"q"`` + sub id): returns the losses to add to the queries' ``meta``."""
        base = self.drop_base.setdefault(sub, {})
        had = base.get(key)
        base[key] = dict(cumulative)
        if had is None:
            return {r: n for r, n in delta.items() if n > 0}
        return {r: n - had.get(r, 0) for r, n in cumulative.items() if n > had.get(r, 0)}

    def drop_baselines(self, sub: str, app: str, instance: str
                       ) -> list[tuple[str, str, dict[str, int]]]:
        """(kind, name, cumulative counters) last heard for one agent of ``sub``."""
        return [(k[2], k[3], dict(c)) for k, c in self.drop_base.get(sub, {}).items()
                if k[0] == app and k[1] == instance]


class FloorMerger:
    """Wraps an engine merger for a cluster owner: a part for a window that began before the
    agent (re)joined this owner's merge (it moved gateway mid-window, so its part holds only what
    it saw since) is not merged; the window's coverage shows the agent missing instead of a
    silently short sum (``partial_windows`` in :meth:`statistics`). Duplicate parts are the
    engine merger's business (``duplicate-parts``)."""

    def __init__(self, merger: Any) -> None:
        self.inner = merger
        self._floor: dict[str, float] = {}
        self._window = getattr(merger, "_window", None)
        self.partial_windows = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def set_floor(self, key: str, now: float) -> None:
        """``key`` (re)joined at ``now``: ignore its parts of windows that began earlier."""
        self._floor[key] = now

    def add_agent(self, key: str, now: float) -> None:
        self._floor[key] = now
        self.inner.add_agent(key, now)

    def remove_agent(self, key: str, now: float) -> None:
        self.inner.remove_agent(key, now)

    def receive_events(self, key: str, records: list[dict[str, Any]], now: float) -> Any:
        return self.inner.receive_events(key, records, now)

    def receive_part(self, key: str, part: dict[str, Any], now: float) -> Any:
        k = part.get("k") if isinstance(part, dict) else None
        floor = self._floor.get(key)
        if isinstance(k, int) and floor is not None and self._window is not None \
                and window_bounds(k, *self._window)[0] < floor:
            self.partial_windows += 1
            return False
        return self.inner.receive_part(key, part, now)

    def poll(self, now: float) -> list[Any]:
        return list(self.inner.poll(now))

    def statistics(self) -> dict[str, Any]:
        stats: dict[str, Any] = dict(self.inner.statistics())
        stats["partial_windows"] = self.partial_windows
        return stats


class Forwarder:
    """Stands where a merger would in an edge's pseudo-run: it collects what this edge's agents
    produce for one leased subscription, until the cluster shell takes it for one NATS message."""

    def __init__(self, sub: str) -> None:
        self.sub = sub
        self.members: set[str] = set()
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.parts: list[list[Any]] = []
        # the agents' losses since the last message: key -> (cumulative, increment)
        self.dropped: dict[DropKey, tuple[dict[str, int], Counter[str]]] = {}
        self.changed = True
        self.members_sent = float("-inf")

    def add_agent(self, key: str, now: float) -> None:
        if key not in self.members:
            self.members.add(key)
            self.changed = True

    def remove_agent(self, key: str, now: float) -> None:
        if key in self.members:
            self.members.discard(key)
            self.changed = True

    def receive_events(self, key: str, records: list[dict[str, Any]], now: float) -> None:
        got = self.records.get(key)
        if got is None:
            self.records[key] = list(records)
        else:
            got.extend(records)

    def receive_part(self, key: str, part: dict[str, Any], now: float) -> bool:
        self.parts.append([key, part])
        return False  # nothing to emit here: the owner merges

    def add_drops(self, key: DropKey, cumulative: Mapping[str, int],
                  delta: Mapping[str, int]) -> None:
        """Losses one agent of this edge reported for the subscription: ``delta`` is what a
        single gateway adds to its queries' ``meta``, ``cumulative`` the counters it came from.
        They ride with the next message."""
        got = self.dropped.get(key)
        inc = Counter({r: n for r, n in delta.items() if n > 0})
        if got is not None:
            inc.update(got[1])
        self.dropped[key] = (dict(cumulative), inc)

    def poll(self, now: float) -> list[Any]:
        return []

    @property
    def coverage(self) -> None:
        return None  # nothing is merged here: the owner reports coverage

    def statistics(self) -> dict[str, Any]:
        return {}

    def take(self, node: str, now: float, members_every: float) -> dict[str, Any] | None:
        """The body of this flush's NATS message, or None when there is nothing to say."""
        send_members = self.changed or bool(self.parts) or now - self.members_sent >= members_every
        if not (self.records or self.parts or send_members):
            return None
        msg: dict[str, Any] = {"n": node, "sub": self.sub}
        if self.records:
            msg["r"] = [[key, [{"t": r["t"], "i": r["i"], "s": r["s"], "e": r["e"],
                                "m": r["m"]} for r in recs]]
                        for key, recs in self.records.items()]
            self.records = {}
        if self.parts:
            msg["p"], self.parts = self.parts, []
        if send_members:
            msg["m"] = sorted(self.members)
            self.members_sent = now
            self.changed = False
        if self.dropped:  # never a message of its own: members go out at least every second
            msg["d"] = [[*key, cum, dict(inc)] for key, (cum, inc) in self.dropped.items()]
            self.dropped = {}
        return msg
