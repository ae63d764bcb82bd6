"""MantisASGIMiddleware around a FastAPI app under a real uvicorn server, with a real agent and a
real gateway: the route is FastAPI's path template (path parameters, a router prefix), whatever
the status, and an exception still reaches the server."""

from __future__ import annotations

from collections import Counter

import pytest
from fastapi import APIRouter, FastAPI, HTTPException

from mantis_py.integrations.asgi import MantisASGIMiddleware

from .helpers import (
    Caught,
    LiveQuery,
    request,
    running_agent,
    running_gateway,
    serve_asgi,
    wait_for,
)

pytestmark = pytest.mark.timeout(90)


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        if item_id == 404:
            raise HTTPException(status_code=404, detail="no such item")
        return {"item_id": item_id}

    @app.post("/items/{item_id}/tags/{tag}", status_code=201)
    async def tag_item(item_id: int, tag: str) -> dict[str, str]:
        return {"tag": tag}

    @app.get("/boom")
    def boom() -> None:  # a sync endpoint: FastAPI runs it in a worker thread
        raise KeyError("boom")

    users = APIRouter(prefix="/api/users")

    @users.get("/{uid}")
    async def read_user(uid: str) -> dict[str, str]:
        return {"uid": uid}

    app.include_router(users)
    return app


def test_fastapi_routes_are_path_templates(server_log: Caught) -> None:
    with running_gateway() as gw, running_agent("api", gw) as agent:
        mw = MantisASGIMiddleware(make_app(), agent=agent)
        with serve_asgi(mw) as port:
            assert request(port, "GET", "/items/1")[0] == 200
            assert mw.statistics().built == 0  # nobody listening yet: nothing built

            with LiveQuery(gw, "select method, route, path, status, exception, bytes_out "
                               "from api/requests") as q:
                wait_for(lambda: len(agent.statistics().subs) == 1, what="the subscription")
                made: list[tuple[str, str, str, int]] = []

                def call(method: str, route: str, path: str, want: int) -> bytes:
                    status, body = request(port, method, path, {"User-Agent": "itest/1"})
                    assert status == want, (path, status, body)
                    made.append((method, route, path, status))
                    return body

                assert call("GET", "/items/{item_id}", "/items/7", 200) == b'{"item_id":7}'
                call("GET", "/items/{item_id}", "/items/8", 200)
                call("GET", "/items/{item_id}", "/items/404", 404)  # HTTPException from the route
                call("GET", "/items/{item_id}", "/items/seven", 422)  # FastAPI's validation
                call("POST", "/items/{item_id}/tags/{tag}", "/items/7/tags/red", 201)
                call("GET", "/api/users/{uid}", "/api/users/42", 200)  # router prefix
                call("GET", "/boom", "/boom", 500)
                call("GET", "/nowhere", "/nowhere", 404)  # no route: the path stands in
                wait_for(lambda: len(q.rows) >= len(made), what="every request's row")
            stats = mw.statistics()

    rows = q.rows
    assert len(rows) == len(made)
    assert Counter((r["method"], r["route"], r["path"], r["status"]) for r in rows) == Counter(made)
    by_path = {r["path"]: r for r in rows}
    assert by_path["/items/7"]["bytes_out"] == len(b'{"item_id":7}')
    assert by_path["/boom"]["exception"] == "KeyError"
    assert [r["path"] for r in rows if r.get("exception")] == ["/boom"]
    assert stats.built == len(made)
    assert stats.failed == 0
    # the exception still reached the server, unchanged
    errors = [r for r in server_log.records if r.exc_info and r.exc_info[0] is KeyError]
    assert len(errors) == 1
