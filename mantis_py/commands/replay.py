"""`mantis-py replay QUERY --input FILE|- [--time-field F] [--seed N]` (docs/mql.md#commands).

A thin shell around ``query.replay.ReplayEngine``: it reads lines, parses strict JSON (orjson,
with the standard library for integers beyond 64 bits and non-finite numbers), reports bad lines
on stderr, and writes rows to stdout as ``json.dumps(row, separators=(",", ":"),
ensure_ascii=False)`` would. Un-windowed queries stream in constant memory. Exit codes: 0 done
(even with skipped lines), 1 the input cannot be read, 2 the query or ``--time-field`` is rejected
or the usage is wrong. A rejected query is shown with a caret under the offending text when stderr
is a terminal, as one line of JSON otherwise (or with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from itertools import repeat
from typing import Any, BinaryIO

import orjson

from mantis_py.errors import QueryError

HELP = "run an MQL query over a JSONL file (or stdin) and print the result rows"

__all__ = ["HELP", "add_arguments", "run"]

_BIG_DIGITS = re.compile(rb"[0-9]{19}").search
_DIGITS = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))  # digits -> "0", others -> " "
_ZEROS = b"0" * 19
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_TYPE_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
_NO_CONSTANTS_RE = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help="the MQL query text (one argument; may contain line breaks)")
    parser.add_argument("--input", required=True, metavar="FILE", help="a JSONL file, or - for stdin")
    parser.add_argument("--time-field", metavar="FIELD", default=None, help="property holding the event time (seconds)")
    parser.add_argument("--seed", type=int, default=0, help="seed for RANDOM sampling (default 0)")
    parser.add_argument("--json", action="store_true",
                        help="a rejected query as one line of JSON even on a terminal")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _encode_row(row: Any) -> bytes:
    """``json.dumps(row, separators=(",", ":"), ensure_ascii=False)`` plus LF, through orjson
    when that gives the same text. orjson differs only for floats with 0 < |x| < 1e-4 (``1e-7``
    for ``1e-07``, ``0.000015`` for ``1.5e-05``), whose text holds ``e-`` or ``0.0000``; anything
    else it cannot write makes it raise."""
    try:
        out = orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
        if b"e-" not in out and b"0.0000" not in out:
            return out
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:
        text = _ENCODE(row)
    except (ValueError, TypeError, RecursionError):
        text = _encode_fallback(row)
    return text.encode("utf-8", "replace") + b"\n"


def _encode_rows(rows: list[dict[str, Any]]) -> bytes:
    """:func:`_encode_row` for many rows: one orjson pass when its text is the same."""
    try:
        out = b"\n".join(map(orjson.dumps, rows)) + b"\n"
        if b"e-" not in out and b"0.0000" not in out:
            return out
    except (TypeError, orjson.JSONEncodeError):
        pass
    return b"".join(map(_encode_row, rows))


def _encode_fallback(v: Any) -> str:
    """Rows with ints beyond Python's str() digit limit (or very deep values)."""
    from mantis_py.query.semantics.values import int_text

    t = type(v)
    if t is int:
        return int_text(v)
    if t is dict:
        return "{" + ",".join(_ENCODE(str(k)) + ":" + _encode_fallback(x) for k, x in v.items()) + "}"
    if t is list:
        return "[" + ",".join(_encode_fallback(x) for x in v) + "]"
    return _ENCODE(v)


def _parse_line(raw: bytes) -> tuple[Any, str | None]:
    """(event, None) or (None, reason) for one non-blank line."""
    try:
        obj = orjson.loads(raw)
        if _BIG_DIGITS(raw) is None:
            if type(obj) is dict:
                return obj, None
            return None, f"not a JSON object (found {_TYPE_NAMES.get(type(obj), 'value')})"
    except orjson.JSONDecodeError:
        pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not valid UTF-8"
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        return None, "not valid JSON: too deeply nested"
    except ValueError as err:
        detail = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
        col = f" at column {err.colno}" if isinstance(err, json.JSONDecodeError) else ""
        return None, f"not valid JSON: {detail}{col}"
    from mantis_py.query.semantics.values import clean

    obj = clean(obj)
    if type(obj) is not dict:
        return None, f"not a JSON object (found {_TYPE_NAMES.get(type(obj), 'value')})"
    return obj, None


def rest_line(lines: list[bytes]) -> bytes:
    return lines[0] if lines else b""


_NUMBER_TYPES = frozenset({int, float})


def _fast_chunk(
    lines: list[bytes], loads: Any, decode_error: Any, segs: Any, single: str | None, resolve: Any
) -> tuple[list[Any], list[Any] | None] | None:
    """Parse a chunk whose lines are all JSON objects with a numeric time (or no time field):
    ``(events, times)``, or None when some line needs the careful path."""
    try:
        objs = list(map(loads, lines))
    except decode_error:
        return None
    if set(map(type, objs)) != {dict}:
        return None
    if segs is None:
        return objs, [0] * len(objs)
    ts = list(map(dict.get, objs, repeat(single))) if single is not None else [resolve(e, segs) for e in objs]
    if not set(map(type, ts)) <= _NUMBER_TYPES:
        return None
    # orjson never yields a non-finite float, so every time is a finite number
    return objs, ts


def _time_field_segments(field: str) -> tuple[Any, ...]:
    """Parse ``--time-field`` as an MQL property (a bare name or an ``e[…]`` path).

    An invalid field is a QueryError located in the field's own text (§7.1: reported like a
    rejected query). The grammar allows exactly one property there, so a parse error of the
    E101/E102 kind expects ``a property`` (nothing read yet) or ``end of query`` (after it), never
    the clause keywords of the select list the field is parsed in.
    """
    import re

    from mantis_py.query.syntax import ast
    from mantis_py.query.syntax.diagnostics import describe_token, query_error
    from mantis_py.query.syntax.parser import parse

    prefix = "select "
    try:
        q = parse(prefix + field)
    except QueryError as err:
        # the error's (line, column) back to a code-point offset into ``field``
        line_starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", field)]
        line0 = min(err.line, len(line_starts)) - 1
        off = line_starts[line0] + err.column - 1 - (len(prefix) if line0 == 0 else 0)
        off = max(0, min(off, len(field)))
        if err.code not in ("E101", "E102"):
            raise query_error(
                err.code, err.message, field, off, err.length,
                expected=err.expected, suggestion=err.suggestion, hint=err.hint,
            ) from None
        want = "a property" if not field[:off].strip() else "end of query"
        if err.code == "E101":
            message = f"the query ends too early: expected {want}"
        else:
            message = f"expected {want}, found '{describe_token(field[off:off + err.length])}'"
        raise query_error(err.code, message, field, off, err.length, expected=[want], hint=err.hint) from None
    item = q.items[0] if q.items else None
    end = (item.operand.span.end if isinstance(item.operand, ast.Property) else item.span.end) if item else 0
    rest = field[max(0, end - len(prefix)):]
    if item is not None and rest.strip():
        # something follows the first operand (an alias, a ',' or a clause): only the end may
        off = len(field) - len(rest) + (len(rest) - len(rest.lstrip()))
        tok = re.match(r"[,()*]|[^\s,()*]+", field[off:])
        length = len(tok.group(0)) if tok else 1
        raise query_error(
            "E102", f"expected end of query, found '{describe_token(field[off:off + length])}'",
            field, off, length, expected=["end of query"],
        )
    if item is None or not isinstance(item.operand, ast.Property) or item.operand.has_star:
        raise query_error(
            "E116", f"--time-field must be a property (a name or an e[…] path), found '{field}'",
            field, 0, len(field), hint="write a name such as ts, or a path such as e['meta']['ts']",
        )
    return tuple(item.operand.segments)


def run(args: argparse.Namespace) -> int:
    from mantis_py.query.run.engine import prepare
    from mantis_py.query.run.replay import ReplayEngine
    from mantis_py.query.semantics.values import resolve, string_form

    err_out = sys.stderr
    try:
        p = prepare(args.query, mode="replay")
        segs = _time_field_segments(args.time_field) if args.time_field is not None else None
    except QueryError as err:
        from .check import error_text  # the caret display on a terminal, JSON otherwise

        err_out.write(error_text(err.to_dict(), bool(getattr(args, "json", False))) + "\n")
        return 2

    path = args.input
    try:
        stream: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as err:
        err_out.write(f"mantis-py: cannot read {path}: {err.strerror or err}\n")
        return 1

    out = sys.stdout.buffer
    write = out.write
    flush = out.flush

    def on_rows(scope: str | None, rows: list[dict[str, Any]]) -> None:
        # one write and one flush per window, or per batch of streamed rows (the rows of the
        # input that was available), so no row waits for more input
        write(_encode_rows(rows))
        flush()

    def on_notice(scope: str, name: str, detail: str) -> None:
        err_out.write(f"notice: {scope}: {name}: {detail}\n")

    def on_late(line: int, t: Any) -> None:
        err_out.write(f"line {line}: skipped: late event: every window for time {string_form(t)} is already closed\n")

    eng = ReplayEngine(p, on_rows=on_rows, on_notice=on_notice, on_late=on_late, seed=args.seed)
    tty = err_out.isatty()
    field_text = args.time_field
    single = segs[0] if segs is not None and len(segs) == 1 and isinstance(segs[0], str) else None
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    read = getattr(stream, "read1", stream.read)
    # the engine may parse and run a whole chunk itself when the time field (if any) is a
    # top-level member it can check on the raw lines
    whole_chunks = segs is None or single is not None
    lineno = 0
    rest = b""
    try:
        try:
            while not eng.done:
                chunk = read(1 << 16)
                if chunk:
                    data = rest + chunk if rest else chunk
                    lines = data.split(b"\n")
                    rest = lines.pop()
                else:
                    lines = [rest] if rest else []
                    rest = b""
                # one scan per chunk for integers orjson would turn into floats
                big = _ZEROS in (data if chunk else rest_line(lines)).translate(_DIGITS) if lines else False
                if whole_chunks and lines and not big and eng.feed_lines(lines, loads, single):
                    lineno += len(lines)
                    if not chunk:
                        break
                    continue
                if lines and not big:
                    # the common case: every line one JSON object with a good time
                    batch = _fast_chunk(lines, loads, decode_error, segs, single, resolve)
                    if batch is not None:
                        objs, ts = batch
                        n0 = lineno + 1
                        lineno += len(lines)
                        eng.feed_batch(objs, ts, list(range(n0, lineno + 1)))
                        if not chunk:
                            break
                        continue
                events: list[Any] = []
                times: list[Any] = []
                numbers: list[int] = []
                for raw in lines:
                    lineno += 1
                    try:
                        e = loads(raw)
                    except decode_error:
                        e = None
                    if e.__class__ is not dict or (big and _BIG_DIGITS(raw) is not None):
                        if raw[-1:] == b"\r":
                            raw = raw[:-1]
                        if not raw.strip():
                            continue
                        e, reason = _parse_line(raw)
                    else:
                        reason = None
                    t: Any = 0
                    if reason is None and segs is not None:
                        t = e.get(single) if single is not None else resolve(e, segs)
                        tt = t.__class__
                        if tt is not int and (tt is not float or t - t != 0.0):
                            reason = f"time field {field_text} is missing or not a number"
                    if reason is not None:
                        # what came before the skipped line runs first, so output keeps file order
                        eng.feed_batch(events, times, numbers)
                        events, times, numbers = [], [], []
                        if eng.done:
                            break
                        err_out.write(f"line {lineno}: skipped: {reason}\n")
                        continue
                    events.append(e)
                    times.append(t)
                    numbers.append(lineno)
                if events and not eng.done:
                    eng.feed_batch(events, times, numbers)
                if not chunk:
                    break
                if tty:
                    err_out.write(f"\r{lineno} lines\r")
        except BrokenPipeError:
            raise  # stdout closed (`| head`): not a read error; handled below
        except OSError as err:
            err_out.write(f"mantis-py: cannot read {path}: {err.strerror or err}\n")
            return 1
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
        eng.finish()
        if tty:
            err_out.write("\r\033[K")
        flush()
    except BrokenPipeError:
        # `| head`: the reader went away. End quietly, and keep Python's exit-time flush quiet.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 0
    return 0
