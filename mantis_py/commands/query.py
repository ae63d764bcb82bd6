"""`mantis-py query "<MQL>"`: live results from a gateway in the terminal (README.md).

On a terminal it shows a live table that is redrawn for each window (aggregate queries), or a
scrolling list of rows (raw queries), with the window, coverage and drop counts in a footer.
With ``--json`` (or when stdout is not a terminal) it writes one JSON object per result row and
per line, nothing else, so it pipes into ``jq``; notices go to stderr.

It runs on :mod:`mantis_py.client`: a lost gateway is retried (jittered backoff, across the
gateways of a comma-separated ``--gateway`` list) and the query resubmitted; meanwhile the table's
footer says "reconnecting…" and ``--json`` writes one ``{"type": "reconnecting", ...}`` line.
A query for an application with no agent yet waits (the footer, or stderr in JSON mode, names
the application and the nearest known name).

It stops on Ctrl-C (exit 0), after ``--for DURATION`` (exit 0), when the query completes (exit
0, e.g. LIMIT reached), or when the gateway refuses it: the structured error with a caret under
the offending text goes to stderr and the exit code is 2. Refused credentials (401/403) print
one line and exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Any, TextIO

__all__ = ["HELP", "add_arguments", "format_error", "gateway_url", "parse_duration", "run",
           "waiting_text"]

HELP = "run a live MQL query against a gateway: a table per window, or JSON lines with --json"

DEFAULT_GATEWAY = "ws://127.0.0.1:7100"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help="the MQL query, e.g. \"select count(*) from playback window 1\"")
    parser.add_argument(
        "--gateway",
        default=None,
        help=f"gateway URL, or several separated by commas for fail-over "
             f"(default: $MANTIS_GATEWAY or {DEFAULT_GATEWAY})",
    )
    parser.add_argument("--token", default=None, help="bearer token (default: $MANTIS_TOKEN)")
    parser.add_argument("--json", action="store_true",
                        help="write one JSON row per line (the default when stdout is not a terminal)")
    parser.add_argument(
        "--for", dest="duration", default=None, metavar="DURATION",
        help="stop after this long: 30s, 5m, 1h, 500ms (default: until Ctrl-C)",
    )


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``5m``, ``1h``, ``500ms``, ``1.5s`` or a plain number of seconds.

    >>> parse_duration("2m"), parse_duration("500ms"), parse_duration("10")
    (120.0, 0.5, 10.0)
    """
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|)", text.strip().lower())
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"bad duration {text!r}: use a number with s, m, h or ms, e.g. 30s")
    return float(m.group(1)) * _UNITS[m.group(2)]


def gateway_url(text: str) -> str:
    """The ``WS /v1/query`` URL for a gateway given as ``host:port``, ``http(s)://`` or ``ws(s)://``."""
    from ..client import gateway_url as url

    return url(text)


def format_error(error: dict[str, Any]) -> str:
    """The error object (docs/mql.md#errors) as the lines a person reads: message, snippet with caret,
    suggestion and hint."""
    code = error.get("code")
    head = f"{code} " if code else ""
    lines = [
        f"{head}{error.get('kind', 'query')} error at line {error.get('line', 1)}, "
        f"column {error.get('column', 1)}: {error.get('message', 'query refused')}"
    ]
    snippet = error.get("snippet")
    if snippet:
        lines.extend("  " + s for s in str(snippet).split("\n"))
    if error.get("suggestion"):
        lines.append(f"  did you mean: {error['suggestion']}")
    if error.get("hint"):
        lines.append(f"  hint: {error['hint']}")
    return "\n".join(lines)


def _fail(message: str, code: int = 1) -> int:
    print(f"mantis-py query: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    from ..client.core import gateway_list

    try:
        urls = gateway_list(args.gateway or os.environ.get("MANTIS_GATEWAY") or DEFAULT_GATEWAY)
        duration = parse_duration(args.duration) if args.duration else None
    except ValueError as exc:
        return _fail(str(exc), 2)
    token = args.token or os.environ.get("MANTIS_TOKEN")
    json_mode = bool(args.json) or not sys.stdout.isatty()
    view: _View = _JsonView(sys.stdout) if json_mode else _TableView(args.query)
    try:
        return _stream(urls, token, args.query, duration, view)
    except KeyboardInterrupt:
        return 0
    finally:
        view.close()


def _stream(urls: list[str], token: str | None, query: str, duration: float | None,
            view: _View) -> int:
    from ..client import (
        Accepted,
        Complete,
        ConnectionRefused,
        Idle,
        Meta,
        QueryRefused,
        Reconnecting,
        Rows,
    )
    from ..client import query as run_query

    deadline = None if duration is None else time.monotonic() + duration
    frames = run_query(query, urls, token=token or "", idle_s=0.25)
    connected = False
    try:
        for frame in frames:
            if deadline is not None and time.monotonic() >= deadline:
                return 0
            if isinstance(frame, Accepted):
                connected = True
                view.accepted(frame)
            elif isinstance(frame, Rows):
                view.rows(frame)
            elif isinstance(frame, Meta):
                view.meta(frame)
            elif isinstance(frame, Reconnecting):
                if not connected and frame.attempt >= len(urls):
                    # never reached any gateway: most likely a wrong address, say so and stop
                    view.close()
                    return _fail(f"cannot reach the gateway at {frame.error}")
                view.reconnecting(frame)
            elif isinstance(frame, Complete):
                view.close()
                print(f"mantis-py query: complete ({frame.reason})", file=sys.stderr)
                return 0
            elif isinstance(frame, Idle):
                view.tick()
    except QueryRefused as exc:
        view.close()
        print(format_error(exc.error), file=sys.stderr)
        return 2
    except ConnectionRefused as exc:
        return _fail(str(exc))
    except ValueError as exc:
        return _fail(str(exc), 2)
    finally:
        frames.close()  # type: ignore[attr-defined]
    return 0


def waiting_text(waiting: dict[str, Any]) -> str:
    """``waiting for agents of plaback (did you mean playback?)``."""
    text = f"waiting for agents of {waiting.get('app')}"
    if waiting.get("suggestion"):
        text += f" (did you mean {waiting['suggestion']}?)"
    return text


# --------------------------------------------------------------------------- views


class _View:
    def accepted(self, frame: Any) -> None: ...
    def rows(self, frame: Any) -> None: ...
    def meta(self, frame: Any) -> None: ...
    def reconnecting(self, frame: Any) -> None: ...
    def tick(self) -> None: ...
    def close(self) -> None: ...


class _JsonView(_View):
    """One JSON row per line on stdout, plus one ``{"type": "reconnecting", ...}`` line per lost
    connection; drop and waiting notices (when they change) on stderr."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.last_dropped: dict[str, int] = {}
        self.last_waiting: dict[str, Any] | None = None

    def rows(self, frame: Any) -> None:
        for row in frame.rows:
            self.out.write(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n")
        self.out.flush()

    def meta(self, frame: Any) -> None:
        dropped = {k: v for k, v in frame.dropped.items() if v}
        if dropped and dropped != self.last_dropped:
            print(f"mantis-py query: dropped {dropped}", file=sys.stderr)
        self.last_dropped = dropped
        if frame.waiting and frame.waiting != self.last_waiting:
            print(f"mantis-py query: {waiting_text(frame.waiting)}", file=sys.stderr)
        self.last_waiting = frame.waiting

    def reconnecting(self, frame: Any) -> None:
        line = {"type": "reconnecting", "attempt": frame.attempt, "error": frame.error,
                "next_try_s": round(frame.next_try_s, 3), "gateway": frame.gateway}
        self.out.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
        self.out.flush()


class _TableView(_View):
    """A rich live display: the latest window's table, or scrolling raw rows, plus a footer."""

    def __init__(self, query: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console()
        self.query = query
        self.canonical = query
        self.agents: int | None = None
        self.window: tuple[Any, Any] | None = None
        self.window_rows: list[dict[str, Any]] = []
        self.windows = 0
        self.raw_count = 0
        self.coverage: dict[str, Any] = {}
        self.dropped: dict[str, int] = {}
        self.waiting: dict[str, Any] | None = None
        self.reconnect: Any = None
        self.missed = 0
        self.started = time.monotonic()
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def accepted(self, frame: Any) -> None:
        self.canonical = frame.canonical
        self.agents = frame.agents
        self.reconnect = None
        self._update()

    def rows(self, frame: Any) -> None:
        if frame.window is not None:
            self.window = frame.window
            self.window_rows = list(frame.rows)
            self.windows += 1
        else:
            for row in frame.rows:
                self.live.console.print(_row_line(row), highlight=True, soft_wrap=True)
            self.raw_count += len(frame.rows)
        self.waiting = None
        self._update()

    def meta(self, frame: Any) -> None:
        if frame.missed is not None:
            self.missed += frame.dropped.get("missed_windows", 0)
        else:
            self.coverage = frame.coverage
            self.dropped = {k: v for k, v in frame.dropped.items() if v}
            self.waiting = frame.waiting
        self._update()

    def reconnecting(self, frame: Any) -> None:
        self.reconnect = frame
        self._update()

    def tick(self) -> None:
        self._update()

    def close(self) -> None:
        if self.live.is_started:
            self._update()
            self.live.stop()

    def _update(self) -> None:
        if self.live.is_started:
            self.live.update(self._render())

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        parts: list[Any] = []
        if self.window is not None:
            title = f"window {_clock(self.window[0])}–{_clock(self.window[1])}"
            table = Table(title=title, title_justify="left", expand=False)
            columns: list[str] = []
            for row in self.window_rows:
                for key in row:
                    if key not in columns:
                        columns.append(key)
            for col in columns:
                numeric = any(_is_number(r.get(col)) for r in self.window_rows)
                table.add_column(col, justify="right" if numeric else "left")
            for row in self.window_rows[:200]:
                table.add_row(*(_cell(row.get(c)) for c in columns))
            if not self.window_rows:
                table.add_column("(no rows in this window)")
            parts.append(table)
        footer = Text(style="dim")
        footer.append(f"{self.canonical}\n", style="bold")
        if self.reconnect is not None:
            footer.append(f"reconnecting… (attempt {self.reconnect.attempt}: "
                          f"{self.reconnect.error})\n", style="bold yellow")
        if self.waiting:
            footer.append(waiting_text(self.waiting) + "\n", style="bold yellow")
        status = []
        if self.agents is not None:
            status.append(f"{self.agents} agent{'s' if self.agents != 1 else ''}")
        if self.windows:
            status.append(f"{self.windows} window{'s' if self.windows != 1 else ''}")
        if self.raw_count:
            status.append(f"{self.raw_count} rows")
        k, n = self.coverage.get("reporting"), self.coverage.get("expected")
        if k is not None and n is not None:
            status.append(f"coverage {k}/{n}")
        if self.missed:
            status.append(f"{self.missed} window{'s' if self.missed != 1 else ''} missed "
                          "while reconnecting")
        status.append("dropped " + ", ".join(f"{k} {v}" for k, v in self.dropped.items())
                      if self.dropped else "no drops")
        status.append(f"{time.monotonic() - self.started:.0f}s · Ctrl-C to stop")
        footer.append(" · ".join(status))
        parts.append(footer)
        return Group(*parts)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _cell(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    return str(v)


def _row_line(row: dict[str, Any]) -> str:
    return "  ".join(f"{k}={_cell(v)}" for k, v in row.items())


def _clock(t: float) -> str:
    seconds = t / 1000 if t > 1e11 else t
    return time.strftime("%H:%M:%S", time.localtime(seconds))
