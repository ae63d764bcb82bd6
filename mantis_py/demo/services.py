"""The demo's services as real web services on 127.0.0.1, and the traffic that drives them.

Recipe (``start_web_services``):
1. per service instance, an :class:`~mantis_py.agents.Agent` and its app from ``webapps.py``
   (playback and edge: Starlette under uvicorn; login: Flask under waitress), each on a port of
   its own picked by the OS;
2. every uvicorn server runs on one asyncio loop in one thread; waitress runs its own threads;
3. a traffic generator (a trio program in one thread) turns the traffic model's demand into real
   HTTP/1.1 requests over keep-alive connections: the model decides *what users ask for*, the
   services decide *how it goes*, so the scripted outage happens inside the playback service.

Needs the ``demo`` extra (uvicorn, starlette, flask, waitress); ``start_web_services`` returns
None without it, and the runner falls back to simulated services.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ..oslimits import raise_open_files
from .traffic import SERVICES, TITLES, Scenario

__all__ = ["TrafficGenerator", "WebService", "WebServices", "start_web_services"]

TICK = 0.1
EDGE_SHARE = 0.1
"""The edge model asks for ~200 chunks/s per instance; the demo sends a tenth of them."""
MAX_IN_FLIGHT = 600
"""Requests the generator keeps open at once (the outage holds plays for seconds)."""
USER_AGENTS = {"tv": "PlaybackTV/6.2 (smart-tv)", "phone": "PlaybackMobile/15.1 (phone)",
               "web": "Mozilla/5.0 PlaybackWeb/2.4", "tablet": "PlaybackMobile/15.1 (tablet)",
               "console": "PlaybackConsole/3.0"}
NO_OUTAGE = Scenario(outage_at=math.inf)
"""Demand does not fall during the outage: users keep pressing play; the service fails them."""


def _listen() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class _AsgiHost:
    """One asyncio loop in one thread, serving any number of uvicorn servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="demo-uvicorn", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def serve(self, app: Any) -> tuple[int, Callable[[], None]]:
        import uvicorn

        sock = _listen()
        config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False,
                                lifespan="off", ws="none", timeout_keep_alive=30)
        server = uvicorn.Server(config)
        done = asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), self.loop)
        deadline = time.monotonic() + 10
        while not server.started and not done.done() and time.monotonic() < deadline:
            time.sleep(0.01)

        def stop() -> None:
            server.should_exit = True
            try:
                done.result(timeout=5)
            except Exception:
                pass
            sock.close()

        return int(sock.getsockname()[1]), stop

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


def _serve_wsgi(app: Any) -> tuple[int, Callable[[], None]]:
    from waitress.server import create_server

    server: Any = create_server(app, host="127.0.0.1", port=0, threads=8,
                                asyncore_use_poll=True)  # select() fails past fd 1023
    thread = threading.Thread(target=server.run, name="demo-waitress", daemon=True)
    thread.start()

    def stop() -> None:
        def close_all() -> None:
            for channel in list(server._map.values()):
                channel.close()

        server.trigger.pull_trigger(close_all)
        thread.join(5)
        server.task_dispatcher.shutdown(timeout=2)

    return int(server.effective_port), stop


class WebService:
    """One service instance: an agent and the real server in front of its app.

    Has the interface of the runner's simulated ``Service`` (``app``, ``instance``, ``share``,
    ``agent``, ``published``, ``stop()``) so the rest of the demo does not care which runs.
    """

    def __init__(self, app: str, instance: str, share: float, port: int, agent: Any,
                 context: Any, stop: Callable[[], None]) -> None:
        self.app, self.instance, self.share, self.port = app, instance, share, port
        self.agent = agent
        self._context = context
        self._stop = stop
        self._stopped = False

    @property
    def published(self) -> int:
        """Events the handlers published on the ``default`` stream."""
        return int(self._context.published)

    def stop(self) -> None:
        """Stop the server and close the agent (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._stop()
        finally:
            self.agent.close()


@dataclass(frozen=True, slots=True)
class Call:
    """One request the generator makes."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


def to_call(app: str, event: dict[str, Any]) -> Call | None:
    """The request a user makes for one event of the demand model (pure)."""
    if app == "playback":
        kind = event.get("event")
        title_id = 80001 + TITLES.index(event["title"]) if event.get("title") in TITLES else 80001
        query = urlencode({"country": event["country"], "device": event["device"]})
        ua = (("user-agent", USER_AGENTS.get(event["device"], "Playback/1.0")),)
        if kind in ("play", "error"):  # a failure is the service's decision, not the user's
            return Call("GET", f"/titles/{title_id}/play?{query}", ua)
        return Call("POST", f"/titles/{title_id}/{kind}?{query}", ua)
    if app == "edge":
        return Call("GET", f"{event['path']}?{urlencode({'pop': event['pop']})}",
                    (("user-agent", "PlaybackPlayer/9.1 (segment-fetcher)"),))
    if app == "login":
        body = json.dumps({"user": event["user"], "password": event["password"],
                           "method": event["method"]}).encode()
        return Call("POST", f"/login?{urlencode({'country': event['country']})}",
                    (("content-type", "application/json"), ("user-agent", "PlaybackAuth/2.0")),
                    body)
    return None


class TrafficGenerator(threading.Thread):
    """Real HTTP/1.1 requests (trio + h11, keep-alive) following the traffic model's demand."""

    def __init__(self, targets: list[WebService], started: float, seed: int = 99) -> None:
        super().__init__(name="demo-traffic", daemon=True)
        self.targets = targets
        self.started = started
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.failed = 0
        self.skipped = 0
        self.in_flight = 0

    def run(self) -> None:
        import trio

        trio.run(self._main)

    def stop(self) -> None:
        self.stop_event.set()
        if self.is_alive():
            self.join(5)

    async def _main(self) -> None:
        import trio

        pools = {t.port: _Pool(t.port) for t in self.targets}
        rngs = {t.instance: random.Random(self.rng.getrandbits(64)) for t in self.targets}
        async with trio.open_nursery() as nursery:
            last = time.time() - self.started
            while not self.stop_event.is_set():
                await trio.sleep(TICK)
                now = time.time() - self.started
                for t in self.targets:
                    rng = rngs[t.instance]
                    for event in SERVICES[t.app](last, now - last, t.share, rng, NO_OUTAGE):
                        if t.app == "edge" and rng.random() >= EDGE_SHARE:
                            continue
                        call = to_call(t.app, event)
                        if call is None:
                            continue
                        if self.in_flight >= MAX_IN_FLIGHT:
                            self.skipped += 1
                            continue
                        self.in_flight += 1
                        nursery.start_soon(self._send, pools[t.port], call)
                last = now
            nursery.cancel_scope.cancel()
        for pool in pools.values():
            await pool.aclose()

    async def _send(self, pool: _Pool, call: Call) -> None:
        try:
            status = await pool.request(call)
            self.statuses[status] += 1
        except Exception:
            self.failed += 1  # a stopped service refuses connections: counted, traffic goes on
        finally:
            self.in_flight -= 1


class _Pool:
    """Keep-alive HTTP/1.1 connections to one port (trio streams + h11)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[Any, Any]] = []

    async def request(self, call: Call) -> int:
        for attempt in range(2):
            reused = bool(self.idle)
            try:
                return await self._once(call)
            except (OSError, _Closed):
                if not reused or attempt:
                    raise
        raise _Closed  # pragma: no cover - the loop returns or raises

    async def _once(self, call: Call) -> int:
        import h11
        import trio

        if self.idle:
            stream, conn = self.idle.pop()
        else:
            stream = await trio.open_tcp_stream("127.0.0.1", self.port)
            conn = h11.Connection(h11.CLIENT)
        keep = False
        try:
            headers = [("host", f"127.0.0.1:{self.port}"), *call.headers]
            if call.body or call.method == "POST":
                headers.append(("content-length", str(len(call.body))))
            data = conn.send(h11.Request(method=call.method, target=call.target, headers=headers))
            if call.body:
                data += conn.send(h11.Data(data=call.body))
            data += conn.send(h11.EndOfMessage())
            await stream.send_all(data)
            status = 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise _Closed
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
                keep = True
            return status
        except h11.RemoteProtocolError as exc:
            raise _Closed from exc
        finally:
            if keep:
                self.idle.append((stream, conn))
            else:
                await trio.aclose_forcefully(stream)

    async def aclose(self) -> None:
        import trio

        while self.idle:
            stream, _ = self.idle.pop()
            await trio.aclose_forcefully(stream)


class _Closed(Exception):
    """The server closed the connection before answering (a stale keep-alive connection)."""


class WebServices:
    """The running web services and their traffic generator."""

    def __init__(self, services: list[WebService], traffic: TrafficGenerator,
                 host: _AsgiHost) -> None:
        self.services = services
        self.traffic = traffic
        self._host = host

    def banner(self) -> str:
        """Lines for the demo's banner: where each service listens, the new streams' queries."""
        lines = ["  Real web services (instrumented by mantis_py.integrations), driven by real HTTP:"]
        for s in self.services:
            kind = "Flask under waitress" if s.app == "login" else "Starlette under uvicorn"
            lines.append(f"    {s.instance:<11} http://127.0.0.1:{s.port}/  ({kind})")
        lines += [
            "  Their requests and logs are streams too:",
            "    select route, p99(latency_ms) from playback/requests window 5 group by route",
            "    select _instance, logger, message from playback/log where level == 'ERROR'",
            "",
        ]
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        """Stop the traffic, then every service, then the shared loop (idempotent)."""
        self.traffic.stop()
        for s in self.services:
            s.stop()
        self._host.close()


def start_web_services(instances: tuple[tuple[str, str, float], ...], gateway: str,
                       scenario: Scenario, started: float,
                       zones: tuple[str, ...]) -> WebServices | None:
    """Start every instance as a web service with its agent, and the traffic generator.

    Returns None when the ``demo`` extra (uvicorn, starlette, flask, waitress) is missing.
    """
    try:
        from . import webapps
    except ImportError:
        return None
    from ..agents import Agent

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "queue depth" chatter
    raise_open_files(4096)  # hundreds of requests stay open during the outage, two fds each
    host = _AsgiHost()
    services: list[WebService] = []
    try:
        for i, (app, instance, share) in enumerate(instances):
            agent = Agent(app=app, gateway=gateway, instance=instance, mask=("password",),
                          tags={"zone": zones[i % len(zones)]})
            ctx = webapps.Context(app, instance, agent, scenario, started, seed=i)
            if app == "login":
                port, stop = _serve_wsgi(webapps.login_app(ctx))
            else:
                factory = webapps.playback_app if app == "playback" else webapps.edge_app
                port, stop = host.serve(factory(ctx))
            services.append(WebService(app, instance, share, port, agent, ctx, stop))
            agent.start()
    except BaseException:
        for s in services:
            s.stop()
        host.close()
        raise
    traffic = TrafficGenerator(services, started)
    traffic.start()
    return WebServices(services, traffic, host)
