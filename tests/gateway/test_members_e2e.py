"""A real gateway counts agents by member (app + instance + stream), not by connection: an agent
whose old connection is still open when its new one arrives is expected once."""

from __future__ import annotations

import json

import trio

from .conftest import open_agent, open_client, open_gateway, recv_json


async def test_two_connections_of_one_agent_are_expected_once() -> None:
    with trio.fail_after(20):
        async with open_gateway() as gw, \
                open_agent(gw.port, instance="same"), open_agent(gw.port, instance="same"), \
                open_agent(gw.port, instance="other"):
            assert len(gw.core.registry.agents) == 3
            async with open_client(gw.port) as ws:
                await ws.send(json.dumps({"type": "query", "id": "q",
                                          "query": "select * from play"}))
                accepted = await recv_json(ws)
                assert (accepted["type"], accepted["agents"]) == ("accepted", 2)
