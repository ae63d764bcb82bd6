"""Real processes for the cluster tests: gateways (``mantis-py gateway --cluster``), agent
subprocesses (``agent_proc.py``), a websocket query client on a thread, and the replay engine
over what the agents published."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from mantis_py.testing.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
AGENT_PROC = Path(__file__).with_name("agent_proc.py")


def wait_for(cond: Callable[[], Any], limit: float, step: float = 0.05) -> Any:
    """Poll ``cond`` until it returns something truthy; raise after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {limit} s")
        time.sleep(step)


class GatewayProc:
    """``mantis-py gateway --port 0 --cluster ...`` in a subprocess."""

    def __init__(self, nats: list[str], workdir: Path, name: str, config: str | None = None,
                 cluster_name: str = "t") -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        cmd = [sys.executable, "-m", "mantis_py", "gateway", "--port", "0",
               "--cluster", ",".join(nats), "--cluster-name", cluster_name]
        if config is not None:
            path = workdir / f"{name}.toml"
            path.write_text(config)
            cmd += ["--config", str(path)]
        self._out = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._out, cwd=ROOT,
                                     start_new_session=True)
        self.port = 0

    def wait_ready(self, limit: float = 20.0) -> GatewayProc:
        assert self.proc.stdout is not None
        line = b""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(rb":(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                return self
        raise AssertionError(f"gateway {self.name} did not start: {line!r}, see {self.log}")

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as r:
            return json.loads(r.read())

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        stop_process(self.proc)
        self._out.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_gateways(nats: list[str], workdir: Path, n: int = 3, config: str | None = None,
                   cluster_name: str = "t") -> list[GatewayProc]:
    """``n`` gateways; gateway i lists NATS node i first."""
    gws = [GatewayProc(nats[i % len(nats):] + nats[:i % len(nats)], workdir, f"gw{i + 1}",
                       config, cluster_name) for i in range(n)]
    for gw in gws:
        gw.wait_ready()
    # every gateway has heard every other (heartbeats), so leases and ownership are settled
    wait_for(lambda: all(len(g.get("/healthz")["cluster"]["gateways"]) == n for g in gws), 10)
    return gws


class AgentProc:
    """A subprocess running several agents (``agent_proc.py``)."""

    def __init__(self, workdir: Path, app: str, instances: list[str], gateways: list[str],
                 rate: float = 40.0, seed: int = 1, **extra: Any) -> None:
        self.out = workdir / "agents"
        self.out.mkdir(parents=True, exist_ok=True)
        self.instances = instances
        cfg = {"app": app, "instances": instances, "gateways": gateways, "rate": rate,
               "out": str(self.out), "seed": seed, **extra}  # extra: see agent_proc.py
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self._log = open(workdir / f"agents-{instances[0]}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, str(AGENT_PROC), json.dumps(cfg)],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=ROOT, start_new_session=True)

    def status(self) -> dict[str, Any]:
        out = {}
        for inst in self.instances:
            try:
                out[inst] = json.loads((self.out / f"{inst}.status.json").read_text())
            except (OSError, ValueError):
                out[inst] = {}
        return out

    def events(self) -> list[dict[str, Any]]:
        got = []
        for inst in self.instances:
            path = self.out / f"{inst}.jsonl"
            if path.exists():
                for line in path.read_text().splitlines():
                    if line.endswith("}"):
                        got.append(json.loads(line))
        return got

    def stop(self) -> None:
        stop_process(self.proc, 10)
        self._log.close()


class QueryClient:
    """A websocket client on a thread: submits one query and keeps every message."""

    def __init__(self, ws_url: str, query: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._ws = connect(ws_url + "/v1/query", subprotocols=["mantis.v1"], open_timeout=5,
                           legacy=True)
        self._ws.send(json.dumps({"type": "query", "id": "q", "query": query}))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    data = self._ws.recv(timeout=0.2)
                except TimeoutError:
                    continue
                self.messages.append(json.loads(data))
        except Exception:
            return

    def windows(self) -> list[tuple[tuple[float, float], list[dict[str, Any]], dict[str, Any]]]:
        """(window, rows, coverage) for each windowed ``rows``; coverage ``{}`` when unknown.

        The gateway queues at most one meta per query (a newer one takes the older one's place),
        so when windows leave in a burst a meta may sit after an earlier window than its own.
        A window's coverage is known when a meta directly follows it and the next window also
        has its own meta (or there is no next window)."""
        out = []
        msgs = [m for m in list(self.messages) if m.get("type") in ("rows", "meta")]
        for i, m in enumerate(msgs):
            if m.get("type") != "rows" or m.get("window") is None:
                continue
            cov: dict[str, Any] = {}
            if i + 1 < len(msgs) and msgs[i + 1]["type"] == "meta":
                nxt = next((j for j in range(i + 2, len(msgs)) if msgs[j]["type"] == "rows"), None)
                if nxt is None or (nxt + 1 < len(msgs) and msgs[nxt + 1]["type"] == "meta"):
                    cov = msgs[i + 1].get("coverage") or {}
            out.append((tuple(m["window"]), m["rows"], cov))
        return out

    def rows(self) -> list[dict[str, Any]]:
        return [r for m in list(self.messages) if m.get("type") == "rows" for r in m["rows"]]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        try:
            self._ws.close()
        except Exception:
            pass


def replay_windows(query: str, events: list[dict[str, Any]]) -> dict[tuple[float, float], list[Any]]:
    """The single-node engine ``mantis-py replay`` runs, over every published event in time
    order: window -> rows."""
    from mantis_py.query import prepare
    from mantis_py.query.run.replay import ReplayEngine

    out: dict[tuple[float, float], list[Any]] = {}

    def on_rows(scope: str | None, rows: list[dict[str, Any]]) -> None:
        m = re.match(r"window \[([\d.]+), ([\d.]+)\)", scope or "")
        assert m, scope
        out[(float(m.group(1)), float(m.group(2)))] = list(rows)

    eng = ReplayEngine(prepare(query, mode="replay"), on_rows=on_rows)
    for i, e in enumerate(sorted(events, key=lambda e: e["ts"])):
        eng.feed(e, e["ts"], i + 1)
    eng.finish()
    return out


def canon(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(tuple(sorted(r.items())) for r in rows)


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def make_certs(workdir: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate signed by it,
    plus a second CA that signed nothing here (``openssl`` command line, EC P-256 keys).
    Returns the paths: ca, server_cert, server_key, client_cert, client_key, other_ca."""
    workdir.mkdir(parents=True, exist_ok=True)
    p = {name: workdir / f"{name}.pem" for name in (
        "ca", "ca_key", "server_cert", "server_key", "client_cert", "client_key", "other_ca",
        "other_ca_key")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca, key, cn in (("ca", "ca_key", "mantis test CA"), ("other_ca", "other_ca_key", "other")):
        _openssl("req", "-x509", *ec, "-keyout", p[key], "-out", p[ca], "-days", "1",
                 "-subj", f"/CN={cn}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for who, usage in (("server", "serverAuth"), ("client", "clientAuth")):
        csr = workdir / f"{who}.csr"
        ext = workdir / f"{who}.ext"
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                       f"extendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1\n"
                       "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        _openssl("req", *ec, "-keyout", p[f"{who}_key"], "-out", csr, "-subj", f"/CN={who}")
        _openssl("x509", "-req", "-in", csr, "-CA", p["ca"], "-CAkey", p["ca_key"],
                 "-CAcreateserial", "-out", p[f"{who}_cert"], "-days", "1", "-extfile", ext)
    return p


class NatsServer:
    """One standalone ``nats-server`` with extra arguments (auth, TLS), on a free port."""

    def __init__(self, workdir: Path, *args: str | Path) -> None:
        from mantis_py.testing.nats import free_ports, nats_server_binary

        (self.port,) = free_ports(1)
        self.log = workdir / f"nats-{self.port}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), *map(str, args)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        wait_for(lambda: "Server is ready" in self.log.read_text(), 10)

    def url(self, scheme: str = "nats") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)
