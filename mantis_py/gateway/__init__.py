"""The gateway: pushes queries to agents, merges their streams, serves clients (docs/operations.md).

Pure cores: ``config``, ``auth``, ``limits``, ``registry``, ``merge``, ``core``, ``sse``,
``metrics``; shells: ``http``, ``handlers``, ``server``. The server (trio, websockets, h11) is
loaded lazily, so importing a pure module never pulls in the network stack.

Run one in a nursery::

    server = await nursery.start(serve_gateway, GatewayConfig(port=0))
    async with server.subscribe("select count(*) from app window 10") as results: ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import GatewayConfig as GatewayConfig
from .config import load_config as load_config

if TYPE_CHECKING:
    from .server import GatewayServer as GatewayServer
    from .server import serve_gateway as serve_gateway

__all__ = ["GatewayConfig", "GatewayServer", "load_config", "serve_gateway"]


def __getattr__(name: str) -> Any:
    if name in ("GatewayServer", "serve_gateway"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
