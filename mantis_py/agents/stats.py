"""The agent's statistics: snapshot records, and when a ``stats`` message goes upstream. Pure.

Accounting, exact per stream (checked by tests; see docs/agent.md §Statistics):

    offered  = skipped_no_subscription + enqueued + sum(dropped)       # at the host
    enqueued = unmatched + folded + sent + sum(lost) + pending           # in the agent

``dropped`` holds host-side drops (``queue_full``, ``not_an_object``); ``lost`` every later one
(``too_large``, ``unserializable``, ``cycle``, ``bad_key``, ``too_deep``, ``queue_full``,
``cpu_budget``, ``disconnected``, ``expired``, ``agent_error``). The counters themselves live on
each stream (:class:`~.stream.Stream`) and subscription (:class:`~.subscriptions.Subscription`);
this module holds the frozen snapshots built from them and :class:`StatsSchedule`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..wire.messages import Stats

__all__ = [
    "AgentStatistics",
    "StatsSchedule",
    "StreamStatistics",
    "SubscriptionStatistics",
    "losses",
]


@dataclass(frozen=True, slots=True)
class StreamStatistics:
    """Counters of one stream (see the module docstring for the two invariants)."""

    offered: int
    skipped_no_subscription: int
    enqueued: int
    dropped: Mapping[str, int]
    unmatched: int
    folded: int
    sent: int
    lost: Mapping[str, int]
    pending: int

    def to_json(self) -> dict[str, Any]:
        """The ``stats`` message form: ``dropped`` there holds every loss (host and agent side,
        what users are shown); ``lost`` repeats the agent-side part."""
        every = dict(self.dropped)
        for k, v in self.lost.items():
            every[k] = every.get(k, 0) + v
        return {
            "offered": self.offered,
            "skipped_no_subscription": self.skipped_no_subscription,
            "enqueued": self.enqueued,
            "dropped": every,
            "unmatched": self.unmatched,
            "folded": self.folded,
            "sent": self.sent,
            "lost": dict(self.lost),
            "pending": self.pending,
        }


@dataclass(frozen=True, slots=True)
class SubscriptionStatistics:
    """Counters of one subscription."""

    stream: str
    ships: str
    matched: int
    folded: int
    errors: int
    sample_rate: float
    parts_sent: int
    parts_dropped: int

    def to_json(self) -> dict[str, Any]:
        """The ``stats`` message form of this record."""
        return {
            "stream": self.stream,
            "ships": self.ships,
            "matched": self.matched,
            "folded": self.folded,
            "errors": self.errors,
            "sample_rate": self.sample_rate,
            "parts_sent": self.parts_sent,
            "parts_dropped": self.parts_dropped,
            "dropped": {"partials_undelivered": self.parts_dropped} if self.parts_dropped else {},
        }


@dataclass(frozen=True, slots=True)
class AgentStatistics:
    """A snapshot of every counter (``Agent.statistics()``)."""

    streams: Mapping[str, StreamStatistics]
    subs: Mapping[str, SubscriptionStatistics]
    connected: bool
    connects: int
    sample_rate: float

    @property
    def offered(self) -> int:
        """Events published, all streams."""
        return sum(s.offered for s in self.streams.values())

    @property
    def skipped(self) -> int:
        """Events published on streams nobody subscribed to."""
        return sum(s.skipped_no_subscription for s in self.streams.values())

    @property
    def matched(self) -> int:
        """Events that some subscription kept (shipped or folded)."""
        return sum(s.sent + s.folded + sum(s.lost.values()) for s in self.streams.values())

    @property
    def sent(self) -> int:
        """Events handed to the link."""
        return sum(s.sent for s in self.streams.values())

    @property
    def dropped(self) -> dict[str, int]:
        """Every loss by reason, host side and agent side together."""
        out: dict[str, int] = {}
        for s in self.streams.values():
            for d in (s.dropped, s.lost):
                for k, v in d.items():
                    out[k] = out.get(k, 0) + v
        return out


def losses(msg: Stats) -> tuple[dict[str, Any], dict[str, Any]]:
    """The members of a stats message the gateway acts on (losses, errors, sampling); flow
    counters (offered, sent, matched, ...) change with every event and are left out."""
    streams = {name: (c.get("dropped"), c.get("lost")) for name, c in msg.streams.items()}
    subs = {sid: (c.get("dropped"), c.get("errors"), c.get("parts_dropped"),
                  c.get("sample_rate")) for sid, c in msg.subs.items()}
    return streams, subs


class StatsSchedule:
    """When the agent sends ``stats`` on a link.

    Checked every ``interval_s``; sent only when a loss counter moved (what the gateway reads:
    drops, errors, sampling) and at least every ``max_interval_s``, so an idle agent costs the
    gateway no stats frames (docs/agent.md §Statistics). The first check of a link always sends.
    """

    __slots__ = ("_due", "_interval", "_max_interval", "_sent", "next_check")

    def __init__(self, interval_s: float, max_interval_s: float) -> None:
        self._interval = interval_s
        self._max_interval = max_interval_s
        self.next_check = 0.0
        self._sent: Any = None  # the loss counters of the last stats sent on this link
        self._due = 0.0

    def link_opened(self, now: float) -> None:
        """A new link was welcomed: check at once, and send whatever the counters say."""
        self.next_check = now
        self._sent = None

    def check(self, now: float, snapshot: Callable[[], Stats], send: Callable[[Stats], bool]) -> None:
        """Build (``snapshot``) and ``send`` a stats message if one is due at ``now``; a message
        ``send`` refuses is tried again at the next check."""
        if now < self.next_check:
            return
        self.next_check = now + self._interval
        msg = snapshot()
        moved = losses(msg)
        if (moved != self._sent or now >= self._due) and send(msg):
            self._sent = moved
            self._due = now + self._max_interval
