"""Limits and loss (docs/operations.md): rate limits, connection caps, per-client outbound queues. Pure.

Theory: the shells never decide policy. They ask :class:`ConnectionCaps` before an upgrade (the
answer is an HTTP status), a :class:`TokenBucket` per user before accepting a query, and push
every frame for a client into its :class:`OutboundQueue`, whose ``put`` applies the drop policy
at once and counts each loss against the query it belonged to. Time is always passed in.

Drop policy of :class:`OutboundQueue` when it is full (``max_frames`` frames or ``max_bytes``):

- ``rows`` (raw, un-windowed rows): the oldest queued raw-rows frame is dropped; its rows are
  counted as ``client_queue`` drops of its query.
- ``window`` (a window result): latest wins. The oldest queued window of the same query is
  replaced; failing that the oldest raw-rows frame, then the oldest window of any query, makes
  room. Dropped windows count as ``client_queue_windows``.
- ``meta``: at most one per query is queued; a newer one takes the place of the older one. Meta
  items are rendered when they leave the queue, so their drop counts are exact at send time.
  ``urgent`` metas (the once-a-second drop reports) go to the front of the queue, behind only
  their query's control frames; a window's meta follows its window.
- ``control`` (``accepted``, ``error``, ``complete``): never dropped; they are tiny and bounded by
  the submission rate.

A queue is *full* from the first put that had to drop until it drains below half its capacity;
:meth:`OutboundQueue.too_slow` is true once it has stayed full for ``slow_after`` seconds (the
shell then closes the client with 4008 "too slow").
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal

# The reason a client is closed with (code 4008) when its queue stayed full too long; the shell
# counts these evictions in ``clients_evicted_total{reason="too_slow"}``.
TOO_SLOW = "too slow"

__all__ = ["ConnectionCaps", "OutboundItem", "OutboundQueue", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored. ``try_take(now)`` spends one."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def available(self, now: float) -> float:
        """Tokens available at ``now`` (nothing spent)."""
        return min(self.burst, self._tokens + max(0.0, now - self._last) * self.rate)

    def charge(self, now: float, n: float) -> None:
        """Spend ``n`` tokens after the fact (work already done): the balance may go negative,
        and the debt is paid back at ``rate`` before ``try_take`` succeeds again."""
        self.try_take(now, 0.0)
        self._tokens -= n

    def try_take(self, now: float, n: float = 1.0) -> bool:
        """Spend ``n`` tokens if available; False (and nothing spent) otherwise."""
        elapsed = max(0.0, now - self._last)
        self._last = max(self._last, now)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False


class ConnectionCaps:
    """Connections per user and per gateway. ``try_open`` answers before the upgrade."""

    def __init__(self, per_user: int, total: int) -> None:
        self.per_user = per_user
        self.total = total
        self._by_user: Counter[str] = Counter()
        self._total = 0

    def try_open(self, user: str) -> int | None:
        """Reserve a connection slot: None when granted, else the HTTP status (503, 429)."""
        if self._total >= self.total:
            return 503
        if self._by_user[user] >= self.per_user:
            return 429
        self._by_user[user] += 1
        self._total += 1
        return None

    def close(self, user: str) -> None:
        """Release a slot reserved by ``try_open``."""
        if self._by_user[user] > 0:
            self._by_user[user] -= 1
            self._total -= 1
            if not self._by_user[user]:
                del self._by_user[user]

    @property
    def open_connections(self) -> int:
        return self._total


Kind = Literal["control", "rows", "window", "meta"]


@dataclass(slots=True)
class OutboundItem:
    """One queued frame. ``msg`` is the client-protocol dict; ``data`` its encoding when known
    (shared between clients on fan-out; ``None`` for meta, which is rendered when sent).
    ``n_rows`` is what a drop of this frame costs in rows."""

    kind: Kind
    qid: str
    msg: Any
    data: bytes | None = None
    n_rows: int = 0
    size: int = field(default=0)
    urgent: bool = False

    def __post_init__(self) -> None:
        if not self.size:
            self.size = len(self.data) if self.data is not None else 128


class OutboundQueue:
    """Bounded per-client queue with the drop policies of docs/operations.md (see module header)."""

    def __init__(self, max_frames: int = 256, max_bytes: int = 1 << 20, slow_after: float = 30.0):
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.slow_after = slow_after
        self._items: deque[OutboundItem] = deque()
        self._bytes = 0
        self._full_since: float | None = None
        self.dropped: dict[str, Counter[str]] = {}
        self.total_dropped_frames = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def _over(self, extra: int) -> bool:
        return len(self._items) + 1 > self.max_frames or self._bytes + extra > self.max_bytes

    def _count(self, item: OutboundItem) -> None:
        counter = self.dropped.setdefault(item.qid, Counter())
        if item.kind == "rows":
            counter["client_queue"] += item.n_rows
        else:
            counter["client_queue_windows"] += 1
        self.total_dropped_frames += 1

    def _remove_first(self, predicate: Any) -> bool:
        for i, queued in enumerate(self._items):
            if predicate(queued):
                del self._items[i]
                self._bytes -= queued.size
                self._count(queued)
                return True
        return False

    def put(self, item: OutboundItem, now: float) -> bool:
        """Queue ``item``, dropping per policy when full. Returns False when ``item`` itself was
        dropped (a raw-rows frame larger than the whole queue)."""
        if item.kind == "meta":
            for i, queued in enumerate(self._items):
                if queued.kind == "meta" and queued.qid == item.qid:
                    self._items[i] = item  # same size class; newer meta supersedes
                    return True
            if item.urgent:
                # Drop reports jump the queue (a slow client must learn what it lost), but
                # never ahead of its query's own control frames (``accepted`` first).
                at = 0
                for i, queued in enumerate(self._items):
                    if queued.qid == item.qid and queued.kind == "control":
                        at = i + 1
                self._items.insert(at, item)
                self._bytes += item.size
                return True
        if item.kind in ("rows", "window"):
            while self._over(item.size):
                if self._full_since is None:
                    self._full_since = now
                if item.kind == "window" and self._remove_first(
                    lambda q: q.kind == "window" and q.qid == item.qid
                ):
                    continue
                if self._remove_first(lambda q: q.kind == "rows"):
                    continue
                if item.kind == "window" and self._remove_first(lambda q: q.kind == "window"):
                    continue
                self._count(item)  # nothing droppable left: the new frame goes
                return False
        self._items.append(item)
        self._bytes += item.size
        return True

    def get_nowait(self, now: float) -> OutboundItem | None:
        """The next frame to send, or None when empty."""
        if not self._items:
            return None
        item = self._items.popleft()
        self._bytes -= item.size
        if self._full_since is not None and (
            len(self._items) < self.max_frames // 2 and self._bytes < self.max_bytes // 2
        ):
            self._full_since = None
        return item

    def too_slow(self, now: float) -> bool:
        """True once the queue has been full for ``slow_after`` seconds."""
        return self._full_since is not None and now - self._full_since >= self.slow_after

    def drops_for(self, qid: str) -> dict[str, int]:
        """Drops this queue made for query ``qid`` so far, by reason."""
        return dict(self.dropped.get(qid, {}))

    def discard_query(self, qid: str) -> None:
        """Forget queued frames of a finished query (but keep its control frames)."""
        kept = deque(q for q in self._items if q.qid != qid or q.kind == "control")
        self._bytes = sum(q.size for q in kept)
        self._items = kept
