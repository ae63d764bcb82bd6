"""Which agent runs which subscription: routing, dedupe and subscription ids. Pure.

Theory of operation. A *run* is one merge of one canonical query at the gateway (it may serve many
clients, see ``merge.py``). A run reads one or more *sources* ``(app, stream)``. For every source
the agent part is a *subscription* with an id the gateway owns, derived from the canonical text,
the source and the visibility variant (:func:`sub_id`), so identical agent parts are pushed once
however many runs or clients want them. The registry counts, for each subscription, the runs that
use it; the first run to attach makes it live at every agent of the source's app (``subscribe``),
the last run to detach withdraws it (``unsubscribe``). An agent that connects later receives every
live subscription of its app at once.

Invariants:

- ``subscribe`` is sent to an agent at most once per live subscription id, ``unsubscribe`` only
  for one it was sent.
- Nothing here assumes the agents are connected to *this* process (docs/operations.md): agents are
  opaque ids, and the outputs are messages addressed to them.

Methods return :class:`Subscribe` / :class:`Unsubscribe` records for the shell to encode and send.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AgentInfo", "Registry", "SubState", "Subscribe", "Unsubscribe", "sub_id"]


def sub_id(canonical: str, app: str, stream: str, variant: str = "") -> str:
    """The gateway-owned subscription id of one agent part: 16 hex digits of a SHA-256.

    >>> sub_id("SELECT * FROM a", "a", "default") == sub_id("SELECT * FROM a", "a", "default")
    True
    """
    key = "\x00".join((canonical, app, stream, variant)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """One connected agent as announced by its ``hello``."""

    agent_id: str
    app: str
    instance: str
    streams: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    zone: str | None = None
    version: str = ""
    pid: int = 0
    connected_at: float = 0.0

    def as_json(self) -> dict[str, Any]:
        """The ``GET /v1/apps`` view of this agent."""
        return {
            "instance": self.instance,
            "streams": list(self.streams),
            "tags": dict(self.tags),
            "zone": self.zone,
            "version": self.version,
            "pid": self.pid,
            "connected_since": self.connected_at,
        }


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Send ``subscribe`` for ``sub`` to ``agent_id``."""

    agent_id: str
    sub: str
    query: str
    stream: str
    start: float
    caps: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Send ``unsubscribe`` for ``sub`` to ``agent_id``."""

    agent_id: str
    sub: str


@dataclass(slots=True)
class SubState:
    """A live subscription: what it runs, where, and which runs need it."""

    sub: str
    canonical: str
    app: str
    stream: str
    start: float
    caps: Mapping[str, Any]
    runs: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    refused: dict[str, str] = field(default_factory=dict)  # agent_id -> sub_error message


class Registry:
    """Agents, live subscriptions and the runs using them. See the module header."""

    def __init__(self) -> None:
        self.agents: dict[str, AgentInfo] = {}
        # app -> its connected agents in connection order: per-app questions (the tick's "is
        # anyone left?", a new subscription's agents) never walk every agent of every app
        self._by_app: dict[str, dict[str, AgentInfo]] = {}
        self.subs: dict[str, SubState] = {}
        self._run_subs: dict[str, tuple[str, ...]] = {}
        self.apps_seen: set[str] = set()

    # -- agents ------------------------------------------------------------------------------

    def add_agent(self, info: AgentInfo) -> list[Subscribe]:
        """Register an agent (after its ``hello``); returns the subscriptions to push to it."""
        old = self.agents.get(info.agent_id)
        if old is not None:
            self._by_app.get(old.app, {}).pop(info.agent_id, None)
        self.agents[info.agent_id] = info
        self._by_app.setdefault(info.app, {})[info.agent_id] = info
        self.apps_seen.add(info.app)
        out = []
        for state in self.subs.values():
            if state.app == info.app:
                state.agents.add(info.agent_id)
                out.append(
                    Subscribe(info.agent_id, state.sub, state.canonical, state.stream,
                              state.start, state.caps)
                )
        return out

    def remove_agent(self, agent_id: str) -> list[str]:
        """Forget an agent; returns the ids of the subscriptions it was running."""
        info = self.agents.pop(agent_id, None)
        if info is None:
            return []
        of_app = self._by_app.get(info.app)
        if of_app is not None:
            of_app.pop(agent_id, None)
            if not of_app:
                del self._by_app[info.app]
        gone = []
        for state in self.subs.values():
            if agent_id in state.agents:
                state.agents.discard(agent_id)
                state.refused.pop(agent_id, None)
                gone.append(state.sub)
        return gone

    def agents_of(self, app: str) -> list[AgentInfo]:
        """Connected agents of ``app``, in connection order."""
        return list(self._by_app.get(app, {}).values())

    def has_agents(self, app: str) -> bool:
        """True while at least one agent of ``app`` is connected. O(1)."""
        return bool(self._by_app.get(app))

    def refuse(self, agent_id: str, sub: str, message: str) -> None:
        """Record an agent's ``sub_error``: it will not run ``sub``."""
        state = self.subs.get(sub)
        if state is not None and agent_id in state.agents:
            state.refused[agent_id] = message

    # -- runs ----------------------------------------------------------------------------------

    def attach(
        self,
        run_id: str,
        canonical: str,
        sources: Iterable[tuple[str, str]],
        start: float,
        caps: Mapping[str, Any],
        variant: str = "",
    ) -> tuple[tuple[str, ...], list[Subscribe]]:
        """A run needs the agent parts of ``canonical`` for ``sources``.

        Returns:
            The subscription ids (one per source, in source order) and the ``subscribe``
            messages for subscriptions that just became live.
        """
        if run_id in self._run_subs:
            raise ValueError(f"run {run_id!r} is already attached")
        ids: list[str] = []
        out: list[Subscribe] = []
        for app, stream in sources:
            sid = sub_id(canonical, app, stream, variant)
            ids.append(sid)
            state = self.subs.get(sid)
            if state is None:
                state = SubState(sid, canonical, app, stream, start, dict(caps))
                self.subs[sid] = state
                for agent in self.agents_of(app):
                    state.agents.add(agent.agent_id)
                    out.append(Subscribe(agent.agent_id, sid, canonical, stream, start, state.caps))
            state.runs.add(run_id)
        self._run_subs[run_id] = tuple(ids)
        return tuple(ids), out

    def detach(self, run_id: str) -> list[Unsubscribe]:
        """A run ended; withdraw subscriptions no other run needs."""
        out: list[Unsubscribe] = []
        for sid in self._run_subs.pop(run_id, ()):
            state = self.subs.get(sid)
            if state is None:
                continue
            state.runs.discard(run_id)
            if not state.runs:
                del self.subs[sid]
                out.extend(Unsubscribe(a, sid) for a in sorted(state.agents))
        return out

    def subs_of(self, run_id: str) -> tuple[str, ...]:
        return self._run_subs.get(run_id, ())

    def runs_of(self, sub: str) -> set[str]:
        state = self.subs.get(sub)
        return state.runs if state is not None else set()

    def expected_agents(self, run_id: str) -> int:
        """How many (agent, source) pairs run this run's subscriptions (refusals excluded)."""
        total = 0
        for sid in self._run_subs.get(run_id, ()):
            state = self.subs[sid]
            total += len(state.agents) - len(state.refused)
        return total

    def inventory(self) -> dict[str, Any]:
        """``GET /v1/apps``: applications with their instances and streams."""
        apps: dict[str, Any] = {}
        for app in sorted(self.apps_seen):
            agents = self.agents_of(app)
            streams = sorted({s for a in agents for s in a.streams})
            apps[app] = {
                "instances": [a.as_json() for a in agents],
                "streams": streams,
                "versions": sorted({a.version for a in agents}),
            }
        return {"apps": apps}
