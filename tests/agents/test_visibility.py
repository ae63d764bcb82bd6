"""Masked-field visibility per subscription (SYSTEM.md §6): ``caps.unmasked`` subscriptions see
the unmasked event; the others never see, ship or filter on a masked value."""

from __future__ import annotations

import datetime

import pytest

from mantis_py.agents.buffer import Pending
from mantis_py.agents.core import AgentCore
from mantis_py.testing import LinkPair, records_of
from mantis_py.wire import Events, Partial, Subscribe

from .helpers import check_accounting, make_core

T = 1000.0


@pytest.fixture
def pair() -> LinkPair:
    """These tests are about services that allow unmasked subscriptions (allow_unmasked=True)."""
    return LinkPair(make_core(mask=("password", "user.card"), allow_unmasked=True), now=T)


def sub(pair: LinkPair, sid: str, query: str, unmasked: bool = False) -> None:
    caps = {"unmasked": True} if unmasked else {}
    pair.send(Subscribe(sub=sid, query=query, stream="default", start=T, caps=caps))


def run(core: AgentCore, pair: LinkPair, *events: dict[str, object]) -> list[dict[str, object]]:
    for ev in events:
        core.offer(ev, "default", T)
    core.poll(T)
    return records_of(pair.pump(T + 1, force=True))


def test_unmasked_subscription_sees_and_filters_on_the_real_value(pair: LinkPair) -> None:
    sub(pair, "u", "fake select=a,password where=password:hunter2", unmasked=True)
    recs = run(pair.core, pair, {"a": 1, "password": "hunter2"}, {"a": 2, "password": "x"})
    assert recs == [{"subs": ["u"], "t": int(T * 1000), "s": 0,
                     "e": {"a": 1, "password": "hunter2"}}]
    check_accounting(pair.core)


def test_masked_and_unmasked_subscriptions_get_separate_records(pair: LinkPair) -> None:
    sub(pair, "m", "fake select=a,password")
    sub(pair, "u", "fake select=a,password", unmasked=True)
    core = pair.core
    for ev in ({"a": 1, "password": "hunter2"}, {"a": 2, "user": {"card": "4111"}}):
        core.offer(ev, "default", T)
    core.poll(T)
    msgs = pair.pump(T + 1, force=True)
    frames = [m for m in msgs if isinstance(m, Events)]
    recs = records_of(msgs)
    assert [(r["subs"], r["s"], r["e"]) for r in recs] == [
        (["m"], 0, {"a": 1, "password": "[masked]"}),
        (["u"], 0, {"a": 1, "password": "hunter2"}),
        # the masked path is not projected by either query: one record for both
        (["m", "u"], 1, {"a": 2}),
    ]
    frame_of = {(r["s"], tuple(r["subs"])): i for i, f in enumerate(frames) for r in f.records}
    assert frame_of[(0, ("m",))] == frame_of[(0, ("u",))]  # a pair travels in one frame
    s = core.statistics().streams["default"]
    assert s.sent == 2  # events, not records
    assert core.subs["m"].matched == 2
    assert core.subs["u"].matched == 2
    check_accounting(core)


def test_the_masked_subscription_is_no_filter_oracle_next_to_an_unmasked_one(
    pair: LinkPair,
) -> None:
    sub(pair, "m", "fake select=a where=password:hunter2")
    sub(pair, "u", "fake select=a where=password:hunter2", unmasked=True)
    sub(pair, "m2", "fake select=* where=password:[masked]")
    recs = run(pair.core, pair, {"a": 1, "password": "hunter2"})
    assert [(r["subs"], r["e"]) for r in recs] == [
        (["m2"], {"a": 1, "password": "[masked]"}),
        (["u"], {"a": 1, "password": "hunter2"}),
    ]
    assert pair.core.subs["m"].matched == 0


def test_unmasked_events_are_converted_to_json_types(pair: LinkPair) -> None:
    sub(pair, "m", "fake select=*")
    sub(pair, "u", "fake select=*", unmasked=True)
    ev = {"d": datetime.date(2026, 1, 2), "b": b"x", "password": {"k": (1, 2)}}
    recs = run(pair.core, pair, ev)
    assert [(r["subs"], r["e"]) for r in recs] == [
        (["m"], {"d": "2026-01-02", "b": "x", "password": "[masked]"}),
        (["u"], {"d": "2026-01-02", "b": "x", "password": {"k": [1, 2]}}),
    ]
    assert ev["password"] == {"k": (1, 2)}  # never mutated


def test_events_without_masked_keys_ship_once_for_both_kinds(pair: LinkPair) -> None:
    sub(pair, "m", "fake select=a")
    sub(pair, "u", "fake select=a", unmasked=True)
    recs = run(pair.core, pair, {"a": 1}, {"a": b"bytes"})
    assert [(r["subs"], r["e"]) for r in recs] == [(["m", "u"], {"a": 1}),
                                                   (["m", "u"], {"a": "bytes"})]


def test_only_unmasked_subscriptions(pair: LinkPair) -> None:
    sub(pair, "u", "fake select=*", unmasked=True)
    recs = run(pair.core, pair, {"user": {"card": "4111", "x": 1}})
    assert [(r["subs"], r["e"]) for r in recs] == [(["u"], {"user": {"card": "4111", "x": 1}})]
    check_accounting(pair.core)


def test_partials_see_their_own_kind_of_event(pair: LinkPair) -> None:
    sub(pair, "pm", "fake ships=partials where=password:hunter2")
    sub(pair, "pu", "fake ships=partials where=password:hunter2", unmasked=True)
    core = pair.core
    core.offer({"password": "hunter2"}, "default", T + 0.5)
    core.poll(T + 0.5)
    core.poll(T + 2.5)
    counts = {"pm": 0, "pu": 0}
    for m in pair.pump(T + 2.5):
        if isinstance(m, Partial):
            counts[m.sub] += m.part["count"]
    assert counts == {"pm": 0, "pu": 1}
    s = core.statistics().streams["default"]
    assert s.folded == 1
    check_accounting(core)


def test_too_large_counts_the_larger_copy() -> None:
    core = make_core(mask=("password",), allow_unmasked=True, max_event_bytes=100)
    pair = LinkPair(core, now=T)
    sub(pair, "m", "fake select=*")
    sub(pair, "u", "fake select=*", unmasked=True)
    assert run(core, pair, {"password": "x" * 120}) == []
    assert core.statistics().streams["default"].lost == {"too_large": 1}
    check_accounting(core)


def test_a_pair_that_does_not_fit_is_lost_whole() -> None:
    core = make_core(mask=("password",), allow_unmasked=True, max_queue_events=3)
    pair = LinkPair(core, now=T)
    sub(pair, "m", "fake select=*")
    sub(pair, "u", "fake select=*", unmasked=True)
    for i in range(3):
        core.offer({"i": i, "password": "p"}, "default", T)
    core.poll(T)
    s = core.statistics().streams["default"]
    assert s.lost == {"queue_full": 2}
    assert s.pending == 1
    recs = records_of(pair.pump(T + 1, force=True))
    assert [(r["subs"], r["e"]["i"]) for r in recs] == [(["m"], 0), (["u"], 0)]
    check_accounting(core)


def test_unsubscribing_the_unmasked_kind_restores_the_single_path(pair: LinkPair) -> None:
    sub(pair, "m", "fake select=password")
    sub(pair, "u", "fake select=password", unmasked=True)
    assert pair.core.streams["default"].plan.split
    pair.unsubscribe("u")
    assert not pair.core.streams["default"].plan.split
    recs = run(pair.core, pair, {"password": "p"})
    assert [(r["subs"], r["e"]) for r in recs] == [(["m"], {"password": "[masked]"})]


def test_pending_cut_never_separates_a_glued_pair() -> None:
    p = Pending(max_records=10, max_bytes=1000)
    assert p.add({"a": 0}, 10, 0.0)
    assert p.add_pair({"a": 1}, 10, {"a": 1.5}, 10, 0.0)
    assert p.add({"a": 2}, 10, 0.0)
    assert p.events == 3
    assert len(p) == 4
    assert p.cut(20) == ([{"a": 0}], 1)
    assert p.cut(5) == ([{"a": 1}, {"a": 1.5}], 1)
    assert p.nbytes == 10
    assert p.glued == 0
    assert not p.add_pair({}, 500, {}, 501, 0.0)
    assert p.clear() == 1
