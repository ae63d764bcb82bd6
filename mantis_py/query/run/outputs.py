"""What the engines hand out: typed values, the whole vocabulary of the engine <-> gateway seam.

A merger's ``poll(now)`` returns :data:`Output` values in order: :class:`Rows` (one window, one
count window or a batch of un-windowed rows), the :class:`Notice` values that belong to the rows
before them (or to the whole result when no rows came first), and at most one :class:`Complete`.

- :class:`Coverage` says how many of the expected agents a window's result covers; a partials
  window carries it on its :class:`Rows` (``Rows.coverage``), so nobody parses it back from text.
- :class:`NoticeKind` names every notice the engines emit, with its unit and whether (and under
  which reason key) it is a loss the gateway reports in ``meta.dropped`` (docs/mql.md#limits-and-notices).
  ``_NOTICE_TABLE`` is the one table of notices.
- :class:`CompleteReason` names why a query ended: ``limit`` from the engine, the others from the
  gateway when it ends a query itself.

Pure, and light: the gateway imports it without compiling anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal

__all__ = [
    "Complete",
    "CompleteReason",
    "Coverage",
    "Notice",
    "NoticeKind",
    "Output",
    "OutputKind",
    "Rows",
    "make_notice",
]

OutputKind = Literal["rows", "notice", "complete"]


@dataclass(frozen=True, slots=True)
class Coverage:
    """How many of the agents expected in a window reported it (``reporting`` of ``expected``).

    ``expected`` counts the members live when the window began (plus those that left during it);
    ``reporting`` those whose part counts: on time, and observed throughout the window."""

    reporting: int
    expected: int

    @property
    def complete(self) -> bool:
        """True when every expected agent reported (and at least one was expected)."""
        return self.expected > 0 and self.reporting >= self.expected

    def to_json(self) -> dict[str, int]:
        """The ``coverage`` object of the client protocol's ``meta`` frame (docs/protocol.md)."""
        return {"reporting": self.reporting, "expected": self.expected}

    def __str__(self) -> str:
        return f"{self.reporting}/{self.expected} agents"


class NoticeKind(StrEnum):
    """Every notice an engine emits. A ``str``: ``NoticeKind.LATE == "late"``."""

    COVERAGE = "coverage"
    GROUPS_FOLDED = "groups-folded"
    VALUES_TRUNCATED = "values-truncated"
    ROWS_TRUNCATED = "rows-truncated"
    PERCENTILE_CLAMPED = "percentile-clamped"
    EVALUATION_ERRORS = "evaluation-errors"
    LATE = "late"
    JOIN_UNPAIRED = "join-unpaired"
    JOIN_EVICTED = "join-evicted"
    ANOMALY_GROUPS_EVICTED = "anomaly-groups-evicted"
    DUPLICATE_PARTS = "duplicate-parts"

    @property
    def unit(self) -> str:
        """The unit of the notice's number in its text (``"57 events"``); ``""`` for coverage."""
        return _NOTICE_TABLE[self][0]

    @property
    def dropped(self) -> str | None:
        """The ``meta.dropped`` reason key this loss is counted under, or None when the notice
        is not a loss (coverage, clamped percentiles)."""
        return _NOTICE_TABLE[self][1]


# The one table of notices: kind -> (unit of its number, meta.dropped reason key or None).
_NOTICE_TABLE: dict[NoticeKind, tuple[str, str | None]] = {
    NoticeKind.COVERAGE: ("", None),  # carried by Rows.coverage; the notice is for people
    NoticeKind.GROUPS_FOLDED: ("events", "groups_folded"),
    NoticeKind.VALUES_TRUNCATED: ("values", "values_truncated"),
    NoticeKind.ROWS_TRUNCATED: ("rows", "rows_truncated"),
    NoticeKind.PERCENTILE_CLAMPED: ("values", None),  # a precision note, not a loss
    NoticeKind.EVALUATION_ERRORS: ("errors", "evaluation_errors"),
    NoticeKind.LATE: ("late", "late"),
    NoticeKind.JOIN_UNPAIRED: ("events", "join_unpaired"),  # A events whose bound passed alone
    NoticeKind.JOIN_EVICTED: ("events", "join_evicted"),  # held events dropped for the side bound
    NoticeKind.ANOMALY_GROUPS_EVICTED: ("groups", "anomaly_groups_evicted"),
    NoticeKind.DUPLICATE_PARTS: ("parts", "duplicate_parts"),
}


class CompleteReason(StrEnum):
    """Why a query ended (``Complete.reason``, and the client protocol's ``complete`` frame)."""

    LIMIT = "limit"  # the engine: the LIMIT that ends the query was reached
    CANCELLED = "cancelled"  # the gateway: the client cancelled it
    EVICTED = "evicted"  # the gateway: the client was closed (too slow, over a cap)
    ERROR = "error"  # the gateway: the engine failed on this query


@dataclass(frozen=True, slots=True)
class Rows:
    """The rows of one window (``window`` is ``(start, end)`` in seconds), of count window
    ``count`` (1-based, ``window`` None) or, for an un-windowed query, a batch of rows (both None).
    ``coverage``: a partials window's coverage; None where the gateway cannot know who had
    nothing to send (events queries), which means every expected agent."""

    kind: ClassVar[OutputKind] = "rows"

    window: tuple[int, int] | None
    rows: list[dict[str, Any]]
    count: int | None = None
    coverage: Coverage | None = field(default=None, compare=False)  # equal rows are equal rows


@dataclass(frozen=True, slots=True)
class Notice:
    """A run-time notice (docs/mql.md#limits-and-notices). ``detail`` is the short text people read
    (``"57 events"``, ``"1/3 agents"``); ``value`` its number; ``window``/``count`` the scope (both
    None: the whole result); ``coverage`` the value of a ``coverage`` notice."""

    kind: ClassVar[OutputKind] = "notice"

    name: NoticeKind
    detail: str
    value: int = 0
    window: tuple[int, int] | None = None
    count: int | None = None
    coverage: Coverage | None = field(default=None, compare=False)  # the same as ``detail``


@dataclass(frozen=True, slots=True)
class Complete:
    """The query ended (the engine: :attr:`CompleteReason.LIMIT`)."""

    kind: ClassVar[OutputKind] = "complete"

    reason: CompleteReason


Output = Rows | Notice | Complete


def make_notice(name: NoticeKind, n: int, window: tuple[int, int] | None = None,
                count: int | None = None) -> Notice:
    """The notice ``name`` for ``n`` units (``"57 events"``) in the given scope."""
    return Notice(name, f"{n} {name.unit}".strip(), n, window, count)
