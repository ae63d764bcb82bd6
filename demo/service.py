"""A simulated playback service with an embedded agent (the demo's traffic model).

    .venv/bin/python demo/service.py [--gateway ws://127.0.0.1:7100] [--instance playback-1]
                                     [--for 600] [--outage-at 60]

Publishes plays with country, device, title, bitrate, latency_ms and status. Exits by itself.
"""

from __future__ import annotations

import argparse
import random
import time

from mantis_py.agents import Agent
from mantis_py.demo.traffic import Scenario, playback_events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", default="ws://127.0.0.1:7100")
    parser.add_argument("--instance", default=None)
    parser.add_argument("--for", dest="seconds", type=float, default=600.0)
    parser.add_argument("--outage-at", type=float, default=60.0)
    args = parser.parse_args()

    rng = random.Random()
    scenario = Scenario(outage_at=args.outage_at)
    start = time.time()
    with Agent(app="playback", gateway=args.gateway, instance=args.instance) as agent:
        print(f"publishing playback events to {args.gateway} for {args.seconds:g} s", flush=True)
        last = 0.0
        while (t := time.time() - start) < args.seconds:
            for event in playback_events(last, t - last, 1.0, rng, scenario):
                agent.publish(event)
            last = t
            time.sleep(0.1)
        print("agent statistics:", agent.statistics(), flush=True)


if __name__ == "__main__":
    main()
