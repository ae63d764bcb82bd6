"""Time-window assignment (docs/mql.md#windows). Pure; times are passed in.

Window ``k`` (any integer) of ``window N M`` covers ``[k·M, k·M + N)`` seconds since the epoch
(``M = N`` for a tumbling window). Every function here is exact for float times: it works on
``floor(t)`` (or ``ceil``), which is exact, because window bounds are integers and

    k·M ≤ t  ⇔  k·M ≤ floor(t)      and      k·M + N > t  ⇔  k·M + N > floor(t).

``length`` (N) and ``every`` (M) are positive ints (the analyzer guarantees it). A time that is not
a finite number belongs to no window. Nothing here raises.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "first_live_window",
    "first_replay_window",
    "window_bounds",
    "window_indices",
    "window_indices_ms",
]

_EMPTY = range(0)


def _floor(t: Any) -> int | None:
    tt = type(t)
    if tt is int:
        return t  # type: ignore[no-any-return]
    if tt is float:
        return math.floor(t) if t - t == 0.0 else None
    return None


def window_indices(t: Any, length: int, every: int) -> range:
    """Every ``k`` with ``k·every ≤ t < k·every + length``, ascending (empty in a gap).

    >>> list(window_indices(12, 10, 5))
    [1, 2]
    """
    ft = _floor(t)
    if ft is None:
        return _EMPTY
    return range((ft - length) // every + 1, ft // every + 1)


def window_indices_ms(t_ms: int, length: int, every: int) -> range:
    """:func:`window_indices` for an integer time in milliseconds (live event time)."""
    if type(t_ms) is not int:
        ft = _floor(t_ms)
        if ft is None:
            return _EMPTY
        t_ms = ft
    m = every * 1000
    return range((t_ms - length * 1000) // m + 1, t_ms // m + 1)


def window_bounds(k: int, length: int, every: int) -> tuple[int, int]:
    """``(start, end)`` of window ``k`` in seconds: ``(k·every, k·every + length)``."""
    start = k * every
    return start, start + length


def first_replay_window(t0: Any, length: int, every: int) -> int:
    """The first window of a replay (§3.8.5): the smallest ``k`` with ``k·every + length > t0``.

    ``t0`` must be a finite number; anything else is treated as 0.
    """
    ft = _floor(t0)
    if ft is None:
        ft = 0
    return (ft - length) // every + 1


def first_live_window(now: Any, length: int, every: int) -> int:
    """The first window of a live query (§3.8.4): the smallest ``k`` with ``k·every ≥ now``.

    ``now`` is in seconds (int or float). ``length`` is accepted for symmetry and unused.
    """
    tt = type(now)
    if tt is int:
        c = now
    elif tt is float and now - now == 0.0:
        c = math.ceil(now)
    else:
        c = 0
    return -((-c) // every)  # type: ignore[no-any-return]
