"""The shell of ``mantis-py demo``: a gateway, three simulated services with embedded agents, an
alert, and a running commentary. Everything binds 127.0.0.1 and stops by itself.

Recipe:
1. write a gateway config (``demo_config``) with the plays-per-second alert into a temp dir;
2. start ``mantis-py gateway`` as a child process and wait for ``GET /healthz``;
3. start one thread per service instance (playback x3, edge x2, login x1), each with its own
   ``mantis_py.agents.Agent``, publishing the events of ``traffic.py`` every 100 ms;
4. print the dashboard URL and what to try;
5. every few seconds print plays per second (from a live query through the gateway, so the line
   proves events flow end to end) and any alert state change (from ``GET /v1/alerts``);
6. after ``duration`` seconds or Ctrl-C: close the agents, stop the gateway, print a summary.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from .services import WebServices, start_web_services
from .traffic import SERVICES, Scenario

__all__ = [
    "ALERT_QUERY",
    "INSTANCES",
    "PRESET_QUERY",
    "Stack",
    "demo_config",
    "open_stack",
    "run_demo",
]

PRESET_QUERY = (
    "select country, count(*) as pps from playback where event == 'play' window 1 group by country"
)
ALERT_QUERY = "select count(*) as pps from playback where event == 'play' window 1"
ALERT_NAME = "playback-plays-per-second"
ALERT_CONDITION = "pps < 40"
INSTANCES: tuple[tuple[str, str, float], ...] = (
    # app, instance, share of the app's traffic
    ("playback", "playback-1", 0.40),
    ("playback", "playback-2", 0.35),
    ("playback", "playback-3", 0.25),
    ("edge", "edge-iad", 0.5),
    ("edge", "edge-gru", 0.5),
    ("login", "login-1", 1.0),
)
ZONES = ("us-east-1a", "us-east-1b", "sa-east-1a")
TICK = 0.1


def demo_config(port: int, webhook: str | None = None) -> str:
    """The demo gateway's TOML: host, port and the plays-per-second alert."""
    actions = '[[alerts.actions]]\ntype = "log"\n'
    if webhook:
        actions += f'\n[[alerts.actions]]\ntype = "webhook"\nurl = "{webhook}"\n'
    return f"""# mantis-py demo gateway (written by `mantis-py demo`)
[gateway]
host = "127.0.0.1"
port = {port}
grace_s = 2.0

[[alerts]]
name = "{ALERT_NAME}"
query = "{ALERT_QUERY}"
condition = "{ALERT_CONDITION}"
windows = 3
{actions}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- services


class Service(threading.Thread):
    """One simulated service instance: an agent plus a publishing loop."""

    def __init__(self, app: str, instance: str, share: float, gateway: str, scenario: Scenario,
                 started: float, seed: int, zone: str) -> None:
        super().__init__(name=f"demo-{instance}", daemon=True)
        from ..agents import Agent

        self.app, self.instance, self.share = app, instance, share
        self.scenario, self.started = scenario, started
        self.rng = random.Random(seed)
        self.generate = SERVICES[app]
        self.stop_event = threading.Event()
        self.published = 0
        self.agent = Agent(app=app, gateway=gateway, instance=instance, mask=("password",),
                           tags={"zone": zone})

    def run(self) -> None:
        self.agent.start()
        last = time.time() - self.started
        while not self.stop_event.wait(TICK):
            now = time.time() - self.started
            for event in self.generate(last, now - last, self.share, self.rng, self.scenario):
                self.agent.publish(event)
                self.published += 1
            last = now

    def stop(self) -> None:
        """Stop publishing and close the agent (idempotent)."""
        if self.stop_event.is_set():
            return
        self.stop_event.set()
        if self.is_alive():
            self.join(2)
        self.agent.close()


# --------------------------------------------------------------------------- gateway


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: ask the kernel to SIGTERM this (child) process when its parent dies, whatever
    killed the parent (SIGKILL included). Elsewhere the child's parent watch does the job."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def start_gateway(config_path: Path, port: int, log: BinaryIO,
                  workdir: Path | None = None) -> subprocess.Popen[bytes]:
    """The gateway child. It dies with the demo: the kernel signals it when the demo dies
    (``PR_SET_PDEATHSIG`` on Linux) and it also watches the demo's pid itself (every platform);
    then it removes the demo's temporary directory ``workdir``."""
    cmd = [sys.executable, "-m", "mantis_py", "gateway", "--host", "127.0.0.1", "--port",
           str(port), "--config", str(config_path), "--parent-pid", str(os.getpid())]
    if workdir is not None:
        cmd += ["--remove-on-exit", str(workdir)]
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=preexec)


def port_in_use(port: int) -> bool:
    """True when something already listens on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_healthy(port: int, proc: subprocess.Popen[bytes], limit: float = 20.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if http_get(port, "/healthz", 1.0)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def stop_gateway(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --------------------------------------------------------------------------- commentary


class PlaysWatcher(threading.Thread):
    """Runs the preset query through the gateway and keeps the latest window's rows."""

    def __init__(self, port: int) -> None:
        super().__init__(name="demo-watch", daemon=True)
        self.port = port
        self.latest: list[dict[str, Any]] = []
        self.windows = 0
        self.error: str | None = None
        self.stop_event = threading.Event()

    def run(self) -> None:
        from websockets.sync.client import connect

        while not self.stop_event.is_set():
            try:
                with connect(f"ws://127.0.0.1:{self.port}/v1/query", open_timeout=5) as ws:
                    ws.send(json.dumps({"type": "query", "id": "demo", "query": PRESET_QUERY}))
                    while not self.stop_event.is_set():
                        try:
                            msg = json.loads(ws.recv(timeout=0.5))
                        except TimeoutError:
                            continue
                        if msg.get("type") == "rows" and msg.get("window") is not None:
                            self.latest = list(msg.get("rows") or [])
                            self.windows += 1
                            self.error = None
                        elif msg.get("type") in ("error", "complete"):
                            err = msg.get("error") or {}
                            self.error = str(err.get("message") or msg.get("reason"))
                            break
            except Exception as exc:
                self.error = str(exc) or type(exc).__name__
            self.stop_event.wait(1.0)


def _summary_line(t: float, watcher: PlaysWatcher, alert_state: str) -> str:
    rows = sorted(watcher.latest, key=lambda r: -(r.get("pps") or 0))
    total = sum(r.get("pps") or 0 for r in rows)
    top = ", ".join(f"{r.get('country')} {r.get('pps')}" for r in rows[:4])
    plays = f"plays/s {total:>4} ({top})" if rows else f"plays/s: waiting ({watcher.error or 'first window'})"
    return f"[t+{t:4.0f}s] {plays} · alert {alert_state}"


def _banner(port: int, duration: float, scenario: Scenario, out: TextIO) -> None:
    url = f"http://127.0.0.1:{port}/"
    preset = f"{url}?preset=plays"
    length = f"{duration / 60:g} min" if duration >= 60 and duration % 60 == 0 else f"{duration:g} s"
    out.write(f"""
  mantis_py demo is running for {length} (Ctrl-C stops it earlier)

  Dashboard   {preset}
              (plays per second by country; {url} for an empty query box)

  Three services publish events through embedded agents:
    playback (3 instances): play/pause/stop/error with country, device, title, bitrate, latency_ms, status
    edge     (2 instances): cache HIT/MISS, pop, bytes, latency_ms, status
    login    (1 instance):  result, method, country, latency_ms (password is masked by the agent)

  What to try
    1. Open the dashboard: plays per second by country, one line per country. The other
       presets are at the top right; type your own query in the box (Ctrl+Enter runs it).
    2. At t+{scenario.outage_at:g}s the playback API fails for {scenario.outage_for:g}s: plays collapse and the
       alert "{ALERT_NAME}" ({ALERT_CONDITION} for 3 windows) fires, then resolves.
    3. In another terminal:
         .venv/bin/mantis-py query --gateway ws://127.0.0.1:{port} "{PRESET_QUERY}"
         .venv/bin/mantis-py query --gateway ws://127.0.0.1:{port} --json "select status, latency_ms, title from playback where status >= 500"
         curl -s http://127.0.0.1:{port}/v1/alerts

""")
    out.flush()


@dataclass
class Stack:
    """A running gateway (child process) and simulated services (agent threads)."""

    port: int
    proc: subprocess.Popen[bytes]
    services: list[Service]
    log_path: Path
    started: float
    web: Any = None  # the real web services and their traffic (services.WebServices), if running

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def wait_apps(self, apps: tuple[str, ...] = ("playback", "edge", "login"), limit: float = 20.0) -> None:
        """Wait until every service instance of ``apps`` is connected (``GET /v1/apps``)."""
        want = {s.instance for s in self.services if s.app in apps}
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                status, body = http_get(self.port, "/v1/apps", 1.0)
                inventory = json.loads(body).get("apps", {}) if status == 200 else {}
                have = {str(i.get("instance")) for entry in inventory.values()
                        for i in entry.get("instances", [])}
                if want <= have:
                    return
            except (OSError, ValueError, AttributeError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"no agents of {', '.join(apps)} connected within {limit:g} s")

    def stop_services(self, app: str | None = None) -> None:
        """Stop (and disconnect) the services of ``app``, or all of them."""
        for svc in self.services:
            if app is None or svc.app == app:
                svc.stop()

    def statistics(self) -> tuple[int, int]:
        """(events published by the services, events a live query kept at the agents)."""
        published = sum(s.published for s in self.services)
        matched = 0
        for s in self.services:
            try:
                matched += int(s.agent.statistics().matched)
            except Exception:  # statistics are commentary; never fail the demo over them
                pass
        return published, matched


@contextmanager
def open_stack(
    port: int = 0,
    *,
    config: str | None = None,
    scenario: Scenario | None = None,
    instances: tuple[tuple[str, str, float], ...] = INSTANCES,
) -> Iterator[Stack]:
    """Start a gateway and the simulated services; stop everything on exit.

    Args:
        port: the gateway port; 0 picks a free one.
        config: the gateway TOML (``{port}`` is substituted); default ``demo_config(port)``.
        scenario: when the playback outage happens.
        instances: which service instances to run.

    Raises:
        RuntimeError: the gateway did not become healthy (the message ends with its log).
    """
    scenario = scenario or Scenario()
    if port and port_in_use(port):
        raise RuntimeError(f"port {port} is already in use (another gateway or demo running?); "
                           "stop it or pass --port")
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="mantis-demo-"))
    try:
        with _stack_in(workdir, port, config, scenario, instances) as stack:
            yield stack
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def _stack_in(workdir: Path, port: int, config: str | None, scenario: Scenario,
              instances: tuple[tuple[str, str, float], ...]) -> Iterator[Stack]:
    config_path = workdir / "gateway.toml"
    config_path.write_text(demo_config(port) if config is None else config.replace("{port}", str(port)))
    log_path = workdir / "gateway.log"
    services: list[Any] = []
    web: WebServices | None = None
    with open(log_path, "wb") as log:
        proc = start_gateway(config_path, port, log, workdir)
        try:
            if not wait_healthy(port, proc):
                tail = _tail(log_path)
                if "already in use" in tail:
                    raise RuntimeError(f"port {port} is already in use (another gateway or demo "
                                       "running?); stop it or pass --port")
                raise RuntimeError(
                    f"the gateway did not start on port {port}; see {log_path}:\n{tail}"
                )
            # Build the query engine's lazy tables once, before six agent threads may compile the
            # same query at the same instant (the parser's first use is not thread-safe yet).
            from ..query import prepare

            prepare(ALERT_QUERY, mode="live", apps=None)
            started = time.time()
            gateway_url = f"ws://127.0.0.1:{port}"
            # Real web services driven by real HTTP (services.py); without the demo extra,
            # the simulated services publish the same events.
            web = start_web_services(instances, gateway_url, scenario, started, ZONES)
            if web is not None:
                services.extend(web.services)
            for i, (app, instance, share) in enumerate(() if web is not None else instances):
                svc = Service(app, instance, share, gateway_url, scenario, started, seed=i,
                              zone=ZONES[i % len(ZONES)])
                services.append(svc)
                svc.start()
            yield Stack(port, proc, services, log_path, started, web)
        finally:
            if web is not None:
                web.stop()
            for svc in services:
                svc.stop()
            stop_gateway(proc)


def run_demo(
    port: int = 7100,
    duration: float = 600.0,
    *,
    scenario: Scenario | None = None,
    out: TextIO = sys.stdout,
    status_every: float = 5.0,
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Run the demo; returns the exit code. ``port`` 0 picks a free port."""
    scenario = scenario or Scenario()
    watcher: PlaysWatcher | None = None
    stack: Stack | None = None
    previous = _terminate_as_interrupt()
    try:
        with open_stack(port, scenario=scenario) as stack:
            _banner(stack.port, duration, scenario, out)
            if stack.web is not None:
                out.write(stack.web.banner())
            out.write(f"  gateway log: {stack.log_path}\n\n")
            watcher = PlaysWatcher(stack.port)
            watcher.start()
            try:
                return _commentate(stack.port, stack.started, duration, scenario, watcher, out,
                                   status_every, stop, gateway_gone=lambda: _gone(stack))
            finally:
                watcher.stop_event.set()
                stack.stop_services()
    except KeyboardInterrupt:
        out.write("\nmantis-py demo: stopping\n")
        return 0
    except RuntimeError as exc:
        out.write(f"mantis-py demo: {exc}\n")
        return 1
    finally:
        _restore(previous)
        if stack is not None:
            published, matched = stack.statistics()
            out.write(f"mantis-py demo: stopped; services published {published} events, "
                      f"agents matched {matched} for live queries\n")
            out.flush()


def _gone(stack: Stack) -> str | None:
    """Why the gateway child is gone, or None while it runs."""
    code = stack.proc.poll()
    if code is None:
        return None
    return (f"the gateway (pid {stack.proc.pid}) exited with code {code}; "
            f"its log: {stack.log_path}\n{_tail(stack.log_path, 5)}")


def _terminate_as_interrupt() -> Any:
    """SIGTERM stops the demo like Ctrl-C (services closed, gateway stopped, temp dir removed)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _restore(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _commentate(port: int, started: float, duration: float, scenario: Scenario,
                watcher: PlaysWatcher, out: TextIO,
                status_every: float, stop: Callable[[], bool],
                gateway_gone: Callable[[], str | None] = lambda: None) -> int:
    last_state: dict[str, str] = {}
    phase = "normal"
    next_status = started + min(status_every, 3.0)
    state = "?"
    while True:
        now = time.time()
        t = now - started
        if t >= duration or stop():
            return 0
        why = gateway_gone()
        if why is not None:  # never print stale numbers as if live
            out.write(f"[t+{t:4.0f}s] mantis-py demo: {why}\n")
            out.flush()
            return 1
        new_phase = scenario.phase(t)
        if new_phase != phase:
            phase = new_phase
            what = ("outage begins: the playback API fails (503s), plays collapse"
                    if phase == "outage" else "outage over: the playback API recovers")
            out.write(f"[t+{t:4.0f}s] >>> {what}\n")
        try:
            status, body = http_get(port, "/v1/alerts", 1.0)
            alerts = json.loads(body).get("alerts", []) if status == 200 else []
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            alerts = []
        for a in alerts:
            name, st = a.get("name"), a.get("state")
            if name == ALERT_NAME:
                state = st
            if last_state.get(name) != st:
                if name in last_state:
                    out.write(f"[t+{t:4.0f}s] *** alert {name}: {last_state[name]} -> {st} "
                              f"({a.get('reason', '')})\n")
                last_state[name] = st
        if now >= next_status:
            out.write(_summary_line(t, watcher, state) + "\n")
            next_status = now + status_every
        out.flush()
        time.sleep(min(0.5, max(0.05, duration - t)))


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(True)[-lines:])
    except OSError:
        return ""


