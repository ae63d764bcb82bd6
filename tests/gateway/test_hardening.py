"""Issue 9 attacks on the gateway: /v1/check without a token or rate limit, E222 suggestions that
name apps the caller may not read, tokens leaking into DEBUG logs, a client flood locking agents
out, the unknown-subscription drop counter counting frames instead of records, compile CPU."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import trio

from mantis_py.gateway.auth import ANONYMOUS, Principal
from mantis_py.gateway.config import GatewayConfig, Limits, TokenConfig
from mantis_py.gateway.core import GatewayCore
from mantis_py.gateway.http import RedactSecrets, ws_log
from mantis_py.wire import codec
from mantis_py.wire.messages import Cancel, Events, Hello, Query

from .conftest import http_request, open_agent, open_client, open_gateway
from .fakes import fake_prepare

TOKEN = "tok-reader-only-play"


def _token(user: str, token: str, read: tuple[str, ...], roles: tuple[str, ...] = ("client",)
           ) -> TokenConfig:
    return TokenConfig(user=user, token_sha256=hashlib.sha256(token.encode()).hexdigest(),
                       read=read, roles=roles)


def _config(**limits: Any) -> GatewayConfig:
    return GatewayConfig(port=0, grace_s=1.0, limits=Limits(**limits), tokens=(
        _token("reader", TOKEN, ("play",)),
        _token("agents", "tok-agents-1234", ("*",), ("agent",)),
    ))


async def _check(port: int, text: str, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    status, _, body = await http_request(port, "POST", "/v1/check", headers,
                                         json.dumps({"query": text}).encode())
    return status, json.loads(body) if body else {}


async def test_check_needs_a_token_and_is_rate_limited_when_tokens_exist() -> None:
    """Before: 200 without a token and no limit (one 16 KB check stalled the gateway)."""
    with trio.fail_after(20):
        async with open_gateway(_config()) as gw:
            status, _body = await _check(gw.port, "select * from play", None)
            assert status == 401
            statuses = [(await _check(gw.port, "select * from play", TOKEN))[0]
                        for _ in range(14)]
            assert statuses[0] == 400 or statuses[0] == 200
            assert 429 in statuses  # burst 10, 5 per second
            assert statuses.count(429) >= 2


async def test_check_never_names_an_app_the_caller_may_not_read() -> None:
    """Before: `select * from secret-ap` got E222 suggesting 'secret-app', an app the token may
    not read. Now no error or suggestion is built from the list of connected apps."""
    with trio.fail_after(20):
        async with open_gateway(_config()) as gw, \
                open_agent(gw.port, app="secret-app", token="tok-agents-1234"), \
                open_agent(gw.port, app="play", instance="i-2", token="tok-agents-1234"):
            for text in ("select * from secret-ap", "select * from secret-app x",
                         "select * from plya where"):
                status, body = await _check(gw.port, text, TOKEN)
                assert status in (200, 400)
                assert "secret-app" not in json.dumps(body).replace(text, "")
            # naming the unreadable app itself is refused as before, over the websocket
            async with open_client(gw.port, token=TOKEN) as ws:
                await ws.send(json.dumps({"type": "query", "id": "q",
                                          "query": "select * from secret-app"}))
                reply = json.loads(await ws.recv())
                assert reply["type"] == "error"
                assert "may not read" in reply["error"]["message"]


async def test_a_client_flood_does_not_lock_agents_out() -> None:
    """Before: agents shared the client cap (2,000): a client flood made agents get 503."""
    with trio.fail_after(20):
        config = GatewayConfig(port=0, grace_s=1.0, limits=Limits(connections_total=2))
        async with open_gateway(config) as gw, open_client(gw.port), open_client(gw.port):
            status, _, _ = await http_request(gw.port, "GET", "/v1/query", {
                "upgrade": "websocket", "connection": "Upgrade", "sec-websocket-version": "13",
                "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="})
            assert status == 503  # the third client is refused
            async with open_agent(gw.port, app="play") as agent:
                assert agent.ws is not None  # ...but an agent still gets in


def test_tokens_with_space_quote_and_ampersand_never_reach_a_debug_log() -> None:
    secret = "s3cr3t tail\"quote'&amp=rest"
    RedactSecrets.remember(secret)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep(level=logging.DEBUG)
    old = ws_log.level
    ws_log.addHandler(handler)
    ws_log.setLevel(logging.DEBUG)
    try:
        ws_log.debug("> Authorization: Bearer %s", secret)
        ws_log.debug("> GET /v1/query?token=%s HTTP/1.1", secret)
        ws_log.debug("headers %r", [("Authorization", f"Bearer {secret}")])
        ws_log.debug("unrelated %s", "authorization: Bearer x y z\r\nnext line")
    finally:
        ws_log.removeHandler(handler)
        ws_log.setLevel(old)
    text = "\n".join(records)
    for piece in ("s3cr3t", "tail", "quote", "amp=rest", "x y z"):
        assert piece not in text, text
    assert "next line" in text


def test_unknown_subscription_drops_count_records_not_frames() -> None:
    """Before: one frame of 500 records tagged with a withdrawn subscription counted 1."""
    core = GatewayCore(GatewayConfig(grace_s=2.0), now=1000.0, prepare=fake_prepare)
    core.open_agent("a1", ANONYMOUS, 1000.0)
    core.receive_agent_data("a1", codec.encode(Hello("play", "i-a1", ("default",))), 1000.0)
    for _frame in range(3):
        records = [{"subs": ["gone"], "t": 1_000_000 + i, "s": i, "e": {"n": i}}
                   for i in range(500)]
        core.receive_agent_data("a1", codec.encode(Events("default", records)), 1000.1)
    assert core.metrics.value("dropped_total", reason="unknown_subscription") == 1500


def test_compile_cpu_is_accounted_per_user_and_budgeted() -> None:
    core = GatewayCore(GatewayConfig(grace_s=2.0, limits=Limits(compile_cpu_per_s=0.1,
                                                                compile_cpu_burst_s=0.5)),
                       now=1000.0, prepare=fake_prepare)
    core.charge_compile("mallory", 0.4, 1000.0)
    assert core.compile_allowed("mallory", 1000.0)
    core.charge_compile("mallory", 0.4, 1000.0)  # 0.3 s in debt
    assert not core.compile_allowed("mallory", 1000.0)
    assert core.compile_allowed("alice", 1000.0)  # other users are not affected
    assert core.metrics.value("compile_cpu_seconds_total", user="mallory") == 0.8
    assert core.compile_allowed("mallory", 1004.0)  # the debt is paid back at 0.1 s per second


def test_live_queries_are_budgeted_per_user_in_columns() -> None:
    """Before: an accepted wide query cost nothing once compiled, so one user could keep dozens of
    250-column queries running at every agent of an app (another client's windows then arrived
    up to 1.8 s late). Now the columns of a user's distinct live queries are budgeted."""
    core = GatewayCore(GatewayConfig(grace_s=2.0, limits=Limits(live_columns_per_user=10)),
                       now=1000.0)
    mallory = Principal("mallory", ("*",))
    for cid in ("m1", "m2"):
        core.open_client(cid, mallory, 1000.0)
    core.open_client("a1", Principal("alice", ("*",)), 1000.0)
    wide = "select a, b, c, d from play window 1 group by e, f"  # 4 items + 2 keys = 6 columns

    def submit(cid: str, qid: str, text: str) -> dict[str, Any]:
        core.receive_client_data(cid, codec.encode(Query(qid, text)), 1000.0)
        frames = []
        while (frame := core.next_frame(cid, 1000.0)) is not None:
            frames.append(codec.to_plain(codec.decode(frame[0])))
        return next(f for f in frames if f["id"] == qid)

    assert submit("m1", "q1", wide)["type"] == "accepted"
    assert submit("m2", "q1", wide)["type"] == "accepted"  # the same query again: no cost
    refused = submit("m1", "q2", wide.replace("group by e, f", "group by e, g"))
    assert refused["type"] == "error"
    assert refused["error"]["code"] == "live_budget"
    assert "12 columns" in refused["error"]["message"]
    assert submit("a1", "q1", wide.replace("e, f", "e, g"))["type"] == "accepted"  # alice: own
    got = submit("m1", "q3", "select count(*) as n from play window 1")
    assert got["type"] == "accepted", got  # 6 + 1 <= 10
    core.receive_client_data("m1", codec.encode(Cancel("q1")), 1000.0)
    assert submit("m1", "q4", "select x, y, z, w from play")["type"] == "error"  # 7 + 4: m2 still runs q1
    core.close_client("m2", 1000.0)
    assert submit("m1", "q5", "select x, y, z, w from play")["type"] == "accepted"  # 1 + 4


def test_a_query_that_completes_gives_its_columns_back() -> None:
    """Review find: the budget was kept beside the attachments and only released on cancel or
    close, so queries ended by LIMIT (or an engine error) kept their columns for ever."""
    core = GatewayCore(GatewayConfig(grace_s=2.0, limits=Limits(live_columns_per_user=4)),
                       now=1000.0)
    core.open_agent("a1", ANONYMOUS, 1000.0)
    core.receive_agent_data("a1", codec.encode(Hello("play", "i-a1", ("default",))), 1000.0)
    core.open_client("m1", Principal("mallory", ("*",)), 1000.0)

    def submit(qid: str, text: str) -> str:
        core.receive_client_data("m1", codec.encode(Query(qid, text)), 1000.0)
        frames = []
        while (frame := core.next_frame("m1", 1000.0)) is not None:
            frames.append(codec.to_plain(codec.decode(frame[0])))
        return next(f["type"] for f in frames if f["id"] == qid)

    assert submit("q1", "select a, b, c from play limit 1") == "accepted"  # 3 of 4 columns
    assert submit("q2", "select x, y from play") == "error"  # 3 + 2 > 4
    sid = next(iter(core.registry.subs))
    core.receive_agent_data("a1", codec.encode(Events("default", [
        {"subs": [sid], "t": 1_000_000, "s": 0, "e": {"a": 1, "b": 2, "c": 3}}])), 1000.1)
    assert "q1" not in core.clients["m1"].attachments  # LIMIT 1 completed the query
    assert submit("q3", "select x, y from play") == "accepted"  # its columns came back
