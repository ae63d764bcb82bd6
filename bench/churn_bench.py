"""Subscription churn against a real agent: what a hostile gateway costs the host (issue 9).

    .venv/bin/python bench/churn_bench.py [--seconds 6] [--json]

A fake gateway on 127.0.0.1 (``websockets.sync`` server, in a child process) welcomes one real
``Agent`` (the threaded runner, in this process) and then sends, as fast as the link takes them,
``subscribe`` of a fresh query and ``unsubscribe`` of the previous one. Meanwhile the host thread
calls ``agent.publish()`` in a loop. Printed, each against the same measurement with a gateway
that only welcomes (baseline, same run):

- ``publish_rate_ratio``: host publishes per second during churn / baseline (1.0 = unaffected;
  before the churn cap it fell 27x);
- ``agent_cpu_share``: the agent thread's CPU per second of wall time during churn (before: 0.97
  of a core; the budget is 5 % of a core for compiles plus what events cost);
- how many subscribes the gateway sent and how many the agent refused (``sub_error``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

from mantis_py.agents import Agent
from mantis_py.wire import codec
from mantis_py.wire.messages import Subscribe, Unsubscribe, Welcome

TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu(native_id: int) -> float:
    """CPU seconds of one thread of this process (``/proc/self/task/<tid>/stat``)."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class FakeGateway:
    """Welcomes agents; with ``churn``, then floods them with fresh subscribes."""

    def __init__(self, churn: bool) -> None:
        self.churn = churn
        self.sent = 0
        self.refused = 0
        self.stop = threading.Event()
        self.server = serve(self.handle, "127.0.0.1", 0, subprotocols=["mantis.v1"],
                            max_size=None, compression=None)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, ws: Any) -> None:
        hello = json.loads(ws.recv())
        ws.send(codec.encode(Welcome("a1")), text=True)
        app = hello["app"]
        n = 0
        reader = threading.Thread(target=self.read, args=(ws,), daemon=True)
        reader.start()
        while self.churn and not self.stop.is_set():
            query = f"select a{n}, b, c from {app} where x > {n}"
            try:
                ws.send(codec.encode(Subscribe(f"s{n}", query, "default", time.time())),
                        text=True)
                if n:
                    ws.send(codec.encode(Unsubscribe(f"s{n - 1}")), text=True)
            except ConnectionClosed:
                return
            n += 1
            self.sent = n
        self.stop.wait()

    def read(self, ws: Any) -> None:
        try:
            for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "sub_error":
                    self.refused += 1
        except Exception:
            pass

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()


def run(churn: bool, seconds: float) -> dict[str, Any]:
    """One measurement; the fake gateway runs in its own process (its CPU and GIL are not the
    host's), and reports what it sent and what was refused on its stdout when told to stop."""
    gw = subprocess.Popen([sys.executable, __file__, "--serve", "churn" if churn else "idle"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert gw.stdin is not None
    assert gw.stdout is not None
    port = int(gw.stdout.readline())
    agent = Agent(app="bench", gateway=f"ws://127.0.0.1:{port}").start()
    try:
        time.sleep(1.0)  # connected and welcomed
        runner = next(t for t in threading.enumerate() if t.name == "mantis-agent")
        c0, t0, n = thread_cpu(runner.native_id or 0), time.monotonic(), 0
        event = {"x": 1, "a": 2, "b": 3, "c": 4}
        while time.monotonic() - t0 < seconds:
            for _ in range(100):
                agent.publish(event)
            n += 100
        wall = time.monotonic() - t0
        cpu = thread_cpu(runner.native_id or 0) - c0
    finally:
        agent.close()
        gw.stdin.close()  # the gateway prints its counts and exits
        counts = json.loads(gw.stdout.readline() or "{}")
        gw.wait(10)
    return {"publish_per_s": round(n / wall), "agent_cpu_share": round(cpu / wall, 3), **counts}


def serve_fake(churn: bool) -> None:
    gw = FakeGateway(churn)
    print(gw.port, flush=True)
    sys.stdin.read()  # until the parent closes it
    gw.close()
    print(json.dumps({"subscribes_sent": gw.sent, "refused": gw.refused}), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--serve", choices=("churn", "idle"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve_fake(args.serve == "churn")
        return 0
    base = run(False, args.seconds)
    churn = run(True, args.seconds)
    out = {"baseline": base, "churn": churn,
           "publish_rate_ratio": round(churn["publish_per_s"] / base["publish_per_s"], 3),
           "target": "publish rate close to the baseline; agent CPU within its budget"}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"churn: host publish rate {out['publish_rate_ratio']}x of the baseline "
              f"({churn['publish_per_s']}/s vs {base['publish_per_s']}/s); agent thread "
              f"{churn['agent_cpu_share']:.1%} of a core (baseline {base['agent_cpu_share']:.1%}); "
              f"subscribes sent {churn['subscribes_sent']}, refused {churn['refused']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
