"""The agent inside real host processes: fork(), interpreter exit, asyncio and trio loop lag."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from mantis_py.testing.server import ThreadedTestGateway

pytestmark = [pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
              pytest.mark.serial]  # event-loop lag against its own baseline: run alone


@pytest.fixture
def gateway() -> Iterator[ThreadedTestGateway]:
    with ThreadedTestGateway(heartbeat_s=0.3) as gw:
        gw.subscribe("s1", "select who, i from app")
        yield gw


def run_script(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


FORK = """
    import os, sys, time, threading
    from mantis_py.agents import Agent
    agent = Agent("app", sys.argv[1], reconnect_min_s=0.05, reconnect_max_s=0.2).start()
    def wait(pred, t=10):
        end = time.monotonic() + t
        while time.monotonic() < end and not pred():
            time.sleep(0.01)
        return pred()
    assert wait(agent.has_subscribers)
    pid = os.fork()
    who = "child" if pid == 0 else "parent"
    if pid == 0:
        # the child's agent restarted itself: its own thread, its own link
        assert wait(agent.has_subscribers), "child never resubscribed"
        names = [t.name for t in threading.enumerate()]
        assert "mantis-agent" in names, names
    for i in range(5):
        agent.publish({"who": who, "i": i})
    assert wait(lambda: agent.statistics().streams["default"].sent == 5), agent.statistics()
    agent.close()
    if pid == 0:
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print("child-status", status)
"""


def test_fork_child_restarts_its_agent(gateway: ThreadedTestGateway) -> None:
    r = run_script(FORK, gateway.url)
    assert r.returncode == 0, r.stderr
    assert "child-status 0" in r.stdout
    assert gateway.wait_for(lambda: len(gateway.records("s1")) == 10)
    whos = sorted(rec["e"]["who"] for rec in gateway.records("s1"))
    assert whos == ["child"] * 5 + ["parent"] * 5
    hellos = [m for m in gateway.received() if m.type == "hello"]
    assert len({h.pid for h in hellos}) == 2  # type: ignore[union-attr]


EXIT = """
    import sys, time
    from mantis_py.agents import Agent
    agent = Agent("app", sys.argv[1], reconnect_min_s=0.05).start()
    end = time.monotonic() + 10
    while not agent.has_subscribers() and time.monotonic() < end:
        time.sleep(0.01)
    for i in range(50000):
        agent.publish({"i": i, "pad": "x" * 1000})
    print("exiting", time.time(), flush=True)
    # no close(): interpreter exit must not wait for the agent for more than 1 s
"""


@pytest.mark.parametrize("mode", ["normal", "no_read"])
def test_interpreter_exit_is_never_delayed_by_more_than_a_second(mode: str) -> None:
    with ThreadedTestGateway(heartbeat_s=0.3, read_mode=mode) as gw:
        gw.subscribe("s1", "select * from app")
        p = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(EXIT), gw.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.startswith("exiting"), p.stderr.read() if p.stderr else ""
        p.wait(10)
        lag = time.time() - float(line.split()[1])
        assert p.returncode == 0
        assert lag < 1.5  # 1 s budget + process teardown on a loaded machine


LAG = """
    import sys, time, statistics, json
    mode, url, with_agent = sys.argv[1], sys.argv[2], sys.argv[3] == "1"

    def measure_sync(sleep, now):
        lags = []
        for _ in range(300):
            t0 = now()
            yield sleep(0.002)
            lags.append(now() - t0 - 0.002)
        return lags

    def publisher_events():
        return {"i": 1, "country": "BR", "pad": "x" * 200}

    if mode == "asyncio":
        import asyncio
        async def main():
            agent = None
            if with_agent:
                from mantis_py.agents import Agent
                agent = Agent("app", url).start()
                while not agent.has_subscribers():
                    await asyncio.sleep(0.01)
            lags = []
            for _ in range(300):
                for _ in range(20):
                    if agent: agent.publish(publisher_events())
                t0 = time.perf_counter()
                await asyncio.sleep(0.002)
                lags.append(time.perf_counter() - t0 - 0.002)
            if agent: agent.close()
            return lags
        lags = asyncio.run(main())
    else:
        import trio
        async def main():
            lags = []
            async def body(agent):
                for _ in range(300):
                    for _ in range(20):
                        if agent: agent.publish(publisher_events())
                    t0 = time.perf_counter()
                    await trio.sleep(0.002)
                    lags.append(time.perf_counter() - t0 - 0.002)
            if with_agent:
                from mantis_py.agents import open_agent
                async with open_agent("app", url) as agent:
                    while not agent.has_subscribers():
                        await trio.sleep(0.01)
                    await body(agent)
            else:
                await body(None)
            return lags
        lags = trio.run(main)
    print(json.dumps({"median": statistics.median(lags)}))
"""


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_event_loop_lag_rises_by_under_a_millisecond(loop: str) -> None:
    import json

    with ThreadedTestGateway(heartbeat_s=0.3) as gw:
        gw.subscribe("s1", "select country from app where country == 'BR'")
        base = json.loads(run_script(LAG, loop, gw.url, "0").stdout)["median"]
        r = run_script(LAG, loop, gw.url, "1")
        assert r.returncode == 0, r.stderr
        with_agent = json.loads(r.stdout)["median"]
        assert with_agent - base < 0.001, (base, with_agent)
