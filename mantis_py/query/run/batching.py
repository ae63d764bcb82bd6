"""Batching shared by the live merger (``engine.py``) and the replay engine (``replay.py``). Pure.

Both engines run one matrix: a plain or an aggregate query (the *shape* of a batch) cut by no
window, time windows or count windows, with JOIN and ANOMALY as optional stages. The pieces here
are chosen once, from the analysis, when an engine is built; the engines then differ only in what
is really theirs (the merger: parts, members, grace and coverage; replay: the file clock, late
lines and text scopes).

- :class:`Shape` makes and finishes one batch: plain rows ``(order key, sort keys, row)`` or an
  aggregate :class:`~.groups.GroupTable`; ANOMALY, HAVING, ORDER BY, LIMIT and the row cap happen
  in :meth:`Shape.finish`. It also counts the windows a non-grouped aggregate's LIMIT ends after.
- :class:`TimeBatches`: one batch per open time window ``k``.
- :class:`CountBatches`: one batch that is cut every ``size`` events, numbered from 1.
- :class:`RowStream`: un-windowed plain rows streamed out as they come, up to LIMIT.
- :class:`Sampler`: the per-event SAMPLE decision (STICKY by key hash, RANDOM from the RNG).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..compile.compiler import CompiledQuery
from ..semantics.analysis import Analysis
from ..state.caps import Caps
from ..state.sampling import random_keep, sticky_keep
from ..syntax import ast
from .anomaly import ANOMALOUS, AnomalyRunner
from .groups import AggPlan, GroupTable

__all__ = [
    "Batch",
    "CountBatches",
    "RowStream",
    "Sampler",
    "Shape",
    "TimeBatches",
    "finish_aggregate",
    "finish_plain",
    "where_all",
]


# --------------------------------------------------------------------------- finishing


def _stable_sort(items: list[Any], keys: list[tuple[Any, ...]], desc: tuple[bool, ...]) -> list[Any]:
    idx = list(range(len(items)))
    for i in range(len(desc) - 1, -1, -1):
        column = [k[i] for k in keys]
        idx.sort(key=column.__getitem__, reverse=desc[i])
    return [items[n] for n in idx]


def finish_aggregate(
    cq: CompiledQuery, plan: AggPlan, table: GroupTable, limit: int | None,
    anomaly: AnomalyRunner | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """ANOMALY, HAVING, ORDER BY and LIMIT over a table's rows -> (output rows, evaluation
    errors). ANOMALY (docs/mql.md#join-and-anomaly) steps its estimates over every row, before HAVING."""
    pairs: list[Any] = table.rows()
    flags: dict[int, bool] | None = None
    if anomaly is not None:
        flags = {id(p[0]): f for p, f in zip(pairs, anomaly.flags(pairs), strict=True)}
    errors = 0
    if cq.having is not None:
        kept = []
        for vals, keys in pairs:
            try:
                ok = cq.having(vals, keys)
            except Exception:
                errors += 1
                ok = False
            if ok:
                kept.append((vals, keys))
        pairs = kept
    if cq.order_row is not None and len(pairs) > 1:
        sk = []
        for vals, keys in pairs:
            try:
                sk.append(cq.order_row(vals, keys))
            except Exception:
                errors += 1
                sk.append(((0,),) * len(cq.order_desc))
        pairs = _stable_sort(pairs, sk, cq.order_desc)
    if limit is not None:
        pairs = pairs[:limit]
    visible = plan.visible
    if flags is not None:
        return [{**{name: vals[j] for j, name in visible}, ANOMALOUS: flags[id(vals)]}
                for vals, _ in pairs], errors
    return [{name: vals[j] for j, name in visible} for vals, _ in pairs], errors


def finish_plain(
    cq: CompiledQuery, items: list[tuple[Any, dict[str, Any]]], limit: int | None, row_cap: int,
    anomaly: AnomalyRunner | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """ANOMALY, ORDER BY, LIMIT and ROW_CAP over a plain window's ``(sort keys, row)`` items in
    event order -> (rows, number of rows dropped by the cap)."""
    if anomaly is not None and items:
        marked = anomaly.mark_rows([row for _, row in items])
        items = [(sk, row) for (sk, _), row in zip(items, marked, strict=True)]
    if cq.order_event is not None and len(items) > 1:
        items = _stable_sort(items, [k for k, _ in items], cq.order_desc)
    if limit is not None:
        items = items[:limit]
    dropped = max(0, len(items) - row_cap)
    if dropped:
        items = items[:row_cap]
    return [row for _, row in items], dropped


def where_all(cq: CompiledQuery, events: list[Any], meta: Any) -> tuple[list[Any], int]:
    """The events that pass WHERE (no SAMPLE, ``tick()`` as null) in one generated loop, and
    the number of evaluation errors. When the loop raises, events go one at a time, and an event
    whose evaluation fails does not match."""
    try:
        assert cq.where_batch is not None
        matched: list[Any] = cq.where_batch(events, meta, None)
        return matched, 0
    except Exception:
        matched, errors = [], 0
        for e in events:
            try:
                if cq.where(e, meta, None):
                    matched.append(e)
            except Exception:
                errors += 1
        return matched, errors


# --------------------------------------------------------------------------- the shape


@dataclass(slots=True)
class Batch:
    """One batch: plain ``items`` ``(order key, sort keys, row)`` or an aggregate ``table``."""

    table: GroupTable | None
    items: list[tuple[Any, Any, dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Finished:
    """A finished batch: its rows, its notices (``rows-truncated`` or the table's own) and the
    evaluation errors of HAVING / ORDER BY, which each engine reports its own way."""

    rows: list[dict[str, Any]]
    notices: dict[str, int]
    errors: int


class Shape:
    """How batches of one query are made and finished (see the module docstring)."""

    def __init__(self, a: Analysis, cq: CompiledQuery, caps: Caps,
                 anomaly: AnomalyRunner | None) -> None:
        self.cq = cq
        self.plain = a.kind == "plain"
        self.plan: AggPlan | None = None if self.plain else AggPlan.build(a, cq.args, cq.group, caps)
        lim = a.query.limit
        self.limit = int(lim) if lim is not None else None
        self.row_cap = caps.row_cap
        self.anomaly = anomaly
        # a non-grouped aggregate's LIMIT counts windows that have rows, not rows (§3.12)
        self.counts_windows = not self.plain and not a.query.group_by
        self.windows_emitted = 0

    def new(self) -> Batch:
        return Batch(GroupTable(self.plan) if self.plan is not None else None)

    def add(self, batches: list[Batch], e: Any, m: Any, tk: Any, ok: tuple[Any, ...]) -> None:
        """Add one event (passed WHERE) to ``batches``; a plain row is projected once."""
        if self.plan is not None:
            for b in batches:
                assert b.table is not None
                b.table.add(e, m, tk, ok)
            return
        cq = self.cq
        assert cq.project is not None
        row = cq.project(e, m, tk)
        sk = cq.order_event(e, m, tk) if cq.order_event is not None else None
        for b in batches:
            b.items.append((ok, sk, row))

    def finish(self, batch: Batch, *, by_order_key: bool = False, whole: bool = False) -> Finished:
        """ANOMALY, HAVING, ORDER BY, LIMIT and the row cap over one batch. ``by_order_key``:
        plain items arrived out of order (shipped by many agents) and are put in order first;
        ``whole``: the whole result of an un-windowed query, where LIMIT counts rows and there
        is no row cap."""
        if batch.table is None:
            items = batch.items
            if by_order_key:
                items.sort(key=lambda x: x[0])
            cap = len(items) + 1 if whole else self.row_cap
            rows, dropped = finish_plain(self.cq, [(sk, row) for _, sk, row in items], self.limit,
                                         cap, self.anomaly)
            return Finished(rows, {"rows-truncated": dropped}, 0)
        assert self.plan is not None
        limit = None if self.counts_windows and not whole else self.limit
        rows, errors = finish_aggregate(self.cq, self.plan, batch.table, limit, self.anomaly)
        return Finished(rows, batch.table.notices(), errors)

    def window_ends_query(self, rows: list[dict[str, Any]]) -> bool:
        """Count a window just emitted; True when it was the last one LIMIT allows."""
        if not self.counts_windows or not rows:
            return False
        self.windows_emitted += 1
        return self.limit is not None and self.windows_emitted >= self.limit


# --------------------------------------------------------------------------- window kinds


class TimeBatches:
    """One batch per time window ``k`` not yet emitted."""

    def __init__(self, shape: Shape, window: tuple[int, int]) -> None:
        self.shape = shape
        self.window = window
        self.open: dict[int, Batch] = {}

    def get(self, k: int) -> Batch:
        b = self.open.get(k)
        if b is None:
            b = self.open[k] = self.shape.new()
        return b

    def add(self, e: Any, m: Any, tk: Any, ok: tuple[Any, ...], ks: Sequence[int], first: int) -> None:
        """Add an event to its windows ``ks`` from ``first`` (the oldest open one) on."""
        self.shape.add([self.get(k) for k in ks if k >= first], e, m, tk, ok)

    def take(self, k: int) -> Batch:
        """Window ``k``'s batch (an empty one if nothing arrived), removed."""
        b = self.open.pop(k, None)
        return b if b is not None else self.shape.new()


class CountBatches:
    """Count windows: a batch cut every ``size`` events; ``number`` of the open one (from 1)."""

    def __init__(self, shape: Shape, size: int) -> None:
        self.shape = shape
        self.size = size
        self.number = 1
        self.n = 0
        self.batch: Batch | None = None

    def add(self, e: Any, m: Any, tk: Any, ok: tuple[Any, ...]) -> tuple[int, Batch] | None:
        """Add one event; ``(number, batch)`` when that filled the window."""
        if self.batch is None:
            self.batch = self.shape.new()
        self.shape.add([self.batch], e, m, tk, ok)
        self.n += 1
        if self.n >= self.size:
            return self.cut()
        return None

    def cut(self) -> tuple[int, Batch] | None:
        """The open window, as it is (the end of the input), or None when it holds nothing."""
        if self.batch is None:
            return None
        batch, self.batch, self.n = self.batch, None, 0
        k, self.number = self.number, self.number + 1
        return k, batch


class RowStream:
    """Un-windowed plain rows, out as they come; LIMIT ends the query."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.emitted = 0
        self.done = False

    def admit(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows that still fit under LIMIT (``done`` turns True when it is reached)."""
        limit = self.limit
        if limit is not None and self.emitted + len(rows) >= limit:
            rows = rows[: limit - self.emitted]
            self.done = True
        self.emitted += len(rows)
        return rows


class Sampler:
    """SAMPLE for one query: ``keep(event, meta, tk)``. STICKY hashes the sample keys; RANDOM
    draws once from ``rng`` per call. Without SAMPLE ``active`` is False and every event stays."""

    def __init__(self, sample: ast.Sample | None, cq: CompiledQuery, rng: random.Random) -> None:
        self.sample = sample
        self.active = sample is not None
        self._sticky = cq.sticky_keys
        self._rng = rng

    def keep(self, e: Any, m: Any, tk: Any) -> bool:
        s = self.sample
        if s is None:
            return True
        if s.strategy == "STICKY":
            assert self._sticky is not None
            return sticky_keep(self._sticky(e, m, tk), s)
        return random_keep(self._rng, s)
