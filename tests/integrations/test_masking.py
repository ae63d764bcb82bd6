"""Captured headers and query-string values the agent masks never reach the wire: every frame
the agent sends is scanned for the secrets while real requests flow through both middlewares."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mantis_py.agents import sync as agent_sync
from mantis_py.integrations.asgi import MantisASGIMiddleware
from mantis_py.integrations.wsgi import MantisWSGIMiddleware

from .helpers import (
    LiveQuery,
    request,
    running_agent,
    running_gateway,
    serve_asgi,
    serve_wsgi,
    wait_for,
)

pytestmark = pytest.mark.timeout(90)

SECRETS = {"token": "zq-token-4411", "key": "zq-key-5522", "bearer": "zq-bearer-6633",
           "cookie": "zq-cookie-7744", "pw": "zq-pw-8855"}


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every frame the threaded agent hands its websocket sender."""
    frames: list[bytes] = []
    real_put = agent_sync._Sender.put

    def put(self: Any, batch: list[Any]) -> None:
        frames.extend(f.data for f in batch)
        real_put(self, batch)

    monkeypatch.setattr(agent_sync._Sender, "put", put)
    return frames


async def hello(request: Request) -> Response:
    return PlainTextResponse("hi")


def flask_app() -> Flask:
    app = Flask("itest-mask")

    @app.get("/hello/<name>")
    def hello(name: str) -> str:
        return "hi"

    return app


def serve(kind: str, agent: Any) -> Any:
    opts: dict[str, Any] = {"capture_headers": ("x-api-key", "authorization", "cookie", "accept"),
                            "capture_query": True}
    if kind == "asgi":
        return serve_asgi(MantisASGIMiddleware(
            Starlette(routes=[Route("/hello/{name}", hello)]), agent=agent, **opts))
    app = flask_app()
    app.wsgi_app = MantisWSGIMiddleware(app.wsgi_app, agent=agent, **opts)  # type: ignore[method-assign]
    return serve_wsgi(app)


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_masked_headers_and_query_values_never_reach_the_wire(kind: str,
                                                              wire: list[bytes]) -> None:
    s = SECRETS
    with running_gateway() as gw, \
            running_agent("shop", gw, mask=("token", "password", "x-api-key")) as agent, \
            serve(kind, agent) as port, \
            LiveQuery(gw, "select path, headers, query from shop/requests") as q:
            wait_for(lambda: agent.has_subscribers("requests"), what="the subscription")
            for i in range(5):
                status, _ = request(
                    port, "GET", f"/hello/{i}?token={s['token']}&page={i}&Password={s['pw']}",
                    {"X-Api-Key": s["key"], "Authorization": f"Bearer {s['bearer']}",
                     "Cookie": f"sid={s['cookie']}", "Accept": "text/plain"})
                assert status == 200
            wait_for(lambda: len(q.rows) >= 5, what="five rows")
    assert len(q.rows) == 5
    for row in q.rows:
        assert row["headers"] == {"x-api-key": "[masked]", "authorization": "[masked]",
                                  "cookie": "[masked]", "accept": "text/plain"}
        page = row["path"].rsplit("/", 1)[1]
        assert row["query"] == {"token": "[masked]", "page": page, "Password": "[masked]"}
    data = b"".join(wire)
    assert b"/hello/4" in data  # the scan looks at the frames that carried the rows
    for secret in s.values():
        assert secret.encode() not in data
