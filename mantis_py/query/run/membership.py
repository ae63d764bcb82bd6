"""Who a merger expects to report a window, kept incrementally. Pure.

Theory of operation. A merger of partials (``engine.Merger``) must know, for each window, which
*members* were expected to send a part (coverage) and which of them it should still wait for (a
window is emitted early once every one of those reported). A member is an opaque name, one per
agent instance and source (the gateway uses ``app``, ``instance`` and ``stream``, so a member
that reconnects is still one member); it is *live* from :meth:`Membership.add` until
:meth:`Membership.remove`.

For a window starting at ``s``:

- a member is **expected** when one of its live intervals ``[added, removed)`` covers ``s``:
  ``added <= s`` and (still live or ``removed > s``). A member that joined after the window began
  is not expected (it did not see the whole window);
- it is **waited for** when it is expected and still live.

The naive way (walk every member for every part) costs O(members) per part and O(members²) per
window. Here every event is O(1) amortised:

- ``add`` puts a joining member on a FIFO of joins (time order); ``advance(s)``, called as the
  oldest open window moves on, promotes the joins with ``added <= s`` and keeps ``full``: the
  number of live members with ``added <= s`` (those waited for in the window starting at ``s``);
- ``remove`` ends the live interval at once (``full`` drops by one if it counted) and keeps the
  closed interval, with the removal on a second FIFO; ``advance(s)`` forgets closed intervals
  that ended at or before ``s`` (they can cover no later window);
- ``waits_for(name, s)`` answers for one member in O(1) (the merger asks it once per part).

``visits`` counts every member record the structure touches (queue entries popped, removed
members scanned). Tests use it to check that the work per part does not grow with the number of
members.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["Membership"]


@dataclass(slots=True)
class _Member:
    since: float | None = None  # start of the current live interval; None: not live
    full: bool = False  # counted in Membership.full
    past: list[tuple[float, float]] = field(default_factory=list)  # recent closed intervals


class Membership:
    """Live members of one merger and their recent history. See the module docstring."""

    def __init__(self) -> None:
        self._m: dict[str, _Member] = {}
        self._joins: deque[tuple[float, str]] = deque()
        self._gone: deque[tuple[float, str]] = deque()
        self._head = float("-inf")
        self.full = 0  # live members with added <= the head window's start
        self.live = 0
        self.visits = 0

    def __contains__(self, name: object) -> bool:
        m = self._m.get(name)  # type: ignore[call-overload]
        return m is not None and m.since is not None

    def add(self, name: str, now: float) -> bool:
        """``name`` became live at ``now``; False when it already was (idempotent)."""
        m = self._m.get(name)
        if m is None:
            m = self._m[name] = _Member()
        elif m.since is not None:
            return False
        m.since = now
        self.live += 1
        if now <= self._head:
            m.full = True
            self.full += 1
        else:
            self._joins.append((now, name))
        return True

    def remove(self, name: str, now: float) -> bool:
        """``name`` stopped at ``now``; False when it was not live (idempotent)."""
        m = self._m.get(name)
        if m is None or m.since is None:
            return False
        if m.full:
            m.full = False
            self.full -= 1
        self.live -= 1
        m.past.append((m.since, now))
        m.since = None
        self._gone.append((now, name))
        return True

    def advance(self, start: float) -> None:
        """The oldest open window now starts at ``start`` (never decreases)."""
        if start <= self._head:
            return
        self._head = start
        joins = self._joins
        members = self._m
        while joins and joins[0][0] <= start:
            t, name = joins.popleft()
            self.visits += 1
            m = members.get(name)
            if m is not None and m.since == t and not m.full:
                m.full = True
                self.full += 1
        gone = self._gone
        while gone and gone[0][0] <= start:
            _, name = gone.popleft()
            self.visits += 1
            m = members.get(name)
            if m is None:
                continue
            m.past = [iv for iv in m.past if iv[1] > start]
            if m.since is None and not m.past:
                del members[name]

    def waits_for(self, name: str, start: float) -> bool:
        """True when ``name`` is live and was live when the window starting at ``start`` began."""
        m = self._m.get(name)
        return m is not None and m.since is not None and m.since <= start

    def covered_before(self, name: str, start: float) -> bool:
        """True when a closed interval of ``name`` covers ``start`` (expected, no longer live)."""
        m = self._m.get(name)
        if m is None:
            return False
        return any(a <= start < r for a, r in m.past)

    def expected_gone(self, start: float) -> int:
        """How many members that are no longer live were expected in the window starting at
        ``start``. Scans the removals not yet forgotten (those after the head's start)."""
        seen: set[str] = set()
        for _, name in self._gone:
            self.visits += 1
            if name not in seen and self.covered_before(name, start):
                seen.add(name)
        return len(seen)
