"""End to end (MQL.md §3.19): two simulated applications, each with a real agent, joined live
through a real gateway; the joined rows equal what ``mantis-py replay`` computes from one input
holding both sources, and unpaired events reach the client as drops."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from typing import Any

import trio

from mantis_py.agents import Agent
from mantis_py.gateway.config import GatewayConfig
from mantis_py.query import prepare
from mantis_py.query.run.replay import replay_rows

from .conftest import open_client, open_gateway, recv_json, wait_until

JOINED = "select sid, title, bytes from play join cdn 5 seconds on sid where bytes > 10"
COUNTED = ("select title, count(*) as n, sum(bytes) as b from play join cdn 5 seconds on sid "
           "window 2 group by title anomaly mad n 1 2")


def plays() -> list[dict[str, Any]]:
    # s0..s9 play; s9 never gets a CDN response (unpaired)
    return [{"sid": f"s{i}", "title": "T" + "AB"[i % 2], "device": "tv"} for i in range(10)]


def cdns() -> list[dict[str, Any]]:
    # responses for s0..s8 (bytes 5, 10, ... so some fail WHERE), plus one for nobody
    return [{"sid": f"s{i}", "bytes": 5 * (i + 1), "pop": "lhr"} for i in range(9)] + [
        {"sid": "zz", "bytes": 99, "pop": "lhr"}]


def canon(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(json.dumps(r, sort_keys=True) for r in rows)


async def test_two_applications_joined_live_equal_replay() -> None:
    config = GatewayConfig(port=0, grace_s=1.0)
    with trio.fail_after(60):
        async with open_gateway(config) as gw:
            url = f"ws://127.0.0.1:{gw.port}"
            play = Agent(app="play", gateway=url, instance="play-1", cpu_budget=1.0)
            cdn = Agent(app="cdn", gateway=url, instance="cdn-1", cpu_budget=1.0)
            play.start()
            cdn.start()
            try:
                await wait_until(lambda: len(gw.core.registry.agents) == 2)
                async with open_client(gw.port) as ws:
                    for qid, text in (("joined", JOINED), ("counted", COUNTED)):
                        await ws.send(json.dumps({"type": "query", "id": qid, "query": text}))
                        reply = await recv_json(ws)
                        assert reply["type"] == "accepted", reply
                        assert reply["agents"] == 2  # agents of both applications run it
                    await wait_until(lambda: len(play.statistics().subs) == 2
                                     and len(cdn.statistics().subs) == 2)
                    # publish inside one 2-second window, after acceptance: each play, then
                    # its CDN response, so arrival order is event order
                    boundary = math.ceil(time.time() / 2) * 2
                    await trio.sleep(boundary - time.time() + 0.05)
                    for p, c in zip(plays(), cdns(), strict=False):
                        play.publish(p)
                        cdn.publish(c)
                    cdn.publish(cdns()[-1])
                    play.publish(plays()[-1])
                    got: dict[str, list[dict[str, Any]]] = {"joined": [], "counted": []}
                    dropped: Counter[str] = Counter()
                    deadline = boundary + 2 + config.grace_s + 14  # the A bound (5 s) passes too
                    while time.time() < deadline:
                        with trio.move_on_after(max(0.0, deadline - time.time())):
                            msg = await recv_json(ws)
                            if msg["type"] == "rows":
                                got[msg["id"]].extend(msg["rows"])
                            elif msg["type"] == "meta":
                                dropped.update(msg.get("dropped") or {})
                            if got["counted"] and dropped.get("join_unpaired"):
                                break
            finally:
                play.close()
                cdn.close()
    # replay: one input holding both sources, told apart by _app, in the same order
    lines: list[tuple[dict[str, Any], Any]] = []
    for p, c in zip(plays(), cdns(), strict=False):
        lines.append(({**p, "_app": "play"}, 0))
        lines.append(({**c, "_app": "cdn"}, 0))
    lines.append(({**cdns()[-1], "_app": "cdn"}, 0))
    lines.append(({**plays()[-1], "_app": "play"}, 0))
    want = [r for _, r in replay_rows(prepare(JOINED), lines)]
    assert len(want) == 7  # s2..s8 have bytes > 10
    assert canon(got["joined"]) == canon(want)
    want_counted = [r for _, r in replay_rows(prepare(COUNTED), lines)]
    assert sorted(got["counted"], key=lambda r: r["title"]) == sorted(want_counted, key=lambda r: r["title"])
    assert all(r["anomalous"] is False for r in got["counted"])  # the first value of each group
    assert dropped["join_unpaired"] >= 1  # s9 had no partner within 5 s
