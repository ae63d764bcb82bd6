"""The two agent calls the integrations lean on per request: ``has_subscribers`` (one dict lookup
on the host side) agrees with the core through subscribe / unsubscribe, and ``_publish_owned``
queues the integration's own event without copying it, while ``publish`` still copies."""

from __future__ import annotations

import time

from mantis_py.agents import Agent
from mantis_py.testing import LinkPair


def test_has_subscribers_follows_the_core_and_owned_events_are_not_copied() -> None:
    agent = Agent("app", "ws://127.0.0.1:9")  # never started: no thread, no socket
    core = agent._core
    assert not agent.has_subscribers("requests")
    agent._publish_owned({"n": 0}, "requests")  # nobody listening: counted as skipped
    assert not agent.has_subscribers("requests")

    now = time.time()
    pair = LinkPair(core, now=now)
    pair.subscribe("q", "select n from app/requests", stream="requests", start=now)
    assert agent.has_subscribers("requests")
    assert core.has_subscribers("requests")
    assert not agent.has_subscribers("log")

    owned, copied = {"n": 1}, {"n": 2}
    agent._publish_owned(owned, "requests")
    agent.publish(copied, "requests")
    queued = [event for _, event in core.queues["requests"]]
    assert queued[0] is owned
    assert queued[1] == copied
    assert queued[1] is not copied

    pair.pump(now + 0.01)
    stats = agent.statistics().streams["requests"]
    assert stats.skipped_no_subscription == 1
    assert stats.offered == 3

    pair.unsubscribe("q")
    pair.pump(now + 0.02)
    assert not agent.has_subscribers("requests")
    assert not core.has_subscribers("requests")
