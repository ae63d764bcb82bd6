"""Masked-field visibility per token, end to end (SYSTEM.md §6): a real gateway loaded from a TOML
file, a real threaded agent masking ``password``, and two clients on the same query, one whose
token may see masked fields and one whose token may not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio

from mantis_py.agents import Agent
from mantis_py.gateway.config import load_config

from .conftest import open_client, open_gateway, recv_json, wait_until

CONFIG = """
[gateway]
port = 0
grace_s = 0.5
heartbeat_s = 1.0

[[tokens]]
user = "sees"
token = "tok-sees-111"
read = ["playback"]
masked = true

[[tokens]]
user = "blind"
token = "tok-blind-222"
read = ["playback"]

[[tokens]]
user = "agents"
token = "tok-agent-333"
read = ["playback"]
roles = ["agent"]
"""

SECRET = "hunter2-zq81"
# The WHERE also tries the masked value as a filter oracle: for "blind" it must never match.
QUERY = f"select country, password from playback where password == '{SECRET}' or country == 'US'"


async def collect(port: int, token: str, done: trio.Event, want: int,
                  out: list[dict[str, Any]]) -> None:
    async with open_client(port, token=token) as ws:
        await ws.send(json.dumps({"type": "query", "id": "q", "query": QUERY}))
        reply = await recv_json(ws)
        assert reply["type"] == "accepted", reply
        while len(out) < want or not done.is_set():
            msg = await recv_json(ws)
            assert msg["type"] not in ("error", "complete"), msg
            if msg["type"] == "rows":
                out.extend(msg["rows"])
                if len(out) >= want:
                    done.set()


async def test_each_token_sees_masked_fields_as_its_rights_say(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG)
    config = load_config(path)
    with trio.fail_after(40):
        async with open_gateway(config) as gw:
            agent = Agent("playback", f"ws://127.0.0.1:{gw.port}", token="tok-agent-333",
                          mask=("password",), allow_unmasked=True, reconnect_min_s=0.05, reconnect_max_s=0.4).start()
            try:
                await wait_until(lambda: agent.connected)
                seen: list[dict[str, Any]] = []
                blind: list[dict[str, Any]] = []
                seen_done, blind_done = trio.Event(), trio.Event()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(collect, gw.port, "tok-sees-111", seen_done, 6, seen)
                    nursery.start_soon(collect, gw.port, "tok-blind-222", blind_done, 6, blind)
                    await wait_until(lambda: len(agent.statistics().subs) == 2)
                    i = 0
                    while not (seen_done.is_set() and blind_done.is_set()):
                        agent.publish({"country": "BR", "password": SECRET, "i": i})
                        agent.publish({"country": "US", "password": "pw-us", "i": i})
                        i += 1
                        await trio.sleep(0.01)
                    nursery.cancel_scope.cancel()
                stats = agent.statistics()
            finally:
                agent.close()
    # the token with masked visibility sees the real values and may filter on them
    assert {"country": "BR", "password": SECRET} in seen
    assert {"country": "US", "password": "pw-us"} in seen
    assert all(r in ({"country": "BR", "password": SECRET}, {"country": "US", "password": "pw-us"})
               for r in seen)
    # the other one sees only "[masked]", and the masked value is no filter oracle
    assert blind
    assert all(r == {"country": "US", "password": "[masked]"} for r in blind)
    assert SECRET not in json.dumps(blind)
    # two subscriptions on the agent (one per visibility), exact accounting
    s = stats.streams["default"]
    assert s.offered == s.skipped_no_subscription + s.enqueued + sum(s.dropped.values())
    assert s.enqueued == s.unmatched + s.folded + s.sent + sum(s.lost.values()) + s.pending
