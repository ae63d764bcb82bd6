"""A minimal gateway speaking mantis.v1, for agent tests (not the real gateway).

It accepts agents on ``/v1/agent`` (any path), answers hello with welcome, pushes every
subscription it knows to every agent (and new ones as they are added), pings every
``heartbeat_s``, and records every message it receives. ``read_mode`` lets tests misbehave:
``"normal"``, ``"no_read"`` (accept, then never read) or ``"slow"`` (sleep ``slow_s`` per frame).

Three ways to run it: ``await nursery.start(gw.serve)`` in trio tests; ``with ThreadedTestGateway()
as gw`` from threaded tests; ``python -m mantis_py.testing.server --port N --subscribe ID QUERY
STREAM`` as a separate process (prints ``PORT n`` then one ``MSG <json>`` line per received
message), so tests can kill it and start it again on the same port.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import trio
from websockets.exceptions import ConnectionClosed
from websockets.trio.server import ServerConnection, serve

from ..wire.agent_link import GatewayLink
from ..wire.codec import encode
from ..wire.messages import SUBPROTOCOL, Events, Message, Ping, Subscribe, Unsubscribe, Welcome

__all__ = ["TestGateway", "ThreadedTestGateway", "main", "open_test_gateway"]


class TestGateway:
    """Records what agents send; pushes subscriptions. Thread-safe accessors for tests."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        subs: tuple[Subscribe, ...] = (),
        heartbeat_s: float = 1.0,
        read_mode: str = "normal",
        slow_s: float = 0.05,
        port: int = 0,
        on_message: Callable[[str, Message], None] | None = None,
    ) -> None:
        self.subs: dict[str, Subscribe] = {s.sub: s for s in subs}
        self.version = 0
        self.heartbeat_s = heartbeat_s
        self.read_mode = read_mode
        self.slow_s = slow_s
        self.port = port
        self.on_message = on_message
        self.lock = threading.Lock()
        self.messages: list[tuple[str, Message]] = []
        self.connections = 0
        self.open_links = 0
        self._ids = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    # ---------------------------------------------------------------- test-side API

    def subscribe(
        self, sub: str, query: str, stream: str = "default", start: float | None = None
    ) -> None:
        """Push a subscription to every agent, now and on every later connection."""
        msg = Subscribe(
            sub=sub, query=query, stream=stream, start=time.time() if start is None else start
        )
        with self.lock:
            self.subs[sub] = msg
            self.version += 1

    def unsubscribe(self, sub: str) -> None:
        with self.lock:
            self.subs.pop(sub, None)
            self.version += 1

    def received(self, kind: type[Any] | None = None) -> list[Message]:
        with self.lock:
            return [m for _, m in self.messages if kind is None or isinstance(m, kind)]

    def records(self, sub: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for m in self.received(Events):
            out.extend(r for r in m.records if sub is None or sub in r["subs"])  # type: ignore[union-attr]
        return out

    def wait_for(self, pred: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Poll ``pred`` from a non-trio thread until true or ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(0.01)
        return pred()

    # ---------------------------------------------------------------- server

    async def serve(
        self, *, task_status: trio.TaskStatus[TestGateway] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; ``task_status.started(self)`` once listening."""
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                lambda task_status: serve(
                    self._handler,
                    self.port,
                    host="127.0.0.1",
                    subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                    compression=None,
                    ping_interval=None,
                    max_size=4 << 20,
                    task_status=task_status,
                )
            )
            self.port = server.listeners[0].socket.getsockname()[1]
            task_status.started(self)

    async def _handler(self, ws: ServerConnection) -> None:
        self._ids += 1
        aid = f"a{self._ids}"
        link = GatewayLink()
        self.connections += 1
        try:
            hello = link.receive_data(await ws.recv())
            self._record(aid, hello)
            await ws.send(link.send(Welcome(session=aid, heartbeat_s=self.heartbeat_s)), text=True)
            self.open_links += 1
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._push, ws, link)
                    await self._read(ws, link, aid)
                    nursery.cancel_scope.cancel()
            finally:
                self.open_links -= 1
        except ConnectionClosed:
            pass

    async def _read(self, ws: ServerConnection, link: GatewayLink, aid: str) -> None:
        try:
            if self.read_mode == "no_read":
                await trio.sleep_forever()
            while True:
                data = await ws.recv()
                self._record(aid, link.receive_data(data))
                if self.read_mode == "slow":
                    await trio.sleep(self.slow_s)
        except ConnectionClosed:
            return

    async def _push(self, ws: ServerConnection, link: GatewayLink) -> None:
        sent: dict[str, Subscribe] = {}
        seen = -1
        next_ping = trio.current_time() + self.heartbeat_s
        n = 0
        try:
            await self._push_loop(ws, link, sent, seen, next_ping, n)
        except ConnectionClosed:
            return

    async def _push_loop(
        self,
        ws: ServerConnection,
        link: GatewayLink,
        sent: dict[str, Subscribe],
        seen: int,
        next_ping: float,
        n: int,
    ) -> None:
        while True:
            if self.version != seen:
                with self.lock:
                    seen = self.version
                    want = dict(self.subs)
                for sid, msg in want.items():
                    if sid not in sent:
                        await ws.send(link.send(msg), text=True)
                for sid in list(sent):
                    if sid not in want:
                        await ws.send(link.send(Unsubscribe(sub=sid)), text=True)
                sent = want
            if trio.current_time() >= next_ping:
                n += 1
                await ws.send(link.send(Ping(nonce=str(n))), text=True)
                next_ping = trio.current_time() + self.heartbeat_s
            await trio.sleep(0.02)

    def _record(self, aid: str, msg: Message) -> None:
        with self.lock:
            self.messages.append((aid, msg))
        if self.on_message is not None:
            self.on_message(aid, msg)


async def open_test_gateway(nursery: trio.Nursery, **kwargs: Any) -> TestGateway:
    """Start a :class:`TestGateway` in ``nursery`` and return it once listening."""
    gw = TestGateway(**kwargs)
    await nursery.start(gw.serve)
    return gw


class ThreadedTestGateway(TestGateway):
    """A :class:`TestGateway` running ``trio.run`` in a daemon thread (``with`` to start/stop)."""

    def __enter__(self) -> ThreadedTestGateway:
        ready = threading.Event()
        self._cancel: trio.CancelScope | None = None
        self._token: Any = None

        async def main() -> None:
            with trio.CancelScope() as scope:
                self._cancel = scope
                self._token = trio.lowlevel.current_trio_token()
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.serve)
                    ready.set()
                    await trio.sleep_forever()

        self._thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("test gateway did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._cancel is not None:
            trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
        self._thread.join(5)


def main(argv: list[str] | None = None) -> None:
    """Run the test gateway as a process (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m mantis_py.testing.server")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--heartbeat", type=float, default=1.0)
    ap.add_argument(
        "--subscribe", nargs=3, action="append", default=[], metavar=("ID", "QUERY", "STREAM")
    )
    args = ap.parse_args(argv)
    subs = tuple(
        Subscribe(sub=i, query=q, stream=s, start=time.time()) for i, q, s in args.subscribe
    )

    def on_message(aid: str, msg: Message) -> None:
        sys.stdout.buffer.write(b"MSG " + aid.encode() + b" " + encode(msg) + b"\n")
        sys.stdout.flush()

    gw = TestGateway(subs=subs, heartbeat_s=args.heartbeat, port=args.port, on_message=on_message)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.serve)
            print(f"PORT {gw.port}", flush=True)

    trio.run(run)


if __name__ == "__main__":
    main()
