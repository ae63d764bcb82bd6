"""Integrations benchmark: what the middlewares and the log handler add per request / record, as
ratios against the bare app (or a NullHandler) measured in the same run.

    .venv/bin/python bench/integrations_bench.py [--json] [--quick]

Figures (issue #12, "Performance"):
- asgi_idle:        a Starlette app wrapped in MantisASGIMiddleware, nobody subscribed
                    / the bare app, both driven by a direct ASGI call loop (<= 1.05)
- asgi_subscribed:  the same with a query on ``requests`` (<= 1.3)
- wsgi_idle:        a Flask app with MantisWSGIMiddleware, nobody subscribed
                    / the bare app, both driven by a direct WSGI call loop (<= 1.05)
- wsgi_subscribed:  the same with a query on ``requests`` (<= 1.3)
- log_idle:         ``logger.info(...)`` into a MantisLogHandler, nobody subscribed
                    / into a NullHandler (<= 1.05)
- log_subscribed:   the same with a query on ``log`` (<= 1.3)

The agents are never started (no thread, no socket); a subscribed agent gets its query through
``mantis_py.testing.LinkPair`` and its queue is drained outside the timing
every 50 calls (the agent thread drains every 50 ms), so the figures are the host thread's cost. Times are the measuring thread's CPU time
(``time.thread_time_ns``); baseline and candidate rounds are interleaved and
the fastest round of each is compared (contention on a shared machine only adds time).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mantis_py.agents import Agent
from mantis_py.integrations.asgi import MantisASGIMiddleware
from mantis_py.integrations.logging import MantisLogHandler
from mantis_py.integrations.wsgi import MantisWSGIMiddleware
from mantis_py.testing import LinkPair

REQUESTS_QUERY = "select route, status, p99(latency_ms) from app/requests window 5 group by route, status"
LOG_QUERY = "select level, logger, message from app/log where level == 'ERROR' or level == 'INFO'"
TARGETS = {"idle": 1.05, "subscribed": 1.3}
CHUNK = 50
"""Calls timed between two drains of the agent (baseline runs are chunked the same way)."""


PAIRS: dict[int, LinkPair] = {}


def agent(query: str | None, stream: str = "requests") -> Agent:
    a = Agent("app", "ws://127.0.0.1:9")  # never started: no thread, no socket
    if query is not None:
        pair = LinkPair(a._core, now=time.time())
        pair.subscribe("q", query, stream=stream, start=time.time())
        assert a.has_subscribers(stream)
        PAIRS[id(a)] = pair
    return a


def drain(a: Agent | None) -> None:
    """The agent thread's work (match, fold, encode, ship), done outside the timing, after every
    ``CHUNK`` calls as the agent thread would (it drains its queues every 50 ms), so the host
    never holds more queued events than it would in a service."""
    pair = PAIRS.get(id(a)) if a is not None else None
    if pair is not None:
        pair.pump(time.time())
        pair.received.clear()
    gc.collect(0)  # the young garbage of this untimed work is not collected in the next timed chunk


def paired(candidate: Callable[[], float], baseline: Callable[[], float],
           repeats: int) -> tuple[float, float, float]:
    """Interleave baseline / candidate rounds (each returns ns per item); returns (fastest
    candidate ns, fastest baseline ns, their ratio). The fastest round is the one the shared
    machine disturbed least: contention only ever adds time."""
    cs, bs = [], []
    for _ in range(repeats):
        bs.append(baseline())
        cs.append(candidate())
    c, b = min(cs), min(bs)
    return c, b, c / b


# --------------------------------------------------------------------------- ASGI


def starlette_app() -> Starlette:
    async def hello(request: Request) -> Response:
        return PlainTextResponse("hello " + request.path_params["name"])

    async def item(request: Request) -> Response:
        return PlainTextResponse("item")

    return Starlette(routes=[Route("/items/{item_id:int}", item), Route("/users/{uid}", item),
                             Route("/hello/{name}", hello)])


def asgi_runner(app: Any, n: int, loop: asyncio.AbstractEventLoop,
                a: Agent | None) -> Callable[[], float]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench/1"),
               (b"accept", b"*/*")]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def loop_calls(k: int) -> None:
        for _ in range(k):
            await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                       "method": "GET", "scheme": "http", "path": "/hello/ana",
                       "raw_path": b"/hello/ana", "root_path": "", "query_string": b"",
                       "headers": headers, "client": ("127.0.0.1", 5000),
                       "server": ("127.0.0.1", 8000)}, receive, send)

    def run() -> float:
        spent = 0
        for _ in range(n // CHUNK):
            t0 = time.thread_time_ns()
            loop.run_until_complete(loop_calls(CHUNK))
            spent += time.thread_time_ns() - t0
            drain(a)
        return spent / n

    return run


# --------------------------------------------------------------------------- WSGI


def flask_app() -> Flask:
    app = Flask("bench")

    @app.get("/hello/<name>")
    def hello(name: str) -> str:
        return "hello " + name

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> str:
        return "item"

    return app


ENVIRON = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/hello/ana",
           "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
           "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
           "HTTP_HOST": "127.0.0.1:8000", "HTTP_USER_AGENT": "bench/1", "HTTP_ACCEPT": "*/*",
           "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
           "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False}


def wsgi_runner(app: Any, n: int, a: Agent | None) -> Callable[[], float]:
    def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
        return lambda data: None

    def run() -> float:
        spent = 0
        for _ in range(n // CHUNK):
            t0 = time.thread_time_ns()
            for _ in range(CHUNK):
                environ = dict(ENVIRON)
                environ["wsgi.input"] = io.BytesIO(b"")
                body = app(environ, start_response)
                for _chunk in body:
                    pass
                close = getattr(body, "close", None)
                if close is not None:
                    close()
            spent += time.thread_time_ns() - t0
            drain(a)
        return spent / n

    return run


# --------------------------------------------------------------------------- logging


def log_runner(handler: logging.Handler, name: str, n: int, a: Agent | None) -> Callable[[], float]:
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(logging.INFO)
    log.handlers[:] = [handler]

    def run() -> float:
        spent = 0
        for _ in range(n // CHUNK):
            t0 = time.thread_time_ns()
            for i in range(CHUNK):
                log.info("request %s done in %d ms", "/hello/ana", i)
            spent += time.thread_time_ns() - t0
            drain(a)
        return spent / n

    return run


def check(a: Agent, stream: str, subscribed: bool) -> None:
    """The subscribed runs offered their events (none dropped at the host); idle ones none."""
    s = a.statistics().streams.get(stream)
    if not subscribed:
        assert s is None or s.offered == 0, s
        return
    assert s is not None, stream
    assert s.offered > 0, s
    assert not s.dropped, s  # no host-side drop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    args = ap.parse_args()
    # rounds stay below the agent's queue cap (1,000 events): nothing is dropped while timing
    n, repeats = (500, 7) if args.quick else (900, 25)

    result: dict[str, Any] = {}
    loop = asyncio.new_event_loop()
    try:
        bare = asgi_runner(starlette_app(), n, loop, None)
        for case, query in (("idle", None), ("subscribed", REQUESTS_QUERY)):
            a = agent(query)
            wrapped = asgi_runner(MantisASGIMiddleware(starlette_app(), agent=a), n, loop, a)
            c, b, r = paired(wrapped, bare, repeats)
            result[f"asgi_{case}"] = {"ns": round(c), "baseline_ns": round(b), "ratio": round(r, 3),
                                      "target": TARGETS[case]}
            check(a, "requests", query is not None)
    finally:
        loop.close()

    bare_flask = wsgi_runner(flask_app(), n, None)
    for case, query in (("idle", None), ("subscribed", REQUESTS_QUERY)):
        a = agent(query)
        app = flask_app()
        app.wsgi_app = MantisWSGIMiddleware(app.wsgi_app, agent=a)  # type: ignore[method-assign]
        c, b, r = paired(wsgi_runner(app, n, a), bare_flask, repeats)
        result[f"wsgi_{case}"] = {"ns": round(c), "baseline_ns": round(b), "ratio": round(r, 3),
                                  "target": TARGETS[case]}
        check(a, "requests", query is not None)

    null = log_runner(logging.NullHandler(), "bench.null", n, None)
    for case, query in (("idle", None), ("subscribed", LOG_QUERY)):
        a = agent(query, "log")
        c, b, r = paired(log_runner(MantisLogHandler(a), f"bench.{case}", n, a), null, repeats)
        result[f"log_{case}"] = {"ns": round(c), "baseline_ns": round(b), "ratio": round(r, 3),
                                 "target": TARGETS[case]}
        check(a, "log", query is not None)

    if args.json:
        print(json.dumps(result))
        return
    for name, v in result.items():
        verdict = "ok" if v["ratio"] <= v["target"] else "OVER"
        print(f"{name:18s} ratio {v['ratio']:6.3f}  target <= {v['target']:<5}  {verdict:4s} "
              f"({v['ns']} ns vs {v['baseline_ns']} ns per call)")


if __name__ == "__main__":
    main()
