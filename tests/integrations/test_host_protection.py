"""An integration never raises into its host, never changes what the app returns, and builds
nothing while nobody listens, even around an agent whose calls fail."""

from __future__ import annotations

import logging
from typing import Any

import trio

from mantis_py.integrations.asgi import MantisASGIMiddleware, route_template
from mantis_py.integrations.logging import MantisLogHandler
from mantis_py.integrations.wsgi import MantisWSGIMiddleware


class BrokenAgent:
    """An agent whose publish fails (the real one never does; the integration must not care)."""

    def __init__(self, listening: bool = True) -> None:
        self.listening = listening
        self.asked = 0
        self.config = None

    def has_subscribers(self, stream: str = "default") -> bool:
        self.asked += 1
        return self.listening

    def publish(self, event: Any, stream: str = "default") -> None:
        raise RuntimeError("agent bug")


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_asgi_swallows_its_own_failures_and_passes_messages_through() -> None:
    agent = BrokenAgent()
    mw = MantisASGIMiddleware(asgi_app, agent=agent)
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    with trio.fail_after(5):
        await mw({"type": "http", "method": "GET", "path": "/x", "headers": []}, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert mw.statistics().built == 1
    assert mw.statistics().failed == 1
    agent.listening = False
    await mw({"type": "http", "method": "GET", "path": "/x", "headers": []}, receive, send)
    assert mw.statistics().built == 1  # nobody listening: nothing built
    await mw({"type": "lifespan"}, receive, send)  # lifespan passes through untouched
    assert agent.asked == 2


def test_wsgi_swallows_its_own_failures_and_returns_the_body_unchanged() -> None:
    agent = BrokenAgent()

    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"a", b"bc"]

    mw = MantisWSGIMiddleware(app, agent=agent)
    statuses: list[str] = []
    body = mw({"REQUEST_METHOD": "GET", "PATH_INFO": "/x"}, lambda s, h, e=None: statuses.append(s))
    assert b"".join(body) == b"abc"
    body.close()  # type: ignore[attr-defined]
    assert statuses == ["200 OK"]
    assert mw.statistics().built == 1
    assert mw.statistics().failed == 1


def test_log_handler_swallows_its_own_failures() -> None:
    handler = MantisLogHandler(BrokenAgent())
    log = logging.getLogger("itest.protect")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.error("still fine")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    assert handler.statistics().built == 1
    assert handler.statistics().failed == 1


def test_route_template_of_a_mounted_route_includes_the_mount() -> None:
    class R:
        path_format = "/users/{uid}"

    scope = {"route": R(), "root_path": "/api", "app_root_path": ""}
    assert route_template(scope) == "/api/users/{uid}"
    assert route_template({"route": "/plain/{x}"}) == "/plain/{x}"
    assert route_template({}) is None
