"""Real parts for consumer tests: a `mantis-py gateway` subprocess that can be stopped and
started again on the same port, and a real agent publishing in a thread."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from mantis_py.agents import Agent

CONFIG = """
[gateway]
host = "127.0.0.1"
port = {port}
grace_s = 0.5
"""


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5.0,
                 sig: int = signal.SIGTERM) -> None:
    """Ask ``proc`` to stop with ``sig``, wait up to ``timeout`` seconds, then kill it; either way
    it is reaped. Nothing happens to a process that already exited."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    """``mantis-py gateway`` as a child process on a fixed port, restartable."""

    def __init__(self, tmp: Path, port: int | None = None, config: str = CONFIG) -> None:
        self.port = port or free_port()
        self.config = tmp / f"gateway-{self.port}.toml"
        self.config.write_text(config.replace("{port}", str(self.port)))
        self.log = tmp / f"gateway-{self.port}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.listening_at = 0.0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        """Start and wait for its "listening" line (retrying while the port is still taken)."""
        deadline = time.monotonic() + timeout
        while True:
            log: IO[str] = open(self.log, "a")  # noqa: SIM115 - closed when the process ends
            proc = subprocess.Popen(
                [sys.executable, "-m", "mantis_py", "gateway", "--config", str(self.config),
                 "--log-level", "WARNING"],
                stdout=subprocess.PIPE, stderr=log, text=True, env=os.environ.copy())
            assert proc.stdout is not None
            line = proc.stdout.readline()
            log.close()
            if "mantis-py gateway on" in line:
                self.proc = proc
                self.listening_at = time.monotonic()
                return
            proc.wait(5)
            proc.stdout.close()
            if proc.returncode != 1 or time.monotonic() > deadline:  # 1: port still taken
                raise RuntimeError(f"gateway did not start: {self.log.read_text()[-500:]}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10, sig)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


class Publisher(threading.Thread):
    """A real agent of ``app`` publishing ``{"n": i}`` every 10 ms until stopped."""

    def __init__(self, app: str, gateway: str, instance: str = "publisher-1") -> None:
        super().__init__(name=f"publisher-{app}", daemon=True)
        self.agent = Agent(app=app, gateway=gateway, instance=instance)
        self.halt = threading.Event()

    def run(self) -> None:
        self.agent.start()
        i = 0
        while not self.halt.wait(0.01):
            self.agent.publish({"n": i, "event": "play"})
            i += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(5)
        self.agent.close()
