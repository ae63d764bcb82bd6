"""Sans-I/O state machines for one agent <-> gateway link (docs/protocol.md §Link states).

Theory of operation: both ends of a websocket hold one link object. The shell hands every
received frame to ``receive_data`` and gets a message back, and encodes every outgoing message
with ``send``; the link checks each against its transition table, so an out-of-order message is
caught in exactly one place. Transitions are data (:data:`AGENT_SIDE`, :data:`GATEWAY_SIDE`):
``(state, direction, message type) -> next state``; a triple not in the table is illegal.

Agent side:   CONNECTING -(send hello)-> HELLO_SENT -(recv welcome)-> OPEN ... -> CLOSED
Gateway side: AWAIT_HELLO -(recv hello)-> HELLO_RECEIVED -(send welcome)-> OPEN ... -> CLOSED

Illegal received messages raise :class:`RemoteProtocolError` (close code 4000, the peer's bug);
illegal sends raise :class:`LocalProtocolError` (our bug). ``close()`` moves to CLOSED from any
state; nothing may be sent or received after it.
"""

from __future__ import annotations

import enum
from typing import Literal

from ..errors import LocalProtocolError, RemoteProtocolError
from .codec import CLOSE_PROTOCOL, decode, encode
from .messages import AGENT_TO_GATEWAY, GATEWAY_TO_AGENT, Hello, Message

__all__ = [
    "AGENT_SIDE",
    "GATEWAY_SIDE",
    "AgentLink",
    "GatewayLink",
    "LinkState",
]

Direction = Literal["send", "recv"]


class LinkState(enum.Enum):
    """States of either end of an agent link."""

    CONNECTING = "connecting"  # agent side: socket open, hello not sent yet
    HELLO_SENT = "hello_sent"  # agent side: waiting for welcome
    AWAIT_HELLO = "await_hello"  # gateway side: waiting for hello
    HELLO_RECEIVED = "hello_received"  # gateway side: must send welcome next
    OPEN = "open"
    CLOSED = "closed"


S = LinkState

AGENT_SIDE: dict[tuple[LinkState, Direction, str], LinkState] = {
    (S.CONNECTING, "send", "hello"): S.HELLO_SENT,
    (S.HELLO_SENT, "recv", "welcome"): S.OPEN,
    **{(S.OPEN, "recv", t): S.OPEN for t in ("subscribe", "unsubscribe", "ping")},
    **{(S.OPEN, "send", t): S.OPEN for t in ("events", "partial", "stats", "sub_error", "pong")},
}
"""The agent end's transitions: ``(state, direction, type) -> next state``."""

GATEWAY_SIDE: dict[tuple[LinkState, Direction, str], LinkState] = {
    (S.AWAIT_HELLO, "recv", "hello"): S.HELLO_RECEIVED,
    (S.HELLO_RECEIVED, "send", "welcome"): S.OPEN,
    **{(S.OPEN, "send", t): S.OPEN for t in ("subscribe", "unsubscribe", "ping")},
    **{(S.OPEN, "recv", t): S.OPEN for t in ("events", "partial", "stats", "sub_error", "pong")},
}
"""The gateway end's transitions: ``(state, direction, type) -> next state``."""


class _Link:
    TRANSITIONS: dict[tuple[LinkState, Direction, str], LinkState]
    INITIAL: LinkState
    THEIRS: frozenset[str]

    def __init__(self) -> None:
        self.state: LinkState = self.INITIAL

    def send(self, msg: Message) -> bytes:
        """Check that ``msg`` may be sent now, advance the state, and return the frame bytes.

        Raises:
            LocalProtocolError: the message is illegal in the current state.
        """
        key = (self.state, "send", msg.type)
        nxt = self.TRANSITIONS.get(key)  # type: ignore[arg-type]
        if nxt is None:
            raise LocalProtocolError(f"cannot send {msg.type!r} in state {self.state.value}")
        data = encode(msg)
        self.state = nxt
        return data

    def receive_data(self, data: bytes | str) -> Message:
        """Decode one received frame and check it against the state machine.

        Raises:
            RemoteProtocolError: malformed frame or message illegal in the current state;
                ``close_code`` says how to close the socket.
        """
        msg = decode(data, self.THEIRS)
        return self.receive(msg)

    def receive(self, msg: Message) -> Message:
        """Like :meth:`receive_data` for an already-decoded message (used by in-memory pairs)."""
        nxt = self.TRANSITIONS.get((self.state, "recv", msg.type))  # type: ignore[arg-type]
        if nxt is None:
            raise RemoteProtocolError(
                f"unexpected {msg.type!r} in state {self.state.value}", close_code=CLOSE_PROTOCOL
            )
        self.state = nxt
        return msg

    def close(self) -> None:
        """Move to CLOSED; later sends and receives are refused."""
        self.state = S.CLOSED

    @property
    def is_open(self) -> bool:
        """True once the handshake (hello, welcome) is complete and until ``close()``."""
        return self.state is S.OPEN


class AgentLink(_Link):
    """The agent's end: sends hello first, then waits for welcome before anything else."""

    TRANSITIONS = AGENT_SIDE
    INITIAL = S.CONNECTING
    THEIRS = GATEWAY_TO_AGENT


class GatewayLink(_Link):
    """The gateway's end: waits for hello, must answer welcome, then pushes queries.

    ``hello`` holds the agent's hello once received.
    """

    TRANSITIONS = GATEWAY_SIDE
    INITIAL = S.AWAIT_HELLO
    THEIRS = AGENT_TO_GATEWAY

    def __init__(self) -> None:
        super().__init__()
        self.hello: Hello | None = None

    def receive(self, msg: Message) -> Message:
        msg = super().receive(msg)
        if isinstance(msg, Hello):
            self.hello = msg
        return msg
