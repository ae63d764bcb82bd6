"""One task per connection: agent websocket, client websocket, SSE stream. Thin shells.

Each handler reads from its socket, calls the :class:`~mantis_py.gateway.core.GatewayCore`, and
lets the server's ``after()`` distribute what the core produced (agent frames, client wake-ups,
evictions, audit lines). Each client has one sender task that drains its outbound queue with a
send deadline (docs/operations.md): a send that does not finish in time closes that client, and no
other client waits for it.

Close codes (docs/protocol.md): 1003 binary frame, 1009 frame too big (websockets itself),
1007 / 4000 bad data or protocol error (the codec's ``close_code``), 1008 rights lost (an agent
announcing an app its token may not publish), 4008 too slow (queue full too long, or a send past
its deadline), 1001 the gateway is shutting down (queries are not completed: clients reconnect and
resubmit them).
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

import trio
from websockets.exceptions import ConnectionClosed
from websockets.trio.server import ServerConnection

from ..errors import RemoteProtocolError
from ..query.run.outputs import CompleteReason
from .agent_socket import AgentSocket, Binary
from .auth import Principal
from .config import GatewayConfig
from .core import GatewayCore
from .limits import TOO_SLOW
from .metrics import Metrics
from .sse import PING, RETRY, event_frame

if TYPE_CHECKING:
    from .http import Responder

__all__ = ["ClientSession", "serve_agent", "serve_client", "serve_sse"]

log = logging.getLogger("mantis_py.gateway")
GOING_AWAY = 1001  # the gateway is shutting down: clients reconnect and resubmit
_ids = itertools.count(1)


class GatewayHost(Protocol):
    """What the handlers use of the gateway server (``server.GatewayServer`` is the one
    implementation). A protocol, so that this module need not import ``server.py``, which
    imports this one."""

    config: GatewayConfig
    metrics: Metrics
    core: GatewayCore
    sessions: dict[str, ClientSession]
    agent_channels: dict[str, trio.MemorySendChannel[bytes]]
    send_scopes: set[trio.CancelScope]

    def after(self) -> None: ...

    def single_query(self, client_id: str) -> bool: ...

    async def compile_off_loop(self, principal: Principal, text: str,
                               mode: str = "live") -> Any: ...


class ClientSession:
    """Shell-side state of one client: its wake-up event and a pending eviction."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.wake = trio.Event()
        self.evict: tuple[int, str] | None = None
        self.done = trio.Event()

    def notify(self) -> None:
        self.wake.set()

    def evict_with(self, code: int, reason: str) -> None:
        if self.evict is None:
            self.evict = (code, reason)
        self.wake.set()


async def _pump(server: GatewayHost, session: ClientSession, send: Any,
                deadline: float) -> tuple[int, str] | None:
    """Drain one client's queue through ``send(data, msg)`` until evicted or cancelled.

    Returns the (close code, reason) the connection must be closed with, or None when the
    query ended normally (SSE / internal subscribers stop after ``complete`` / ``error``).
    """
    core = server.core
    cid = session.client_id
    while True:
        if session.evict is not None:
            code, reason = session.evict
            if reason == TOO_SLOW:  # counted here, for every transport (WS and SSE alike)
                server.metrics.inc("clients_evicted_total", reason="too_slow")
            # Tell the client why (best effort, under the same deadline), then close.
            client = core.clients.get(cid)
            if client is not None and code != GOING_AWAY:  # 1001: the queries live on elsewhere
                for qid in list(client.attachments):
                    core.cancel(cid, qid, time.time(), reason=CompleteReason.EVICTED)
            with trio.move_on_after(min(deadline, 1.0)):
                while (frame := core.next_frame(cid, time.time())) is not None:
                    await send(*frame)
            return code, reason
        session.wake = trio.Event()
        frame = core.next_frame(cid, time.time())
        if frame is None:
            await session.wake.wait()
            continue
        data, msg = frame
        with trio.move_on_after(deadline) as scope:
            server.send_scopes.add(scope)  # the ticker extends it while the loop is late
            try:
                await send(data, msg)
            finally:
                server.send_scopes.discard(scope)
        if scope.cancelled_caught:
            server.metrics.inc("clients_evicted_total", reason="send_deadline")
            log.warning("client %s: send deadline (%.1fs) exceeded; closing", cid, deadline)
            return 4008, f"{TOO_SLOW}: send deadline exceeded"
        if session.evict is None and msg.type in ("complete", "error") and server.single_query(cid):
            return None


async def serve_client(server: GatewayHost, ws: ServerConnection, principal: Principal) -> None:
    """``WS /v1/query``: the public client protocol (docs/protocol.md)."""
    cid = f"c{next(_ids)}"
    core = server.core
    session = ClientSession(cid)
    server.sessions[cid] = session
    core.open_client(cid, principal, time.time())
    deadline = server.config.limits.send_deadline_s

    async def send(data: bytes, msg: Any) -> None:
        await ws.send(data, text=True)

    try:
        async with trio.open_nursery() as nursery:

            async def sender() -> None:
                try:
                    result = await _pump(server, session, send, deadline)
                except ConnectionClosed:
                    result = None
                if result is not None:
                    await _close(ws, *result, deadline)
                nursery.cancel_scope.cancel()

            nursery.start_soon(sender)
            try:
                async for message in ws:
                    if isinstance(message, bytes):  # docs/protocol.md: text JSON frames only
                        server.metrics.inc("protocol_errors_total", code="1003")
                        await _close(ws, 1003, "binary frames are not supported", deadline)
                        break
                    pending = core.compile_request(cid, message, time.time())
                    if pending is not None:  # compile off the event loop; the core reuses it
                        try:
                            await server.compile_off_loop(pending[0], pending[1], "live")
                        except Exception:  # QueryError: the core reports it (from the cache)
                            pass
                    try:
                        core.receive_client_data(cid, message, time.time())
                    except RemoteProtocolError as exc:
                        server.metrics.inc("protocol_errors_total", code=str(exc.close_code))
                        server.after()
                        await _close(ws, exc.close_code, str(exc)[:120], deadline)
                        break
                    server.after()
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                if code == 1009 or (exc.sent is not None and exc.sent.code == 1009):
                    server.metrics.inc("protocol_errors_total", code="1009")
            nursery.cancel_scope.cancel()
    finally:
        server.sessions.pop(cid, None)
        core.close_client(cid, time.time())
        server.after()
        session.done.set()


async def _close(ws: ServerConnection, code: int, reason: str, deadline: float) -> None:
    with trio.move_on_after(min(deadline, 2.0)) as scope:
        try:
            await ws.aclose(code, reason)
        except ConnectionClosed:
            pass
    if scope.cancelled_caught:
        await trio.aclose_forcefully(ws.stream)


async def serve_agent(server: GatewayHost, sock: AgentSocket, principal: Principal) -> None:
    """``WS /v1/agent``: the mantis.v1 agent link (docs/protocol.md), on the lean agent socket
    (``agent_socket.py``): this task reads and hands each message to the core; a sender task
    writes what the core has for this agent."""
    aid = f"a{next(_ids)}"
    core = server.core
    core.open_agent(aid, principal, time.time())
    send_channel, receive_channel = trio.open_memory_channel[bytes](10_000)
    server.agent_channels[aid] = send_channel

    try:
        async with trio.open_nursery() as nursery:

            async def sender() -> None:
                try:
                    async for data in receive_channel:
                        await sock.send_text(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                # The link broke, or the server closed our channel: the agent stopped reading
                # (10,000 frames behind). Drop the link; it reconnects and is resubscribed.
                nursery.cancel_scope.cancel()

            nursery.start_soon(sender)
            while (message := await sock.receive()) is not None:
                if isinstance(message, Binary):  # docs/protocol.md: text JSON frames only
                    server.metrics.inc("protocol_errors_total", code="1003")
                    await sock.close(1003, "binary frames are not supported")
                    break
                try:
                    core.receive_agent_data(aid, message, time.time())
                except RemoteProtocolError as exc:
                    server.metrics.inc("protocol_errors_total", code=str(exc.close_code))
                    log.warning("agent %s: protocol error: %s", aid, exc)
                    await sock.close(exc.close_code, str(exc)[:120])
                    break
                finally:
                    server.after()
            nursery.cancel_scope.cancel()
    finally:
        server.agent_channels.pop(aid, None)
        core.close_agent(aid, time.time())
        server.after()


async def serve_sse(server: GatewayHost, responder: Responder, principal: Principal,
                    text: str) -> None:
    """``GET /v1/sse?q=<MQL>``: the same messages as server-sent events, until the query ends."""
    cid = f"s{next(_ids)}"
    core = server.core
    session = ClientSession(cid)
    server.sessions[cid] = session
    core.open_client(cid, principal, time.time(), kind="sse")
    deadline = server.config.limits.send_deadline_s
    await responder.start(200, "text/event-stream; charset=utf-8",
                          [("cache-control", "no-cache"), ("x-accel-buffering", "no")])
    await responder.send(RETRY)

    async def send(data: bytes, msg: Any) -> None:
        await responder.send(event_frame(msg.type, data))

    try:
        async with trio.open_nursery() as nursery:

            async def pinger() -> None:
                while True:
                    await trio.sleep(15)
                    with trio.move_on_after(deadline):
                        await responder.send(PING)

            async def watch_peer() -> None:
                # The peer sends nothing after its request; EOF or an error means it left.
                try:
                    while await responder.stream.receive_some(4096):
                        pass
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()

            async def sender() -> None:
                try:
                    await _pump(server, session, send, deadline)
                    await responder.end()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(pinger)
            nursery.start_soon(watch_peer)
            nursery.start_soon(sender)
            client = core.clients.get(cid)
            now = time.time()
            if (client is not None and client.bucket.available(now) >= 1.0
                    and core.compile_allowed(client.principal.user, now)):
                try:  # compile off the event loop; submit below finds it in the cache
                    await server.compile_off_loop(client.principal, text)
                except Exception:
                    pass
            core.submit(cid, "sse", text, time.time())
            server.after()
    finally:
        server.sessions.pop(cid, None)
        core.close_client(cid, time.time())
        server.after()
