"""The thread shell of the client library: ``query(...)``, a plain iterator usable from any thread.

It owns one ``websockets.sync`` connection at a time and the sleeps between attempts; every
decision (which gateway, how long to wait, which frames to hand out) is the session's
(``core.py``).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import connect

from .core import Frame, Idle, Retry, Session, gateway_list

__all__ = ["query"]

SUBPROTOCOL = "mantis.v1"


def query(
    text: str,
    gateway: str | list[str] | tuple[str, ...] | None = None,
    token: str | None = None,
    reconnect: bool = True,
    *,
    idle_s: float | None = None,
    open_timeout: float = 5.0,
    rng: random.Random | None = None,
) -> Iterator[Frame]:
    """Run ``text`` on a gateway and yield its frames until the query completes.

    Args:
        gateway: one URL, a list (tried in order; the one that works is kept until it fails) or
            None for ``$MANTIS_GATEWAY`` / ``ws://127.0.0.1:7100``.
        token: bearer token (default ``$MANTIS_TOKEN``).
        reconnect: on a lost connection, yield :class:`Reconnecting`, wait (jittered exponential
            backoff, first retry within 0.25 s, at most 10 s) and resubmit on the next gateway.
        idle_s: also yield :class:`Idle` when nothing arrived for this long (for redraws and
            deadlines of the caller).

    Raises:
        QueryRefused: bad MQL or a forbidden application (raised once, never resubmitted).
        Unauthorized, Forbidden: HTTP 401 / 403 on the handshake.
        GatewayUnavailable: the connection failed and ``reconnect`` is False.
        ValueError: a malformed gateway URL.

    Closing the iterator (``break`` out of the loop) cancels the query and closes the socket.
    """
    session = Session(text, gateway_list(gateway, os.environ.get("MANTIS_GATEWAY")),
                      rng or random.Random(), reconnect)
    token = token if token is not None else os.environ.get("MANTIS_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return _run(session, headers, idle_s, open_timeout)


def _run(session: Session, headers: dict[str, str] | None, idle_s: float | None,
         open_timeout: float) -> Iterator[Frame]:
    while True:
        url = session.url()
        try:
            ws = connect(url, additional_headers=headers, open_timeout=open_timeout,
                         subprotocols=[SUBPROTOCOL], max_size=2**24)  # type: ignore[list-item]
        except InvalidStatus as exc:
            retry = session.http_refused(exc.response.status_code, exc.response.reason_phrase)
        except InvalidURI as exc:
            raise ValueError(f"bad gateway URL: {exc}") from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            retry = session.lost(str(exc) or type(exc).__name__)
        else:
            with ws:
                try:
                    reason = yield from _serve(session, ws, idle_s)
                finally:
                    if not session.done:
                        try:
                            ws.send(json.dumps(session.cancel()))
                        except Exception:
                            pass
            if reason is None:
                return
            retry = session.lost(reason)
        yield retry
        yield from _sleep(retry.next_try_s, idle_s)


def _serve(session: Session, ws: Any, idle_s: float | None) -> Iterator[Frame] | Any:
    """Frames of one connection; returns None when the query is over, else why the link ended."""
    try:
        ws.send(json.dumps(session.submit()))
        while True:
            try:
                raw = ws.recv(timeout=idle_s)
            except TimeoutError:
                yield Idle()
                continue
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            try:
                frames = session.receive(msg)
            except Retry as exc:
                return str(exc)
            yield from frames
            if session.done:
                return None
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        why = exc.rcvd.reason if exc.rcvd is not None and exc.rcvd.reason else ""
        return f"connection closed ({code}{': ' + why if why else ''})"
    except OSError as exc:
        return str(exc) or type(exc).__name__


def _sleep(seconds: float, idle_s: float | None) -> Iterator[Frame]:
    """Wait ``seconds``, yielding :class:`Idle` every ``idle_s`` when the caller wants them."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if idle_s is None:
            time.sleep(left)
            return
        time.sleep(min(idle_s, left))
        if deadline - time.monotonic() > 0:
            yield Idle()
