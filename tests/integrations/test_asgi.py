"""MantisASGIMiddleware around a Starlette app under a real uvicorn server, with a real agent and a
real gateway: live queries over ``requests`` see exactly the requests made."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.sync.client import connect

from mantis_py.integrations.asgi import MantisASGIMiddleware

from .helpers import (
    Caught,
    LiveQuery,
    Traffic,
    request,
    running_agent,
    running_gateway,
    serve_asgi,
    wait_for,
)

pytestmark = pytest.mark.timeout(90)

FIELDS = ("method, route, path, status, exception, bytes_in, bytes_out, client, user_agent, "
          "http_version, latency_ms")
CHUNKS = [f"chunk {i:02d}\n".encode() * 50 for i in range(20)]


async def hello(request: Request) -> Response:
    return PlainTextResponse(f"hello {request.path_params['name']}")


async def item(request: Request) -> Response:
    body = await request.body()
    return PlainTextResponse(f"item {request.path_params['item_id']} {len(body)}", status_code=201
                             if request.method == "POST" else 200)


async def boom(request: Request) -> Response:
    raise ZeroDivisionError("boom")


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for c in CHUNKS:
            yield c

    return StreamingResponse(chunks(), media_type="text/plain")


async def user(request: Request) -> Response:
    return PlainTextResponse(f"user {request.path_params['uid']}")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text(f"{websocket.path_params['room']}:{text}")
    await websocket.close()


def make_app() -> Starlette:
    return Starlette(routes=[
        Route("/hello/{name}", hello),
        Route("/items/{item_id:int}", item, methods=["GET", "POST"]),
        Route("/boom", boom),
        Route("/stream", stream),
        WebSocketRoute("/ws/{room}", echo),
        Mount("/api", routes=[Route("/users/{uid}", user)]),
    ])


def traffic(port: int) -> list[tuple[str, str, str, int]]:
    """The requests of the test: (method, route template, path, status), as made."""
    traffic = Traffic(port)
    call, made = traffic.call, traffic.made
    for name in ("ana", "bo", "ana"):
        assert call("GET", "/hello/{name}", f"/hello/{name}") == f"hello {name}".encode()
    call("GET", "/items/{item_id}", "/items/7")
    assert call("POST", "/items/{item_id}", "/items/8", b"x" * 123) == b"item 8 123"
    call("GET", "/boom", "/boom")
    assert call("GET", "/stream", "/stream") == b"".join(CHUNKS)  # streamed body intact
    call("GET", "/api/users/{uid}", "/api/users/42")
    call("GET", "/nowhere", "/nowhere")  # no route: the path stands in for the template
    with connect(f"ws://127.0.0.1:{port}/ws/lobby") as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "lobby:hi"
    made.append(("WEBSOCKET", "/ws/{room}", "/ws/lobby", 101))
    return made


def test_requests_stream_holds_exactly_the_requests_made(server_log: Caught) -> None:
    with running_gateway() as gw, running_agent("shop", gw) as agent:
        mw = MantisASGIMiddleware(make_app(), agent=agent)
        with serve_asgi(mw) as port:
            # nobody subscribed: requests are served and nothing is built or offered
            for _ in range(5):
                assert request(port, "GET", "/hello/x")[0] == 200
            assert mw.statistics().built == 0
            assert "requests" not in agent.statistics().streams or (
                agent.statistics().streams["requests"].offered == 0)

            raw_q = LiveQuery(gw, f"select {FIELDS} from shop/requests")
            count_q = LiveQuery(gw, "select method, route, status, count(*) as n "
                                    "from shop/requests window 1 group by method, route, status")
            with raw_q, count_q:
                wait_for(lambda: len(agent.statistics().subs) == 2, what="both subscriptions")
                # the window the query started in is not reported: start on a reported one
                wait_for(lambda: bool(count_q.windows), what="the first window")
                made = traffic(port)
                wait_for(lambda: len(raw_q.rows) >= len(made), what="every request's row")
                want = Counter((m, r, s) for m, r, _, s in made)
                wait_for(lambda: sum(r["n"] for _, rows in count_q.windows for r in rows)
                         >= len(made), what=f"the windowed counts {count_q.windows} {count_q.problems} {agent.statistics()} {count_q.accepted}")
            stats = mw.statistics()

    rows = raw_q.rows
    assert len(rows) == len(made)
    assert Counter((r["method"], r["route"], r["path"], r["status"]) for r in rows) == Counter(made)
    by_path = {r["path"]: r for r in rows}
    assert by_path["/boom"]["status"] == 500
    assert by_path["/boom"]["exception"] == "ZeroDivisionError"
    assert sum(1 for r in rows if r.get("exception")) == 1
    assert by_path["/stream"]["bytes_out"] == len(b"".join(CHUNKS))
    assert by_path["/items/8"]["bytes_in"] == 123
    assert by_path["/hello/bo"]["bytes_out"] == len(b"hello bo")
    ws_row = by_path["/ws/lobby"]
    assert ws_row["bytes_in"] == 2
    assert ws_row["bytes_out"] == len("lobby:hi")
    assert all(r["client"] == "127.0.0.1" and r["http_version"] in ("1.1", "1.0") for r in rows)
    assert all(r["latency_ms"] >= 0 for r in rows)
    assert {r["user_agent"] for r in rows if r["method"] != "WEBSOCKET"} == {"itest/1"}
    # counts per window, summed over the windows, are exactly the requests per group
    got: Counter[tuple[Any, ...]] = Counter()
    for _, wrows in count_q.windows:
        for r in wrows:
            got[(r["method"], r["route"], r["status"])] += r["n"]
    assert got == want
    assert stats.built == len(made)
    assert stats.failed == 0
    # the exception still reached the server, unchanged
    errors = [r for r in server_log.records if r.exc_info and r.exc_info[0] is ZeroDivisionError]
    assert len(errors) == 1
