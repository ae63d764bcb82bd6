"""``ANOMALY MAD operand alpha beta``: a running median estimate per group (docs/mql.md#join-and-anomaly). Pure.

The clause runs on output rows, after SELECT and before HAVING. For each row:

- the operand's value ``v`` is read (the caller resolves it: on the projected row, an output
  column, or the input event; :func:`resolve_any` works on any mapping and sequence types);
- a value that is missing or not a number (null, a string, a boolean, a list, an object, NaN)
  gives ``"anomalous": false`` and leaves the estimate unchanged;
- the first numeric value of a group becomes its estimate; each later value moves the estimate
  up by ``alpha`` when the value is above it and down by ``alpha`` when below (an equal value
  leaves it);
- the row is anomalous when ``v > beta × estimate``, the estimate taken *after* that update.

Example (``alpha 1``, ``beta 2.5``), values 11, 10.1, 12.5, 200: estimates 11, 10, 11, 12; only
200 is anomalous (200 > 30). The first value is anomalous only when ``v > beta × v`` (never for a
positive value with ``beta >= 1``). The rule is applied as written to negative values too.

Theory of operation:
- Arithmetic is exact: the estimate is an ``int`` while the first value and alpha are integers,
  otherwise a ``fractions.Fraction`` (a float is taken at its exact binary value), and the
  comparison ``v > beta × estimate`` is exact, so results never depend on float rounding.
- One estimate per group: :meth:`AnomalyState.step` takes a hashable group (for example
  ``groups.hash_key`` of the GROUP BY values; ``None`` without GROUP BY). Groups live across
  windows, so at most ``group_cap`` estimates are kept; past that, the group updated least
  recently is forgotten (it starts afresh if it comes back) and the loss is counted
  (``anomaly-groups-evicted`` from :meth:`AnomalyState.take_notices`).
- :class:`AnomalyRunner` applies a query's clause to its output rows: plain rows (the operand is
  a path on the row, so ``select *`` reads the event and an alias reads its column) and
  aggregate rows (the operand names an output column or a GROUP BY key, resolved like HAVING,
  §3.10: the longest leading run of string segments joined with ``.``; a call names the select
  aggregate with the same canonical call).
- :func:`mark` returns the row with ``"anomalous"`` set, never mutating the input (a ``select
  *`` row may be the caller's event), and accepts any mapping.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..semantics.values import group_key, is_number
from ..syntax import ast

__all__ = [
    "ANOMALOUS",
    "DEFAULT_ANOMALY_GROUP_CAP",
    "AnomalyRunner",
    "AnomalySpec",
    "AnomalyState",
    "mark",
    "resolve_any",
]

ANOMALOUS = "anomalous"
"""The member every output row gains."""

DEFAULT_ANOMALY_GROUP_CAP = 10000
"""Running estimates kept per query (the same order of size as GROUP_CAP, §5.5)."""

Number = int | Fraction


def _exact(v: Any) -> Number:
    """An int stays an int; a float becomes its exact Fraction."""
    if type(v) is int:
        return v
    return Fraction(v)


@dataclass(frozen=True, slots=True)
class AnomalySpec:
    """The clause's parameters: ``alpha`` and ``beta`` are numbers > 0 (ints or finite floats)."""

    alpha: int | float
    beta: int | float

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            v = getattr(self, name)
            if not is_number(v) or v <= 0:
                raise ValueError(f"ANOMALY {name} must be a number > 0, got {v!r}")


class AnomalyState:
    """The running estimates of one query (see the module docstring)."""

    __slots__ = ("_alpha", "_beta", "_cap", "_evicted", "_groups", "_reported", "_single")

    def __init__(self, alpha: int | float, beta: int | float,
                 group_cap: int = DEFAULT_ANOMALY_GROUP_CAP) -> None:
        AnomalySpec(alpha, beta)  # validates
        if type(group_cap) is not int or group_cap < 1:
            raise ValueError(f"group_cap must be an integer >= 1, got {group_cap!r}")
        self._alpha: Number = _exact(alpha)
        self._beta: Number = _exact(beta)
        self._cap = group_cap
        self._single: Number | None = None
        self._groups: OrderedDict[Hashable, Number] = OrderedDict()
        self._evicted = 0
        self._reported = 0

    def _update(self, est: Number | None, v: Any) -> tuple[Number, bool]:
        if est is None:
            est = _exact(v)
        elif v > est:
            est = est + self._alpha
        elif v < est:
            est = est - self._alpha
        return est, v > self._beta * est

    def step(self, value: Any, group: Hashable = None) -> bool:
        """Feed one row's value for ``group``; True when the row is anomalous. Never raises."""
        if not is_number(value):
            return False
        try:
            if group is None:
                self._single, flag = self._update(self._single, value)
                return flag
            groups = self._groups
            est = groups.get(group)
            if est is None and len(groups) >= self._cap:
                groups.popitem(last=False)
                self._evicted += 1
            est, flag = self._update(est, value)
            groups[group] = est
            groups.move_to_end(group)
            return flag
        except Exception:  # e.g. an unhashable group from a caller bug: never fail the row
            return False

    def estimate(self, group: Hashable = None) -> Number | None:
        """The current estimate of ``group`` (None before its first numeric value)."""
        if group is None:
            return self._single
        return self._groups.get(group)

    @property
    def groups(self) -> int:
        """Estimates kept for GROUP BY groups now (at most ``group_cap``)."""
        return len(self._groups)

    @property
    def evicted(self) -> int:
        """Groups forgotten so far because ``group_cap`` was reached."""
        return self._evicted

    def take_notices(self) -> dict[str, int]:
        """``{"anomaly-groups-evicted": n}`` for the groups forgotten since the last call."""
        n = self._evicted - self._reported
        if n <= 0:
            return {}
        self._reported = self._evicted
        return {"anomaly-groups-evicted": n}


def mark(row: Any, flag: bool) -> dict[str, Any]:
    """A new dict: ``row``'s members (any mapping; anything else counts as ``{}``) with
    ``"anomalous"`` set to ``flag``. An existing ``anomalous`` member keeps its place."""
    if type(row) is dict:
        out = row.copy()
    elif isinstance(row, Mapping):
        out = {k: v for k, v in row.items()}
    else:
        out = {}
    out[ANOMALOUS] = flag
    return out


def _member(v: Any, s: Any) -> Any:
    """One path step on any mapping (a str segment) or non-string sequence (an int index)."""
    if type(s) is str:
        return v.get(s) if isinstance(v, Mapping) else None
    if type(s) is int and isinstance(v, Sequence) and not isinstance(v, (str, bytes, bytearray)):
        return v[s] if -len(v) <= s < len(v) else None
    return None


def resolve_any(row: Any, segments: Sequence[Any]) -> Any:
    """``values.resolve`` for any mapping and sequence types (§3.3.2 rules): a str segment on a
    mapping, an int index on a non-string sequence; anything else gives None. Never raises."""
    v: Any = row
    try:
        for s in segments:
            v = _member(v, s)
            if v is None:
                return None
    except Exception:
        return None
    return v


# --------------------------------------------------------------------------- a query's clause


def _leading_names(segments: Sequence[Any]) -> list[str]:
    out: list[str] = []
    for s in segments:
        if type(s) is not str:
            break
        out.append(s)
    return out


def _key_name(op: Any) -> str | None:
    if isinstance(op, ast.Property):
        names = _leading_names(op.segments)
        if len(names) == len(op.segments):
            return ".".join(names)
    return None


class AnomalyRunner:
    """A query's ANOMALY clause over its output rows, in output order (see the module doc).

    Build it with :meth:`for_query` (None when the query has no clause). ``columns`` are the
    aggregate query's column names and operands in column order (``Analysis.columns``: visible
    ones first); a plain query passes none.
    """

    __slots__ = ("_col", "_key", "_path", "_rest", "grouped", "state")

    def __init__(self, clause: ast.Anomaly, *, aggregate: bool,
                 columns: Sequence[tuple[str, Any, bool]] = (),
                 group_by: Sequence[Any] = (),
                 group_cap: int = DEFAULT_ANOMALY_GROUP_CAP) -> None:
        self.state = AnomalyState(clause.alpha, clause.beta, group_cap)
        self.grouped = aggregate and bool(group_by)
        self._path: tuple[Any, ...] | None = None
        self._col: int | None = None
        self._key: int | None = None
        self._rest: tuple[Any, ...] = ()
        op = clause.operand
        if not aggregate:
            if isinstance(op, ast.Property) and not op.has_star:
                self._path = tuple(op.segments)
            return
        if isinstance(op, ast.Call):
            for j, (_name, operand, hidden) in enumerate(columns):
                if not hidden and operand == op:
                    self._col = j
                    return
            return
        if not isinstance(op, ast.Property) or op.has_star:
            return
        names = _leading_names(op.segments)
        visible = {name: j for j, (name, _o, hidden) in enumerate(columns) if not hidden}
        keys: dict[str, int] = {}
        for i, g in enumerate(group_by):
            k = _key_name(g)
            if k is not None:
                keys.setdefault(k, i)
        for n in range(len(names), 0, -1):
            run = ".".join(names[:n])
            if run in visible:
                self._col = visible[run]
            elif run in keys:
                self._key = keys[run]
            else:
                continue
            self._rest = tuple(op.segments[n:])
            return

    @classmethod
    def for_query(cls, a: Any, group_cap: int = DEFAULT_ANOMALY_GROUP_CAP) -> AnomalyRunner | None:
        """The runner of an ``Analysis`` ``a`` (None without an ANOMALY clause)."""
        q = a.query
        if q.anomaly is None:
            return None
        cols = tuple((c.name, c.operand, c.hidden) for c in a.columns)
        return cls(q.anomaly, aggregate=a.kind == "aggregate", columns=cols,
                   group_by=q.group_by, group_cap=group_cap)

    def mark_rows(self, rows: list[Any]) -> list[dict[str, Any]]:
        """Plain rows in output order -> new rows with ``"anomalous"`` (one estimate)."""
        path = self._path
        step = self.state.step
        if path is None:
            return [mark(r, False) for r in rows]
        return [mark(r, step(resolve_any(r, path))) for r in rows]

    def flags(self, pairs: Sequence[tuple[Sequence[Any], Sequence[Any]]]) -> list[bool]:
        """Aggregate rows as ``(vals, keys)`` (``GroupTable.rows()``), in output order -> one
        flag per row; steps the estimate of each row's group."""
        out: list[bool] = []
        step = self.state.step
        for vals, keys in pairs:
            try:
                if self._col is not None:
                    v = vals[self._col]
                elif self._key is not None:
                    v = keys[self._key]
                else:
                    out.append(False)
                    continue
                if self._rest:
                    v = resolve_any(v, self._rest)
                g: Hashable = None
                if self.grouped:
                    g = ("g", tuple(group_key(k) for k in keys))
                out.append(step(v, g))
            except Exception:
                out.append(False)
        return out

    def take_notices(self) -> dict[str, int]:
        """See :meth:`AnomalyState.take_notices`."""
        return self.state.take_notices()
