"""Group tables: one window's groups with one aggregate state per column (docs/mql.md#aggregate-queries).

Theory of operation:
- An :class:`AggPlan` is built once per prepared query and caps: for every column (visible and
  hidden) the aggregate object (``aggregates.make_aggregate`` / ``make_first``), the compiled
  argument getter, or the literal value.
- A :class:`GroupTable` holds the groups of one batch (a window, a count window, or the whole
  replay) in first-seen order, each as ``[raw key values, first order key, states]``. Past
  ``GROUP_CAP`` groups, new keys fold into one overflow group (§3.9), counted in ``folded``.
- The same table serves the replay engine (events added one at a time), the agent (then encoded
  as a part) and the gateway (parts merged in any order; groups are re-sorted by their first order
  key, which makes the merged table equal to the single-node one, §4.4).
- ``rows()`` turns a table into ``(vals, keys)`` pairs (every column's final value, hidden ones
  included, and the key values) in first-seen order with the overflow group last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..semantics.analysis import Analysis
from ..semantics.values import group_key
from ..state.aggregates import decode_value, encode_value, make_aggregate, make_first
from ..state.caps import Caps
from ..syntax import ast

__all__ = ["OTHER", "AggPlan", "GroupTable", "hash_key"]

OTHER = "__other__"


def hash_key(raw: tuple[Any, ...]) -> Any:
    """The group-table key for raw key values; the compiled ``group`` function computes the same."""
    if len(raw) == 1:
        return group_key(raw[0])
    return tuple(group_key(v) for v in raw)


@dataclass(frozen=True, slots=True)
class AggPlan:
    """Per-column evaluation plan of an aggregate query (see the module docstring)."""

    aggs: tuple[Any, ...]  # aggregate object per stateful column
    cols: tuple[int, ...]  # the column index of each stateful column
    getters: tuple[Callable[[Any, Any, Any], Any] | None, ...]  # None: count(*) (adds True)
    literals: tuple[tuple[int, Any], ...]  # (column index, value) of literal columns
    ncols: int
    key_cols: tuple[int, ...]  # columns that show a GROUP BY key ("__other__" when folded)
    group: Callable[[Any, Any, Any], Any] | None
    visible: tuple[tuple[int, str], ...]  # (column index, name) of the output columns
    caps: Caps
    nkeys: int = 0
    fold: Callable[..., None] | None = None
    fold_run: Callable[..., tuple[Any, Any, int]] | None = None
    fold_source: str = ""

    @classmethod
    def build(cls, a: Analysis, args: tuple[Any, ...], group: Any, caps: Caps) -> AggPlan:
        aggs, cols, getters, literals, key_cols = [], [], [], [], []
        group_by = tuple(a.query.group_by)
        for j, col in enumerate(a.columns):
            if col.role == "literal":
                assert isinstance(col.operand, ast.Literal)
                literals.append((j, col.operand.value))
                continue
            if col.role == "first":
                aggs.append(make_first())
                if col.operand in group_by:
                    key_cols.append(j)
            else:
                call = col.operand
                assert isinstance(call, ast.Call)
                q = None
                if call.name == "percentile" and len(call.args) > 1:
                    lit = call.args[1]
                    q = lit.value if isinstance(lit, ast.Literal) else None
                arg0 = call.args[0] if call.args else None
                if isinstance(arg0, ast.Literal):
                    literals_arg = arg0.value
                    aggs.append(make_aggregate(call.name, distinct=call.distinct, q=q, caps=caps))
                    cols.append(j)
                    getters.append(_const_getter(literals_arg))
                    continue
                aggs.append(make_aggregate(call.name, distinct=call.distinct, q=q, caps=caps))
            cols.append(j)
            getters.append(args[j])
        visible = tuple((j, c.name) for j, c in enumerate(a.columns) if not c.hidden)
        from ..compile.compiler import compile_fold

        fold, fold_run, source = compile_fold(a, tuple(aggs), tuple(cols))
        return cls(
            tuple(aggs), tuple(cols), tuple(getters), tuple(literals), len(a.columns),
            tuple(key_cols), group, visible, caps, len(group_by), fold, fold_run, source,
        )


def _const_getter(value: Any) -> Callable[[Any, Any, Any], Any]:
    def get(e: Any, m: Any, tk: Any) -> Any:
        return value

    return get


class GroupTable:
    """The groups of one batch. ``groups`` maps a hash key to ``[raw, first_ok, states]``."""

    __slots__ = ("folded", "groups", "other", "plan")

    def __init__(self, plan: AggPlan) -> None:
        self.plan = plan
        self.groups: dict[Any, list[Any]] = {}
        self.other: list[Any] | None = None
        self.folded = 0
        if plan.group is None:
            self.groups[()] = [(), None, [a.create() for a in plan.aggs]]

    def _new(self, raw: Any, ok: Any) -> list[Any]:
        return [raw, ok, [a.create() for a in self.plan.aggs]]

    def slot(self, hk: Any, raw: Any, ok: Any) -> list[Any]:
        """The group for ``hk``, created (or folded into the overflow group) when new."""
        g = self.groups.get(hk)
        if g is not None:
            return g
        if len(self.groups) < self.plan.caps.group_cap:
            g = self.groups[hk] = self._new(raw, ok)
            return g
        if self.other is None:
            self.other = self._new(None, ok)
        return self.other

    def add(self, e: Any, m: Any, tk: Any, ok: Any) -> None:
        """Fold one event (that passed SAMPLE and WHERE) into its group."""
        self.plan.fold(self, e, m, tk, ok)  # type: ignore[misc]

    def add_generic(self, e: Any, m: Any, tk: Any, ok: Any) -> None:
        """:meth:`add` without the generated fast paths (the reference for tests)."""
        plan = self.plan
        g: list[Any] | None
        if plan.group is None:
            g = self.groups[()]
        else:
            hk, raw = plan.group(e, m, tk)
            g = self.groups.get(hk)
            if g is None:
                g = self.slot(hk, raw, ok)
            if g is self.other:
                self.folded += 1
        if g[1] is None:
            g[1] = ok
        states = g[2]
        for i, (agg, get) in enumerate(zip(plan.aggs, plan.getters, strict=True)):
            states[i] = agg.add(states[i], True if get is None else get(e, m, tk), ok)

    # ---------------------------------------------------------------- parts (§4.3)

    def encode(self) -> dict[str, Any]:
        """A JSON-able dict of every group's key, first order key and encoded states."""
        aggs = self.plan.aggs

        def enc(g: list[Any]) -> list[Any]:
            return [
                [encode_value(v) for v in g[0]],
                None if g[1] is None else list(g[1]),
                [a.encode(s) for a, s in zip(aggs, g[2], strict=True)],
            ]

        return {
            "groups": [enc(g) for g in self.groups.values()],
            "other": None if self.other is None else enc(self.other),
            "folded": self.folded,
        }

    def merge_encoded(self, obj: dict[str, Any]) -> None:
        """Merge a part produced by :meth:`encode` (on any node) into this table."""
        aggs = self.plan.aggs
        cap = self.plan.caps.group_cap
        for raw_l, ok_l, enc in obj.get("groups") or ():
            raw = tuple(decode_value(v) for v in raw_l)
            ok = None if ok_l is None else tuple(ok_l)
            states = [a.decode(s) for a, s in zip(aggs, enc, strict=True)]
            hk = () if self.plan.group is None else hash_key(raw)
            g = self.groups.get(hk)
            if g is None:
                if len(self.groups) < cap:
                    self.groups[hk] = [raw, ok, states]
                    continue
                self.folded += 1
                if self.other is None:
                    self.other = [None, ok, states]
                    continue
                g = self.other
            self._merge_into(g, raw, ok, states)
        other = obj.get("other")
        if other is not None:
            ok = None if other[1] is None else tuple(other[1])
            states = [a.decode(s) for a, s in zip(aggs, other[2], strict=True)]
            if self.other is None:
                self.other = [None, ok, states]
            else:
                self._merge_into(self.other, None, ok, states)
        self.folded += int(obj.get("folded") or 0)

    def _merge_into(self, g: list[Any], raw: Any, ok: Any, states: list[Any]) -> None:
        aggs = self.plan.aggs
        g[2] = [a.merge(x, y) for a, x, y in zip(aggs, g[2], states, strict=True)]
        if ok is not None and (g[1] is None or ok < g[1]):
            g[1] = ok
            if raw is not None:
                g[0] = raw

    # ---------------------------------------------------------------- results

    def rows(self) -> list[tuple[list[Any], tuple[Any, ...]]]:
        """``(vals, keys)`` per group, first-seen order, overflow last (see the module doc)."""
        plan = self.plan
        groups = list(self.groups.values())
        if plan.group is not None:
            groups.sort(key=_first_ok)
        out = []
        for g in groups:
            out.append((self._values(g, False), tuple(g[0])))
        if self.other is not None:
            out.append((self._values(self.other, True), (OTHER,) * plan.nkeys))
        return out

    def _values(self, g: list[Any], folded: bool) -> list[Any]:
        plan = self.plan
        vals: list[Any] = [None] * plan.ncols
        for j, agg, s in zip(plan.cols, plan.aggs, g[2], strict=True):
            vals[j] = agg.result(s)
        for j, v in plan.literals:
            vals[j] = v
        if folded:
            for j in plan.key_cols:
                vals[j] = OTHER
        return vals

    def notices(self) -> dict[str, int]:
        """Summed ``aggregates.notices`` of every state, plus ``groups-folded``."""
        out: dict[str, int] = {}
        groups = list(self.groups.values())
        if self.other is not None:
            groups.append(self.other)
        for g in groups:
            for agg, s in zip(self.plan.aggs, g[2], strict=True):
                for name, n in agg.notices(s).items():
                    if n:
                        out[name] = out.get(name, 0) + n
        if self.folded:
            out["groups-folded"] = self.folded
        return out


def _first_ok(g: list[Any]) -> Any:
    ok = g[1]
    return (1,) if ok is None else (0, ok)
