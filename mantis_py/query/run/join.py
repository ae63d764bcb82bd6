"""JOIN across two sources within a time bound (docs/mql.md#join-and-anomaly): a pure, bounded-memory core.

``from A join B N seconds on k`` pairs each event of side A with the **first** event of side B,
in event order (§3.17), whose key is equal to its own (§3.5.2: ``1 == 1.0``, null equals null,
containers structurally) and whose event time is within N seconds (``|tA - tB| <= N``). The
joined row is B's fields overlaid by A's (:func:`overlay`). An A event with no partner produces
nothing. A B event may be the partner of many A events.

Theory of operation:
- :class:`JoinCore` holds the events that may still pair, per side, bucketed by
  ``values.group_key(key)`` (equal keys <=> equal group keys). Times and order keys come from
  the caller, so the core is pure: replay passes the line number as the order key, the gateway
  ``(t_ms, instance, seq)``.
- The **clock** is the largest event time offered so far (or passed to :meth:`JoinCore.advance`).
  A held event is *expired* once ``clock - t > N``: it can no longer pair and is dropped. An
  arriving event first looks for partners among the other side's unexpired held events, then is
  held itself unless it is already expired. So a pair forms exactly when the keys are equal,
  ``|tA - tB| <= N``, and the earlier-arriving event had not expired when the later one arrived
  (for a time-ordered input: always). :func:`brute_force_join` states the same rule as a
  nested loop; the property test checks the two agree.
- An arriving A takes the held B partner with the smallest order key (in replay: the first one
  read). An A without a partner waits; the next B of its key within the bound pairs with every
  waiting A of that key at once (in A order). In live mode events of different agents can reach
  the gateway out of event order; a B that arrives after its A was already paired cannot take
  its place (documented in docs/query.md).
- A joined row's time is ``max(tA, tB)``: the moment the pair is complete, so a joined row is
  never late for the windows downstream when the input is in time order. Its order key is
  ``(order of the completing event, order of the A event)``.
- **Bounded memory.** Each side holds at most ``capacity`` events. Holding one more evicts that
  side's oldest (first-arrived) held event. Counters (:class:`JoinStats`) tell apart A events
  that expired without a partner (``a_unpaired``: an inner join's normal loss), events evicted
  for capacity before their bound passed (``a_evicted``, ``b_evicted``: a real loss), and B
  events that left without ever pairing (``b_unpaired``). :meth:`JoinCore.take_notices` hands
  out the new losses since the last call as run-time notices (``join-unpaired``,
  ``join-evicted``, §5.6).
- :class:`JoinSpec` reads the JOIN clause of a query: which side a source (or, in replay, an
  event's ``_app``/``_stream`` fields) belongs to, and the key path.

Nothing here raises on any event, key or time the engine can produce.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from ..semantics.plan import DEFAULT_JOIN_CAPACITY
from ..semantics.values import group_key, resolve
from ..syntax import ast

__all__ = [
    "DEFAULT_JOIN_CAPACITY",
    "JoinCore",
    "JoinSpec",
    "JoinStats",
    "LiveJoin",
    "Pair",
    "ReplayJoin",
    "Side",
    "brute_force_join",
    "overlay",
]

Side = Literal["A", "B"]


class Pair(NamedTuple):
    """One join result: the A item, its B partner, the joined time ``max(tA, tB)`` and the
    order key ``(order of the completing event, order of the A event)``. (A named tuple: it is
    made once per output row.)"""

    a: Any
    b: Any
    t: Any
    order: tuple[Any, Any]


@dataclass(frozen=True, slots=True)
class JoinStats:
    """Counters of a :class:`JoinCore` (all cumulative except ``held_*``).

    ``a_unpaired``: A events whose bound passed (or the input ended) without a partner.
    ``a_evicted``: A events dropped for capacity while they could still pair.
    ``b_unpaired``: B events that left (expired, evicted or at the end) without ever pairing.
    ``b_evicted``: B events dropped for capacity while they could still pair.
    ``peak_a``/``peak_b``: the largest number held at once, never above the capacity.
    """

    a_in: int = 0
    b_in: int = 0
    pairs: int = 0
    a_unpaired: int = 0
    a_evicted: int = 0
    b_unpaired: int = 0
    b_evicted: int = 0
    held_a: int = 0
    held_b: int = 0
    peak_a: int = 0
    peak_b: int = 0


# A held event is a small list (cheaper than an object on the hot path):
# [time, order key, item, group key, alive, paired]. ``alive`` turns False when the event pairs
# (A), expires or is evicted; ``paired`` records that a B was ever somebody's partner.
_T, _O, _ITEM, _KEY, _ALIVE, _PAIRED = range(6)


class _SideStore:
    """The held events of one side: buckets by key (lists) and the arrival queue, both in
    arrival order.

    Removal is lazy (the ``alive`` flag): a dead entry leaves the arrival queue and its bucket
    when it reaches their front, or when :meth:`compact` rebuilds both because dead entries
    outnumber the live ones, so the structures never reference more than a few times ``live``
    entries (plus a small constant).
    """

    __slots__ = ("arrival", "buckets", "in_buckets", "live", "sorted")

    def __init__(self) -> None:
        self.buckets: dict[Hashable, list[list[Any]]] = {}
        self.arrival: deque[list[Any]] = deque()
        self.live = 0
        self.in_buckets = 0  # entries referenced by the buckets, dead ones included
        self.sorted = True  # every bucket is in ascending order-key order

    def compact(self) -> None:
        if len(self.arrival) + self.in_buckets <= 4 * self.live + 128:
            return
        self.arrival = deque(h for h in self.arrival if h[_ALIVE])
        buckets: dict[Hashable, list[list[Any]]] = {}
        n = 0
        for k, b in self.buckets.items():
            kept = [h for h in b if h[_ALIVE]]
            if kept:
                buckets[k] = kept
                n += len(kept)
        self.buckets = buckets
        self.in_buckets = n
        if not buckets:
            self.sorted = True


_NO_PAIRS: tuple[Pair, ...] = ()


def _order_less(x: Any, y: Any) -> bool:
    try:
        return bool(x < y)
    except TypeError:
        return False


def _time_ok(t: Any) -> bool:
    tt = type(t)
    return (tt is int or tt is float) and t - t == 0


class JoinCore:
    """The join state machine (see the module docstring). Pure: times are arguments.

    ``seconds`` is N (a number >= 0); ``capacity`` the events held per side (>= 1). Each
    result is ``combine(a_item, b_item, t, order)``, a :class:`Pair` by default (an engine
    stage passes a function that builds its own output directly).
    """

    def __init__(self, seconds: int | float, capacity: int = DEFAULT_JOIN_CAPACITY,
                 combine: Callable[[Any, Any, Any, tuple[Any, Any]], Any] = Pair) -> None:
        if not _time_ok(seconds) or seconds < 0:
            raise ValueError(f"join bound must be a number >= 0, got {seconds!r}")
        if type(capacity) is not int or capacity < 1:
            raise ValueError(f"join capacity must be an integer >= 1, got {capacity!r}")
        self.seconds = seconds
        self.capacity = capacity
        self._combine = combine
        self._slack = seconds / 32
        self._sweep_at: Any = math.inf  # sweep when the clock passes this (see _sweep)
        self._clock: Any = -math.inf  # the largest time offered (see the ``clock`` property)
        self._a = _SideStore()
        self._b = _SideStore()
        self.b_in = self.pairs = 0
        self.a_unpaired = self.a_evicted = self.b_unpaired = self.b_evicted = 0
        self.peak_a = self.peak_b = 0
        self._reported_unpaired = 0
        self._reported_evicted = 0

    # -- the clock ---------------------------------------------------------------------------

    @property
    def clock(self) -> Any:
        """The largest event time offered or passed to :meth:`advance` (None before any)."""
        return None if self._clock == -math.inf else self._clock

    def advance(self, t: Any) -> None:
        """Move the clock to ``t`` if it is later, and drop what expired. Times that are not
        finite numbers are ignored."""
        if not _time_ok(t):
            return
        if t > self._clock:
            self._clock = t
        self._sweep()

    def _sweep(self) -> None:
        """Drop the expired events at the front of both arrival queues, then set the clock
        reading at which the next sweep is due (the earliest front time + N + slack)."""
        self._note_peaks()
        self._expire(self._a, True)
        self._expire(self._b, False)
        at = math.inf
        for arr in (self._a.arrival, self._b.arrival):
            if arr:
                t = arr[0][_T] + self.seconds + self._slack
                if t < at:
                    at = t
        self._sweep_at = at

    def _expired(self, t: Any) -> bool:
        return self._clock - t > self.seconds  # type: ignore[no-any-return]

    def _expire(self, store: _SideStore, is_a: bool) -> None:
        """Pop the expired (and dead) entries at the front of the arrival queue and count the
        losses. Buckets are not touched: scans skip dead entries and trim them, and
        :meth:`_SideStore.compact` rebuilds once dead entries outnumber the live ones."""
        arrival = store.arrival
        clock, n = self._clock, self.seconds
        gone = unpaired = 0
        while arrival:
            h = arrival[0]
            if h[_ALIVE]:
                if clock - h[_T] <= n:
                    break
                h[_ALIVE] = False
                gone += 1
                if not h[_PAIRED]:
                    unpaired += 1
            arrival.popleft()
        if gone:
            store.live -= gone
            if is_a:
                self.a_unpaired += gone
            else:
                self.b_unpaired += unpaired
        store.compact()

    def _count_gone(self, h: list[Any], is_a: bool, *, evicted: bool) -> None:
        if is_a:
            if evicted:
                self.a_evicted += 1
            else:
                self.a_unpaired += 1
        else:
            if evicted:
                self.b_evicted += 1
            if not h[_PAIRED]:
                self.b_unpaired += 1

    # -- offering events ---------------------------------------------------------------------

    def offer(self, side: Side, key: Any, item: Any, t: Any, order: Any) -> Sequence[Any]:
        """Offer one event of ``side`` ("A" or "B") with its raw key value, the item to hand
        back in pairs, its event time and its order key. Returns the pairs it completes, in
        order. An event whose time is not a finite number is ignored."""
        if side == "A":
            return self.offer_a(key, item, t, order)
        return self.offer_b(key, item, t, order)

    def _enter(self, t: Any) -> Any:
        """The clock after an event at ``t`` (None: ``t`` is not a finite number, the event is
        ignored). Expired events are swept in batches (``_slack`` late); until then the scans
        skip them, so results do not depend on when the sweep runs."""
        tt = type(t)
        if (tt is not int and tt is not float) or t - t != 0:
            return None
        clock = self._clock
        if t > clock:
            self._clock = clock = t
        if clock > self._sweep_at:
            self._sweep()
        return clock

    def offer_a(self, key: Any, item: Any, t: Any, order: Any) -> Sequence[Any]:
        """Offer an A event (see :meth:`offer`)."""
        clock = self._enter(t)
        if clock is None:
            return _NO_PAIRS
        n = self.seconds
        astore = self._a
        bstore = self._b
        k = key if type(key) is str else group_key(key)
        bucket = bstore.buckets.get(k)
        if bucket:
            if not bucket[0][_ALIVE]:  # trim the dead entries at the front
                i = 1
                while i < len(bucket) and not bucket[i][_ALIVE]:
                    i += 1
                del bucket[:i]
                bstore.in_buckets -= i
                if not bucket:
                    del bstore.buckets[k]
            best: list[Any] | None = None
            for h in bucket:
                ht = h[_T]
                if not h[_ALIVE] or clock - ht > n or t - ht > n or ht - t > n:
                    continue
                if best is None:
                    best = h
                    if bstore.sorted:
                        break
                elif _order_less(h[_O], best[_O]):
                    best = h
            if best is not None:
                best[_PAIRED] = True
                self.pairs += 1
                bt = best[_T]
                return [self._combine(item, best[_ITEM], t if t >= bt else bt, (order, order))]
        if clock - t > n:
            self.a_unpaired += 1
            return _NO_PAIRS
        self._hold(astore, True, [t, order, item, k, True, False])
        return _NO_PAIRS

    def offer_b(self, key: Any, item: Any, t: Any, order: Any) -> Sequence[Any]:
        """Offer a B event (see :meth:`offer`)."""
        clock = self._enter(t)
        if clock is None:
            return _NO_PAIRS
        self.b_in += 1
        n = self.seconds
        astore = self._a
        bstore = self._b
        k = key if type(key) is str else group_key(key)
        out: Sequence[Any] = _NO_PAIRS
        bucket = astore.buckets.get(k)
        if bucket:
            out = self._pair_waiting(bucket, k, item, t, order, clock)
        if clock - t > n:
            if not out:
                self.b_unpaired += 1
            return out
        self._hold(bstore, False, [t, order, item, k, True, len(out) > 0])
        return out

    def _hold(self, store: _SideStore, is_a: bool, h: list[Any]) -> None:
        """Keep event ``h`` (``[t, order, item, key, alive, paired]``) on its side for at most
        N seconds: evict the oldest when the side is full, file it under its key (noting when
        arrivals stop being in event order) and in arrival order for the expiry sweep."""
        if store.live >= self.capacity:
            self._evict(store, is_a)
        b = store.buckets.get(h[_KEY])
        if not b:
            store.buckets[h[_KEY]] = [h]
        else:
            if store.sorted:
                try:
                    if h[_O] < b[-1][_O]:
                        store.sorted = False
                except TypeError:
                    pass
            b.append(h)
        store.in_buckets += 1
        arr = store.arrival
        if not arr:
            at = h[_T] + self.seconds + self._slack
            if at < self._sweep_at:
                self._sweep_at = at
        arr.append(h)
        store.live += 1

    def _pair_waiting(self, bucket: list[list[Any]], k: Hashable, item: Any, t: Any, order: Any,
                      clock: Any) -> list[Any]:
        """A B event meets the waiting A events of its key: pair every one within the bound
        (in A order), count the expired ones, keep the rest waiting."""
        astore = self._a
        n = self.seconds
        combine = self._combine
        self._note_peaks()
        out: list[Any] = []
        keep: list[list[Any]] | None = None
        for h in bucket:
            if not h[_ALIVE]:
                continue
            ht = h[_T]
            if clock - ht > n:
                h[_ALIVE] = False
                astore.live -= 1
                self.a_unpaired += 1
            elif t - ht > n or ht - t > n:
                if keep is None:
                    keep = [h]
                else:
                    keep.append(h)
            else:
                h[_ALIVE] = False
                astore.live -= 1
                out.append(combine(h[_ITEM], item, t if t >= ht else ht, (order, h[_O])))
        if keep is None:
            astore.in_buckets -= len(bucket)
            del astore.buckets[k]
        else:
            astore.in_buckets -= len(bucket) - len(keep)
            astore.buckets[k] = keep
        if out:
            self.pairs += len(out)
            if len(out) > 1 and not astore.sorted:
                out.sort(key=_pair_sort_key)
        astore.compact()
        return out

    def _evict(self, store: _SideStore, is_a: bool) -> None:
        """Make room for one more: drop the side's first-arrived live event."""
        self._note_peaks()
        arrival = store.arrival
        while arrival:
            old = arrival.popleft()
            if old[_ALIVE]:
                old[_ALIVE] = False
                store.live -= 1
                self._count_gone(old, is_a, evicted=not self._expired(old[_T]))
                break
        store.compact()

    def _note_peaks(self) -> None:
        """Record the peak holdings. ``live`` only grows when an event is held, so noting it
        right before every decrease (and in :meth:`stats`) gives the exact maximum."""
        if self._a.live > self.peak_a:
            self.peak_a = self._a.live
        if self._b.live > self.peak_b:
            self.peak_b = self._b.live

    # -- the end and the counters ------------------------------------------------------------

    def finish(self) -> None:
        """The input ended: every held A counts as unpaired, every never-paired B too."""
        self._note_peaks()
        for store, is_a in ((self._a, True), (self._b, False)):
            for h in store.arrival:
                if h[_ALIVE]:
                    h[_ALIVE] = False
                    self._count_gone(h, is_a, evicted=False)
        self._a = _SideStore()
        self._b = _SideStore()
        self._sweep_at = math.inf

    def stats(self) -> JoinStats:
        """A snapshot of the counters."""
        self._note_peaks()
        return JoinStats(
            a_in=self.pairs + self.a_unpaired + self.a_evicted + self._a.live, b_in=self.b_in, pairs=self.pairs, a_unpaired=self.a_unpaired,
            a_evicted=self.a_evicted, b_unpaired=self.b_unpaired, b_evicted=self.b_evicted,
            held_a=self._a.live, held_b=self._b.live, peak_a=self.peak_a, peak_b=self.peak_b,
        )

    def held(self) -> int:
        """Events held now, both sides together (never above twice the capacity)."""
        return self._a.live + self._b.live

    def take_notices(self) -> dict[str, int]:
        """Losses since the last call, as run-time notices: ``join-unpaired`` (A events whose
        bound passed without a partner) and ``join-evicted`` (events of either side dropped for
        capacity). Zero counts are left out."""
        unpaired = self.a_unpaired
        evicted = self.a_evicted + self.b_evicted
        out: dict[str, int] = {}
        if unpaired > self._reported_unpaired:
            out["join-unpaired"] = unpaired - self._reported_unpaired
            self._reported_unpaired = unpaired
        if evicted > self._reported_evicted:
            out["join-evicted"] = evicted - self._reported_evicted
            self._reported_evicted = evicted
        return out


def _pair_sort_key(p: Any) -> Any:
    return p[-1][1]  # the A order of a Pair or of a (row, t, order) tuple


# --------------------------------------------------------------------------- joined rows


def overlay(a: Any, b: Any) -> dict[str, Any]:
    """The joined row: B's members overlaid by A's (A wins on a clash; B's key order first,
    then A's new keys). Either side may be any mapping; anything else counts as ``{}``."""
    if type(a) is dict and type(b) is dict:
        return {**b, **a}
    row: dict[str, Any] = dict(b) if isinstance(b, Mapping) else {}
    if type(a) is dict:
        row.update(a)
    elif isinstance(a, Mapping):
        for k, v in a.items():
            row[k] = v
    return row


# --------------------------------------------------------------------------- the query's JOIN


def _source_pair(s: ast.Source) -> tuple[str, str]:
    return (s.app, s.stream if s.stream is not None else "default")


@dataclass(frozen=True, slots=True)
class JoinSpec:
    """What a query's JOIN clause says: the sources of each side as ``(app, stream)`` pairs
    (``stream`` ``"default"`` when not written), the bound N and the key path.

    Side A is the FROM sources, side B the JOIN sources. A source on both sides counts as A.
    """

    a_sources: tuple[tuple[str, str], ...]
    b_sources: tuple[tuple[str, str], ...]
    seconds: int
    key: tuple[Any, ...] | None  # property segments; None when ON is not a plain property

    @classmethod
    def from_query(cls, q: ast.Query) -> JoinSpec | None:
        """The spec of ``q``'s first JOIN clause, or None without one."""
        if not q.joins:
            return None
        j = q.joins[0]
        key: tuple[Any, ...] | None = None
        if isinstance(j.on, ast.Property) and not j.on.has_star:
            key = tuple(j.on.segments)
        return cls(
            a_sources=tuple(_source_pair(s) for s in q.sources),
            b_sources=tuple(_source_pair(s) for s in j.sources),
            seconds=int(j.seconds),  # a whole number: the analyzer refuses others
            key=key,
        )

    def side_of(self, app: Any, stream: Any = None) -> Side | None:
        """The side of an event published by ``app`` on ``stream`` (None or a non-string stream
        is the default stream), or None when it belongs to neither."""
        if type(app) is not str:
            return None
        s = stream if type(stream) is str else "default"
        pair = (app, s)
        if pair in self.a_sources:
            return "A"
        if pair in self.b_sources:
            return "B"
        return None

    def side_of_event(self, event: Any) -> Side | None:
        """Replay: the side named by the event's own ``_app`` and ``_stream`` fields (a missing
        or null ``_stream`` means ``default``); None for a line of neither source."""
        if not isinstance(event, Mapping):
            return None
        return self.side_of(event.get("_app"), event.get("_stream"))

    def key_of(self, event: Any) -> Any:
        """The ON value of an event (null when missing). Works on any mapping at the top level."""
        if self.key is None:
            return None
        if type(event) is not dict and isinstance(event, Mapping):
            event = dict(event)
        return resolve(event, self.key)

    def core(self, capacity: int = DEFAULT_JOIN_CAPACITY) -> JoinCore:
        """A fresh :class:`JoinCore` for this spec."""
        return JoinCore(self.seconds, capacity)


# --------------------------------------------------------------------------- engine stages


def _replay_row(a: Any, b: Any, t: Any, order: tuple[Any, Any]) -> tuple[dict[str, Any], Any, tuple[Any, Any]]:
    if type(a) is dict and type(b) is dict:
        return ({**b, **a}, t, order)
    return (overlay(a, b), t, order)


class ReplayJoin:
    """The join stage of the replay engine: input lines in, joined events out.

    ``side(event)`` says which source a line belongs to (None: ignore the line); the engine runs
    SAMPLE on the line (as the agents do live), then :meth:`offer` returns ``(joined event,
    time, order key)`` for each pair the line completes. The order key is ``(line of the
    completing event, line of the A event)``.
    """

    __slots__ = ("_default", "_default_offer", "_key1", "_offer_a", "_offer_b", "_sides", "core", "spec")

    def __init__(self, spec: JoinSpec, capacity: int = DEFAULT_JOIN_CAPACITY) -> None:
        self.spec = spec
        self.core = JoinCore(spec.seconds, capacity, _replay_row)
        sides: dict[tuple[str, str], Side] = {p: "B" for p in spec.b_sources}
        sides.update({p: "A" for p in spec.a_sources})  # a source on both sides counts as A
        self._sides = sides
        self._default = {app: side for (app, st), side in sides.items() if st == "default"}
        k = spec.key
        self._key1 = k[0] if k is not None and len(k) == 1 and type(k[0]) is str else None
        self._offer_a = self.core.offer_a
        self._offer_b = self.core.offer_b
        self._default_offer: dict[Any, Callable[..., Sequence[Any]]] = {
            app: self._offer_a if side == "A" else self._offer_b
            for app, side in self._default.items()}

    def side(self, event: Any) -> Side | None:
        """The source of a line: its ``_app`` / ``_stream`` (see :meth:`JoinSpec.side_of_event`)."""
        if type(event) is dict:
            app = event.get("_app")
            st = event.get("_stream")
            if type(app) is not str:
                return None
            return self._sides.get((app, st if type(st) is str else "default"))
        return self.spec.side_of_event(event)

    def offer(self, side: Side, event: Any, t: Any, line: int) -> Sequence[tuple[dict[str, Any], Any, tuple[Any, Any]]]:
        """Offer one line of ``side`` -> ``(joined event, time, order key)`` per pair it completes."""
        k1 = self._key1
        key = event.get(k1) if k1 is not None and type(event) is dict else self.spec.key_of(event)
        return (self._offer_a if side == "A" else self._offer_b)(key, event, t, line)

    def feed(self, event: Any, t: Any, line: int) -> Sequence[tuple[dict[str, Any], Any, tuple[Any, Any]]]:
        """:meth:`side` then :meth:`offer` in one call (for a query without SAMPLE); a line of
        neither source gives nothing."""
        k1 = self._key1
        if type(event) is dict and k1 is not None and event.get("_stream") is None:
            try:  # the usual line: default stream; the app names the side's offer method
                offer = self._default_offer.get(event.get("_app"))
            except TypeError:  # an unhashable _app
                return ()
            if offer is None:
                return ()
            return offer(event.get(k1), event, t, line)
        s = self.side(event)
        return () if s is None else self.offer(s, event, t, line)

    def advance(self, t: Any) -> None:
        self.core.advance(t)

    def finish(self) -> None:
        self.core.finish()

    def take_notices(self) -> dict[str, int]:
        return self.core.take_notices()


class LiveJoin:
    """The join stage of the gateway's merger: shipped records of both sources in, joined
    records out, in the same shape ``{"t": ms, "i": instance, "s": seq, "e": event, "m": meta}``.

    The side comes from the record's meta (``_app``, ``_stream``), which the gateway fills in
    for every record. Times are integer milliseconds, so the bound is ``N × 1000`` ms exactly.
    A joined record carries ``max(tA, tB)``, the completing record's instance, ``s`` = the
    completing record's sequence number and ``j`` = the A record's order key (for a stable
    order among the pairs one record completes), and A's meta overlaid on B's.
    """

    __slots__ = ("core", "spec")

    def __init__(self, spec: JoinSpec, capacity: int = DEFAULT_JOIN_CAPACITY) -> None:
        self.spec = spec
        self.core = JoinCore(spec.seconds * 1000, capacity)

    def offer_record(self, rec: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One shipped record -> the joined records it completes (records of neither side, or
        with a malformed time, are ignored)."""
        m = rec.get("m") or {}
        side = self.spec.side_of(m.get("_app"), m.get("_stream"))
        if side is None:
            return []
        t = rec.get("t")
        order = (t, rec.get("i"), rec.get("s", 0))
        out: list[dict[str, Any]] = []
        for p in self.core.offer(side, self.spec.key_of(rec.get("e")), rec, t, order):
            a, b = p.a, p.b
            done = a if p.order[0] == p.order[1] else b
            out.append({"t": p.t, "i": done.get("i"), "s": done.get("s", 0), "j": p.order[1],
                        "e": overlay(a.get("e"), b.get("e")),
                        "m": overlay(a.get("m") or {}, b.get("m") or {})})
        return out

    def advance_ms(self, t_ms: Any) -> None:
        """Move the join clock (ms), e.g. to the gateway's ``now`` minus the grace period."""
        self.core.advance(t_ms)

    def take_notices(self) -> dict[str, int]:
        return self.core.take_notices()


# --------------------------------------------------------------------------- the oracle


def brute_force_join(
    events: Iterable[tuple[Side, Any, Any, Any]], seconds: int | float
) -> list[tuple[int, int]]:
    """The join as a nested loop, for tests: ``events`` are ``(side, key, t, order)`` in
    arrival order. Returns ``(index of A, index of B)`` pairs (indices into ``events``).

    A pairs with the B of smallest order key among those that are equal by key
    (``group_key``), within ``|tA - tB| <= seconds``, and where whichever of the two arrived
    first had not expired (``clock - t <= seconds``, the clock being the largest time up to the
    later one's arrival) when the other arrived. Unbounded capacity. Events with a time that is
    not a finite number are skipped.
    """
    evs: Sequence[tuple[Side, Any, Any, Any]] = list(events)
    clocks: list[Any] = []
    clock: Any = None
    for _side, _key, t, _order in evs:
        if _time_ok(t) and (clock is None or t > clock):
            clock = t
        clocks.append(clock)
    out: list[tuple[int, int]] = []
    for i, (side, key, ta, _oa) in enumerate(evs):
        if side != "A" or not _time_ok(ta):
            continue
        ka = group_key(key)
        best: int | None = None
        for j, (side_b, key_b, tb, ob) in enumerate(evs):
            if side_b != "B" or not _time_ok(tb) or group_key(key_b) != ka:
                continue
            if ta - tb > seconds or tb - ta > seconds:
                continue
            first_t = ta if i < j else tb
            if clocks[max(i, j)] - first_t > seconds:
                continue
            if best is None or _order_less(ob, evs[best][3]):
                best = j
        if best is not None:
            out.append((i, best))
    return out
