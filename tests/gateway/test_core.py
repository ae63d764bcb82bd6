"""The gateway core wired to a fake engine: routing, dedupe, merge glue, meta, auth decisions."""

from __future__ import annotations

from typing import Any

import pytest

from mantis_py.errors import RemoteProtocolError
from mantis_py.gateway.auth import ANONYMOUS, Principal
from mantis_py.gateway.config import GatewayConfig, Limits
from mantis_py.gateway.core import GatewayCore
from mantis_py.wire import codec
from mantis_py.wire.messages import Events, Hello, Partial, Query, Stats, SubError

from .fakes import CACHE, fake_prepare


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    CACHE.clear()


def make_core(**limits: Any) -> GatewayCore:
    return GatewayCore(GatewayConfig(grace_s=2.0, limits=Limits(**limits)), now=1000.0,
                       prepare=fake_prepare)


def agent(core: GatewayCore, agent_id: str, app: str = "play", now: float = 1000.0) -> None:
    core.open_agent(agent_id, ANONYMOUS, now)
    core.receive_agent_data(agent_id, codec.encode(Hello(app, f"i-{agent_id}", ("default",))), now)


def sent_to_agents(core: GatewayCore) -> dict[str, list[dict[str, Any]]]:
    return {a: [codec.to_plain(codec.decode(d)) for d in frames]
            for a, frames in core.agent_data_to_send().items()}


def drain(core: GatewayCore, client_id: str, now: float = 1000.0) -> list[dict[str, Any]]:
    out = []
    while (frame := core.next_frame(client_id, now)) is not None:
        out.append(codec.to_plain(codec.decode(frame[0])))
    return out


def client(core: GatewayCore, cid: str, principal: Principal = ANONYMOUS) -> None:
    core.open_client(cid, principal, 1000.0)


def query(core: GatewayCore, cid: str, qid: str, text: str, now: float = 1000.0) -> None:
    core.receive_client_data(cid, codec.encode(Query(qid, text)), now)


def test_identical_queries_subscribe_once_and_both_clients_get_rows() -> None:
    core = make_core()
    agent(core, "a1")
    assert [m["type"] for m in sent_to_agents(core)["a1"]] == ["welcome"]
    client(core, "c1")
    client(core, "c2")
    query(core, "c1", "q", "select * from play")
    query(core, "c2", "x", "select * from play")
    subs = sent_to_agents(core)["a1"]
    assert [m["type"] for m in subs] == ["subscribe"]
    assert drain(core, "c1")[0] == {"type": "accepted", "id": "q",
                                    "canonical": "SELECT * FROM PLAY", "agents": 1}
    drain(core, "c2")
    sid = subs[0]["sub"]
    core.receive_agent_data("a1", codec.encode(Events("default", [
        {"subs": [sid], "t": 1_000_100, "s": 0, "e": {"n": 1}}])), 1000.1)
    assert drain(core, "c1") == [{"type": "rows", "id": "q", "window": None, "rows": [{"n": 1}]}]
    assert drain(core, "c2") == [{"type": "rows", "id": "x", "window": None, "rows": [{"n": 1}]}]
    # the last client leaving withdraws the subscription
    core.receive_client_data("c1", '{"type":"cancel","id":"q"}', 1000.2)
    assert drain(core, "c1") == [{"type": "complete", "id": "q", "reason": "cancelled"}]
    assert sent_to_agents(core) == {}
    core.close_client("c2", 1000.3)
    assert sent_to_agents(core) == {"a1": [{"type": "unsubscribe", "sub": sid}]}


def test_different_queries_get_one_event_tagged_for_both() -> None:
    core = make_core()
    agent(core, "a1")
    sent_to_agents(core)
    client(core, "c1")
    query(core, "c1", "q1", "select * from play")
    query(core, "c1", "q2", "select * from play limit 5")
    subs = [m["sub"] for m in sent_to_agents(core)["a1"]]
    assert len(set(subs)) == 2
    drain(core, "c1")
    core.receive_agent_data("a1", codec.encode(Events("default", [
        {"subs": subs, "t": 1, "s": 0, "e": {"n": 1}}])), 1000.1)
    frames = drain(core, "c1")
    assert sorted(f["id"] for f in frames) == ["q1", "q2"]


def test_agent_connecting_later_receives_live_queries() -> None:
    core = make_core()
    client(core, "c1")
    agent(core, "a0")
    query(core, "c1", "q", "select * from play")
    sent_to_agents(core)
    agent(core, "a2")
    assert [m["type"] for m in sent_to_agents(core)["a2"]] == ["welcome", "subscribe"]


def test_limit_completes_and_withdraws() -> None:
    core = make_core()
    agent(core, "a1")
    client(core, "c1")
    query(core, "c1", "q", "select * from play limit 2")
    sid = sent_to_agents(core)["a1"][-1]["sub"]
    core.receive_agent_data("a1", codec.encode(Events("default", [
        {"subs": [sid], "t": 1, "s": i, "e": {"n": i}} for i in range(3)])), 1000.1)
    frames = drain(core, "c1")
    assert frames[1]["rows"] == [{"n": 0}, {"n": 1}]
    assert frames[2] == {"type": "complete", "id": "q", "reason": "limit"}
    assert sent_to_agents(core) == {"a1": [{"type": "unsubscribe", "sub": sid}]}


def test_window_waits_for_all_agents_then_grace_reports_coverage() -> None:
    core = make_core()
    agent(core, "a1")
    agent(core, "a2")
    client(core, "c1")
    query(core, "c1", "q", "select count(*) from play window 1", now=1000.0)
    subs = sent_to_agents(core)
    sid = subs["a1"][-1]["sub"]
    core.receive_agent_data("a1", codec.encode(Partial(sid, {"window": [1000, 1001],
                                                              "count": 3})), 1001.0)
    drain(core, "c1")
    assert drain(core, "c1") == []
    # a2 is killed mid-window: the window is still emitted at end + grace, coverage 1 of 2
    core.close_agent("a2", 1001.5)
    core.poll(1003.1)
    frames = drain(core, "c1")
    assert frames[0] == {"type": "rows", "id": "q", "window": [1000.0, 1001.0],
                         "rows": [{"count": 3}]}
    assert frames[1]["type"] == "meta"
    assert frames[1]["coverage"] == {"reporting": 1, "expected": 1} or \
        frames[1]["coverage"]["reporting"] == 1


def test_refused_app_names_the_app_and_is_audited() -> None:
    core = make_core()
    agent(core, "a1", app="play")
    agent(core, "b1", app="billing")
    client(core, "c1", Principal("bob", ("play",)))
    query(core, "c1", "q", "select * from billing")
    frames = drain(core, "c1")
    assert frames[0]["type"] == "error"
    assert "billing" in frames[0]["error"]["message"]
    audit = core.audit_to_log()
    assert audit[0]["decision"] == "refused"
    assert audit[0]["user"] == "bob"


def test_syntax_error_is_sent_with_error_object() -> None:
    core = make_core()
    client(core, "c1")
    query(core, "c1", "q", "select bad")
    frame = drain(core, "c1")[0]
    assert frame["type"] == "error"
    assert {"message", "line", "column", "snippet", "expected"} <= set(frame["error"])


def test_submissions_are_rate_limited() -> None:
    core = make_core(submissions_per_s=1.0, submissions_burst=2)
    agent(core, "a1")
    client(core, "c1")
    for i in range(3):
        query(core, "c1", f"q{i}", "select * from play")
    frames = drain(core, "c1")
    assert [f["type"] for f in frames] == ["accepted", "accepted", "error"]
    assert frames[2]["error"]["message"].startswith("rate limited")


def test_unknown_message_type_is_a_protocol_error() -> None:
    core = make_core()
    client(core, "c1")
    with pytest.raises(RemoteProtocolError) as info:
        core.receive_client_data("c1", '{"type":"nope"}', 1000.0)
    assert info.value.close_code == 4000
    with pytest.raises(RemoteProtocolError) as info:
        core.receive_client_data("c1", b"\xff\x00garbage", 1000.0)
    assert info.value.close_code == 1007


def test_agent_drops_reach_meta_at_least_once_a_second() -> None:
    core = make_core()
    agent(core, "a1")
    client(core, "c1")
    query(core, "c1", "q", "select * from play")
    sent_to_agents(core)
    drain(core, "c1")
    stats = {"default": {"offered": 10, "dropped": {"queue_full": 0}}}
    core.receive_agent_data("a1", codec.encode(Stats(stats, {})), 1000.5)
    stats = {"default": {"offered": 20, "dropped": {"queue_full": 7}}}
    core.receive_agent_data("a1", codec.encode(Stats(stats, {})), 1001.0)
    core.poll(1001.1)
    frames = drain(core, "c1")
    assert frames == [{"type": "meta", "id": "q", "dropped": {"queue_full": 7}, "waiting": None,
                       "coverage": {"reporting": 1, "expected": 1}}]
    core.poll(1002.5)
    assert drain(core, "c1") == []  # nothing new dropped: no meta


def test_sub_error_reduces_expected_agents() -> None:
    core = make_core()
    agent(core, "a1")
    agent(core, "a2")
    client(core, "c1")
    query(core, "c1", "q", "select * from play")
    sid = sent_to_agents(core)["a1"][-1]["sub"]
    core.receive_agent_data("a2", codec.encode(SubError(sid, "limit", "too many")), 1000.1)
    assert core.registry.expected_agents(core.clients["c1"].attachments["q"].run_id) == 1


def test_slow_client_is_named_for_eviction() -> None:
    core = make_core(client_queue_frames=4, slow_client_s=1.0)
    agent(core, "a1")
    client(core, "c1")
    query(core, "c1", "q", "select * from play")
    sid = sent_to_agents(core)["a1"][-1]["sub"]
    for i in range(10):
        core.receive_agent_data("a1", codec.encode(Events("default", [
            {"subs": [sid], "t": 1, "s": i, "e": {"n": i}}])), 1000.1)
    core.poll(1000.2)
    assert core.clients_to_close() == []
    core.poll(1001.3)
    assert core.clients_to_close() == [("c1", 4008, "too slow")]
    frames = drain(core, "c1")
    rows = [f for f in frames if f["type"] == "rows"]
    assert rows[-1]["rows"] == [{"n": 9}]  # drop oldest: the newest rows survive


def test_query_waits_when_its_app_is_gone_and_never_completes() -> None:
    core = make_core()
    agent(core, "a1")
    client(core, "c1")
    query(core, "c1", "q", "select * from play")
    sent_to_agents(core)
    drain(core, "c1")
    core.close_agent("a1", 1001.0)
    frames = []
    for t in range(2, 120):
        core.poll(1000.0 + t)
        frames += drain(core, "c1")
    assert not [f for f in frames if f["type"] == "complete"]
    waiting = [f["waiting"] for f in frames if f["type"] == "meta"]
    assert len(waiting) >= 100
    assert waiting[-1] == {"app": "play", "suggestion": None}
    assert core.runs


def test_query_before_any_agent_is_accepted_and_waits_with_a_suggestion() -> None:
    core = make_core()
    agent(core, "a1")  # app "play"
    client(core, "c1")
    query(core, "c1", "q", "select * from plai")
    frames = drain(core, "c1")
    assert frames[0]["type"] == "accepted"
    assert frames[0]["agents"] == 0
    assert frames[1]["type"] == "meta"
    assert frames[1]["waiting"] == {"app": "plai", "suggestion": "play"}
    core.poll(1002.0)
    assert [f["waiting"] for f in drain(core, "c1")] == [{"app": "plai", "suggestion": "play"}]


def test_an_engine_failure_ends_only_that_query() -> None:
    core = make_core()
    agent(core, "a1")
    client(core, "c1")
    query(core, "c1", "bad_run", "select * from play limit 9")
    query(core, "c1", "good", "select * from play")
    subs = [m["sub"] for m in sent_to_agents(core)["a1"] if m["type"] == "subscribe"]
    drain(core, "c1")
    broken = next(r for r in core.runs.values() if r.prepared.limit == 9)

    def explode(*args: Any) -> None:
        raise RuntimeError("boom")

    broken.merger.receive_events = explode  # type: ignore[method-assign]
    core.receive_agent_data("a1", codec.encode(Events("default", [
        {"subs": subs, "t": 1, "s": 0, "e": {"n": 1}}])), 1000.1)
    frames = drain(core, "c1")
    assert {"type": "complete", "id": "bad_run", "reason": "error"} in frames
    assert {"type": "rows", "id": "good", "window": None, "rows": [{"n": 1}]} in frames


@pytest.mark.parametrize(
    "record",
    [
        {"subs": ["x"], "t": 1.5, "s": 1, "e": {}},
        {"subs": ["x"], "t": True, "s": 1, "e": {}},
        {"subs": ["x"], "t": 1, "s": "1", "e": {}},
        {"subs": ["x"], "t": 1, "s": 1, "e": []},
        {"subs": "x", "t": 1, "s": 1, "e": {}},
        {"subs": [1], "t": 1, "s": 1, "e": {}},
        {"t": 1, "s": 1, "e": {}},
        ["not", "a", "record"],
    ],
)
def test_a_malformed_event_record_closes_the_agent_link_with_4000(record: Any) -> None:
    core = make_core()
    agent(core, "a1")
    frame = b'{"type":"events","stream":"default","records":[' + codec.dumps(record) + b"]}"
    with pytest.raises(RemoteProtocolError) as info:
        core.receive_agent_data("a1", frame, 1000.1)
    assert info.value.close_code == 4000


def test_two_connections_of_one_instance_are_one_member_and_silent_agents_are_closed() -> None:
    """Members are keyed by app + instance + stream: a reconnect that overlaps the old link is
    one member (the merger hears the first add and the last remove); an agent that answers no
    ping for three periods is named for closing, and pings are sent per heartbeat."""
    from mantis_py.gateway.merge import member_key

    core = GatewayCore(GatewayConfig(grace_s=2.0, heartbeat_s=10.0), now=1000.0,
                       prepare=fake_prepare)
    for conn in ("a1", "a2"):  # the same instance twice
        core.open_agent(conn, ANONYMOUS, 1000.0)
        core.receive_agent_data(conn, codec.encode(Hello("play", "i-1", ("default",))), 1000.0)
    client(core, "c1")
    query(core, "c1", "q", "select count(*) from play window 10")
    (run,) = core.runs.values()
    key = member_key("play", "i-1", "default")
    assert run.members == {key: {"a1", "a2"}}
    assert run.merger.added == [key]
    core.close_agent("a1", 1001.0)
    assert run.merger.removed == []  # a2 still carries it
    core.close_agent("a2", 1002.0)
    assert run.merger.removed == [key]
    # liveness: a3 answers nothing; it is pinged at +10 s and +20 s, closed at the check past +30 s
    core.open_agent("a3", ANONYMOUS, 1000.0)
    core.receive_agent_data("a3", codec.encode(Hello("play", "i-3", ("default",))), 1000.0)
    core.agent_data_to_send()
    pings = 0
    for t in range(1001, 1045):
        core.poll(float(t))
        pings += sum(1 for d in core.agent_data_to_send().get("a3", [])
                     if codec.decode(d).type == "ping")
        if core.agents_to_close() == ["a3"]:
            break
    assert pings == 3
    assert t == 1040
