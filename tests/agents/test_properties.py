"""Property tests of the agent core: masking never leaks, accounting is exact."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mantis_py.agents.convert import Mask, convert
from mantis_py.testing import LinkPair
from mantis_py.wire import Events, Partial, Subscribe, decode
from mantis_py.wire.codec import encode_value

from .helpers import check_accounting, make_core

T = 1000.0

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.text("abcxyz", max_size=5)
)
keys = st.sampled_from(["a", "b", "user", "items", "pass", "card", "name"])
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=10,
)
cases = st.sampled_from(["password", "Password", "PASSWORD", "passWord"])

QUERIES = [
    "fake select=*",
    "fake select=password",
    "fake select=user",
    "fake select=user.card",
    "fake select=^pass,^user",
    "fake select=a where=password:{secret}",
    "fake select=a where=user.card:{secret}",
    "fake select=a where=user.password:{secret}",
    "fake select=* sample=0.5",
    "fake ships=partials where=password:{secret}",
]


@st.composite
def masked_events(draw: st.DrawFn, secret: str) -> dict[str, Any]:
    ev = draw(st.dictionaries(keys, values, max_size=4))
    where = draw(st.lists(st.sampled_from(["top", "nested", "card", "list", "deep"]), min_size=1))
    for w in where:
        if w == "top":
            ev[draw(cases)] = secret
        elif w == "nested":
            ev["user"] = {draw(cases): secret, "id": 1}
        elif w == "card":
            ev["user"] = {"card": secret, "name": "n"}
        elif w == "list":
            ev["user"] = [{"card": secret}, {"x": {draw(cases): secret}}]
        else:
            ev["items"] = [[{"a": {"password": secret}}]]
    if draw(st.booleans()):
        ev["b"] = b"bytes force the slow path"
    return ev


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_no_byte_sent_for_a_masked_subscription_holds_a_masked_value(data: st.DataObject) -> None:
    """Masked and unmasked (``caps.unmasked``) subscriptions mixed on one stream: every byte
    sent for a masked one is free of the secret (records, partials, the whole frame when no
    unmasked one runs), masked filters are no oracle, and each kind sees its own event."""
    secret = f"zq{data.draw(st.integers(1000, 9999))}qz"
    mask = Mask(("password", "user.card"))
    core = make_core(mask=mask.entries, seed=data.draw(st.integers(0, 99)), allow_unmasked=True)
    pair = LinkPair(core, now=T)
    queries = data.draw(st.lists(st.sampled_from(QUERIES), min_size=1, max_size=6))
    unmasked: dict[str, bool] = {}
    for i, q in enumerate(queries):
        sid = f"s{i}"
        unmasked[sid] = data.draw(st.booleans())
        caps = {"unmasked": True} if unmasked[sid] else {}
        pair.send(Subscribe(sub=sid, query=q.format(secret=secret), stream="default", start=T,
                            caps=caps))
    sent: list[bytes] = []
    events: dict[int, dict[str, Any]] = {}
    for k in range(data.draw(st.integers(1, 5))):
        ev = data.draw(masked_events(secret))
        t = T + k * 0.3
        events[int(t * 1000)] = ev
        core.offer(ev, "default", t)
        core.poll(t)
        sent += [f.data for f in core.data_to_send(t)]
    core.poll(T + 5)
    sent += [f.data for f in core.data_to_send(T + 5, force=True)]
    key = secret.encode()
    star = any(q.startswith("fake select=*") for q in queries)
    tagged: dict[int, set[str]] = {t: set() for t in events}
    for frame in sent:
        if not any(unmasked.values()):
            assert key not in frame
        msg = decode(frame)
        if isinstance(msg, Events):
            for r in msg.records:
                kinds = {unmasked[sid] for sid in r["subs"]}
                assert len(kinds) == 1 or key not in encode_value(r)
                if kinds == {False}:
                    assert key not in encode_value(r)
                tagged[r["t"]].update(r["subs"])
                if star:  # the shipped object is the whole event as each of its kinds sees it
                    for kind in kinds:
                        assert r["e"] == convert(events[r["t"]], Mask() if kind else mask)
                for sid in r["subs"]:  # the oracle queries never match a masked subscription
                    if "{secret}" in queries[int(sid[1:])]:
                        assert unmasked[sid]
        elif not (isinstance(msg, Partial) and unmasked[msg.sub]):
            assert key not in frame
    for t, subs in tagged.items():  # what each kind of subscription kept
        for i, q in enumerate(queries):
            if q == "fake select=*":
                assert f"s{i}" in subs
            elif q == "fake select=a where=password:{secret}" and unmasked[f"s{i}"]:
                assert (f"s{i}" in subs) == (events[t].get("password") == secret)


OPS = st.one_of(
    st.tuples(st.just("sub"), st.integers(0, 4), st.sampled_from(["default", "log", "x"])),
    st.tuples(st.just("unsub"), st.integers(0, 4)),
    st.tuples(st.just("pub"), st.sampled_from(["default", "log", "x", "y"]), st.integers(0, 6)),
    st.tuples(st.just("poll"), st.floats(0.0, 3.0)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("disconnect")),
    st.tuples(st.just("connect")),
    st.tuples(st.just("cpu"), st.floats(0.0, 0.5)),
    st.tuples(st.just("ping")),
)
SUB_QUERIES = [
    "fake select=a where=k:1",
    "fake select=*",
    "fake select=b sample=0.5",
    "fake ships=partials where=k:2",
    "fake select=a raise=1",
]
EVENTS: list[Any] = [
    {"k": 1, "a": 1},
    {"k": 2, "b": [1, 2]},
    {"k": 1, "a": b"x", "s": {1, 2}},
    {"k": 1, "o": object()},
    {"k": 1, "big": "x" * 70_000},
    "not a dict",
    {"k": 1, "a": {"password": "p"}},
]


@settings(max_examples=150, deadline=None)
@given(st.lists(OPS, max_size=60), st.integers(0, 1000))
def test_accounting_holds_under_random_operations(ops: list[tuple[Any, ...]], seed: int) -> None:
    core = make_core(seed=seed, max_queue_events=8, max_queue_bytes=4000, mask=("password",),
                     allow_unmasked=True)
    pair = LinkPair(core, now=T)
    now = T
    cpu = 0.0
    offered: dict[str, int] = {}
    linked = True
    for op in ops:
        kind = op[0]
        if kind == "sub" and linked:
            pair.subscribe(f"q{op[1]}", SUB_QUERIES[op[1]], stream=op[2], start=now, now=now)
        elif kind == "unsub" and linked:
            pair.unsubscribe(f"q{op[1]}", now=now)
        elif kind == "pub":
            core.offer(EVENTS[op[2]], op[1], now)
            offered[op[1]] = offered.get(op[1], 0) + 1
        elif kind == "poll":
            now += op[1]
            core.poll(now, max_events=5)
        elif kind == "flush" and linked:
            pair.pump(now)
        elif kind == "disconnect" and linked:
            pair.disconnect(now)
            linked = False
        elif kind == "connect" and not linked:
            pair.connect(now)
            linked = True
        elif kind == "cpu":
            cpu += op[1]
            now += 1.0
            core.report_cpu(now, cpu)
        elif kind == "ping" and linked:
            pair.ping(now=now)
        check_accounting(core)
    # drain: every event ends up sent or counted under a reason
    if not linked:
        pair.connect(now)
    while core.poll(now + 100):
        pass
    pair.pump(now + 100, force=True)
    check_accounting(core)
    stats = core.statistics().streams
    for name, n in offered.items():
        assert stats[name].offered == n
        assert stats[name].pending == 0
    received = sum(len(m.records) for m in pair.received if isinstance(m, Events))
    assert received == sum(s.sent for s in stats.values())
