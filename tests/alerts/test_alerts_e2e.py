"""Alerts end to end: a real gateway (child process), real agents (the demo's simulated
services) and a real HTTP receiver for the webhook."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from mantis_py.demo.runner import http_get, open_stack
from mantis_py.demo.traffic import Scenario

pytestmark = pytest.mark.timeout(90)

CONFIG = """
[gateway]
host = "127.0.0.1"
port = {port}
grace_s = 1.0

[[alerts]]
name = "pps"
query = "select count(*) as pps from playback where event == 'play' window 1"
condition = "pps < 40"
windows = 2

[[alerts.actions]]
type = "log"

[[alerts.actions]]
type = "webhook"
url = "HOOK"
"""
PLAYBACK_ONLY = (("playback", "playback-1", 0.4), ("playback", "playback-2", 0.35),
                 ("playback", "playback-3", 0.25))


def alert(port: int) -> dict[str, Any]:
    status, body = http_get(port, "/v1/alerts")
    assert status == 200
    (a,) = json.loads(body)["alerts"]
    return a


def wait_until(check: Any, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_drop_below_threshold_fires_within_two_windows_and_resolves(receiver: Any) -> None:
    config = CONFIG.replace("HOOK", receiver.url("/ok"))
    scenario = Scenario(outage_at=5, outage_for=5)
    with open_stack(0, config=config, scenario=scenario, instances=PLAYBACK_ONLY) as stack:
        stack.wait_apps(("playback",))
        wait_until(lambda: alert(stack.port)["state"] == "ok", 15, "the rule to be ok")
        wait_until(lambda: len(receiver.bodies("/ok")) >= 2, 40, "firing and resolved webhooks")
        outage_start = stack.started + scenario.outage_at
        outage_end = outage_start + scenario.outage_for
        firing, resolved = receiver.bodies("/ok")[:2]
        history = [h["state"] for h in alert(stack.port)["history"]]
    assert (firing["state"], firing["previous"]) == ("firing", "ok")
    # fires within two windows of 1 s: the window the outage began in may already breach
    # (when the outage began early in it), and at most two whole windows follow it
    assert outage_start + 1 < firing["window"][1] <= outage_start + 3.01
    assert all(r["pps"] < 40 for r in firing["rows"])
    assert firing["coverage"]["reporting"] == firing["coverage"]["expected"] == 3
    assert (resolved["state"], resolved["previous"]) == ("resolved", "firing")
    assert outage_end <= resolved["window"][1] <= outage_end + 2.01
    assert history[-3:] == ["ok", "firing", "resolved"]


def test_agents_disappearing_is_insufficient_data_never_firing(receiver: Any) -> None:
    config = CONFIG.replace("HOOK", receiver.url("/ok"))
    quiet = Scenario(outage_at=1e9)
    with open_stack(0, config=config, scenario=quiet, instances=PLAYBACK_ONLY) as stack:
        stack.wait_apps(("playback",))
        wait_until(lambda: alert(stack.port)["state"] == "ok", 15, "the rule to be ok")
        stack.stop_services("playback")  # the agents go, one after the other
        seen: set[str] = set()
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            seen.add(alert(stack.port)["state"])
            time.sleep(0.1)
        final = alert(stack.port)
    assert "firing" not in seen
    assert "firing" not in [h["state"] for h in final["history"]]
    assert final["state"] == "insufficient_data"
    assert receiver.bodies("/ok") == []
