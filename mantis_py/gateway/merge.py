"""Glue around the query engine's Merger: one *run* per merged query, its client attachments. Pure.

Theory: the engine's ``PreparedQuery.merger(start=, grace=, caps=)`` does the real work (windows,
grace for late parts, group merge, HAVING / ORDER BY / LIMIT, docs/architecture.md). A :class:`Run`
wraps one merger with what the gateway needs around it:

- its *members*: one per agent instance and source, named by :func:`member_key` (app, instance,
  stream), so coverage counts exactly the parts expected and an agent that reconnects (even
  before its old connection is noticed dead) is one member. Each member holds the set of
  connections that carry it (``add_agent(member, conn, now)``); the merger hears
  ``add_member`` when the first one arrives and ``remove_member`` when the last one leaves.
  A connection is any string: an agent connection id here, or (cluster) a peer gateway's name
  for members that report through another gateway;
- the notices of the last poll (``late``, ``groups-folded``, ...), turned into drop counts for
  the next window's meta. Coverage is a typed value (``query.run.outputs.Coverage``): each
  partials window carries its own (``Rows.coverage``), and ``merger.coverage`` is the last one;
- its *attachments*: the client queries it serves. A shared run serves every client that
  submitted the same canonical text; each attachment has its own start time ``T0`` and receives
  only windows that start at or after it (docs/mql.md#windows), and its own drop counters.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..query.run.outputs import Coverage, Notice, Output, OutputKind

if TYPE_CHECKING:
    from ..query.state.caps import Caps

__all__ = ["Attachment", "MergerSide", "PreparedSide", "Run", "member_key", "output_kind"]


class MergerSide(Protocol):
    """What the gateway calls on a query's merger (``query.run.engine.Merger``, or a wrapper)."""

    def add_agent(self, member: str, now: float) -> None: ...

    def remove_agent(self, member: str, now: float) -> None: ...

    def receive_events(self, member: str, records: list[dict[str, Any]], now: float) -> None: ...

    def receive_part(self, member: str, part: dict[str, Any], now: float) -> bool: ...

    def poll(self, now: float) -> list[Output]: ...

    @property
    def coverage(self) -> Coverage | None:
        """The coverage of the last partials window (None: unknown, every expected agent)."""


class PreparedSide(Protocol):
    """What the gateway reads of a prepared query (``query.run.engine.PreparedQuery``)."""

    @property
    def canonical(self) -> str: ...

    @property
    def ships(self) -> str: ...

    @property
    def completes(self) -> bool: ...

    @property
    def sources(self) -> tuple[tuple[str, str], ...]: ...

    @property
    def columns(self) -> int: ...

    def merger(self, *, start: float, grace: float, caps: Caps) -> MergerSide: ...


def member_key(app: str, instance: str, stream: str) -> str:
    """The merger member name of one agent instance's part of one source. Stable across
    reconnects and gateways (it holds no connection id)."""
    return f"{app}\x1f{instance}\x1f{stream}"


@dataclass(eq=False)
class Attachment:
    """One client query served by a run."""

    client_id: str
    qid: str
    run_id: str
    start: float
    last_meta: float
    dropped: Counter[str] = field(default_factory=Counter)
    sent_dropped: dict[str, int] = field(default_factory=dict)
    force_meta: bool = False


def output_kind(out: Output) -> OutputKind:
    """``"rows"``, ``"notice"`` or ``"complete"`` for a merger output (Rows / Notice / Complete)."""
    return out.kind


class Run:
    """One merger and the client queries it serves (``prepared`` is None for a cluster edge's
    pseudo-run, whose merger only forwards what its agents send)."""

    def __init__(self, run_id: str, prepared: PreparedSide | None, merger: MergerSide, canonical: str,
                 sources: tuple[tuple[str, str], ...], shared_key: tuple[str, str],
                 shared: bool) -> None:
        self.run_id = run_id
        self.prepared = prepared
        self.merger = merger
        self.canonical = canonical
        self.sources = sources
        self.shared_key = shared_key
        self.shared = shared
        self.subs: tuple[str, ...] = ()
        self.members: dict[str, set[str]] = {}  # member key -> connections carrying it
        self.attachments: dict[tuple[str, str], Attachment] = {}
        self._notices: Counter[str] = Counter()
        self.empty_since: float | None = None  # when the last agent of its apps left

    @property
    def columns(self) -> int:
        """What it costs its users' live budgets (docs/operations.md, ``live_columns_per_user``)."""
        return self.prepared.columns if self.prepared is not None else 0

    def add_agent(self, member: str, conn: str, now: float) -> None:
        """Connection ``conn`` carries ``member``; the merger hears of the first one only."""
        conns = self.members.get(member)
        if conns is None:
            self.members[member] = {conn}
            self.merger.add_agent(member, now)
        else:
            conns.add(conn)

    def remove_agent(self, member: str, conn: str, now: float) -> None:
        """Connection ``conn`` no longer carries ``member``; the merger hears when none does."""
        conns = self.members.get(member)
        if conns is None or conn not in conns:
            return
        conns.discard(conn)
        if not conns:
            del self.members[member]
            self.merger.remove_agent(member, now)

    def notice(self, out: Notice) -> None:
        """Record a merger notice: a loss (``NoticeKind.dropped``) becomes a drop count of the
        next window's meta; coverage and clamped percentiles are not losses (a window's coverage
        comes with its rows, ``Rows.coverage``)."""
        reason = out.name.dropped
        if reason is not None:
            self._notices[reason] += out.value or 1

    def take_notices(self) -> Counter[str]:
        out, self._notices = self._notices, Counter()
        return out

    def coverage(self, expected: int) -> Coverage:
        """The coverage to report now (a meta frame between windows): the merger's last
        window's for partials queries, else every expected agent (events queries: the gateway
        cannot know who had nothing to send)."""
        if self.prepared is not None and self.prepared.ships == "partials":
            cov = self.merger.coverage
            if cov is not None:
                return cov
        return Coverage(expected, expected)

    @staticmethod
    def window_coverage(rows_coverage: Coverage | None, expected: int) -> Coverage:
        """The coverage of a window just emitted: the one its rows carry, else (events queries)
        every expected agent."""
        return rows_coverage if rows_coverage is not None else Coverage(expected, expected)
