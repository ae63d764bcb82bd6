"""`mantis-py check QUERY [--mode live|replay]`: check a query without running it (docs/mql.md#commands).

Accepted: the plan (§7.2) on stdout as JSON indented by 2, exit 0. Rejected: the error object
(§5.2) on stderr as one line of compact JSON, exit 2. Never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["HELP", "add_arguments", "run"]

HELP = "check a query and print its plan (agent and gateway parts) as JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", metavar="QUERY", help="the MQL query text, as one argument")
    parser.add_argument(
        "--mode",
        choices=("live", "replay"),
        default="live",
        help="check the query as a live (default) or a replay query",
    )


def run(args: argparse.Namespace) -> int:
    from mantis_py.errors import QueryError
    from mantis_py.query.semantics.analyze import analyze
    from mantis_py.query.syntax.parser import parse

    try:
        analysis = analyze(parse(args.query), mode=args.mode, apps=None)
        plan = analysis.plan()
    except QueryError as exc:
        line = json.dumps(exc.to_dict(), separators=(",", ":"), ensure_ascii=False)
        print(line, file=sys.stderr)
        return 2
    except (Exception, RecursionError) as exc:  # a bug of ours: one line, never a traceback
        print(f"mantis-py: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(plan, indent=2, ensure_ascii=False))
    return 0
