"""MantisLogHandler with a real agent and gateway: records at every level, with their ``extra``
fields, arrive on ``log``; the handler never recurses, deadlocks or captures the agent's own logs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from mantis_py.integrations.logging import MantisLogHandler

from .helpers import LiveQuery, running_agent, running_gateway, wait_for

pytestmark = pytest.mark.timeout(90)

FIELDS = "level, logger, message, module, func, line, exc_type, thread, order_id, who"


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("itest.shop")
    old = log.level
    log.setLevel(logging.DEBUG)
    log.propagate = False  # only the handlers of the test see its records
    try:
        yield log
    finally:
        log.propagate = True
        log.setLevel(old)
        for h in list(log.handlers):
            log.removeHandler(h)


class Chatty:
    """An argument whose ``str()`` logs: a logging call inside a logging call."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.calls = 0

    def __str__(self) -> str:
        self.calls += 1
        if self.calls < 50:  # without a re-entry guard this would recurse 50 deep
            self.log.warning("nested %s", self)
        return "chatty"


def test_every_level_with_extra_fields_arrives_on_log(app_logger: logging.Logger) -> None:
    with running_gateway() as gw, running_agent("shop", gw) as agent:
        handler = MantisLogHandler(agent)
        # pytest's capture handlers format records too; only ours may run here
        for other in list(app_logger.handlers):
            app_logger.removeHandler(other)
        app_logger.addHandler(handler)
        app_logger.info("before anyone asks")  # nobody subscribed: nothing built
        assert handler.statistics().built == 0
        with LiveQuery(gw, f"select {FIELDS} from shop/log") as q:
            wait_for(lambda: agent.has_subscribers("log"), what="the subscription")
            app_logger.debug("debug %d", 1, extra={"order_id": 1})
            app_logger.info("info %s", "two", extra={"order_id": 2, "who": {"name": "ana"}})
            app_logger.warning("warning", extra={"order_id": 3})
            app_logger.error("error", extra={"order_id": 4, "who": object()})
            app_logger.critical("critical", extra={"order_id": 5})
            try:
                1 / 0  # noqa: B018
            except ZeroDivisionError:
                app_logger.exception("failed", extra={"order_id": 6})
            # the agent's own loggers are never captured
            logging.getLogger("mantis_py.agents").warning("agent internals")
            logging.getLogger("mantis_py").error("agent internals")
            # a logging call made while the handler formats a record is dropped, not recursed
            chatty = Chatty(app_logger)
            app_logger.info("%s says hi", chatty, extra={"order_id": 7})
            wait_for(lambda: len([r for r in q.rows if "order_id" in r]) >= 7, what="7 log rows")
            rows = sorted((r for r in q.rows if "order_id" in r), key=lambda r: r["order_id"])
        assert handler.statistics().failed == 0
    assert len(rows) == 7
    # the record logged from inside the handler's own formatting was dropped, not recursed into
    assert chatty.calls == 1
    assert [r for r in q.rows if "order_id" not in r] == []
    assert [r["level"] for r in rows] == ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "ERROR",
                                         "INFO"]
    assert [r["message"] for r in rows] == ["debug 1", "info two", "warning", "error", "critical",
                                           "failed", "chatty says hi"]
    assert all(r["logger"] == "itest.shop" and r["module"] == "test_logging" for r in rows)
    assert all(r["func"] == "test_every_level_with_extra_fields_arrives_on_log" for r in rows)
    assert all(isinstance(r["line"], int) and r["line"] > 0 for r in rows)
    assert all(r["thread"] == threading.current_thread().name for r in rows)
    assert rows[5]["exc_type"] == "ZeroDivisionError"
    assert all(r.get("exc_type") is None for r in rows[:5])
    assert rows[1]["who"] == {"name": "ana"}
    assert rows[3]["who"].startswith("<object object")  # a non-JSON extra travels as its str()


def test_many_threads_logging_at_once_neither_deadlock_nor_lose_records(
        app_logger: logging.Logger) -> None:
    threads_n, per_thread = 8, 200
    with running_gateway() as gw, running_agent("shop", gw) as agent:
        handler = MantisLogHandler(agent, level=logging.INFO)
        app_logger.addHandler(handler)
        # the root logger too: a record passes two handlers, and agent internals reach the root
        app_logger.propagate = True
        root = logging.getLogger()
        root_handler = MantisLogHandler(agent, stream="rootlog")
        root.addHandler(root_handler)
        try:
            with LiveQuery(gw, "select count(*) as n from shop/log window 1") as q, \
                    LiveQuery(gw, "select logger from shop/rootlog where logger != 'itest.shop'") as r:
                wait_for(lambda: agent.has_subscribers("log") and agent.has_subscribers("rootlog"),
                         what="the subscriptions")
                wait_for(lambda: bool(q.windows), what="the first window")

                def work(i: int) -> None:
                    for k in range(per_thread):
                        app_logger.info("worker %d record %d", i, k, extra={"k": k})
                        app_logger.debug("below the handler's level")

                workers = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join(30)
                assert not any(w.is_alive() for w in workers), "a logging thread is stuck"
                want = threads_n * per_thread
                wait_for(lambda: sum(x["n"] for _, rows in q.windows for x in rows) >= want,
                         what="every record counted")
                total = sum(x["n"] for _, rows in q.windows for x in rows)
        finally:
            root.removeHandler(root_handler)
    assert total == want
    assert handler.statistics().built == want
    assert not r.rows  # only the app's records reached the root handler: no agent internals
    # the root's handler has no level: it also takes the DEBUG records propagated to it
    assert root_handler.statistics().built == 2 * want
