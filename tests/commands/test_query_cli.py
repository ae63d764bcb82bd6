"""`mantis-py query` (mantis_py/commands/query.py): pure helpers, then the real command as a
subprocess against a real gateway with real agents, in JSON mode and in a pseudo terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from mantis_py.commands.query import format_error, gateway_url, parse_duration
from mantis_py.demo.runner import Stack, open_stack

pytestmark = pytest.mark.timeout(90)

PPS = "select country, count(*) as pps from playback where event == 'play' window 1 group by country"
CONFIG = """
[gateway]
host = "127.0.0.1"
port = {port}
grace_s = 1.0
"""


def mantis(*args: str, timeout: float = 30, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mantis_py", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with open_stack(0, config=CONFIG) as s:
        s.wait_apps()
        yield s


# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("500ms", 0.5), ("1.5s", 1.5), ("10", 10.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "-1s", "3y", "abc"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("127.0.0.1:7100", "ws://127.0.0.1:7100/v1/query"),
        ("http://gw:80", "ws://gw:80/v1/query"),
        ("https://gw", "wss://gw/v1/query"),
        ("ws://gw:7100/", "ws://gw:7100/v1/query"),
        ("ws://gw:7100/v1/query", "ws://gw:7100/v1/query"),
    ],
)
def test_gateway_urls(given: str, url: str) -> None:
    assert gateway_url(given) == url


def test_error_shows_snippet_with_caret_and_suggestion() -> None:
    text = format_error({
        "kind": "syntax", "code": "E102", "message": "expected FROM, found 'form'", "line": 1,
        "column": 10, "length": 4, "snippet": "select a form playback\n         ^^^^",
        "suggestion": "FROM", "hint": None,
    })
    assert text.splitlines() == [
        "E102 syntax error at line 1, column 10: expected FROM, found 'form'",
        "  select a form playback",
        "           ^^^^",
        "  did you mean: FROM",
    ]


def test_unreachable_gateway_is_one_line_exit_1() -> None:
    result = mantis("query", "select * from playback", "--gateway", "ws://127.0.0.1:9", "--json")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "cannot reach the gateway" in result.stderr
    assert "Traceback" not in result.stderr


def test_gateway_from_environment() -> None:
    result = mantis("query", "select * from playback", env={"MANTIS_GATEWAY": "127.0.0.1:9"})
    assert "ws://127.0.0.1:9/v1/query" in result.stderr


# --------------------------------------------------------------------------- against a gateway


def test_json_mode_prints_one_row_per_line(stack: Stack) -> None:
    result = mantis("query", "--gateway", f"ws://127.0.0.1:{stack.port}", "--json", "--for", "4s",
                    "select count(*) as plays from playback where event == 'play' window 1")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows, result.stderr
    assert all(set(r) == {"plays"} and r["plays"] > 0 for r in rows)


def test_json_mode_streams_raw_rows(stack: Stack) -> None:
    result = mantis("query", "--gateway", f"127.0.0.1:{stack.port}", "--json", "--for", "2s",
                    "select country, status from playback where event == 'play'")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) > 10
    assert all(r["status"] == 200 for r in rows)


def test_limit_completes_the_query(stack: Stack) -> None:
    result = mantis("query", "--gateway", f"127.0.0.1:{stack.port}", "--json",
                    "select country from playback where event == 'play' limit 3")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3
    assert "complete" in result.stderr


def test_bad_query_prints_the_error_with_a_caret(stack: Stack) -> None:
    result = mantis("query", "--gateway", f"127.0.0.1:{stack.port}", "--json",
                    "select country form playback")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert "line 1, column 16" in lines[0]
    assert lines[1] == "  select country form playback"
    assert lines[2] == "  " + " " * 15 + "^^^^"
    assert "Traceback" not in result.stderr


def test_live_table_in_a_pseudo_terminal_exits_on_ctrl_c(stack: Stack) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command on a terminal
        os.environ["COLUMNS"], os.environ["LINES"] = "120", "40"
        os.execv(sys.executable, [sys.executable, "-m", "mantis_py", "query", "--gateway",
                                  f"127.0.0.1:{stack.port}", PPS])
    output = b""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (b"pps" in output and b"coverage" in output
                                                   and b"US" in output):
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    output += os.read(fd, 65536)
                except OSError:
                    break
        assert b"pps" in output, output[-2000:]
        assert b"coverage" in output
        os.write(fd, b"\x03")  # Ctrl-C, through the terminal's line discipline
        status = None
        deadline = time.monotonic() + 10
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
        assert status is not None, "did not exit on Ctrl-C"
        assert os.WIFEXITED(status)
        assert os.WEXITSTATUS(status) == 0
        assert b"Traceback" not in output
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
