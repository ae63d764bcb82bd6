"""Plain HTTP endpoints, SSE streaming, connection caps and the internal subscribe hook."""

from __future__ import annotations

import json

import pytest
import trio
from websockets.exceptions import InvalidStatus

from mantis_py.gateway.config import GatewayConfig, Limits, parse_config
from mantis_py.wire.messages import Events, Partial

from .conftest import http_request, open_agent, open_client, open_gateway
from .fakes import CACHE, fake_prepare


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    CACHE.clear()


async def test_healthz_metrics_apps_alerts_and_404() -> None:
    with trio.fail_after(10):
        async with open_gateway(prepare=fake_prepare) as gw, open_agent(gw.port, "play", "p-1"):
            status, _, body = await http_request(gw.port, "GET", "/healthz")
            assert status == 200
            assert json.loads(body)["agents_connected"] == 1
            status, headers, body = await http_request(gw.port, "GET", "/metrics")
            assert status == 200
            assert headers["content-type"].startswith("text/plain; version=0.0.4")
            assert b"# TYPE mantis_gateway_agents_connected gauge" in body
            assert b"mantis_gateway_agents_connected 1" in body
            status, _, body = await http_request(gw.port, "GET", "/v1/apps")
            apps = json.loads(body)["apps"]
            assert apps["play"]["instances"][0]["instance"] == "p-1"
            status, _, body = await http_request(gw.port, "GET", "/v1/alerts")
            assert status == 200
            assert json.loads(body) == {"alerts": []}
            assert (await http_request(gw.port, "GET", "/nope"))[0] == 404
            assert (await http_request(gw.port, "POST", "/healthz"))[0] == 405
            status, headers, body = await http_request(gw.port, "GET", "/")
            assert status == 200
            assert headers["content-type"].startswith("text/html")


async def test_check_endpoint_answers_error_object() -> None:
    with trio.fail_after(10):
        async with open_gateway(prepare=fake_prepare) as gw:
            status, _, body = await http_request(
                gw.port, "POST", "/v1/check", {"content-type": "application/json"},
                json.dumps({"query": "select bad"}).encode())
            assert status == 400
            err = json.loads(body)["error"]
            assert {"message", "line", "column", "snippet", "expected"} <= set(err)


async def test_sse_streams_the_same_messages_and_ends_on_complete() -> None:
    with trio.fail_after(10):
        async with open_gateway(prepare=fake_prepare) as gw, open_agent(gw.port) as agent:
            stream = await trio.open_tcp_stream("127.0.0.1", gw.port)
            async with stream:
                await stream.send_all(
                    b"GET /v1/sse?q=select%20*%20from%20play%20limit%202 HTTP/1.1\r\n"
                    b"Host: x\r\n\r\n")
                sub = await agent.recv_type("subscribe")
                await agent.send(Events("default", [
                    {"subs": [sub["sub"]], "t": 1, "s": i, "e": {"n": i}} for i in range(3)]))
                data = bytearray()
                while chunk := await stream.receive_some(65536):
                    data += chunk
            text = data.decode()
            assert text.startswith("HTTP/1.1 200")
            assert "text/event-stream" in text
            events = [line[len("event: "):] for line in text.splitlines()
                      if line.startswith("event: ")]
            assert events == ["accepted", "rows", "complete"]
            assert '"rows":[{"n":0},{"n":1}]' in text


async def test_connection_caps_answer_429_and_503_before_the_upgrade() -> None:
    config = GatewayConfig(port=0, limits=Limits(connections_per_user=2, connections_total=3))
    with trio.fail_after(10):
        async with open_gateway(config, prepare=fake_prepare) as gw, \
                open_client(gw.port), open_client(gw.port):
            with pytest.raises(InvalidStatus) as info:
                async with open_client(gw.port):
                    pass
            assert info.value.response.status_code == 429
    tokens = [{"user": f"u{i}", "token": f"t{i}", "read": ["*"]} for i in range(3)]
    config = parse_config({"limits": {"connections_total": 2}, "tokens": tokens}, port=0)
    with trio.fail_after(10):
        async with open_gateway(config, prepare=fake_prepare) as gw, \
                open_client(gw.port, token="t0"), open_client(gw.port, token="t1"):
            with pytest.raises(InvalidStatus) as info:
                async with open_client(gw.port, token="t2"):
                    pass
            assert info.value.response.status_code == 503


async def test_internal_subscribe_yields_client_protocol_dicts() -> None:
    with trio.fail_after(10):
        async with open_gateway(prepare=fake_prepare) as gw, open_agent(gw.port) as agent:
            async with gw.subscribe("select count(*) from play window 1") as results:
                accepted = await results.receive()
                assert accepted["type"] == "accepted"
                sub = await agent.recv_type("subscribe")
                start = int(sub["start"]) + 1
                await agent.send(Partial(sub["sub"], {"window": [start, start + 1], "count": 4}))
                rows = await results.receive()
                assert rows == {"type": "rows", "id": "q", "window": [start, start + 1],
                                "rows": [{"count": 4}]}
                meta = await results.receive()
                assert meta["type"] == "meta"
                assert meta["coverage"] == {"reporting": 1, "expected": 1}
            assert (await agent.recv_type("unsubscribe"))["sub"] == sub["sub"]
