"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import Caught, caught_logs


@pytest.fixture
def server_log() -> Iterator[Caught]:
    """uvicorn's error log (where an ASGI app's exceptions land) during the test."""
    with caught_logs("uvicorn.error") as caught:
        yield caught
