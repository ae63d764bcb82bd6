"""Issue 11's commands against real gateways (subprocesses) and real agents: `query --json`
across a gateway restart, `record` then `replay` equal to the live query window by window, a busy
port, token flags that start with "-", and caret errors of `replay`/`check` on a terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mantis_py.cli import build_parser, join_flag_values
from mantis_py.testing.processes import GatewayProcess, Publisher

pytestmark = pytest.mark.timeout(120)

COUNT = "select count(*) as n from play window 1"


def mantis(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mantis_py", *args], capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy())


def test_query_json_keeps_running_across_a_gateway_restart(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path)
    gw.start()
    pub = Publisher("play", gw.url)
    pub.start()
    out = tmp_path / "out.jsonl"
    try:
        with open(out, "w") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mantis_py", "query", "--gateway", gw.url, "--json",
                 "--for", "20s", COUNT], stdout=sink, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and '"n"' not in out.read_text():
                time.sleep(0.1)
            assert '"n"' in out.read_text()
            gw.stop()
            time.sleep(1.0)
            gw.start()
            _, err = proc.communicate(timeout=40)
        assert proc.returncode == 0, err
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        kinds = ["reconnecting" if line.get("type") == "reconnecting" else "row" for line in lines]
        first_reconnect = kinds.index("reconnecting")
        assert "row" in kinds[first_reconnect:], "no rows after the restart"
        after = [r for r in lines[first_reconnect:] if "n" in r]
        assert any(r["n"] > 0 for r in after)
        assert "Traceback" not in err
    finally:
        pub.stop()
        gw.stop()


def test_record_then_replay_equals_the_live_query_window_by_window(tmp_path: Path) -> None:
    from mantis_py.client import Rows, query

    gw = GatewayProcess(tmp_path)
    gw.start()
    pub = Publisher("play", gw.url)
    pub.start()
    recording = tmp_path / "events.jsonl"
    live: dict[int, tuple[int, int]] = {}
    try:
        time.sleep(1.0)  # the agent is connected: both sides see the same traffic
        record = subprocess.Popen(
            [sys.executable, "-m", "mantis_py", "record", "select * from play", "--output",
             str(recording), "--for", "8s", "--gateway", gw.url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        frames = query("select count(*) as n, sum(n) as total from play window 1", gw.url,
                       idle_s=0.2)
        stop = time.monotonic() + 10
        for frame in frames:
            if time.monotonic() > stop:
                break
            if isinstance(frame, Rows) and frame.window is not None and frame.rows:
                start = frame.window[0]
                live[int(start // 1000 if start > 1e11 else start)] = (
                    frame.rows[0]["n"], frame.rows[0]["total"])
        frames.close()  # type: ignore[attr-defined]
        _, record_err = record.communicate(timeout=30)
    finally:
        pub.stop()
        gw.stop()
    assert record.returncode == 0, record_err
    events = [json.loads(line) for line in recording.read_text().splitlines()]
    assert events
    assert all(isinstance(e["ts"], float) and 1e9 < e["ts"] < 1e11 for e in events)  # seconds
    replayed = mantis("replay", "select count(*) as n, sum(n) as total, tick() as t from stream "
                      "window 1", "--input", str(recording), "--time-field", "ts")
    assert replayed.returncode == 0, replayed.stderr
    replay = {row["t"] // 1000: (row["n"], row["total"])
              for row in map(json.loads, replayed.stdout.splitlines())}
    # Windows the recording covers completely: an event before the window began and one after
    # it ended (the two sides start a moment apart, so the edge windows are partial).
    first, last = min(e["ts"] for e in events), max(e["ts"] for e in events)
    both = [w for w in sorted(live) if first < w and w + 1 < last]
    assert len(both) >= 4, (sorted(live), first, last)
    assert [live[w] for w in both] == [replay.get(w) for w in both]


def test_gateway_on_a_busy_port_prints_one_line_and_exits_1(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path)
    gw.start()
    try:
        result = mantis("gateway", "--port", str(gw.port))
    finally:
        gw.stop()
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "already in use" in result.stderr


@pytest.mark.parametrize("argv", [["--token", "-abc"], ["--token=-abc"]])
def test_token_values_may_start_with_a_dash(argv: list[str]) -> None:
    args = build_parser().parse_args(join_flag_values(["query", *argv, "select * from a"]))
    assert args.token == "-abc"
    assert args.query == "select * from a"


def test_a_dash_token_authenticates_end_to_end(tmp_path: Path) -> None:
    config = ('[gateway]\nhost = "127.0.0.1"\nport = {port}\n\n[[tokens]]\nuser = "ops"\n'
              'token = "-abc"\nread = ["*"]\nroles = ["client", "agent"]\n')
    gw = GatewayProcess(tmp_path, config=config)
    gw.start()
    try:
        result = mantis("query", "--gateway", gw.url, "--token", "-abc", "--json", "--for", "2s",
                        COUNT)
    finally:
        gw.stop()
    assert result.returncode == 0, result.stderr


def _on_a_terminal(*args: str) -> tuple[int, str]:
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "mantis_py", *args])
    output = b""
    deadline = time.monotonic() + 30
    status = 0
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                output += os.read(fd, 65536)
            except OSError:
                pass
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
    try:
        output += os.read(fd, 65536)
    except OSError:
        pass
    os.close(fd)
    return os.WEXITSTATUS(status), output.decode(errors="replace")


@pytest.mark.parametrize("command", [["check"], ["replay", "--input", "-"]])
def test_replay_and_check_show_the_caret_on_a_terminal(command: list[str]) -> None:
    code, text = _on_a_terminal(command[0], "select a form stream", *command[1:])
    assert code == 2
    assert "line 1, column 10" in text
    assert "^^^^" in text
    assert '"code"' not in text


def test_replay_and_check_write_json_when_not_a_terminal() -> None:
    result = mantis("check", "select a form stream")
    assert result.returncode == 2
    assert json.loads(result.stderr)["column"] == 10


def test_the_live_table_says_reconnecting_then_shows_data_again(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path)
    gw.start()
    pub = Publisher("play", gw.url)
    pub.start()
    pid, fd = pty.fork()
    if pid == 0:  # the command on a terminal
        os.environ["COLUMNS"], os.environ["LINES"] = "120", "40"
        os.execv(sys.executable, [sys.executable, "-m", "mantis_py", "query", "--gateway", gw.url,
                                  "--for", "25s", COUNT])
    output = b""

    def read_until(needle: bytes, limit: float = 30) -> bool:
        nonlocal output
        start = len(output)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    output += os.read(fd, 65536)
                except OSError:
                    return False
            if needle in output[start:]:
                return True
        return False

    try:
        assert read_until(b"coverage"), output[-2000:]
        gw.stop()
        assert read_until("reconnecting…".encode()), output[-2000:]
        gw.start()
        assert read_until(b"coverage 1/1"), output[-2000:]
        assert b"Traceback" not in output
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
        pub.stop()
        gw.stop()
