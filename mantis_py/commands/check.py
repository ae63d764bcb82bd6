"""`mantis-py check QUERY [--mode live|replay]`: check a query without running it (docs/mql.md#commands).

Accepted: the plan (§7.2) on stdout as JSON indented by 2, exit 0. Rejected: exit 2 with the
error on stderr: on a terminal, the message with a caret under the offending text (as
``mantis-py query`` shows it); otherwise, or with ``--json``, the error object (§5.2) as one line
of compact JSON. Never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["HELP", "add_arguments", "error_text", "run"]

HELP = "check a query and print its plan (agent and gateway parts) as JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", metavar="QUERY", help="the MQL query text, as one argument")
    parser.add_argument(
        "--mode",
        choices=("live", "replay"),
        default="live",
        help="check the query as a live (default) or a replay query",
    )
    parser.add_argument("--json", action="store_true",
                        help="errors as one line of JSON even on a terminal")


def error_text(error: dict[str, object], as_json: bool) -> str:
    """The error for stderr: the caret display on a terminal, else (or ``as_json``) JSON."""
    if as_json or not sys.stderr.isatty():
        return json.dumps(error, separators=(",", ":"), ensure_ascii=False)
    from .query import format_error

    return format_error(error)


def run(args: argparse.Namespace) -> int:
    from mantis_py.errors import QueryError
    from mantis_py.query.semantics.analyze import analyze
    from mantis_py.query.syntax.parser import parse

    try:
        analysis = analyze(parse(args.query), mode=args.mode, apps=None)
        plan = analysis.plan()
    except QueryError as exc:
        print(error_text(exc.to_dict(), args.json), file=sys.stderr)
        return 2
    except (Exception, RecursionError) as exc:  # a bug of ours: one line, never a traceback
        print(f"mantis-py: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(plan, indent=2, ensure_ascii=False))
    return 0
