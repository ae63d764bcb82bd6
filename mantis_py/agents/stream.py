"""One stream's state inside the agent: its queues, its query plan and its counters. Pure.

A host thread appends to ``ingress`` (bounded, counts its drops) or steps ``skipped`` (nobody
subscribed); the runner takes batches from ``ingress``, runs them through the pipeline
(:mod:`.pipeline`) into ``pending`` and cuts events frames from there. ``subs`` and ``plan`` are
replaced, never mutated, by the runner. :meth:`Stream.statistics` is the snapshot of the
counters (the two invariants are in :mod:`.stats`).
"""

from __future__ import annotations

import itertools

from .buffer import Ingress, Pending, counter_value
from .config import AgentConfig
from .stats import StreamStatistics
from .subscriptions import StreamPlan, Subscription

__all__ = ["OVERFLOW_STREAM", "Stream"]

OVERFLOW_STREAM = "_overflow"
"""Counters for events on streams beyond ``max_known_streams``."""


class Stream:
    """Per-stream state. ``subs``/``plan`` are replaced (never mutated) by the runner."""

    __slots__ = (
        "folded", "in_hand", "ingress", "lost", "name", "not_object", "pending", "plan", "sent", "seq",
        "skipped", "subs", "unmatched",
    )  # fmt: skip

    def __init__(self, name: str, cfg: AgentConfig) -> None:
        self.name = name
        self.ingress = Ingress(cfg.max_queue_events)
        self.pending = Pending(cfg.max_queue_events, cfg.max_queue_bytes)
        self.skipped = itertools.count()
        self.not_object = itertools.count()
        self.subs: tuple[Subscription, ...] = ()
        self.plan = StreamPlan()
        self.seq = 0
        self.in_hand = 0  # taken from ingress by the runner, not yet accounted
        self.unmatched = 0
        self.folded = 0
        self.sent = 0
        self.lost: dict[str, int] = {}

    def lose(self, reason: str, n: int = 1) -> None:
        """Count ``n`` events lost inside the agent for ``reason``."""
        self.lost[reason] = self.lost.get(reason, 0) + n

    def statistics(self) -> StreamStatistics:
        """A snapshot of this stream's counters (callable from any thread)."""
        ing = self.ingress
        enqueued = ing.enqueued
        skipped = counter_value(self.skipped)
        dropped = {}
        if ing.dropped:
            dropped["queue_full"] = ing.dropped
        n = counter_value(self.not_object)
        if n:
            dropped["not_an_object"] = n
        return StreamStatistics(
            offered=skipped + enqueued + sum(dropped.values()),
            skipped_no_subscription=skipped,
            enqueued=enqueued,
            dropped=dropped,
            unmatched=self.unmatched,
            folded=self.folded,
            sent=self.sent,
            lost=dict(self.lost),
            pending=len(ing.items) + self.in_hand + self.pending.events,
        )
