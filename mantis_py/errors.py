"""Every exception mantis_py raises on purpose.

```
MantisError
├── QueryError                 the query is wrong; safe to show to whoever sent it (docs/mql.md#errors)
│   ├── QuerySyntaxError       kind "syntax": E1xx; the text does not fit the grammar
│   ├── QueryCompileError      kind "semantic": E2xx; fits the grammar, breaks a static/live rule
│   └── QueryLimitError        kind "limit": E3xx; a limit of docs/mql.md#limits-and-notices was exceeded
├── ProtocolError              abstract: a wire-protocol violation (docs/protocol.md)
│   ├── LocalProtocolError     we tried to send something illegal (our bug)
│   └── RemoteProtocolError    the peer sent something illegal; ``close_code`` is the hint
├── AuthenticationError        the gateway refused the credentials
└── ConfigurationError(ValueError)  bad settings at construction time (agent, gateway, alerts)
```

A ``QueryError`` carries every member of the error object of docs/mql.md#errors and converts to it with
``to_dict()``. ``str()`` of any error is one line a person can read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "LocalProtocolError",
    "MantisError",
    "ProtocolError",
    "QueryCompileError",
    "QueryError",
    "QueryLimitError",
    "QuerySyntaxError",
    "RemoteProtocolError",
]


class MantisError(Exception):
    """Base class of every error mantis_py raises on purpose."""


@dataclass(eq=False)
class QueryError(MantisError):
    """A rejected query: the error object of docs/mql.md#errors.

    Build one with :func:`mantis_py.query.syntax.diagnostics.query_error`, which fills ``line``,
    ``column`` and ``snippet`` from the query text and an offset.
    """

    code: str
    message: str
    line: int = 1
    column: int = 1
    length: int = 0
    snippet: str = ""
    expected: list[str] = field(default_factory=list)
    suggestion: str | None = None
    hint: str | None = None

    kind: ClassVar[str] = "syntax"

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code} at line {self.line}, column {self.column}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON error object of docs/mql.md#errors, members in the documented order."""
        return {
            "kind": self.kind,
            "code": self.code,
            "message": self.message,
            "line": self.line,
            "column": self.column,
            "length": self.length,
            "snippet": self.snippet,
            "expected": list(self.expected),
            "suggestion": self.suggestion,
            "hint": self.hint,
        }


@dataclass(eq=False)
class QuerySyntaxError(QueryError):
    """E1xx: the text does not fit the grammar of docs/mql.md#text-and-tokens."""

    kind: ClassVar[str] = "syntax"


@dataclass(eq=False)
class QueryCompileError(QueryError):
    """E2xx: the query parses but breaks a static or live-mode rule of docs/mql.md#errors."""

    kind: ClassVar[str] = "semantic"


@dataclass(eq=False)
class QueryLimitError(QueryError):
    """E3xx: the query exceeds a limit of docs/mql.md#limits-and-notices."""

    kind: ClassVar[str] = "limit"


def error_class_for(code: str) -> type[QueryError]:
    """The QueryError subclass for an error code: E1xx syntax, E2xx semantic, E3xx limit."""
    if code.startswith("E3"):
        return QueryLimitError
    if code.startswith("E2"):
        return QueryCompileError
    return QuerySyntaxError


class ProtocolError(MantisError):
    """Abstract: a violation of the wire protocol (docs/protocol.md)."""


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol forbids in the current state: our own bug."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something illegal. ``close_code`` is the websocket close code to use."""

    def __init__(self, message: str, close_code: int = 1002) -> None:
        super().__init__(message)
        self.close_code = close_code


class AuthenticationError(MantisError):
    """The gateway refused the credentials (no token, unknown token, or no right to an app)."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class ConfigurationError(MantisError, ValueError):
    """Bad settings given at construction time: agent options, gateway config, alert rules."""
