"""Helpers for agent tests: a core wired to the fake engine, accounting checks."""

from __future__ import annotations

import random
from typing import Any

from mantis_py.agents.core import AgentConfig, AgentCore
from mantis_py.testing import fake_engine


def make_core(seed: int = 1, **settings: Any) -> AgentCore:
    settings.setdefault("app", "app")
    settings.setdefault("instance", "i1")
    return AgentCore(AgentConfig(**settings), random.Random(seed), fake_engine())


def check_accounting(core: AgentCore) -> None:
    """Both invariants of docs/agent.md §Statistics, for every stream."""
    for name, s in core.statistics().streams.items():
        assert s.offered == s.skipped_no_subscription + s.enqueued + sum(s.dropped.values()), name
        assert s.enqueued == s.unmatched + s.folded + s.sent + sum(s.lost.values()) + s.pending, (
            name
        )
