"""The alert core (mantis_py/gateway/alerts.py): rules, states and actions, without a network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mantis_py.errors import ConfigurationError
from mantis_py.gateway.alerts import (
    STATES,
    TRANSITIONS,
    AlertCore,
    AlertRule,
    Notification,
    WindowResult,
    parse_rules,
)

RULE_CONFIG: dict[str, Any] = {
    "name": "pps",
    "query": "select count(*) as pps from playback where event == 'play' window 1",
    "condition": "pps < 50",
    "windows": 2,
    "actions": [{"type": "log"}, {"type": "webhook", "url": "http://127.0.0.1:9/hook"}],
}


def low_pps(row: Mapping[str, Any]) -> bool:
    value = row.get("pps")
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 50


def make_core(**overrides: Any) -> AlertCore:
    config = {**RULE_CONFIG, **overrides}
    (rule,) = parse_rules([config], check_condition=False)
    return AlertCore(rule, low_pps, now=0.0)


def window(t: float, pps: int, reporting: int = 3, expected: int = 3) -> WindowResult:
    return WindowResult((t, t + 1), ({"pps": pps},), reporting, expected)


def feed(core: AlertCore, t: float, pps: int, **kw: int) -> str:
    core.receive_window(window(t, pps, **kw), now=t + 1.5)
    return core.state


def test_transition_table_is_total() -> None:
    for state in STATES:
        for obs in ("breach", "clear", "insufficient"):
            assert (state, obs) in TRANSITIONS


def test_rule_starts_in_insufficient_data_then_ok() -> None:
    core = make_core()
    assert core.state == "insufficient_data"
    assert feed(core, 10, 100) == "ok"


def test_drop_fires_after_consecutive_windows_and_resolves() -> None:
    core = make_core()
    feed(core, 10, 100)
    core.deliveries_to_send()
    assert feed(core, 11, 10) == "ok"  # one breaching window is not enough (windows = 2)
    assert feed(core, 12, 10) == "firing"
    sent = core.deliveries_to_send()
    assert [d.action.kind for d in sent] == ["log", "webhook"]
    note = sent[0].notification
    assert (note.previous, note.state) == ("ok", "firing")
    assert note.rows == ({"pps": 10},)
    assert feed(core, 13, 5) == "firing"
    assert core.deliveries_to_send() == []  # no repeat while it keeps firing
    assert feed(core, 14, 100) == "resolved"
    sent = core.deliveries_to_send()
    assert {d.notification.state for d in sent} == {"resolved"}
    assert feed(core, 15, 100) == "resolved"


def test_a_breach_interrupted_by_a_clear_window_does_not_fire() -> None:
    core = make_core()
    for t, pps in enumerate([100, 10, 100, 10, 100]):
        assert feed(core, t, pps) == "ok"


def test_low_coverage_is_insufficient_data_never_firing() -> None:
    core = make_core(windows=1)
    feed(core, 10, 100)
    # agents disappear: counts collapse but coverage says so
    assert feed(core, 11, 0, reporting=1, expected=3) == "insufficient_data"
    assert feed(core, 12, 0, reporting=0, expected=3) == "insufficient_data"
    assert feed(core, 13, 0, reporting=0, expected=0) == "insufficient_data"
    states = [h["state"] for h in core.history]
    assert "firing" not in states
    assert "coverage" in core.history[-1]["reason"]


def test_missing_coverage_counts_as_insufficient() -> None:
    core = make_core(windows=1)
    core.receive_window(WindowResult((0, 1), ({"pps": 1},)), now=2)
    assert core.state == "insufficient_data"


def test_coverage_exactly_95_percent_counts() -> None:
    core = make_core(windows=1)
    assert feed(core, 1, 10, reporting=19, expected=20) == "firing"


def test_firing_then_insufficient_then_clear_is_resolved() -> None:
    core = make_core(windows=1)
    feed(core, 1, 10)
    assert core.state == "firing"
    feed(core, 2, 0, reporting=0, expected=3)
    assert core.state == "insufficient_data"
    assert feed(core, 3, 100) == "resolved"


def test_no_windows_for_a_while_is_insufficient_data() -> None:
    core = make_core(stale_after=10)
    feed(core, 1, 100)
    core.poll(now=5)
    assert core.state == "ok"
    core.poll(now=20)
    assert core.state == "insufficient_data"


def test_query_refused_or_complete_is_insufficient_data() -> None:
    core = make_core(windows=1)
    feed(core, 1, 10)
    core.receive_complete("app gone", now=3)
    assert core.state == "insufficient_data"
    assert "app gone" in core.reason
    core.receive_error("unknown application 'playback'", now=4)
    assert "refused" in core.reason


def test_grouped_window_breaches_when_any_row_holds() -> None:
    core = make_core(windows=1)
    rows = ({"country": "US", "pps": 500}, {"country": "BR", "pps": 3})
    core.receive_window(WindowResult((0, 1), rows, 2, 2), now=2)
    assert core.state == "firing"
    (log, _hook) = core.deliveries_to_send()
    assert log.notification.rows == ({"country": "BR", "pps": 3},)


def test_empty_grouped_window_does_not_breach() -> None:
    core = make_core(windows=1)
    core.receive_window(WindowResult((0, 1), (), 2, 2), now=2)
    assert core.state == "ok"


def test_predicate_that_raises_counts_as_false() -> None:
    (rule,) = parse_rules([RULE_CONFIG], check_condition=False)

    def boom(row: Mapping[str, Any]) -> bool:
        raise RuntimeError("x")

    core = AlertCore(rule, boom, now=0)
    core.receive_window(window(0, 1), now=2)
    assert core.state == "ok"


def test_webhook_defaults_to_firing_and_resolved_only() -> None:
    core = make_core(windows=1)
    feed(core, 1, 100)  # insufficient -> ok: log only
    assert [d.action.kind for d in core.deliveries_to_send()] == ["log"]


def test_webhook_body_is_documented_json() -> None:
    note = Notification(
        alert="a", state="firing", previous="ok", at=12.0, reason="r", query="q",
        condition="c", window=(10.0, 11.0), rows=({"pps": 1},), coverage=(3, 3),
    )
    body = note.to_json()
    assert body == {
        "version": 1, "alert": "a", "state": "firing", "previous": "ok", "at": 12.0,
        "reason": "r", "query": "q", "condition": "c", "window": [10.0, 11.0],
        "rows": [{"pps": 1}], "coverage": {"reporting": 3, "expected": 3},
    }
    assert "ok -> firing" in note.log_line()


def test_snapshot_shows_state_and_history() -> None:
    core = make_core(windows=1)
    feed(core, 1, 10)
    snap = core.snapshot()
    assert snap["state"] == "firing"
    assert snap["name"] == "pps"
    assert [h["state"] for h in snap["history"]] == ["insufficient_data", "firing"]
    assert snap["coverage"] == {"reporting": 3, "expected": 3}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": ""}, "name"),
        ({"query": ""}, "query"),
        ({"windows": 0}, "windows"),
        ({"windows": 1.5}, "windows"),
        ({"actions": [{"type": "page"}]}, "log or webhook"),
        ({"actions": [{"type": "webhook"}]}, "url"),
        ({"actions": [{"type": "webhook", "url": "ftp://x"}]}, "url"),
        ({"actions": [{"type": "log", "on": ["bogus"]}]}, "states"),
        ({"min_coverage": 2}, "min_coverage"),
        ({"colour": "red"}, "unknown key"),
    ],
)
def test_bad_rules_are_one_clear_line(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_rules([{**RULE_CONFIG, **change}], check_condition=False)


def test_duplicate_rule_names_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="twice"):
        parse_rules([RULE_CONFIG, RULE_CONFIG], check_condition=False)


def test_actions_accept_string_shorthand_and_default_to_log() -> None:
    (rule,) = parse_rules([{**RULE_CONFIG, "actions": ["log"]}], check_condition=False)
    assert rule.actions[0].kind == "log"
    cfg = {k: v for k, v in RULE_CONFIG.items() if k != "actions"}
    (rule,) = parse_rules([cfg], check_condition=False)
    assert [a.kind for a in rule.actions] == ["log"]
    assert isinstance(rule, AlertRule)


def test_agents_leaving_still_count_as_expected_for_a_while() -> None:
    core = make_core(windows=1, fleet_memory=30)
    feed(core, 1, 120, reporting=3, expected=3)
    # two agents disconnect: the gateway now expects one, which reports a low count
    assert feed(core, 2, 30, reporting=1, expected=1) == "insufficient_data"
    assert "2 agent(s) gone" in core.reason
    # once the fleet memory has passed, the smaller fleet is the new normal
    assert feed(core, 40, 30, reporting=1, expected=1) == "firing"


# --------------------------------------------------------------------------- with the real engine


def test_condition_is_evaluated_by_the_query_engine() -> None:
    from mantis_py.gateway.alerts import compile_condition

    low = compile_condition("pps < 40")
    assert low({"pps": 10})
    assert not low({"pps": 100})
    assert not low({})  # a missing value is never below the threshold (MQL.md §3.5.3)
    assert not low({"pps": "5"})  # nor is a string
    either = compile_condition("country in ('US', 'BR') and not (errors == 0)")
    assert either({"country": "US", "errors": 3})
    assert not either({"country": "US", "errors": 0})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"condition": "pps <"}, r"bad condition at column 6"),
        ({"condition": "ppss < 40"}, r"names 'ppss', which the query does not produce \(its columns: pps\)"),
        ({"query": "select count(*) as pps form playback window 1"}, r"bad query at line 1, column 24"),
    ],
)
def test_bad_query_or_condition_is_refused_at_start(change: dict[str, Any], message: str) -> None:
    config = {**RULE_CONFIG, "condition": "pps < 40", **change}
    with pytest.raises(ConfigurationError, match=message):
        parse_rules([config])


def test_condition_may_name_nested_and_dotted_columns() -> None:
    config = {
        **RULE_CONFIG,
        "query": "select e['geo']['country'], count(*) as n from playback window 1 group by e['geo']['country']",
        "condition": "e['geo']['country'] == 'US' and n < 3",
    }
    assert parse_rules([config])[0].condition.startswith("e['geo']")


def test_plain_query_conditions_are_not_checked_against_columns() -> None:
    config = {**RULE_CONFIG, "query": "select * from playback where status >= 500", "condition": "x > 1"}
    assert parse_rules([config])[0].name == "pps"


# --------------------------------------------------------------------------- properties

windows_st = st.lists(
    st.tuples(st.integers(0, 200), st.integers(0, 4), st.integers(0, 4)), max_size=40
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(seq=windows_st, needed=st.integers(1, 4))
def test_fires_only_after_enough_consecutive_covered_breaches(
    seq: list[tuple[int, int, int]], needed: int
) -> None:
    core = make_core(windows=needed, fleet_memory=1e9)
    streak, fleet = 0, 0
    for t, (pps, reporting, expected) in enumerate(seq):
        reporting = min(reporting, expected)
        before = core.state
        feed(core, t, pps, reporting=reporting, expected=expected)
        fleet = max(fleet, expected)
        covered = fleet > 0 and reporting / fleet >= 0.95
        streak = streak + 1 if covered and pps < 50 else 0
        if not covered:
            assert core.state == "insufficient_data"
        if core.state == "firing" and before != "firing":
            assert streak >= needed
        if core.state == "firing":
            assert covered
            assert pps < 50
        changed = core.state != before
        logs = [d for d in core.deliveries_to_send() if d.action.kind == "log"]
        assert len(logs) == (1 if changed else 0)


def test_an_insufficient_window_breaks_the_run_of_breaches() -> None:
    core = make_core(windows=2)
    feed(core, 1, 0)
    feed(core, 2, 0, reporting=0, expected=0)
    assert feed(core, 3, 0) == "insufficient_data"  # one breach after the gap, not two
    assert feed(core, 4, 0) == "firing"
