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
  the next window's meta, and the last coverage the merger reported;
- its *attachments*: the client queries it serves. A shared run serves every client that
  submitted the same canonical text; each attachment has its own start time ``T0`` and receives
  only windows that start at or after it (docs/mql.md#windows), and its own drop counters.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Attachment", "Run", "member_key", "output_kind"]


def member_key(app: str, instance: str, stream: str) -> str:
    """The merger member name of one agent instance's part of one source. Stable across
    reconnects and gateways (it holds no connection id)."""
    return f"{app}\x1f{instance}\x1f{stream}"

# Notices that are losses and go into meta.dropped (name -> reason key), docs/mql.md#limits-and-notices.
NOT_DROPS = frozenset({"coverage", "completed", "percentile-clamped"})

DROP_NOTICES = {
    "late": "late",
    "groups-folded": "groups_folded",
    "values-truncated": "values_truncated",
    "rows-truncated": "rows_truncated",
    "evaluation-errors": "evaluation_errors",
    "join-unpaired": "join_unpaired",  # JOIN: A events whose bound passed without a partner
    "join-evicted": "join_evicted",  # JOIN: held events dropped for the per-side bound
    "anomaly-groups-evicted": "anomaly_groups_evicted",
}


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


def output_kind(out: Any) -> str:
    """``"rows"``, ``"notice"`` or ``"complete"`` for a merger output (Rows / Notice / Complete)."""
    name = type(out).__name__.lower()
    if name in ("rows", "notice", "complete"):
        return name
    if hasattr(out, "rows"):
        return "rows"
    if hasattr(out, "reason"):
        return "complete"
    return "notice"


def _count(detail: Any) -> int:
    if isinstance(detail, bool):
        return 1
    if isinstance(detail, int):
        return detail
    if isinstance(detail, dict):
        for key in ("count", "events", "rows", "parts", "n", "dropped"):
            if isinstance(detail.get(key), int):
                return int(detail[key])
    return 1


class Run:
    """One merger and the client queries it serves."""

    def __init__(self, run_id: str, prepared: Any, merger: Any, canonical: str,
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
        self._coverage: dict[str, int] | None = None
        self.empty_since: float | None = None  # when the last agent of its apps left

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

    def notice(self, out: Any) -> None:
        """Record a merger notice (``name``, ``detail``, ``value``); losses become drop counts of
        the next window's meta, ``coverage`` the coverage of the window it follows."""
        name = out.name
        if name == "coverage":
            cov = _coverage(getattr(out, "detail", None), getattr(out, "value", None))
            if cov is not None:
                self._coverage = cov
            return
        if name in NOT_DROPS:
            return
        # Every other notice is a loss the user must see; unknown names (a newer engine) are
        # reported under their own name rather than silently ignored.
        reason = DROP_NOTICES.get(name) or str(name).replace("-", "_")
        if reason:
            value = getattr(out, "value", None)
            self._notices[reason] += value if isinstance(value, int) and value else _count(
                getattr(out, "detail", None))

    def take_notices(self) -> Counter[str]:
        out, self._notices = self._notices, Counter()
        return out

    def coverage(self, expected: int) -> dict[str, int]:
        """Coverage of the window just emitted: the merger's coverage notice when it sent one
        (some agents did not report), else its statistics for partials queries, else every
        expected agent (events queries: the gateway cannot know who had nothing to send)."""
        cov, self._coverage = self._coverage, None
        if cov is not None:
            return cov
        if getattr(self.prepared, "ships", "events") == "partials":
            stats = getattr(self.merger, "statistics", None)
            got = _coverage(stats().get("coverage") if stats is not None else None, None)
            if got is not None:
                return got
        return {"reporting": expected, "expected": expected}


def _coverage(detail: Any, value: Any) -> dict[str, int] | None:
    if isinstance(detail, str):  # the engine's "3/4 agents"
        head = detail.split()[0] if detail.split() else ""
        rep, _, exp = head.partition("/")
        if rep.isdigit() and exp.isdigit():
            return {"reporting": int(rep), "expected": int(exp)}
        return None
    if isinstance(detail, dict) and "reporting" in detail and "expected" in detail:
        return {"reporting": int(detail["reporting"]), "expected": int(detail["expected"])}
    if isinstance(detail, list | tuple) and len(detail) == 2:
        return {"reporting": int(detail[0]), "expected": int(detail[1])}
    return None
