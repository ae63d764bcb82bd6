"""Both runners against a test gateway on loopback: delivery, host protection, restart, expiry.

Real MQL queries and the real query engine; the gateway side is ``mantis_py.testing.server`` (a
minimal mantis.v1 gateway we can make misbehave); the end-to-end tests with the real gateway are
in ``test_e2e.py``.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from mantis_py.agents import Agent, open_agent
from mantis_py.agents.sync import agent_url, backoff_delays
from mantis_py.errors import ConfigurationError
from mantis_py.testing.server import TestGateway, ThreadedTestGateway

FAST = {"reconnect_min_s": 0.05, "reconnect_max_s": 0.4}


def check_accounting(agent: Any) -> None:
    for name, s in agent.statistics().streams.items():
        assert s.offered == s.skipped_no_subscription + s.enqueued + sum(s.dropped.values()), name
        assert s.enqueued == s.unmatched + s.folded + s.sent + sum(s.lost.values()) + s.pending, (
            name
        )


def wait(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return bool(pred())


async def wait_async(pred: Any) -> None:
    while not pred():  # noqa: ASYNC110 - polling a thread-safe predicate, bounded by fail_after
        await trio.sleep(0.01)


@pytest.fixture
def gateway() -> Iterator[ThreadedTestGateway]:
    with ThreadedTestGateway(heartbeat_s=0.3) as gw:
        yield gw


def test_threaded_agent_ships_matching_events(gateway: ThreadedTestGateway) -> None:
    gateway.subscribe("s1", "select country from app where country == 'BR'")
    with Agent("app", gateway.url, mask=("password",), **FAST) as agent:
        assert wait(lambda: agent.has_subscribers())
        for i in range(200):
            agent.publish({"country": "BR" if i % 2 else "US", "password": "pw", "i": i})
        assert wait(lambda: len(gateway.records("s1")) == 100)
    assert all(r["e"] == {"country": "BR"} for r in gateway.records())
    check_accounting(agent)
    hello = gateway.received()[0]
    assert hello.app == "app"  # type: ignore[union-attr]


async def test_trio_agent_ships_matching_events() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            gw = TestGateway(heartbeat_s=0.3)
            await nursery.start(gw.serve)
            gw.subscribe("s1", "select i from app where country == 'BR'")
            async with open_agent("app", gw.url, **FAST) as agent:
                await wait_async(agent.has_subscribers)
                for i in range(100):
                    agent.publish({"country": "BR" if i % 2 else "US", "i": i})
                await wait_async(lambda: len(gw.records("s1")) >= 50)
            check_accounting(agent)
            assert sorted(r["e"]["i"] for r in gw.records()) == list(range(1, 100, 2))
            nursery.cancel_scope.cancel()


def test_publish_from_many_threads_is_counted_exactly(gateway: ThreadedTestGateway) -> None:
    gateway.subscribe("s1", "select i from app")
    with Agent("app", gateway.url, **FAST) as agent:
        assert wait(lambda: agent.has_subscribers())

        def pub() -> None:
            for i in range(5000):
                agent.publish({"i": i})
                agent.publish({"i": i}, stream="nobody")

        threads = [threading.Thread(target=pub) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        s = agent.statistics().streams
        assert s["default"].offered == 20000
        assert s["nobody"].skipped_no_subscription == 20000
        assert wait(lambda: agent.statistics().streams["default"].pending == 0)
        check_accounting(agent)


def _publish_hard(agent: Agent, seconds: float) -> tuple[list[float], int]:
    """Publish big events as fast as possible; return per-call durations (seconds)."""
    durations = []
    pad = "x" * 2000
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        agent.publish({"i": n, "pad": pad})
        durations.append(time.perf_counter() - t0)
        n += 1
    return durations, n


@pytest.mark.parametrize("mode", ["no_read", "slow"])
def test_a_gateway_that_does_not_keep_up_never_blocks_the_host(mode: str) -> None:
    with ThreadedTestGateway(heartbeat_s=0.3, read_mode=mode, slow_s=0.05) as gw:
        gw.subscribe("s1", "select * from app")
        settings = {"max_send_backlog": 256 * 1024, "send_timeout_s": 1.0, **FAST}
        with Agent("app", gw.url, **settings) as agent:
            assert wait(lambda: agent.has_subscribers())
            durations, n = _publish_hard(agent, 2.0)
            core = agent._core
            st = core.streams["default"]
            # memory stays under the caps
            assert len(st.ingress.items) <= core.config.max_queue_events + 1
            assert st.pending.nbytes <= core.config.max_queue_bytes
            s = agent.statistics().streams["default"]
            assert s.offered == n
            assert sum(s.dropped.values()) + sum(s.lost.values()) > 0  # it did shed load
        assert agent._thread is not None
        agent._thread.join(2)
        assert not agent._thread.is_alive()  # close() ends the agent even mid-write
        check_accounting(agent)
        durations.sort()
        # no call over a few ms, apart from rare GIL hand-offs to the agent's threads
        assert durations[len(durations) // 2] < 0.001
        assert durations[int(len(durations) * 0.999)] < 0.005


def test_an_absent_gateway_costs_nothing_and_is_retried() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here
    with Agent("app", f"ws://127.0.0.1:{port}", **FAST) as agent:
        durations, n = _publish_hard(agent, 0.5)
        assert agent.statistics().streams["default"].skipped_no_subscription == n
        time.sleep(0.3)
        assert agent.last_error is not None
        assert agent.last_error.startswith("connect")
    durations.sort()
    assert durations[len(durations) // 2] < 0.001


def test_backoff_is_jittered_and_capped() -> None:
    delays = backoff_delays(0.5, 30.0, random.Random(1))
    got = [next(delays) for _ in range(20)]
    assert all(0.25 <= d <= 30.0 for d in got)
    assert len(set(got)) == 20
    other = backoff_delays(0.5, 30.0, random.Random(2))
    assert got != [next(other) for _ in range(20)]


def test_gateway_url_and_settings_are_checked() -> None:
    assert agent_url("ws://h:1") == "ws://h:1/v1/agent"
    assert agent_url("wss://h:1/") == "wss://h:1/v1/agent"
    assert agent_url("ws://h:1/custom") == "ws://h:1/custom"
    with pytest.raises(ConfigurationError):
        Agent("app", "http://h:1")
    with pytest.raises(ConfigurationError):
        Agent("app", "ws://h:1", no_such_setting=1)
    with pytest.raises(ConfigurationError):
        Agent("app", "ws://h:1", max_queue_events=0)


# ------------------------------------------------------------------ restart (a real process)


class GatewayProcess:
    def __init__(self, port: int = 0) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mantis_py.testing.server",
                "--port",
                str(port),
                "--heartbeat",
                "0.3",
                "--subscribe",
                "s1",
                "select i from app",
                "default",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        assert line.startswith("PORT "), line
        self.port = int(line.split()[1])
        self.lines: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def events(self) -> int:
        return sum(1 for line in self.lines if b'"type":"events"' in line)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def test_agent_survives_a_gateway_restart_and_expires_queries_when_it_is_gone() -> None:
    gw = GatewayProcess()
    try:
        settings = {"expire_after_s": 2.0, "resubscribe_grace_s": 1.0, **FAST}
        with Agent("app", f"ws://127.0.0.1:{gw.port}", **settings) as agent:
            assert wait(lambda: agent.has_subscribers())
            agent.publish({"i": 1})
            assert wait(lambda: gw.events() >= 1)
            connects = agent.statistics().connects
            gw.kill()
            # queries survive a short outage ...
            time.sleep(0.3)
            assert agent.has_subscribers()
            gw = GatewayProcess(gw.port)
            assert wait(lambda: agent.statistics().connects > connects)
            assert wait(lambda: agent.connected)
            agent.publish({"i": 2})
            assert wait(lambda: gw.events() >= 1)
            # ... and expire once the gateway is gone for good
            gw.kill()
            assert agent.has_subscribers()
            assert wait(lambda: not agent.has_subscribers(), timeout=10)
            check_accounting(agent)
    finally:
        if gw.proc.poll() is None:
            gw.kill()


async def test_trio_agent_with_a_gateway_that_never_reads_stays_bounded() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            gw = TestGateway(heartbeat_s=0.3, read_mode="no_read")
            await nursery.start(gw.serve)
            gw.subscribe("s1", "select * from app")
            settings = {"send_timeout_s": 1.0, "max_send_backlog": 128 * 1024, **FAST}
            async with open_agent("app", gw.url, **settings) as agent:
                await wait_async(agent.has_subscribers)
                end = trio.current_time() + 2.0
                n = 0
                while trio.current_time() < end:
                    for _ in range(200):
                        agent.publish({"i": n, "pad": "x" * 2000})
                        n += 1
                    await trio.sleep(0.001)
                core = agent._core
                st = core.streams["default"]
                assert len(st.ingress.items) <= core.config.max_queue_events + 1
                assert st.pending.nbytes <= core.config.max_queue_bytes
                t0 = trio.current_time()
            assert trio.current_time() - t0 < 1.5  # leaving the block is bounded
            s = agent.statistics().streams["default"]
            assert s.offered == n
            assert sum(s.dropped.values()) + sum(s.lost.values()) > 0
            check_accounting(agent)
            nursery.cancel_scope.cancel()


def test_agent_over_its_cpu_budget_samples_down_and_says_so(gateway: ThreadedTestGateway) -> None:
    from mantis_py.wire import Stats

    gateway.subscribe("s1", "select * from app")
    with Agent("app", gateway.url, cpu_budget=0.01, **FAST) as agent:
        assert wait(lambda: agent.has_subscribers())
        end = time.monotonic() + 10
        while agent.statistics().sample_rate == 1.0 and time.monotonic() < end:
            for i in range(500):
                agent.publish({"i": i, "pad": "y" * 500})
            time.sleep(0.001)
        assert agent.statistics().sample_rate < 1.0
        for i in range(200):  # events offered while sampled down are counted
            agent.publish({"i": i})

        def reported() -> bool:
            stats = gateway.received(Stats)
            return any(s.subs.get("s1", {}).get("sample_rate", 1.0) < 1.0 for s in stats)  # type: ignore[union-attr]

        assert wait(reported)
    assert agent.statistics().streams["default"].lost.get("cpu_budget", 0) > 0
