"""The agent's side of one gateway connection: handshake, liveness, outgoing frames. Pure.

:class:`Link` wraps the protocol state machine (:class:`~mantis_py.wire.agent_link.AgentLink`)
with what the agent keeps across connections: a generation number (subscriptions remember the
link that confirmed them, docs/protocol.md §Leases), how many times it connected, when it last
heard the gateway, and the queue of control frames (capped at ``max_control_frames``). Sockets,
backoff and the gateway list belong to the runners (``sync.py``, ``trio.py``); they tell the core
when a websocket opens and closes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RemoteProtocolError
from ..wire.agent_link import AgentLink
from ..wire.codec import decode
from ..wire.messages import Message, Welcome

__all__ = ["Frame", "Link"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One outgoing text frame; ``stream``/``records`` say which events it carries."""

    data: bytes
    stream: str | None = None
    records: int = 0


class Link:
    """Connection state that outlives one websocket (runner thread only).

    Args:
        max_control_frames: control frames queued at most; :meth:`send` refuses beyond.
    """

    __slots__ = ("connects", "gen", "heard", "heartbeat_s", "last_heard", "max_control_frames",
                 "out", "wire")  # fmt: skip

    def __init__(self, max_control_frames: int) -> None:
        self.max_control_frames = max_control_frames
        self.wire: AgentLink | None = None  # the open link's protocol state, None when closed
        self.gen = 0  # bumped by every connection
        self.connects = 0
        self.last_heard = 0.0  # last frame from any gateway: the subscriptions' lease
        self.heard = 0.0  # last frame on the current link (or its start): link liveness
        self.heartbeat_s: float | None = None  # the gateway's ping period (from welcome)
        self.out: list[Frame] = []  # control frames not yet taken by the runner

    @property
    def is_open(self) -> bool:
        """True while the link is open (welcome received)."""
        return self.wire is not None and self.wire.is_open

    def open(self, now: float, hello: Message) -> None:
        """A websocket is open: a new generation, starting with ``hello``."""
        self.wire = AgentLink()
        self.gen += 1
        self.heard = now
        self.heartbeat_s = None
        self.connects += 1
        self.out = [Frame(self.wire.send(hello))]

    def decode(self, data: bytes | str) -> Message:
        """Decode one received frame.

        Raises:
            RemoteProtocolError: no link, or the gateway broke the protocol.
        """
        if self.wire is None:
            raise RemoteProtocolError("no link", close_code=4000)
        return decode(data, self.wire.THEIRS)

    def receive(self, msg: Message, now: float) -> None:
        """Check ``msg`` against the protocol and note that the gateway spoke."""
        if self.wire is None:
            raise RemoteProtocolError("no link", close_code=4000)
        self.wire.receive(msg)
        self.last_heard = now
        self.heard = now
        if isinstance(msg, Welcome):
            self.heartbeat_s = float(msg.heartbeat_s) if msg.heartbeat_s > 0 else None

    def close(self) -> None:
        """The websocket closed: queued control frames go with it."""
        self.out = []
        if self.wire is not None:
            self.wire.close()
        self.wire = None

    def send(self, msg: Message) -> bool:
        """Queue a control message; False when the link is not open or the queue is full."""
        if self.wire is None or not self.wire.is_open:
            return False
        if len(self.out) >= self.max_control_frames:
            return False
        self.out.append(Frame(self.wire.send(msg)))
        return True

    def take(self) -> list[Frame]:
        """The queued control frames, emptying the queue."""
        out, self.out = self.out, []
        return out

    def silent(self, now: float) -> bool:
        """True when the current link has been silent for three ping periods (the gateway
        announced the period in ``welcome``; 10 s until then): the runner drops the link and
        reconnects, to the next gateway of its list. The websocket's own keepalive pings are
        off for agent links (docs/protocol.md §Liveness), so this is how a half-open link ends."""
        if self.wire is None:
            return False
        return now - self.heard > 3.0 * (self.heartbeat_s or 10.0)
