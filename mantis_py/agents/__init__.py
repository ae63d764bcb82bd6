"""The embedded agent (docs/agent.md).

``Agent`` runs in a daemon thread (threaded, asyncio and plain programs); ``open_agent`` runs in
a trio nursery. ``open_agent`` is loaded lazily so a threaded host never imports trio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import AgentConfig as AgentConfig
from .core import AgentCore as AgentCore
from .stats import AgentStatistics as AgentStatistics
from .stats import StreamStatistics as StreamStatistics
from .stats import SubscriptionStatistics as SubscriptionStatistics
from .sync import Agent as Agent

if TYPE_CHECKING:
    from .trio import TrioAgent as TrioAgent
    from .trio import open_agent as open_agent

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentCore",
    "AgentStatistics",
    "StreamStatistics",
    "SubscriptionStatistics",
    "TrioAgent",
    "open_agent",
]


def __getattr__(name: str) -> Any:
    if name in ("open_agent", "TrioAgent"):
        from . import trio as _trio

        return getattr(_trio, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
