"""Real parts for the integration tests: a gateway on its own trio thread, uvicorn and waitress on
127.0.0.1 port 0, a threaded agent, live queries over a real websocket, and a plain HTTP client."""

from __future__ import annotations

import asyncio
import http.client as httplib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import trio

from mantis_py.agents import Agent
from mantis_py.gateway.config import GatewayConfig
from mantis_py.gateway.server import serve_gateway

__all__ = [
    "Caught", "LiveQuery", "Traffic", "caught_logs", "request", "running_agent", "running_gateway",
    "serve_asgi", "serve_wsgi", "wait_for",
]

FAST = {"reconnect_min_s": 0.05, "reconnect_max_s": 0.4}


def wait_for(predicate: Callable[[], bool], limit: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:g} s waiting for {what}")
        time.sleep(0.01)


@contextmanager
def running_gateway() -> Iterator[int]:
    """A real gateway (trio, in a thread) on 127.0.0.1 port 0; yields its port."""
    box: dict[str, Any] = {}
    ready = threading.Event()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(lambda task_status: serve_gateway(
                GatewayConfig(port=0, grace_s=0.5, heartbeat_s=1.0), alerts=False,
                task_status=task_status))
            box.update(port=server.port, token=trio.lowlevel.current_trio_token(),
                       cancel=nursery.cancel_scope.cancel)
            ready.set()

    thread = threading.Thread(target=trio.run, args=(main,), name="test-gateway", daemon=True)
    thread.start()
    assert ready.wait(15), "gateway did not start"
    try:
        yield int(box["port"])
    finally:
        trio.from_thread.run_sync(box["cancel"], trio_token=box["token"])
        thread.join(10)


@contextmanager
def running_agent(app: str, port: int, **kwargs: Any) -> Iterator[Agent]:
    agent = Agent(app, f"ws://127.0.0.1:{port}", **FAST, **kwargs).start()
    try:
        wait_for(lambda: agent.connected, what="the agent to connect")
        yield agent
    finally:
        agent.close()


def _listen() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve_asgi(app: Any) -> Iterator[int]:
    """``app`` under a real uvicorn server (its own asyncio loop in a thread); yields the port."""
    import uvicorn

    sock = _listen()
    config = uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off",
                            access_log=False, ws="websockets-sansio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              name="test-uvicorn", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, what="uvicorn to start")
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def serve_wsgi(app: Any) -> Iterator[int]:
    """``app`` under a real waitress server (threads); yields the port."""
    from waitress.server import create_server

    server: Any = create_server(app, host="127.0.0.1", port=0, threads=4,
                                asyncore_use_poll=True)
    thread = threading.Thread(target=server.run, name="test-waitress", daemon=True)
    thread.start()
    try:
        yield int(server.effective_port)
    finally:
        def close_all() -> None:
            for channel in list(server._map.values()):
                channel.close()

        server.trigger.pull_trigger(close_all)
        thread.join(10)
        server.task_dispatcher.shutdown(timeout=5)


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> tuple[int, bytes]:
    conn = httplib.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Traffic:
    """The requests a test makes against a web service, kept as (method, route template, path,
    status) to compare with what the requests stream delivered."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.made: list[tuple[str, str, str, int]] = []

    def call(self, method: str, route: str, path: str, body: bytes | None = None) -> bytes:
        status, data = request(self.port, method, path, {"User-Agent": "itest/1"}, body)
        self.made.append((method, route, path, status))
        return data


class Caught(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def caught_logs(*names: str) -> Iterator[Caught]:
    """The records of the loggers ``names`` while the block runs (e.g. a server's errors)."""
    caught = Caught()
    loggers = [logging.getLogger(name) for name in names]
    for log in loggers:
        log.addHandler(caught)
    try:
        yield caught
    finally:
        for log in loggers:
            log.removeHandler(caught)


class LiveQuery:
    """One live query on ``WS /v1/query``, read on a thread; rows land in ``rows`` / ``windows``."""

    def __init__(self, port: int, text: str) -> None:
        self.port, self.text = port, text
        self.rows: list[dict[str, Any]] = []
        self.windows: list[tuple[Any, list[dict[str, Any]]]] = []
        self.accepted: dict[str, Any] | None = None
        self.problems: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-query", daemon=True)

    def __enter__(self) -> LiveQuery:
        self._thread.start()
        wait_for(lambda: self.accepted is not None or bool(self.problems), what="accepted")
        assert self.accepted is not None, self.problems
        assert self.accepted["type"] == "accepted", self.problems
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            self._serve()
        except Exception as exc:  # shown by the test's assertions
            self.problems.append({"type": "exception", "error": repr(exc)})

    def _serve(self) -> None:
        from websockets.sync.client import connect

        with connect(f"ws://127.0.0.1:{self.port}/v1/query", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "query", "id": "q", "query": self.text}))
            while not self._stop.is_set():
                try:
                    msg = json.loads(ws.recv(timeout=0.1))
                except TimeoutError:
                    continue
                if msg["type"] == "accepted":
                    self.accepted = msg
                elif msg["type"] == "rows":
                    if msg.get("window") is None:
                        self.rows.extend(msg["rows"])
                    else:
                        self.windows.append((msg["window"], msg["rows"]))
                elif msg["type"] in ("error", "complete"):
                    self.problems.append(msg)
                    if self.accepted is None:
                        self.accepted = msg
