"""The host-facing half of an agent, shared by the thread runner and the trio runner.

``publish()`` is the one call a service makes per event, from any thread, so it is the core's
``offer()`` inlined: nobody subscribed to the stream costs one subscript and one loop step over the
stream's counter (no call); a stream with queries costs a copy and a bounded append; everything
else (conversion, unknown streams, a full queue) goes to ``AgentCore.offer_slow``. It never blocks,
never raises and never mutates the caller's event. The only outside state read here is the clock,
for the event time.
"""

from __future__ import annotations

import time
from typing import Any

from .core import AgentCore
from .stats import AgentStatistics

__all__ = ["HostSide"]

_now = time.time  # bound once: the host's hot path calls it per event


class HostSide:
    """Mixin: ``publish``, ``has_subscribers``, ``statistics`` and ``connected`` over ``self._core``.

    A runner calls :meth:`_bind_core` whenever it (re)creates its core (after ``fork()`` too).
    """

    _core: AgentCore

    def _bind_core(self, core: AgentCore) -> None:
        self._core = core
        # publish() reads these directly: the route and queue dicts, the slow path (docs/agent.md).
        self._route = core.route
        self._queues = core.queues
        self._cap = core.queue_cap
        self._offer_slow = core.offer_slow

    def publish(self, event: Any, stream: str = "default") -> None:
        """Offer one event. Never blocks, never raises, never mutates ``event``.

        Costs about one method call when nobody subscribed to ``stream``.
        """
        # Nobody subscribed: the stream's route is its counter, and one loop step counts the event
        # as skipped. A stream with queries has an exhausted iterator and falls through to its queue.
        try:
            for _ in self._route[stream]:
                return
            q = self._queues[stream]
            if type(event) is dict and len(q) < self._cap:
                q.append((_now(), event.copy()))
                return
        except Exception:  # unknown stream (KeyError), or a race with the agent thread
            pass
        self._offer_slow(event, stream, _now())

    def _publish_owned(self, event: dict[str, Any], stream: str) -> None:
        """:meth:`publish` for a dict built for this one call and never touched again by the
        caller (the integrations in ``mantis_py.integrations``): queued as it is, not copied."""
        try:
            for _ in self._route[stream]:
                return
            q = self._queues[stream]
            if len(q) < self._cap:
                q.append((_now(), event))
                return
        except Exception:  # unknown stream (KeyError), or a race with the agent thread
            pass
        self._offer_slow(event, stream, _now())

    def has_subscribers(self, stream: str = "default") -> bool:
        """Whether any query runs on ``stream`` (skip building events nobody will see).

        A stream has a queue exactly while queries run on it (the core adds the queue before
        the first subscription shows and removes it after the last one went), so this is one
        dict lookup, called per request / log record by the integrations.
        """
        return stream in self._queues

    def statistics(self) -> AgentStatistics:
        """A snapshot of the counters (see docs/agent.md §Statistics)."""
        return self._core.statistics()

    @property
    def connected(self) -> bool:
        """True while the link to the gateway is open."""
        return self._core.is_open
