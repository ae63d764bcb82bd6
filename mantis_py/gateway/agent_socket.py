"""The agents' websocket: websockets' sans-I/O protocol driven by one reading task. Thin shell.

Why not ``websockets.trio``'s connection, as clients get: an agent link carries one small frame
per agent and second, and a gateway holds thousands of them. The full connection runs a
background reader task, an assembler, a lock around every flush and a task switch per message;
per frame that machinery cost more than decoding and merging the frame itself. Here the
connection's own task waits until the socket is readable, reads it (on plain TCP through a second
handle on the descriptor, one ``recv`` per frame), feeds ``websockets``' ``ServerProtocol`` (frame parsing,
masking, size limits, ping/pong and the closing handshake are all still the library's) and hands
each complete text message to the caller as bytes. Writes (``send_text``, automatic pongs and close
frames) go straight to the stream under a lock that is only taken when there is something to
write.

Close codes are the library's: 1002 for protocol errors (unmasked or reserved bits), 1009 for a
message over ``max_size``; the caller closes with 1003 for binary frames and whatever its codec
says for bad data.
"""

from __future__ import annotations

import logging
import socket
from collections import deque

import trio
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import Event, State
from websockets.server import ServerProtocol

__all__ = ["AgentSocket", "Binary"]

RECEIVE_BYTES = 65536
CLOSE_TIMEOUT_S = 2.0


class Binary(bytes):
    """A binary message (agents must send text; the caller closes with 1003)."""


class AgentSocket:
    """One agent's websocket after the HTTP request head was read (see the module header)."""

    def __init__(self, stream: trio.abc.Stream, *, max_size: int, subprotocols: list[str],
                 logger: logging.Logger) -> None:
        self.stream = stream
        self.protocol = ServerProtocol(subprotocols=subprotocols,  # type: ignore[arg-type]
                                       max_size=max_size, logger=logger)
        self._lock = trio.Lock()
        self._parts: list[bytes] = []  # a fragmented message so far
        self._binary = False  # ... and whether it is binary
        self._pending: deque[Event] = deque()  # frames parsed, not yet handed out
        # plain TCP: read through a second handle on the same descriptor once trio says it is
        # readable (trio's receive_some tries a read first, a failed recv per frame at a frame a
        # second, and yields once more after it). close() detaches the handle: trio's socket
        # stays the one that closes the descriptor.
        self._raw: socket.socket | None = None
        if isinstance(stream, trio.SocketStream):
            raw = stream.socket
            self._raw = socket.socket(raw.family, raw.type, raw.proto, fileno=raw.fileno())
            self._raw.setblocking(False)

    async def _flush(self) -> None:
        """Write what the protocol produced (frames, or b"" for end of stream)."""
        pending = self.protocol.data_to_send()
        if not pending:
            return
        async with self._lock:  # FIFO: frames leave in the order they were taken
            for data in pending:
                if data:
                    await self.stream.send_all(data)
                elif isinstance(self.stream, trio.abc.HalfCloseableStream):
                    try:
                        await self.stream.send_eof()
                    except trio.BrokenResourceError:
                        pass

    async def handshake(self, head: bytes, server_header: str) -> bool:
        """Answer the opening handshake whose request ``head`` (bytes) was already read. False
        when it was refused (the response, e.g. 400 or 426, was sent)."""
        protocol = self.protocol
        protocol.receive_data(head)
        events = protocol.events_received()
        while not events:
            data = await self.stream.receive_some(RECEIVE_BYTES)
            if not data:
                return False
            protocol.receive_data(data)
            events = protocol.events_received()
        request = events[0]
        if not isinstance(request, Request):
            return False
        response = protocol.accept(request)
        response.headers["Server"] = server_header
        protocol.send_response(response)
        await self._flush()
        if protocol.state is not State.OPEN:
            return False
        protocol.receive_data(b"")  # parse frames that came with the request (a pipelined hello)
        self._pending.extend(protocol.events_received())
        return True

    async def receive(self) -> bytes | None:
        """The next complete message (text as bytes, binary as :class:`Binary`), or None once
        the connection is closed (by the peer, an error, or EOF)."""
        protocol = self.protocol
        pending = self._pending
        while True:
            while pending:
                frame = pending.popleft()
                if not isinstance(frame, Frame):
                    continue
                opcode = frame.opcode
                if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                    self._binary = opcode is Opcode.BINARY
                    if frame.fin:
                        return Binary(frame.data) if self._binary else bytes(frame.data)
                    self._parts = [bytes(frame.data)]
                elif opcode is Opcode.CONT:
                    self._parts.append(bytes(frame.data))
                    if frame.fin:
                        data, self._parts = b"".join(self._parts), []
                        return Binary(data) if self._binary else data
            if protocol.state is State.CLOSED or protocol.close_expected():
                await self._flush()
                return None
            chunk = await self._receive_some()
            if chunk:
                protocol.receive_data(chunk)
            else:
                protocol.receive_eof()  # the state becomes CLOSED: the next turn returns None
            pending.extend(protocol.events_received())
            await self._flush()  # pongs, close frames

    async def _receive_some(self) -> bytes:
        """The next bytes from the peer, b"" at the end of the stream (or when it broke)."""
        raw = self._raw
        if raw is None:
            try:
                return bytes(await self.stream.receive_some(RECEIVE_BYTES))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
        while True:
            await trio.lowlevel.wait_readable(raw)
            try:
                return raw.recv(RECEIVE_BYTES)
            except BlockingIOError:
                continue  # woken without data (spurious): wait again
            except OSError:
                return b""

    async def send_text(self, data: bytes) -> None:
        """Send one text message (``data`` is UTF-8)."""
        if self.protocol.state is not State.OPEN:
            raise trio.ClosedResourceError("websocket closed")
        self.protocol.send_text(data)
        await self._flush()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (if still open), wait up to 2 s for the peer's close
        frame, then close the stream (also when cancelled)."""
        try:
            with trio.move_on_after(CLOSE_TIMEOUT_S):
                if self.protocol.state is State.OPEN:
                    self.protocol.send_close(code, reason)
                    await self._flush()
                while self.protocol.state is not State.CLOSED:
                    data = await self._receive_some()
                    if not data:
                        break
                    self.protocol.receive_data(data)
                    self.protocol.events_received()
                    await self._flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            if self._raw is not None:
                raw, self._raw = self._raw, None
                raw.detach()  # (never closes the descriptor: trio's socket does, just below)
            await trio.aclose_forcefully(self.stream)
