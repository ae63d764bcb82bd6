"""The single-node engine: a query over events in file order (docs/mql.md#windows). Pure.

Theory of operation:
- :class:`ReplayEngine` takes valid events one at a time (``feed(event, t, line)``) and reports
  through three callbacks: ``on_rows(scope, rows)``, ``on_notice(scope, name, detail)`` and
  ``on_late(line, t)``. ``scope`` is the text the stderr notice format uses: ``window [S, E)``,
  ``count window K`` or ``result``; ``on_rows`` gets the same scope (``None`` for a streamed
  plain row). The command (``commands/replay.py``) owns the file, JSON parsing and output.
- Per line (§7.1 item 6): advance the clock and emit newly closed windows; skip a late event;
  SAMPLE (RANDOM draws once per line that reaches it); WHERE; then the rest of the query.
- ``done`` turns True when a LIMIT that ends the query is reached (§3.12); the caller stops
  reading. :meth:`finish` flushes everything at the end of the input.
- This engine is also the reference the live split (sources + merger) must equal (§4.4).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from itertools import chain
from typing import Any

from ..compile.runtime import tick_ms
from ..semantics.values import string_form
from ..state.caps import DEFAULT_CAPS, Caps
from ..state.sampling import random_keep, sticky_keep
from ..state.windows import first_replay_window, window_bounds, window_indices
from .anomaly import AnomalyRunner
from .engine import PreparedQuery, finish_aggregate, finish_plain
from .groups import GroupTable
from .join import JoinSpec, ReplayJoin
from .outputs import NoticeKind, make_notice

__all__ = ["ReplayEngine", "replay_events", "replay_rows"]

_INF = float("inf")

RowsCallback = Callable[[str | None, list[dict[str, Any]]], None]
NoticeCallback = Callable[[str, str, str], None]
LateCallback = Callable[[int, Any], None]


def _scope_window(k: int, n: int, m: int) -> str:
    s, e = window_bounds(k, n, m)
    return f"window [{string_form(s)}, {string_form(e)})"


class ReplayEngine:
    """Runs one prepared query over events fed in file order (see the module docstring)."""

    def __init__(
        self,
        p: PreparedQuery,
        *,
        on_rows: RowsCallback,
        on_notice: NoticeCallback | None = None,
        on_late: LateCallback | None = None,
        seed: int = 0,
        caps: Caps = DEFAULT_CAPS,
    ) -> None:
        self.p = p
        self.a = a = p.analysis
        self.cq = cq = p.compiled
        self.caps = caps
        self.on_rows = on_rows
        self.on_notice = on_notice or (lambda scope, name, detail: None)
        self.on_late = on_late or (lambda line, t: None)
        self.rng = random.Random(seed)
        self.done = False
        self.errors = 0
        self._errors_reported = 0
        self._limit = p.limit
        self._window = p.time_window
        self._count = p.count_window
        self._grouped = bool(a.query.group_by)
        self._plain = a.kind == "plain"
        self._sample = a.query.sample
        self._empty_windows = not self._plain and not self._grouped  # emit empty windows
        self._completes_by_window = (not self._plain and not self._grouped and self._limit is not None)
        self._plan = p.agg_plan(caps) if not self._plain else None
        self._meta: dict[str, Any] = {}
        self._clock: Any = None
        self._next_k = 0
        self._windows: dict[int, Any] = {}
        self._count_items: list[Any] = []
        self._count_table: GroupTable | None = None
        self._count_n = 0
        self._count_k = 1
        self._windows_emitted = 0
        self._rows_emitted = 0
        self._sorted_rows: list[Any] = []
        self._table = GroupTable(self._plan) if self._plan is not None and not self._window and not self._count else None
        self._uses_tick = cq.uses_tick
        self._stream_plain = self._plain and self._window is None and self._count is None and cq.order_event is None
        # JOIN (§3.19): lines of both sources are joined before WHERE; ANOMALY marks output rows
        spec = JoinSpec.from_query(a.query)
        self._join = ReplayJoin(spec) if spec is not None else None
        self._anomaly = AnomalyRunner.for_query(a)
        self._staged = self._join is not None or self._anomaly is not None

    @property
    def streams_fast(self) -> bool:
        """True when :meth:`feed_batch` needs neither times nor line numbers (streamed plain
        rows without SAMPLE or ``tick()``)."""
        return self._stream_plain and self._sample is None and not self._uses_tick and not self._staged

    # ---------------------------------------------------------------- helpers

    def _keep(self, e: Any, tk: Any) -> bool:
        s = self._sample
        if s is None:
            return True
        if s.strategy == "STICKY":
            return sticky_keep(self.cq.sticky_keys(e, self._meta, tk), s)  # type: ignore[misc]
        return random_keep(self.rng, s)

    def _pending_errors(self) -> int:
        n = self.errors - self._errors_reported
        self._errors_reported = self.errors
        return n

    def _notices(self, scope: str, notices: dict[str, int]) -> None:
        if self._staged:
            stage: dict[str, int] = {}
            if self._join is not None:
                stage = self._join.take_notices()
            if self._anomaly is not None:
                stage.update(self._anomaly.take_notices())
            if stage:
                notices = {**notices, **stage}
        errs = self._pending_errors()
        if errs:
            notices = {**notices, "evaluation-errors": notices.get("evaluation-errors", 0) + errs}
        for name, n in notices.items():
            if n:
                self.on_notice(scope, name, make_notice(NoticeKind(name), n).detail)

    # ---------------------------------------------------------------- input

    def feed_batch(
        self,
        events: list[dict[str, Any]],
        times: list[Any] | None = None,
        lines: list[int] | None = None,
        *,
        time_key: str | None = None,
        first_line: int = 1,
    ) -> None:
        """:meth:`feed` for many valid events at once: the same result, with a fast loop for the
        common shapes (streamed plain rows; aggregates over the whole input or over tumbling
        windows, events in time order; no SAMPLE or ``tick()``).

        Times come from ``times``, or from the top-level member ``time_key`` (the caller has
        checked it is a number), or are 0. Line numbers come from ``lines``, or count up from
        ``first_line``.
        """
        n = len(events)
        if not n or self.done:
            return
        w = self._window
        fast = self._sample is None and not self._uses_tick and not self._staged and (
            self._stream_plain
            or (not self._plain and self._count is None and (w is None or w[0] == w[1]))
        )
        if not fast:
            for i in range(n):
                e = events[i]
                t = times[i] if times is not None else (e[time_key] if time_key else 0)
                self.feed(e, t, lines[i] if lines is not None else first_line + i)
                if self.done:
                    return
            return
        m = self._meta
        if self._stream_plain:
            self._stream_batch(events)
            return
        run = self._plan.fold_run  # type: ignore[union-attr]
        ns: Any = lines if lines is not None else range(first_line, first_line + n)
        ts: Any = times if times is not None else ([e[time_key] for e in events] if time_key else [0] * n)
        it = zip(events, ts, ns, strict=True)
        if w is None:
            _, _, errors = run(self._table, it, -_INF, _INF, m)  # type: ignore[misc]
            self.errors += errors
            return
        size = w[0]
        windows = self._windows
        item = next(it, None)
        while item is not None:
            e, t, line = item
            clock = self._clock
            if clock is not None:
                ck = (clock if clock.__class__ is int else int(clock // 1)) // size
                start = ck * size
                end = start + size
                if start <= t < end and ck >= self._next_k:
                    # a run of events in the open window that holds the clock
                    table = windows.get(ck)
                    if table is None:
                        table = windows[ck] = GroupTable(self._plan)  # type: ignore[arg-type]
                    item, top, errors = run(table, chain((item,), it), start, end, m)  # type: ignore[misc]
                    self.errors += errors
                    if top > clock:
                        self._clock = top
                    continue
            # a new window, a late event or the first event: the general path
            self.feed(e, t, line)
            if self.done:
                return
            item = next(it, None)

    def _advance_clock(self, t: Any, w: tuple[int, int]) -> bool:
        """Move the clock to ``t`` (time passes on every valid line, §3.8.5) and emit the windows
        that closed; False once the query has completed."""
        if self._clock is None:
            self._clock = t
            self._next_k = first_replay_window(t, *w)
        elif t > self._clock:
            self._clock = t
        self._emit_closed()
        return not self.done

    def feed(self, e: dict[str, Any], t: Any, line: int) -> None:
        """Process one valid event (time ``t`` in seconds, 0 without a time field)."""
        if self.done:
            return
        if self._join is not None:
            self._feed_join(e, t, line)
            return
        w = self._window
        ks: Any = None
        if w is not None:
            if not self._advance_clock(t, w):
                return
            ks = window_indices(t, *w)
            if not ks:
                return  # in a gap: belongs to no window
            if ks[-1] < self._next_k:
                self.on_late(line, t)
                return
        try:
            tk = tick_ms(t) if self._uses_tick else None
            if self._sample is not None and not self._keep(e, tk):
                return
            if not self.cq.where(e, self._meta, tk):
                return
            self._rest(e, tk, (line,), ks)
        except Exception:
            self.errors += 1

    def _feed_join(self, e: dict[str, Any], t: Any, line: int) -> None:
        """A line of a JOIN query: the clock moves on every valid line; a line of either source
        passes SAMPLE (as on the agents), then joins; each joined row (time ``max(tA, tB)``)
        goes through the late check, WHERE and the rest of the query (docs/mql.md#join-and-anomaly)."""
        w = self._window
        if w is not None and not self._advance_clock(t, w):
            return
        rj = self._join
        assert rj is not None
        try:
            side = rj.side(e)
            if side is None:
                return
            if self._sample is not None and not self._keep(e, tick_ms(t) if self._uses_tick else None):
                return
            joined = rj.offer(side, e, t, line)
        except Exception:
            self.errors += 1
            return
        for row, tj, order in joined:
            if self.done:
                return
            ks: Any = None
            if w is not None:
                ks = window_indices(tj, *w)
                if not ks:
                    continue
                if ks[-1] < self._next_k:
                    self.on_late(line, tj)
                    continue
            try:
                tk = tick_ms(tj) if self._uses_tick else None
                if self.cq.where(row, self._meta, tk):
                    self._rest(row, tk, order, ks)  # type: ignore[arg-type]
            except Exception:
                self.errors += 1

    def _stream_batch(self, events: list[dict[str, Any]]) -> None:
        """Streamed plain rows for a batch: one generated WHERE loop, then projection."""
        cq = self.cq
        m = self._meta
        try:
            matched = cq.where_batch(events, m, None)  # type: ignore[misc]
        except Exception:
            matched = []
            for e in events:
                try:
                    if cq.where(e, m, None):
                        matched.append(e)
                except Exception:
                    self.errors += 1
        self.emit_matched(matched)

    def emit_matched(self, matched: list[dict[str, Any]]) -> None:
        """Streamed plain rows for events that already passed WHERE (see ``streams_fast``)."""
        cq = self.cq
        m = self._meta
        project = cq.project
        try:
            rows = [project(e, m, None) for e in matched]  # type: ignore[misc]
        except Exception:
            rows = []
            for e in matched:
                try:
                    rows.append(project(e, m, None))  # type: ignore[misc]
                except Exception:
                    self.errors += 1
        limit = self._limit
        if limit is not None and self._rows_emitted + len(rows) >= limit:
            rows = rows[: limit - self._rows_emitted]
            self.done = True
        self._rows_emitted += len(rows)
        if rows:
            self.on_rows(None, rows)

    def _rest(self, e: Any, tk: Any, ok: tuple[int], ks: Any) -> None:
        cq = self.cq
        m = self._meta
        if self._plain:
            row = cq.project(e, m, tk)  # type: ignore[misc]
            if self._stream_plain:
                if self._anomaly is not None:
                    row = self._anomaly.mark_rows([row])[0]
                self.on_rows(None, [row])
                self._rows_emitted += 1
                if self._limit is not None and self._rows_emitted >= self._limit:
                    self.done = True
                return
            sk = cq.order_event(e, m, tk) if cq.order_event is not None else None
            if ks is not None:
                for k in ks:
                    if k >= self._next_k:
                        self._windows.setdefault(k, []).append((sk, row))
            elif self._count is not None:
                self._count_items.append((sk, row))
                if len(self._count_items) >= self._count:
                    self._emit_count()
            else:
                self._sorted_rows.append((sk, row))
            return
        if ks is not None:
            for k in ks:
                if k >= self._next_k:
                    table = self._windows.get(k)
                    if table is None:
                        table = self._windows[k] = GroupTable(self._plan)  # type: ignore[arg-type]
                    table.add(e, m, tk, ok)
        elif self._count is not None:
            if self._count_table is None:
                self._count_table = GroupTable(self._plan)  # type: ignore[arg-type]
            self._count_table.add(e, m, tk, ok)
            self._count_n += 1
            if self._count_n >= self._count:
                self._emit_count()
        else:
            self._table.add(e, m, tk, ok)  # type: ignore[union-attr]

    # ---------------------------------------------------------------- output

    def _emit_closed(self) -> None:
        n, m = self._window  # type: ignore[misc]
        clock = self._clock
        while not self.done:
            k = self._next_k
            if window_bounds(k, n, m)[1] > clock:
                return
            if not self._empty_windows and k not in self._windows:
                # nothing to emit for an empty window: jump to the next window that has data
                # or to the first open one
                first_open = first_replay_window(clock, n, m)
                nxt = min((j for j in self._windows if j > k), default=first_open)
                self._next_k = min(nxt, first_open)
                continue
            self._emit_window(k)
            self._next_k = k + 1

    def _emit_window(self, k: int) -> None:
        n, m = self._window  # type: ignore[misc]
        data = self._windows.pop(k, None)
        if self._plain:
            self._emit_batch(_scope_window(k, n, m), data or [], None)
        else:
            table = data if data is not None else GroupTable(self._plan)  # type: ignore[arg-type]
            self._emit_batch(_scope_window(k, n, m), [], table)

    def _emit_count(self) -> None:
        scope = f"count window {self._count_k}"
        self._count_k += 1
        if self._plain:
            items, self._count_items = self._count_items, []
            self._emit_batch(scope, items, None)
        else:
            table, self._count_table = self._count_table, None
            self._count_n = 0
            assert table is not None
            self._emit_batch(scope, [], table)

    def _emit_batch(self, scope: str, items: list[Any], table: GroupTable | None) -> None:
        """Finish one window's batch (plain rows ``items``, or the aggregate ``table``) and write
        it; a non-grouped aggregate query with LIMIT completes after that many windows."""
        if table is None:
            rows, dropped = finish_plain(self.cq, items, self._limit, self.caps.row_cap, self._anomaly)
            self._write(scope, rows, {"rows-truncated": dropped})
            return
        limit = None if self._completes_by_window else self._limit
        rows, errs = finish_aggregate(self.cq, self._plan, table, limit, self._anomaly)  # type: ignore[arg-type]
        self.errors += errs
        self._write(scope, rows, table.notices())
        if self._completes_by_window and rows:
            self._windows_emitted += 1
            if self._windows_emitted >= self._limit:  # type: ignore[operator]
                self.done = True

    def _write(self, scope: str, rows: list[dict[str, Any]], notices: dict[str, int]) -> None:
        if rows:
            self.on_rows(scope, rows)
        self._notices(scope, notices)

    def finish(self) -> None:
        """The end of the input: flush every remaining window / the whole result."""
        if self._join is not None:
            self._join.finish()  # what still waits for a partner is unpaired
        if self.done:
            self._notices("result", {})
            return
        if self._window is not None:
            if self._clock is None:
                return  # no valid line: no windows
            _n, m = self._window
            last = self._clock_floor() // m  # last window starting at or before the clock
            while not self.done and self._next_k <= last:
                k = self._next_k
                if not self._empty_windows and k not in self._windows:
                    nxt = min((j for j in self._windows if j > k), default=last + 1)
                    self._next_k = nxt
                    continue
                self._emit_window(k)
                self._next_k = k + 1
            return
        if self._count is not None:
            if self._count_items or self._count_table is not None:
                self._emit_count()
            else:
                self._notices("result", {})
            return
        if self._plain:
            if not self._stream_plain:
                rows, _ = finish_plain(self.cq, self._sorted_rows, self._limit, len(self._sorted_rows) + 1,
                                       self._anomaly)
                self._write("result", rows, {})
            else:
                self._notices("result", {})
            return
        table = self._table
        assert table is not None
        rows, errs = finish_aggregate(self.cq, self._plan, table, self._limit, self._anomaly)  # type: ignore[arg-type]
        self.errors += errs
        self._write("result", rows, table.notices())

    def _clock_floor(self) -> int:
        import math

        c = self._clock
        return c if type(c) is int else math.floor(c)


def replay_rows(
    p: PreparedQuery, events: list[tuple[dict[str, Any], Any]], *, seed: int = 0, caps: Caps = DEFAULT_CAPS
) -> list[tuple[str | None, dict[str, Any]]]:
    """Run ``p`` over ``(event, t)`` pairs (line numbers from 1); every ``(scope, row)`` in order.
    A convenience for tests and the differential check."""
    out: list[tuple[str | None, dict[str, Any]]] = []
    eng = ReplayEngine(p, on_rows=lambda scope, rows: out.extend((scope, r) for r in rows), seed=seed, caps=caps)
    for i, (e, t) in enumerate(events, 1):
        eng.feed(e, t, i)
        if eng.done:
            break
    eng.finish()
    return out


def replay_events(
    p: PreparedQuery, events: list[dict[str, Any]], time_field: str | None, sink: Any, *,
    seed: int = 0, caps: Caps = DEFAULT_CAPS,
) -> None:
    """Run ``p`` single-node over in-memory events (time from a top-level field, or 0);
    ``sink(rows)`` receives each batch of output rows."""
    eng = ReplayEngine(p, on_rows=lambda scope, rows: sink(rows), seed=seed, caps=caps)
    eng.feed_batch(events, time_key=time_field)
    eng.finish()
