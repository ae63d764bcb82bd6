"""Running a query live: ``prepare`` and the agent/gateway halves (docs/mql.md#windows).

Theory of operation:
- :func:`prepare` parses, analyses and compiles a query once (cached) into a
  :class:`PreparedQuery`. Everything here is pure: time comes in as ``now`` / ``t`` (float seconds
  since the epoch), randomness as a ``random.Random``.
- The **agent half** is a :class:`SourceRunner` (``p.source(...)``). In ``events`` mode the agent
  calls ``matches(event, t)`` (SAMPLE + WHERE) and ships the projected event itself. In ``partials``
  mode it calls ``offer(event, t)``, which folds the event into the group table of each of its
  windows, and ``poll(now)``, which hands back one JSON-able part per window that ended, empty ones
  included (§4.1).
- The **gateway half** is a :class:`Merger` (``p.merger(...)``). It merges parts (or cuts windows
  from shipped events), applies HAVING, ORDER BY and LIMIT, and emits each window once, in order,
  when every expected agent reported or at ``end + grace`` (§3.8.4). ``poll(now)`` returns
  :class:`Rows`, :class:`Notice` and :class:`Complete` outputs. The merger's inputs are keyed by
  *member* names the caller chooses (the gateway: one per app, instance and stream), added and
  removed with ``add_member`` / ``remove_member``; who is expected in a window is kept
  incrementally (``membership.py``), so a part costs O(1) whatever the number of members, and a
  second part from the same member for the same window is dropped and counted
  (``duplicate-parts``).
- Order keys (§3.17) are tuples: live ``(t_ms, instance, seq)``; replay ``(line,)``; count windows
  at the gateway use the arrival order.
- Evaluation never raises (§3.1): every per-event call is wrapped; failures count in ``errors``.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from ..compile.compiler import CompiledQuery, compile_query
from ..compile.runtime import tick_ms
from ..semantics.analysis import Analysis
from ..state.caps import DEFAULT_CAPS, Caps
from ..state.windows import first_live_window, window_bounds, window_indices, window_indices_ms
from ..syntax import ast
from .anomaly import AnomalyRunner
from .batching import (
    Batch,
    CountBatches,
    RowStream,
    Sampler,
    Shape,
    TimeBatches,
    finish_aggregate,
    finish_plain,
    where_all,
)
from .groups import AggPlan, GroupTable
from .join import JoinSpec, LiveJoin
from .membership import Membership
from .outputs import (
    Complete,
    CompleteReason,
    Coverage,
    Notice,
    NoticeKind,
    Output,
    Rows,
    make_notice,
)

__all__ = [
    "Complete",
    "Coverage",
    "Merger",
    "Notice",
    "Output",
    "PreparedQuery",
    "Rows",
    "SourceRunner",
    "finish_aggregate",
    "finish_plain",
    "prepare",
]


# --------------------------------------------------------------------------- prepare


def _window_params(q: ast.Query) -> tuple[int, int] | None:
    w = q.window
    if isinstance(w, ast.TimeWindow):
        return int(w.length), int(w.every)
    return None


@dataclass(frozen=True, eq=False)
class PreparedQuery:
    """A checked, compiled query. See docs/architecture.md."""

    analysis: Analysis
    compiled: CompiledQuery
    sources: tuple[tuple[str, str], ...] = field(default=())

    @property
    def canonical(self) -> str:
        return self.analysis.canonical

    @property
    def kind(self) -> str:
        return self.analysis.kind

    @property
    def ships(self) -> str:
        return self.analysis.ships

    @property
    def completes(self) -> bool:
        return self.analysis.completes

    @property
    def mode(self) -> str:
        return self.analysis.mode

    @property
    def limit(self) -> int | None:
        lim = self.analysis.query.limit
        return int(lim) if lim is not None else None

    @property
    def time_window(self) -> tuple[int, int] | None:
        """``(length, every)`` for a time window, else None."""
        return _window_params(self.analysis.query)

    @property
    def columns(self) -> int:
        """What the query costs to run, in columns: select items (``*`` is one) plus GROUP BY
        keys. The gateway budgets each user's live queries in these units."""
        q = self.analysis.query
        return max(1, len(q.items)) + len(q.group_by)

    @property
    def count_window(self) -> int | None:
        w = self.analysis.query.window
        return int(w.size) if isinstance(w, ast.CountWindow) else None

    def plan(self) -> dict[str, Any]:
        """The JSON object ``mantis-py check`` prints (docs/mql.md#commands)."""
        return self.analysis.plan()

    def agg_plan(self, caps: Caps = DEFAULT_CAPS) -> AggPlan:
        cq = self.compiled
        return AggPlan.build(self.analysis, cq.args, cq.group, caps)

    def filter(self, events: list[Any], meta: dict[str, Any] | None = None) -> list[Any]:
        """The events that pass WHERE (no SAMPLE, ``tick()`` as null), in one generated loop.

        A fast path for batches; evaluation errors fall back to one event at a time, and an event
        whose evaluation fails does not match.
        """
        return where_all(self.compiled, events, meta or {})[0]

    def source(
        self,
        *,
        app: str,
        stream: str = "default",
        instance: str = "",
        zone: str | None = None,
        rng: random.Random | None = None,
        caps: Caps = DEFAULT_CAPS,
    ) -> SourceRunner:
        """The agent part of this query for one agent instance and stream."""
        return SourceRunner(self, app, stream, instance, zone, rng or random.Random(), caps)

    def merger(self, *, start: float, grace: float = 5.0, caps: Caps = DEFAULT_CAPS) -> Merger:
        """The gateway part of this query, accepted at ``start`` (T0 of §3.8.4)."""
        return Merger(self, start, grace, caps)


_PREPARED: dict[tuple[str, str, frozenset[str] | None], PreparedQuery] = {}


def prepare(text: str, mode: str = "replay", apps: Collection[str] | None = None) -> PreparedQuery:
    """Parse, analyse and compile ``text`` (cached).

    Raises:
        QueryError: the query is rejected (syntax, semantic or limit error, docs/mql.md#errors).
    """
    key = (text, mode, None if apps is None else frozenset(apps))
    hit = _PREPARED.get(key)
    if hit is not None:
        return hit
    from ..semantics.analyze import analyze
    from ..syntax.parser import parse

    a = analyze(parse(text), mode=mode, apps=apps)  # type: ignore[arg-type]
    cq = compile_query(a)
    joined = tuple(s for j in a.query.joins for s in j.sources)  # JOIN sources run SAMPLE too
    sources = tuple((s.app, s.stream or "default") for s in (*a.query.sources, *joined))
    p = PreparedQuery(a, cq, sources)
    if len(_PREPARED) >= 1024:
        _PREPARED.clear()
    _PREPARED[key] = p
    return p


# --------------------------------------------------------------------------- agent side


def _always(event: Any, meta: Any, tk: Any) -> bool:
    return True


class SourceRunner:
    """The agent part of one query on one agent (see the module docstring). Pure."""

    def __init__(
        self, p: PreparedQuery, app: str, stream: str, instance: str, zone: str | None,
        rng: random.Random, caps: Caps,
    ) -> None:
        self.prepared = p
        self.instance = instance
        self.caps = caps
        self.errors = 0
        self.late = 0
        all_meta = {"_app": app, "_instance": instance, "_zone": zone, "_stream": stream}
        self._meta = {k: all_meta[k] for k in p.analysis.meta_fields if k in all_meta}
        cq = p.compiled
        self._cq = cq
        # a JOIN query filters joined rows at the gateway: its agents run SAMPLE only (§3.19)
        self._where = cq.where if not p.analysis.query.joins else _always
        self._uses_tick = cq.uses_tick
        self._sampler = Sampler(p.analysis.query.sample, cq, rng)
        self._window = p.time_window
        self._next_k: int | None = None
        self._windows: dict[int, GroupTable] = {}
        self._seq = 0
        self._plan = p.agg_plan(caps) if p.ships == "partials" else None
        # Observation bookkeeping (partials), set by a live agent (None: off, e.g. a split replay
        # that polls once at the end): a window is covered only if this runner was polled
        # throughout it. A pause longer than ``max_gap`` (SIGSTOP, a GC pause, a frozen VM, a busy
        # agent thread) leaves a gap; windows overlapping a gap ship ``"covered": false`` and the
        # gateway does not count them. Windows that ended more than ``horizon`` seconds ago are
        # skipped outright (counted in ``skipped_windows``): the gateway closed them long ago.
        self.max_gap: float | None = None
        self.horizon: float | None = None
        self.skipped_windows = 0
        self._last_poll: float | None = None
        self._gaps: list[tuple[float, float]] = []

    def meta_values(self) -> dict[str, Any]:
        """The meta fields this query references, with their values (``{}`` for most queries)."""
        return dict(self._meta)

    def matches(self, event: Any, t: float) -> bool:
        """SAMPLE + WHERE (events mode). Never raises: an evaluation error counts and is False."""
        try:
            tk = tick_ms(t) if self._uses_tick else None
            if self._sampler.active and not self._sampler.keep(event, self._meta, tk):
                return False
            return bool(self._where(event, self._meta, tk))
        except Exception:
            self.errors += 1
            return False

    def start(self, now: float, *, max_gap: float | None = None,
              horizon: float | None = None) -> None:
        """Partials: the first window is the first one starting at or after ``now``.

        A live agent passes ``max_gap`` / ``horizon`` (see ``__init__``); observation starts
        at ``now``, so a slow compile after receiving the query counts as a gap."""
        if self._window is not None:
            self._next_k = first_live_window(now, *self._window)
        if max_gap is not None:
            self.max_gap, self.horizon, self._last_poll = max_gap, horizon, now

    def offer(self, event: Any, t: float) -> None:
        """Partials: SAMPLE + WHERE + fold into the partial states of the event's windows."""
        if self._plan is None or self._window is None:
            return
        try:
            if self._next_k is None:
                self.start(t)
            tk = tick_ms(t)
            if self._sampler.active and not self._sampler.keep(event, self._meta, tk):
                return
            if not self._where(event, self._meta, tk):
                return
            ks = window_indices(t, *self._window)
            if not ks:
                return
            ok = (tk, self.instance, self._seq)
            self._seq += 1
            nk = self._next_k
            assert nk is not None
            for k in ks:
                if k < nk:
                    continue
                table = self._windows.get(k)
                if table is None:
                    table = self._windows[k] = GroupTable(self._plan)
                table.add(event, self._meta, tk, ok)
            if ks[-1] < nk:
                self.late += 1
        except Exception:
            self.errors += 1

    def poll(self, now: float) -> list[dict[str, Any]]:
        """Partials: one JSON-able part per window whose end ≤ ``now`` (empty windows too)."""
        if self._plan is None or self._window is None or self._next_k is None:
            return []
        last, self._last_poll = self._last_poll, now
        if last is not None and self.max_gap is not None and now - last > self.max_gap:
            self._gaps.append((last, now))
        n, m = self._window
        # never catch up more than `horizon` seconds of windows (a day-old start, start = 0)
        oldest = self._next_k if self.horizon is None else first_live_window(
            now - self.horizon - n, n, m)
        if self._next_k < oldest:
            self.skipped_windows += oldest - self._next_k
            for old in [k for k in self._windows if k < oldest]:
                del self._windows[old]
            self._next_k = oldest
        out = []
        while True:
            k = self._next_k
            start, end = window_bounds(k, n, m)
            if end > now:
                break
            table = self._windows.pop(k, None)
            if table is None:
                part: dict[str, Any] = {"groups": [], "other": None, "folded": 0}
            else:
                part = table.encode()
            part["k"] = k
            part["window"] = [start, end]
            part["errors"] = self.errors
            if any(g0 < end and g1 > start for g0, g1 in self._gaps):
                part["covered"] = False  # not observed throughout: never a zero-count window
            out.append(part)
            self._next_k = k + 1
        if self._gaps:
            first = window_bounds(self._next_k, n, m)[0]
            self._gaps = [g for g in self._gaps if g[1] > first]
        return out


# --------------------------------------------------------------------------- gateway side


@dataclass(slots=True)
class _Window:
    """Who reported one time window: member -> whether it counts as a waited-for member."""

    reported: dict[str, bool] = field(default_factory=dict)
    hits: int = 0  # reported members that the window waits for (live, added before its start)
    others: list[str] = field(default_factory=list)  # reported members not counted in ``hits``
    blind: set[str] = field(default_factory=set)  # reported ``covered: false``: never coverage


class Merger:
    """The gateway part of one query (see the module docstring). Pure."""

    def __init__(self, p: PreparedQuery, start: float, grace: float, caps: Caps) -> None:
        self.prepared = p
        self.caps = caps
        self.grace = grace
        self._cq = p.compiled
        self.members = Membership()
        self._out: list[Output] = []
        self._done = False
        self._late = 0
        self._duplicates = 0
        self._dropped_after_complete = 0
        self._errors = 0
        self._coverage = Coverage(0, 0)
        self._pending_rows: list[dict[str, Any]] = []
        self._arrival = 0  # count windows order shipped events by arrival
        # JOIN runs here, then WHERE on the joined rows (§3.19); ANOMALY after SELECT
        spec = JoinSpec.from_query(p.analysis.query)
        self._join = LiveJoin(spec) if spec is not None else None
        self._anomaly = AnomalyRunner.for_query(p.analysis)
        # the batching of the query's window kind (batching.py), chosen once
        shape = self._shape = Shape(p.analysis, p.compiled, caps, self._anomaly)
        self._plan = shape.plan
        window, count = p.time_window, p.count_window
        self._time = TimeBatches(shape, window) if window is not None else None
        self._counts = CountBatches(shape, count) if count is not None else None
        self._stream = RowStream(shape.limit) if window is None and count is None else None
        self._next_k = first_live_window(start, *window) if window is not None else 0
        self._partials = p.ships == "partials" and window is not None
        # per open time window k (partials): who reported it
        self._reported: dict[int, _Window] = {}
        # The raw-rows hot path: a plain query with no WINDOW, LIMIT, JOIN or ANOMALY only
        # projects each shipped event and queues the row (see receive_events).
        self._stream_rows = (
            shape.plain and self._stream is not None and shape.limit is None
            and self._join is None and self._anomaly is None
        )

    # ---------------------------------------------------------------- members

    def add_member(self, member: str, now: float) -> None:
        """``member`` (an opaque name: the gateway uses one per app, instance and stream) started
        running the query at ``now``; it is expected in every window starting at or after
        ``now`` while it stays. Adding a live member again changes nothing."""
        self.members.add(member, now)
        if not self._partials:
            self.members.advance(now)  # nobody reads the history: keep nothing queued

    def remove_member(self, member: str, now: float) -> None:
        """``member`` stopped at ``now`` (disconnected, unsubscribed, its gateway died). It stays
        expected (for coverage) in windows that began while it was live, but no window waits for
        it any more. Removing a member that is not live changes nothing."""
        if not self.members.remove(member, now):
            return
        if not self._partials:
            self.members.advance(now)
            return
        for win in self._reported.values():  # open windows only: a handful
            if win.reported.get(member):
                win.reported[member] = False
                win.hits -= 1
                win.others.append(member)

    # the names the gateway used before members had their own (kept for callers and tests)
    add_agent = add_member
    remove_agent = remove_member

    def _head_complete(self) -> bool:
        """True when the oldest open window has a part from every member it waits for (and at
        least one member is expected). O(1) but for windows nobody live is expected in."""
        assert self._time is not None
        start, _ = window_bounds(self._next_k, *self._time.window)
        members = self.members
        members.advance(start)
        win = self._reported.get(self._next_k)
        hits = win.hits if win is not None else 0
        if members.full:
            return hits >= members.full
        return members.expected_gone(start) > 0

    # ---------------------------------------------------------------- input

    def receive_part(self, member: str, part: dict[str, Any], now: float) -> bool:
        """Merge one member's part (from ``SourceRunner.poll``). O(1) in the number of members.

        Returns:
            True when the oldest open window just got its last expected part: ``poll(now)``
            emits it at once. Otherwise windows go out from ``poll`` on the caller's tick.
        """
        if self._done:
            self._dropped_after_complete += 1
            return False
        if self._plan is None or self._time is None:
            return False
        try:
            k = int(part["k"])
        except Exception:
            self._errors += 1
            return False
        if k < self._next_k:
            self._late += 1
            return False
        win = self._reported.get(k)
        if win is None:
            win = self._reported[k] = _Window()
        if member in win.reported:
            self._duplicates += 1  # a second part for one window (a replay after a reconnect)
            return False
        table = self._time.get(k).table
        assert table is not None
        try:
            table.merge_encoded(part)
        except Exception:
            self._errors += 1
        counted = self.members.waits_for(member, window_bounds(k, *self._time.window)[0])
        win.reported[member] = counted
        if counted:
            win.hits += 1
        else:
            win.others.append(member)
        if part.get("covered") is False:  # the member did not observe the whole window
            win.blind.add(member)
        return k == self._next_k and self._head_complete()

    def receive_events(self, agent_id: str, records: list[dict[str, Any]], now: float) -> None:
        """Shipped events: ``{"t": ms, "i": instance, "s": seq, "e": event, "m": meta}``."""
        cq = self._cq
        if self._stream_rows and not self._done:
            project = cq.project
            assert project is not None
            assert self._stream is not None
            append = self._pending_rows.append
            before = len(self._pending_rows)
            for rec in records:
                try:
                    append(project(rec["e"], rec.get("m") or {}, rec["t"]))
                except Exception:
                    self._errors += 1
            self._stream.emitted += len(self._pending_rows) - before
            return
        if self._join is not None:
            records = self._joined(records)
        for rec in records:
            if self._done:
                self._dropped_after_complete += 1
                continue
            try:
                t_ms = rec["t"]
                e = rec["e"]
                m = rec.get("m") or {}
                ok: tuple[Any, ...] = (t_ms, rec.get("i", agent_id), rec.get("s", 0))
                if "j" in rec:  # a joined record: the A event's order key breaks ties
                    ok = (*ok, rec["j"])
                self._event(e, m, t_ms, ok)
            except Exception:
                self._errors += 1

    def _joined(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """JOIN the shipped records of both sources, then WHERE on the joined rows."""
        join = self._join
        assert join is not None
        where = self._cq.where
        out: list[dict[str, Any]] = []
        for rec in records:
            try:
                for j in join.offer_record(rec):
                    try:
                        if where(j["e"], j["m"], j["t"]):
                            out.append(j)
                    except Exception:
                        self._errors += 1
            except Exception:
                self._errors += 1
        return out

    def _event(self, e: Any, m: Any, t_ms: int, ok: tuple[Any, ...]) -> None:
        """One shipped event (it passed WHERE) into the batch of the query's window kind."""
        if self._time is not None:
            ks = window_indices_ms(t_ms, *self._time.window)
            if not ks:
                return
            if ks[-1] < self._next_k:
                self._late += 1
                return
            self._time.add(e, m, t_ms, ok, ks, self._next_k)
        elif self._counts is not None:
            self._arrival += 1
            full = self._counts.add(e, m, t_ms, (self._arrival,))
            if full is not None:
                self._emit_count(*full)
        elif self._stream is not None and self._shape.plain:
            project = self._cq.project
            assert project is not None
            row = project(e, m, t_ms)
            if self._anomaly is not None:
                row = self._anomaly.mark_rows([row])[0]
            self._pending_rows.extend(self._stream.admit([row]))
            if self._stream.done:
                self._flush_pending()
                self._complete()

    # ---------------------------------------------------------------- output

    def _complete(self) -> None:
        if not self._done:
            self._done = True
            self._out.append(Complete(CompleteReason.LIMIT))

    def _flush_pending(self) -> None:
        if self._pending_rows:
            self._out.append(Rows(None, self._pending_rows))
            self._pending_rows = []

    def _emit_notices(self, notices: dict[str, int], window: tuple[int, int] | None, count: int | None) -> None:
        for name, n in notices.items():
            if n:
                self._out.append(make_notice(NoticeKind(name), n, window, count))

    def _emit_count(self, k: int, batch: Batch) -> None:
        fin = self._shape.finish(batch)
        self._out.append(Rows(None, fin.rows, k))
        self._emit_notices({**fin.notices, "evaluation-errors": fin.errors}, None, k)
        if self._shape.window_ends_query(fin.rows):
            self._complete()

    def _emit_window(self, k: int, now: float) -> None:
        assert self._time is not None
        bounds = window_bounds(k, *self._time.window)
        fin = self._shape.finish(self._time.take(k), by_order_key=True)
        notices: dict[str, int] = {**fin.notices, "evaluation-errors": fin.errors}
        coverage: Coverage | None = None
        win = self._reported.pop(k, None)
        if self._partials:
            coverage = self._coverage = self._window_coverage(bounds[0], win)
            if coverage.reporting < coverage.expected:
                notices[NoticeKind.COVERAGE] = 0
        notices.update(self._stage_notices())
        if self._late:
            notices["late"] = self._late
            self._late = 0
        if self._duplicates:
            notices["duplicate-parts"] = self._duplicates
            self._duplicates = 0
        self._out.append(Rows(bounds, fin.rows, coverage=coverage))
        for name, v in notices.items():
            if name == NoticeKind.COVERAGE:
                assert coverage is not None
                self._out.append(Notice(NoticeKind.COVERAGE, str(coverage), coverage.reporting,
                                        bounds, coverage=coverage))
            elif v:
                self._out.append(make_notice(NoticeKind(name), v, bounds))
        if self._shape.window_ends_query(fin.rows):
            self._complete()

    def _window_coverage(self, start: int, win: _Window | None) -> Coverage:
        """(reporting, expected) of the window starting at ``start``, the oldest open one.
        Walks the members that reported it and not waited for, and the recent removals: O(parts
        of this window) at most, never every member."""
        members = self.members
        members.advance(start)
        expected = members.full + members.expected_gone(start)
        if win is None:
            return Coverage(0, expected)
        blind = win.blind
        # parts that say their agent did not observe the window never count as coverage
        reporting = win.hits - sum(1 for name in blind if win.reported.get(name))
        seen: set[str] = set()
        for name in win.others:
            members.visits += 1
            if name in blind:
                continue
            if name not in seen and not win.reported[name] and members.covered_before(name, start):
                seen.add(name)
        return Coverage(reporting + len(seen), expected)

    def _stage_notices(self) -> dict[str, int]:
        """Losses of the JOIN and ANOMALY stages since the last call."""
        out: dict[str, int] = {}
        if self._join is not None:
            out.update(self._join.take_notices())
        if self._anomaly is not None:
            out.update(self._anomaly.take_notices())
        return out

    def poll(self, now: float) -> list[Output]:
        """Everything ready to send at ``now``: rows, notices, completion."""
        if self._join is not None:
            # the join clock trails the gateway's by the grace period (agent clocks, batching)
            self._join.advance_ms(int((now - self.grace) * 1000))
        if self._time is not None and not self._done:
            n, m = self._time.window
            while not self._done:
                k = self._next_k
                _, end = window_bounds(k, n, m)
                if now < end:
                    break
                if now < end + self.grace and (
                        self.prepared.ships != "partials" or not self._head_complete()):
                    break
                self._emit_window(k, now)
                self._next_k = k + 1
        self._flush_pending()
        if self._time is None and (self._join is not None or self._anomaly is not None):
            self._emit_notices(self._stage_notices(), None, None)
        out, self._out = self._out, []
        return out

    @property
    def coverage(self) -> Coverage:
        """The coverage of the last partials window emitted (``0/0`` before the first)."""
        return self._coverage

    def statistics(self) -> dict[str, Any]:
        """Coverage of the last window and drop counters."""
        return {
            "coverage": self._coverage.to_json(),
            "dropped": {"late": self._late, "after-complete": self._dropped_after_complete,
                        "duplicate-parts": self._duplicates},
            "members": self.members.live,
            "errors": self._errors,
            "done": self._done,
        }
