"""The alert shell: runs each rule's query through the gateway and performs the actions.

Theory of operation:
- ``run_alerts(subscribe, rules_config)`` validates the ``[[alerts]]`` tables, then starts one
  watcher task per rule, one ticker that lets time pass in every core (``AlertCore.poll``), and
  one delivery worker per (rule, webhook). ``task_status.started(snapshot)`` hands the gateway a
  function that returns the JSON for ``GET /v1/alerts``.
- A watcher opens ``subscribe(query)`` (an async context manager from the gateway yielding a
  receive channel of client-protocol dicts, docs/protocol.md) and feeds the core: each windowed
  ``rows`` frame is paired with the window's ``meta`` coverage (the gateway sends a meta with
  every window result); ``complete`` and ``error`` end the subscription, and the watcher
  resubscribes with backoff (1 s doubling to 30 s), e.g. until the app's first agent connects.
- Webhooks: each (rule, webhook) has its own bounded queue and worker, so a dead receiver delays
  only its own notifications, never another rule's evaluation or webhook. Each POST is bounded by
  the action's ``timeout``; failures are retried ``attempts`` times with exponential backoff and
  jitter (0.5 s doubling, at most 8 s); a full queue drops the oldest notification and counts it.
  The HTTP client is a small h11 client over trio sockets (``post_json``).
"""

from __future__ import annotations

import json
import logging
import math
import random
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11
import trio

from .alerts import (
    AlertCore,
    AlertRule,
    Delivery,
    Predicate,
    WindowResult,
    compile_condition,
    parse_rules,
)

__all__ = ["AlertRunner", "post_json", "run_alerts"]

log = logging.getLogger("mantis_py.gateway.alerts")

Subscribe = Callable[[str], AbstractAsyncContextManager[trio.MemoryReceiveChannel[dict[str, Any]]]]
Snapshot = Callable[[], dict[str, Any]]

QUEUE_SIZE = 32
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 8.0
RESUBSCRIBE_FIRST = 1.0
RESUBSCRIBE_MAX = 30.0
TICK = 1.0
PAIR_WAIT = 1.5  # seconds a window's rows wait for their meta before using the last coverage


async def run_alerts(
    subscribe: Subscribe,
    rules_config: Sequence[Mapping[str, Any]],
    *,
    task_status: trio.TaskStatus[Snapshot] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Evaluate the configured alert rules until cancelled.

    Args:
        subscribe: ``subscribe(query_text)`` -> async context manager yielding a receive
            channel of client-protocol dicts (``accepted``/``error``/``rows``/``meta``/
            ``complete``) for that query; leaving the context cancels the query.
        rules_config: the ``[[alerts]]`` tables of the gateway config.
        task_status: started with the snapshot function for ``GET /v1/alerts``.

    Raises:
        ConfigurationError: a rule is invalid (raised before ``started``).
    """
    runner = AlertRunner(rules_config)
    await runner.serve(subscribe, task_status=task_status)


@dataclass(slots=True)
class _WebhookStats:
    sent: int = 0
    failed: int = 0
    retries: int = 0
    dropped: int = 0


class AlertRunner:
    """Owns the cores of every rule; ``serve`` runs them, ``snapshot`` reads them."""

    def __init__(
        self,
        rules_config: Sequence[Mapping[str, Any]],
        *,
        compile: Callable[..., Predicate] = compile_condition,
    ) -> None:
        # the real engine checks each query and condition up front; a fake compile is for tests
        self.rules: list[AlertRule] = parse_rules(
            rules_config, check_condition=compile is compile_condition
        )
        start = time.time()
        self.cores: dict[str, AlertCore] = {
            r.name: AlertCore(r, compile(r.condition, rule=r.name), start) for r in self.rules
        }
        self.webhooks: dict[tuple[str, int], _WebhookStats] = {}
        self._queues: dict[tuple[str, int], trio.MemorySendChannel[Delivery]] = {}
        self._pending_dropped: dict[tuple[str, int], int] = {}

    def snapshot(self) -> dict[str, Any]:
        """The JSON body of ``GET /v1/alerts``: ``{"alerts": [rule snapshot, ...]}``."""
        out = []
        for rule in self.rules:
            snap = self.cores[rule.name].snapshot()
            hooks = []
            for i, action in enumerate(rule.actions):
                stats = self.webhooks.get((rule.name, i))
                if action.kind == "webhook" and stats is not None:
                    hooks.append({"url": action.url, "sent": stats.sent, "failed": stats.failed,
                                  "retries": stats.retries, "dropped": stats.dropped})
            snap["webhooks"] = hooks
            out.append(snap)
        return {"alerts": out}

    async def serve(
        self, subscribe: Subscribe, *, task_status: trio.TaskStatus[Snapshot] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run every rule until cancelled."""
        async with trio.open_nursery() as nursery:
            for rule in self.rules:
                for i, action in enumerate(rule.actions):
                    if action.kind == "webhook":
                        send, receive = trio.open_memory_channel[Delivery](QUEUE_SIZE)
                        self._queues[(rule.name, i)] = send
                        self.webhooks[(rule.name, i)] = _WebhookStats()
                        nursery.start_soon(self._deliver_webhooks, rule.name, i, receive)
            for rule in self.rules:
                nursery.start_soon(self._watch, subscribe, rule)
            if self.rules:
                nursery.start_soon(self._tick)
            task_status.started(self.snapshot)

    # ------------------------------------------------------------------ evaluation

    async def _tick(self) -> None:
        while True:
            await trio.sleep(TICK)
            now = time.time()
            for core in self.cores.values():
                core.poll(now)
                self._dispatch(core)

    async def _watch(self, subscribe: Subscribe, rule: AlertRule) -> None:
        core = self.cores[rule.name]
        delay = RESUBSCRIBE_FIRST
        while True:
            try:
                async with subscribe(rule.query) as channel:
                    if await self._follow(core, channel):
                        delay = RESUBSCRIBE_FIRST
            except trio.Cancelled:
                raise
            except Exception as exc:  # the gateway went away, the query failed ...
                core.receive_error(str(exc) or type(exc).__name__, time.time())
            self._dispatch(core)
            await trio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, RESUBSCRIBE_MAX)

    async def _follow(
        self, core: AlertCore, channel: trio.MemoryReceiveChannel[dict[str, Any]]
    ) -> bool:
        """Feed one subscription's frames to the core. Returns True if it was accepted."""
        accepted = False
        pending: tuple[tuple[float, float], list[dict[str, Any]], float] | None = None
        coverage: tuple[int | None, int | None] = (None, None)

        def flush() -> None:
            nonlocal pending
            if pending is not None:
                window, rows, _ = pending
                core.receive_window(WindowResult(window, tuple(rows), *coverage), time.time())
                pending = None
                self._dispatch(core)

        while True:
            wait = math.inf if pending is None else max(0.0, pending[2] + PAIR_WAIT - time.monotonic())
            msg: dict[str, Any] | None = None
            with trio.move_on_after(wait):
                try:
                    msg = await channel.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    flush()
                    core.receive_complete("subscription closed", time.time())
                    return accepted
            if msg is None:  # the meta did not come: use the last coverage seen
                flush()
                continue
            kind = msg.get("type")
            if kind == "accepted":
                accepted = True
            elif kind == "rows" and msg.get("window") is not None:
                flush()
                w = msg["window"]
                pending = ((float(w[0]), float(w[1])), list(msg.get("rows") or []), time.monotonic())
            elif kind == "meta":
                cov = msg.get("coverage") or {}
                coverage = (_int_or_none(cov.get("reporting")), _int_or_none(cov.get("expected")))
                flush()
                waiting = msg.get("waiting")
                if isinstance(waiting, dict):  # no agent of the app yet: insufficient data
                    core.receive_waiting(str(waiting.get("app")), waiting.get("suggestion"),
                                         time.time())
                    self._dispatch(core)
            elif kind == "complete":
                flush()
                core.receive_complete(str(msg.get("reason", "")), time.time())
                self._dispatch(core)
                return accepted
            elif kind == "error":
                err = msg.get("error") or {}
                core.receive_error(str(err.get("message", err)), time.time())
                self._dispatch(core)
                return accepted

    # ------------------------------------------------------------------ actions

    def _dispatch(self, core: AlertCore) -> None:
        for delivery in core.deliveries_to_send():
            note = delivery.notification
            if delivery.action.kind == "log":
                level = logging.WARNING if note.state == "firing" else logging.INFO
                log.log(level, "%s", note.log_line())
                continue
            index = core.rule.actions.index(delivery.action)
            key = (core.rule.name, index)
            queue = self._queues.get(key)
            if queue is None:
                continue
            try:
                queue.send_nowait(delivery)
            except trio.WouldBlock:
                self.webhooks[key].dropped += 1
                log.warning("alert %s: webhook queue full, notification dropped", core.rule.name)

    async def _deliver_webhooks(
        self, rule: str, index: int, receive: trio.MemoryReceiveChannel[Delivery]
    ) -> None:
        stats = self.webhooks[(rule, index)]
        async for delivery in receive:
            if await deliver(delivery, stats):
                stats.sent += 1
            else:
                stats.failed += 1


async def deliver(delivery: Delivery, stats: _WebhookStats | None = None) -> bool:
    """POST one notification, retrying with backoff. Returns True once a 2xx came back."""
    action = delivery.action
    body = json.dumps(delivery.notification.to_json(), separators=(",", ":")).encode()
    delay = BACKOFF_FIRST
    for attempt in range(1, action.attempts + 1):
        try:
            with trio.fail_after(action.timeout):
                status = await post_json(action.url or "", body, headers=action.headers)
            if 200 <= status < 300:
                return True
            problem = f"HTTP {status}"
        except trio.TooSlowError:
            problem = f"no answer within {action.timeout:g} s"
        except (OSError, h11.ProtocolError, ValueError) as exc:
            problem = str(exc) or type(exc).__name__
        log.warning(
            "alert %s: webhook %s attempt %d/%d failed: %s",
            delivery.notification.alert, action.url, attempt, action.attempts, problem,
        )
        if attempt == action.attempts:
            break
        if stats is not None:
            stats.retries += 1
        await trio.sleep(delay * random.uniform(0.75, 1.25))
        delay = min(delay * 2, BACKOFF_MAX)
    return False


async def post_json(
    url: str, body: bytes, *, headers: Sequence[tuple[str, str]] = ()
) -> int:
    """POST ``body`` as JSON to an http:// or https:// URL and return the response status.

    A minimal HTTP/1.1 client (h11 over trio sockets): one request per connection, the response
    body is read and discarded. Bound it with ``trio.fail_after``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    stream: trio.abc.Stream = await trio.open_tcp_stream(parts.hostname, port)
    async with stream:
        if parts.scheme == "https":
            ssl_stream = trio.SSLStream(stream, ssl.create_default_context(), server_hostname=parts.hostname)
            await ssl_stream.do_handshake()
            stream = ssl_stream
        conn = h11.Connection(our_role=h11.CLIENT)
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        request_headers = [
            ("Host", host),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("User-Agent", "mantis-py-alerts"),
            ("Connection", "close"),
            *headers,
        ]
        out = conn.send(h11.Request(method="POST", target=target, headers=request_headers))
        out += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        await stream.send_all(out)
        status: int | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(bytes(data))
                if not data and status is not None:
                    return status
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                if status is None:
                    raise h11.RemoteProtocolError("connection closed before a response")
                return status


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
