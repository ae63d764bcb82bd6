"""MantisWSGIMiddleware around a Flask app under a real waitress server, with a real agent and a
real gateway: live queries over ``requests`` see exactly the requests made."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, request

from mantis_py.integrations.wsgi import MantisWSGIMiddleware

from .helpers import (
    Caught,
    LiveQuery,
    Traffic,
    caught_logs,
    running_agent,
    running_gateway,
    serve_wsgi,
    wait_for,
)
from .helpers import request as http_request

pytestmark = pytest.mark.timeout(90)

FIELDS = ("method, route, path, status, exception, bytes_in, bytes_out, client, user_agent, "
          "http_version, latency_ms")
CHUNKS = [f"chunk {i:02d}\n".encode() * 50 for i in range(20)]


def make_app(propagate: bool) -> Flask:
    app = Flask("itest")
    app.config["PROPAGATE_EXCEPTIONS"] = propagate

    @app.get("/hello/<name>")
    def hello(name: str) -> str:
        return f"hello {name}"

    @app.route("/items/<int:item_id>", methods=["GET", "POST"])
    def item(item_id: int) -> tuple[str, int]:
        body = request.get_data()
        return f"item {item_id} {len(body)}", 201 if request.method == "POST" else 200

    @app.get("/boom")
    def boom() -> str:
        raise ZeroDivisionError("boom")

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[bytes]:
            yield from CHUNKS

        return Response(chunks(), mimetype="text/plain")

    return app


@pytest.fixture
def caught() -> Iterator[Caught]:
    with caught_logs("waitress", "itest") as handler:
        yield handler


def traffic(port: int) -> list[tuple[str, str, str, int]]:
    traffic = Traffic(port)
    call, made = traffic.call, traffic.made
    for name in ("ana", "bo", "ana"):
        assert call("GET", "/hello/<name>", f"/hello/{name}") == f"hello {name}".encode()
    call("GET", "/items/<int:item_id>", "/items/7")
    assert call("POST", "/items/<int:item_id>", "/items/8", b"x" * 123) == b"item 8 123"
    call("GET", "/boom", "/boom")
    assert call("GET", "/stream", "/stream") == b"".join(CHUNKS)  # streamed body intact
    call("GET", "/nowhere", "/nowhere")  # 404: the path stands in for the template
    return made


@pytest.mark.parametrize("propagate", [False, True], ids=["flask-handles", "server-handles"])
def test_requests_stream_holds_exactly_the_requests_made(propagate: bool, caught: Caught) -> None:
    with running_gateway() as gw, running_agent("shop", gw) as agent:
        app = make_app(propagate)
        mw = MantisWSGIMiddleware(app.wsgi_app, agent=agent)
        app.wsgi_app = mw  # type: ignore[method-assign]
        with serve_wsgi(app) as port:
            for _ in range(5):
                assert http_request(port, "GET", "/hello/x")[0] == 200
            assert mw.statistics().built == 0  # nobody subscribed: nothing built or offered
            assert "requests" not in agent.statistics().streams or (
                agent.statistics().streams["requests"].offered == 0)

            raw_q = LiveQuery(gw, f"select {FIELDS} from shop/requests")
            count_q = LiveQuery(gw, "select method, route, status, count(*) as n "
                                    "from shop/requests window 1 group by method, route, status")
            with raw_q, count_q:
                wait_for(lambda: len(agent.statistics().subs) == 2, what="both subscriptions")
                wait_for(lambda: bool(count_q.windows), what="the first window")
                made = traffic(port)
                wait_for(lambda: len(raw_q.rows) >= len(made), what="every request's row")
                wait_for(lambda: sum(r["n"] for _, rows in count_q.windows for r in rows)
                         >= len(made), what="the windowed counts")
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
    assert all(r["client"] == "127.0.0.1" and r["http_version"] in ("1.1", "1.0") for r in rows)
    assert {r["user_agent"] for r in rows} == {"itest/1"}
    got: Counter[tuple[Any, ...]] = Counter()
    for _, wrows in count_q.windows:
        for r in wrows:
            got[(r["method"], r["route"], r["status"])] += r["n"]
    assert got == Counter((m, r, s) for m, r, _, s in made)
    assert stats.built == len(made)
    assert stats.failed == 0
    # the exception still reached whoever handles it: Flask's own log, or the server's
    errors = [r for r in caught.records if r.exc_info and r.exc_info[0] is ZeroDivisionError]
    assert len(errors) == 1
    assert errors[0].name == ("waitress" if propagate else "itest")
