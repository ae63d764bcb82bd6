"""The HTTP layer: one trio listener serving plain HTTP (h11) and websockets on the same port.

Why (docs/architecture.md, "HTTP layer"): a ``websockets`` server answers plain HTTP only with a
complete body, but SSE needs a streaming response. So each connection's request head is read with
``h11`` (sans-I/O, well kept, no event-loop assumptions). If the request is a websocket upgrade,
every byte read so far is replayed into websockets' own sans-I/O ``ServerProtocol`` through
:class:`ReplayStream`, and a ``websockets.trio.server.ServerConnection`` is built around it exactly
as ``websockets.trio.server.serve()`` does; websockets then parses the same request, performs the
handshake and owns the socket. Otherwise h11 answers, with complete bodies or a streamed one
(chunked for HTTP/1.1, close-delimited for HTTP/1.0).

Decisions that must happen before an upgrade (401, 403, 429, 503) are plain h11 responses.
One request per connection (``Connection: close``): the dashboard and tools make few requests,
and it keeps the layer small.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import h11
import trio
from websockets.protocol import OPEN
from websockets.server import ServerProtocol
from websockets.trio.server import ServerConnection

__all__ = ["HttpRequest", "ReplayStream", "Responder", "read_request", "upgrade"]

log = logging.getLogger("mantis_py.gateway.http")
ws_log = logging.getLogger("mantis_py.gateway.ws")

# After "Authorization:" / "Bearer" the rest of the line is secret (a token may hold spaces,
# quotes or '&'); after "token=" everything up to whitespace or a quote (URL-encoded values).
_SECRET = re.compile(r"(?i)(authorization:[ \t]*|bearer[ \t]+)[^\r\n]+|(token=)[^\s'\"]+")


class RedactSecrets(logging.Filter):
    """Replaces bearer tokens and ``token=`` values in log records: websockets logs handshake
    headers and request lines at DEBUG level, and tokens must never reach a log (docs/operations.md).

    Besides the patterns above, every token text the gateway has been presented recently
    (:meth:`remember`, at most 1,024) is replaced wherever it appears, whatever it contains."""

    known: ClassVar[dict[str, None]] = {}

    @classmethod
    def remember(cls, token: str | None) -> None:
        if not token or len(token) < 4 or token in cls.known:
            return
        if len(cls.known) >= 1024:
            cls.known.pop(next(iter(cls.known)))
        cls.known[token] = None

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        redacted = text
        for token in list(self.known):  # whole known tokens first, then the patterns
            if token in redacted:
                redacted = redacted.replace(token, "<redacted>")
        if _SECRET.search(redacted):
            redacted = _SECRET.sub(lambda m: (m.group(1) or m.group(2)) + "<redacted>", redacted)
        if redacted != text:
            record.msg = redacted
            record.args = ()
        return True


ws_log.addFilter(RedactSecrets())
log.addFilter(RedactSecrets())


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A parsed request head. Header names are lower case; repeated headers are comma-joined.
    ``raw`` holds every byte read from the socket so far (head and any body prefix)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    http_version: str
    raw: bytes

    @property
    def is_websocket(self) -> bool:
        return (self.method == "GET" and self.headers.get("upgrade", "").lower() == "websocket"
                and "upgrade" in self.headers.get("connection", "").lower())

    def __repr__(self) -> str:  # never show headers or the query string: they may hold tokens
        return f"HttpRequest({self.method} {self.path})"


async def read_request(
    stream: trio.abc.Stream, conn: h11.Connection
) -> tuple[HttpRequest | None, bytes]:
    """Read one request head with h11. Returns (None, raw) when the peer closed or sent garbage
    (answered with 400 here)."""
    raw = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            await _bad_request(stream, conn)
            return None, bytes(raw)
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            if not data:
                return None, bytes(raw)
            raw += data
            conn.receive_data(bytes(data))
            continue
        if isinstance(event, h11.Request):
            target = event.target.decode("latin-1")
            parts = urlsplit(target)
            headers: dict[str, str] = {}
            for name, value in event.headers:
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
            req = HttpRequest(
                event.method.decode("ascii", "replace").upper(),
                parts.path or "/",
                dict(parse_qsl(parts.query, keep_blank_values=True)),
                headers,
                event.http_version.decode("ascii", "replace"),
                bytes(raw),
            )
            return req, bytes(raw)
        if isinstance(event, h11.ConnectionClosed):
            return None, bytes(raw)


async def _bad_request(stream: trio.abc.Stream, conn: h11.Connection) -> None:
    try:
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = b"bad request\n"
            await stream.send_all(conn.send(h11.Response(status_code=400, headers=[
                ("content-type", "text/plain"), ("content-length", str(len(body))),
                ("connection", "close")])) or b"")
            await stream.send_all(conn.send(h11.Data(data=body)) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
        pass


class Responder:
    """Answers the current request through h11: complete bodies or a stream of chunks."""

    def __init__(self, stream: trio.abc.Stream, conn: h11.Connection) -> None:
        self.stream = stream
        self.conn = conn

    async def read_body(self, limit: int) -> bytes | None:
        """The request body, or None when it exceeds ``limit`` bytes or the peer went away."""
        body = bytearray()
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = await self.stream.receive_some(65536)
                if not data:
                    return None
                self.conn.receive_data(bytes(data))
                continue
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit:
                    return None
                continue
            if isinstance(event, h11.EndOfMessage):
                return bytes(body)
            return None

    async def start(self, status: int, content_type: str,
                    headers: list[tuple[str, str]] | None = None,
                    length: int | None = None) -> None:
        """Send the response head; without ``length`` the body is streamed."""
        hdrs = [("content-type", content_type), ("connection", "close"),
                ("server", "mantis-py")]
        if length is not None:
            hdrs.append(("content-length", str(length)))
        hdrs.extend(headers or [])
        data = self.conn.send(h11.Response(status_code=status, headers=hdrs))
        if data:
            await self.stream.send_all(data)

    async def send(self, chunk: bytes) -> None:
        """Send part of the body."""
        if chunk:
            data = self.conn.send(h11.Data(data=chunk))
            if data:
                await self.stream.send_all(data)

    async def end(self) -> None:
        data = self.conn.send(h11.EndOfMessage())
        if data:
            await self.stream.send_all(data)

    async def respond(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
                      headers: list[tuple[str, str]] | None = None) -> None:
        """A complete response."""
        await self.start(status, content_type, headers, length=len(body))
        await self.send(body)
        await self.end()


class ReplayStream(trio.abc.Stream):
    """A stream that first returns ``prefix`` (bytes already read by h11), then reads ``inner``."""

    def __init__(self, inner: trio.abc.Stream, prefix: bytes) -> None:
        self.inner = inner
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data
        return bytes(await self.inner.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        send_eof = getattr(self.inner, "send_eof", None)
        if send_eof is not None:
            await send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


class _NoServer:
    """What ``ServerConnection.handshake`` reads from its server: only ``closing``."""

    closing = False


async def upgrade(
    stream: trio.abc.Stream,
    raw: bytes,
    handler: Callable[[ServerConnection], Awaitable[None]],
    *,
    select_subprotocol: Callable[[Any, Any], Any] | None = None,
    subprotocols: list[str] | None = None,
    max_size: int,
    open_timeout: float = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    close_timeout: float | None = 5.0,
    max_queue: int = 16,
) -> None:
    """Hand a connection whose request head h11 already read to websockets, then run ``handler``.

    Mirrors the connection setup of ``websockets.trio.server.serve()`` (websockets 17.4) with the
    already-read bytes replayed first. Returns when the handler and the connection are done.
    """
    async with trio.open_nursery() as nursery:
        replay = ReplayStream(stream, raw)
        protocol = ServerProtocol(
            subprotocols=subprotocols,  # type: ignore[arg-type]
            select_subprotocol=select_subprotocol,
            max_size=max_size,
            logger=ws_log,
        )
        connection = ServerConnection(
            nursery, replay, protocol, _NoServer(),  # type: ignore[arg-type]
            ping_interval=ping_interval, ping_timeout=ping_timeout,
            close_timeout=close_timeout, max_queue=max_queue,
        )
        with trio.move_on_after(open_timeout) as scope:
            await connection.handshake(server_header="mantis-py")
        if scope.cancelled_caught or connection.protocol.state is not OPEN:
            await connection.close_stream()
            return
        connection.start_keepalive()
        async with connection:
            await handler(connection)
