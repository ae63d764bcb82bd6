"""The alert shell (mantis_py/gateway/alert_runner.py) against a real HTTP receiver.

The gateway side is a scripted ``subscribe``: each rule's query gets a channel the test writes
client-protocol frames into, exactly what the gateway would send (SYSTEM.md §3.3).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from mantis_py.gateway import alert_runner
from mantis_py.gateway.alert_runner import AlertRunner, post_json

QUERY = "select count(*) as pps from playback where event == 'play' window 1"


def low_pps(text: str, rule: str = "?") -> Callable[[Mapping[str, Any]], bool]:
    def pred(row: Mapping[str, Any]) -> bool:
        v = row.get("pps")
        return isinstance(v, int) and v < 50

    return pred


class Gateway:
    """A scripted gateway: frames pushed per query text reach the runner's subscription."""

    def __init__(self) -> None:
        self.channels: dict[str, trio.MemorySendChannel[dict[str, Any]]] = {}
        self.subscribed = trio.Event()

    @asynccontextmanager
    async def subscribe(self, query: str) -> AsyncIterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        send, receive = trio.open_memory_channel[dict[str, Any]](100)
        self.channels[query] = send
        self.subscribed.set()
        async with receive:
            yield receive

    async def window(self, query: str, t: float, rows: list[dict[str, Any]], reporting: int = 2, expected: int = 2) -> None:
        ch = self.channels[query]
        await ch.send({"type": "rows", "id": "a", "window": [t, t + 1], "rows": rows})
        await ch.send({"type": "meta", "id": "a", "dropped": {}, "coverage": {"reporting": reporting, "expected": expected}})


def rule(name: str, query: str, *hooks: str, windows: int = 2, timeout: float = 5.0, attempts: int = 5) -> dict[str, Any]:
    return {
        "name": name,
        "query": query,
        "condition": "pps < 50",
        "windows": windows,
        "actions": [{"type": "log"}] + [
            {"type": "webhook", "url": h, "timeout": timeout, "attempts": attempts} for h in hooks
        ],
    }


async def wait_for(check: Callable[[], bool], limit: float = 10) -> None:
    """Poll a condition on the runner's public snapshot (it has no event to wait on)."""
    with trio.fail_after(limit):
        while not check():  # noqa: ASYNC110
            await trio.sleep(0.02)


def state_of(snapshot: Callable[[], dict[str, Any]], name: str) -> str:
    return next(a["state"] for a in snapshot()["alerts"] if a["name"] == name)


async def test_post_json_reaches_a_real_receiver(receiver: Any) -> None:
    with trio.fail_after(10):
        assert await post_json(receiver.url("/ok"), b'{"a": 1}') == 200
        assert await post_json(receiver.url("/down"), b"{}") == 503
    assert receiver.bodies("/ok") == [{"a": 1}]


async def test_drop_fires_within_two_windows_and_resolves(receiver: Any) -> None:
    gw = Gateway()
    runner = AlertRunner([rule("pps", QUERY, receiver.url("/ok"))], compile=low_pps)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            snapshot = await nursery.start(runner.serve, gw.subscribe)
            await gw.subscribed.wait()
            await gw.channels[QUERY].send({"type": "accepted", "id": "a", "canonical": QUERY, "agents": 2})
            for t, pps in enumerate([120, 130]):
                await gw.window(QUERY, 100 + t, [{"pps": pps}])
            await wait_for(lambda: state_of(snapshot, "pps") == "ok")
            await gw.window(QUERY, 102, [{"pps": 3}])
            await gw.window(QUERY, 103, [{"pps": 4}])  # second breaching window: fires
            await wait_for(lambda: state_of(snapshot, "pps") == "firing")
            await wait_for(lambda: len(receiver.bodies("/ok")) == 1)
            await gw.window(QUERY, 104, [{"pps": 125}])
            await wait_for(lambda: state_of(snapshot, "pps") == "resolved")
            await wait_for(lambda: len(receiver.bodies("/ok")) == 2)
            nursery.cancel_scope.cancel()
    firing, resolved = receiver.bodies("/ok")
    assert (firing["state"], firing["previous"], firing["alert"]) == ("firing", "ok", "pps")
    assert firing["window"] == [103, 104]
    assert firing["rows"] == [{"pps": 4}]
    assert firing["coverage"] == {"reporting": 2, "expected": 2}
    assert (resolved["state"], resolved["previous"]) == ("resolved", "firing")


async def test_agents_disappearing_is_insufficient_data_never_firing(receiver: Any) -> None:
    gw = Gateway()
    runner = AlertRunner([rule("pps", QUERY, receiver.url("/ok"), windows=1)], compile=low_pps)
    seen: set[str] = set()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            snapshot = await nursery.start(runner.serve, gw.subscribe)
            await gw.subscribed.wait()
            await gw.window(QUERY, 100, [{"pps": 120}])
            await wait_for(lambda: state_of(snapshot, "pps") == "ok")
            # one of two agents goes, then the other: counts collapse, coverage says why
            await gw.window(QUERY, 101, [{"pps": 20}], reporting=1, expected=2)
            seen.add(state_of(snapshot, "pps"))
            await gw.window(QUERY, 102, [{"pps": 0}], reporting=0, expected=2)
            await gw.window(QUERY, 103, [{"pps": 0}], reporting=0, expected=0)
            await wait_for(lambda: state_of(snapshot, "pps") == "insufficient_data")
            await gw.channels[QUERY].send({"type": "complete", "id": "a", "reason": "app gone"})
            await trio.sleep(0.2)
            seen.add(state_of(snapshot, "pps"))
            nursery.cancel_scope.cancel()
    history = [h["state"] for h in snapshot()["alerts"][0]["history"]]
    assert "firing" not in history
    assert "firing" not in seen
    assert history[-1] == "insufficient_data"
    assert receiver.bodies("/ok") == []  # webhooks only on firing / resolved


async def test_failing_webhook_is_retried_and_does_not_stall_other_alerts(
    receiver: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(alert_runner, "BACKOFF_FIRST", 0.1)
    q_flaky, q_hang, q_ok = QUERY + " limit 100", QUERY + " limit 200", QUERY + " limit 300"
    gw = Gateway()
    runner = AlertRunner(
        [
            rule("flaky", q_flaky, receiver.url("/flaky"), windows=1),
            rule("hang", q_hang, receiver.url("/hang"), windows=1, timeout=20, attempts=2),
            rule("fine", q_ok, receiver.url("/ok"), windows=1),
        ],
        compile=low_pps,
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            snapshot = await nursery.start(runner.serve, gw.subscribe)
            await wait_for(lambda: len(gw.channels) == 3)
            # the hanging receiver's alert fires first; its webhook blocks for up to 20 s ...
            await gw.window(q_hang, 100, [{"pps": 1}])
            await wait_for(lambda: receiver.attempts.get("/hang", 0) == 1)
            # ... yet the other alerts are evaluated and delivered at once
            await gw.window(q_flaky, 100, [{"pps": 1}])
            await gw.window(q_ok, 100, [{"pps": 1}])
            await wait_for(lambda: len(receiver.bodies("/ok")) == 1, limit=5)
            await wait_for(lambda: len(receiver.bodies("/flaky")) == 1, limit=10)
            assert state_of(snapshot, "hang") == "firing"

            def hooks_now() -> dict[str, Any]:
                return {a["name"]: a["webhooks"][0] for a in snapshot()["alerts"]}

            # the receiver records a body before the runner reads the response and counts it
            await wait_for(lambda: hooks_now()["flaky"]["sent"] == 1 and hooks_now()["fine"]["sent"] == 1)
            hooks = hooks_now()
            nursery.cancel_scope.cancel()
    assert receiver.attempts["/flaky"] == 3  # two 500s, then delivered
    assert hooks["flaky"]["retries"] == 2
    assert hooks["flaky"]["sent"] == 1
    assert hooks["fine"] == {"url": receiver.url("/ok"), "sent": 1, "failed": 0, "retries": 0, "dropped": 0}
    assert hooks["hang"]["sent"] == 0


async def test_refused_query_is_resubscribed(monkeypatch: Any) -> None:
    monkeypatch.setattr(alert_runner, "RESUBSCRIBE_FIRST", 0.05)
    gw = Gateway()
    runner = AlertRunner([rule("pps", QUERY, windows=1)], compile=low_pps)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            snapshot = await nursery.start(runner.serve, gw.subscribe)
            await gw.subscribed.wait()
            first = gw.channels[QUERY]
            await first.send({"type": "error", "id": "a", "error": {"message": "unknown application 'playback'"}})
            await wait_for(lambda: gw.channels[QUERY] is not first)
            assert "unknown application" in snapshot()["alerts"][0]["reason"]
            await gw.window(QUERY, 100, [{"pps": 1}])
            await wait_for(lambda: state_of(snapshot, "pps") == "firing")
            nursery.cancel_scope.cancel()


async def test_rows_without_meta_use_last_coverage(monkeypatch: Any) -> None:
    monkeypatch.setattr(alert_runner, "PAIR_WAIT", 0.1)
    gw = Gateway()
    runner = AlertRunner([rule("pps", QUERY, windows=1)], compile=low_pps)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            snapshot = await nursery.start(runner.serve, gw.subscribe)
            await gw.subscribed.wait()
            await gw.window(QUERY, 100, [{"pps": 100}])
            await wait_for(lambda: state_of(snapshot, "pps") == "ok")
            await gw.channels[QUERY].send({"type": "rows", "id": "a", "window": [101, 102], "rows": [{"pps": 1}]})
            await wait_for(lambda: state_of(snapshot, "pps") == "firing")
            nursery.cancel_scope.cancel()
