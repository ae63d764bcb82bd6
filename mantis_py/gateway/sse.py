"""Server-sent events framing for ``GET /v1/sse?q=<MQL>`` (pure; no I/O).

Theory: an SSE stream carries exactly the client-protocol messages of docs/protocol.md that a
websocket client would receive for the same query, one event per message: the event name is the
message ``type`` (``accepted``, ``error``, ``rows``, ``meta``, ``complete``) and the data is the
message's JSON on one line (JSON never contains a raw line break, so one ``data:`` line suffices).
A comment line (``: ping``) keeps idle connections and proxies alive. The stream ends after
``complete`` or ``error``.

Example::

    event: rows
    data: {"type":"rows","id":"sse","window":[100,110],"rows":[{"n":3}]}

"""

from __future__ import annotations

__all__ = ["PING", "RETRY", "event_frame"]

PING = b": ping\n\n"
RETRY = b"retry: 3000\n\n"


def event_frame(event: str, data: bytes) -> bytes:
    """One SSE event. ``data`` is a JSON document; any line break in it is split over ``data:``
    lines as the SSE format requires.

    >>> event_frame("rows", b'{"a":1}')
    b'event: rows\\ndata: {"a":1}\\n\\n'
    """
    if b"\n" in data or b"\r" in data:
        lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        body = b"".join(b"data: " + line + b"\n" for line in lines)
    else:
        body = b"data: " + data + b"\n"
    return b"event: " + event.encode("ascii", "replace") + b"\n" + body + b"\n"
