"""Public test helpers (no pytest import): fake query engine, in-memory link pair, test server.

Heavy pieces (the websocket test server, which imports trio) load lazily.
"""

from __future__ import annotations

from typing import Any

from .fake_engine import fake_engine as fake_engine
from .fake_engine import fake_prepare as fake_prepare
from .pair import LinkPair as LinkPair
from .pair import records_of as records_of

__all__ = [
    "LinkPair",
    "TestGateway",
    "fake_engine",
    "fake_prepare",
    "open_test_gateway",
    "records_of",
]


def __getattr__(name: str) -> Any:
    if name in ("TestGateway", "open_test_gateway"):
        from . import server

        return getattr(server, name)
    raise AttributeError(name)
