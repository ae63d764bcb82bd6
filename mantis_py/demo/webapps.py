"""The demo's three services as real web applications, each instrumented with one line.

- ``playback``: a Starlette (ASGI) app, the playback API. ``GET /titles/{title_id}/play`` starts
  a play; ``POST /titles/{title_id}/pause`` and ``/stop``. During the scripted outage its
  manifest backend fails: 90 % of plays answer 503/500/504 after 0.8-3 s.
- ``edge``: a Starlette (ASGI) app, the edge cache. ``GET /v1/titles/{title_id}/chunk/{chunk}``
  streams a chunk (HIT or MISS); during the outage the origin is in trouble and it misses more.
- ``login``: a Flask (WSGI) app. ``POST /login`` with a JSON body (user, password, method);
  slower during the outage. The password is in the body, which the middleware never reads; the
  agent masks it in the ``default`` events the handler publishes.

Each handler still publishes the event the demo's alert and presets use on the ``default`` stream
(``agent.publish``), and logs through a logger carrying :class:`MantisLogHandler`; the
middleware adds the ``requests`` stream and the handler the ``log`` stream. The behaviour (what
fails, how slow) follows the traffic model's numbers in ``traffic.py``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, jsonify
from flask import request as flask_request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..integrations.asgi import MantisASGIMiddleware
from ..integrations.logging import MantisLogHandler
from ..integrations.wsgi import MantisWSGIMiddleware
from .traffic import BITRATES, TITLES, Scenario

__all__ = ["TITLE_BASE", "Context", "edge_app", "login_app", "playback_app"]

TITLE_BASE = 80001
"""Title ids: ``TITLE_BASE + index`` into ``traffic.TITLES``."""

_BASE_LATENCY = {"tv": 3.6, "phone": 3.9, "web": 3.7, "tablet": 3.8, "console": 3.5}
_FAILURES = ("manifest service timed out", "DRM license server unavailable",
             "CDN steering returned no edge")


@dataclass
class Context:
    """What a service instance's handlers share: its agent, clock origin and counters."""

    app: str
    instance: str
    agent: Any
    scenario: Scenario
    started: float
    seed: int
    published: int = 0
    log: logging.Logger = field(init=False)
    rng: random.Random = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.log = logging.getLogger(f"demo.{self.app}.{self.instance}")
        self.log.setLevel(logging.INFO)
        self.log.propagate = False  # the demo's terminal shows commentary, not service logs
        for old in list(self.log.handlers):
            self.log.removeHandler(old)
        self.log.addHandler(MantisLogHandler(self.agent))

    def outage(self) -> bool:
        return self.scenario.in_outage(time.time() - self.started)

    def publish(self, event: dict[str, Any]) -> None:
        self.agent.publish(event)
        with self.lock:
            self.published += 1


def _title(title_id: int) -> str:
    return TITLES[(title_id - TITLE_BASE) % len(TITLES)]


# --------------------------------------------------------------------------- playback (ASGI)


def playback_app(ctx: Context) -> Callable[..., Any]:
    """The playback API for one instance, wrapped in the ASGI middleware."""
    rng = ctx.rng

    async def play(request: Request) -> Response:
        title = _title(int(request.path_params["title_id"]))
        country = request.query_params.get("country", "US")
        device = request.query_params.get("device", "tv")
        outage = ctx.outage()
        if rng.random() < (0.9 if outage else 0.004):
            status = rng.choice((503, 503, 503, 500, 504)) if outage else 500
            latency = rng.uniform(800, 3000) if outage else rng.uniform(100, 400)
            await asyncio.sleep(latency / 1000)
            reason = rng.choice(_FAILURES)
            ctx.publish({"event": "error", "country": country, "device": device, "title": title,
                         "latency_ms": round(latency, 1), "status": status})
            ctx.log.error("play failed: %s", reason,
                          extra={"title": title, "country": country, "status": status})
            return JSONResponse({"error": reason}, status_code=status)
        latency = rng.lognormvariate(_BASE_LATENCY.get(device, 3.7) + (1.5 if outage else 0.0),
                                     0.35)
        await asyncio.sleep(latency / 1000)
        bitrates = BITRATES[2:] if device in ("tv", "console") else BITRATES[:6]
        bitrate = rng.choice(bitrates)
        ctx.publish({"event": "play", "country": country, "device": device, "title": title,
                     "bitrate": bitrate, "latency_ms": round(latency, 1), "status": 200})
        if latency > 250:
            ctx.log.warning("slow play start: %.0f ms", latency,
                            extra={"title": title, "country": country})
        return JSONResponse({"title": title, "bitrate": bitrate,
                             "manifest": f"/manifests/{request.path_params['title_id']}.mpd"})

    async def session_event(request: Request) -> Response:
        kind = request.url.path.rsplit("/", 1)[1]
        latency = rng.lognormvariate(3.0, 0.4)
        await asyncio.sleep(latency / 1000)
        ctx.publish({"event": kind, "country": request.query_params.get("country", "US"),
                     "device": request.query_params.get("device", "tv"),
                     "title": _title(int(request.path_params["title_id"])), "status": 200,
                     "latency_ms": round(latency, 1)})
        return Response(status_code=204)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[
        Route("/titles/{title_id:int}/play", play, methods=["GET"]),
        Route("/titles/{title_id:int}/pause", session_event, methods=["POST"]),
        Route("/titles/{title_id:int}/stop", session_event, methods=["POST"]),
        Route("/healthz", healthz),
    ])
    return MantisASGIMiddleware(app, agent=ctx.agent)


# --------------------------------------------------------------------------- edge (ASGI)


def edge_app(ctx: Context) -> Callable[..., Any]:
    """The edge cache for one instance: streams chunks, wrapped in the ASGI middleware."""
    rng = ctx.rng

    async def chunk(request: Request) -> Response:
        outage = ctx.outage()
        hit = rng.random() < (0.55 if outage else 0.92)
        latency = rng.lognormvariate(1.5 if hit else (5.0 if outage else 3.6), 0.4)
        status = 200 if hit or not outage or rng.random() < 0.7 else 502
        size = rng.randrange(200_000, 2_000_000)
        pop = request.query_params.get("pop", "iad")
        await asyncio.sleep(latency / 1000)
        ctx.publish({"path": request.url.path, "cache": "HIT" if hit else "MISS", "pop": pop,
                     "bytes": size, "latency_ms": round(latency, 1), "status": status})
        if status >= 500:
            ctx.log.error("origin fetch failed", extra={"pop": pop, "path": request.url.path})
            return JSONResponse({"error": "origin unavailable"}, status_code=status)

        async def body() -> AsyncIterator[bytes]:
            # a hundredth of the simulated chunk, streamed in 4 KiB pieces
            left = size // 100
            while left > 0:
                n = min(4096, left)
                left -= n
                yield b"\0" * n

        return StreamingResponse(body(), media_type="video/mp4",
                                 headers={"x-cache": "HIT" if hit else "MISS"})

    app = Starlette(routes=[
        Route("/v1/titles/{title_id:int}/chunk/{chunk:int}", chunk, methods=["GET"]),
    ])
    return MantisASGIMiddleware(app, agent=ctx.agent)


# --------------------------------------------------------------------------- login (WSGI)


def login_app(ctx: Context) -> Any:
    """The login service: a Flask app whose ``wsgi_app`` is wrapped in the WSGI middleware."""
    app = Flask(f"demo-{ctx.instance}")
    rng = random.Random(ctx.seed)
    rng_lock = threading.Lock()  # waitress serves on several threads

    @app.post("/login")
    def login() -> Any:
        body = flask_request.get_json(silent=True) or {}
        country = flask_request.args.get("country", "US")
        with rng_lock:
            roll = rng.random()
            latency = rng.lognormvariate(4.6 if ctx.outage() else 4.0, 0.3)
        result = "ok" if roll < 0.9 else ("bad_password" if roll < 0.98 else "locked")
        time.sleep(latency / 1000)
        ctx.publish({"user": body.get("user"), "password": body.get("password"), "result": result,
                     "method": body.get("method", "password"), "country": country,
                     "latency_ms": round(latency, 1)})
        if result == "locked":
            ctx.log.error("account locked after repeated failures",
                          extra={"user": body.get("user"), "country": country})
        elif result == "bad_password":
            ctx.log.warning("bad password", extra={"user": body.get("user")})
        status = {"ok": 200, "bad_password": 401, "locked": 423}[result]
        return jsonify({"result": result}), status

    app.wsgi_app = MantisWSGIMiddleware(app.wsgi_app, agent=ctx.agent)  # type: ignore[method-assign]
    return app
