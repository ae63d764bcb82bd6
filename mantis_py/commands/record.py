"""`mantis-py record "<MQL>" --output F.jsonl [--for 60s] [--time-field ts]`: capture live events.

It runs a plain (non-aggregate) live query through :mod:`mantis_py.client` and writes each row as
one JSON line with its event time, in seconds since the epoch, under ``--time-field`` (default
``ts``), so ``mantis-py replay "<MQL>" --input F.jsonl --time-field ts`` later runs any query over
the same traffic with the same windows. The event time comes from the query itself: the command
adds a ``tick()`` item (milliseconds) and converts it; ``select *`` becomes ``select e[^'']``
(every top-level member) plus that item.

Aggregate queries are refused (record the events, then aggregate them with ``replay``). A lost
gateway is reconnected like ``mantis-py query``; events published meanwhile are not in the file.
Exit codes: 0 done (``--for`` elapsed, Ctrl-C, or the query completed), 1 the gateway refused the
credentials or the file cannot be written, 2 a bad query or flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any

__all__ = ["HELP", "add_arguments", "recording_query", "run"]

HELP = "record live events as JSON lines with their event time (seconds), for replay"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help="a plain live query, e.g. \"select * from playback\"")
    parser.add_argument("--output", required=True, metavar="FILE",
                        help="the JSONL file to write (- for stdout)")
    parser.add_argument("--for", dest="duration", default=None, metavar="DURATION",
                        help="stop after this long: 30s, 5m (default: until Ctrl-C)")
    parser.add_argument("--time-field", default="ts", metavar="FIELD",
                        help="member that holds each event's time in seconds (default ts)")
    parser.add_argument("--gateway", default=None,
                        help="gateway URL, or several separated by commas "
                             "(default: $MANTIS_GATEWAY or ws://127.0.0.1:7100)")
    parser.add_argument("--token", default=None, help="bearer token (default: $MANTIS_TOKEN)")


def recording_query(text: str, time_field: str) -> str:
    """The live query to run: ``text`` plus ``tick() AS '<time_field>'`` (``*`` -> ``e[^'']``).

    Raises:
        QueryError: the text does not parse.
        ValueError: an aggregate or windowed-aggregate query (nothing to replay from).
    """
    from ..query.syntax import ast
    from ..query.syntax.format import format_query
    from ..query.syntax.parser import parse

    q = parse(text)
    calls = [i for i in q.items if isinstance(i.operand, ast.Call) and i.operand.name != "tick"]
    if calls or q.group_by:
        raise ValueError("record captures events: use a plain query such as "
                         "\"select * from playback\" and aggregate the file with replay")
    items = tuple(q.items)
    if q.select_star:
        items = (ast.SelectItem(ast.PrefixSelector("")),)
    items += (ast.SelectItem(ast.Call("tick", ()), alias=time_field),)
    return str(format_query(dataclasses.replace(q, select_star=False, items=items)))


def _fail(message: str, code: int) -> int:
    print(f"mantis-py record: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    from ..client import Accepted, Complete, ConnectionRefused, QueryRefused, Reconnecting, Rows
    from ..client import query as run_query
    from ..client.core import gateway_list
    from ..errors import QueryError
    from .query import format_error, parse_duration

    try:
        duration = parse_duration(args.duration) if args.duration else None
        urls = gateway_list(args.gateway or os.environ.get("MANTIS_GATEWAY")
                            or "ws://127.0.0.1:7100")
        text = recording_query(args.query, args.time_field)
    except QueryError as exc:
        print(format_error(exc.to_dict()), file=sys.stderr)
        return 2
    except ValueError as exc:
        return _fail(str(exc), 2)
    try:
        out: Any = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        return _fail(f"cannot write {args.output}: {exc.strerror}", 1)
    field = args.time_field
    written = 0
    started = time.monotonic()
    deadline = None if duration is None else started + duration
    connected = False
    frames = run_query(text, urls, token=args.token or os.environ.get("MANTIS_TOKEN") or "",
                       idle_s=0.25)
    try:
        for frame in frames:
            if deadline is not None and time.monotonic() >= deadline:
                break
            if isinstance(frame, Accepted):
                connected = True
            elif isinstance(frame, Rows):
                for row in frame.rows:
                    tick = row.get(field)
                    if isinstance(tick, int | float) and not isinstance(tick, bool):
                        row[field] = tick / 1000
                    out.write(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n")
                    written += 1
                out.flush()
            elif isinstance(frame, Reconnecting):
                if not connected and frame.attempt >= len(urls):
                    return _fail(f"cannot reach the gateway at {frame.error}", 1)
                print(f"mantis-py record: reconnecting ({frame.error})", file=sys.stderr)
            elif isinstance(frame, Complete):
                break
    except KeyboardInterrupt:
        pass
    except QueryRefused as exc:
        print(format_error(exc.error), file=sys.stderr)
        return 2
    except ConnectionRefused as exc:
        return _fail(str(exc), 1)
    finally:
        frames.close()  # type: ignore[attr-defined]
        if out is not sys.stdout:
            out.close()
    where = "stdout" if args.output == "-" else args.output
    print(f"mantis-py record: {written} rows in {time.monotonic() - started:.0f} s to {where} "
          f"(event time in seconds under {field!r})", file=sys.stderr)
    return 0
