"""JOIN across two sources within a time bound (MQL.md §3.19): a pure, bounded-memory core.

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

from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from . import ast
from .values import group_key, resolve

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

DEFAULT_JOIN_CAPACITY = 10000
"""Events held per side by default (the same order of size as GROUP_CAP and VALUE_CAP, §5.5)."""

Side = Literal["A", "B"]


@dataclass(frozen=True, slots=True)
class Pair:
    """One join result: the A item, its B partner, the joined time ``max(tA, tB)`` and the
    order key ``(order of the completing event, order of the A event)``."""

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


class _Held:
    """One held event. ``alive`` turns False when it pairs (A), expires or is evicted."""

    __slots__ = ("alive", "item", "key", "order", "paired", "t")

    def __init__(self, item: Any, key: Hashable, t: Any, order: Any) -> None:
        self.item = item
        self.key = key
        self.t = t
        self.order = order
        self.alive = True
        self.paired = False


class _SideStore:
    """The held events of one side: buckets by key and the arrival queue, both in arrival order.

    Removal is lazy (``alive`` flags): a dead entry leaves the arrival queue and its bucket when
    it reaches their front, or when :meth:`compact` rebuilds both because dead entries outnumber
    the live ones, so the structures never reference more than a few times ``live`` entries.
    """

    __slots__ = ("arrival", "buckets", "in_buckets", "live", "sorted")

    def __init__(self) -> None:
        self.buckets: dict[Hashable, deque[_Held]] = {}
        self.arrival: deque[_Held] = deque()
        self.live = 0
        self.in_buckets = 0  # entries referenced by the buckets, dead ones included
        self.sorted = True  # every bucket is in ascending order-key order

    def add(self, h: _Held) -> None:
        b = self.buckets.get(h.key)
        if b is None:
            self.buckets[h.key] = deque((h,))
        else:
            if self.sorted and b and _order_less(h.order, b[-1].order):
                self.sorted = False
            b.append(h)
        self.in_buckets += 1
        self.arrival.append(h)
        self.live += 1

    def kill(self, h: _Held) -> None:
        """Mark ``h`` dead and trim the dead entries at the front of its bucket."""
        h.alive = False
        self.live -= 1
        b = self.buckets.get(h.key)
        if b is not None:
            while b and not b[0].alive:
                b.popleft()
                self.in_buckets -= 1
            if not b:
                del self.buckets[h.key]

    def replace_bucket(self, key: Hashable, old: deque[_Held], kept: deque[_Held]) -> None:
        self.in_buckets -= len(old) - len(kept)
        if kept:
            self.buckets[key] = kept
        else:
            self.buckets.pop(key, None)

    def compact(self) -> None:
        if len(self.arrival) + self.in_buckets <= 4 * self.live + 128:
            return
        self.arrival = deque(h for h in self.arrival if h.alive)
        buckets: dict[Hashable, deque[_Held]] = {}
        n = 0
        for k, b in self.buckets.items():
            kept = deque(h for h in b if h.alive)
            if kept:
                buckets[k] = kept
                n += len(kept)
        self.buckets = buckets
        self.in_buckets = n
        if not buckets:
            self.sorted = True


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

    ``seconds`` is N (a number >= 0); ``capacity`` the events held per side (>= 1).
    """

    def __init__(self, seconds: int | float, capacity: int = DEFAULT_JOIN_CAPACITY) -> None:
        if not _time_ok(seconds) or seconds < 0:
            raise ValueError(f"join bound must be a number >= 0, got {seconds!r}")
        if type(capacity) is not int or capacity < 1:
            raise ValueError(f"join capacity must be an integer >= 1, got {capacity!r}")
        self.seconds = seconds
        self.capacity = capacity
        self.clock: Any = None
        self._a = _SideStore()
        self._b = _SideStore()
        self._n = {
            "a_in": 0,
            "b_in": 0,
            "pairs": 0,
            "a_unpaired": 0,
            "a_evicted": 0,
            "b_unpaired": 0,
            "b_evicted": 0,
            "peak_a": 0,
            "peak_b": 0,
        }
        self._reported_unpaired = 0
        self._reported_evicted = 0

    # -- the clock ---------------------------------------------------------------------------

    def advance(self, t: Any) -> None:
        """Move the clock to ``t`` if it is later, and drop what expired. Times that are not
        finite numbers are ignored."""
        if not _time_ok(t):
            return
        if self.clock is None or t > self.clock:
            self.clock = t
        self._expire(self._a, True)
        self._expire(self._b, False)

    def _expired(self, t: Any) -> bool:
        return self.clock is not None and self.clock - t > self.seconds

    def _expire(self, store: _SideStore, is_a: bool) -> None:
        arrival = store.arrival
        clock, n = self.clock, self.seconds
        while arrival:
            h = arrival[0]
            if h.alive:
                if clock - h.t <= n:
                    break
                store.kill(h)
                self._count_gone(h, is_a, evicted=False)
            arrival.popleft()
        store.compact()

    def _count_gone(self, h: _Held, is_a: bool, *, evicted: bool) -> None:
        n = self._n
        if is_a:
            n["a_evicted" if evicted else "a_unpaired"] += 1
        else:
            if evicted:
                n["b_evicted"] += 1
            if not h.paired:
                n["b_unpaired"] += 1

    # -- offering events ---------------------------------------------------------------------

    def offer(self, side: Side, key: Any, item: Any, t: Any, order: Any) -> list[Pair]:
        """Offer one event of ``side`` ("A" or "B") with its raw key value, the item to hand
        back in pairs, its event time and its order key. Returns the pairs it completes, in
        order. An event whose time is not a finite number is ignored."""
        if side == "A":
            return self.offer_a(key, item, t, order)
        return self.offer_b(key, item, t, order)

    def offer_a(self, key: Any, item: Any, t: Any, order: Any) -> list[Pair]:
        """Offer an A event (see :meth:`offer`)."""
        if not _time_ok(t):
            return []
        self._n["a_in"] += 1
        self.advance(t)
        k = group_key(key)
        n = self.seconds
        bucket = self._b.buckets.get(k)
        if bucket:
            best: _Held | None = None
            clock = self.clock
            for h in bucket:
                if not h.alive or clock - h.t > n or t - h.t > n or h.t - t > n:
                    continue
                if best is None:
                    best = h
                    if self._b.sorted:
                        break
                elif _order_less(h.order, best.order):
                    best = h
            if best is not None:
                best.paired = True
                self._n["pairs"] += 1
                return [Pair(item, best.item, t if t >= best.t else best.t, (order, order))]
        if self._expired(t):
            self._n["a_unpaired"] += 1
            return []
        self._hold(self._a, _Held(item, k, t, order), True)
        return []

    def offer_b(self, key: Any, item: Any, t: Any, order: Any) -> list[Pair]:
        """Offer a B event (see :meth:`offer`)."""
        if not _time_ok(t):
            return []
        self._n["b_in"] += 1
        self.advance(t)
        k = group_key(key)
        n = self.seconds
        h_b = _Held(item, k, t, order)
        out: list[Pair] = []
        store = self._a
        bucket = store.buckets.get(k)
        if bucket:
            clock = self.clock
            keep: deque[_Held] = deque()
            for h in bucket:
                if not h.alive:
                    continue
                if clock - h.t > n:
                    h.alive = False
                    store.live -= 1
                    self._count_gone(h, True, evicted=False)
                elif t - h.t > n or h.t - t > n:
                    keep.append(h)
                else:
                    h.alive = False
                    store.live -= 1
                    out.append(Pair(h.item, item, t if t >= h.t else h.t, (order, h.order)))
            store.replace_bucket(k, bucket, keep)
            if out:
                h_b.paired = True
                self._n["pairs"] += len(out)
                if len(out) > 1 and not store.sorted:
                    out.sort(key=_pair_sort_key)
        if self._expired(t):
            if not h_b.paired:
                self._n["b_unpaired"] += 1
            return out
        self._hold(self._b, h_b, False)
        return out

    def _hold(self, store: _SideStore, h: _Held, is_a: bool) -> None:
        if store.live >= self.capacity:
            arrival = store.arrival
            while arrival:
                old = arrival.popleft()
                if old.alive:
                    store.kill(old)
                    self._count_gone(old, is_a, evicted=not self._expired(old.t))
                    break
        store.add(h)
        peak = "peak_a" if is_a else "peak_b"
        if store.live > self._n[peak]:
            self._n[peak] = store.live
        store.compact()

    # -- the end and the counters ------------------------------------------------------------

    def finish(self) -> None:
        """The input ended: every held A counts as unpaired, every never-paired B too."""
        for store, is_a in ((self._a, True), (self._b, False)):
            for h in store.arrival:
                if h.alive:
                    h.alive = False
                    self._count_gone(h, is_a, evicted=False)
        self._a = _SideStore()
        self._b = _SideStore()

    def stats(self) -> JoinStats:
        """A snapshot of the counters."""
        return JoinStats(held_a=self._a.live, held_b=self._b.live, **self._n)

    def held(self) -> int:
        """Events held now, both sides together (never above twice the capacity)."""
        return self._a.live + self._b.live

    def take_notices(self) -> dict[str, int]:
        """Losses since the last call, as run-time notices: ``join-unpaired`` (A events whose
        bound passed without a partner) and ``join-evicted`` (events of either side dropped for
        capacity). Zero counts are left out."""
        n = self._n
        unpaired = n["a_unpaired"]
        evicted = n["a_evicted"] + n["b_evicted"]
        out: dict[str, int] = {}
        if unpaired > self._reported_unpaired:
            out["join-unpaired"] = unpaired - self._reported_unpaired
            self._reported_unpaired = unpaired
        if evicted > self._reported_evicted:
            out["join-evicted"] = evicted - self._reported_evicted
            self._reported_evicted = evicted
        return out


def _pair_sort_key(p: Pair) -> Any:
    return p.order[1]


# --------------------------------------------------------------------------- joined rows


def overlay(a: Any, b: Any) -> dict[str, Any]:
    """The joined row: B's members overlaid by A's (A wins on a clash; B's key order first,
    then A's new keys). Either side may be any mapping; anything else counts as ``{}``."""
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
            seconds=j.seconds,
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


class ReplayJoin:
    """The join stage of the replay engine: input lines in, joined events out.

    ``side(event)`` says which source a line belongs to (None: ignore the line); the engine runs
    SAMPLE on the line (as the agents do live), then :meth:`offer` returns ``(joined event,
    time, order key)`` for each pair the line completes. The order key is ``(line of the
    completing event, line of the A event)``.
    """

    __slots__ = ("core", "spec")

    def __init__(self, spec: JoinSpec, capacity: int = DEFAULT_JOIN_CAPACITY) -> None:
        self.spec = spec
        self.core = spec.core(capacity)

    def side(self, event: Any) -> Side | None:
        return self.spec.side_of_event(event)

    def offer(self, side: Side, event: Any, t: Any, line: int) -> list[tuple[dict[str, Any], Any, tuple[Any, Any]]]:
        pairs = self.core.offer(side, self.spec.key_of(event), event, t, line)
        return [(overlay(p.a, p.b), p.t, p.order) for p in pairs]

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
