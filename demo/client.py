"""A minimal client of the gateway's query protocol (SYSTEM.md §3.3), in 30 lines.

    .venv/bin/python demo/client.py "select country, count(*) as pps from playback where event == 'play' window 1 group by country" [--for 20]

Prints every frame the gateway sends for the query, then cancels it and exits.
"""

from __future__ import annotations

import argparse
import json
import time

from websockets.sync.client import connect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("query")
    parser.add_argument("--gateway", default="ws://127.0.0.1:7100")
    parser.add_argument("--for", dest="seconds", type=float, default=20.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.seconds
    with connect(args.gateway + "/v1/query") as ws:
        ws.send(json.dumps({"type": "query", "id": "q1", "query": args.query}))
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = json.loads(ws.recv(timeout=left))
            except TimeoutError:
                break
            print(json.dumps(frame), flush=True)
            if frame["type"] in ("error", "complete"):
                return
        ws.send(json.dumps({"type": "cancel", "id": "q1"}))


if __name__ == "__main__":
    main()
