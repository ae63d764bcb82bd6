"""Security end to end (SYSTEM.md §6): the auth matrix, 401/403 before the upgrade, Origin,
audit lines, and tokens never in logs."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import pytest
import trio
from websockets.exceptions import InvalidStatus

from mantis_py.gateway.config import parse_config

from .conftest import http_request, open_agent, open_client, open_gateway, recv_json
from .fakes import CACHE, fake_prepare

TOKENS = {
    "alice": ("tok-alice-123", ["play"]),
    "bob": ("tok-bob-456", ["api/log"]),
    "carol": ("tok-carol-789", ["play/log", "api"]),
    "root": ("tok-root-000", ["*"]),
}
AGENT_TOKEN = "tok-agent-999"
APPS = ("play", "api")
STREAMS = ("default", "log")
# What each user may read, written out by hand (not derived from the patterns above).
ALLOWED = {
    "alice": {("play", "default"), ("play", "log")},
    "bob": {("api", "log")},
    "carol": {("play", "log"), ("api", "default"), ("api", "log")},
    "root": {(a, s) for a in APPS for s in STREAMS},
}


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    CACHE.clear()


def config(tmp_path: Path) -> object:
    tokens = [{"user": u, "token": t, "read": r} for u, (t, r) in TOKENS.items()]
    tokens.append({"user": "agents", "token": AGENT_TOKEN, "read": ["*"], "roles": ["agent"]})
    return parse_config({"gateway": {"port": 0, "origins": ["https://dash.example"],
                                     "audit_log": str(tmp_path / "audit.log")},
                         "tokens": tokens})


async def test_every_token_app_stream_combination(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(30):
        async with open_gateway(config(tmp_path), prepare=fake_prepare) as gw, \
                open_agent(gw.port, "play", "p1", token=AGENT_TOKEN), \
                open_agent(gw.port, "api", "a1", token=AGENT_TOKEN):
            for user, (token, _) in TOKENS.items():
                async with open_client(gw.port, token=token) as ws:
                    for n, (app, stream) in enumerate(itertools.product(APPS, STREAMS)):
                        await ws.send(json.dumps({"type": "query", "id": f"q{n}",
                                                  "query": f"select * from {app}/{stream}"}))
                        reply = await recv_json(ws)
                        allowed = (app, stream) in ALLOWED[user]
                        assert reply["type"] == ("accepted" if allowed else "error"), (user, app)
                        if not allowed:
                            assert app in reply["error"]["message"]
                        await trio.sleep(0.21)  # stay under the submission rate limit
            # ?token= works for browsers
            async with open_client(gw.port, path=f"/v1/query?token={TOKENS['root'][0]}") as ws:
                await ws.send(json.dumps({"type": "query", "id": "x", "query": "select * from api"}))
                assert (await recv_json(ws))["type"] == "accepted"
    audit = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert len(audit) == len(TOKENS) * 4 + 1
    assert {a["decision"] for a in audit} == {"accepted", "refused"}
    server_side = [r.getMessage() for r in caplog.records
                   if not r.name.startswith("websockets.client")]
    assert any("redacted" in m for m in server_side)  # websockets did log the handshake
    everything = "\n".join(server_side) + (tmp_path / "audit.log").read_text()
    for token, _ in TOKENS.values():
        assert token not in everything
    assert AGENT_TOKEN not in everything


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/query", {}, 401),
        ("/v1/query", {"Authorization": "Bearer nope"}, 401),
        ("/v1/query", {"Authorization": f"Bearer {AGENT_TOKEN}"}, 403),
        ("/v1/agent", {"Authorization": f"Bearer {TOKENS['alice'][0]}"}, 403),
        ("/v1/query", {"Authorization": f"Bearer {TOKENS['alice'][0]}",
                       "Origin": "https://evil.example"}, 403),
        ("/v1/sse?q=select+*+from+play", {}, 401),
        ("/v1/apps", {}, 401),
    ],
)
async def test_refused_before_the_upgrade(tmp_path: Path, path: str, headers: dict[str, str],
                                          status: int) -> None:
    with trio.fail_after(10):
        async with open_gateway(config(tmp_path), prepare=fake_prepare) as gw:
            hdrs = {"Upgrade": "websocket", "Connection": "Upgrade",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version": "13", **headers}
            got, _, _ = await http_request(gw.port, "GET", path, hdrs)
            assert got == status


async def test_allowed_origins_pass(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_gateway(config(tmp_path), prepare=fake_prepare) as gw:
            for origin in ("https://dash.example", f"http://127.0.0.1:{gw.port}"):
                async with open_client(gw.port, token=TOKENS["alice"][0], origin=origin):
                    pass
            with pytest.raises(InvalidStatus):
                async with open_client(gw.port, token=TOKENS["alice"][0],
                                       origin="http://127.0.0.1:1"):
                    pass


async def test_agent_token_may_only_publish_its_apps(tmp_path: Path) -> None:
    from websockets.exceptions import ConnectionClosed

    from mantis_py.gateway.config import parse_config

    cfg = parse_config({"gateway": {"port": 0}, "tokens": [
        {"user": "play-agents", "token": "agent-play", "read": ["play"], "roles": ["agent"]}]})
    with trio.fail_after(10):
        async with open_gateway(cfg, prepare=fake_prepare) as gw:
            async with open_agent(gw.port, "play", token="agent-play"):
                pass
            with pytest.raises(ConnectionClosed) as info:
                async with open_agent(gw.port, "billing", token="agent-play"):
                    pass
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1008
