"""`mantis-py demo` as a process: its gateway child dies with it (SIGKILL of the parent
included), it notices a dead gateway, refuses a busy port with one line and removes its temporary
directory on every exit path."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mantis_py.testing.processes import GatewayProcess

pytestmark = pytest.mark.timeout(120)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def _start_demo(tmp_path: Path) -> tuple[subprocess.Popen[str], int, Path]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    demo = subprocess.Popen([sys.executable, "-m", "mantis_py", "demo", "--port", "0", "--for", "60s"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert demo.stdout is not None
    seen = ""
    while "gateway log:" not in seen:
        line = demo.stdout.readline()
        assert line, seen
        seen += line
    workdir = Path(re.search(r"gateway log: (\S+)", seen).group(1)).parent  # type: ignore[union-attr]
    children = _children(demo.pid)
    assert len(children) == 1
    return demo, children[0], workdir


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_the_demo_leaves_no_process_behind(tmp_path: Path) -> None:
    demo, gateway_pid, workdir = _start_demo(tmp_path)
    assert workdir.exists()
    os.kill(demo.pid, signal.SIGKILL)
    demo.wait(5)
    killed = time.monotonic()
    while _alive(gateway_pid) and time.monotonic() - killed < 10:
        time.sleep(0.05)
    gone_after = time.monotonic() - killed
    print(f"gateway child gone {gone_after:.2f} s after kill -9 of the demo")
    assert not _alive(gateway_pid)
    assert gone_after < 2.0  # the bound; PDEATHSIG makes this immediate
    deadline = time.monotonic() + 5
    while workdir.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not workdir.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_demo_exits_non_zero_when_its_gateway_dies(tmp_path: Path) -> None:
    demo, gateway_pid, workdir = _start_demo(tmp_path)
    os.kill(gateway_pid, signal.SIGKILL)
    out, _ = demo.communicate(timeout=30)
    assert demo.returncode == 1, out
    assert f"the gateway (pid {gateway_pid}) exited" in out
    assert not workdir.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_of_the_demo_stops_everything_and_removes_the_temp_dir(tmp_path: Path) -> None:
    demo, gateway_pid, workdir = _start_demo(tmp_path)
    demo.terminate()
    demo.communicate(timeout=30)
    assert demo.returncode == 0
    assert not _alive(gateway_pid)
    assert not workdir.exists()


def test_the_demo_refuses_a_busy_port_with_one_line(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path)
    gw.start()
    try:
        result = subprocess.run([sys.executable, "-m", "mantis_py", "demo", "--port", str(gw.port),
                                 "--for", "5s"], capture_output=True, text=True, timeout=60)
    finally:
        gw.stop()
    assert result.returncode == 1
    assert result.stdout.strip().count("\n") == 0, result.stdout
    assert "already in use" in result.stdout
    assert "Dashboard" not in result.stdout
