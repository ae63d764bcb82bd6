"""Sans-I/O state machine for one client <-> gateway link (docs/protocol.md).

Theory of operation: several queries share one socket, each under a client-chosen id. The link
tracks one small state machine per live id, written as a table (:data:`QUERY_TRANSITIONS`):
``(state, message type) -> next state``, where state ``None`` means "no live query with this id".
The same table serves both ends; ``our_role`` says which messages we send and which we receive.

    None -(query)-> PENDING -(accepted)-> RUNNING -(rows | meta)-> RUNNING -(complete)-> None
    PENDING -(error | complete)-> None
    cancel is legal in any state and changes nothing (the gateway answers with complete).

An ``error`` with ``id`` None (a connection-level error) is legal at any time. Finished ids are
forgotten, so a client may reuse an id after its query completed.
"""

from __future__ import annotations

import enum
from typing import Literal

from ..errors import LocalProtocolError, RemoteProtocolError
from .codec import CLOSE_PROTOCOL, decode, encode
from .messages import CLIENT_TO_GATEWAY, GATEWAY_TO_CLIENT, Error, Message

__all__ = ["QUERY_TRANSITIONS", "ClientLink", "QueryState"]


class QueryState(enum.Enum):
    """State of one query id on a client link."""

    PENDING = "pending"  # query received, not yet accepted or refused
    RUNNING = "running"  # accepted; rows and meta may flow


_P, _R = QueryState.PENDING, QueryState.RUNNING

QUERY_TRANSITIONS: dict[tuple[QueryState | None, str], QueryState | None] = {
    (None, "query"): _P,
    (_P, "accepted"): _R,
    (_P, "error"): None,
    (_P, "complete"): None,
    (_R, "rows"): _R,
    (_R, "meta"): _R,
    (_R, "complete"): None,
    (_R, "error"): None,
    (None, "cancel"): None,
    (_P, "cancel"): _P,
    (_R, "cancel"): _R,
}
"""Per-query transitions: ``(state or None, message type) -> next state or None``."""


class ClientLink:
    """One end of a client link. ``our_role`` is ``"gateway"`` or ``"client"``.

    ``queries`` maps each live query id to its :class:`QueryState`.
    """

    def __init__(self, our_role: Literal["gateway", "client"] = "gateway") -> None:
        self.our_role = our_role
        self.theirs = CLIENT_TO_GATEWAY if our_role == "gateway" else GATEWAY_TO_CLIENT
        self.queries: dict[str, QueryState] = {}
        self.closed = False

    def _advance(self, msg: Message) -> bool:
        if isinstance(msg, Error) and msg.id is None:
            return True
        qid: str = msg.id  # type: ignore[union-attr]
        key = (self.queries.get(qid), msg.type)
        if key not in QUERY_TRANSITIONS:
            return False
        nxt = QUERY_TRANSITIONS[key]  # type: ignore[index]
        if nxt is None:
            self.queries.pop(qid, None)
        else:
            self.queries[qid] = nxt
        return True

    def send(self, msg: Message) -> bytes:
        """Check ``msg`` against the query's state, advance it, and return the frame bytes.

        Raises:
            LocalProtocolError: wrong direction, closed link, or illegal in the query's state.
        """
        if (
            self.closed
            or msg.type in self.theirs
            or msg.type not in (CLIENT_TO_GATEWAY | GATEWAY_TO_CLIENT)
        ):
            raise LocalProtocolError(f"cannot send {msg.type!r} as {self.our_role}")
        if not self._advance(msg):
            raise LocalProtocolError(f"cannot send {msg.type!r} for id {msg.id!r} now")  # type: ignore[union-attr]
        return encode(msg)

    def receive_data(self, data: bytes | str) -> Message:
        """Decode one received frame and check it against the query's state.

        Raises:
            RemoteProtocolError: malformed frame, or illegal for that query id (e.g. a second
                ``query`` with a live id); ``close_code`` 1007 or 4000.
        """
        return self.receive(decode(data, self.theirs))

    def receive(self, msg: Message) -> Message:
        """Like :meth:`receive_data` for an already-decoded message."""
        if self.closed or msg.type not in self.theirs:
            raise RemoteProtocolError(f"unexpected {msg.type!r}", close_code=CLOSE_PROTOCOL)
        if not self._advance(msg):
            raise RemoteProtocolError(
                f"unexpected {msg.type!r} for id {msg.id!r}",  # type: ignore[union-attr]
                close_code=CLOSE_PROTOCOL,
            )
        return msg

    def close(self) -> None:
        """Refuse everything from now on."""
        self.closed = True
