"""The shipped object of ``events`` mode (docs/architecture.md): only the parts of an event queries read.

Theory of operation:
- A query's fields (``Analysis.field_paths``, ``field_prefixes``, ``star``) name what it reads;
  paths are already cut before the first index or ``[*]``, so lists ship whole.
- :func:`project` copies each field's value to its original position in a new nested object,
  without flattening, renaming, or dropping nulls. Intermediate objects are created only when a
  leaf exists. Top-level keys keep the event's key order (prefix selectors depend on it).
- Invariant (tested): every property of the query evaluates the same on the shipped object as on
  the original event.
- An agent running several queries ships one object for all of them: :func:`union_fields` merges
  their fields (a path subsumed by a shorter one is dropped; ``select *`` ships everything).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["make_projector", "project", "union_fields"]

Paths = tuple[tuple[str, ...], ...]


def _normalise(field_paths: Iterable[Sequence[str]], prefixes: Iterable[str]) -> tuple[Paths, tuple[str, ...]]:
    pre = tuple(dict.fromkeys(prefixes))
    paths = [tuple(p) for p in field_paths if p]
    # drop duplicates, paths under a shorter path, and paths a prefix selector covers
    uniq = list(dict.fromkeys(paths))
    kept = [
        p for p in uniq
        if not any(len(q) < len(p) and p[: len(q)] == q for q in uniq)
        and not any(p[0].startswith(x) for x in pre)
    ]
    return tuple(kept), pre


def make_projector(
    field_paths: Iterable[Sequence[str]], prefixes: Iterable[str] = (), star: bool = False
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A fast ``event -> shipped object`` function for fixed fields."""
    if star:
        return _identity
    paths, pre = _normalise(field_paths, prefixes)
    tops: dict[str, list[tuple[str, ...]]] = {}
    for p in paths:
        tops.setdefault(p[0], []).append(p[1:])
    whole = frozenset(k for k, rests in tops.items() if () in rests)
    nested = {k: tuple(r for r in rests if r) for k, rests in tops.items() if k not in whole}
    if not nested and not pre:
        keys = tuple(whole)
        if len(keys) <= 8:
            def flat(e: dict[str, Any]) -> dict[str, Any]:
                return {k: e[k] for k in keys if k in e}
            return flat

    def proj(e: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in e.items():
            if k in whole or (pre and k.startswith(pre)):
                out[k] = v
            elif k in nested:
                sub = _nested(v, nested[k])
                if sub is not None:
                    out[k] = sub
        return out

    return proj


def _identity(e: dict[str, Any]) -> dict[str, Any]:
    return e


def _nested(v: Any, rests: tuple[tuple[str, ...], ...]) -> Any:
    """The parts of ``v`` at the (non-empty) relative paths ``rests``, or None when none exists."""
    if type(v) is not dict:
        return None
    out: dict[str, Any] = {}
    for k, x in v.items():
        here = [r[1:] for r in rests if r[0] == k]
        if not here:
            continue
        if () in here:
            out[k] = x
        else:
            sub = _nested(x, tuple(here))
            if sub is not None:
                out[k] = sub
    return out if out else None


_PROJECTORS: dict[tuple[Paths, tuple[str, ...], bool], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def project(
    event: dict[str, Any],
    field_paths: Iterable[Sequence[str]],
    prefixes: Iterable[str] = (),
    star: bool = False,
) -> dict[str, Any]:
    """The shipped object for ``event`` (§4.2).

    >>> project({"a": {"b": 1, "c": 2}, "l": [1, 2], "z": 0}, [("a", "b"), ("l",)], [])
    {'a': {'b': 1}, 'l': [1, 2]}
    """
    key = (tuple(tuple(p) for p in field_paths), tuple(prefixes), star)
    fn = _PROJECTORS.get(key)
    if fn is None:
        if len(_PROJECTORS) > 4096:
            _PROJECTORS.clear()
        fn = _PROJECTORS[key] = make_projector(*key)
    return fn(event)


def union_fields(analyses: Iterable[Any]) -> tuple[Paths, tuple[str, ...], bool]:
    """The fields to ship for several queries: ``(field_paths, prefixes, star)``."""
    paths: list[tuple[str, ...]] = []
    prefixes: list[str] = []
    star = False
    for a in analyses:
        star = star or bool(a.star)
        paths.extend(tuple(p) for p in a.field_paths)
        prefixes.extend(a.field_prefixes)
    p, pre = _normalise(paths, prefixes)
    return p, pre, star
