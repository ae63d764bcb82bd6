"""Agent fail-over over a gateway list: two real gateways in subprocesses, the one the agent uses
is killed with SIGKILL, the agent moves to the other and events flow there; the trio runner
skips a dead address of its list."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio
from websockets.sync.client import connect

from mantis_py.agents import Agent, open_agent
from mantis_py.agents.sync import GatewayList, agent_urls
from mantis_py.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]


class GatewayProc:
    """A ``mantis-py gateway`` subprocess on a free port."""

    def __init__(self, tmp: Path, name: str) -> None:
        cfg = tmp / f"{name}.toml"
        cfg.write_text('[gateway]\nhost = "127.0.0.1"\nport = 0\ngrace_s = 1.0\n')
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mantis_py", "gateway", "--config", str(cfg),
             "--log-level", "ERROR"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.port = int(line.strip().rsplit(":", 1)[1].rstrip("/"))
        self.url = f"ws://127.0.0.1:{self.port}"

    def instances(self, app: str) -> list[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/apps", timeout=5) as r:
            apps = json.loads(r.read())["apps"]
        return [i["instance"] for i in apps.get(app, {}).get("instances", [])]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def wait(pred: Any, timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if pred():
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("seed", [1, 2])
def test_agent_moves_to_the_other_gateway_when_its_gateway_is_killed(tmp_path: Path,
                                                                     seed: int) -> None:
    gws = [GatewayProc(tmp_path, "a"), GatewayProc(tmp_path, "b")]
    agent = Agent(app="fo", gateway=[g.url for g in gws], instance="fo-1", cpu_budget=1.0,
                  rng=random.Random(seed))
    try:
        agent.start()
        assert wait(lambda: any("fo-1" in g.instances("fo") for g in gws))
        first = next(g for g in gws if "fo-1" in g.instances("fo"))
        other = gws[1 - gws.index(first)]
        assert "fo-1" not in other.instances("fo")  # sticky: one gateway at a time
        first.kill()
        assert wait(lambda: "fo-1" in other.instances("fo"))
        assert agent.url == other.url + "/v1/agent"
        with connect(other.url + "/v1/query", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "query", "id": "q", "query": "select n from fo"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "accepted"
            got: list[int] = []
            deadline = time.monotonic() + 15
            n = 0
            while not got and time.monotonic() < deadline:
                agent.publish({"n": n})
                n += 1
                try:
                    msg = json.loads(ws.recv(timeout=0.1))
                except TimeoutError:
                    continue
                if msg["type"] == "rows":
                    got.extend(r["n"] for r in msg["rows"])
            assert got
            assert all(0 <= v < n for v in got)
    finally:
        agent.close()
        for g in gws:
            g.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_trio_agent_skips_a_dead_address(tmp_path: Path) -> None:
    gw = GatewayProc(tmp_path, "live")
    dead = f"ws://127.0.0.1:{free_port()}"  # nobody listens there
    try:
        with trio.fail_after(20):
            # rng 0 starts on index 1 of [live, dead]: the dead one first, then the live one
            assert random.Random(0).randrange(2) == 1
            async with open_agent(app="fo2", gateway=[gw.url, dead], instance="t-1",
                                  rng=random.Random(0)) as agent:
                while "t-1" not in await trio.to_thread.run_sync(gw.instances, "fo2"):  # noqa: ASYNC110
                    await trio.sleep(0.05)
                assert agent.url == gw.url + "/v1/agent"
                assert agent.statistics().connects == 1  # the live gateway on the first retry
    finally:
        gw.kill()


def test_gateway_list_random_start_sticky_then_next() -> None:
    urls = agent_urls(["ws://a:1", "ws://b:2", "ws://c:3"])
    assert urls == ["ws://a:1/v1/agent", "ws://b:2/v1/agent", "ws://c:3/v1/agent"]
    starts = {GatewayList(urls, random.Random(s)).index for s in range(40)}
    assert starts == {0, 1, 2}  # a fleet spreads over the list
    gl = GatewayList(urls, random.Random(3))
    first = gl.index
    assert gl.current == urls[first]
    gl.failed()
    assert gl.current == urls[(first + 1) % 3]
    with pytest.raises(ConfigurationError):
        agent_urls([])
    with pytest.raises(ConfigurationError):
        agent_urls(["http://x:1"])
