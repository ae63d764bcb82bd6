"""Who is asking, and what may they read (docs/operations.md). Pure: no sockets, no clock.

Theory: the HTTP layer calls :meth:`Authenticator.authenticate` with the bearer token from the
handshake (``Authorization: Bearer`` or ``?token=``) *before* any upgrade, and answers 401 when it
raises. :func:`origin_allowed` decides the 403 for browser handshakes. After the upgrade, every
submitted query is checked source by source with :meth:`Principal.may_read`; the first source the
principal may not read refuses the query with a message naming the app.

Tokens are compared as SHA-256 digests with ``hmac.compare_digest``; the token itself is never
stored, logged or put in an exception message. :func:`audit_record` is the one audit line per
query decision: user, apps, a hash of the query, the decision; never the token.

When the configuration has no tokens at all the gateway is open (development): everyone is the
user ``anonymous`` and may read everything except masked fields.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import AuthenticationError
from .config import TokenConfig

__all__ = [
    "ANONYMOUS",
    "Authenticator",
    "Principal",
    "audit_record",
    "bearer_token",
    "origin_allowed",
    "query_hash",
]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user: read rights as source patterns, masked-field visibility, roles.

    A pattern is ``"*"`` (everything), ``"app"`` (every stream of app) or ``"app/stream"``.
    """

    user: str
    read: tuple[str, ...]
    masked: bool = False
    roles: tuple[str, ...] = ("client",)

    def may_read(self, app: str, stream: str) -> bool:
        """True when this principal may read ``stream`` of ``app``.

        >>> Principal("a", ("api/log", "play")).may_read("play", "x")
        True
        >>> Principal("a", ("api/log",)).may_read("api", "default")
        False
        """
        for pattern in self.read:
            if pattern == "*" or pattern == app or pattern == f"{app}/{stream}":
                return True
            if pattern == f"{app}/*":
                return True
        return False

    def first_refused(self, sources: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
        """The first (app, stream) this principal may not read, or None when all are allowed."""
        for app, stream in sources:
            if not self.may_read(app, stream):
                return app, stream
        return None


ANONYMOUS = Principal("anonymous", ("*",), masked=False, roles=("client", "agent"))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Authenticator:
    """Maps bearer tokens to principals. Construct once from the config's ``[[tokens]]``."""

    def __init__(self, tokens: Iterable[TokenConfig]) -> None:
        self._tokens = tuple(tokens)

    @property
    def open(self) -> bool:
        """True when no tokens are configured: everyone is :data:`ANONYMOUS`."""
        return not self._tokens

    def authenticate(self, token: str | None, role: str = "client") -> Principal:
        """The principal for a bearer token.

        Raises:
            AuthenticationError: status 401 for a missing or unknown token, 403 for a token
                without the ``role`` (``"client"`` or ``"agent"``). The message never contains
                the token.
        """
        if self.open:
            return ANONYMOUS
        if not token:
            raise AuthenticationError("a bearer token is required", status=401)
        digest = _digest(token)
        found: TokenConfig | None = None
        for entry in self._tokens:  # constant time per entry; no early exit leaks which one
            if hmac.compare_digest(entry.token_sha256, digest):
                found = entry
        if found is None:
            raise AuthenticationError("unknown token", status=401)
        if role not in found.roles:
            raise AuthenticationError(f"user {found.user!r} may not connect as {role}", status=403)
        return Principal(found.user, found.read, found.masked, found.roles)


def bearer_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The token from ``Authorization: Bearer <t>`` (preferred) or the ``token`` query parameter.

    ``headers`` keys are lower-case header names.
    """
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    token = query.get("token")
    return token or None


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str], tls: bool) -> bool:
    """May a handshake with this ``Origin`` header proceed? (docs/operations.md: otherwise 403.)

    Non-browser clients send no Origin and are allowed. A browser is allowed from the gateway's
    own origin (scheme + the request's Host) and from every origin in ``allowed`` (``"*"``
    allows any).
    """
    if origin is None:
        return True
    allowed = tuple(allowed)
    if "*" in allowed or origin in allowed:
        return True
    parts = urlsplit(origin)
    if host and parts.netloc.lower() == host.lower():
        return parts.scheme == ("https" if tls else "http")
    return False


def query_hash(text: str) -> str:
    """A short stable hash of a query's text for audit lines (the text itself may be sensitive)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def audit_record(
    user: str,
    apps: Iterable[str],
    text: str,
    decision: str,
    reason: str | None = None,
    client: str | None = None,
) -> dict[str, Any]:
    """The audit log entry for one query decision (``accepted`` / ``refused`` / ``error``)."""
    return {
        "event": "query",
        "user": user,
        "apps": sorted(set(apps)),
        "query_hash": query_hash(text),
        "decision": decision,
        "reason": reason,
        "client": client,
    }
