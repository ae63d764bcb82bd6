"""The trio shell of the client library: ``async with open_query(...) as results``.

One task owns the connection (``websockets.trio``) and the sleeps between attempts and passes
typed frames to the caller through a memory channel; every decision is the session's
(``core.py``). An error that ends the query (a refusal, 401/403) is raised by the iterator, once.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.trio.client import connect

from .core import ClientError, Frame, Retry, Session, gateway_list

__all__ = ["Results", "open_query"]

SUBPROTOCOL = "mantis.v1"


class Results:
    """The frames of one query: ``async for frame in results``; raises the query's error."""

    def __init__(self, receive: trio.MemoryReceiveChannel[Frame]) -> None:
        self._receive = receive
        self.error: BaseException | None = None

    def __aiter__(self) -> Results:
        return self

    async def __anext__(self) -> Frame:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            if self.error is not None:
                error, self.error = self.error, None
                raise error from None
            raise StopAsyncIteration from None


@asynccontextmanager
async def open_query(
    text: str,
    gateway: str | list[str] | tuple[str, ...] | None = None,
    token: str | None = None,
    reconnect: bool = True,
    *,
    open_timeout: float = 5.0,
    rng: random.Random | None = None,
) -> AsyncIterator[Results]:
    """Run ``text`` on a gateway inside the caller's trio program (arguments as for
    :func:`mantis_py.client.query`). Leaving the block cancels the query and closes the socket."""
    session = Session(text, gateway_list(gateway, os.environ.get("MANTIS_GATEWAY")),
                      rng or random.Random(), reconnect)
    token = token if token is not None else os.environ.get("MANTIS_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    send, receive = trio.open_memory_channel[Frame](64)
    results = Results(receive)

    async def runner() -> None:
        async with send:
            try:
                await _run(session, headers, open_timeout, send)
            except BaseException as exc:
                leaf = _leaf(exc)
                if not isinstance(leaf, ClientError | ValueError):
                    raise
                results.error = leaf

    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner)
        try:
            yield results
        finally:
            nursery.cancel_scope.cancel()


async def _run(session: Session, headers: dict[str, str] | None, open_timeout: float,
               send: trio.MemorySendChannel[Frame]) -> None:
    while True:
        try:
            reason = await _attempt(session, headers, open_timeout, send)
        except BaseException as exc:  # websockets.trio may wrap errors in exception groups
            leaf = _leaf(exc)
            if isinstance(leaf, InvalidStatus):
                retry = session.http_refused(leaf.response.status_code, leaf.response.reason_phrase)
            elif isinstance(leaf, InvalidURI):
                raise ValueError(f"bad gateway URL: {leaf}") from None
            elif isinstance(leaf, OSError | InvalidHandshake | TimeoutError | trio.TooSlowError
                            | ConnectionClosed | trio.BrokenResourceError):
                retry = session.lost(str(leaf) or type(leaf).__name__)
            else:
                raise
        else:
            if reason is None:
                return
            retry = session.lost(reason)
        await send.send(retry)
        await trio.sleep(retry.next_try_s)


async def _attempt(session: Session, headers: dict[str, str] | None, open_timeout: float,
                   send: trio.MemorySendChannel[Frame]) -> str | None:
    """One connection: None when the query is over, else why the link ended."""
    async with connect(session.url(), additional_headers=headers, open_timeout=open_timeout,
                       subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                       max_size=2**24) as ws:
        try:
            return await _serve(session, ws, send)
        finally:
            if not session.done:
                with trio.CancelScope(shield=True), trio.move_on_after(0.5):
                    try:
                        await ws.send(json.dumps(session.cancel()))
                    except Exception:
                        pass


def _leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside ``exc`` (``exc`` itself when it is not a group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def _serve(session: Session, ws: Any, send: trio.MemorySendChannel[Frame]) -> str | None:
    try:
        await ws.send(json.dumps(session.submit()))
        async for raw in ws:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            try:
                frames = session.receive(msg)
            except Retry as exc:
                return str(exc)
            for frame in frames:
                await send.send(frame)
            if session.done:
                return None
        return "connection closed (1000)"
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        why = exc.rcvd.reason if exc.rcvd is not None and exc.rcvd.reason else ""
        return f"connection closed ({code}{': ' + why if why else ''})"
    except (OSError, trio.BrokenResourceError) as exc:
        return str(exc) or type(exc).__name__
