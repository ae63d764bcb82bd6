"""The gateway server: ``serve_gateway(config)``, its endpoints, and the internal subscription hook.

Endpoints (docs/operations.md), all on one port (see ``http.py`` for why one h11 listener serves both
plain HTTP and websockets):

===========================  ===============================================================
``GET /``, ``/static/...``   the dashboard (``dashboard.page()`` / ``dashboard.asset()``)
``WS /v1/agent``             agents (subprotocol ``mantis.v1``; token role ``agent``)
``WS /v1/query``             clients, docs/protocol.md
``GET /v1/sse?q=<MQL>``      the same messages as server-sent events
``GET /v1/apps``             inventory (apps the token may read)
``POST /v1/check``           ``{"query": "..."}`` or raw text -> ``{"canonical", "plan"}`` or
                             ``{"error": {...}}`` (HTTP 400)
``GET /v1/alerts``           the alert runner's snapshot (``[]``-like when none)
``GET /healthz``             ``{"status": "ok", ...}``
``GET /metrics``             Prometheus text exposition
===========================  ===============================================================

Before any upgrade: missing/unknown token -> 401, foreign Origin or missing right -> 403,
too many connections -> 429 (per user) / 503 (gateway). Tokens are read from
``Authorization: Bearer`` or ``?token=`` and never logged.

**Internal subscriptions (the hook for alerts and other in-process consumers).**
``GatewayServer.subscribe(query_text)`` is an async context manager yielding a
``trio.MemoryReceiveChannel[dict]`` of exactly the client-protocol messages a websocket client
would receive for that query (``accepted`` / ``error`` / ``rows`` / ``meta`` / ``complete``
dicts, query id ``"q"``). The subscriber runs with full rights (user ``internal``), obeys the
same outbound queue and drop policies as any client, and its query is cancelled when the
context exits. The channel is closed after ``complete`` or ``error``::

    async with server.subscribe("select count(*) from play window 10") as results:
        async for msg in results:
            ...
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h11
import trio
from websockets.trio.server import ServerConnection

from ..errors import AuthenticationError, ConfigurationError, QueryError
from ..wire import codec
from ..wire.messages import SUBPROTOCOL
from . import dashboard as _dashboard
from . import handlers
from .agent_socket import AgentSocket
from .auth import Authenticator, Principal, bearer_token, origin_allowed
from .config import GatewayConfig
from .core import GatewayCore
from .http import HttpRequest, RedactSecrets, Responder, read_request, upgrade, ws_log
from .limits import ConnectionCaps
from .metrics import CONTENT_TYPE, Metrics, render

__all__ = ["GatewayServer", "serve_gateway"]

log = logging.getLogger("mantis_py.gateway")
audit_log = logging.getLogger("mantis_py.audit")

INTERNAL = Principal("internal", ("*",), masked=False, roles=("client",))
TICK_S = 0.05
LAG_S = 0.02  # the ticker woke this much late or more: the loop was busy, not the clients


class GatewayServer:
    """All live state of one gateway process; handlers and the ticker share it (one trio thread)."""

    def __init__(self, config: GatewayConfig, prepare: Any = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.core = GatewayCore(config, time.time(), prepare=prepare, metrics=self.metrics)
        self.auth = Authenticator(config.tokens)
        self.caps = ConnectionCaps(config.limits.connections_per_user,
                                   config.limits.connections_total)
        # agents have their own cap: a client flood can never lock the agents out
        self.agent_caps = ConnectionCaps(config.limits.agent_connections_total,
                                         config.limits.agent_connections_total)
        # compilation runs in a worker thread, one at a time (see compile_off_loop)
        self.compile_limiter = trio.CapacityLimiter(1)
        self.sessions: dict[str, handlers.ClientSession] = {}
        self.agent_channels: dict[str, trio.MemorySendChannel[bytes]] = {}
        # sends to clients in progress, under their deadline (handlers._pump); the ticker moves
        # their deadlines by the time the event loop itself was late, so a client is never
        # evicted for the gateway's own overload
        self.send_scopes: set[trio.CancelScope] = set()
        self.alert_snapshot: Any = None
        self.cluster: Any = None  # a cluster.runner.ClusterRunner with --cluster
        self.port: int = 0
        self.nursery: trio.Nursery | None = None
        self._audit_file: Any = None
        if config.audit_log:
            self._audit_file = open(config.audit_log, "a", encoding="utf-8")  # noqa: SIM115

    # ------------------------------------------------------------------ core output distribution

    def after(self) -> None:
        """Distribute everything the core produced: agent frames, wake-ups, evictions, audit."""
        core = self.core
        for aid, frames in core.agent_data_to_send().items():
            channel = self.agent_channels.get(aid)
            if channel is None:
                continue
            try:
                for data in frames:
                    channel.send_nowait(data)
            except trio.WouldBlock:
                log.warning("agent %s is not reading; closing its link", aid)
                channel.close()
            except trio.ClosedResourceError:
                pass
        for cid in core.clients_to_wake():
            session = self.sessions.get(cid)
            if session is not None:
                session.notify()
        for aid in core.agents_to_close():  # silent for three ping periods: drop the link
            channel = self.agent_channels.get(aid)
            if channel is not None:
                log.warning("agent %s is silent; closing its link", aid)
                channel.close()
        for cid, code, reason in core.clients_to_close():
            session = self.sessions.get(cid)
            if session is not None:
                session.evict_with(code, reason)
        for record in core.audit_to_log():
            line = json.dumps(record, sort_keys=True)
            audit_log.info("%s", line)
            if self._audit_file is not None:
                self._audit_file.write(line + "\n")
                self._audit_file.flush()

    def single_query(self, client_id: str) -> bool:
        """SSE and internal clients run one query and stop when it ends."""
        client = self.core.clients.get(client_id)
        return client is not None and client.kind != "ws"

    async def serve_ticker(self) -> None:
        """Let time pass in the core: due windows, meta cadence, pings, slow clients; and give
        sends in progress back the time the loop was late (see ``send_scopes``)."""
        last = trio.current_time()
        while True:
            await trio.sleep(TICK_S)
            now = trio.current_time()
            lag, last = now - last - TICK_S, now
            if lag > LAG_S:
                self.metrics.inc("loop_lag_seconds_total", lag)
                for scope in self.send_scopes:
                    scope.deadline += lag
            self.core.poll(time.time())
            self.after()

    async def go_away(self, grace: float = 1.0) -> None:
        """Close every websocket client with 1001 "going away" (its queries are not completed,
        so clients reconnect and resubmit) and wait up to ``grace`` seconds for them to go."""
        leaving = []
        for cid, session in list(self.sessions.items()):
            client = self.core.clients.get(cid)
            if client is not None and client.kind == "ws":
                session.evict_with(handlers.GOING_AWAY, "gateway shutting down")
                leaving.append(session)
        with trio.move_on_after(grace):
            for session in leaving:
                await session.done.wait()

    # ------------------------------------------------------------------ internal subscriptions

    @asynccontextmanager
    async def subscribe(self, query_text: str, qid: str = "q") -> AsyncIterator[
            trio.MemoryReceiveChannel[dict[str, Any]]]:
        """See the module header: the in-process client hook (alerts, demos, tests)."""
        cid = f"i{id(object())}-{time.monotonic_ns()}"
        session = handlers.ClientSession(cid)
        self.sessions[cid] = session
        self.core.open_client(cid, INTERNAL, time.time(), kind="internal")
        send_channel, receive_channel = trio.open_memory_channel[dict[str, Any]](64)
        deadline = self.config.limits.send_deadline_s

        async def send(data: bytes, msg: Any) -> None:
            await send_channel.send(codec.to_plain(msg))

        async def pump() -> None:
            async with send_channel:
                await handlers._pump(self, session, send, deadline)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump)
                self.core.submit(cid, qid, query_text, time.time())
                self.after()
                async with receive_channel:
                    yield receive_channel
                nursery.cancel_scope.cancel()
        finally:
            self.sessions.pop(cid, None)
            self.core.close_client(cid, time.time())
            self.after()

    async def compile_off_loop(self, principal: Principal, text: str, mode: str = "live") -> Any:
        """``core.prepare_for`` in a worker thread, one compile at a time; the thread's CPU time
        is charged to the user's compile budget. With the GIL a thread does not make Python
        faster, but the event loop gets the interpreter back every switch interval (5 ms)
        instead of after the whole compile, and the complexity budget (E308) bounds each one."""
        spent: list[float] = []

        def work() -> Any:
            t0 = time.thread_time()
            try:
                return self.core.prepare_for(principal, text, mode)
            finally:
                spent.append(time.thread_time() - t0)

        try:
            return await trio.to_thread.run_sync(work, limiter=self.compile_limiter)
        finally:
            self.core.charge_compile(principal.user, sum(spent), time.time())

    # ------------------------------------------------------------------ connections

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        """One TCP (or TLS) connection: read the request head, then route it."""
        try:
            if self.config.tls:
                assert isinstance(stream, trio.SSLStream)
                with trio.fail_after(self.config.limits.handshake_timeout_s):
                    await stream.do_handshake()
            conn = h11.Connection(h11.SERVER,
                                  max_incomplete_event_size=self.config.limits.request_head_max)
            with trio.move_on_after(self.config.limits.handshake_timeout_s) as scope:
                request, _raw = await read_request(stream, conn)
            if scope.cancelled_caught or request is None:
                return
            await self.route(stream, conn, request)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
                h11.LocalProtocolError, h11.RemoteProtocolError):
            pass
        except Exception:
            log.exception("connection handler failed")
        finally:
            await trio.aclose_forcefully(stream)

    def _principal(self, request: HttpRequest, role: str) -> Principal:
        token = bearer_token(request.headers, request.query)
        RedactSecrets.remember(token)  # whatever it holds, this text never reaches a log
        return self.auth.authenticate(token, role)

    async def _refuse(self, responder: Responder, status: int, message: str) -> None:
        self.metrics.inc("connections_refused_total", status=str(status))
        body = json.dumps({"error": {"message": message, "status": status}}).encode()
        headers = [("www-authenticate", "Bearer")] if status == 401 else []
        await responder.respond(status, body, "application/json", headers)

    async def route(self, stream: trio.abc.Stream, conn: h11.Connection,
                    request: HttpRequest) -> None:
        responder = Responder(stream, conn)
        path = request.path
        if path in ("/v1/agent", "/v1/query", "/v1/sse"):
            if not origin_allowed(request.headers.get("origin"), request.headers.get("host"),
                                  self.config.origins, self.config.tls):
                await self._refuse(responder, 403, "origin not allowed")
                return
            role = "agent" if path == "/v1/agent" else "client"
            try:
                principal = self._principal(request, role)
            except AuthenticationError as exc:
                await self._refuse(responder, exc.status, str(exc))
                return
            if path == "/v1/sse":
                await self._sse(responder, request, principal)
                return
            if not request.is_websocket:
                await self._refuse(responder, 426, "websocket upgrade required")
                return
            if role == "client":
                _limit_send_buffer(stream, self.config.limits.client_sndbuf)
            caps = self.caps if role == "client" else self.agent_caps
            status = caps.try_open(principal.user if role == "client" else "\0agents")
            if status is not None:
                await self._refuse(responder, status, "too many connections")
                return
            try:
                await self._websocket(stream, request, principal, role)
            finally:
                caps.close(principal.user if role == "client" else "\0agents")
            return
        handler = _ROUTES.get((request.method, path))
        if handler is None and request.method == "GET" and path.startswith("/static/"):
            handler = GatewayServer._static
        if handler is None:
            allowed = {m for (m, p) in _ROUTES if p == path}
            if allowed:
                await responder.respond(405, b"method not allowed\n",
                                        headers=[("allow", ", ".join(sorted(allowed)))])
            else:
                await responder.respond(404, b"not found\n")
            return
        self.metrics.inc("connections_total", kind="http")
        await handler(self, responder, request)

    async def _websocket(self, stream: trio.abc.Stream, request: HttpRequest,
                         principal: Principal, role: str) -> None:
        limits = self.config.limits
        if role == "agent":  # liveness: mantis pings, no websocket pings
            sock = AgentSocket(stream, max_size=limits.agent_frame_max,
                               subprotocols=[SUBPROTOCOL], logger=ws_log)
            opened = False
            try:
                with trio.move_on_after(limits.handshake_timeout_s):
                    opened = await sock.handshake(request.raw, "mantis-py")
                if opened:
                    await handlers.serve_agent(self, sock, principal)
            finally:
                await sock.close()
        else:
            async def run(ws: ServerConnection) -> None:
                await handlers.serve_client(self, ws, principal)

            def select(_protocol: Any, offered: Any) -> Any:
                return SUBPROTOCOL if SUBPROTOCOL in offered else None

            await upgrade(stream, request.raw, run, select_subprotocol=select,
                          max_size=limits.client_frame_max,
                          open_timeout=limits.handshake_timeout_s)

    async def _sse(self, responder: Responder, request: HttpRequest, principal: Principal) -> None:
        text = request.query.get("q")
        if not text:
            await responder.respond(400, b'{"error":{"message":"missing q=<MQL>"}}\n',
                                    "application/json")
            return
        status = self.caps.try_open(principal.user)
        if status is not None:
            await self._refuse(responder, status, "too many connections")
            return
        _limit_send_buffer(responder.stream, self.config.limits.client_sndbuf)
        try:
            await handlers.serve_sse(self, responder, principal, text)
        finally:
            self.caps.close(principal.user)

    # ------------------------------------------------------------------ plain endpoints

    async def _json(self, responder: Responder, status: int, obj: Any) -> None:
        body = codec.encode(obj) if not isinstance(obj, dict | list) else json.dumps(
            codec.to_plain(obj), separators=(",", ":"), ensure_ascii=False).encode()
        await responder.respond(status, body, "application/json")

    async def _index(self, responder: Responder, request: HttpRequest) -> None:
        body = _dashboard.page()
        await responder.respond(200, body, "text/html; charset=utf-8")

    async def _static(self, responder: Responder, request: HttpRequest) -> None:
        found = None
        name = request.path[len("/static/"):]
        if ".." not in name.split("/"):
            found = _dashboard.asset(name)
        if found is None:
            await responder.respond(404, b"not found\n")
            return
        body, content_type = found
        await responder.respond(200, body, content_type)

    async def _healthz(self, responder: Responder, request: HttpRequest) -> None:
        body: dict[str, Any] = {"status": "ok", **self.core.gauges()}
        if self.cluster is not None:
            body["cluster"] = self.cluster.status()
        await self._json(responder, 200, body)

    async def _metrics(self, responder: Responder, request: HttpRequest) -> None:
        await responder.respond(200, render(self.metrics, self.core.gauges()), CONTENT_TYPE)

    async def _apps(self, responder: Responder, request: HttpRequest) -> None:
        try:
            principal = self._principal(request, "client")
        except AuthenticationError as exc:
            await self._refuse(responder, exc.status, str(exc))
            return
        inv = await self.cluster.inventory() if self.cluster is not None \
            else self.core.inventory()
        apps = {name: entry for name, entry in inv["apps"].items()
                if any(principal.may_read(name, s) for s in (*entry["streams"], "default"))}
        await self._json(responder, 200, {"apps": apps})

    async def _alerts(self, responder: Responder, request: HttpRequest) -> None:
        try:
            self._principal(request, "client")
        except AuthenticationError as exc:
            await self._refuse(responder, exc.status, str(exc))
            return
        snapshot = self.alert_snapshot() if self.alert_snapshot is not None else {"alerts": []}
        await self._json(responder, 200, snapshot)

    async def _check(self, responder: Responder, request: HttpRequest) -> None:
        # the same auth and rate limit as submitting a query (an open gateway: no tokens, no limit)
        try:
            principal = self._principal(request, "client")
        except AuthenticationError as exc:
            await self._refuse(responder, exc.status, str(exc))
            return
        if not self.auth.open and not self.core.admit_check(principal.user, time.time()):
            self.metrics.inc("connections_refused_total", status="429")
            rate = self.config.limits
            refusal = json.dumps({"error": {
                "message": f"rate limited: at most {rate.submissions_per_s:g} checks per second "
                           f"(burst {rate.submissions_burst})", "status": 429}}).encode()
            await responder.respond(429, refusal, "application/json", [("retry-after", "1")])
            return
        body = await responder.read_body(64 * 1024)
        if body is None:
            await responder.respond(413, b'{"error":{"message":"body too large"}}',
                                    "application/json")
            return
        text = body.decode("utf-8", "replace")
        mode = "live"
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                obj = json.loads(text)
                text = str(obj["query"])
                mode = "replay" if obj.get("mode") == "replay" else "live"
            except (ValueError, KeyError, TypeError):
                await responder.respond(400, b'{"error":{"message":"expected {\\"query\\": ...}"}}',
                                        "application/json")
                return
        try:
            # no app list, as for a submitted query: an application without agents yet is not an
            # error (the query would wait for them); compiled off the event loop
            prepared = await self.compile_off_loop(principal, text, mode)
        except QueryError as exc:
            await self._json(responder, 400, {"error": exc.to_dict()})
            return
        await self._json(responder, 200, {"canonical": prepared.canonical,
                                          "plan": prepared.plan()})


_ROUTES: dict[tuple[str, str], Any] = {
    ("GET", "/"): GatewayServer._index,
    ("GET", "/healthz"): GatewayServer._healthz,
    ("GET", "/metrics"): GatewayServer._metrics,
    ("GET", "/v1/apps"): GatewayServer._apps,
    ("GET", "/v1/alerts"): GatewayServer._alerts,
    ("POST", "/v1/check"): GatewayServer._check,
}


def _limit_send_buffer(stream: trio.abc.Stream, size: int) -> None:
    """Cap the kernel send buffer of a client socket, so a slow reader fills *our* queue (where
    drops are counted and reported) rather than megabytes of kernel buffer."""
    inner = getattr(stream, "transport_stream", stream)
    sock = getattr(inner, "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        except OSError:
            pass


def _ssl_context(config: GatewayConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(config.tls_cert, config.tls_key)  # type: ignore[arg-type]
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load TLS certificate/key: {exc}") from None
    return ctx


async def serve_gateway(
    config: GatewayConfig,
    *,
    prepare: Any = None,
    alerts: bool = True,
    task_status: trio.TaskStatus[GatewayServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a gateway until cancelled. ``task_status.started(server)``; ``server.port`` is bound.

    Args:
        config: the settings (``port=0`` picks a free port).
        prepare: the query engine's ``prepare`` (tests may inject a fake).
        alerts: start the alert runner for ``config.alerts`` when the module is available.
    """
    server = GatewayServer(config, prepare=prepare)
    listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    server.port = listeners[0].socket.getsockname()[1]
    if config.tls:
        ctx = _ssl_context(config)
        listeners = [trio.SSLListener(ln, ctx, https_compatible=True)  # type: ignore[misc]
                     for ln in listeners]
    async with trio.open_nursery() as nursery:
        server.nursery = nursery
        nursery.start_soon(server.serve_ticker)
        subscribe = server.subscribe
        if config.cluster is not None:
            from .cluster.runner import run_cluster

            server.cluster = await nursery.start(run_cluster, server)
            subscribe = server.cluster.owned_subscribe  # one gateway evaluates each rule
        if alerts and config.alerts:
            from .alert_runner import run_alerts

            server.alert_snapshot = await nursery.start(
                lambda task_status: run_alerts(subscribe, list(config.alerts),
                                               task_status=task_status))
        await nursery.start(trio.serve_listeners, server.handle_connection, listeners)
        log.info("gateway listening on %s:%d%s", config.host, server.port,
                 " (TLS)" if config.tls else "")
        task_status.started(server)
