"""Request capture for ASGI applications (Starlette, FastAPI, Quart, Django's ASGI handler, …).

    from mantis_py.integrations.asgi import MantisASGIMiddleware
    app = MantisASGIMiddleware(app, agent=agent)

Every HTTP request, and every websocket connection at its close, becomes one event on the
agent's ``requests`` stream with exactly these fields: ``method``, ``route``, ``path``,
``status``, ``latency_ms``, ``bytes_in``, ``bytes_out``, ``client``, ``user_agent``,
``exception``, ``http_version`` (plus ``headers`` / ``query`` only when asked for).

Theory of operation:

- The first thing a call does is ``agent.has_subscribers(stream)``. Nobody listening: the
  middleware awaits the app with the very same ``scope``, ``receive`` and ``send`` and builds
  nothing (one method call and one await per request).
- Someone listening: ``receive`` and ``send`` are wrapped to *count* body bytes and to note the
  response status; every message is passed on unchanged (the same dict object, never read,
  copied or buffered), so streaming responses and websockets flow exactly as without it.
- The route is the framework's template, read from the scope after the app ran: Starlette and
  FastAPI leave the matched route object at ``scope["route"]`` (its ``path_format`` is the
  template, ``/titles/{title_id}``); a string there is taken as it is; otherwise the path.
- An exception from the app is recorded (its type name in ``exception``; ``status`` 500 unless a
  response had already started) and re-raised unchanged, so the server still sees it.
- The event is built and published in a ``try`` of its own: a failure of ours is counted
  (:meth:`MantisASGIMiddleware.statistics`) and never reaches the host.

``latency_ms`` runs from the call until the app returned (the whole body sent). For a websocket,
``method`` is ``"WEBSOCKET"``, ``status`` 101 once accepted (else the status the handshake was
refused with, 403 by default), ``latency_ms`` the connection's lifetime, and ``bytes_in`` /
``bytes_out`` the sizes of the messages (text counted in characters).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ._common import (
    ALWAYS_MASKED_HEADERS,
    AgentLike,
    Counters,
    IntegrationStatistics,
    Masker,
    agent_mask,
    header_picker,
)

__all__ = ["MantisASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_clock = time.perf_counter


def route_template(scope: Scope) -> str | None:
    """The framework's route template for a finished request, or None when it exposes none.

    Starlette / FastAPI: ``scope["route"].path_format`` (``.path`` as a fallback); a route under
    a ``Mount`` is prefixed with the part of the path the mount consumed.
    """
    route = scope.get("route")
    if route is None:
        return None
    if isinstance(route, str):
        return route
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str):
        return None
    # Under a Mount, Starlette extends root_path by the matched prefix and the inner route's
    # template is relative to it.
    root, app_root = scope.get("root_path", ""), scope.get("app_root_path", "")
    if isinstance(root, str) and isinstance(app_root, str) and len(root) > len(app_root):
        template = root[len(app_root):] + template
    return template


class _Exchange:
    """What one HTTP request's messages told us (counts and status only); ``send`` is the tap."""

    __slots__ = ("_receive", "_send", "accepted", "bytes_in", "bytes_out", "status")

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self.status: int | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.accepted = False

    async def receive(self) -> Message:
        message = await self._receive()
        try:
            body = message.get("body")
            if body:
                self.bytes_in += len(body)
        except Exception:
            pass
        return message

    async def send(self, message: Message) -> None:
        try:
            t = message["type"]
            if t == "http.response.body":
                self.bytes_out += len(message.get("body") or b"")
            elif t == "http.response.start":
                self.status = int(message["status"])
        except Exception:
            pass
        await self._send(message)


class MantisASGIMiddleware:
    """Publishes one ``requests`` event per HTTP request / websocket connection of an ASGI app.

    Args:
        app: the ASGI application to wrap.
        agent: the service's :class:`mantis_py.agents.Agent` (or ``TrioAgent``).
        stream: the stream to publish on (default ``"requests"``).
        capture_headers: request header names to add as a ``headers`` field (none by default);
            values of headers the agent masks, and of credential headers, become ``[masked]``.
        capture_query: add the query string as a ``query`` field (``name -> value``), with the
            values of parameters the agent masks replaced by ``[masked]``.
    """

    def __init__(self, app: ASGIApp, agent: AgentLike, *, stream: str = "requests",
                 capture_headers: Iterable[str] = (), capture_query: bool = False) -> None:
        self.app = app
        self.agent = agent
        self.stream = stream
        self._has = agent.has_subscribers
        self._publish = agent.publish
        self._pick = header_picker(capture_headers)
        self._capture_query = capture_query
        mask = agent_mask(agent)
        self._header_masker = Masker(mask, "headers", ALWAYS_MASKED_HEADERS, fold=True)
        self._query_masker = Masker(mask, "query")
        self._counters = Counters()
        # id(route object) -> (the route, its template), for routes at the top level
        self._templates: dict[int, tuple[Any, str | None]] = {}

    def statistics(self) -> IntegrationStatistics:
        """How many events were built, and how many failures of ours were swallowed."""
        return self._counters.snapshot()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if (kind != "http" and kind != "websocket") or not self._has(self.stream):
            await self.app(scope, receive, send)
            return
        ex = _Exchange(receive, send)
        recv: Receive
        snd: Send
        if kind == "http":
            recv, snd = ex.receive, ex.send
        else:
            recv, snd = self._ws_receive(receive, ex), self._ws_send(send, ex)
        started = _clock()
        try:
            await self.app(scope, recv, snd)
        except BaseException as exc:
            self._record(scope, ex, started, exc)
            raise
        self._record(scope, ex, started, None)

    # ------------------------------------------------------------------ message taps

    @staticmethod
    def _ws_receive(receive: Receive, ex: _Exchange) -> Receive:
        async def tap() -> Message:
            message = await receive()
            try:
                if message.get("type") == "websocket.receive":
                    data = message.get("bytes") or message.get("text")
                    if data:
                        ex.bytes_in += len(data)
            except Exception:
                pass
            return message

        return tap

    @staticmethod
    def _ws_send(send: Send, ex: _Exchange) -> Send:
        async def tap(message: Message) -> None:
            try:
                t = message.get("type")
                if t == "websocket.send":
                    data = message.get("bytes") or message.get("text")
                    if data:
                        ex.bytes_out += len(data)
                elif t == "websocket.accept":
                    ex.accepted = True
                    ex.status = 101
                elif t == "websocket.http.response.start" and ex.status is None:
                    ex.status = int(message.get("status", 0))
                elif t == "websocket.close" and ex.status is None:
                    ex.status = 403  # closed before accepting: the server refuses the handshake
            except Exception:
                pass
            await send(message)

        return tap

    # ------------------------------------------------------------------ the event

    def _record(self, scope: Scope, ex: _Exchange, started: float,
                exc: BaseException | None) -> None:
        try:
            latency_ms = (_clock() - started) * 1000.0
            status = ex.status
            if exc is not None and status is None:
                status = 500
            path = scope.get("path") or "/"
            user_agent: str | None = None
            pick = self._pick
            captured: list[tuple[str, str]] = []
            for name, value in scope.get("headers") or ():
                if name == b"user-agent":
                    user_agent = value.decode("latin-1")
                if pick and name.lower() in pick:
                    captured.append((name.decode("latin-1").lower(), value.decode("latin-1")))
            client = scope.get("client")
            route = scope.get("route")
            if route is None:
                template: str | None = None
            elif scope.get("root_path") or scope.get("app_root_path"):
                template = route_template(scope)  # mounted or behind a prefix: per request
            else:
                # keyed by identity: Starlette's routes define __eq__ and are unhashable
                cached = self._templates.get(id(route))
                if cached is not None and cached[0] is route:
                    template = cached[1]
                else:
                    template = route_template(scope)
                    if len(self._templates) < 10_000:
                        self._templates[id(route)] = (route, template)
            event: dict[str, Any] = {
                "method": scope.get("method", "GET") if scope["type"] == "http" else "WEBSOCKET",
                "route": template or path,
                "path": path,
                "status": status,
                "latency_ms": latency_ms,
                "bytes_in": ex.bytes_in,
                "bytes_out": ex.bytes_out,
                "client": client[0] if client else None,
                "user_agent": user_agent,
                "exception": None if exc is None else type(exc).__name__,
                "http_version": scope.get("http_version", "1.1"),
            }
            if pick:
                event["headers"] = self._header_masker.apply(captured)
            if self._capture_query:
                qs = scope.get("query_string") or b""
                event["query"] = self._query_masker.query(qs.decode("latin-1"))
            self._counters.built += 1
            self._publish(event, self.stream)
        except Exception:
            self._counters.failed += 1
