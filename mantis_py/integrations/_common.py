"""What the integrations share: the agent they publish to, masking of captured headers and
query-string values, their counters, and the one ImportError shape for a missing framework.

Pure: nothing here touches a socket, a thread or the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl

from ..agents.convert import MASKED, Mask

__all__ = [
    "ALWAYS_MASKED_HEADERS",
    "AgentLike",
    "Counters",
    "IntegrationStatistics",
    "Masker",
    "agent_mask",
    "header_picker",
    "missing_extra",
    "plain_extra",
]

ALWAYS_MASKED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
"""Headers whose values are credentials by nature: masked even when the agent does not list them."""


class AgentLike(Protocol):
    """The two agent calls an integration makes (``Agent`` and ``TrioAgent`` both fit)."""

    def publish(self, event: Any, stream: str = "default") -> None: ...

    def has_subscribers(self, stream: str = "default") -> bool: ...


@dataclass(frozen=True, slots=True)
class IntegrationStatistics:
    """Counters of one integration.

    Attributes:
        built: events built and handed to the agent (only ever while a query listened).
        failed: failures of the integration itself, swallowed so the host never sees them.
    """

    built: int
    failed: int


class Counters:
    """Mutable counters behind :class:`IntegrationStatistics` (touched only on the slow path)."""

    __slots__ = ("built", "failed")

    def __init__(self) -> None:
        self.built = 0
        self.failed = 0

    def snapshot(self) -> IntegrationStatistics:
        return IntegrationStatistics(self.built, self.failed)


class Masker:
    """Which captured header / query-parameter names are masked, from the agent's own mask.

    A name is masked when the agent masks it as a field name (``"password"`` masks the
    ``password`` query parameter and a ``Password`` header), or as a path under the captured
    field (``"headers.x-api-key"``, ``"query.token"``). Header names always compare without case;
    credential headers (:data:`ALWAYS_MASKED_HEADERS`) are always masked.

    >>> m = Masker(Mask(("token", "headers.x-api-key")), "headers", ALWAYS_MASKED_HEADERS)
    >>> m.apply([("X-Api-Key", "k"), ("Accept", "*/*"), ("Cookie", "c")])
    {'x-api-key': '[masked]', 'accept': '*/*', 'cookie': '[masked]'}
    """

    __slots__ = ("fold", "names")

    def __init__(self, mask: Mask, field: str, always: Iterable[str] = (), *,
                 fold: bool | None = None) -> None:
        self.fold = mask.ignore_case if fold is None else fold
        norm = str.casefold if self.fold else str
        names = {norm(n) for n in mask.entries if "." not in n}
        names |= {norm(p[1]) for p in (e.split(".", 1) for e in mask.entries if "." in e)
                  if norm(p[0]) == norm(field)}
        self.names = frozenset(names | {norm(a) for a in always})

    def masked(self, name: str) -> bool:
        return (name.casefold() if self.fold else name) in self.names

    def apply(self, pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
        """``name -> value`` with masked values replaced; header names are lower-cased by the
        caller. A repeated name keeps its last value."""
        out: dict[str, str] = {}
        for name, value in pairs:
            out[name] = MASKED if self.masked(name) else value
        return out

    def query(self, query_string: str) -> dict[str, str]:
        """A query string parsed into ``name -> value`` (masked where the agent masks)."""
        return self.apply(parse_qsl(query_string, keep_blank_values=True))


def agent_mask(agent: Any) -> Mask:
    """The agent's mask as configured (``Mask(())`` for an agent without one)."""
    config = getattr(agent, "config", None)
    entries = tuple(getattr(config, "mask", ()) or ())
    return Mask(entries, bool(getattr(config, "mask_ignore_case", True)))


def header_picker(capture: Iterable[str]) -> frozenset[bytes]:
    """Header names to capture, lower-cased bytes as ASGI carries them."""
    return frozenset(h.strip().lower().encode("latin-1") for h in capture)


def missing_extra(integration: str, package: str, extra: str) -> ImportError:
    """The one clear ImportError an integration raises when its framework is absent."""
    return ImportError(
        f"mantis_py.integrations.{integration} needs {package}, which is not installed: "
        f"pip install 'mantis_py[{extra}]'"
    )


def plain_extra(value: Any) -> Any:
    """A log record's ``extra`` value as the agent ships it: JSON scalars and containers as
    they are, anything else as its ``str()`` (an object would otherwise drop the whole event)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping | list | tuple):
        return value
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"
