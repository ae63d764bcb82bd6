"""Log capture: every record a logger handles becomes one event on the agent's ``log`` stream.

    import logging
    from mantis_py.integrations.logging import MantisLogHandler
    logging.getLogger().addHandler(MantisLogHandler(agent))

One event: ``level`` (``"ERROR"``), ``logger``, ``message`` (the formatted message, arguments
merged), ``module``, ``func``, ``line``, ``exc_type`` (the exception's type name or null),
``thread`` (the thread's name), and every ``extra`` field of the record (JSON values as they are,
anything else as its ``str()``; the fields above win a name clash).

Theory of operation:

- ``handle()`` is overridden: the first thing it does is ``agent.has_subscribers(stream)``, so a
  record nobody asked for costs one call and builds nothing. The handler takes no lock (the
  agent's ``publish`` is safe from any thread), so it cannot take part in a deadlock.
- It never recurses: records of the agent's own loggers (``mantis_py.*``, and the websocket
  library's) are ignored, and a per-thread guard (the threads inside ``handle()`` right now) drops any
  record logged while this handler is already handling one on the same thread.
- It never raises into the logging call: a failure of ours is counted
  (:meth:`MantisLogHandler.statistics`) and swallowed, never routed to ``handleError``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from threading import get_ident as _get_ident
from typing import Any

from ._common import AgentLike, Counters, IntegrationStatistics, plain_extra

__all__ = ["MantisLogHandler"]

_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__
) | {"message", "asctime", "taskName"}
"""LogRecord attributes that are not ``extra`` fields."""
_PLAIN_SIZE = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)

IGNORED_LOGGERS = ("mantis_py", "websockets")
"""Loggers whose records are never captured (the agent's own, and its transport's)."""


class MantisLogHandler(logging.Handler):
    """A :class:`logging.Handler` that publishes records to an agent.

    Args:
        agent: the service's :class:`mantis_py.agents.Agent`.
        level: the least level handled (default: every level the logger lets through).
        stream: the stream to publish on (default ``"log"``).
        ignore: logger name prefixes never captured (default: the agent's own and websockets').
    """

    def __init__(self, agent: AgentLike, level: int | str = logging.NOTSET, *,
                 stream: str = "log", ignore: Iterable[str] = IGNORED_LOGGERS) -> None:
        super().__init__(level)
        self.agent = agent
        self.stream = stream
        self._has = agent.has_subscribers
        # the agents' own publish without the defensive copy (the event is ours, built per call)
        self._publish = getattr(agent, "_publish_owned", None) or agent.publish
        self._ignore = tuple(ignore)
        self._ignore_dotted = tuple(p + "." for p in self._ignore)
        self._captured: set[str] = set()  # logger names seen and not ignored
        self._busy: dict[int, bool] = {}  # threads inside handle() right now (re-entry guard)
        self._counters = Counters()

    def statistics(self) -> IntegrationStatistics:
        """How many events were built, and how many failures of ours were swallowed."""
        return self._counters.snapshot()

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        """Publish ``record`` if a query listens; never locks, recurses or raises."""
        if not self._has(self.stream):
            return False
        name = record.name
        if name not in self._captured:  # a logger not seen yet (or an ignored one)
            if name in self._ignore or name.startswith(self._ignore_dotted):
                return False
            if len(self._captured) < 10_000:
                self._captured.add(name)
        me = _get_ident()
        busy = self._busy
        if me in busy:
            return False  # logged from inside our own handling, on this thread
        busy[me] = True  # a subscript store and a del: no call on the path
        try:
            if self.filters and not self.filter(record):
                return False
            # The event, built inline in one display (a method call fewer per record).
            exc = record.exc_info
            event: dict[str, Any] = {
                "level": record.levelname,
                "logger": name,
                "message": record.getMessage(),
                "module": record.module,
                "func": record.funcName,
                "line": record.lineno,
                "exc_type": exc[0].__name__ if exc and exc[0] is not None else None,
                "thread": record.threadName,
            }
            fields = record.__dict__
            if len(fields) > _PLAIN_SIZE:  # a plain record has no more attributes than this
                for k in fields.keys() - _STANDARD:
                    if k not in event:
                        event[k] = plain_extra(fields[k])
            self._counters.built += 1
            self._publish(event, self.stream)
            return True
        except Exception:
            self._counters.failed += 1
            return False
        finally:
            del busy[me]

    def emit(self, record: logging.LogRecord) -> None:
        """For callers that use ``emit()`` directly: the same as :meth:`handle`."""
        self.handle(record)
