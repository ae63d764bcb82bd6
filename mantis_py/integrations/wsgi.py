"""Request capture for WSGI applications (Flask, Django's WSGI handler, any WSGI callable).

    from mantis_py.integrations.wsgi import MantisWSGIMiddleware
    app.wsgi_app = MantisWSGIMiddleware(app.wsgi_app, agent=agent)       # Flask
    application = MantisWSGIMiddleware(application, agent=agent)         # any WSGI app

Every request becomes one event on the agent's ``requests`` stream with the same fields as the
ASGI middleware: ``method``, ``route``, ``path``, ``status``, ``latency_ms``, ``bytes_in``,
``bytes_out``, ``client``, ``user_agent``, ``exception``, ``http_version`` (plus ``headers`` /
``query`` only when asked for).

Theory of operation:

- ``agent.has_subscribers(stream)`` first; nobody listening means the app is called with the
  same ``environ`` and ``start_response`` and its iterable returned as it is.
- Someone listening: ``start_response`` is wrapped to note the status, and the response iterable
  is wrapped to count the bytes of each chunk as it passes (never joined, buffered or read
  ahead), so streamed responses stream. The event is published when the server closes the
  iterable, i.e. once the response was sent; ``latency_ms`` covers all of it.
- ``bytes_in`` is the request's ``Content-Length`` (the body is never read).
- The route: when a Flask app's bound ``wsgi_app`` is wrapped, the middleware registers one
  ``teardown_request`` function on that app; while a query listens it leaves the matched rule's
  template (``/titles/<int:title_id>``) in the environ, and the type name of an exception Flask
  handled itself (a view that raised answers 500 without the exception leaving Flask). For
  other werkzeug apps the request object at ``environ["werkzeug.request"]`` gives its
  ``url_rule``. Otherwise the path.
- An exception from the app (or from iterating its response) is recorded and re-raised
  unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._common import (
    ALWAYS_MASKED_HEADERS,
    AgentLike,
    Counters,
    IntegrationStatistics,
    Masker,
    agent_mask,
)

__all__ = ["MantisWSGIMiddleware"]

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_clock = time.perf_counter
EXCEPTION_KEY = "mantis_py.exception"
"""Where the Flask hook leaves the type name of an exception Flask handled itself."""
ROUTE_KEY = "mantis_py.route"
"""Where the Flask hook leaves the matched rule's template."""


def route_template(environ: Environ) -> str | None:
    """The framework's route template for a finished request, or None when it exposes none."""
    template = environ.get(ROUTE_KEY)
    if template is None:
        request = environ.get("werkzeug.request")
        rule = getattr(request, "url_rule", None) if request is not None else None
        template = getattr(rule, "rule", None)
    if isinstance(template, str):
        return str(environ.get("SCRIPT_NAME", "")) + template
    return None


def _flask_app(app: Any) -> Any:
    """The Flask application whose bound ``wsgi_app`` is ``app``, or None."""
    owner = getattr(app, "__self__", None)
    if owner is None or not hasattr(owner, "teardown_request"):
        return None
    return owner if any(c.__module__.split(".")[0] == "flask" for c in type(owner).__mro__) else None


def _hook_flask(owner: Any, listening: Callable[[], bool]) -> None:
    """Note the matched rule and any exception Flask handled itself, in the environ, from a
    ``teardown_request`` function (the last moment Flask's request object is alive)."""
    from flask import request

    def note(exc: BaseException | None) -> None:
        try:
            if not listening():
                return
            environ = request.environ
            rule = request.url_rule
            if rule is not None:
                environ[ROUTE_KEY] = rule.rule
            if exc is not None:
                environ[EXCEPTION_KEY] = type(exc).__name__
        except Exception:
            pass

    owner.teardown_request(note)


class _Exchange:
    __slots__ = ("bytes_out", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.bytes_out = 0


class MantisWSGIMiddleware:
    """Publishes one ``requests`` event per request of a WSGI app.

    Args:
        app: the WSGI application to wrap (for Flask, ``app.wsgi_app``).
        agent: the service's :class:`mantis_py.agents.Agent`.
        stream: the stream to publish on (default ``"requests"``).
        capture_headers: request header names to add as a ``headers`` field (none by default);
            values of headers the agent masks, and of credential headers, become ``[masked]``.
        capture_query: add the query string as a ``query`` field, masked like the agent masks.
    """

    def __init__(self, app: WSGIApp, agent: AgentLike, *, stream: str = "requests",
                 capture_headers: Iterable[str] = (), capture_query: bool = False) -> None:
        self.app = app
        self.agent = agent
        self.stream = stream
        self._has = agent.has_subscribers
        # the agents' own publish without the defensive copy (the event is ours, built per call)
        self._publish = getattr(agent, "_publish_owned", None) or agent.publish
        self._pick = tuple(
            (h.strip().lower(), "HTTP_" + h.strip().upper().replace("-", "_"))
            for h in capture_headers
        )
        self._capture_query = capture_query
        mask = agent_mask(agent)
        self._header_masker = Masker(mask, "headers", ALWAYS_MASKED_HEADERS, fold=True)
        self._query_masker = Masker(mask, "query")
        self._counters = Counters()
        try:
            flask_app = _flask_app(app)
            if flask_app is not None:
                _hook_flask(flask_app, lambda: self._has(self.stream))
        except Exception:
            pass

    def statistics(self) -> IntegrationStatistics:
        """How many events were built, and how many failures of ours were swallowed."""
        return self._counters.snapshot()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not self._has(self.stream):
            return self.app(environ, start_response)
        ex = _Exchange()

        def tap_start(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], object]:
            try:
                ex.status = int(status[:3])
            except Exception:
                pass
            write = start_response(status, headers, exc_info) if exc_info is not None else (
                start_response(status, headers))

            def tap_write(data: bytes) -> object:
                ex.bytes_out += len(data)
                return write(data)

            return tap_write

        started = _clock()
        try:
            body = self.app(environ, tap_start)
        except BaseException as exc:
            self._record(environ, ex, started, exc)
            raise
        return _Body(body, self, environ, ex, started)

    def _record(self, environ: Environ, ex: _Exchange, started: float,
                exc: BaseException | None) -> None:
        try:
            latency_ms = (_clock() - started) * 1000.0
            status = ex.status
            if exc is not None and status is None:
                status = 500
            name = type(exc).__name__ if exc is not None else environ.get(EXCEPTION_KEY)
            path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "") or "/"
            try:
                bytes_in = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                bytes_in = 0
            protocol = str(environ.get("SERVER_PROTOCOL", "HTTP/1.1"))
            event: dict[str, Any] = {
                "method": environ.get("REQUEST_METHOD", "GET"),
                "route": route_template(environ) or path,
                "path": path,
                "status": status,
                "latency_ms": round(latency_ms, 3),
                "bytes_in": bytes_in,
                "bytes_out": ex.bytes_out,
                "client": environ.get("REMOTE_ADDR"),
                "user_agent": environ.get("HTTP_USER_AGENT"),
                "exception": name,
                "http_version": protocol[5:] if protocol.startswith("HTTP/") else protocol,
            }
            if self._pick:
                event["headers"] = self._header_masker.apply(
                    (name_, str(environ[key])) for name_, key in self._pick if key in environ
                )
            if self._capture_query:
                event["query"] = self._query_masker.query(str(environ.get("QUERY_STRING", "")))
            self._counters.built += 1
            self._publish(event, self.stream)
        except Exception:
            self._counters.failed += 1


class _Body:
    """The app's response iterable, counted chunk by chunk; publishes on ``close()``."""

    __slots__ = ("_body", "_done", "_env", "_ex", "_exc", "_mw", "_started")

    def __init__(self, body: Iterable[bytes], mw: MantisWSGIMiddleware, environ: Environ,
                 ex: _Exchange, started: float) -> None:
        self._body, self._mw, self._env, self._ex, self._started = body, mw, environ, ex, started
        self._exc: BaseException | None = None
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        ex = self._ex
        try:
            for chunk in self._body:
                ex.bytes_out += len(chunk)
                yield chunk
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                self._exc = exc
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if not self._done:
                self._done = True
                self._mw._record(self._env, self._ex, self._started, self._exc)
