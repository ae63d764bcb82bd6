"""The gateway cluster end to end: real nats-server processes, gateways and agents in
subprocesses, real websocket clients (docs/cluster.md)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from mantis_py.testing.nats import NatsCluster

from .harness import (
    AgentProc,
    GatewayProc,
    QueryClient,
    canon,
    replay_windows,
    start_gateways,
    wait_for,
)

GROUP_BY = "select country, count(*) as n, sum(ms) as total from shop window 1 group by country"
RAW = "select seq, inst from shop where country == 'fr'"


class Stack:
    def __init__(self) -> None:
        self.gateways: list[GatewayProc] = []
        self.agents: list[AgentProc] = []
        self.clients: list[QueryClient] = []

    def spread_agents(self, workdir: Path, per_gateway: int = 2, rate: float = 40.0) -> None:
        """``per_gateway`` agents start on each gateway; their fail-over order is the others."""
        n = len(self.gateways)
        for i in range(n):
            urls = [self.gateways[(i + j) % n].ws for j in range(n)]
            insts = [f"g{i + 1}a{k}" for k in range(per_gateway)]
            self.agents.append(AgentProc(workdir, "shop", insts, urls, rate=rate, seed=i + 1))

    def statuses(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for a in self.agents:
            out.update(a.status())
        return out

    def all_connected(self) -> bool:
        st = self.statuses()
        return bool(st) and all(s.get("connected") for s in st.values())

    def events(self) -> list[dict]:
        return [e for a in self.agents for e in a.events()]

    def stop_publishing(self) -> None:
        for a in self.agents:
            (a.out / "stop").write_text("")

    def close(self) -> None:
        for c in self.clients:
            c.close()
        for a in self.agents:
            a.stop()
        for g in self.gateways:
            g.stop()


@pytest.fixture
def stack() -> Iterator[Stack]:
    s = Stack()
    try:
        yield s
    finally:
        s.close()


def _full(cov: dict, n: int) -> bool:
    return cov.get("reporting") == n and cov.get("expected") == n


def test_groupby_equals_replay_raw_exactly_once_and_one_subscription_per_agent(
        nats3: NatsCluster, stack: Stack, tmp_path: Path) -> None:
    stack.gateways = start_gateways(nats3.urls, tmp_path)
    stack.spread_agents(tmp_path)
    wait_for(stack.all_connected, 15)
    # the inventory is cluster-wide: every gateway lists the six agents
    for gw in stack.gateways:
        wait_for(lambda gw=gw: len(gw.get("/v1/apps")["apps"].get("shop", {})
                                   .get("instances", [])) == 6, 5)
    g1, g2, _g3 = stack.gateways
    grouped1 = QueryClient(g1.ws, GROUP_BY)
    grouped2 = QueryClient(g2.ws, GROUP_BY)  # the same query owned by another gateway
    raw = QueryClient(g1.ws, RAW)
    stack.clients += [grouped1, grouped2, raw]
    # Windows that began before every agent ran the query hold part of it (an agent starts a
    # subscription in the current window); compare from two windows after the submission.
    settled = time.time() + 2.0
    def two_subs() -> dict[str, tuple[str, ...]] | None:
        subs = {inst: tuple(s.get("subs", ())) for inst, s in stack.statuses().items()}
        return subs if all(len(x) == 2 for x in subs.values()) else None

    subs_during = wait_for(two_subs, 10)
    wait_for(lambda: sum(_full(c, 6) for w, _, c in grouped1.windows() if w[0] >= settled) >= 3,
             20)
    stack.stop_publishing()
    time.sleep(2.0)  # the last raw batches and windows arrive
    # one agent subscription per distinct query, however many gateways run it
    assert all(len(subs) == 2 for subs in subs_during.values()), subs_during
    assert len({subs for subs in subs_during.values()}) == 1
    events = stack.events()
    expected = replay_windows(GROUP_BY, events)
    for client in (grouped1, grouped2):
        full = [(w, rows) for w, rows, cov in client.windows() if _full(cov, 6) and w[0] >= settled]
        assert len(full) >= 2
        for window, rows in full:
            assert canon(rows) == canon(expected[window]), window
        for _, _, cov in client.windows():
            assert cov.get("reporting", 0) <= cov.get("expected", 0) <= 6
    # raw: every matching event after an agent's first delivered one, exactly once
    got: dict[str, list[int]] = {}
    for row in raw.rows():
        got.setdefault(row["inst"], []).append(row["seq"])
    assert set(got) == {e["inst"] for e in events}
    for inst, seqs in got.items():
        assert len(seqs) == len(set(seqs)), f"{inst}: duplicates"
        want = {e["seq"] for e in events if e["inst"] == inst and e["country"] == "fr"
                and e["seq"] >= min(seqs)}
        assert set(seqs) == want, f"{inst}: {len(want - set(seqs))} missing"


def test_kill9_gateway_agents_move_and_windows_never_double(
        nats3: NatsCluster, stack: Stack, tmp_path: Path) -> None:
    stack.gateways = start_gateways(nats3.urls, tmp_path)
    stack.spread_agents(tmp_path)
    wait_for(stack.all_connected, 15)
    g1, g2, _g3 = stack.gateways
    client = QueryClient(g1.ws, GROUP_BY)
    stack.clients.append(client)
    wait_for(lambda: sum(_full(c, 6) for _, _, c in client.windows()) >= 2, 20)
    moved = [inst for inst, s in stack.statuses().items() if f":{g2.port}/" in s["url"]]
    assert len(moved) == 2
    g2.kill9()
    killed_at = time.time()
    # its agents are back, on gateway 1 or 3, within 3 s
    def back() -> bool:
        st = stack.statuses()
        return all(st[i].get("connected") and f":{g2.port}/" not in st[i]["url"]
                   and st[i]["t"] > killed_at for i in moved)
    wait_for(back, 3.0)
    # full coverage again, then a few more windows
    def recovered() -> int:
        return sum(1 for w, _, c in client.windows() if w[0] > killed_at + 2 and _full(c, 6))
    wait_for(lambda: recovered() >= 2, 25)
    stack.stop_publishing()
    time.sleep(1.0)
    expected = replay_windows(GROUP_BY, stack.events())
    windows = client.windows()
    dips = [cov for w, _, cov in windows
            if w[1] > killed_at - 1 and cov.get("reporting", 6) < 6 and w[0] < killed_at + 6]
    assert dips, "coverage must show the agents that were moving"
    for window, rows, cov in windows:
        assert cov.get("reporting", 0) <= cov.get("expected", 0) <= 6, (window, cov)
        want = {r["country"]: r for r in expected.get(window, [])}
        for r in rows:  # never counted twice: no group above what was published
            assert r["n"] <= want[r["country"]]["n"], (window, r)
        if window[0] > killed_at + 2 and _full(cov, 6):
            assert canon(rows) == canon(expected[window]), window


def test_kill9_nats_node_gateway_reconnects_and_rows_flow(
        tmp_path: Path, stack: Stack) -> None:
    with NatsCluster(3, tmp_path / "nats") as nats:
        stack.gateways = start_gateways(nats.urls, tmp_path)
        stack.spread_agents(tmp_path, per_gateway=1)
        wait_for(stack.all_connected, 15)
        g1 = stack.gateways[0]
        client = QueryClient(g1.ws, GROUP_BY)
        stack.clients.append(client)
        wait_for(lambda: any(_full(c, 3) for _, _, c in client.windows()), 20)
        used = g1.get("/healthz")["cluster"]["nats"]
        node = next(n for n in nats.nodes if n.url == used)
        node.kill()
        killed_at = time.time()
        wait_for(lambda: g1.get("/healthz")["cluster"]["nats"] not in (None, used), 3.0)
        # rows from every agent (including those on other gateways) flow again
        wait_for(lambda: any(w[0] > killed_at + 1 and _full(c, 3)
                             for w, _, c in client.windows()), 20)


def test_no_data_crosses_the_routes_while_nobody_queries(
        nats3: NatsCluster, stack: Stack, tmp_path: Path) -> None:
    stack.gateways = start_gateways(nats3.urls, tmp_path, cluster_name="idle")
    stack.spread_agents(tmp_path, per_gateway=1, rate=50)
    wait_for(stack.all_connected, 15)
    # each gateway uses its own NATS node (the first of its list), so data would cross routes
    used = {g.get("/healthz")["cluster"]["nats"] for g in stack.gateways}
    assert used == set(nats3.urls)

    def heartbeats() -> int:
        return sum(g.get("/healthz")["cluster"]["counters"].get("out_hb", 0)
                   for g in stack.gateways)

    def measure(seconds: float) -> tuple[int, int]:
        # heartbeats are read before the routes at the start and after them at the end, so a
        # heartbeat sent while the counters are read (slowly, on a loaded machine) is never
        # counted on the routes without being counted as a heartbeat
        h0 = heartbeats()
        r0 = nats3.route_msgs()
        time.sleep(seconds)
        r1 = nats3.route_msgs()
        return r1 - r0, heartbeats() - h0

    idle_msgs, idle_hb = measure(2.5)
    # each heartbeat crosses to at most the two other nodes; nothing else may cross
    assert idle_hb >= 5
    assert idle_msgs <= 2 * (idle_hb + 3), (idle_msgs, idle_hb)
    client = QueryClient(stack.gateways[0].ws, RAW)  # events: one message per edge per flush
    stack.clients.append(client)
    # rows flow from the agents of every gateway before the busy measure
    wait_for(lambda: len({r["inst"] for r in client.rows()}) == 3, 15)
    busy_msgs, busy_hb = measure(2.0)
    assert busy_msgs > 2 * (busy_hb + 3), (busy_msgs, busy_hb)  # the measure sees data
    client.close()
    time.sleep(5.5)  # leases lapse (4 s), edges withdraw
    quiet_msgs, quiet_hb = measure(2.5)
    assert quiet_msgs <= 2 * (quiet_hb + 3), (quiet_msgs, quiet_hb)



def _dropped(client: QueryClient) -> dict:
    metas = [m for m in list(client.messages) if m.get("type") == "meta"]
    return metas[-1].get("dropped", {}) if metas else {}


def test_accepted_counts_cluster_members_and_edge_drops_reach_the_owner(
        nats3: NatsCluster, stack: Stack, tmp_path: Path) -> None:
    stack.gateways = start_gateways(nats3.urls, tmp_path, cluster_name="drops")
    g1, g2, g3 = stack.gateways
    droppers = AgentProc(tmp_path, "shop", ["b1", "b2"], [g2.ws], rate=20, seed=2,
                         settings={"max_event_bytes": 200}, pad_every=3)
    stack.agents = [
        AgentProc(tmp_path, "shop", ["a1"], [g1.ws], rate=10, seed=1),
        droppers,
        # a second connection of agent b2 on the same gateway: still one member
        AgentProc(tmp_path / "dup", "shop", ["b2"], [g2.ws], rate=5, seed=3),
        AgentProc(tmp_path, "shop", ["c1"], [g3.ws], rate=10, seed=4),
    ]
    wait_for(lambda: len(g1.get("/v1/apps")["apps"].get("shop", {}).get("instances", [])) == 5,
             15)
    def remote(gw: GatewayProc) -> list[int]:
        return sorted(c.get("shop", 0) for c in gw.get("/healthz")["cluster"]["remote_agents"]
                      .values())

    # g1 and g2 heard the heartbeats that count the other gateways' agents (b2 once)
    wait_for(lambda: remote(g1) == [1, 2] and remote(g2) == [1, 1], 5)
    query = "select seq, inst from shop where inst == 'b1'"
    owner = QueryClient(g1.ws, query)  # the agents of b sit on g2: their drops cross NATS
    local = QueryClient(g2.ws, query)  # the same query where they are: a single gateway's view
    stack.clients += [owner, local]
    for client in (owner, local):
        accepted = wait_for(lambda c=client: next(
            (m for m in list(c.messages) if m["type"] == "accepted"), None), 10)
        assert accepted["agents"] == 4, accepted  # a1, b1, b2, c1: cluster-wide, b2 once
    wait_for(lambda: all(len(s.get("subs", ())) == 1 for s in droppers.status().values()), 10)
    wait_for(lambda: len(owner.rows()) > 0, 10)  # the owner's attachment is live
    (droppers.out / "pad").write_text("")  # every 3rd event of b1 and b2 is now too large
    time.sleep(2.0)
    (droppers.out / "pause").write_text("")

    def agents_count() -> int:
        return sum(s.get("dropped", {}).get("default", {}).get("too_large", 0)
                   for s in droppers.status().values())

    want = wait_for(lambda: agents_count() >= 20 and agents_count(), 5)
    time.sleep(0.5)
    want = agents_count()  # paused: no more drops
    wait_for(lambda: _dropped(local).get("too_large") == want
             and _dropped(owner).get("too_large") == want, 10)


class _Hooks(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    handler = type("Hooks", (_Hooks,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler.received
    finally:
        server.shutdown()
        server.server_close()


ALERT = """
[[alerts]]
name = "shop-busy"
query = "select count(*) as n from shop window 1"
condition = "n > 0"
windows = 2

[[alerts.actions]]
type = "webhook"
url = "{url}"
"""


def test_alert_fires_once_for_the_cluster_and_moves_when_its_owner_dies(
        nats3: NatsCluster, stack: Stack, tmp_path: Path,
        webhook: tuple[str, list[dict]]) -> None:
    url, received = webhook
    stack.gateways = start_gateways(nats3.urls, tmp_path, config=ALERT.format(url=url),
                                    cluster_name="alerts")
    stack.spread_agents(tmp_path, per_gateway=1)
    wait_for(stack.all_connected, 15)
    wait_for(lambda: received, 20)
    time.sleep(2.0)  # every gateway had time to fire, had it evaluated the rule
    assert [h["state"] for h in received] == ["firing"]
    states = {g.name: g.get("/v1/alerts")["alerts"][0]["state"] for g in stack.gateways}
    owners = [g for g in stack.gateways if states[g.name] == "firing"]
    assert len(owners) == 1, states
    owners[0].kill9()
    wait_for(lambda: len(received) >= 2, 25)
    time.sleep(2.0)
    assert [h["state"] for h in received] == ["firing", "firing"]
    survivors = [g for g in stack.gateways if g is not owners[0]]
    states = {g.name: g.get("/v1/alerts")["alerts"][0]["state"] for g in survivors}
    assert sorted(states.values()) == ["firing", "insufficient_data"], states


def test_the_nats_thread_bounds_its_queue_and_counts_what_it_drops(nats3: NatsCluster) -> None:
    from mantis_py.gateway.cluster.bridge import NatsBridge
    from mantis_py.gateway.cluster.config import ClusterConfig

    woken: list[int] = []
    cfg = ClusterConfig(tuple(nats3.urls[:1]), "bq")
    receiver = NatsBridge(cfg, "receiver", lambda: woken.append(1), max_inbound=5)
    sender = NatsBridge(ClusterConfig(tuple(nats3.urls[1:2]), "bq"), "sender", lambda: None)
    receiver.start()
    sender.start()
    try:
        receiver.set_interest({"mantis.bq.data.s1"})
        wait_for(lambda: any(s.get("num_subscriptions", 0) for s in
                             [nats3.nodes[1].monitor("subsz")]), 5)
        time.sleep(0.5)  # the interest reaches every node
        sender.publish([("mantis.bq.data.s1", b"{}")] * 100)
        wait_for(lambda: sum(receiver.drops.values()) >= 95, 5)
        got = receiver.take()
        assert len(got) == 5
        assert receiver.take_drops() == {"mantis.bq.data.s1": 95}
        assert woken  # the trio side was woken (once per batch, not per message)
        assert len(woken) < 100
    finally:
        receiver.stop()
        sender.stop()


def test_the_nats_thread_authenticates_with_user_and_password(tmp_path: Path) -> None:
    import subprocess

    from mantis_py.gateway.cluster.bridge import NatsBridge
    from mantis_py.gateway.cluster.config import ClusterConfig
    from mantis_py.testing.nats import free_ports, nats_server_binary

    (port,) = free_ports(1)
    with open(tmp_path / "nats.log", "wb") as log:
        server = subprocess.Popen([nats_server_binary(), "-a", "127.0.0.1", "-p", str(port),
                                   "--user", "gw", "--pass", "s3cret"],
                                  stdout=log, stderr=subprocess.STDOUT)
    bridges = []
    try:
        url = (f"nats://127.0.0.1:{port}",)
        good = NatsBridge(ClusterConfig(url, "auth", user="gw", password="s3cret"), "good",
                          lambda: None)
        bad = NatsBridge(ClusterConfig(url, "auth", user="gw", password="wrong"), "bad",
                         lambda: None)
        bridges = [good, bad]
        for b in bridges:
            b.start()
        wait_for(lambda: good.connected_url is not None, 10)
        wait_for(lambda: any("Authorization Violation" in e for e in list(bad.events)), 10)
        assert bad.connected_url is None
    finally:
        for b in bridges:
            b.stop()
        server.terminate()
        server.wait(5)
