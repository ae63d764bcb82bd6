"""Bounded buffers of the agent: never block, never grow past their caps, count every drop. Pure.

Two buffers per stream (docs/agent.md §Limits):

- :class:`Ingress`: host threads -> agent. ``put_nowait`` runs on the host's thread and uses only
  operations that are atomic under the GIL (``len``, ``deque.append``, ``next`` on an
  ``itertools.count``), so any number of host threads may publish while the agent drains. When
  full it drops the *new* event and counts ``queue_full`` (docs/operations.md). Under concurrent
  publishers the count cap may be overshot by at most the number of publishing threads.
- :class:`Pending`: records waiting for the link, capped by count and bytes; a record that does
  not fit is refused (the caller counts ``queue_full``).
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections import deque
from itertools import accumulate
from typing import Any

__all__ = ["Ingress", "Pending", "counter_value"]


def counter_value(c: itertools.count[int]) -> int:
    """The next value an ``itertools.count`` would return, without advancing it."""
    # repr is "count(n)"; stable across versions (pickling itertools is going away).
    return int(repr(c)[6:-1])


class Ingress:
    """Host -> agent queue of ``(t, event)`` for one stream."""

    __slots__ = ("dropped_full", "items", "max_events", "taken")

    def __init__(self, max_events: int) -> None:
        self.items: deque[tuple[float, Any]] = deque()
        self.max_events = max_events
        self.dropped_full = itertools.count()
        self.taken = 0  # items removed by the agent (agent thread only)

    def put_nowait(self, t: float, event: Any) -> bool:
        """Append ``(t, event)``; return False (and count the drop) when full. Never blocks."""
        if len(self.items) >= self.max_events:
            next(self.dropped_full)
            return False
        self.items.append((t, event))
        return True

    def take(self, limit: int) -> list[tuple[float, Any]]:
        """Remove and return up to ``limit`` oldest items (agent thread only)."""
        popleft = self.items.popleft
        out = [popleft() for _ in range(min(limit, len(self.items)))]
        self.taken += len(out)
        return out

    @property
    def enqueued(self) -> int:
        """Items ever accepted (taken + waiting)."""
        return self.taken + len(self.items)

    @property
    def dropped(self) -> int:
        """Items refused because the queue was full."""
        return counter_value(self.dropped_full)


class Pending:
    """Records of one stream waiting to be framed, capped by count and bytes.

    A record is the dict ``{"subs", "t", "s", "e"}`` whose ``e`` is already serialized (a codec
    ``Fragment``); its size is given by the caller (an upper bound of the record's), so the byte
    cap and the batch cut are conservative and the frame is serialized once, in C, when cut.

    One event is usually one record. An event that masked and unmasked subscriptions both kept
    may need two (docs/agent.md §Masking): the second is *glued* to the first (its size is
    stored negated in ``sizes``), is never separated from it by a batch cut, and does not count
    as an event (``events``, :meth:`cut`, :meth:`clear` count events, not records).
    """

    __slots__ = ("first_at", "glued", "max_bytes", "max_records", "nbytes", "records", "sizes")

    def __init__(self, max_records: int, max_bytes: int) -> None:
        self.records: list[dict[str, Any]] = []
        self.sizes: list[int] = []  # > 0: an event's first record; < 0: glued to the previous
        self.nbytes = 0
        self.glued = 0
        self.first_at = 0.0
        self.max_records = max_records
        self.max_bytes = max_bytes

    def add(self, record: dict[str, Any], size: int, now: float) -> bool:
        """Append one record of (at most) ``size`` bytes; False when it does not fit."""
        if len(self.records) >= self.max_records or self.nbytes + size > self.max_bytes:
            return False
        if not self.records:
            self.first_at = now
        self.records.append(record)
        self.sizes.append(size)
        self.nbytes += size
        return True

    def add_pair(
        self, first: dict[str, Any], size1: int, second: dict[str, Any], size2: int, now: float
    ) -> bool:
        """Append two records of one event (the second glued to the first); all or nothing."""
        if (
            len(self.records) + 2 > self.max_records
            or self.nbytes + size1 + size2 > self.max_bytes
        ):
            return False
        if not self.records:
            self.first_at = now
        self.records += (first, second)
        self.sizes += (size1, -size2)
        self.nbytes += size1 + size2
        self.glued += 1
        return True

    def cut(self, max_bytes: int) -> tuple[list[dict[str, Any]], int]:
        """Remove the oldest records totalling at most ``max_bytes`` (at least one event, with
        its glued record); return them and the number of events they carry."""
        records = self.records
        sizes = self.sizes
        if not self.glued:  # the common case: one record per event
            if self.nbytes <= max_bytes:  # everything fits (a batch cut by age)
                self.records, self.sizes = [], []
                self.nbytes = 0
                return records, len(records)
            n = max(1, bisect_right(list(accumulate(sizes)), max_bytes))
            out = records[:n]
            del records[:n]
            self.nbytes -= sum(sizes[:n])
            del sizes[:n]
            return out, n
        total = 0
        n = 0
        events = 0
        count = len(sizes)
        while n < count:
            size = sizes[n]
            group = 1
            if n + 1 < count and sizes[n + 1] < 0:  # its glued record goes with it
                size -= sizes[n + 1]
                group = 2
            if n and total + size > max_bytes:
                break
            total += size
            n += group
            events += 1
        out = records[:n]
        del records[:n]
        del sizes[:n]
        self.nbytes -= total
        self.glued -= n - events
        return out, events

    def take(self, max_bytes: int) -> list[dict[str, Any]]:
        """:meth:`cut`, records only."""
        return self.cut(max_bytes)[0]

    def clear(self) -> int:
        """Drop everything; return how many events were dropped."""
        n = self.events
        self.records.clear()
        self.sizes.clear()
        self.nbytes = 0
        self.glued = 0
        return n

    @property
    def events(self) -> int:
        """Events waiting (records less the glued ones)."""
        return len(self.records) - self.glued

    def __len__(self) -> int:
        return len(self.records)
