"""The trio side of the cluster: one task that moves batches between the NATS thread
(``bridge.py``) and the pure :class:`~.node.ClusterNode`, plus the cluster-wide inventory and
the alert-ownership wrapper around ``GatewayServer.subscribe``."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ...wire import codec
from .bridge import NatsBridge
from .node import ClusterNode

__all__ = ["ClusterRunner", "run_cluster"]

log = logging.getLogger("mantis_py.cluster")
TICK_S = 0.1


class ClusterRunner:
    """One gateway's cluster membership (see ``node.py`` for what travels where)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        config = server.config
        self.config = config.cluster
        self.node_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        scheme = "https" if config.tls else "http"
        self.url = f"{scheme}://{config.host}:{server.port}/"
        self.node = ClusterNode(server.core, self.config, self.node_id, self.url, time.time())
        self._token = trio.lowlevel.current_trio_token()
        self._event = trio.Event()
        self.bridge = NatsBridge(self.config, f"mantis-gateway {self.node_id}", self._wake)

    def _wake(self) -> None:  # called on the NATS thread
        self._token.run_sync_soon(self._set)

    def _set(self) -> None:
        self._event.set()

    def status(self) -> dict[str, Any]:
        """For ``/healthz``: this node, its NATS server, the live gateways (with the agent
        instances per application each announced in its last heartbeat)."""
        return {"node": self.node_id, "name": self.config.name,
                "nats": self.bridge.connected_url, "reconnects": self.bridge.reconnects,
                "gateways": self.node.state.live_nodes(),
                "remote_agents": self.node.state.remote_agents(),
                "counters": dict(self.node.counters)}

    async def serve(self, task_status: trio.TaskStatus[ClusterRunner]) -> None:
        await trio.to_thread.run_sync(self.bridge.start)
        task_status.started(self)
        node, bridge, server = self.node, self.bridge, self.server
        interest: set[str] = set()
        last_tick = 0.0
        try:
            while True:
                with trio.move_on_after(TICK_S):
                    await self._event.wait()
                self._event = trio.Event()
                now = time.time()
                for subject, data, reply in bridge.take():
                    node.receive(subject, data, reply, now)
                for subject, n in bridge.take_drops().items():
                    node.slow_consumer(subject, n)
                if now - last_tick >= TICK_S:
                    last_tick = now
                    node.tick(now)
                    want = node.interest()  # O(agents): once per tick, not per batch
                    if want != interest:
                        interest = want
                        bridge.set_interest(want)
                bridge.publish(node.outgoing())
                server.after()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.bridge.stop)

    async def inventory(self, wait_s: float = 0.5) -> dict[str, Any]:
        """``/v1/apps`` for the whole cluster: this gateway's agents and every other's
        (request/reply; a gateway that does not answer within ``wait_s`` is left out)."""
        mine = self.server.core.inventory()
        others = len(self.node.state.live_nodes()) - 1
        if others <= 0:
            return dict(mine)
        done = trio.Event()
        got: list[bytes] = []

        def finished(replies: list[bytes]) -> None:  # NATS thread
            def on_trio() -> None:
                got.extend(replies)
                done.set()
            self._token.run_sync_soon(on_trio)

        self.bridge.request_all(f"{self.node.prefix}.inv", b"{}", others, wait_s, finished)
        with trio.move_on_after(wait_s + 1.0):
            await done.wait()
        return merge_inventories([mine, *(_decode(r) for r in got)])

    @asynccontextmanager
    async def owned_subscribe(self, query_text: str, qid: str = "q") -> AsyncIterator[Any]:
        """``GatewayServer.subscribe`` for alert rules: waits until this gateway owns the rule
        (rendezvous hashing over the live gateways), and ends the subscription when it no longer
        does (another gateway took over)."""
        key = f"alert\x00{query_text}"
        state = self.node.state
        while not state.owns(key, time.time()):  # noqa: ASYNC110 - ownership is a function of time
            await trio.sleep(0.25)
        log.info("cluster: this gateway now evaluates the alert query %r", query_text)
        async with trio.open_nursery() as nursery:
            async def watch() -> None:
                while state.owns(key, time.time()):  # noqa: ASYNC110
                    await trio.sleep(0.25)
                log.info("cluster: alert query %r moved to another gateway", query_text)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            async with self.server.subscribe(query_text, qid) as results:
                yield results
            nursery.cancel_scope.cancel()


def _decode(data: bytes) -> dict[str, Any]:
    try:
        obj = codec.decode_value(data)
    except Exception:
        return {"apps": {}}
    return obj if isinstance(obj, dict) else {"apps": {}}


def merge_inventories(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Union of several ``{"apps": {name: {"instances", "streams", "versions"}}}``."""
    apps: dict[str, Any] = {}
    for part in parts:
        for name, entry in (part.get("apps") or {}).items():
            if not isinstance(entry, dict):
                continue
            have = apps.setdefault(name, {"instances": [], "streams": set(), "versions": set()})
            have["instances"].extend(entry.get("instances") or [])
            have["streams"].update(entry.get("streams") or [])
            have["versions"].update(entry.get("versions") or [])
    return {"apps": {name: {"instances": sorted(e["instances"], key=lambda i: str(i.get("instance"))),
                            "streams": sorted(e["streams"]), "versions": sorted(e["versions"])}
                     for name, e in sorted(apps.items())}}


async def run_cluster(server: Any, *, task_status: trio.TaskStatus[ClusterRunner]
                      = trio.TASK_STATUS_IGNORED) -> None:
    """Join the cluster of ``server.config.cluster`` until cancelled."""
    runner = ClusterRunner(server)
    await runner.serve(task_status)
