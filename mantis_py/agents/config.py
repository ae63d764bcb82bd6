"""AgentConfig: every setting of the embedded agent, checked once at construction. Pure.

The runners (``Agent``, ``open_agent``) build one from their keyword arguments; the core reads it
and never changes it. Defaults and meanings: docs/agent.md §Settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .. import __version__
from ..errors import ConfigurationError

__all__ = ["AgentConfig"]


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Every agent setting, with its default (docs/agent.md §Settings)."""

    app: str
    instance: str
    zone: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    streams: tuple[str, ...] = ("default",)
    mask: tuple[str, ...] = ()
    mask_ignore_case: bool = True
    version: str = __version__
    pid: int = 0
    max_queue_events: int = 1000
    max_queue_bytes: int = 2 * 1024 * 1024
    max_queries_per_stream: int = 20
    max_streams: int = 5
    max_known_streams: int = 100
    max_event_bytes: int = 64 * 1024
    max_depth: int = 64
    batch_interval_s: float = 0.05
    batch_max_bytes: int = 64 * 1024
    stats_interval_s: float = 1.0
    stats_max_interval_s: float = 60.0
    expire_after_s: float = 30.0
    resubscribe_grace_s: float = 10.0
    cpu_budget: float = 0.05
    min_sample_rate: float = 0.001
    error_report_interval_s: float = 10.0
    max_control_frames: int = 1000
    max_poll_gap_s: float = 1.0
    subscribe_rate_per_s: float = 1.0
    subscribe_burst: int = 30
    compile_cpu_burst_s: float = 0.2
    allow_unmasked: bool = False

    def __post_init__(self) -> None:
        if not self.app or not isinstance(self.app, str):
            raise ConfigurationError("app must be a non-empty string")
        if not self.instance or not isinstance(self.instance, str):
            raise ConfigurationError("instance must be a non-empty string")
        if isinstance(self.mask, str):
            raise ConfigurationError("mask must be a sequence of field names, not a string")
        for name in (
            "max_queue_events", "max_queue_bytes", "max_queries_per_stream", "max_streams",
            "max_known_streams", "max_event_bytes", "max_depth", "batch_max_bytes",
            "max_control_frames", "subscribe_burst",
        ):  # fmt: skip
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigurationError(f"{name} must be an integer >= 1, got {v!r}")
        for name in (
            "batch_interval_s", "stats_interval_s", "expire_after_s", "resubscribe_grace_s",
            "error_report_interval_s", "stats_max_interval_s", "max_poll_gap_s",
            "subscribe_rate_per_s", "compile_cpu_burst_s",
        ):  # fmt: skip
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v <= 0:
                raise ConfigurationError(f"{name} must be a number > 0, got {v!r}")
        if not 0 < self.cpu_budget <= 1:
            raise ConfigurationError("cpu_budget must be in (0, 1]")
        if not 0 < self.min_sample_rate <= 1:
            raise ConfigurationError("min_sample_rate must be in (0, 1]")
