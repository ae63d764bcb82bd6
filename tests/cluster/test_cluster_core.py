"""The cluster's pure parts: rendezvous ownership, leases, members, the duplicate filter, the
``[cluster]`` config, and two gateway cores joined by an in-memory bus in place of NATS."""

from __future__ import annotations

import random
from typing import Any

import pytest

from mantis_py.errors import ConfigurationError
from mantis_py.gateway.auth import ANONYMOUS
from mantis_py.gateway.cluster.config import ClusterConfig, parse_cluster, parse_urls
from mantis_py.gateway.cluster.node import ClusterNode
from mantis_py.gateway.cluster.state import ClusterState, FloorMerger, rendezvous, subject_token
from mantis_py.gateway.config import GatewayConfig, parse_config
from mantis_py.gateway.core import GatewayCore
from mantis_py.query import prepare
from mantis_py.wire import codec
from mantis_py.wire.messages import Hello, Partial, Query

# ---------------------------------------------------------------------------- pure state


def test_rendezvous_moves_only_the_keys_of_the_node_that_left() -> None:
    nodes = ["a", "b", "c"]
    keys = [f"rule{i}" for i in range(300)]
    before = {k: rendezvous(k, nodes) for k in keys}
    assert set(before.values()) == set(nodes)  # spread over every node
    after = {k: rendezvous(k, ["a", "c"]) for k in keys}
    for k in keys:
        if before[k] != "b":
            assert after[k] == before[k]
    assert rendezvous("x", []) is None


def test_ownership_waits_for_heartbeats_then_exactly_one_node_owns() -> None:
    states = [ClusterState(n, 100.0) for n in ("a", "b", "c")]
    assert not any(s.owns("r", 100.5) for s in states)  # not settled yet
    for s in states:
        for other in ("a", "b", "c"):
            s.on_heartbeat({"n": other, "apps": ["shop"]}, 101.0)
    assert sum(s.owns("r", 102.0) for s in states) == 1
    owner = next(s for s in states if s.owns("r", 102.0))
    # the owner goes silent: the others forget it after node_ttl and one of them takes over
    rest = [s for s in states if s is not owner]
    for s in rest:
        for other in ("a", "b", "c"):
            if other != owner.node:
                s.on_heartbeat({"n": other}, 104.5)
        s.dead_nodes(104.5)
    assert sum(s.owns("r", 104.5) for s in rest) == 1
    assert rest[0].remote_apps() <= {"shop"}


def test_leases_are_new_once_and_expire_when_no_owner_renews() -> None:
    st = ClusterState("edge", 0.0, lease_ttl=4.0)
    lease = {"sub": "s1", "q": "SELECT * FROM shop", "app": "shop", "stream": "default",
             "start": 1.0, "caps": {}}
    assert [x.sub for x in st.on_lease({"n": "o1", "subs": [lease]}, 1.0)] == ["s1"]
    assert st.on_lease({"n": "o2", "subs": [lease]}, 2.0) == []  # a second owner, same part
    assert st.on_lease({"n": "edge", "subs": [lease]}, 2.0) == []  # our own announcement
    st.on_lease({"n": "o1", "subs": [lease]}, 5.0)
    assert st.expired_leases(7.0) == []  # o1 renewed at 5
    assert [x.sub for x in st.expired_leases(9.5)] == ["s1"]
    assert st.expired_leases(20.0) == []


def test_members_follow_the_gateway_that_announced_them_last() -> None:
    st = ClusterState("owner", 0.0, member_ttl=3.0)
    both = ["shop\x1fi1/default", "shop\x1fi2/default"]
    added, removed = st.on_members("s", "g2", both, 1.0)
    assert (sorted(added), removed) == (both, [])
    assert st.on_members("s", "g2", both, 1.0) == ([], [])
    # i1 moved to g3: the stale list of g2 (without i1) must not remove it
    moved, removed = st.on_members("s", "g3", ["shop\x1fi1/default"], 2.0)
    assert moved == ["shop\x1fi1/default"]
    assert removed == []
    _, removed = st.on_members("s", "g2", ["shop\x1fi2/default"], 2.1)
    assert removed == []
    assert st.holder("s", "shop\x1fi1/default") == "g3"
    # an agent now local to the owner stays local whatever an old edge says
    st.claim_local("s", "shop\x1fi2/default", 2.2)
    moved, removed = st.on_members("s", "g2", [], 2.3)
    assert (moved, removed) == ([], [])
    # g3 goes silent: its member expires after member_ttl
    assert st.expire_members(4.0) == []
    assert st.expire_members(5.5) == [("s", "shop\x1fi1/default", "g3")]


class _Merger:
    def __init__(self) -> None:
        self._window = (1, 1)
        self.parts: list[tuple[str, int]] = []

    def add_agent(self, key: str, now: float) -> None: ...

    def receive_part(self, key: str, part: dict[str, Any], now: float) -> bool:
        self.parts.append((key, part["k"]))
        return True

    def poll(self, now: float) -> list[Any]:
        return []

    def statistics(self) -> dict[str, Any]:
        return {}


def test_parts_of_windows_begun_before_an_agent_joined_are_not_merged() -> None:
    inner = _Merger()
    m = FloorMerger(inner)
    m.add_agent("a", 10.5)
    assert m.receive_part("a", {"k": 10}, 11.0) is False  # [10, 11) began before a joined
    m.receive_part("a", {"k": 11}, 12.0)
    m.receive_part("b", {"k": 10}, 12.1)  # b has no floor: the engine merger decides
    m.set_floor("a", 12.5)  # a moved gateway at 12.5
    m.receive_part("a", {"k": 12}, 13.0)
    m.receive_part("a", {"k": 13}, 14.0)
    assert inner.parts == [("a", 11), ("b", 10), ("a", 13)]
    assert m.statistics()["partial_windows"] == 2


def test_subject_tokens_are_safe() -> None:
    assert subject_token("shop-api_2") == "shop-api_2"
    for bad in ("a.b", "a b", "*", ">", "", "é"):
        tok = subject_token(bad)
        assert tok.startswith("x")
        assert tok.isalnum()


# ---------------------------------------------------------------------------- config


def test_cluster_config_from_the_file_and_its_errors() -> None:
    cfg = parse_config({"cluster": {"nats": ["nats://h:4222"], "name": "prod",
                                    "user": "u", "password": "s3cret"}})
    assert cfg.cluster == ClusterConfig(("nats://h:4222",), "prod", user="u", password="s3cret")
    assert "s3cret" not in repr(cfg.cluster)
    assert parse_urls(" nats://a:1, ,nats://b:2") == ("nats://a:1", "nats://b:2")
    assert GatewayConfig().cluster is None
    for raw, message in [
        ({"nats": []}, "at least one"),
        ({"nats": ["http://h"]}, "nats://"),
        ({"nats": ["nats://h:1"], "name": "a.b"}, "cluster.name"),
        ({"nats": ["nats://h:1"], "token": "t", "user": "u", "password": "p"}, "at most one"),
        ({"nats": ["nats://h:1"], "user": "u"}, "together"),
        ({"nats": ["nats://h:1"], "bogus": 1}, "unknown key 'bogus'"),
        ({"nats": "nats://h:1"}, "wrong type"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            parse_cluster(raw)


# ---------------------------------------------------------------------------- two cores


class Bus:
    """NATS in memory: a message reaches every other node subscribed to its subject."""

    def __init__(self, nodes: list[ClusterNode]) -> None:
        self.nodes = nodes
        self.carried: list[str] = []

    def pump(self, now: float) -> None:
        for _ in range(3):
            for node in self.nodes:
                node.tick(now)
            for node in self.nodes:
                for subject, data in node.outgoing():
                    self.carried.append(subject)
                    for other in self.nodes:
                        if other is not node and subject in other.interest():
                            other.receive(subject, data, None, now)


def _core(node: str, now: float) -> tuple[GatewayCore, ClusterNode]:
    core = GatewayCore(GatewayConfig(grace_s=2.0), now)
    return core, ClusterNode(core, ClusterConfig(("nats://x:1",), "t"), node, "", now)


def test_a_query_on_one_core_runs_on_the_agents_of_another() -> None:
    now = 1000.2
    owner, n1 = _core("g1", now)
    edge, n2 = _core("g2", now)
    bus = Bus([n1, n2])
    edge.open_agent("b1", ANONYMOUS, now)
    edge.receive_agent_data("b1", codec.encode(Hello("shop", "i1", ("default",))), now)
    edge.agent_data_to_send()
    bus.pump(now)
    assert not [s for s in bus.carried if ".hb" not in s]  # nobody queries: heartbeats only
    owner.open_client("c", ANONYMOUS, now)
    text = "select count(*) as n from shop window 1"
    owner.receive_client_data("c", codec.encode(Query("q", text)), now)  # 'shop' known via hb
    bus.pump(now + 0.1)
    frames = [codec.to_plain(codec.decode(d)) for d in edge.agent_data_to_send()["b1"]]
    assert [f["type"] for f in frames] == ["subscribe"]
    sub = frames[0]
    # the agent's part for window [1001, 1002) travels to the owner
    src = prepare(sub["query"]).source(app="shop", stream="default", instance="i1",
                                       rng=random.Random(0))
    src.start(sub["start"])
    for i in range(5):
        src.offer({"x": i}, 1001.1 + i / 10)
    parts = src.poll(1002.05)
    assert len(parts) == 1
    edge.receive_agent_data("b1", codec.encode(Partial(sub["sub"], parts[0])), 1002.05)
    bus.pump(1002.1)
    owner.poll(1002.1)
    out = []
    while (frame := owner.next_frame("c", 1002.1)) is not None:
        out.append(codec.to_plain(codec.decode(frame[0])))
    rows = [m for m in out if m["type"] == "rows"]
    assert rows[-1]["rows"] == [{"n": 5}]
    assert [m for m in out if m["type"] == "meta"][-1]["coverage"] == {"reporting": 1,
                                                                       "expected": 1}
    # the query ends: leases stop, and the edge withdraws the agent's subscription
    owner.close_client("c", 1002.2)
    for t in (1003.0, 1005.0, 1007.0):
        bus.pump(t)
    frames = [codec.to_plain(codec.decode(d)) for d in edge.agent_data_to_send().get("b1", [])]
    assert {"type": "unsubscribe", "sub": sub["sub"]} in frames


# ---------------------------------------------------------------------------- layering and CLI


@pytest.mark.parametrize("module", ["config", "state", "node"])
def test_the_cluster_decisions_are_pure(module: str) -> None:
    import ast
    from pathlib import Path

    import mantis_py.gateway.cluster as pkg

    path = Path(pkg.__file__).with_name(f"{module}.py")
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    assert not names & {"trio", "asyncio", "threading", "socket", "nats", "time", "ssl"}


@pytest.mark.parametrize(("args", "message"), [
    (["--cluster", "http://h:1"], "expected nats://host:port"),
    (["--cluster-name", "x"], "--cluster-name needs --cluster"),
    (["--cluster", "nats://h:1", "--cluster-name", "a.b"], "cluster.name"),
])
def test_gateway_cluster_flags_refuse_mistakes_in_one_line(args: list[str], message: str) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "mantis_py", "gateway", "--port", "0", *args],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert message in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr


def test_nats_slow_consumer_drops_show_in_meta() -> None:
    now = 1000.2
    owner, n1 = _core("g1", now)
    edge, n2 = _core("g2", now)
    bus = Bus([n1, n2])
    edge.open_agent("b1", ANONYMOUS, now)
    edge.receive_agent_data("b1", codec.encode(Hello("shop", "i1", ("default",))), now)
    bus.pump(now)
    owner.open_client("c", ANONYMOUS, now)
    owner.receive_client_data("c", codec.encode(Query("q", "select * from shop")), now)
    bus.pump(now + 0.1)
    sub = next(iter(owner.registry.subs))
    n1.slow_consumer(f"mantis.t.data.{sub}", 3)  # what the NATS thread reports for that subject
    n1.slow_consumer("mantis.t.hb", 1)  # not a query's data: counted on the node only
    owner.poll(now + 1.5)
    metas = []
    while (frame := owner.next_frame("c", now + 1.5)) is not None:
        msg = codec.to_plain(codec.decode(frame[0]))
        if msg["type"] == "meta":
            metas.append(msg)
    assert metas[-1]["dropped"] == {"nats_slow_consumer": 3}
    assert n1.counters["slow_consumer"] == 4


def _hello(core: GatewayCore, conn: str, instance: str, now: float) -> None:
    core.open_agent(conn, ANONYMOUS, now)
    core.receive_agent_data(conn, codec.encode(Hello("shop", instance, ("default",))), now)


def _frames(core: GatewayCore, client: str, now: float) -> list[dict[str, Any]]:
    out = []
    while (frame := core.next_frame(client, now)) is not None:
        out.append(codec.to_plain(codec.decode(frame[0])))
    return out


def test_accepted_counts_cluster_members_once_each() -> None:
    now = 1000.2
    owner, n1 = _core("g1", now)
    edge, n2 = _core("g2", now)
    other, n3 = _core("g3", now)
    bus = Bus([n1, n2, n3])
    _hello(owner, "a1", "i1", now)
    _hello(edge, "b1", "i2", now)
    _hello(edge, "b2", "i2", now)  # a second connection of the same agent: one member
    _hello(edge, "b3", "i3", now)
    _hello(other, "c1", "i4", now)
    bus.pump(now)
    assert n1.state.remote_agents() == {"g2": {"shop": 2}, "g3": {"shop": 1}}
    owner.open_client("c", ANONYMOUS, now)
    owner.receive_client_data("c", codec.encode(Query("q", "select * from shop")), now)
    accepted = _frames(owner, "c", now)[0]
    assert (accepted["type"], accepted["agents"]) == ("accepted", 4)
    # once the edges announced their members the count comes from the members themselves
    bus.pump(now + 0.1)
    run = next(iter(owner.runs.values()))
    assert sorted(run.members) == sorted(f"shop\x1fi{i}\x1fdefault" for i in range(1, 5))
    assert owner._expected(run) == 4
    # a single gateway: two connections of one agent are one member too
    single = GatewayCore(GatewayConfig(), now)
    _hello(single, "a", "x1", now)
    _hello(single, "b", "x1", now)
    single.open_client("c", ANONYMOUS, now)
    single.receive_client_data("c", codec.encode(Query("q", "select * from shop")), now)
    assert _frames(single, "c", now)[0]["agents"] == 1


def test_drops_of_an_edges_agents_reach_the_owners_meta() -> None:
    from mantis_py.wire.messages import Stats

    now = 1000.2
    owner, n1 = _core("g1", now)
    edge, n2 = _core("g2", now)
    bus = Bus([n1, n2])
    _hello(edge, "b1", "i1", now)
    bus.pump(now)
    text = "select * from shop"
    owner.open_client("c", ANONYMOUS, now)
    owner.receive_client_data("c", codec.encode(Query("q", text)), now)
    edge.open_client("e", ANONYMOUS, now)  # the same query where the agent is: the reference
    edge.receive_client_data("e", codec.encode(Query("q", text)), now)
    bus.pump(now + 0.1)
    sid = next(iter(edge.registry.subs))
    for t, too_large, sampled in ((now + 0.5, 0, 0), (now + 1.0, 4, 2), (now + 2.0, 7, 5)):
        stats = Stats({"default": {"dropped": {"too_large": too_large}}},
                      {sid: {"dropped": {"sampled": sampled}, "errors": 0}})
        edge.receive_agent_data("b1", codec.encode(stats), t)
        bus.pump(t + 0.05)
    carried = len(bus.carried)
    bus.pump(now + 2.5)  # members are due again: the last drops ride with them
    assert len(bus.carried) - carried <= 3  # a heartbeat each and one data message, no more
    for core, client in ((owner, "c"), (edge, "e")):
        core.poll(now + 3.5)
        metas = [m for m in _frames(core, client, now + 3.5) if m["type"] == "meta"]
        assert metas[-1]["dropped"] == {"too_large": 7, "sampled": 5}, client


def test_an_agent_that_moves_gateway_has_its_drops_counted_once() -> None:
    from mantis_py.wire.messages import Stats

    now = 1000.2
    owner, n1 = _core("g1", now)
    g2, n2 = _core("g2", now)
    g3, n3 = _core("g3", now)  # no agent of 'shop' yet: not listening to its leases
    bus = Bus([n1, n2, n3])
    _hello(g2, "b1", "i1", now)
    bus.pump(now)
    owner.open_client("c", ANONYMOUS, now)
    owner.receive_client_data("c", codec.encode(Query("q", "select * from shop")), now)
    bus.pump(now + 0.1)

    def stats(core: GatewayCore, conn: str, too_large: int, t: float) -> None:
        core.receive_agent_data(conn, codec.encode(
            Stats({"default": {"dropped": {"too_large": too_large}}}, {})), t)
        bus.pump(t + 0.05)

    last = [0]

    def shown(t: float) -> int:
        """too_large in the owner's latest meta (a meta goes out only when drops changed)."""
        owner.poll(t)
        metas = [m for m in _frames(owner, "c", t) if m["type"] == "meta"]
        if metas:
            last[0] = int(metas[-1]["dropped"].get("too_large", 0))
        return last[0]

    stats(g2, "b1", 5, now + 0.5)
    bus.pump(now + 1.5)
    assert shown(now + 1.6) == 5
    # the agent moves to g3; its first stats there (its whole history) come before g3 runs
    # the query, and g3 counts them all as new
    g2.close_agent("b1", now + 2.0)
    _hello(g3, "c1", "i1", now + 2.0)
    stats(g3, "c1", 8, now + 2.1)
    for t in (now + 2.6, now + 3.2, now + 3.8):
        bus.pump(t)
    assert any(r.merger.__class__.__name__ == "Forwarder" for r in g3.runs.values())
    assert shown(now + 4.0) == 8
    stats(g3, "c1", 9, now + 4.2)
    bus.pump(now + 5.0)
    assert shown(now + 5.1) == 9
    # then to the owner's own gateway
    g3.close_agent("c1", now + 5.5)
    _hello(owner, "a1", "i1", now + 5.5)
    stats(owner, "a1", 12, now + 5.6)
    assert shown(now + 6.7) == 12


def test_an_agent_leaving_the_owner_brings_no_old_drops_back() -> None:
    from mantis_py.wire.messages import Stats

    now = 1000.2
    owner, n1 = _core("g1", now)
    edge, n2 = _core("g2", now)
    bus = Bus([n1, n2])
    _hello(owner, "a1", "i1", now)
    _hello(edge, "b0", "i0", now)  # the edge listens to the app's leases
    old = Stats({"default": {"dropped": {"queue_full": 50}}}, {})
    owner.receive_agent_data("a1", codec.encode(old), now)  # losses from before any query
    bus.pump(now)
    owner.open_client("c", ANONYMOUS, now)
    owner.receive_client_data("c", codec.encode(Query("q", "select * from shop")), now)
    bus.pump(now + 0.1)
    owner.close_agent("a1", now + 1.0)  # moves to g2, whose first stats hold all 50
    _hello(edge, "b1", "i1", now + 1.0)
    for t, n in ((now + 1.1, 50), (now + 2.1, 53)):
        edge.receive_agent_data("b1", codec.encode(
            Stats({"default": {"dropped": {"queue_full": n}}}, {})), t)
        bus.pump(t + 0.05)
    bus.pump(now + 3.2)
    owner.poll(now + 3.3)
    metas = [m for m in _frames(owner, "c", now + 3.3) if m["type"] == "meta"]
    assert metas[-1]["dropped"] == {"queue_full": 3}
