"""``mantis_py.client``: consume live query results from a gateway (see docs/client.md).

    from mantis_py.client import query, open_query, Rows, Meta, Complete, Reconnecting

    for frame in query("select count(*) from playback window 1",
                       gateway=["ws://a:7100", "ws://b:7100"], token=None, reconnect=True):
        ...                                           # any thread

    async with open_query(text, gateway=..., token=...) as results:   # trio
        async for frame in results:
            ...

Frames are typed (:class:`Accepted`, :class:`Rows`, :class:`Meta`, :class:`Complete`,
:class:`Reconnecting`). A lost connection is retried with jittered exponential backoff across
the listed gateways and the query resubmitted; windows missed meanwhile are reported in a
``Meta`` (``missed``), never invented, and never delivered twice. Refusals raise once:
:class:`QueryRefused` (bad MQL, forbidden app), :class:`Unauthorized` (401), :class:`Forbidden`
(403).

The trio shell is imported on first use of ``open_query`` so that ``query`` works without it.
"""

from __future__ import annotations

from typing import Any

from .core import (
    Accepted,
    ClientError,
    Complete,
    ConnectionRefused,
    Forbidden,
    Frame,
    GatewayUnavailable,
    Idle,
    Meta,
    QueryRefused,
    Reconnecting,
    Rows,
    Unauthorized,
    gateway_url,
)
from .sync import query

__all__ = [
    "Accepted",
    "ClientError",
    "Complete",
    "ConnectionRefused",
    "Forbidden",
    "Frame",
    "GatewayUnavailable",
    "Idle",
    "Meta",
    "QueryRefused",
    "Reconnecting",
    "Rows",
    "Unauthorized",
    "gateway_url",
    "open_query",
    "query",
]


def open_query(*args: Any, **kwargs: Any) -> Any:
    """``async with open_query(text, gateway=..., token=...) as results``; see ``client/trio.py``."""
    from .trio import open_query as _open_query

    return _open_query(*args, **kwargs)
