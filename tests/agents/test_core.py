"""mantis_py/agents/core.py: the agent core driven through an in-memory link (LinkPair)."""

from __future__ import annotations

import pytest

from mantis_py.agents.core import SUBSCRIBED, AgentCore
from mantis_py.errors import RemoteProtocolError
from mantis_py.testing import LinkPair, records_of
from mantis_py.wire import Events, Partial, Ping, Pong, Stats, SubError, Subscribe

from .helpers import check_accounting, make_core

T = 1000.0


def test_publish_without_subscription_is_only_counted(core: AgentCore) -> None:
    for _ in range(5):
        core.offer({"a": 1}, "default", T)
    core.offer({"a": 1}, "other", T)
    s = core.statistics().streams
    assert s["default"].skipped_no_subscription == 5
    assert s["other"].skipped_no_subscription == 1
    assert s["default"].enqueued == 0
    assert core.route["default"] is core.streams["default"].skipped  # the counting path
    check_accounting(core)


def test_event_is_tagged_once_with_every_matching_subscription(pair: LinkPair) -> None:
    pair.subscribe("s1", "fake select=country where=country:BR")
    pair.subscribe("s2", "fake select=user.id,latency")
    pair.subscribe("s3", "fake select=latency where=country:US")
    core = pair.core
    core.offer(
        {"country": "BR", "user": {"id": 7, "name": "x"}, "latency": 3, "z": 0}, "default", T
    )
    pair.pump(T)
    got = pair.pump(T + 1)
    recs = records_of(got)
    assert len(recs) == 1
    assert recs[0]["subs"] == ["s1", "s2"]
    # projected once to the union of the fields the subscriptions need
    assert recs[0]["e"] == {"country": "BR", "user": {"id": 7}, "latency": 3}
    assert recs[0]["t"] == int(T * 1000)
    check_accounting(core)


def test_caller_dict_is_never_mutated_and_later_changes_are_not_seen(pair: LinkPair) -> None:
    pair.subscribe("s1", "fake select=*")
    ev = {"a": 1, "password": "hunter2"}
    pair.core.offer(ev, "default", T)
    ev["a"] = 2
    recs = records_of(pair.pump(T + 1))
    assert ev == {"a": 2, "password": "hunter2"}
    assert recs[0]["e"] == {"a": 1, "password": "[masked]"}


def test_batches_flush_after_the_interval() -> None:
    core = make_core()
    pair = LinkPair(core, now=T)
    pair.subscribe("s1", "fake select=*")
    core.offer({"a": 1}, "default", T)
    assert records_of(pair.pump(T)) == []
    assert records_of(pair.pump(T + 0.049)) == []
    assert len(records_of(pair.pump(T + 0.051))) == 1


def test_batches_flush_at_the_size_limit_and_frames_stay_small() -> None:
    core = make_core(batch_max_bytes=1024)
    pair = LinkPair(core, now=T)
    pair.subscribe("s1", "fake select=*")
    for i in range(100):
        core.offer({"i": i, "pad": "x" * 50}, "default", T)
    got = pair.pump(T)  # same instant: only full batches go
    frames = [m for m in got if isinstance(m, Events)]
    assert frames
    assert sum(len(m.records) for m in frames) < 100
    frames += [m for m in pair.pump(T + 1) if isinstance(m, Events)]
    assert sum(len(m.records) for m in frames) == 100
    seqs = [r["s"] for m in frames for r in m.records]
    assert seqs == list(range(100))
    check_accounting(core)


def test_ingress_full_drops_the_new_event_and_counts_it() -> None:
    core = make_core(max_queue_events=10)
    pair = LinkPair(core, now=T)
    pair.subscribe("s1", "fake select=*")
    for i in range(25):
        core.offer({"i": i}, "default", T)
    s = core.statistics().streams["default"]
    assert s.enqueued == 10
    assert s.dropped == {"queue_full": 15}
    recs = records_of(pair.pump(T + 1))
    assert [r["e"]["i"] for r in recs] == list(range(10))
    check_accounting(core)


def test_pending_is_bounded_while_the_link_is_down() -> None:
    core = make_core(max_queue_events=20, max_queue_bytes=10_000)
    pair = LinkPair(core, now=T)
    pair.subscribe("s1", "fake select=*")
    pair.disconnect(T)
    for round_ in range(10):
        for i in range(20):
            core.offer({"i": i, "pad": "y" * 100}, "default", T + round_ * 0.1)
        core.poll(T + round_ * 0.1)
    s = core.statistics().streams["default"]
    assert len(core.streams["default"].pending) <= 20
    assert core.streams["default"].pending.nbytes <= 10_000
    assert s.lost.get("queue_full", 0) > 0
    check_accounting(core)
    # the link comes back: what was kept flows (the gateway re-subscribes)
    pair.connect(T + 1)
    pair.subscribe("s1", "fake select=*", now=T + 1)
    recs = records_of(pair.pump(T + 2, force=True))
    assert 0 < len(recs) <= 20
    check_accounting(core)


def test_masking_happens_before_matching(pair: LinkPair) -> None:
    pair.subscribe("oracle", "fake select=a where=password:hunter2")
    pair.subscribe("nested", "fake select=a where=user.card:4111")
    pair.subscribe("all", "fake select=*")
    core = pair.core
    core.offer(
        {"a": 1, "Password": "hunter2", "user": {"card": "4111", "PASSWORD": "p"}}, "default", T
    )
    recs = records_of(pair.pump(T + 1))
    assert len(recs) == 1
    assert recs[0]["subs"] == ["all"]
    assert recs[0]["e"] == {
        "a": 1,
        "Password": "[masked]",
        "user": {"card": "[masked]", "PASSWORD": "[masked]"},
    }


def test_unserializable_events_are_converted_or_dropped_by_reason(pair: LinkPair) -> None:
    pair.subscribe("s1", "fake select=*")
    core = pair.core
    cyc: dict[str, object] = {"a": 1}
    cyc["self"] = cyc
    core.offer({"b": b"bytes", "set": {3, 1, 2}, "nan": float("nan"), 1: "int key"}, "default", T)
    core.offer({"raw": b"\xff\xfe"}, "default", T)
    core.offer({"big": 2**80}, "default", T)
    core.offer(cyc, "default", T)
    core.offer({(1, 2): "tuple key"}, "default", T)
    core.offer({"o": object()}, "default", T)
    core.offer({"huge": "x" * 100_000}, "default", T)
    core.offer(["not", "a", "dict"], "default", T)  # type: ignore[arg-type]
    recs = records_of(pair.pump(T + 1))
    assert [r["e"] for r in recs] == [
        {"b": "bytes", "set": [1, 2, 3], "nan": None, "1": "int key"},
        {"raw": "//4="},
        {"big": 2**80},
    ]
    s = core.statistics().streams["default"]
    assert s.lost == {"cycle": 1, "bad_key": 1, "unserializable": 1, "too_large": 1}
    assert s.dropped == {"not_an_object": 1}
    check_accounting(core)


def test_query_limits_refuse_with_sub_error() -> None:
    core = make_core(max_queries_per_stream=2, max_streams=2)
    pair = LinkPair(core, now=T)
    for i in range(3):
        pair.subscribe(f"q{i}", f"fake select=a{i}")
    pair.subscribe("x", "fake select=a", stream="s2")
    pair.subscribe("y", "fake select=a", stream="s3")
    errs = [m for m in pair.pump(T) if isinstance(m, SubError)]
    assert [(e.sub, e.code) for e in errs] == [("q2", "limit_queries"), ("y", "limit_streams")]
    assert set(core.subs) == {"q0", "q1", "x"}


def test_compile_error_is_reported_not_raised(pair: LinkPair) -> None:
    pair.subscribe("b", "bad query")
    errs = [m for m in pair.pump(T) if isinstance(m, SubError)]
    assert errs[0].code == "compile"
    assert "fake compile error" in errs[0].message


def test_exception_inside_a_query_is_counted_and_reported(pair: LinkPair) -> None:
    pair.subscribe("boom", "fake select=* raise=1")
    pair.subscribe("ok", "fake select=a")
    for i in range(3):
        pair.core.offer({"a": i}, "default", T)
    got = pair.pump(T + 1)
    assert len(records_of(got, "ok")) == 3
    errs = [m for m in got if isinstance(m, SubError) and m.code == "runtime"]
    assert errs
    assert "ZeroDivisionError" in errs[0].message
    assert pair.core.statistics().subs["boom"].errors == 3


def test_ping_is_answered_and_stats_flow(pair: LinkPair) -> None:
    pair.ping(nonce="abc")
    got = pair.pump(T)
    assert Pong(nonce="abc") in got
    assert any(isinstance(m, Stats) for m in got)


def test_subscribe_before_welcome_is_a_protocol_error() -> None:
    from mantis_py.wire import encode

    core = make_core()
    core.connected(T)
    with pytest.raises(RemoteProtocolError):
        core.receive_data(encode(Subscribe(sub="x", query="fake", stream="default", start=0)), T)


def test_queries_expire_when_the_gateway_is_gone(pair: LinkPair) -> None:
    pair.subscribe("s1", "fake select=*")
    core = pair.core
    pair.disconnect(T + 1)
    core.offer({"a": 1}, "default", T + 2)
    core.poll(T + 2)
    core.poll(T + 29)
    assert core.has_subscribers()
    core.poll(T + 30.5)
    assert not core.has_subscribers()
    assert core.statistics().streams["default"].lost == {"expired": 1}
    check_accounting(core)
    core.offer({"a": 1}, "default", T + 31)  # back to the one-lookup path
    assert core.route["default"] is core.streams["default"].skipped  # the counting path


def test_pings_keep_queries_alive(pair: LinkPair) -> None:
    pair.subscribe("s1", "fake select=*")
    for k in range(1, 10):
        pair.ping(now=T + 10 * k)
        pair.core.poll(T + 10 * k)
    assert pair.core.has_subscribers()


def test_after_reconnect_only_resubscribed_queries_survive(pair: LinkPair) -> None:
    pair.subscribe("keep", "fake select=a")
    pair.subscribe("gone", "fake select=b")
    pair.disconnect(T + 1)
    pair.connect(T + 2)
    pair.subscribe("keep", "fake select=a", now=T + 2)
    pair.core.poll(T + 5)
    assert set(pair.core.subs) == {"keep", "gone"}
    pair.core.poll(T + 13)
    assert set(pair.core.subs) == {"keep"}


def test_partials_are_shipped_once_per_window(pair: LinkPair) -> None:
    pair.subscribe("agg", "fake ships=partials window=1 where=country:BR", start=T)
    core = pair.core
    for i in range(10):
        core.offer({"country": "BR" if i % 2 else "US"}, "default", T + 0.1 * i)
    core.poll(T + 0.95)
    parts = [m for m in pair.pump(T + 1.0) if isinstance(m, Partial)]
    assert parts == [Partial(sub="agg", part={"window": [T, T + 1], "count": 5})]
    parts = [m for m in pair.pump(T + 2.0) if isinstance(m, Partial)]
    assert parts == [Partial(sub="agg", part={"window": [T + 1, T + 2], "count": 0})]
    s = core.statistics().streams["default"]
    assert s.folded == 10
    check_accounting(core)


def test_cpu_over_budget_samples_down_and_says_so(pair: LinkPair) -> None:
    core = pair.core
    pair.subscribe("s1", "fake select=*")
    core.report_cpu(T, 0.0)
    core.report_cpu(T + 1, 0.5)  # 50 % of a core against a 5 % budget
    assert core.sample_rate < 0.1
    for i in range(200):
        core.offer({"i": i}, "default", T + 1)
    pair.pump(T + 2)
    s = core.statistics()
    assert s.subs["s1"].sample_rate == core.sample_rate
    assert s.streams["default"].lost["cpu_budget"] > 100
    check_accounting(core)
    for k in range(2, 20):  # idle again: the rate recovers
        core.report_cpu(T + k, 0.5)
    assert core.sample_rate == 1.0


def test_unknown_unsubscribe_is_ignored_and_unsubscribe_reopens_the_gate(pair: LinkPair) -> None:
    pair.unsubscribe("nobody")
    pair.subscribe("s1", "fake select=*")
    assert pair.core.route["default"] is SUBSCRIBED
    pair.unsubscribe("s1")
    assert pair.core.route["default"] is pair.core.streams["default"].skipped


def test_stats_message_carries_every_loss(pair: LinkPair) -> None:
    pair.subscribe("s1", "fake select=*")
    pair.core.offer({"o": object()}, "default", T)
    pair.pump(T + 2)
    stats = pair.last_stats()
    assert stats is not None
    assert stats.streams["default"]["dropped"] == {"unserializable": 1}


def test_ping_message_type_only_from_gateway() -> None:
    core = make_core()
    pair = LinkPair(core, now=T)
    pair.send(Ping(nonce="1"))
    assert Pong(nonce="1") in pair.pump(T)


def test_host_route_follows_subscriptions_and_counts_exactly(pair: LinkPair) -> None:
    from mantis_py.agents.core import SUBSCRIBED

    core = pair.core
    assert core.route["default"] is core.streams["default"].skipped
    core.offer({"a": 1}, "default", T)
    core.offer({"a": 1}, "new", T)  # unknown stream: registered by the slow path
    assert "new" in core.route
    core.offer({"a": 1}, "new", T)
    pair.subscribe("s1", "fake select=a")
    assert core.route["default"] is SUBSCRIBED
    core.offer({"a": 2}, "default", T)
    core.offer(["not a dict"], "default", T)
    core.offer({"a": 3}, ["unhashable"], T)  # type: ignore[arg-type]
    pair.unsubscribe("s1")
    assert core.route["default"] is core.streams["default"].skipped
    core.offer({"a": 4}, "default", T)
    s = core.statistics().streams
    assert s["default"].offered == 4
    assert s["default"].skipped_no_subscription == 2
    assert s["default"].dropped == {"not_an_object": 1}
    assert s["new"].offered == 2
    assert s["['unhashable']"].offered == 1
    check_accounting(core)


def test_flat_projector_equals_the_generic_projection() -> None:
    import random

    from mantis_py.agents.subscriptions import flat_projector
    from mantis_py.testing.fake_engine import fake_project

    rng = random.Random(7)
    names = ["a", "b", "it's", 'q"uote', "x.y", "\\"]
    for _ in range(300):
        keys = tuple(rng.sample(names, rng.randint(1, 4)))
        ev = {k: rng.choice([1, None, [1], {"n": 2}]) for k in rng.sample(names, rng.randint(0, 6))}
        want = fake_project(tuple((k,) for k in keys), (), False)(ev)
        assert flat_projector(keys)(ev) == want
        assert list(flat_projector(keys)(ev)) == [k for k in keys if k in ev]
