"""LinkPair: an agent core wired to a gateway-side link with nothing in between (STYLE rule 15).

``pair = LinkPair(core, now=100.0)`` opens the link (hello, welcome); ``pair.subscribe(...)``
pushes a query; ``pair.pump(now)`` runs the agent and returns every message the gateway received.
"""

from __future__ import annotations

from typing import Any

from ..agents.core import AgentCore
from ..wire.agent_link import GatewayLink
from ..wire.messages import Events, Message, Ping, Stats, Subscribe, Unsubscribe, Welcome

__all__ = ["LinkPair", "records_of"]


def records_of(messages: list[Message], sub: str | None = None) -> list[dict[str, Any]]:
    """Every event record in ``messages`` (only those tagged with ``sub`` if given)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, Events):
            out.extend(r for r in m.records if sub is None or sub in r["subs"])
    return out


class LinkPair:
    """An :class:`AgentCore` connected to a :class:`GatewayLink` in memory."""

    def __init__(self, core: AgentCore, now: float = 0.0, heartbeat_s: float = 10.0) -> None:
        self.core = core
        self.received: list[Message] = []
        self.now = now
        self.connect(now, heartbeat_s)

    def connect(self, now: float, heartbeat_s: float = 10.0) -> None:
        """Open a fresh link (after :meth:`disconnect`): hello, then welcome."""
        self.gateway = GatewayLink()
        self.core.connected(now)
        self._deliver(now)
        self.send(Welcome(session="s", heartbeat_s=heartbeat_s), now)

    def disconnect(self, now: float) -> None:
        """The socket died: nothing in flight arrives."""
        self.core.disconnected(now)
        self.gateway.close()

    def send(self, msg: Message, now: float | None = None) -> None:
        """Gateway -> agent."""
        now = self.now if now is None else now
        data = self.gateway.send(msg)
        self.core.receive_data(data, now)

    def subscribe(
        self,
        sub: str,
        query: str,
        stream: str = "default",
        start: float = 0.0,
        now: float | None = None,
    ) -> None:
        """Push one query to the agent."""
        self.send(Subscribe(sub=sub, query=query, stream=stream, start=start), now)

    def unsubscribe(self, sub: str, now: float | None = None) -> None:
        self.send(Unsubscribe(sub=sub), now)

    def ping(self, now: float | None = None, nonce: str = "n") -> None:
        self.send(Ping(nonce=nonce), now)

    def _deliver(self, now: float, force: bool = False) -> list[Message]:
        got = []
        for f in self.core.data_to_send(now, force=force):
            got.append(self.gateway.receive_data(f.data))
        self.received.extend(got)
        return got

    def pump(self, now: float, force: bool = False) -> list[Message]:
        """Run the agent until its queues are drained and return what the gateway received."""
        self.now = now
        while self.core.poll(now):
            pass
        return self._deliver(now, force)

    def last_stats(self) -> Stats | None:
        """The newest ``stats`` message received, if any."""
        for m in reversed(self.received):
            if isinstance(m, Stats):
                return m
        return None
