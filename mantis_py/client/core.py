"""The pure core of the client library: frames, errors, backoff and the per-query session.

Theory of operation. A :class:`Session` follows one query across connections. The shells
(``sync.py``, ``trio.py``) own the socket and the clock and tell the session what happened:

- ``url()`` is the gateway to try next; after connecting, send ``submit()``;
- each decoded frame from the gateway goes through ``receive(msg)``, which returns the typed frames
  to hand to the user (and raises :class:`QueryRefused` for an ``error``);
- a failed connect or a lost connection goes through ``lost(reason)`` (or ``http_refused(status)``
  for a refused handshake), which returns the :class:`Reconnecting` frame to hand out; the shell
  waits ``next_try_s`` and tries ``url()`` again (the next gateway of the list).

Windows are never invented: after a reconnect the gateway starts the query afresh, so windows that
ended while the client was away are reported once in a :class:`Meta` (``missed``), and a window the
client already delivered is never delivered twice (one gateway of a list may repeat another's).
Nothing here reads the clock, the environment or a global RNG.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import MantisError

__all__ = [
    "Accepted",
    "Backoff",
    "ClientError",
    "Complete",
    "ConnectionRefused",
    "Forbidden",
    "Frame",
    "GatewayUnavailable",
    "Idle",
    "Meta",
    "QueryRefused",
    "Reconnecting",
    "Rows",
    "Session",
    "Unauthorized",
    "gateway_url",
]

DEFAULT_GATEWAY = "ws://127.0.0.1:7100"


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class Accepted:
    """The gateway accepted the query (again, after each reconnect)."""

    canonical: str
    agents: int
    gateway: str = ""


@dataclass(frozen=True, slots=True)
class Rows:
    """Result rows: one window (``window`` = [start, end]) or a batch of raw rows (``None``)."""

    window: tuple[Any, Any] | None
    rows: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Meta:
    """Loss and coverage; ``waiting`` while an application has no agent yet
    (``{"app", "suggestion"}``); ``missed`` = (first, last) time span of windows that ended while
    the client was reconnecting (their count is in ``dropped["missed_windows"]``)."""

    dropped: dict[str, int]
    coverage: dict[str, Any]
    waiting: dict[str, Any] | None = None
    missed: tuple[Any, Any] | None = None


@dataclass(frozen=True, slots=True)
class Complete:
    """The query ended (``limit``, ``cancelled``, ``evicted`` ...); no frame follows."""

    reason: str


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The connection was lost or could not be opened; the next try is in ``next_try_s``."""

    attempt: int
    error: str
    next_try_s: float
    gateway: str = ""


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing arrived for ``idle_s`` (only when the caller asked for idle frames)."""


Frame = Accepted | Rows | Meta | Complete | Reconnecting | Idle


# --------------------------------------------------------------------------- errors


class ClientError(MantisError):
    """Base class of the client library's errors."""


class QueryRefused(ClientError):
    """The gateway refused the query (bad MQL, an application the token may not read ...).

    ``error`` is the gateway's error object (code, message, line, column, snippet, suggestion,
    hint). Raised once; a refused query is never resubmitted.
    """

    def __init__(self, error: dict[str, Any]) -> None:
        self.error = dict(error)
        code = self.error.get("code")
        super().__init__(f"{code + ': ' if code else ''}{self.error.get('message', 'query refused')}")


class ConnectionRefused(ClientError):
    """The gateway refused the websocket handshake with HTTP ``status``."""

    def __init__(self, status: int, url: str, message: str) -> None:
        self.status = status
        self.url = url
        super().__init__(message)


class Unauthorized(ConnectionRefused):
    """HTTP 401: no token, or a token the gateway does not know."""


class Forbidden(ConnectionRefused):
    """HTTP 403: the page's Origin is not allowed, or the token lacks the client right."""


class GatewayUnavailable(ClientError):
    """No gateway could be reached and ``reconnect=False``."""


# --------------------------------------------------------------------------- helpers


def gateway_url(text: str) -> str:
    """The ``WS /v1/query`` URL for a gateway given as ``host:port``, ``http(s)://`` or
    ``ws(s)://`` (a bare base URL gets the ``/v1/query`` path).

    Raises:
        ValueError: not a usable URL.
    """
    if "://" not in text:
        text = "ws://" + text
    parts = urlsplit(text)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"bad gateway URL {text!r}: use ws://host:port")
    path = parts.path if parts.path not in ("", "/") else "/v1/query"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def gateway_list(gateway: str | list[str] | tuple[str, ...] | None,
                 default: str | None = None) -> list[str]:
    """Normalize ``gateway`` (one URL, a comma-separated string or a list) to query URLs."""
    if gateway is None:
        gateway = default or DEFAULT_GATEWAY
    items = gateway.split(",") if isinstance(gateway, str) else list(gateway)
    urls = [gateway_url(g.strip()) for g in items if g and g.strip()]
    if not urls:
        raise ValueError("no gateway URL given")
    return urls


@dataclass
class Backoff:
    """Jittered exponential backoff: attempt n waits
    ``uniform(0.5, 1) * min(cap, first * factor^(n-1))`` seconds, so the first retry comes within
    ``first`` seconds and no wait exceeds ``cap``. The gentle factor (1.5) keeps the retries of a
    short outage (a gateway restart takes a second or two) close together: a client is back
    within about a second of the gateway listening again, and still waits 10 s between tries
    once an outage lasts a minute."""

    rng: random.Random
    first: float = 0.25
    factor: float = 1.5
    cap: float = 10.0
    attempt: int = 0

    def next(self) -> float:
        self.attempt += 1
        base = min(self.cap, self.first * self.factor ** (self.attempt - 1))
        return float(base * self.rng.uniform(0.5, 1.0))

    def reset(self) -> None:
        self.attempt = 0


_HTTP_WHY = {401: "missing or unknown token", 403: "forbidden (token rights or page origin)",
             429: "too many connections", 503: "gateway overloaded"}


# --------------------------------------------------------------------------- the session


@dataclass
class Session:
    """One query followed across connections and gateways; see the module header."""

    text: str
    gateways: list[str]
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    reconnect: bool = True
    qid: str = "q1"
    done: bool = False
    backoff: Backoff = field(init=False)
    _index: int = 0
    _last_end: Any = None
    _step: Any = None
    _away: bool = False          # a reconnect happened since the last delivered window

    def __post_init__(self) -> None:
        if not self.gateways:
            raise ValueError("no gateway URL given")
        self.backoff = Backoff(self.rng)

    def url(self) -> str:
        """The gateway to use now (kept until it fails, then the next one of the list)."""
        return self.gateways[self._index % len(self.gateways)]

    def submit(self) -> dict[str, Any]:
        """The ``query`` message to send on a fresh connection."""
        return {"type": "query", "id": self.qid, "query": self.text}

    def cancel(self) -> dict[str, Any]:
        return {"type": "cancel", "id": self.qid}

    def receive(self, msg: Any) -> list[Frame]:
        """Frames for one decoded gateway message (other ids and unknown types are ignored).

        Raises:
            QueryRefused: the gateway answered ``error`` (not for ``rate_limited``, which is
                retried like a lost connection: :class:`_Retry`).
        """
        if not isinstance(msg, dict) or msg.get("id") not in (self.qid, None):
            return []
        kind = msg.get("type")
        if kind == "accepted":
            self.backoff.reset()
            return [Accepted(str(msg.get("canonical", self.text)), int(msg.get("agents") or 0),
                             self.url())]
        if kind == "rows":
            return self._rows(msg)
        if kind == "meta":
            waiting = msg.get("waiting")
            return [Meta(dict(msg.get("dropped") or {}), dict(msg.get("coverage") or {}),
                         dict(waiting) if isinstance(waiting, dict) else None)]
        if kind == "complete":
            self.done = True
            return [Complete(str(msg.get("reason", "")))]
        if kind == "error":
            raw = msg.get("error")
            error: dict[str, Any] = raw if isinstance(raw, dict) else {}
            if error.get("code") == "rate_limited":
                raise Retry(str(error.get("message", "rate limited")))
            self.done = True
            raise QueryRefused(error)
        return []

    def _rows(self, msg: dict[str, Any]) -> list[Frame]:
        rows = [r for r in msg.get("rows") or [] if isinstance(r, dict)]
        window = msg.get("window")
        if window is None:
            return [Rows(None, rows)]
        start, end = window[0], window[1]
        out: list[Frame] = []
        if self._last_end is not None:
            if end <= self._last_end:
                return []  # already delivered (or older): never twice
            step = self._step or (end - start) or 1
            if self._away and start >= self._last_end:
                missed = max(0, round((end - self._last_end) / step) - 1)
                if missed:
                    out.append(Meta({"missed_windows": missed}, {}, None, (self._last_end, start)))
            elif not self._away:
                self._step = end - self._last_end
        self._last_end = end
        self._away = False
        out.append(Rows((start, end), rows))
        return out

    def lost(self, reason: str) -> Reconnecting:
        """The connection failed or ended: move to the next gateway and say when to retry.

        Raises:
            GatewayUnavailable: ``reconnect`` is off.
        """
        if not self.reconnect:
            raise GatewayUnavailable(f"cannot reach the gateway at {self.url()}: {reason}")
        failed = self.url()
        self._index += 1
        self._away = True
        delay = self.backoff.next()
        return Reconnecting(self.backoff.attempt, f"{failed}: {reason}", delay, self.url())

    def http_refused(self, status: int, reason: str = "") -> Reconnecting:
        """The handshake was answered with HTTP ``status``.

        Raises:
            Unauthorized, Forbidden: 401 / 403 (never retried).
            ConnectionRefused: any other 4xx but 429.
        """
        url = self.url()
        why = _HTTP_WHY.get(status, reason or "refused")
        message = f"the gateway at {url} refused the connection: HTTP {status} ({why})"
        if status == 401:
            raise Unauthorized(status, url, message)
        if status == 403:
            raise Forbidden(status, url, message)
        if 400 <= status < 500 and status != 429:
            raise ConnectionRefused(status, url, message)
        return self.lost(f"HTTP {status} ({why})")


class Retry(ClientError):
    """Internal: the gateway asked us to come back later (rate limited); treated as a lost link."""
