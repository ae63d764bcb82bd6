"""`mantis-py query "<MQL>"`: live results from a gateway in the terminal (README.md).

On a terminal it shows a live table that is redrawn for each window (aggregate queries), or a
scrolling list of rows (raw queries), with the window, coverage and drop counts in a footer.
With ``--json`` (or when stdout is not a terminal) it writes one JSON object per result row and
per line, nothing else, so it pipes into ``jq``; notices go to stderr.

It stops on Ctrl-C (exit 0), after ``--for DURATION`` (exit 0), when the query completes (exit
0, e.g. LIMIT reached), or when the gateway refuses it: the structured error with a caret under
the offending text goes to stderr and the exit code is 2. An unreachable gateway or refused
credentials print one line and exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

__all__ = ["HELP", "add_arguments", "format_error", "gateway_url", "parse_duration", "run"]

HELP = "run a live MQL query against a gateway: a table per window, or JSON lines with --json"

DEFAULT_GATEWAY = "ws://127.0.0.1:7100"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help="the MQL query, e.g. \"select count(*) from playback window 1\"")
    parser.add_argument(
        "--gateway",
        default=None,
        help=f"gateway URL (default: $MANTIS_GATEWAY or {DEFAULT_GATEWAY})",
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
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|)\s*", text.lower())
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"bad duration {text!r}: use a number with s, m, h or ms, e.g. 30s")
    return float(m.group(1)) * _UNITS[m.group(2)]


def gateway_url(text: str) -> str:
    """The ``WS /v1/query`` URL for a gateway given as ``host:port``, ``http(s)://`` or ``ws(s)://``."""
    if "://" not in text:
        text = "ws://" + text
    parts = urlsplit(text)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"bad gateway URL {text!r}: use ws://host:port")
    path = parts.path if parts.path not in ("", "/") else "/v1/query"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


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
    try:
        url = gateway_url(args.gateway or os.environ.get("MANTIS_GATEWAY") or DEFAULT_GATEWAY)
        duration = parse_duration(args.duration) if args.duration else None
    except ValueError as exc:
        return _fail(str(exc), 2)
    token = args.token or os.environ.get("MANTIS_TOKEN")
    json_mode = bool(args.json) or not sys.stdout.isatty()

    from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
    from websockets.sync.client import connect

    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        ws = connect(url, additional_headers=headers, open_timeout=10, max_size=2**24)
    except InvalidStatus as exc:
        status = exc.response.status_code
        why = {401: "missing or unknown token", 403: "forbidden", 429: "too many connections",
               503: "gateway overloaded"}.get(status, exc.response.reason_phrase)
        return _fail(f"the gateway at {url} refused the connection: HTTP {status} ({why})")
    except InvalidURI as exc:
        return _fail(f"bad gateway URL: {exc}", 2)
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        return _fail(f"cannot reach the gateway at {url}: {exc}")

    view: _View = _JsonView(sys.stdout) if json_mode else _TableView(args.query)
    try:
        return _stream(ws, args.query, duration, view)
    except KeyboardInterrupt:
        _cancel(ws)
        return 0
    finally:
        view.close()
        try:
            ws.close()
        except Exception:
            pass


def _cancel(ws: ClientConnection) -> None:
    try:
        ws.send(json.dumps({"type": "cancel", "id": "q1"}))
    except Exception:
        pass


def _stream(ws: ClientConnection, query: str, duration: float | None, view: _View) -> int:
    from websockets.exceptions import ConnectionClosed

    ws.send(json.dumps({"type": "query", "id": "q1", "query": query}))
    deadline = None if duration is None else time.monotonic() + duration
    while True:
        wait = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
        if wait <= 0:
            _cancel(ws)
            return 0
        try:
            raw = ws.recv(timeout=wait)
        except TimeoutError:
            view.tick()
            continue
        except ConnectionClosed as exc:
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            return _fail(f"the gateway closed the connection ({code}{': ' + reason if reason else ''})")
        try:
            msg = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(msg, dict) or msg.get("id") not in ("q1", None):
            continue
        kind = msg.get("type")
        if kind == "accepted":
            view.accepted(msg)
        elif kind == "error":
            view.close()
            print(format_error(msg.get("error") or {}), file=sys.stderr)
            return 2
        elif kind == "rows":
            view.rows(msg)
        elif kind == "meta":
            view.meta(msg)
        elif kind == "complete":
            view.close()
            print(f"mantis-py query: complete ({msg.get('reason', '')})", file=sys.stderr)
            return 0


# --------------------------------------------------------------------------- views


class _View:
    def accepted(self, msg: dict[str, Any]) -> None: ...
    def rows(self, msg: dict[str, Any]) -> None: ...
    def meta(self, msg: dict[str, Any]) -> None: ...
    def tick(self) -> None: ...
    def close(self) -> None: ...


class _JsonView(_View):
    """One JSON row per line on stdout; drop notices (once a second at most) on stderr."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.last_dropped: dict[str, int] = {}

    def rows(self, msg: dict[str, Any]) -> None:
        for row in msg.get("rows") or []:
            self.out.write(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n")
        self.out.flush()

    def meta(self, msg: dict[str, Any]) -> None:
        dropped = {k: v for k, v in (msg.get("dropped") or {}).items() if v}
        if dropped and dropped != self.last_dropped:
            print(f"mantis-py query: dropped {dropped}", file=sys.stderr)
        self.last_dropped = dropped


class _TableView(_View):
    """A rich live display: the latest window's table, or scrolling raw rows, plus a footer."""

    def __init__(self, query: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console()
        self.query = query
        self.canonical = query
        self.agents: int | None = None
        self.window: list[float] | None = None
        self.window_rows: list[dict[str, Any]] = []
        self.windows = 0
        self.raw_count = 0
        self.coverage: dict[str, Any] = {}
        self.dropped: dict[str, int] = {}
        self.started = time.monotonic()
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def accepted(self, msg: dict[str, Any]) -> None:
        self.canonical = str(msg.get("canonical", self.query))
        self.agents = msg.get("agents")
        self._update()

    def rows(self, msg: dict[str, Any]) -> None:
        rows = [r for r in msg.get("rows") or [] if isinstance(r, dict)]
        if msg.get("window") is not None:
            self.window = list(msg["window"])
            self.window_rows = rows
            self.windows += 1
        else:
            for row in rows:
                self.live.console.print(_row_line(row), highlight=True, soft_wrap=True)
            self.raw_count += len(rows)
        self._update()

    def meta(self, msg: dict[str, Any]) -> None:
        self.coverage = msg.get("coverage") or {}
        self.dropped = {k: v for k, v in (msg.get("dropped") or {}).items() if v}
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
