"""An alert whose application has no agent yet: insufficient data that says "waiting for agents
of X" (not a refusal), then ok once an agent connects. Real gateway process, real agent."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from mantis_py.demo.runner import http_get
from mantis_py.testing.processes import GatewayProcess, Publisher

pytestmark = pytest.mark.timeout(90)

CONFIG = """
[gateway]
host = "127.0.0.1"
port = {port}
grace_s = 0.5

[[alerts]]
name = "late-rate"
query = "select count(*) as n from late window 1"
condition = "n < 1"
windows = 2

[[alerts.actions]]
type = "log"
"""


def alert(port: int) -> dict[str, Any]:
    status, body = http_get(port, "/v1/alerts")
    assert status == 200
    (a,) = json.loads(body)["alerts"]
    return a


def wait_for(check: Any, limit: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out; last: {last}")


def test_an_alert_before_its_agents_waits_then_evaluates(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path, config=CONFIG)
    gw.start()
    pub = None
    try:
        waiting = wait_for(lambda: (a := alert(gw.port))["reason"].startswith("waiting for agents")
                           and a)
        assert waiting["state"] == "insufficient_data"
        assert waiting["reason"] == "waiting for agents of late"
        assert "refused" not in json.dumps(waiting)
        pub = Publisher("late", gw.url)
        pub.start()
        ok = wait_for(lambda: (a := alert(gw.port))["state"] == "ok" and a)
        assert "n < 1 is false" in ok["reason"]
    finally:
        if pub is not None:
            pub.stop()
        gw.stop()
