"""TLS (SYSTEM.md §6): wss:// for agents and clients, https:// for plain endpoints."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
import trio
from websockets.trio.client import connect

from mantis_py.gateway.config import GatewayConfig
from mantis_py.wire.messages import SUBPROTOCOL, Events

from .conftest import ScriptedAgent, open_gateway, recv_json
from .fakes import CACHE, fake_prepare

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture
def cert(tmp_path: Path) -> tuple[str, str]:
    key, crt = tmp_path / "gw.key", tmp_path / "gw.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(crt), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return str(crt), str(key)


async def test_agents_and_clients_over_wss(cert: tuple[str, str]) -> None:
    CACHE.clear()
    crt, key = cert
    config = GatewayConfig(port=0, tls_cert=crt, tls_key=key)
    ctx = ssl.create_default_context(cafile=crt)
    with trio.fail_after(20):
        async with open_gateway(config, prepare=fake_prepare) as gw:
            base = f"wss://127.0.0.1:{gw.port}"
            async with connect(f"{base}/v1/agent", ssl=ctx, subprotocols=[SUBPROTOCOL]) as aws, \
                    connect(f"{base}/v1/query", ssl=ctx) as ws:
                agent = ScriptedAgent(aws)
                from mantis_py.wire.messages import Hello

                await agent.send(Hello("play", "tls-1", ("default",)))
                assert (await agent.recv())["type"] == "welcome"
                await ws.send(json.dumps({"type": "query", "id": "q", "query": "select * from play"}))
                assert (await recv_json(ws))["type"] == "accepted"
                sub = await agent.recv_type("subscribe")
                await agent.send(Events("default", [{"subs": [sub["sub"]], "t": 1, "s": 0,
                                                     "e": {"secure": True}}]))
                assert (await recv_json(ws))["rows"] == [{"secure": True}]
            # plain HTTP endpoints answer over https too
            stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", gw.port, ssl_context=ctx,
                                                        https_compatible=True)
            async with stream:
                await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                data = bytearray()
                try:
                    while chunk := await stream.receive_some():
                        data += chunk
                except trio.BrokenResourceError:
                    pass
            assert data.startswith(b"HTTP/1.1 200")


async def test_a_real_agent_and_the_real_engine_over_wss(cert: tuple[str, str]) -> None:
    """The threaded Agent connects with wss:// and a client's query flows end to end over TLS."""
    from mantis_py.agents import Agent
    from mantis_py.gateway.server import serve_gateway

    crt, key = cert
    ctx = ssl.create_default_context(cafile=crt)
    config = GatewayConfig(port=0, tls_cert=crt, tls_key=key, grace_s=0.5, heartbeat_s=1.0)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            gw = await nursery.start(
                lambda task_status: serve_gateway(config, alerts=False, task_status=task_status)
            )
            base = f"wss://127.0.0.1:{gw.port}"
            agent = Agent("tlsapp", base, ssl=ctx, reconnect_min_s=0.05, reconnect_max_s=0.4)
            agent.start()
            try:
                while not agent.connected:  # noqa: ASYNC110 - bounded by fail_after
                    await trio.sleep(0.02)
                async with connect(f"{base}/v1/query", ssl=ctx) as ws:
                    await ws.send(json.dumps(
                        {"type": "query", "id": "q", "query": "select n from tlsapp where n >= 0"}
                    ))
                    assert (await recv_json(ws))["type"] == "accepted"
                    rows: list[object] = []
                    n = 0
                    while not rows:
                        agent.publish({"n": n, "other": "x"})
                        n += 1
                        with trio.move_on_after(0.1):
                            msg = await recv_json(ws)
                            if msg["type"] == "rows":
                                rows = msg["rows"]
                    assert rows[0] == {"n": rows[0]["n"]}  # type: ignore[index]
                    assert isinstance(rows[0]["n"], int)  # type: ignore[index]
            finally:
                await trio.to_thread.run_sync(agent.close)
            nursery.cancel_scope.cancel()
