"""`mantis-py demo`: one command starts a gateway, three simulated services with embedded agents,
a dashboard preset and an alert, all on 127.0.0.1, prints the URL and stops by itself."""

from __future__ import annotations

import argparse
import sys

__all__ = ["HELP", "add_arguments", "run"]

HELP = "run a local demo: gateway + simulated services + dashboard + alert (stops by itself)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=7100, help="gateway port (default 7100; 0: any free port)")
    parser.add_argument("--for", dest="duration", default="10m", metavar="DURATION",
                        help="stop after this long (default 10m): 20s, 5m, 1h")
    parser.add_argument("--outage-at", type=float, default=60.0, metavar="SECONDS",
                        help="when the scripted playback outage starts (default 60)")
    parser.add_argument("--outage-for", type=float, default=30.0, metavar="SECONDS",
                        help="how long the outage lasts (default 30)")
    parser.add_argument("--gateways", type=int, default=1, metavar="N",
                        help="run N gateways joined by a 3-node NATS cluster (docs/cluster.md); "
                             "gateway i listens on port+i")


def run(args: argparse.Namespace) -> int:
    from ..demo.runner import run_demo
    from ..demo.traffic import Scenario
    from .query import parse_duration

    try:
        duration = parse_duration(args.duration)
    except ValueError as exc:
        print(f"mantis-py demo: {exc}", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"mantis-py demo: bad port {args.port}", file=sys.stderr)
        return 2
    scenario = Scenario(outage_at=args.outage_at, outage_for=args.outage_for)
    if args.gateways != 1:
        if not 2 <= args.gateways <= 9:
            print(f"mantis-py demo: --gateways must be 1..9, got {args.gateways}", file=sys.stderr)
            return 2
        from ..demo.cluster import run_cluster_demo

        return run_cluster_demo(args.port, duration, gateways=args.gateways, scenario=scenario)
    return run_demo(args.port, duration, scenario=scenario)
