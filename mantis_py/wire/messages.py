"""The mantis.v1 messages: one frozen dataclass per message type (docs/protocol.md).

Theory of operation: every frame on a mantis link is one JSON object ``{"type": ..., ...}``.
Each message type is one frozen dataclass below whose first field, ``type``, is fixed by the
class (``init=False``), so ``orjson`` serializes a message directly and ``codec.decode`` builds one
back through :data:`MESSAGE_TYPES`. Each class declares ``FIELDS``: the checker for every JSON
member, used by the codec to reject malformed frames. Adding a message type takes one class and
one line in :data:`MESSAGE_TYPES`.

Invariants:
- message payloads are JSON-able (str keys, str/int/float/bool/None, lists, dicts);
- ``type`` strings are unique across the agent link and the client link, so one table decodes both;
- unknown extra members are ignored on decode (forward compatibility within v1); a breaking
  change is a new subprotocol name (``mantis.v2``), never a changed meaning under ``mantis.v1``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

__all__ = [
    "AGENT_TO_GATEWAY",
    "CLIENT_TO_GATEWAY",
    "GATEWAY_TO_AGENT",
    "GATEWAY_TO_CLIENT",
    "MESSAGE_TYPES",
    "SUBPROTOCOL",
    "Accepted",
    "AgentMessage",
    "Cancel",
    "ClientMessage",
    "Complete",
    "Error",
    "Events",
    "Hello",
    "Message",
    "Meta",
    "Partial",
    "Ping",
    "Pong",
    "Query",
    "Rows",
    "Stats",
    "SubError",
    "Subscribe",
    "Unsubscribe",
    "Welcome",
]

SUBPROTOCOL = "mantis.v1"
"""The websocket subprotocol name; it carries the protocol version."""

Checker = Callable[[Any], bool]


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _is_opt_dict(v: Any) -> bool:
    return v is None or isinstance(v, dict)


def _is_list(v: Any) -> bool:
    return isinstance(v, (list, tuple))


def _is_str_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)


def _is_str_dict(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(x, str) for x in v.values())


def _is_any(v: Any) -> bool:
    return True


def _is_window(v: Any) -> bool:
    return v is None or (
        isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_num(x) for x in v)
    )


def _is_records(v: Any) -> bool:
    # events records: [{"subs": [str, ...], "t": int ms, "s": int, "e": {...}}, ...]. Only the
    # list itself is checked here: the receiver checks each record's shape in the one loop that
    # routes the batch (the gateway closes with 4000 on a malformed record), so the ingest hot
    # path walks the records once, not twice (docs/protocol.md, events).
    return isinstance(v, (list, tuple))


# ---------------------------------------------------------------- agent -> gateway


@dataclass(frozen=True, slots=True)
class Hello:
    """agent -> gateway, first message of a link: who this agent is."""

    type: Literal["hello"] = field(default="hello", init=False)
    app: str
    instance: str
    streams: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    zone: str | None = None
    version: str = ""
    pid: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.streams, tuple):
            object.__setattr__(self, "streams", tuple(self.streams))

    FIELDS: ClassVar[dict[str, Checker]] = {
        "app": _is_str,
        "instance": _is_str,
        "streams": _is_str_list,
        "tags": _is_str_dict,
        "zone": _is_opt_str,
        "version": _is_str,
        "pid": _is_int,
    }


@dataclass(frozen=True, slots=True)
class Events:
    """agent -> gateway: a batch of events of one stream.

    ``records`` items are ``{"subs": [sub_id, ...], "t": ms, "s": seq, "e": projected_event}``:
    each event once, tagged with every matching subscription, projected to the union of the
    fields those subscriptions need. ``s`` increases by one per event sent on the link (per
    stream), so the gateway can see gaps.
    """

    type: Literal["events"] = field(default="events", init=False)
    stream: str
    records: list[dict[str, Any]]

    FIELDS: ClassVar[dict[str, Checker]] = {"stream": _is_str, "records": _is_records}


@dataclass(frozen=True, slots=True)
class Partial:
    """agent -> gateway: one window's partial aggregate of one subscription (``src.poll`` output)."""

    type: Literal["partial"] = field(default="partial", init=False)
    sub: str
    part: dict[str, Any]

    FIELDS: ClassVar[dict[str, Checker]] = {"sub": _is_str, "part": _is_dict}


@dataclass(frozen=True, slots=True)
class Stats:
    """agent -> gateway: cumulative counters since the agent started.

    ``streams[name]`` = ``{offered, skipped_no_subscription, enqueued, dropped: {reason: n}, sent}``;
    ``subs[sub_id]`` = ``{matched, errors, sample_rate, dropped: {reason: n}}``.
    """

    type: Literal["stats"] = field(default="stats", init=False)
    streams: dict[str, Any]
    subs: dict[str, Any]

    FIELDS: ClassVar[dict[str, Checker]] = {"streams": _is_dict, "subs": _is_dict}


@dataclass(frozen=True, slots=True)
class SubError:
    """agent -> gateway: a subscription was refused or failed (``code``: see docs/protocol.md)."""

    type: Literal["sub_error"] = field(default="sub_error", init=False)
    sub: str
    code: str
    message: str

    FIELDS: ClassVar[dict[str, Checker]] = {"sub": _is_str, "code": _is_str, "message": _is_str}


@dataclass(frozen=True, slots=True)
class Pong:
    """agent -> gateway: answer to ``ping`` with the same nonce."""

    type: Literal["pong"] = field(default="pong", init=False)
    nonce: str

    FIELDS: ClassVar[dict[str, Checker]] = {"nonce": _is_str}


# ---------------------------------------------------------------- gateway -> agent


@dataclass(frozen=True, slots=True)
class Welcome:
    """gateway -> agent: the link is open; pings come at least every ``heartbeat_s`` seconds."""

    type: Literal["welcome"] = field(default="welcome", init=False)
    session: str
    heartbeat_s: float = 10.0

    FIELDS: ClassVar[dict[str, Checker]] = {"session": _is_str, "heartbeat_s": _is_num}


@dataclass(frozen=True, slots=True)
class Subscribe:
    """gateway -> agent: run the agent part of ``query`` (canonical MQL) on ``stream``.

    ``start`` (epoch seconds): the first window is the first one starting at or after it.
    ``caps``: per-query limits (JSON object, passed to the query engine).
    """

    type: Literal["subscribe"] = field(default="subscribe", init=False)
    sub: str
    query: str
    stream: str
    start: float
    caps: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[dict[str, Checker]] = {
        "sub": _is_str,
        "query": _is_str,
        "stream": _is_str,
        "start": _is_num,
        "caps": _is_dict,
    }


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """gateway -> agent: stop running subscription ``sub`` (unknown ids are ignored)."""

    type: Literal["unsubscribe"] = field(default="unsubscribe", init=False)
    sub: str

    FIELDS: ClassVar[dict[str, Checker]] = {"sub": _is_str}


@dataclass(frozen=True, slots=True)
class Ping:
    """gateway -> agent: liveness; also renews every subscription's lease at the agent."""

    type: Literal["ping"] = field(default="ping", init=False)
    nonce: str

    FIELDS: ClassVar[dict[str, Checker]] = {"nonce": _is_str}


# ---------------------------------------------------------------- client <-> gateway (SYSTEM §3.3)


@dataclass(frozen=True, slots=True)
class Query:
    """client -> gateway: run ``query`` (MQL text) under the client-chosen ``id``."""

    type: Literal["query"] = field(default="query", init=False)
    id: str
    query: str

    FIELDS: ClassVar[dict[str, Checker]] = {"id": _is_str, "query": _is_str}


@dataclass(frozen=True, slots=True)
class Cancel:
    """client -> gateway: stop query ``id`` (unknown or finished ids are ignored)."""

    type: Literal["cancel"] = field(default="cancel", init=False)
    id: str

    FIELDS: ClassVar[dict[str, Checker]] = {"id": _is_str}


@dataclass(frozen=True, slots=True)
class Accepted:
    """gateway -> client: query ``id`` runs as ``canonical`` on ``agents`` agents."""

    type: Literal["accepted"] = field(default="accepted", init=False)
    id: str
    canonical: str
    agents: int

    FIELDS: ClassVar[dict[str, Checker]] = {"id": _is_str, "canonical": _is_str, "agents": _is_int}


@dataclass(frozen=True, slots=True)
class Error:
    """gateway -> client: query ``id`` was refused; ``error`` is the error object (docs/mql.md#errors)."""

    type: Literal["error"] = field(default="error", init=False)
    id: str
    error: dict[str, Any]

    FIELDS: ClassVar[dict[str, Checker]] = {"id": _is_opt_str, "error": _is_dict}


@dataclass(frozen=True, slots=True)
class Rows:
    """gateway -> client: result rows; ``window`` is ``[start, end]`` or None for raw rows."""

    type: Literal["rows"] = field(default="rows", init=False)
    id: str
    window: tuple[float, float] | None
    rows: list[dict[str, Any]]

    def __post_init__(self) -> None:
        if self.window is not None and not isinstance(self.window, tuple):
            object.__setattr__(self, "window", tuple(self.window))

    FIELDS: ClassVar[dict[str, Checker]] = {"id": _is_str, "window": _is_window, "rows": _is_list}


@dataclass(frozen=True, slots=True)
class Meta:
    """gateway -> client: loss and coverage for query ``id``."""

    type: Literal["meta"] = field(default="meta", init=False)
    id: str
    dropped: dict[str, int]
    coverage: dict[str, Any]
    # Set while the query waits for the first agent of an application it names:
    # {"app": name, "suggestion": nearest known application or None}; None otherwise.
    waiting: dict[str, Any] | None = None

    FIELDS: ClassVar[dict[str, Checker]] = {
        "id": _is_str,
        "dropped": _is_dict,
        "coverage": _is_dict,
        "waiting": _is_opt_dict,
    }


@dataclass(frozen=True, slots=True)
class Complete:
    """gateway -> client: query ``id`` ended (``reason``: limit, app gone, cancelled, evicted...)."""

    type: Literal["complete"] = field(default="complete", init=False)
    id: str
    reason: str

    FIELDS: ClassVar[dict[str, Checker]] = {"id": _is_str, "reason": _is_str}


AgentMessage = (
    Hello | Events | Partial | Stats | SubError | Pong | Welcome | Subscribe | Unsubscribe | Ping
)
ClientMessage = Query | Cancel | Accepted | Error | Rows | Meta | Complete
Message = AgentMessage | ClientMessage


def _type_name(cls: type[Any]) -> str:
    return str(cls.__dataclass_fields__["type"].default)


MESSAGE_TYPES: dict[str, type[Any]] = {
    _type_name(cls): cls
    for cls in (
        Hello,
        Events,
        Partial,
        Stats,
        SubError,
        Pong,
        Welcome,
        Subscribe,
        Unsubscribe,
        Ping,
        Query,
        Cancel,
        Accepted,
        Error,
        Rows,
        Meta,
        Complete,
    )
}
"""``type`` string -> message class: the codec's dispatch table."""

AGENT_TO_GATEWAY = frozenset({"hello", "events", "partial", "stats", "sub_error", "pong"})
GATEWAY_TO_AGENT = frozenset({"welcome", "subscribe", "unsubscribe", "ping"})
CLIENT_TO_GATEWAY = frozenset({"query", "cancel"})
GATEWAY_TO_CLIENT = frozenset({"accepted", "error", "rows", "meta", "complete"})
