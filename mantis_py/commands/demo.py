"""`mantis-py demo` (placeholder until its issue lands)."""

from __future__ import annotations

import argparse
import sys

HELP = "demo (not yet available)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs="*")


def run(args: argparse.Namespace) -> int:
    print("mantis-py demo: not yet", file=sys.stderr)
    return 1
