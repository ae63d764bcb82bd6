"""A real HTTP receiver for webhook tests: a threaded http.server on 127.0.0.1, port 0.

Paths: ``/ok`` answers 200; ``/flaky`` answers 500 to its first two requests, then 200;
``/hang`` never answers (until the test ends); ``/down`` is 503 always.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Receiver:
    base: str
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return self.base + path

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for p, b in self.received if p == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            path = self.path
            with state.lock:
                state.attempts[path] = n = state.attempts.get(path, 0) + 1
            if path == "/hang":
                state.release.wait(30)
                return
            if path == "/down" or (path == "/flaky" and n <= 2):
                status = 500 if path == "/flaky" else 503
            else:
                status = 200
                with state.lock:
                    state.received.append((path, json.loads(raw)))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = Receiver(base=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
