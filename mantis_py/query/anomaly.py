"""``ANOMALY MAD operand alpha beta``: a running median estimate per group (MQL.md §3.19). Pure.

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
- :func:`mark` returns the row with ``"anomalous"`` set, never mutating the input (a ``select
  *`` row may be the caller's event), and accepts any mapping.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .values import is_number

__all__ = [
    "ANOMALOUS",
    "DEFAULT_ANOMALY_GROUP_CAP",
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


def resolve_any(row: Any, segments: Sequence[Any]) -> Any:
    """``values.resolve`` for any mapping and sequence types (§3.3.2 rules): a str segment on a
    mapping, an int index on a non-string sequence; anything else gives None. Never raises."""
    v: Any = row
    try:
        for s in segments:
            ts = type(s)
            if ts is str:
                if isinstance(v, Mapping):
                    v = v.get(s)
                else:
                    return None
            elif ts is int:
                if isinstance(v, Sequence) and not isinstance(v, (str, bytes, bytearray)):
                    n = len(v)
                    if -n <= s < n:
                        v = v[s]
                    else:
                        return None
                else:
                    return None
            else:
                return None
            if v is None:
                return None
    except Exception:
        return None
    return v
