"""`mantis-py`: the command line. Dispatches to ``mantis_py.commands.<name>``.

Errors a person can cause print one clear line and exit non-zero, never a traceback (README.md).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from . import __version__

__all__ = ["COMMANDS", "main"]

COMMANDS = ("gateway", "query", "record", "replay", "check", "demo")


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 2 with one line plus the usage, as argparse does, but never a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mantis-py", description="Ask running services live questions in MQL.")
    parser.add_argument("--version", action="version", version=f"mantis-py {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"mantis_py.commands.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


# Flags whose value may begin with "-" (tokens are random text): "--token -abc" is read as
# "--token=-abc" instead of argparse's "expected one argument".
VALUE_FLAGS = ("--token",)


def join_flag_values(argv: Sequence[str]) -> list[str]:
    """``["--token", "-abc"]`` -> ``["--token=-abc"]`` for the flags of :data:`VALUE_FLAGS`."""
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg == "--":
            out.extend(items[i:])
            break
        if arg in VALUE_FLAGS and i + 1 < len(items) and items[i + 1].startswith("-"):
            out.append(f"{arg}={items[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_flag_values(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `mantis-py replay ... | head`: the reader went away; end quietly. Point stdout at
        # /dev/null so the interpreter's final flush cannot fail again (Python docs, SIGPIPE).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
