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

import math
import random
from collections.abc import Callable
from itertools import chain
from typing import Any

from ..compile.runtime import tick_ms
from ..semantics.values import string_form
from ..state.caps import DEFAULT_CAPS, Caps
from ..state.windows import first_replay_window, window_bounds, window_indices
from .anomaly import AnomalyRunner
from .batching import Batch, CountBatches, RowStream, Sampler, Shape, TimeBatches, where_all
from .engine import PreparedQuery
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
        self._meta: dict[str, Any] = {}
        self._clock: Any = None
        self._next_k = 0
        self._uses_tick = cq.uses_tick
        self._sampler = Sampler(a.query.sample, cq, self.rng)
        # JOIN (§3.19): lines of both sources are joined before WHERE; ANOMALY marks output rows
        spec = JoinSpec.from_query(a.query)
        self._join = ReplayJoin(spec) if spec is not None else None
        self._anomaly = AnomalyRunner.for_query(a)
        staged = self._join is not None or self._anomaly is not None
        # the batching of the query's window kind (batching.py), chosen once
        shape = self._shape = Shape(a, cq, caps, self._anomaly)
        self._window = p.time_window
        count = p.count_window
        self._time = TimeBatches(shape, self._window) if self._window is not None else None
        self._counts = CountBatches(shape, count) if count is not None else None
        streams = shape.plain and self._time is None and self._counts is None and cq.order_event is None
        self._stream = RowStream(shape.limit) if streams else None
        # the whole result of an un-windowed aggregate, or of plain rows sorted by ORDER BY
        self._whole = shape.new() if self._time is None and self._counts is None and not streams else None
        # non-grouped aggregates emit every window, empty ones too
        self._empty_windows = shape.counts_windows
        # feed_batch's one-loop paths: no SAMPLE, tick() or stages; streamed rows, or aggregates
        # over the whole input or over tumbling windows
        simple = not self._sampler.active and not self._uses_tick and not staged
        w = self._window
        self._scans = simple and streams
        self._folds = simple and shape.plan is not None and count is None and (w is None or w[0] == w[1])

    # ---------------------------------------------------------------- helpers

    def _pending_errors(self) -> int:
        n = self.errors - self._errors_reported
        self._errors_reported = self.errors
        return n

    def _notices(self, scope: str, notices: dict[str, int]) -> None:
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

    def feed_lines(self, lines: list[bytes], loads: Callable[[bytes], Any], time_key: str | None) -> bool:
        """Parse, check and run a chunk of raw JSONL lines in one generated loop, when the query
        allows it (streamed plain rows without SAMPLE or ``tick()``) and every line is a plain
        JSON object (``time_key``: a top-level time member that must be a number, or None).

        Returns:
            True when the chunk was consumed; False when nothing was, and the caller parses the
            lines itself and calls :meth:`feed_batch`.
        """
        if not self._scans or self.done:
            return False
        scan = self.cq.scan_chunk
        assert scan is not None
        try:
            matched = scan(lines, loads, time_key, self._meta, None)
        except Exception:
            return False
        if matched is None:
            return False
        self._emit_matched(matched)
        return True

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
        if self._scans:
            self._stream_batch(events)
            return
        plan = self._shape.plan
        if not self._folds or plan is None:
            for i in range(n):
                e = events[i]
                t = times[i] if times is not None else (e[time_key] if time_key else 0)
                self.feed(e, t, lines[i] if lines is not None else first_line + i)
                if self.done:
                    return
            return
        m = self._meta
        run = plan.fold_run
        assert run is not None
        ns: Any = lines if lines is not None else range(first_line, first_line + n)
        ts: Any = times if times is not None else ([e[time_key] for e in events] if time_key else [0] * n)
        it = zip(events, ts, ns, strict=True)
        if self._time is None:
            assert self._whole is not None
            _, _, errors = run(self._whole.table, it, -_INF, _INF, m)
            self.errors += errors
            return
        size = self._time.window[0]
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
                    item, top, errors = run(self._time.get(ck).table, chain((item,), it), start, end, m)
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
        self._emit_closed(w)
        return not self.done

    def _windows_of(self, t: Any, line: int) -> range | None:
        """The open windows of an event at time ``t`` (windowed queries); None when it belongs
        to none (a gap) or is late (reported)."""
        assert self._window is not None
        ks = window_indices(t, *self._window)
        if not ks:
            return None  # in a gap: belongs to no window
        if ks[-1] < self._next_k:
            self.on_late(line, t)
            return None
        return ks

    def feed(self, e: dict[str, Any], t: Any, line: int) -> None:
        """Process one valid event (time ``t`` in seconds, 0 without a time field)."""
        if self.done:
            return
        if self._join is not None:
            self._feed_join(e, t, line)
            return
        w = self._window
        ks: range | None = None
        if w is not None:
            if not self._advance_clock(t, w):
                return
            ks = self._windows_of(t, line)
            if ks is None:
                return
        try:
            tk = tick_ms(t) if self._uses_tick else None
            if self._sampler.active and not self._sampler.keep(e, self._meta, tk):
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
            if self._sampler.active and not self._sampler.keep(
                    e, self._meta, tick_ms(t) if self._uses_tick else None):
                return
            joined = rj.offer(side, e, t, line)
        except Exception:
            self.errors += 1
            return
        for row, tj, order in joined:
            if self.done:
                return
            ks: range | None = None
            if w is not None:
                ks = self._windows_of(tj, line)
                if ks is None:
                    continue
            try:
                tk = tick_ms(tj) if self._uses_tick else None
                if self.cq.where(row, self._meta, tk):
                    self._rest(row, tk, order, ks)
            except Exception:
                self.errors += 1

    def _stream_batch(self, events: list[dict[str, Any]]) -> None:
        """Streamed plain rows for a batch: one generated WHERE loop, then projection."""
        matched, errors = where_all(self.cq, events, self._meta)
        self.errors += errors
        self._emit_matched(matched)

    def _emit_matched(self, matched: list[dict[str, Any]]) -> None:
        """Streamed plain rows for events that already passed WHERE."""
        m = self._meta
        project = self.cq.project
        assert project is not None
        assert self._stream is not None
        try:
            rows = [project(e, m, None) for e in matched]
        except Exception:
            rows = []
            for e in matched:
                try:
                    rows.append(project(e, m, None))
                except Exception:
                    self.errors += 1
        self._stream_rows(rows, self._stream)

    def _stream_rows(self, rows: list[dict[str, Any]], stream: RowStream) -> None:
        rows = stream.admit(rows)
        if stream.done:
            self.done = True
        if rows:
            self.on_rows(None, rows)

    def _rest(self, e: Any, tk: Any, ok: tuple[Any, ...], ks: range | None) -> None:
        """Everything after WHERE: into the batch of the query's window kind."""
        if self._stream is not None:
            assert self.cq.project is not None
            row = self.cq.project(e, self._meta, tk)
            if self._anomaly is not None:
                row = self._anomaly.mark_rows([row])[0]
            self._stream_rows([row], self._stream)
        elif ks is not None:
            assert self._time is not None
            self._time.add(e, self._meta, tk, ok, ks, self._next_k)
        elif self._counts is not None:
            full = self._counts.add(e, self._meta, tk, ok)
            if full is not None:
                self._emit_batch(f"count window {full[0]}", full[1])
        else:
            assert self._whole is not None
            self._shape.add([self._whole], e, self._meta, tk, ok)

    # ---------------------------------------------------------------- output

    def _emit_closed(self, w: tuple[int, int]) -> None:
        n, m = w
        clock = self._clock
        while not self.done:
            k = self._next_k
            if window_bounds(k, n, m)[1] > clock:
                return
            self._next_k = self._emit_or_skip(k, first_replay_window(clock, n, m))

    def _emit_or_skip(self, k: int, stop: int) -> int:
        """Emit window ``k`` and return ``k + 1``; or, when it is empty and empty windows are not
        emitted, return the next window that has data (at most ``stop``)."""
        assert self._time is not None
        opened = self._time.open
        if not self._empty_windows and k not in opened:
            return min(min((j for j in opened if j > k), default=stop), stop)
        self._emit_batch(_scope_window(k, *self._time.window), self._time.take(k))
        return k + 1

    def _emit_batch(self, scope: str, batch: Batch, *, whole: bool = False) -> None:
        """Finish one batch and write it; a non-grouped aggregate query with LIMIT completes
        after that many windows with rows."""
        fin = self._shape.finish(batch, whole=whole)
        self.errors += fin.errors
        if fin.rows:
            self.on_rows(scope, fin.rows)
        self._notices(scope, fin.notices)
        if not whole and self._shape.window_ends_query(fin.rows):
            self.done = True

    def finish(self) -> None:
        """The end of the input: flush every remaining window / the whole result."""
        if self._join is not None:
            self._join.finish()  # what still waits for a partner is unpaired
        if self.done:
            self._notices("result", {})
            return
        if self._time is not None:
            if self._clock is None:
                return  # no valid line: no windows
            last = self._clock_floor() // self._time.window[1]  # last window starting <= clock
            while not self.done and self._next_k <= last:
                self._next_k = self._emit_or_skip(self._next_k, last + 1)
            return
        if self._counts is not None:
            full = self._counts.cut()
            if full is not None:
                self._emit_batch(f"count window {full[0]}", full[1])
            else:
                self._notices("result", {})
            return
        if self._whole is None:  # streamed rows: all written already
            self._notices("result", {})
            return
        self._emit_batch("result", self._whole, whole=True)

    def _clock_floor(self) -> int:
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
