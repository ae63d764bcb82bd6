"""Fixtures for agent tests."""

from __future__ import annotations

import pytest

from mantis_py.agents.core import AgentCore
from mantis_py.testing import LinkPair

from .helpers import make_core


@pytest.fixture
def core() -> AgentCore:
    return make_core(mask=("password", "user.card"))


@pytest.fixture
def pair(core: AgentCore) -> LinkPair:
    return LinkPair(core, now=1000.0)
