"""Host values -> JSON types, and field masking (docs/agent.md). Pure.

Theory of operation: the agent's fast path serializes a host event with orjson; only when that
fails (bytes, sets, non-string keys, datetimes, cycles, objects, integers beyond 64 bits) or when
the event holds a masked key does it walk the event here. :func:`convert` builds a fresh deep copy
made of JSON types only, replacing masked values on the way, or raises :class:`Unconvertible`
with the drop reason. It never mutates its input.

Conversions (where JSON has a form): tuples -> lists; sets -> lists (sorted when comparable);
bytes -> text when valid UTF-8, else base64 text; NaN and infinities -> null; ``datetime`` /
``date`` / ``time`` -> ISO 8601 text; ``Decimal`` -> number (null when not finite); ``UUID``,
paths -> text; ``Enum`` -> its value; dataclasses -> objects; keys that are int, float, bool or
None -> their JSON text (``1`` -> ``"1"``, ``True`` -> ``"true"``, ``None`` -> ``"null"``).
Drop reasons: ``cycle``, ``too_deep`` (more than ``max_depth`` levels), ``bad_key`` (another
key type), ``unserializable`` (a value with no JSON form).

Masking: a mask entry without a dot (``"password"``) masks that key at any depth (and flat dotted
keys ending in it, ``"user.password"``); a dotted entry (``"user.card"``) masks that path from the
root, through lists, whether the event nests it (``{"user": {"card": ...}}``) or uses MQL's flat
dotted keys (``{"user.card": ...}``). With ``ignore_case`` keys match in any case. The masked value
becomes :data:`MASKED`.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

__all__ = ["MASKED", "Mask", "Unconvertible", "convert"]

MASKED = "[masked]"
"""What a masked value is replaced with."""

_SCALAR = (str, int, bool, type(None))


class Unconvertible(Exception):
    """The event has no JSON form; ``reason`` is the drop reason to count."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class Mask:
    """Compiled mask configuration.

    Args:
        entries: field names (any depth) or dotted paths (from the root).
        ignore_case: match keys in any case (default True).
    """

    entries: tuple[str, ...] = ()
    ignore_case: bool = True
    names: frozenset[str] = dataclasses.field(init=False)
    paths: tuple[tuple[str, ...], ...] = dataclasses.field(init=False)
    pattern: re.Pattern[bytes] | None = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        norm = self._norm
        names = frozenset(norm(e) for e in self.entries if "." not in e)
        paths = tuple(tuple(norm(s) for s in e.split(".")) for e in self.entries if "." in e)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "paths", paths)
        # A cheap pre-check on the event's JSON: a masked key can only be present if its last
        # segment appears as a JSON key. Non-ASCII names cannot be case-folded on bytes, so
        # those configurations check every event (pattern matches everything).
        keys = {p[-1] for p in paths} | set(names)
        if not keys:
            object.__setattr__(self, "pattern", None)
        elif all(k.isascii() for k in keys):
            alt = b"|".join(re.escape(k.encode()) for k in sorted(keys))
            flags = re.IGNORECASE if self.ignore_case else 0
            # `"card":` or a flat dotted key ending in it, `"user.card":` (MQL flat names)
            pat = b'[".](?:' + alt + b')":'
            object.__setattr__(self, "pattern", re.compile(pat, flags))
        else:
            object.__setattr__(self, "pattern", re.compile(b""))

    def _norm(self, key: str) -> str:
        return key.casefold() if self.ignore_case else key

    @property
    def active(self) -> bool:
        """True when anything is masked."""
        return self.pattern is not None

    def may_apply(self, data: bytes) -> bool:
        """Whether the event serialized as ``data`` may hold a masked key."""
        return self.pattern is not None and self.pattern.search(data) is not None


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if k is None:
        return "null"
    if isinstance(k, bool):
        return "true" if k else "false"
    if isinstance(k, int):
        return str(int(k))
    if isinstance(k, float):
        return repr(k) if math.isfinite(k) else "null"
    raise Unconvertible("bad_key")


class _Walker:
    __slots__ = ("active", "mask", "max_depth")

    def __init__(self, mask: Mask, max_depth: int) -> None:
        self.mask = mask
        self.max_depth = max_depth
        self.active: set[int] = set()

    def value(self, v: Any, depth: int, paths: tuple[tuple[str, ...], ...]) -> Any:
        t = type(v)
        if t in _SCALAR:
            return v
        if t is float:
            return v if math.isfinite(v) else None
        if isinstance(v, Mapping):
            return self.container(v, depth, paths, self.mapping)
        if isinstance(v, (list, tuple, set, frozenset)):
            return self.container(v, depth, paths, self.sequence)
        return self.other(v, depth, paths)

    def container(self, v: Any, depth: int, paths: Any, fn: Any) -> Any:
        if depth >= self.max_depth:
            raise Unconvertible("too_deep")
        ident = id(v)
        if ident in self.active:
            raise Unconvertible("cycle")
        self.active.add(ident)
        try:
            return fn(v, depth + 1, paths)
        finally:
            self.active.discard(ident)

    def mapping(self, v: Mapping[Any, Any], depth: int, paths: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        names = self.mask.names
        norm = self.mask._norm if (names or paths) else None
        for k, item in v.items():
            key = _key(k)
            if norm is not None:
                nk = norm(key)
                if "." in nk:  # a flat dotted key consumes several path segments at once
                    segs = tuple(nk.split("."))
                    n = len(segs)
                    sub = tuple(p[n:] for p in paths if p[:n] == segs)
                    hit = segs[-1] in names
                else:
                    sub = tuple(p[1:] for p in paths if p[0] == nk)
                    hit = nk in names
                if hit or () in sub:
                    out[key] = MASKED
                    continue
                out[key] = self.value(item, depth, sub)
            else:
                out[key] = self.value(item, depth, ())
        return out

    def sequence(self, v: Iterable[Any], depth: int, paths: Any) -> list[Any]:
        items = [self.value(x, depth, paths) for x in v]
        if isinstance(v, (set, frozenset)):
            try:
                items.sort()
            except TypeError:
                pass
        return items

    def other(self, v: Any, depth: int, paths: Any) -> Any:
        if isinstance(v, float):  # float subclasses
            return float(v) if math.isfinite(v) else None
        if isinstance(v, (str, int)) and not isinstance(v, enum.Enum):  # subclasses
            return v
        if isinstance(v, (bytes, bytearray, memoryview)):
            raw = bytes(v)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return base64.b64encode(raw).decode("ascii")
        if isinstance(v, enum.Enum):
            return self.value(v.value, depth, paths)
        if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
            return v.isoformat()
        if isinstance(v, decimal.Decimal):
            return float(v) if v.is_finite() else None
        if isinstance(v, (uuid.UUID, PurePath)):
            return str(v)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return self.container(
                {f.name: getattr(v, f.name) for f in dataclasses.fields(v)},
                depth,
                paths,
                self.mapping,
            )
        raise Unconvertible("unserializable")


def convert(event: Any, mask: Mask = Mask(), max_depth: int = 64) -> dict[str, Any]:
    """Return a JSON-typed deep copy of ``event`` with masked values replaced.

    Args:
        event: the host's event; must be a mapping.
        mask: what to mask.
        max_depth: deepest nesting accepted.

    Returns:
        A new dict of JSON types only (integers may exceed 64 bits).

    Raises:
        Unconvertible: the event cannot be shipped; ``reason`` says why.

    >>> convert({"a": (1, b"x"), 2: {"password": "s"}}, Mask(("password",)))
    {'a': [1, 'x'], '2': {'password': '[masked]'}}
    """
    if not isinstance(event, Mapping):
        raise Unconvertible("not_an_object")
    walker = _Walker(mask, max_depth)
    try:
        out = walker.value(event, 0, mask.paths)
    except RecursionError:
        raise Unconvertible("too_deep") from None
    return out  # type: ignore[no-any-return]
