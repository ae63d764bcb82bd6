"""Gateway scale benchmark (issue #13): many simulated agents on one gateway, real protocol.

    .venv/bin/python bench/cluster_bench.py [--only idle,scale] [--scales 1000,2000,5000]
                                            [--seconds 12] [--json]

Simulated agents speak the real protocol over their own websocket connections. ``idle`` uses
real :class:`~mantis_py.agents.core.AgentCore` objects (:mod:`mantis_py.testing.swarm`: the same
hello, stats and pongs as ``Agent``). ``scale`` uses ``bench/sim_agents.py``, a lean simulator
(a minimal websocket client, so that thousands of simulated agents cost less CPU than the gateway
they measure): once a second each agent sends the ``partial`` of the window that just ended, one
real part per window folded by the engine from ``--events`` events and shared by all agents of a
process (the gateway merges exactly what real agents would send). One simulator process runs up
to ``--per-proc`` agents. The gateway is a
real ``mantis-py gateway`` subprocess; its CPU is read from ``/proc/<pid>/stat``. Each scale step
waits (up to 90 s) for a first window where every agent reported, then measures ``--seconds``.
``SIM_STDERR=<file>`` keeps the simulators' errors and a progress line every 2 s.

Sections (``--only``):

- ``merge``: the gateway's merger alone, in this process (no sockets): N members, one part each
  per window, polled after every part. CPU us per part at each N and its ratio to the smallest N
  (target: flat, i.e. O(1) per part).
- ``idle``: N connected agents (``--idle``, default 1,000), no query. Gateway CPU per agent-second,
  net of an empty gateway measured in the same run. Target: <= 50 us.
- ``scale``: for each N in ``--scales``: the query
  ``select country, count(*) as n, p99(latency_ms) as p99 from bench window 1 group by country``
  with every agent publishing ``--events`` events per second. Per N: windows with full coverage
  (target >= 95 %), windows whose counts equal what the agents published, median / p90 emission
  delay after the window's end (target median <= 1 s), gateway CPU us per agent-second and its
  ratio to the smallest N (linear cost: the ratio stays near 1).
- ``cluster``: three gateways over a 3-node NATS cluster (``bench/cluster_bench_nats.py``): owner
  CPU per merged part arriving via NATS vs directly (target <= 1.5x), and ``kill -9`` of a gateway
  holding ``--failover-agents`` agents: reconnection p99, first full-coverage window after the
  kill, window delay of the agents that never moved.

The machine running it is shared: keep runs short, and read the ratios rather than the absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from websockets.trio.client import connect

from mantis_py.testing.processes import process_cpu_seconds, stop_process
from mantis_py.wire import codec
from mantis_py.wire.messages import SUBPROTOCOL, Query

ROOT = Path(__file__).resolve().parent.parent
QUERY = ("select country, count(*) as n, p99(latency_ms) as p99 from bench window 1 "
         "group by country")
COUNTRIES = ("BR", "US", "DE", "JP", "FR", "IN")

SIM_SCRIPT = r"""
import sys, time
import trio
from mantis_py.testing.swarm import Swarm

port, first, count, events, seed = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                    int(sys.argv[4]), int(sys.argv[5]))
DEBUG = len(sys.argv) > 7


async def main():
    swarm = Swarm(f"ws://127.0.0.1:{port}", count, first=first, events=events, seed=seed,
                  warm=[sys.argv[6]], light=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(swarm.run)
        reported = -1
        while True:
            n = swarm.open_now()
            if n != reported:
                reported = n
                print(f"open {n}", flush=True)
            await trio.sleep(0.2)
            if DEBUG and int(time.time() * 5) % 10 == 0:
                print(time.time(), n, sum(len(c.subs) for c in swarm.cores), swarm.errors,
                      file=sys.stderr, flush=True)

trio.run(main)
"""


def gateway_config(tmp: Path, grace: float) -> Path:
    path = tmp / "gw.toml"
    path.write_text(
        f"[gateway]\nhost = \"127.0.0.1\"\nport = 0\ngrace_s = {grace}\n"
        "[limits]\nconnections_per_user = 20000\nconnections_total = 20000\n"
        "agent_connections_total = 20000\n"
        "submissions_per_s = 100.0\nsubmissions_burst = 100\n"
        "client_queue_frames = 4096\nclient_queue_bytes = 67108864\n"
    )
    return path


class Gateway:
    """A ``mantis-py gateway`` child process."""

    def __init__(self, tmp: Path, grace: float = 2.0) -> None:
        cfg = gateway_config(tmp, grace)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mantis_py", "gateway", "--config", str(cfg),
             "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        self.port = int(line.strip().rsplit(":", 1)[1].rstrip("/"))

    def cpu(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def close(self) -> None:
        stop_process(self.proc, 10)


class SimProcs:
    """Simulator processes that print ``open N`` (agents welcomed) on their stdout."""

    procs: list[subprocess.Popen[str]]

    def _started(self) -> None:
        self.open = [0] * len(self.procs)

    async def wait_open(self, n: int, timeout: float) -> bool:  # noqa: ASYNC109
        """Until ``n`` agents got their welcome (read from the simulators' stdout)."""
        async def follow(i: int, proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None
            while True:
                line = await trio.to_thread.run_sync(proc.stdout.readline, abandon_on_cancel=True)
                if not line:
                    return
                if line.startswith("open "):
                    self.open[i] = int(line.split()[1])

        async with trio.open_nursery() as nursery:
            for i, p in enumerate(self.procs):
                nursery.start_soon(follow, i, p)
            with trio.move_on_after(timeout):
                while sum(self.open) < n:  # noqa: ASYNC110 (fed by reader threads)
                    await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        return sum(self.open) >= n

    def close(self) -> None:
        for p in self.procs:
            p.kill()  # the simulators hold no state worth flushing
        for p in self.procs:
            p.wait()
            if p.stdout is not None:
                p.stdout.close()


class Sims(SimProcs):
    """Lean simulator processes (``bench/sim_agents.py``) holding ``n`` agents in total."""

    def __init__(self, port: int, n: int, per_proc: int, events: int) -> None:
        self.procs = []
        self.tmp = tempfile.TemporaryDirectory(prefix="mantis-sims-")
        first = 0
        while first < n:
            count = min(per_proc, n - first)
            cfg = {"app": "bench", "prefix": f"sim{len(self.procs)}-", "n": count,
                   "urls": [f"ws://127.0.0.1:{port}"], "seed": len(self.procs) + 1,
                   "events": events, "report": True,
                   "out": str(Path(self.tmp.name) / f"sims-{len(self.procs)}.json")}
            self.procs.append(subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "sim_agents.py"), json.dumps(cfg)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
                env=dict(os.environ, PYTHONPATH=str(ROOT))))
            first += count
        self._started()

    def close(self) -> None:
        super().close()
        self.tmp.cleanup()


class SwarmSims(SimProcs):
    """Simulator processes of real agent cores (:mod:`mantis_py.testing.swarm`): the idle
    section, where what a real agent sends while nobody queries (pongs, stats) is the point."""

    def __init__(self, port: int, n: int, per_proc: int, events: int) -> None:
        self.procs = []
        # SIM_STDERR=<file>: the simulators' errors and a progress line every 2 s go there
        self.err = open(os.environ.get("SIM_STDERR", os.devnull), "a")  # noqa: SIM115
        first = 0
        seed = 1
        while first < n:
            count = min(per_proc, n - first)
            self.procs.append(subprocess.Popen(
                [sys.executable, "-c", SIM_SCRIPT, str(port), str(first), str(count),
                 str(events), str(seed), QUERY,
                 *(["debug"] if os.environ.get("SIM_STDERR") else [])],
                stdout=subprocess.PIPE, stderr=self.err, text=True, cwd=ROOT))
            first += count
            seed += 1
        self._started()

    def close(self) -> None:
        super().close()
        self.err.close()


async def run_query(port: int, n: int, seconds: float, gw: Gateway,
                    warmup: float = 90.0) -> tuple[list[tuple[float, dict[str, Any], dict[str, Any]]],
                                                   float, bool]:
    """Submit the query, wait (at most ``warmup`` s) for the first window where all ``n`` agents
    reported (every agent has compiled its subscription), then collect
    ``(receive time, rows, meta)`` for ``seconds``. Returns them, the gateway CPU (cores) over
    the measured period, and whether the warm-up ended with full coverage."""
    out: list[tuple[float, dict[str, Any], dict[str, Any]]] = []
    async with connect(f"ws://127.0.0.1:{port}/v1/query", subprotocols=[SUBPROTOCOL],
                       max_size=1 << 24, ping_interval=None, open_timeout=120) as ws:
        await ws.send(codec.encode(Query("q", QUERY)), text=True)
        pending: tuple[float, dict[str, Any]] | None = None
        warm = False
        c0 = t0 = 0.0
        with trio.move_on_after(warmup):
            async for data in ws:
                msg = json.loads(data)
                if msg["type"] == "meta" and pending is not None:
                    cov = msg["coverage"]
                    if cov.get("reporting") == cov.get("expected") == n:
                        warm = True
                        break
                    pending = None
                elif msg["type"] == "rows" and msg.get("window"):
                    pending = (time.time(), msg)
        c0, t0 = gw.cpu(), time.monotonic()
        pending = None
        with trio.move_on_after(seconds):
            async for data in ws:
                msg = json.loads(data)
                if msg["type"] == "rows" and msg.get("window"):
                    pending = (time.time(), msg)
                elif msg["type"] == "meta" and pending is not None:
                    out.append((pending[0], pending[1], msg))
                    pending = None
                elif msg["type"] in ("error", "complete"):
                    raise RuntimeError(f"query ended: {msg}")
        cpu = (gw.cpu() - c0) / (time.monotonic() - t0)
    return out, cpu, warm


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def bench_idle(tmp: Path, n: int, seconds: float, per_proc: int) -> dict[str, Any]:
    gw = Gateway(tmp)
    try:
        c0, t0 = gw.cpu(), time.monotonic()
        await trio.sleep(seconds)
        empty = (gw.cpu() - c0) / (time.monotonic() - t0)  # CPU seconds per second, no agent
        sims = SwarmSims(gw.port, n, per_proc, events=0)
        try:
            ok = await sims.wait_open(n, timeout=120)
            await trio.sleep(3.0)  # the hello / welcome / first stats burst settles
            c0, t0 = gw.cpu(), time.monotonic()
            await trio.sleep(seconds)
            busy = (gw.cpu() - c0) / (time.monotonic() - t0)
        finally:
            sims.close()
    finally:
        gw.close()
    per_agent_us = (busy - empty) / n * 1e6
    return {"agents": n, "connected": ok, "seconds": seconds,
            "gateway_cpu_empty": round(empty, 4), "gateway_cpu": round(busy, 4),
            "us_per_agent_second": round(per_agent_us, 1), "target_us": 50.0,
            "ok": ok and per_agent_us <= 50.0}


async def bench_scale(tmp: Path, n: int, seconds: float, per_proc: int, events: int,
                      grace: float) -> dict[str, Any]:
    gw = Gateway(tmp, grace=grace)
    try:
        sims = Sims(gw.port, n, per_proc, events=events)
        try:
            ok = await sims.wait_open(n, timeout=180)
            await trio.sleep(2.0)
            windows, cpu, warm = await run_query(gw.port, n, seconds, gw)
        finally:
            sims.close()
    finally:
        gw.close()
    full = sum(1 for _, _, m in windows
               if m["coverage"].get("reporting") == m["coverage"].get("expected") == n)
    exact = sum(1 for _, r, _ in windows if sum(row["n"] for row in r["rows"]) == n * events)
    delays = [t - r["window"][1] for t, r, _ in windows]
    return {
        "agents": n, "connected": ok, "warm": warm, "windows": len(windows),
        "full_coverage": full, "full_coverage_ratio": round(full / len(windows), 3) if windows else 0,
        "target_full_coverage_ratio": 0.95,
        "exact_counts": exact,
        "emission_delay_median_s": round(pct(delays, 0.5), 3),
        "emission_delay_p90_s": round(pct(delays, 0.9), 3), "target_median_s": 1.0,
        "gateway_cpu": round(cpu, 4),
        "us_per_agent_second": round(cpu / n * 1e6, 1),
        "coverage_seen": sorted({f"{m['coverage'].get('reporting')}/{m['coverage'].get('expected')}"
                                 for _, _, m in windows})[:6],
    }


BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


def bench_merge(scales: list[int], windows: int = 3) -> list[dict[str, Any]]:
    """The gateway's merge alone (pure, in this process): N members, one part each per window,
    the merger polled after every part as the gateway did before issue 13 (and still may). CPU
    per part must not grow with N."""
    from mantis_py.query import prepare

    p = prepare(QUERY, mode="live")
    src = p.source(app="bench", instance="x")
    src.start(100.0)
    for n in range(12):
        src.offer({"country": COUNTRIES[n % 6], "latency_ms": (n * 37) % 500}, 100.5)
    part = src.poll(101.0)[0]
    out = []
    for n in scales:
        m = p.merger(start=100.0, grace=5.0)
        add = getattr(m, "add_member", None) or m.add_agent
        for i in range(n):
            add(f"m{i}", 99.0)
        c0 = time.process_time()
        emitted = 0
        for w in range(windows):
            k = 100 + w
            for i in range(n):
                m.receive_part(f"m{i}", {**part, "k": k, "window": [k, k + 1]}, k + 1.2)
                emitted += sum(1 for o in m.poll(k + 1.2) if type(o).__name__ == "Rows")
        cpu = time.process_time() - c0
        out.append({"agents": n, "windows": emitted, "us_per_part": round(cpu / (n * windows) * 1e6, 1),
                    "cpu_s_per_window": round(cpu / windows, 4)})
        out[-1]["ratio_to_smallest"] = round(out[-1]["us_per_part"] / out[0]["us_per_part"], 2)
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    only = set(args.only.split(",")) if args.only else {"merge", "idle", "scale", "cluster"}
    out: dict[str, Any] = {"query": QUERY}
    if "merge" in only:
        out["merge"] = bench_merge([int(x) for x in args.merge_scales.split(",")])
        if not args.json:
            for r in out["merge"]:
                print(f"merge {r['agents']} agents: {r['us_per_part']} us CPU per part "
                      f"(x{r['ratio_to_smallest']} of {out['merge'][0]['agents']} agents; target: "
                      f"flat), {r['cpu_s_per_window']} s per window, {r['windows']} windows",
                      flush=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "idle" in only:
            r = await bench_idle(tmp, args.idle, args.seconds, args.per_proc)
            out["idle"] = r
            if not args.json:
                print(f"idle: {r['agents']} agents: gateway {r['us_per_agent_second']} us CPU per "
                      f"agent-second (target <= {r['target_us']:g}; empty gateway "
                      f"{r['gateway_cpu_empty'] * 100:.1f} % of a core, with agents "
                      f"{r['gateway_cpu'] * 100:.1f} %)", flush=True)
        if "scale" in only:
            rows = []
            for n in [int(x) for x in args.scales.split(",")]:
                r = await bench_scale(tmp, n, args.seconds, args.per_proc, args.events, args.grace)
                rows.append(r)
                base = rows[0]["us_per_agent_second"]
                r["cpu_ratio_to_smallest"] = round(r["us_per_agent_second"] / base, 2) if base else None
                if not args.json:
                    print(f"scale {n} agents: full coverage {r['full_coverage']}/{r['windows']} "
                          f"windows ({r['full_coverage_ratio']:.0%}, target >= 95 %), exact counts "
                          f"{r['exact_counts']}/{r['windows']}; emission after window end median "
                          f"{r['emission_delay_median_s']} s (target <= 1 s), p90 "
                          f"{r['emission_delay_p90_s']} s; gateway {r['gateway_cpu'] * 100:.0f} % "
                          f"of a core = {r['us_per_agent_second']} us per agent-second "
                          f"(x{r['cpu_ratio_to_smallest']} of {rows[0]['agents']} agents; "
                          f"target: flat); coverage seen {r['coverage_seen']}", flush=True)
            out["scale"] = rows
    if "cluster" in only:  # several gateways over NATS: bench/cluster_bench_nats.py
        sys.path.insert(0, BENCH_DIR)
        import cluster_bench_nats

        out["cluster"] = await trio.to_thread.run_sync(
            lambda: cluster_bench_nats.section(failover_agents=args.failover_agents))
        if not args.json:
            cluster_bench_nats.report(out["cluster"])
    return out


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated sections: merge, idle, scale, cluster")
    ap.add_argument("--merge-scales", default="1000,2000,5000",
                    help="member counts for the merge section")
    ap.add_argument("--failover-agents", type=int, default=1000,
                    help="cluster section: agents on the gateway that is killed")
    ap.add_argument("--idle", type=int, default=1000, help="idle agents (default 1000)")
    ap.add_argument("--scales", default="1000,2000,5000", help="agent counts for the scale section")
    ap.add_argument("--seconds", type=float, default=12.0, help="measured seconds per step")
    ap.add_argument("--events", type=int, default=2, help="events per agent per second")
    ap.add_argument("--grace", type=float, default=2.0, help="gateway grace_s")
    ap.add_argument("--per-proc", type=int, default=1700, help="simulated agents per process")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    out = trio.run(main, args)
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    cli()
