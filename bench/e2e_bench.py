"""End-to-end gateway benchmark (issue #4). Every figure is a ratio against a baseline measured
in the same run, on 127.0.0.1 (SYSTEM.md §8).

    .venv/bin/python bench/e2e_bench.py [--json] [--quick]

1. ingest: raw matched events from 4 agent connections into a real gateway (one client reading
   the rows) vs a bare relay (a websockets.trio server that receives the same batches and
   orjson.loads them). Target: >= 0.5.
2. latency: publish -> client for raw rows at a steady rate, real agent in a subprocess;
   p50 / p99 as multiples of the agent flush interval. Target: p99 <= 2 x flush + 20 ms.
3. pushdown: ``select country, count(*), average(latency_ms) from bench window 1 group by country``
   at 10,000 events/s per agent (2 agents) vs shipping every matched event
   (``select country, latency_ms, ts from bench``): agent->gateway bytes and gateway CPU ratios,
   and whether the per-window results are identical.
4. fan-out: N concurrent websocket clients (1,000 by default) on one windowed query: how many
   receive every window.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import trio
from hdrh.histogram import HdrHistogram
from websockets.trio.client import connect

from mantis_py.testing.processes import process_cpu_seconds, stop_process
from mantis_py.wire import codec
from mantis_py.wire.messages import SUBPROTOCOL, Events, Hello

ROOT = Path(__file__).resolve().parent.parent
FLUSH_S = 0.05  # the agent's default batch interval (SYSTEM.md §4)

AGENT_SCRIPT = r"""
import sys, time, json
from mantis_py.agents import Agent
port, instance, rate, duration = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
subs_wanted = int(sys.argv[5])
agent = Agent(app="bench", gateway=f"ws://127.0.0.1:{port}", instance=instance, cpu_budget=1.0,
              max_queue_events=100000, max_queue_bytes=64 << 20)
agent.start()
while len(agent.statistics().subs) < subs_wanted:
    time.sleep(0.01)
print("ready", flush=True)
sys.stdin.readline()
countries = ("BR", "US", "DE", "JP", "FR", "IN")
t0 = time.time()
n = 0
while True:
    now = time.time()
    if now - t0 >= duration:
        break
    due = int((now - t0) * rate)
    while n < due:
        agent.publish({"country": countries[n % 6], "latency_ms": (n * 37) % 500,
                       "ts": time.time(), "n": n})
        n += 1
    time.sleep(0.001)
time.sleep(0.3)
print(json.dumps({"published": n, "stats": str(agent.statistics())[:300]}), flush=True)
sys.stdin.readline()
agent.close()
"""


# What-if (not the product): a gateway whose codec skips the big-integer regex scan and the
# per-record shape checks on ``events`` frames, to show what the codec costs on ingest.
FAST_CODEC_LAUNCHER = r"""
import sys, orjson
from mantis_py.wire import codec, messages
codec._loads = orjson.loads
messages.Events.FIELDS["records"] = lambda v: isinstance(v, list)
from mantis_py.cli import main
sys.exit(main(sys.argv[1:]))
"""


def gateway_config(tmp: Path, grace: float = 1.0) -> Path:
    path = tmp / "gw.toml"
    path.write_text(
        f"[gateway]\nhost = \"127.0.0.1\"\nport = 0\ngrace_s = {grace}\n"
        "[limits]\nconnections_per_user = 5000\nconnections_total = 5000\n"
        "submissions_per_s = 10000.0\nsubmissions_burst = 5000\n"
        "client_queue_frames = 4096\nclient_queue_bytes = 67108864\n"
    )
    return path


class Gateway:
    """A `mantis-py gateway` child process."""

    def __init__(self, tmp: Path, fast_codec: bool = False) -> None:
        cfg = gateway_config(tmp)
        prof = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] \
            if os.environ.get("BENCH_PROFILE") else []
        launcher = ["-c", FAST_CODEC_LAUNCHER] if fast_codec else ["-m", "mantis_py"]
        self.proc = subprocess.Popen(
            [sys.executable, *prof, *launcher, "gateway", "--config", str(cfg),
             "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        self.port = int(line.strip().rsplit(":", 1)[1].rstrip("/"))

    def cpu(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def close(self) -> None:
        stop_process(self.proc, 10)


async def http_get(port: int, path: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = bytearray()
        while chunk := await stream.receive_some(65536):
            data += chunk
    return bytes(data).split(b"\r\n\r\n", 1)[1]


async def metric(port: int, name: str, labels: str = "") -> float:
    body = (await http_get(port, "/metrics")).decode()
    key = f"mantis_gateway_{name}{labels} "
    for line in body.splitlines():
        if line.startswith(key):
            return float(line.split()[-1])
    return 0.0


# --------------------------------------------------------------------------- 1. ingest


def make_batches(sub: str, batches: int, per_batch: int) -> list[bytes]:
    out = []
    for b in range(batches):
        records = [{"subs": [sub], "t": 1_700_000_000_000 + b, "s": b * per_batch + i,
                    "e": {"country": "BR", "latency_ms": i, "path": "/api/v1/items", "ok": True}}
                   for i in range(per_batch)]
        out.append(codec.encode(Events("default", records)))
    return out


RELAY_SCRIPT = r"""
import orjson, trio
from websockets.trio.server import serve

async def main():
    count = [0]

    async def handler(ws):
        async for message in ws:
            if message == "done":
                await ws.send(str(count[0]))
                continue
            count[0] += len(orjson.loads(message)["records"])

    async with trio.open_nursery() as nursery:
        server = await nursery.start(lambda task_status: serve(
            handler, 0, host="127.0.0.1", max_size=None, compression=None,
            task_status=task_status))
        print(server.listeners[0].socket.getsockname()[1], flush=True)

trio.run(main)
"""

DRAIN_SCRIPT = r"""
import sys, json, trio
from websockets.trio.client import connect

async def main():
    async with connect(f"ws://127.0.0.1:{sys.argv[1]}/v1/query", max_size=None) as ws:
        await ws.send(json.dumps({"type": "query", "id": "q", "query": "select * from bench"}))
        print(await ws.recv(), flush=True)
        async for _ in ws:
            pass

trio.run(main)
"""


def child(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=ROOT)


async def relay_round(port: int, frames: list[bytes], agents: int) -> float:
    async def one(ready: trio.Event, go: trio.Event) -> None:
        async with connect(f"ws://127.0.0.1:{port}/", max_size=None, compression=None) as ws:
            ready.set()
            await go.wait()
            for frame in frames:
                await ws.send(frame, text=True)
            await ws.send("done")
            await ws.recv()

    ready = [trio.Event() for _ in range(agents)]
    go = trio.Event()
    async with trio.open_nursery() as nursery:
        for r in ready:
            nursery.start_soon(one, r, go)
        for r in ready:
            await r.wait()
        t0 = time.perf_counter()
        go.set()
    return time.perf_counter() - t0


async def gateway_round(port: int, batches: int, per_batch: int, agents: int,
                        round_no: int) -> float:
    ready = [trio.Event() for _ in range(agents)]
    go = trio.Event()
    before = await metric(port, "events_in_total")

    async def one(i: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/v1/agent", subprotocols=[SUBPROTOCOL],
                           max_size=None, compression=None) as ws:
            hello = Hello("bench", f"g{round_no}-{i}", ("default",))
            await ws.send(codec.encode(hello).decode())
            sub = None
            while sub is None:
                msg = orjson.loads(await ws.recv())
                if msg["type"] == "subscribe":
                    sub = msg["sub"]
            frames = make_batches(sub, batches, per_batch)
            ready[i].set()
            await go.wait()
            for frame in frames:
                await ws.send(frame, text=True)
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        for i in range(agents):
            nursery.start_soon(one, i)
        for r in ready:
            await r.wait()
        t0 = time.perf_counter()
        go.set()
        total = agents * batches * per_batch
        while await metric(port, "events_in_total") - before < total:  # noqa: ASYNC110
            await trio.sleep(0.005)
        elapsed = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    return elapsed


async def bench_ingest(tmp: Path, quick: bool, fast_codec: bool = False) -> dict[str, Any]:
    """Relay, gateway and the rows-reading client each run in their own process; the bench
    process only sends the same pre-encoded batches. Rounds alternate; medians are compared."""
    agents, batches, per_batch = 4, (100 if quick else 250), 100
    total = agents * batches * per_batch
    rounds = 3
    relay = child(RELAY_SCRIPT)
    gw = Gateway(tmp, fast_codec)
    drain: subprocess.Popen[str] | None = None
    try:
        assert relay.stdout is not None
        relay_port = int(await trio.to_thread.run_sync(relay.stdout.readline))
        # an agent must exist before the query names its app
        async with connect(f"ws://127.0.0.1:{gw.port}/v1/agent",
                           subprotocols=[SUBPROTOCOL]) as ws:
            await ws.send(codec.encode(Hello("bench", "seed", ("default",))).decode())
            await ws.recv()
            drain = child(DRAIN_SCRIPT, str(gw.port))
            assert drain.stdout is not None
            await trio.to_thread.run_sync(drain.stdout.readline)
        frames = make_batches("x", batches, per_batch)
        relay_s, gateway_s = [], []
        for r in range(rounds):
            relay_s.append(await relay_round(relay_port, frames, agents))
            gateway_s.append(await gateway_round(gw.port, batches, per_batch, agents, r))
    finally:
        stop_process(relay, 10)
        if drain is not None:
            stop_process(drain, 10)
        gw.close()
    relay_med = sorted(relay_s)[rounds // 2]
    gateway_med = sorted(gateway_s)[rounds // 2]
    return {
        "events_per_round": total,
        "rounds": rounds,
        "relay_events_per_s": round(total / relay_med),
        "gateway_events_per_s": round(total / gateway_med),
        "ratio": round(relay_med / gateway_med, 3),
        "target": ">= 0.5",
    }


# --------------------------------------------------------------------------- agents in processes


class AgentProc:
    def __init__(self, port: int, instance: str, rate: float, duration: float, subs: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", AGENT_SCRIPT, str(port), instance, str(rate), str(duration),
             str(subs)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self.send("bye")
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
            self.proc.wait()


async def wait_agents(port: int, n: int) -> None:
    while True:
        apps = json.loads(await http_get(port, "/v1/apps"))["apps"]
        if len(apps.get("bench", {}).get("instances", [])) >= n:
            return
        await trio.sleep(0.05)


# --------------------------------------------------------------------------- 2. latency


async def bench_latency(tmp: Path, quick: bool) -> dict[str, Any]:
    rate, duration = 1000.0, (3.0 if quick else 6.0)
    gw = Gateway(tmp)
    hist = HdrHistogram(1, 60_000_000, 3)  # microseconds
    try:
        agent = AgentProc(gw.port, "lat-1", rate, duration, 1)
        await wait_agents(gw.port, 1)
        async with connect(f"ws://127.0.0.1:{gw.port}/v1/query", max_size=None) as ws:
            await ws.send(json.dumps({"type": "query", "id": "q",
                                      "query": "select ts from bench"}))
            await ws.recv()
            assert await trio.to_thread.run_sync(agent.line) == "ready\n"
            agent.send("go")
            received = 0
            with trio.move_on_after(duration + 3):
                async for message in ws:
                    now = time.time()
                    msg = orjson.loads(message)
                    if msg["type"] != "rows":
                        continue
                    for row in msg["rows"]:
                        hist.record_value(max(1, int((now - row["ts"]) * 1e6)))
                        received += 1
                    if received >= rate * duration * 0.999:
                        break
        agent.close()
    finally:
        gw.close()
    p50 = hist.get_value_at_percentile(50) / 1e6
    p99 = hist.get_value_at_percentile(99) / 1e6
    return {
        "rows": received,
        "flush_interval_s": FLUSH_S,
        "p50_s": round(p50, 4),
        "p99_s": round(p99, 4),
        "p50_over_flush": round(p50 / FLUSH_S, 2),
        "p99_over_flush": round(p99 / FLUSH_S, 2),
        "target": "p99 <= 2 x flush + 20 ms",
        "meets_target": p99 <= 2 * FLUSH_S + 0.020,
    }


# --------------------------------------------------------------------------- 3. pushdown

AGG = "select country, count(*), average(latency_ms) from bench window 1 group by country"
RAW = "select country, latency_ms, ts from bench"


async def run_variant(tmp: Path, query: str, rate: float, duration: float) -> dict[str, Any]:
    gw = Gateway(tmp)
    messages: list[dict[str, Any]] = []
    try:
        agents = [AgentProc(gw.port, f"pd-{i}", rate, duration, 1) for i in range(2)]
        await wait_agents(gw.port, 2)
        async with connect(f"ws://127.0.0.1:{gw.port}/v1/query", max_size=None) as ws:
            await ws.send(json.dumps({"type": "query", "id": "q", "query": query}))
            await ws.recv()
            for a in agents:
                assert await trio.to_thread.run_sync(a.line) == "ready\n"
            bytes0 = await metric(gw.port, "bytes_in_total", '{kind="agent"}')
            cpu0 = gw.cpu()
            for a in agents:
                a.send("go")
            with trio.move_on_after(duration + 3.5):
                async for message in ws:
                    messages.append(orjson.loads(message))
            bytes1 = await metric(gw.port, "bytes_in_total", '{kind="agent"}')
            cpu1 = gw.cpu()
        published = 0
        for a in agents:
            published += json.loads(await trio.to_thread.run_sync(a.line))["published"]
        for a in agents:
            a.close()
    finally:
        gw.close()
    return {"bytes": bytes1 - bytes0, "cpu_s": cpu1 - cpu0, "messages": messages,
            "published": published}


def per_window_from_raw(messages: list[dict[str, Any]]) -> dict[tuple[int, str], list[float]]:
    acc: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for m in messages:
        if m["type"] == "rows":
            for r in m["rows"]:
                k = (math.floor(r["ts"]), r["country"])
                acc[k][0] += 1
                acc[k][1] += r["latency_ms"]
    return acc


async def bench_pushdown(tmp: Path, quick: bool) -> dict[str, Any]:
    rate, duration = 10_000.0, (3.0 if quick else 5.0)
    agg = await run_variant(tmp, AGG, rate, duration)
    raw = await run_variant(tmp, RAW, rate, duration)
    windows = [m for m in agg["messages"] if m["type"] == "rows" and m["rows"]]
    # Each run has its own events, so here each run is checked against what it published;
    # bench_identical runs both queries on the same events and compares window by window.
    agg_count = sum(r["COUNT(*)"] for w in windows for r in w["rows"])
    raw_rows = sum(len(m["rows"]) for m in raw["messages"] if m["type"] == "rows")
    raw_windows = per_window_from_raw(raw["messages"])
    return {
        "events_per_s_per_agent": rate,
        "agents": 2,
        "pushdown_bytes": int(agg["bytes"]),
        "raw_bytes": int(raw["bytes"]),
        "bytes_ratio": round(raw["bytes"] / max(1, agg["bytes"]), 1),
        "pushdown_gateway_cpu_s": round(agg["cpu_s"], 3),
        "raw_gateway_cpu_s": round(raw["cpu_s"], 3),
        "cpu_ratio": round(raw["cpu_s"] / max(0.001, agg["cpu_s"]), 1),
        "pushdown_counted_all_events": agg_count == agg["published"],
        "raw_shipped_all_events": raw_rows == raw["published"],
        "pushdown_events": agg_count,
        "raw_windows": len({k[0] for k in raw_windows}),
        "target": ">= 50 x fewer bytes",
    }


async def bench_identical(tmp: Path) -> dict[str, Any]:
    """Both queries at once on the same events: per-window results must be identical."""
    gw = Gateway(tmp)
    try:
        agents = [AgentProc(gw.port, f"id-{i}", 5000.0, 3.0, 2) for i in range(2)]
        await wait_agents(gw.port, 2)
        got: dict[str, list[dict[str, Any]]] = {"agg": [], "raw": []}
        async with connect(f"ws://127.0.0.1:{gw.port}/v1/query", max_size=None) as ws:
            await ws.send(json.dumps({"type": "query", "id": "agg", "query": AGG}))
            await ws.send(json.dumps({"type": "query", "id": "raw",
                                      "query": RAW.replace("ts from", "ts, n from")}))
            for a in agents:
                assert await trio.to_thread.run_sync(a.line) == "ready\n"
            for a in agents:
                a.send("go")
            with trio.move_on_after(6.5):
                async for message in ws:
                    m = orjson.loads(message)
                    if m.get("id") in got:
                        got[m["id"]].append(m)
        for a in agents:
            await trio.to_thread.run_sync(a.line)
            a.close()
    finally:
        gw.close()
    raw = per_window_from_raw(got["raw"])
    mismatches = 0
    compared = 0
    for m in got["agg"]:
        if m["type"] != "rows" or not m["rows"]:
            continue
        start = m["window"][0]
        for r in m["rows"]:
            n, total = raw.get((start, r["country"]), [0, 0.0])
            compared += 1
            if n != r["COUNT(*)"] or (n and abs(total / n - r["AVERAGE(latency_ms)"]) > 1e-9):
                mismatches += 1
    return {"groups_compared": compared, "mismatches": mismatches, "identical": mismatches == 0}


# --------------------------------------------------------------------------- 4. fan-out


async def bench_fanout(tmp: Path, clients: int, windows: int) -> dict[str, Any]:
    gw = Gateway(tmp)
    got = [0] * clients
    try:
        agent = AgentProc(gw.port, "fan-1", 200.0, windows + 3.0, 1)
        await wait_agents(gw.port, 1)
        query = "select count(*) from bench window 1"
        async with trio.open_nursery() as nursery:
            opened = trio.Semaphore(50)
            all_in = trio.Event()
            accepted = [0]

            async def client(i: int) -> None:
                async with opened:
                    ws_cm = connect(f"ws://127.0.0.1:{gw.port}/v1/query", open_timeout=60)
                    ws = await ws_cm.__aenter__()
                try:
                    await ws.send(json.dumps({"type": "query", "id": "f", "query": query}))
                    await ws.recv()
                    accepted[0] += 1
                    if accepted[0] == clients:
                        all_in.set()
                    await all_in.wait()
                    first = None
                    async for message in ws:
                        m = orjson.loads(message)
                        if m["type"] == "rows":
                            start = m["window"][0]
                            if first is None:
                                first = start
                            if start >= first_common[0] and start < first_common[0] + windows:
                                got[i] += 1
                            if start >= first_common[0] + windows - 1:
                                break
                finally:
                    await ws_cm.__aexit__(None, None, None)

            first_common = [math.inf]
            for i in range(clients):
                nursery.start_soon(client, i)
            await all_in.wait()
            first_common[0] = math.ceil(time.time()) + 1
            assert await trio.to_thread.run_sync(agent.line) == "ready\n"
            agent.send("go")
            with trio.move_on_after(windows + 15):
                while sum(1 for g in got if g >= windows) < clients:  # noqa: ASYNC110
                    await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        agent.close()
    finally:
        gw.close()
    complete = sum(1 for g in got if g >= windows)
    return {"clients": clients, "windows": windows, "clients_with_every_window": complete,
            "ratio": round(complete / clients, 4), "target": "1.0"}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        out: dict[str, Any] = {}
        out["ingest"] = await bench_ingest(tmp, args.quick)
        what_if = await bench_ingest(tmp, args.quick, fast_codec=True)
        out["ingest"]["what_if_fast_codec_ratio"] = what_if["ratio"]
        out["latency"] = await bench_latency(tmp, args.quick)
        out["pushdown"] = await bench_pushdown(tmp, args.quick)
        out["pushdown"]["identical_results"] = await bench_identical(tmp)
        out["fanout"] = await bench_fanout(tmp, 200 if args.quick else args.clients, 3)
        return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--clients", type=int, default=1000)
    ns = parser.parse_args()
    result = trio.run(main, ns)
    if ns.json:
        print(json.dumps(result, indent=2))
    else:
        for name, fig in result.items():
            print(f"{name}: {fig}")
