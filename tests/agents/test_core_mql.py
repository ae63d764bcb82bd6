"""The agent core with the real query engine (MQL): tagging, partials, masking for every shape."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mantis_py.agents.core import AgentConfig, AgentCore
from mantis_py.testing import LinkPair, records_of
from mantis_py.wire import Partial, SubError, decode

from .helpers import check_accounting

T = 1000.0


def mql_core(**settings: Any) -> AgentCore:
    settings.setdefault("mask", ("password", "user.card"))
    return AgentCore(AgentConfig(app="app", instance="i1", **settings), random.Random(7))


def test_mql_events_are_filtered_projected_and_tagged() -> None:
    core = mql_core()
    pair = LinkPair(core, now=T)
    pair.subscribe("br", "select country, latency_ms from app where country == 'BR'")
    pair.subscribe("slow", "select e['user']['id'] from app where latency_ms > 100")
    core.offer(
        {"country": "BR", "latency_ms": 500, "user": {"id": 1, "n": 2}, "x": 0}, "default", T
    )
    core.offer({"country": "US", "latency_ms": 5}, "default", T)
    recs = records_of(pair.pump(T + 1))
    assert len(recs) == 1
    assert recs[0]["subs"] == ["br", "slow"]
    assert recs[0]["e"] == {"country": "BR", "latency_ms": 500, "user": {"id": 1}}
    check_accounting(core)


def test_mql_partials_ship_once_per_window() -> None:
    core = mql_core()
    pair = LinkPair(core, now=T)
    pair.subscribe("n", "select count(*) as n from app window 1", start=T)
    for i in range(5):
        core.offer({"i": i}, "default", T + 0.1 * i)
    parts = [m for m in pair.pump(T + 1.0) if isinstance(m, Partial)]
    assert len(parts) == 1
    assert parts[0].part["window"] == [T, T + 1]
    assert core.statistics().streams["default"].folded == 5


def test_mql_compile_errors_are_reported() -> None:
    core = mql_core()
    pair = LinkPair(core, now=T)
    pair.subscribe("bad", "select from where")
    errs = [m for m in pair.pump(T) if isinstance(m, SubError)]
    assert errs[0].code == "compile"
    assert errs[0].sub == "bad"


QUERIES = [
    "select * from app",
    "select password from app",
    "select user from app",
    "select e[^'pass'] from app",
    "select a from app where password == '{secret}'",
    "select a from app where e['user']['card'] == '{secret}'",
    "select a from app where user.card == '{secret}'",
    "select a from app where e['Password'] == '{secret}'",
    "select password, count(*) as n from app window 1 group by password",
    "select list(e['user']['card']) as l from app window 1",
    "select list(user.card) as l from app window 1",
    "select * from app sample 50%",
]
cases = st.sampled_from(["password", "Password", "PASSWORD"])


@st.composite
def events(draw: st.DrawFn, secret: str) -> dict[str, Any]:
    ev: dict[str, Any] = {"a": draw(st.integers(0, 3))}
    kinds = ["top", "nested", "card", "list", "flat", "flatpw"]
    for w in draw(st.lists(st.sampled_from(kinds), min_size=1)):
        if w == "top":
            ev[draw(cases)] = secret
        elif w == "nested":
            ev["user"] = {draw(cases): secret, "id": 1}
        elif w == "card":
            ev["user"] = {"card": secret}
        elif w == "flat":
            ev["user.card"] = secret
        elif w == "flatpw":
            ev["user." + draw(cases)] = secret
        else:
            ev["user"] = [{"card": secret}]
    if draw(st.booleans()):
        ev["b"] = {1, 2}  # forces the conversion path
    return ev


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_no_byte_sent_holds_a_masked_value_for_any_mql_shape(data: st.DataObject) -> None:
    secret = f"zq{data.draw(st.integers(1000, 9999))}qz"
    core = mql_core()
    pair = LinkPair(core, now=T)
    queries = data.draw(st.lists(st.sampled_from(QUERIES), min_size=1, max_size=4, unique=True))
    for i, q in enumerate(queries):
        pair.subscribe(f"s{i}", q.format(secret=secret), start=T)
    frames: list[bytes] = []
    for k in range(data.draw(st.integers(1, 4))):
        core.offer(data.draw(events(secret)), "default", T + 0.3 * k)
        core.poll(T + 0.3 * k)
        frames += [f.data for f in core.data_to_send(T + 0.3 * k)]
    core.poll(T + 5)
    frames += [f.data for f in core.data_to_send(T + 5, force=True)]
    assert not [m for m in map(decode, frames) if isinstance(m, SubError)]
    for f in frames:
        assert secret.encode() not in f
