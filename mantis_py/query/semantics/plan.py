"""The plan of a checked query: the JSON object ``mantis-py check`` prints (docs/mql.md#commands).

The plan is derived from an :class:`~mantis_py.query.semantics.analysis.Analysis` only; members come in the
order of the §7.2 table. In ``events`` mode the agent has no window, group keys or partial states
(``null``, ``[]``, ``[]``); the gateway part always describes what the gateway does.

A JOIN query (docs/mql.md#join-and-anomaly) marks each source with its ``side``; its agents run SAMPLE only
(``agent.where`` is null) and the gateway part gains ``join`` and ``where``. An ANOMALY clause
adds ``gateway.anomaly``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..syntax import ast
from ..syntax.format import format_condition, format_operand, format_sample

__all__ = ["DEFAULT_JOIN_CAPACITY", "Analysed", "plan_json", "window_json"]

DEFAULT_JOIN_CAPACITY = 10000
"""Rows a JOIN holds per side (the oldest are evicted first); the plan shows it as
``held_per_side`` and ``run/join.py`` uses it as the default capacity."""


class _Column(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def operand(self) -> ast.Operand: ...
    @property
    def role(self) -> str: ...
    @property
    def hidden(self) -> bool: ...


class Analysed(Protocol):
    """What the plan reads of an :class:`~mantis_py.query.semantics.analysis.Analysis`. A
    protocol rather than an import, so that ``Analysis.plan()`` can call :func:`plan_json`
    without an import cycle between the two modules."""

    @property
    def query(self) -> ast.Query: ...
    @property
    def canonical(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def columns(self) -> Sequence[_Column]: ...
    @property
    def fields(self) -> Sequence[str]: ...
    @property
    def ships(self) -> str: ...
    @property
    def completes(self) -> bool: ...


def window_json(w: ast.Window | None) -> dict[str, Any] | None:
    """``{"type": "tumbling", "length": 10}``, ``{"type": "sliding", "length": 60, "every": 30}``,
    ``{"type": "count", "size": 100}``, or None without a WINDOW."""
    if w is None:
        return None
    if isinstance(w, ast.CountWindow):
        return {"type": "count", "size": w.size}
    if w.is_tumbling:
        return {"type": "tumbling", "length": w.length}
    return {"type": "sliding", "length": w.length, "every": w.every}


def _partials(a: Analysed) -> list[str]:
    """Partial states in select-list order, then hidden HAVING aggregates; literals need none.
    Two columns computing the same state share it (listed once)."""
    states: list[str] = []
    for column in a.columns:
        if column.role == "aggregate":
            text = format_operand(column.operand)
        elif column.role == "first":
            text = f"first({format_operand(column.operand)})"
        else:
            continue
        if text not in states:
            states.append(text)
    return states


def _sample_text(sample: ast.Sample | None) -> str | None:
    if sample is None:
        return None
    text = format_sample(sample)
    return text if text.upper().startswith("SAMPLE") else f"SAMPLE {text}"


def plan_json(a: Analysed) -> dict[str, Any]:
    """The plan of docs/mql.md#commands as a JSON-able dict, members in the documented order.

    For ``select count(*) from x window 10`` the agent part holds ``"ships": "partials"`` and
    ``"partials": ["count(*)"]``.
    """
    q = a.query
    window = window_json(q.window)
    group_by = [format_operand(g) for g in q.group_by]
    partials = a.ships == "partials"
    joined = bool(q.joins)
    sources = [{"app": s.app, "stream": s.stream or "default"} for s in q.sources]
    if joined:  # docs/mql.md#join-and-anomaly: side A is FROM, side B the JOIN sources
        sources = [{**s, "side": "A"} for s in sources] + [
            {"app": s.app, "stream": s.stream or "default", "side": "B"} for s in q.joins[0].sources
        ]
    where = None if q.where is None else format_condition(q.where)
    plan = {
        "canonical": a.canonical,
        "kind": a.kind,
        "mode": a.mode,
        "sources": sources,
        "fields": list(a.fields),
        "columns": [c.name for c in a.columns if not c.hidden] if a.kind == "aggregate" else None,
        "agent": {
            "sample": _sample_text(q.sample),
            "where": None if joined else where,  # a JOIN query filters joined rows
            "ships": a.ships,
            "window": window if partials else None,
            "group_by": group_by if partials else [],
            "partials": _partials(a) if partials else [],
        },
        "gateway": {
            "window": window,
            "group_by": group_by,
            "having": None if q.having is None else format_condition(q.having),
            "order_by": [
                format_operand(k.operand) + (" DESC" if k.desc else "") for k in q.order_by
            ],
            "limit": q.limit,
            "completes": a.completes,
        },
    }
    gateway: dict[str, Any] = plan["gateway"]  # type: ignore[assignment]
    if joined:
        j = q.joins[0]
        gateway["join"] = {
            "a": [f"{s.app}/{s.stream or 'default'}" for s in q.sources],
            "b": [f"{s.app}/{s.stream or 'default'}" for s in j.sources],
            "seconds": j.seconds,
            "on": format_operand(j.on),
            "held_per_side": DEFAULT_JOIN_CAPACITY,
        }
        gateway["where"] = where
    if q.anomaly is not None:
        gateway["anomaly"] = {
            "operand": format_operand(q.anomaly.operand),
            "alpha": q.anomaly.alpha,
            "beta": q.anomaly.beta,
            "runs": "after SELECT, before HAVING",
        }
    return plan
