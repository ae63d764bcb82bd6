"""Aggregates with mergeable partial states (docs/mql.md#aggregate-queries).

Theory of operation:
- :class:`Aggregate` is a record of plain functions: ``create() -> state``,
  ``add(state, value, order_key) -> state``, ``merge(a, b) -> state``, ``result(state) -> value``,
  ``encode(state) -> JSON-able``, ``decode(obj) -> state`` and ``notices(state) -> dict``.
  Generated code fetches ``agg.add`` once and calls it per event. States may be mutable: ``add``
  and ``merge`` may mutate their first argument and always return the state to keep. ``merge``
  never mutates its second argument.
- ``add`` receives the RAW value of the argument (any JSON value, already passed through
  :func:`values.clean`); each aggregate skips nulls and, where §3.7.3 says so, non-numbers.
  ``count(*)`` and ``count(literal)`` callers pass ``True``.
- Order keys are opaque comparable tuples (live ``(t_ms, instance, seq)``, replay ``(line_no,)``),
  encoded as JSON lists and decoded back to tuples.
- Exactness: a float is taken at its exact binary value as the integer ``n·2**1074`` (every finite
  float is a multiple of ``2**-1074``), so float sums are exact Python ints, merge is ``+``, and
  the result is one correctly rounded int/int division. Ints are summed as plain ints.
- Every merge is associative and commutative, and agrees exactly with adding the events one at a
  time on a single node (§4.4). Nothing here raises on any JSON value.
- Encodings are JSON-able through orjson: ints outside the signed 64-bit range are written
  ``{"$int": "0x…"}`` (hex, because Python limits decimal conversion to 4,300 digits); an object
  with a key starting with ``$`` is wrapped ``{"$obj": {...}}``.

- ``inline`` (optional) is the aggregate's own template for the compiler's fold loops:
  ``inline(slot, value, add)`` returns Python lines, indented from column 0, that do what
  ``slot = add(slot, value, ok)`` does, faster. ``slot`` is an assignable expression holding the
  state, ``value`` an expression for the argument (None for ``count(*)``: every event counts),
  ``add()`` binds :attr:`Aggregate.add` and returns its name (call it only when the code needs
  the call, so that no unused constant is bound), and ``ok`` is the order key in scope.
  Templates may use the temporaries ``v``, ``s`` and ``b``. Without a template the compiler emits
  the call. DISTINCT wrappers have none.

The table :data:`FUNCTIONS` maps each function name to its factory; :func:`make_aggregate` adds
the DISTINCT wrapper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from math import fsum
from operator import itemgetter
from typing import Any

from mantis_py.query.semantics.values import group_key
from mantis_py.query.state.caps import DEFAULT_CAPS, Caps
from mantis_py.query.state.percentiles import (
    PercentileState,
    pct_decode,
    pct_encode,
    pct_merge,
    pct_record,
    pct_result,
)
from mantis_py.query.syntax.vocabulary import PERCENTILE_SHORTHANDS as PERCENTILE_FUNCTIONS

__all__ = [
    "FUNCTIONS",
    "PERCENTILE_FUNCTIONS",
    "Aggregate",
    "decode_value",
    "encode_value",
    "make_aggregate",
    "make_first",
]

_SHIFT = 1074
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_first = itemgetter(0)


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One aggregate call: plain functions over its partial state (see the module docstring)."""

    name: str
    create: Callable[[], Any]
    add: Callable[[Any, Any, Any], Any]
    merge: Callable[[Any, Any], Any]
    result: Callable[[Any], Any]
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]
    notices: Callable[[Any], dict[str, int]]
    distinct: bool = False
    inline: Callable[[str, str | None, Callable[[], str]], list[str]] | None = None
    """The compiler's inline template (see the module docstring), or None."""


def _no_notices(state: Any) -> dict[str, int]:
    return {}


# --------------------------------------------------------------------------- value encoding


def encode_value(v: Any) -> Any:
    """A JSON value as orjson can write it without loss (big ints tagged, ``$`` keys wrapped)."""
    t = type(v)
    if t is int:
        if _INT64_MIN <= v <= _INT64_MAX:
            return v
        return {"$int": hex(v)}
    if t is str or t is float or t is bool or v is None:
        return v
    if t is list:
        return [encode_value(x) for x in v]
    if t is dict:
        d = {k: encode_value(x) for k, x in v.items()}
        if any(k[:1] == "$" for k in v):
            return {"$obj": d}
        return d
    return v


def _parse_int(text: str) -> int:
    """``"0x…"``/``"-0x…"`` (what :func:`encode_value` writes: hex has no digit limit) or decimal."""
    if "x" in text:
        return int(text, 16)
    return int(Decimal(text))


def decode_value(v: Any) -> Any:
    """Inverse of :func:`encode_value`."""
    t = type(v)
    if t is list:
        return [decode_value(x) for x in v]
    if t is dict:
        if len(v) == 1:
            if "$int" in v:
                return _parse_int(v["$int"])
            if "$obj" in v:
                return {k: decode_value(x) for k, x in v["$obj"].items()}
        return {k: decode_value(x) for k, x in v.items()}
    return v


def _enc_key(k: Any) -> Any:
    return [encode_value(x) for x in k]


def _dec_key(k: Any) -> tuple[Any, ...]:
    return tuple(decode_value(x) for x in k)


# --------------------------------------------------------------------------- count


def _count_add(n: int, v: Any, ok: Any) -> int:
    return n if v is None else n + 1


def _count_merge(a: int, b: int) -> int:
    return a + b


def _identity(x: Any) -> Any:
    return x


def _count_inline(slot: str, value: str | None, add: Callable[[], str]) -> list[str]:
    """The state is a plain int."""
    if value is None:
        return [f"{slot} += 1"]
    return [f"if {value} is not None:", f"    {slot} += 1"]


def _make_count(q: Fraction | None, caps: Caps) -> Aggregate:
    return Aggregate(
        "count", int, _count_add, _count_merge, _identity, encode_value, decode_value, _no_notices,
        inline=_count_inline,
    )


# --------------------------------------------------------------------------- sum and average


class SumState:
    """Exact sum: ``i`` the int sum, ``f`` the float sum in units of 2**-1074 (an int), ``x`` set
    when a float was seen, ``n`` the count of numbers (used by average), ``buf`` floats not yet
    folded into ``f`` nor counted in ``n`` (at most ``_BUF`` of them; folding a batch with ``math.fsum`` is much
    cheaper than converting every float)."""

    __slots__ = ("buf", "f", "i", "n", "x")

    def __init__(self, i: int = 0, f: int = 0, x: bool = False, n: int = 0) -> None:
        self.i = i
        self.f = f
        self.x = x
        self.n = n
        self.buf: list[float] = []

    def __repr__(self) -> str:
        _fold(self)
        return f"SumState(i={self.i}, f={self.f}, x={self.x}, n={self.n})"


_BUF = 64
_MAX_ROUNDS = 40


def _exact_units(v: float) -> int:
    """``v`` in units of 2**-1074, exactly (every finite float is a multiple of 2**-1074)."""
    num, den = v.as_integer_ratio()
    return num << (_SHIFT + 1 - den.bit_length())


def _fold(st: SumState) -> None:
    """Move the buffered floats into the exact sum ``f``.

    ``fsum`` gives the correctly rounded sum of its (exact) inputs; subtracting what was found
    and summing again yields the next 53 bits of the exact sum, until the remainder is exactly 0.
    Overflow (or an unusually long expansion) falls back to converting each float.
    """
    buf = st.buf
    if not buf:
        return
    st.buf = []
    st.x = True
    st.n += len(buf)
    total = 0
    try:
        work = list(buf)
        for _ in range(_MAX_ROUNDS):
            r = fsum(work)
            if r == 0.0:
                st.f += total
                return
            total += _exact_units(r)
            work.append(-r)
    except (OverflowError, ValueError):
        pass
    for v in buf:
        st.f += _exact_units(v)


def _sum_add(st: SumState, v: Any, ok: Any) -> SumState:
    t = type(v)
    if t is int:
        st.i += v
        st.n += 1
    elif t is float and v - v == 0.0:
        buf = st.buf
        buf.append(v)
        if len(buf) >= _BUF:
            _fold(st)
    return st


def _sum_merge(a: SumState, b: SumState) -> SumState:
    _fold(a)
    _fold(b)
    a.i += b.i
    a.f += b.f
    a.x = a.x or b.x
    a.n += b.n
    return a


def _ratio(num: int, den: int) -> float | None:
    try:
        r = num / den
    except OverflowError:
        return None
    return 0.0 if r == 0.0 else r


def _sum_result(st: SumState) -> int | float | None:
    _fold(st)
    if not st.x:
        return st.i
    return _ratio((st.i << _SHIFT) + st.f, 1 << _SHIFT)


def _avg_result(st: SumState) -> float | None:
    _fold(st)
    if st.n == 0:
        return None
    if not st.x:
        return _ratio(st.i, st.n)
    return _ratio((st.i << _SHIFT) + st.f, st.n << _SHIFT)


def _sum_encode(st: SumState) -> Any:
    _fold(st)
    return {"i": encode_value(st.i), "f": encode_value(st.f), "x": st.x, "n": encode_value(st.n)}


def _sum_decode(obj: Any) -> SumState:
    return SumState(
        decode_value(obj["i"]), decode_value(obj["f"]), bool(obj["x"]), decode_value(obj["n"])
    )


def _sum_inline(slot: str, value: str | None, add: Callable[[], str]) -> list[str]:
    """:func:`_sum_add` inlined: ints go straight into ``i``/``n``; finite floats wait in ``buf``,
    and the call folds the buffer exactly when it would fill."""
    return [
        f"v = {value or 'True'}",
        "if v.__class__ is int:",
        f"    s = {slot}",
        "    s.i += v",
        "    s.n += 1",
        "elif v.__class__ is float and v - v == 0.0:",
        f"    b = {slot}.buf",
        f"    if len(b) < {_BUF - 1}:",
        "        b.append(v)",
        "    else:",
        f"        {slot} = {add()}({slot}, v, ok)",
    ]


def _make_sum(q: Fraction | None, caps: Caps) -> Aggregate:
    return Aggregate(
        "sum", SumState, _sum_add, _sum_merge, _sum_result, _sum_encode, _sum_decode, _no_notices,
        inline=_sum_inline,
    )


def _make_average(q: Fraction | None, caps: Caps) -> Aggregate:
    return Aggregate(
        "average", SumState, _sum_add, _sum_merge, _avg_result, _sum_encode, _sum_decode,
        _no_notices, inline=_sum_inline,
    )


# --------------------------------------------------------------------------- min and max


def _none() -> None:
    return None


def _min_add(st: Any, v: Any, ok: Any) -> Any:
    t = type(v)
    if (t is int or (t is float and v - v == 0.0)) and (
        st is None or v < st or (t is int and v == st)
    ):
        return v
    return st


def _max_add(st: Any, v: Any, ok: Any) -> Any:
    t = type(v)
    if (t is int or (t is float and v - v == 0.0)) and (
        st is None or v > st or (t is int and v == st)
    ):
        return v
    return st


def _min_merge(a: Any, b: Any) -> Any:
    return a if b is None else _min_add(a, b, None)


def _max_merge(a: Any, b: Any) -> Any:
    return a if b is None else _max_add(a, b, None)


def _minmax_result(st: Any) -> Any:
    if type(st) is float and st == 0.0:
        return 0.0
    return st


def _make_min(q: Fraction | None, caps: Caps) -> Aggregate:
    return Aggregate(
        "min", _none, _min_add, _min_merge, _minmax_result, encode_value, decode_value,
        _no_notices,
    )


def _make_max(q: Fraction | None, caps: Caps) -> Aggregate:
    return Aggregate(
        "max", _none, _max_add, _max_merge, _minmax_result, encode_value, decode_value,
        _no_notices,
    )


# --------------------------------------------------------------------------- list


class ListState:
    """``items``: (order key, value) pairs, at most VALUE_CAP; ``dropped``: values not kept;
    ``ordered``: the items are known to be in order-key order."""

    __slots__ = ("dropped", "items", "ordered")

    def __init__(self) -> None:
        self.items: list[tuple[Any, Any]] = []
        self.dropped = 0
        self.ordered = True

    def __repr__(self) -> str:
        return f"ListState({self.items!r}, dropped={self.dropped})"


def _make_list(q: Fraction | None, caps: Caps) -> Aggregate:
    cap = caps.value_cap

    def add(st: ListState, v: Any, ok: Any) -> ListState:
        if v is None:
            return st
        items = st.items
        if len(items) < cap:
            if st.ordered and items and ok < items[-1][0]:
                st.ordered = False
            items.append((ok, v))
            return st
        # Full: keep the VALUE_CAP smallest order keys.
        st.dropped += 1
        if not st.ordered:
            items.sort(key=_first)
            st.ordered = True
        if ok < items[-1][0]:
            items.pop()
            _insort(items, (ok, v))
        return st

    def merge(a: ListState, b: ListState) -> ListState:
        if not b.items and not b.dropped:
            return a
        items = a.items + b.items
        items.sort(key=_first)
        a.dropped += b.dropped
        if len(items) > cap:
            a.dropped += len(items) - cap
            del items[cap:]
        a.items = items
        a.ordered = True
        return a

    def result(st: ListState) -> Any:
        if not st.items:
            return None
        if not st.ordered:
            st.items.sort(key=_first)
            st.ordered = True
        return [v for _, v in st.items]

    def encode(st: ListState) -> Any:
        if not st.ordered:
            st.items.sort(key=_first)
            st.ordered = True
        return {"v": [[_enc_key(k), encode_value(v)] for k, v in st.items], "d": st.dropped}

    def decode(obj: Any) -> ListState:
        st = ListState()
        st.items = [(_dec_key(k), decode_value(v)) for k, v in obj["v"]]
        st.items.sort(key=_first)
        st.dropped = int(obj.get("d", 0))
        return st

    def notices(st: ListState) -> dict[str, int]:
        return {"values-truncated": st.dropped} if st.dropped else {}

    return Aggregate("list", ListState, add, merge, result, encode, decode, notices)


def _insort(items: list[tuple[Any, Any]], item: tuple[Any, Any]) -> None:
    lo, hi = 0, len(items)
    k = item[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if k < items[mid][0]:
            hi = mid
        else:
            lo = mid + 1
    items.insert(lo, item)


# --------------------------------------------------------------------------- percentiles


def _make_percentile_q(name: str, q: Fraction, caps: Caps) -> Aggregate:
    exact_max = caps.percentile_exact_max

    def add(st: PercentileState, v: Any, ok: Any) -> PercentileState:
        t = type(v)
        if t is int or (t is float and v - v == 0.0):
            pct_record(st, v, exact_max)
        return st

    def merge(a: PercentileState, b: PercentileState) -> PercentileState:
        return pct_merge(a, b, exact_max)

    def result(st: PercentileState) -> Any:
        return pct_result(st, q)

    def encode(st: PercentileState) -> Any:
        return pct_encode(st, encode_value)

    def decode(obj: Any) -> PercentileState:
        return pct_decode(obj, decode_value)

    def notices(st: PercentileState) -> dict[str, int]:
        return {"percentile-clamped": st.clamped} if st.clamped else {}

    return Aggregate(name, PercentileState, add, merge, result, encode, decode, notices)


def _percentile_factory(name: str) -> Callable[[Fraction | None, Caps], Aggregate]:
    def make(q: Fraction | None, caps: Caps) -> Aggregate:
        return _make_percentile_q(name, PERCENTILE_FUNCTIONS[name], caps)

    return make


def _make_percentile(q: Fraction | None, caps: Caps) -> Aggregate:
    if q is None or not (0 <= q <= 100):
        raise ValueError(f"percentile needs 0 <= q <= 100, got {q!r}")
    return _make_percentile_q("percentile", q, caps)


# --------------------------------------------------------------------------- first value


def _first_add(st: Any, v: Any, ok: Any) -> Any:
    if v is None:
        return st
    if st is None or ok < st[0]:
        return (ok, v)
    return st


def _first_merge(a: Any, b: Any) -> Any:
    if b is None:
        return a
    if a is None or b[0] < a[0]:
        return b
    return a


def _first_result(st: Any) -> Any:
    return None if st is None else st[1]


def _first_encode(st: Any) -> Any:
    return None if st is None else [_enc_key(st[0]), encode_value(st[1])]


def _first_decode(obj: Any) -> Any:
    return None if obj is None else (_dec_key(obj[0]), decode_value(obj[1]))


def _first_inline(slot: str, value: str | None, add: Callable[[], str]) -> list[str]:
    """:func:`_first_add` inlined: the state is None or (order key, value)."""
    return [
        f"v = {value or 'True'}",
        "if v is not None:",
        f"    s = {slot}",
        "    if s is None or ok < s[0]:",
        f"        {slot} = (ok, v)",
    ]


_FIRST = Aggregate(
    "first", _none, _first_add, _first_merge, _first_result, _first_encode, _first_decode,
    _no_notices, inline=_first_inline,
)


def make_first() -> Aggregate:
    """The first non-null value by order key (§3.7.5; §4.3 "first value")."""
    return _FIRST


# --------------------------------------------------------------------------- DISTINCT


class DistinctState:
    """``seen``: normal form -> (first order key, value), at most VALUE_CAP entries;
    ``overflow``: some distinct value was not kept; ``max_ok``: the largest kept order key once
    the map is full (None while not computed)."""

    __slots__ = ("max_ok", "overflow", "seen")

    def __init__(self) -> None:
        self.seen: dict[Any, tuple[Any, Any]] = {}
        self.overflow = False
        self.max_ok: Any = None

    def __repr__(self) -> str:
        return f"DistinctState({self.seen!r}, overflow={self.overflow})"


def _make_distinct(inner: Aggregate, caps: Caps) -> Aggregate:
    cap = caps.value_cap

    def insert(st: DistinctState, gk: Any, ok: Any, v: Any) -> None:
        seen = st.seen
        old = seen.get(gk)
        if old is not None:
            if ok < old[0]:
                seen[gk] = (ok, v)
                st.max_ok = None
            return
        if len(seen) < cap:
            seen[gk] = (ok, v)
            if st.max_ok is not None and ok > st.max_ok:
                st.max_ok = ok
            return
        st.overflow = True
        if st.max_ok is None:
            st.max_ok = max(e[0] for e in seen.values())
        if ok < st.max_ok:
            # Evict the entry with the largest order key.
            worst = max(seen, key=lambda g: seen[g][0])
            del seen[worst]
            seen[gk] = (ok, v)
            st.max_ok = max(e[0] for e in seen.values())

    def add(st: DistinctState, v: Any, ok: Any) -> DistinctState:
        if v is None:
            return st
        gk = group_key(v)
        if gk is None:
            return st
        seen = st.seen
        if gk in seen and not ok < seen[gk][0]:
            return st
        insert(st, gk, ok, v)
        return st

    def merge(a: DistinctState, b: DistinctState) -> DistinctState:
        a.overflow = a.overflow or b.overflow
        if len(a.seen) + len(b.seen) <= cap:
            for gk, (ok, v) in b.seen.items():
                old = a.seen.get(gk)
                if old is None or ok < old[0]:
                    a.seen[gk] = (ok, v)
            a.max_ok = None
            return a
        merged = dict(a.seen)
        for gk, e in b.seen.items():
            old = merged.get(gk)
            if old is None or e[0] < old[0]:
                merged[gk] = e
        if len(merged) > cap:
            a.overflow = True
            keep = sorted(merged.items(), key=lambda kv: kv[1][0])[:cap]
            merged = dict(keep)
        a.seen = merged
        a.max_ok = None
        return a

    def ordered_values(st: DistinctState) -> list[tuple[Any, Any]]:
        return sorted(st.seen.values(), key=_first)

    def result(st: DistinctState) -> Any:
        inner_state = inner.create()
        add_inner = inner.add
        for ok, v in ordered_values(st):
            inner_state = add_inner(inner_state, v, ok)
        return inner.result(inner_state)

    def encode(st: DistinctState) -> Any:
        return {
            "v": [[_enc_key(k), encode_value(v)] for k, v in ordered_values(st)],
            "o": st.overflow,
        }

    def decode(obj: Any) -> DistinctState:
        st = DistinctState()
        for k, v in obj["v"]:
            val = decode_value(v)
            st.seen[group_key(val)] = (_dec_key(k), val)
        st.overflow = bool(obj.get("o", False))
        return st

    def notices(st: DistinctState) -> dict[str, int]:
        return {"values-truncated": 1} if st.overflow else {}

    return Aggregate(
        inner.name, DistinctState, add, merge, result, encode, decode, notices, distinct=True
    )


# --------------------------------------------------------------------------- registry

FUNCTIONS: dict[str, Callable[[Fraction | None, Caps], Aggregate]] = {
    "count": _make_count,
    "sum": _make_sum,
    "average": _make_average,
    "min": _make_min,
    "max": _make_max,
    "list": _make_list,
    "percentile": _make_percentile,
    **{name: _percentile_factory(name) for name in PERCENTILE_FUNCTIONS},
}
"""Function name (lower case) -> factory ``(q, caps) -> Aggregate``."""


def _exact_q(q: float | int | str | Fraction | None) -> Fraction | None:
    if q is None:
        return None
    if isinstance(q, Fraction):
        return q
    if isinstance(q, bool):
        raise ValueError("percentile q must be a number")
    if isinstance(q, int):
        return Fraction(q)
    if isinstance(q, str):
        return Fraction(q)
    return Fraction(repr(float(q)))


def make_aggregate(
    name: str,
    *,
    distinct: bool = False,
    q: float | int | str | Fraction | None = None,
    caps: Caps = DEFAULT_CAPS,
) -> Aggregate:
    """The aggregate for ``name(…)`` (case-insensitive), wrapped for DISTINCT when asked.

    ``q`` is the literal of ``percentile(x, q)``, taken at its exact decimal value (a float
    ``99.9`` means 999/10; the canonical text ``"99.9"`` or a ``Fraction`` work too). Unknown names and a bad ``q`` raise ``ValueError`` (the analyzer has
    already rejected them, so this signals a caller bug).
    """
    factory = FUNCTIONS.get(name.lower())
    if factory is None:
        raise ValueError(f"unknown aggregate {name!r}")
    agg = factory(_exact_q(q), caps)
    if distinct:
        agg = _make_distinct(agg, caps)
    return agg
