"""Issue 9 attacks on the agent, replayed on the pure core with the real query engine.

- catch-up: a subscription carrying a day-old (or zero) ``start`` must not make the agent emit
  one partial per window since then;
- a pause (SIGSTOP, GC, frozen VM, busy thread) must not turn unobserved windows into zero-count
  partials: they ship ``"covered": false``;
- the gateway's merger counts such windows as not covered by that agent.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from mantis_py.agents.core import AgentConfig, AgentCore
from mantis_py.query.run.engine import Notice, Rows, prepare
from mantis_py.testing import LinkPair
from mantis_py.wire import Partial

T = 1_000_000.0
Q = "select count(*) as n from app window 1"


def mql_core(**settings: Any) -> AgentCore:
    return AgentCore(AgentConfig(app="app", instance="i1", **settings), random.Random(7))


def _parts(msgs: list[Any]) -> list[dict[str, Any]]:
    return [m.part for m in msgs if isinstance(m, Partial)]


@pytest.mark.parametrize("start", [T - 86_400, T - 7 * 86_400, 0.0])
def test_a_late_joiner_never_catches_up_old_windows(start: float) -> None:
    """Before: 86,412 partials for a day-old start (604,815 for a week, every second since 1970
    for start = 0). After: only windows starting after the agent received the query."""
    core = mql_core()
    pair = LinkPair(core, now=T)
    pair.subscribe("n", Q, start=start, now=T + 0.5)
    parts: list[dict[str, Any]] = []
    for i in range(1, 6):
        parts += _parts(pair.pump(T + 0.5 + i))
    assert parts, "windows after the subscription are reported"
    assert all(p["window"][0] >= T + 0.5 for p in parts), parts[:2]
    assert len(parts) <= 5


def test_a_pause_ships_unobserved_windows_as_not_covered() -> None:
    """SIGSTOP for 12 s: the windows of the pause come back ``covered: false``, never as zeros."""
    core = mql_core()
    pair = LinkPair(core, now=T)
    pair.subscribe("n", Q, start=T, now=T)
    seen: list[dict[str, Any]] = []
    t = T
    while t < T + 3:  # the runner polls every 50 ms
        t += 0.05
        seen += _parts(pair.pump(t))
    assert seen
    assert all("covered" not in p for p in seen)
    paused_at = t
    t += 12.0  # frozen: no poll, no publish
    after = _parts(pair.pump(t))
    assert len(after) >= 11
    for p in after:
        assert p["covered"] is False, p
    t2 = t
    while t2 < t + 2.5:
        t2 += 0.05
        after += _parts(pair.pump(t2))
    fresh = [p for p in after if p["window"][0] >= t]
    assert fresh
    assert all("covered" not in p for p in fresh), "observed windows are covered again"
    assert all(p.get("covered") is False for p in after if p["window"][0] < t
               and p["window"][1] > paused_at)


def test_a_slow_compile_counts_as_unobserved() -> None:
    """The runner received the query at T but was busy until T + 3: those windows are not
    covered (observation starts when the query arrives)."""
    core = mql_core()
    pair = LinkPair(core, now=T)
    pair.subscribe("n", Q, start=T, now=T)
    parts = _parts(pair.pump(T + 3.01))
    assert parts
    assert all(p["covered"] is False for p in parts)


def test_the_merger_does_not_count_unobserved_parts() -> None:
    """Three agents; two ship ``covered: false`` zero windows: coverage is 1/3, not 3/3."""
    p = prepare(Q, mode="live")
    m = p.merger(start=T, grace=5.0)
    for a in ("a", "b", "c"):
        m.add_agent(a, T - 1)
    src = p.source(app="app", instance="a")
    src.start(T)
    for i in range(30):
        src.offer({"i": i}, T + 0.01 * i)
    (good,) = src.poll(T + 1.0)
    m.receive_part("a", good, T + 1.0)
    for a in ("b", "c"):
        m.receive_part(a, {"k": good["k"], "window": good["window"], "groups": [], "other": None,
                           "folded": 0, "errors": 0, "covered": False}, T + 1.0)
    out = m.poll(T + 1.1)  # everyone reported: emitted before the grace ends
    rows = [o for o in out if isinstance(o, Rows)]
    cov = [o for o in out if isinstance(o, Notice) and o.name == "coverage"]
    assert rows
    assert rows[0].rows == [{"n": 30}]
    assert cov
    assert cov[0].detail == "1/3 agents"
    assert m.statistics()["coverage"] == {"reporting": 1, "expected": 3}


# --------------------------------------------------------------------------- allow_unmasked


def _unmasked_attack(core: AgentCore) -> list[Any]:
    """A fake gateway asks for an unmasked subscription and collects every record."""
    from mantis_py.testing import records_of
    from mantis_py.wire import Subscribe

    pair = LinkPair(core, now=T)
    pair.send(Subscribe(sub="u", query="select * from app", stream="default", start=T,
                        caps={"unmasked": True}))
    for i in range(50):
        core.offer({"user": "bob", "password": "hunter2", "i": i}, "default", T)
    core.poll(T)
    return records_of(pair.pump(T + 1, force=True))


def test_a_gateway_asking_for_unmasked_values_gets_masked_ones_by_default() -> None:
    """Before: a fake gateway sending caps.unmasked received `hunter2` for every event."""
    recs = _unmasked_attack(mql_core(mask=("password",)))
    assert len(recs) == 50
    assert all(r["e"]["password"] == "[masked]" for r in recs)
    assert "hunter2" not in repr(recs)


def test_a_service_that_allows_unmasked_values_ships_them() -> None:
    recs = _unmasked_attack(mql_core(mask=("password",), allow_unmasked=True))
    assert recs
    assert all(r["e"]["password"] == "hunter2" for r in recs)


def test_both_runners_take_allow_unmasked() -> None:
    import inspect

    from mantis_py.agents.sync import Agent
    from mantis_py.agents.trio import TrioAgent, open_agent

    assert Agent("app", instance="x").config.allow_unmasked is False
    assert Agent("app", instance="x", allow_unmasked=True).config.allow_unmasked is True
    assert inspect.signature(open_agent).parameters["allow_unmasked"].default is False
    t = TrioAgent("app", "ws://127.0.0.1:1", None, "x", ("password",), None, None, None, None,
                  None, {"allow_unmasked": True})
    assert t.config.allow_unmasked is True


# --------------------------------------------------------------------------- subscription churn


def test_subscription_churn_is_capped() -> None:
    """Before: a gateway churning subscribe/unsubscribe of fresh queries drove the agent thread
    to 97 % of a core. After: beyond the burst, new queries are refused (limit_churn)."""
    from mantis_py.wire import SubError, Subscribe, Unsubscribe

    core = mql_core(subscribe_rate_per_s=1.0, subscribe_burst=5)
    pair = LinkPair(core, now=T)
    refused = 0
    for i in range(40):
        pair.send(Subscribe(sub=f"s{i}", query=f"select a{i} from app", stream="default",
                            start=T), T + i * 0.01)
        pair.send(Unsubscribe(sub=f"s{i}"), T + i * 0.01)
        refused += sum(1 for m in pair.pump(T + i * 0.01)
                       if isinstance(m, SubError) and m.code == "limit_churn")
    assert refused == 35
    # the bucket refills: a second later one more query is accepted
    pair.send(Subscribe(sub="late", query="select late from app", stream="default", start=T),
              T + 2.0)
    assert "late" in core.subs


def test_compile_cpu_beyond_the_budget_refuses_new_queries() -> None:
    """Compile time is paid from the agent's CPU budget: after 1.2 s of compiling (reported by
    the runner), new queries are refused until the budget (5 % of a core) has paid it back."""
    from mantis_py.wire import SubError, Subscribe

    core = mql_core(compile_cpu_burst_s=1.0)
    pair = LinkPair(core, now=T)
    core.report_control_cpu(T, 1.2)  # (the default burst is 0.2 s; 1.0 here for round numbers)
    pair.send(Subscribe(sub="a", query="select a from app", stream="default", start=T), T)
    errs = [m for m in pair.pump(T) if isinstance(m, SubError)]
    assert [e.code for e in errs] == ["limit_churn"]
    pair.send(Subscribe(sub="b", query="select b from app", stream="default", start=T), T + 5.0)
    assert "b" in core.subs  # 5 s x 5 % = 0.25 s earned back: the debt of 0.2 s is paid


def test_a_flood_of_gateway_messages_pauses_reading_until_its_cpu_is_paid_back() -> None:
    """Before: refused subscribes still cost the agent thread ~24 % of a core under a flood
    (bench/churn_bench.py), since every frame was read and answered. Now the runners stop
    reading the link while the CPU of gateway messages is over budget (the frames wait in the
    socket), so a flood costs the budget (5 % of a core) plus one tick at a time."""
    core = mql_core()  # compile_cpu_burst_s 0.2, cpu_budget 5 %
    assert not core.control_overdrawn(T)
    core.report_control_cpu(T, 0.15)
    assert not core.control_overdrawn(T)  # within the burst
    core.report_control_cpu(T, 0.1)  # 0.05 s in debt
    assert core.control_overdrawn(T)
    assert core.control_overdrawn(T + 0.9)  # 0.045 s paid back: still in debt
    assert not core.control_overdrawn(T + 1.1)  # 0.055 s paid back


def test_a_backlog_never_turns_queued_events_into_late_drops() -> None:
    """bench/e2e_bench.py's pushdown run counted 90,817 of ~100k events: at 10k events/s the
    agent folds at most max_events per tick, and closed a window while events of that window
    were still queued (they became `late`). A window now closes after its queued events."""
    core = mql_core(max_queue_events=10_000)
    pair = LinkPair(core, now=T)
    pair.subscribe("n", Q, start=T, now=T)
    for i in range(3000):
        core.offer({"i": i}, "default", T + 0.2 + i * 0.0002)
    parts: list[dict[str, Any]] = []
    for step in range(6):
        core.poll(T + 1.5 + step * 0.01, max_events=1024)
        parts += _parts(pair.pump(T + 1.5 + step * 0.01))
    first = [p for p in parts if p["window"][0] == T]
    assert len(first) == 1
    assert first[0]["groups"][0][2] == [3000], first[0]  # count(*) of every queued event
