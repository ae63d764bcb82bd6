"""MQL value semantics: the pure, hot-path primitives generated code calls (docs/mql.md#conditions).

Theory of operation:
- Values are plain JSON values: ``None``, ``bool``, ``int``, ``float``, ``str``, ``list``, ``dict``.
  A non-finite float is treated as null everywhere (§3.1); :func:`clean` removes them where values
  enter, and every function here also copes with one that slipped through.
- ``bool`` is never a number (§0), although Python's ``bool`` subclasses ``int``: every test below
  checks ``type(v) is int`` rather than ``isinstance``.
- Nothing here raises, whatever JSON value (of any size or depth) it is given. Recursive helpers
  fall back to iterative ones on ``RecursionError``; ints too large for ``str()`` (Python's 4,300
  digit limit) are converted through ``decimal``.
- Fast paths come first: strings, ints and floats are decided with a couple of ``type() is``
  checks; lists and objects take the slower structural routes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Sequence
from decimal import Decimal
from typing import Any

from mantis_py.query.syntax.ast import Star

__all__ = [
    "canonical_text",
    "clean",
    "contains",
    "equals",
    "greater",
    "greater_eq",
    "group_key",
    "int_text",
    "is_number",
    "less",
    "less_eq",
    "negate_operand",
    "prefix_items",
    "resolve",
    "resolve_star",
    "sort_key",
    "string_form",
]

_TWO_53 = 2.0**53
_isfinite = math.isfinite


# --------------------------------------------------------------------------- types


def is_number(v: Any) -> bool:
    """True for an int or a finite float; never for a bool (docs/mql.md#canonical-text)."""
    t = type(v)
    if t is int:
        return True
    if t is float:
        return v - v == 0.0  # type: ignore[no-any-return]  # False for NaN and ±inf
    return False


def _is_null(v: Any) -> bool:
    """None or a non-finite float (both are null, §3.1)."""
    return v is None or (type(v) is float and not _isfinite(v))


def clean(v: Any) -> Any:
    """Return ``v`` with every non-finite float replaced by None, recursively (§3.1).

    Containers are copied only when something inside them changes.
    """
    t = type(v)
    if t is float:
        return v if v - v == 0.0 else None
    if t is dict or t is list:
        try:
            return _clean_rec(v)
        except RecursionError:
            return _clean_iter(v)
    return v


def _clean_rec(v: Any) -> Any:
    t = type(v)
    if t is float:
        return v if v - v == 0.0 else None
    if t is list:
        out = None
        for i, x in enumerate(v):
            tx = type(x)
            if tx is float or tx is list or tx is dict:
                y = _clean_rec(x)
                if y is not x:
                    if out is None:
                        out = list(v)
                    out[i] = y
        return v if out is None else out
    if t is dict:
        outd = None
        for k, x in v.items():
            tx = type(x)
            if tx is float or tx is list or tx is dict:
                y = _clean_rec(x)
                if y is not x:
                    if outd is None:
                        outd = dict(v)
                    outd[k] = y
        return v if outd is None else outd
    return v


def _clean_iter(v: Any) -> Any:
    """Deep-structure fallback of :func:`_clean_rec`: always copies containers."""
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(v, root, 0)]
    while stack:
        x, parent, key = stack.pop()
        t = type(x)
        if t is list:
            new_l: list[Any] = [None] * len(x)
            parent[key] = new_l
            for i, y in enumerate(x):
                stack.append((y, new_l, i))
        elif t is dict:
            new_d: dict[str, Any] = dict.fromkeys(x)
            parent[key] = new_d
            for k, y in x.items():
                stack.append((y, new_d, k))
        elif t is float:
            parent[key] = x if x - x == 0.0 else None
        else:
            parent[key] = x
    return root[0]


# --------------------------------------------------------------------------- string form


def int_text(n: int) -> str:
    """Decimal digits of any int, beyond Python's 4,300-digit ``str()`` limit too."""
    try:
        return str(int(n))
    except ValueError:
        return str(Decimal(int(n)))


def _float_text(v: float) -> str:
    if v.is_integer() and -_TWO_53 < v < _TWO_53:
        return str(int(v))
    return repr(v)


def string_form(v: Any) -> str | None:
    """The string form of a value (docs/mql.md#conditions), or None for null."""
    t = type(v)
    if t is str:
        return v  # type: ignore[no-any-return]
    if t is int:
        return int_text(v)
    if t is float:
        if v - v != 0.0:
            return None
        return _float_text(v)
    if t is bool:
        return "true" if v else "false"
    if v is None:
        return None
    if t is list or t is dict:
        return _json_text(v)
    return _other_string_form(v)


def _other_string_form(v: Any) -> str | None:
    """Values of unexpected Python types (subclasses): best effort, never raises."""
    try:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return int_text(int(v))
        if isinstance(v, float):
            return string_form(float(v))
        if isinstance(v, str):
            return str.__str__(v)
        if isinstance(v, (list, tuple)):
            return _json_text(list(v))
        if isinstance(v, dict):
            return _json_text(dict(v))
        return str(v)
    except Exception:
        return None


def _json_text(v: Any) -> str:
    """``json.dumps(v, separators=(",", ":"), sort_keys=True, ensure_ascii=False)`` (§3.4),
    with non-finite floats written as null, for any depth and any int size."""
    try:
        return json.dumps(
            v, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
        )
    except (ValueError, RecursionError, TypeError):
        return _json_text_iter(v)


_encode_str = json.encoder.encode_basestring


def _json_text_iter(v: Any) -> str:
    out: list[str] = []
    # Work items: ("v", value) to write a value, ("t", text) to write literal text.
    stack: list[tuple[str, Any]] = [("v", v)]
    while stack:
        kind, x = stack.pop()
        if kind == "t":
            out.append(x)
            continue
        t = type(x)
        if t is str or isinstance(x, str):
            out.append(_encode_str(x))
        elif x is None:
            out.append("null")
        elif x is True:
            out.append("true")
        elif x is False:
            out.append("false")
        elif isinstance(x, int):
            out.append(int_text(x))
        elif isinstance(x, float):
            out.append(repr(float(x)) if _isfinite(x) else "null")
        elif isinstance(x, (list, tuple)):
            if not x:
                out.append("[]")
                continue
            stack.append(("t", "]"))
            for i in range(len(x) - 1, -1, -1):
                stack.append(("v", x[i]))
                if i:
                    stack.append(("t", ","))
            stack.append(("t", "["))
        elif isinstance(x, dict):
            if not x:
                out.append("{}")
                continue
            keys = sorted(str(k) for k in x)
            stack.append(("t", "}"))
            for i in range(len(keys) - 1, -1, -1):
                k = keys[i]
                stack.append(("v", x[k]))
                stack.append(("t", _encode_str(k) + ":"))
                if i:
                    stack.append(("t", ","))
            stack.append(("t", "{"))
        else:
            out.append(_encode_str(str(x)))
    return "".join(out)


# --------------------------------------------------------------------------- canonical text


def canonical_text(v: Any) -> str:
    """A string that is equal for two values exactly when they are equal under §3.5.2.

    Numbers are written as their exact integer digits when integral, else as ``repr``; strings are
    length-prefixed; object keys are sorted by code point. Iterative, so any depth works.
    """
    out: list[str] = []
    stack: list[tuple[bool, Any]] = [(False, v)]
    while stack:
        is_text, x = stack.pop()
        if is_text:
            out.append(x)
            continue
        t = type(x)
        if t is str:
            out.append(f"s{len(x)}:")
            out.append(x)
        elif t is int:
            out.append("n" + int_text(x) + ";")
        elif t is float:
            if x - x != 0.0:
                out.append("z")
            elif x.is_integer():
                out.append("n" + int_text(int(x)) + ";")
            else:
                out.append("n" + repr(x) + ";")
        elif x is None:
            out.append("z")
        elif t is bool:
            out.append("T" if x else "F")
        elif t is list:
            out.append(f"[{len(x)}:")
            for i in range(len(x) - 1, -1, -1):
                stack.append((False, x[i]))
        elif t is dict:
            out.append(f"{{{len(x)}:")
            for k in sorted(x, key=str, reverse=True):
                stack.append((False, x[k]))
                ks = str(k)
                stack.append((True, f"s{len(ks)}:{ks}"))
        else:
            # An unexpected type: normalise it to a JSON type first.
            y = _coerce(x)
            if y is x:
                out.append("?" + repr(type(x).__name__))
            else:
                stack.append((False, y))
    return "".join(out)


def _coerce(x: Any) -> Any:
    """Map subclasses of JSON types to the plain type; anything else is returned unchanged."""
    if isinstance(x, bool):
        return bool(x)
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x)
    if isinstance(x, str):
        return str.__str__(x)
    if isinstance(x, (list, tuple)):
        return list(x)
    if isinstance(x, dict):
        return dict(x)
    return x


# --------------------------------------------------------------------------- equality


def equals(a: Any, b: Any) -> bool:
    """``a == b`` in MQL (§3.5.2): exact numeric equality across int/float, structural for
    containers, never across other types; null equals only null."""
    if a is b:
        return True
    ta = type(a)
    tb = type(b)
    if ta is tb:
        if ta is str or ta is int or ta is bool:
            return a == b  # type: ignore[no-any-return]
        if ta is float:
            return a == b or (a - a != 0.0 and b - b != 0.0)  # type: ignore[no-any-return]
        if ta is list or ta is dict:
            try:
                return _equals_rec(a, b)
            except RecursionError:
                return canonical_text(a) == canonical_text(b)
        if a is None:
            return True
        return _equals_other(a, b)
    if ta is int:
        return tb is float and a == b
    if ta is float:
        if tb is int:
            return a == b  # type: ignore[no-any-return]
        return b is None and a - a != 0.0
    if a is None:
        return tb is float and b - b != 0.0
    if ta in _PLAIN and tb in _PLAIN:
        return False
    return _equals_other(a, b)


_PLAIN = frozenset({str, int, float, bool, list, dict, type(None)})


def _equals_other(a: Any, b: Any) -> bool:
    try:
        return canonical_text(_coerce(a)) == canonical_text(_coerce(b))
    except Exception:
        return False


def _equals_rec(a: Any, b: Any) -> bool:
    if type(a) is list:
        if len(a) != len(b):
            return False
        for x, y in zip(a, b, strict=True):
            if x is y:
                continue
            tx = type(x)
            if tx is type(y) and (tx is str or tx is int):
                if x != y:
                    return False
            elif not equals(x, y):
                return False
        return True
    if len(a) != len(b):
        return False
    for k, x in a.items():
        if k not in b:
            return False
        if not equals(x, b[k]):
            return False
    return True


# --------------------------------------------------------------------------- ordering


def less(a: Any, b: Any) -> bool:
    """``a < b`` (§3.5.3): numbers numerically, strings by code point, anything else false."""
    ta = type(a)
    tb = type(b)
    if ta is str:
        return tb is str and a < b
    if (ta is int or ta is float) and (tb is int or tb is float):
        if (ta is float and a - a != 0.0) or (tb is float and b - b != 0.0):
            return False
        return a < b  # type: ignore[no-any-return]
    return False


def less_eq(a: Any, b: Any) -> bool:
    """``a <= b`` (§3.5.3)."""
    ta = type(a)
    tb = type(b)
    if ta is str:
        return tb is str and a <= b
    if (ta is int or ta is float) and (tb is int or tb is float):
        if (ta is float and a - a != 0.0) or (tb is float and b - b != 0.0):
            return False
        return a <= b  # type: ignore[no-any-return]
    return False


def greater(a: Any, b: Any) -> bool:
    """``a > b`` (§3.5.3)."""
    return less(b, a)


def greater_eq(a: Any, b: Any) -> bool:
    """``a >= b`` (§3.5.3)."""
    return less_eq(b, a)


def contains(a: Any, b: Any) -> bool:
    """``a ==+ b`` (§3.5.5): ``b`` is a string occurring in the string form of non-null ``a``."""
    if type(b) is not str:
        return False
    if type(a) is str:
        return b in a
    s = string_form(a)
    return s is not None and b in s


def negate_operand(v: Any) -> bool:
    """Operand negation ``not x`` (§3.5.9): true when ``v`` is null or false."""
    return v is None or v is False or (type(v) is float and v - v != 0.0)


# --------------------------------------------------------------------------- keys

_FALSE_KEY = ("b", False)
_TRUE_KEY = ("b", True)


def group_key(v: Any) -> Hashable:
    """A hashable normal form: ``group_key(a) == group_key(b)`` exactly when ``equals(a, b)``.

    Strings and numbers are their own key (Python already equates ``1``, ``1.0``, ``10**20`` and
    ``1e20`` with equal hashes), null is None, booleans are tagged tuples (so ``True`` is not
    ``1``), lists are ``("l", *element keys)`` and objects ``("d", frozenset of (key, value
    key))``. Structures nested deeper than ``_KEY_DEPTH`` (a property of the value itself, so equal
    values always take the same route) are ``("c", canonical_text(v))``.
    """
    t = type(v)
    if t is str or t is int:
        return v  # type: ignore[no-any-return]
    if t is float:
        return v if v - v == 0.0 else None
    if v is None:
        return None
    if t is bool:
        return _TRUE_KEY if v else _FALSE_KEY
    if t is list or t is dict:
        try:
            return _container_key(v, 0)
        except _NoFastKey:
            return ("c", canonical_text(v))
    y = _coerce(v)
    if y is v:
        return ("?", canonical_text(v))
    return group_key(y)


_KEY_DEPTH = 48


class _NoFastKey(Exception):
    """Raised inside :func:`_container_key` for deep or unexpected structures."""


def _element_key(x: Any, depth: int) -> Hashable:
    t = type(x)
    if t is str or t is int:
        return x  # type: ignore[no-any-return]
    if t is float:
        return x if x - x == 0.0 else None
    if x is None:
        return None
    if t is bool:
        return _TRUE_KEY if x else _FALSE_KEY
    if t is list or t is dict:
        return _container_key(x, depth + 1)
    raise _NoFastKey


def _container_key(v: Any, depth: int) -> Hashable:
    if depth > _KEY_DEPTH:
        raise _NoFastKey
    if type(v) is list:
        return ("l", *[_element_key(x, depth) for x in v])
    return ("d", frozenset([(k, _element_key(x, depth)) for k, x in v.items()]))


def sort_key(v: Any) -> tuple[Any, ...]:
    """The total order of §3.11: null < false < true < numbers < strings < lists < objects.

    Equal numbers tie (``1`` and ``1.0``); lists and objects compare by their string form.
    """
    t = type(v)
    if t is int:
        return (3, v)
    if t is str:
        return (4, v)
    if t is float:
        return (3, v) if v - v == 0.0 else (0,)
    if v is None:
        return (0,)
    if t is bool:
        return (2,) if v else (1,)
    if t is list:
        return (5, _json_text(v))
    if t is dict:
        return (6, _json_text(v))
    y = _coerce(v)
    if y is v:
        return (7, repr(type(v).__name__))
    return sort_key(y)


# --------------------------------------------------------------------------- resolution


def resolve(event: Any, segments: Sequence[Any]) -> Any:
    """Apply path segments left to right (§3.3.2): a str on an object, an int index on a list
    (negative from the end); anything else, or a missing member, gives None."""
    v: Any = event
    for s in segments:
        ts = type(s)
        if ts is str:
            if type(v) is dict:
                v = v.get(s)
            else:
                return None
        elif ts is int:
            if type(v) is list:
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
    return v


def _step(v: Any, s: Any) -> Any:
    ts = type(s)
    if ts is str:
        return v.get(s) if type(v) is dict else None
    if ts is int and type(v) is list:
        n = len(v)
        return v[s] if -n <= s < n else None
    return None


def resolve_star(event: Any, segments: Sequence[Any]) -> list[Any]:
    """Evaluate a star path (§3.3.3): each ``STAR`` fans out over list elements or object member
    values (nothing for other values); later segments apply to each item, a miss giving None.
    The result is in depth-first order."""
    cur: list[Any] = [event]
    for s in segments:
        if isinstance(s, Star):
            nxt: list[Any] = []
            for v in cur:
                tv = type(v)
                if tv is list:
                    nxt.extend(v)
                elif tv is dict:
                    nxt.extend(v.values())
            cur = nxt
        else:
            cur = [_step(v, s) for v in cur]
    return cur


def prefix_items(event: Any, prefix: str) -> list[tuple[str, Any]]:
    """``e[^'p']`` (§3.3.4): the (key, value) pairs of top-level members whose key starts with
    ``prefix``, in the event's key order."""
    if type(event) is not dict:
        return []
    if not prefix:
        return list(event.items())
    return [(k, v) for k, v in event.items() if k.startswith(prefix)]
