"""Tests for mantis_py.query.semantics.plan: the plan object of MQL.md §7.2."""

from __future__ import annotations

from typing import Any

import pytest

from mantis_py.query.semantics.analyze import analyze
from mantis_py.query.semantics.plan import plan_json, window_json
from mantis_py.query.syntax import ast
from mantis_py.query.syntax.parser import parse


def plan(text: str, mode: str = "live") -> dict[str, Any]:
    return plan_json(analyze(parse(text), mode=mode))  # type: ignore[arg-type]


SPEC_EXAMPLE = {
    "canonical": "SELECT country, count(*) AS 'plays' FROM playback WHERE event == 'play' "
    "WINDOW 10 GROUP BY country",
    "kind": "aggregate",
    "mode": "live",
    "sources": [{"app": "playback", "stream": "default"}],
    "fields": ["country", "event"],
    "columns": ["country", "plays"],
    "agent": {
        "sample": None,
        "where": "event == 'play'",
        "ships": "partials",
        "window": {"type": "tumbling", "length": 10},
        "group_by": ["country"],
        "partials": ["first(country)", "count(*)"],
    },
    "gateway": {
        "window": {"type": "tumbling", "length": 10},
        "group_by": ["country"],
        "having": None,
        "order_by": [],
        "limit": None,
        "completes": False,
    },
}


def test_spec_example_of_7_2() -> None:
    got = plan(
        "select country, count(*) as plays from playback where event == 'play' "
        "window 10 group by country"
    )
    assert got == SPEC_EXAMPLE
    assert list(got) == list(SPEC_EXAMPLE)
    assert list(got["agent"]) == list(SPEC_EXAMPLE["agent"])
    assert list(got["gateway"]) == list(SPEC_EXAMPLE["gateway"])


def test_analysis_plan_method_is_plan_json() -> None:
    a = analyze(parse("select a from x"), mode="replay")
    assert a.plan() == plan_json(a)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (None, None),
        (ast.TimeWindow(10, 10), {"type": "tumbling", "length": 10}),
        (ast.TimeWindow(60, 30), {"type": "sliding", "length": 60, "every": 30}),
        (ast.CountWindow(100), {"type": "count", "size": 100}),
    ],
)
def test_window_objects(window: ast.Window | None, expected: dict[str, Any] | None) -> None:
    assert window_json(window) == expected


def test_partials_first_values_tick_literals_and_hidden_aggregates() -> None:
    got = plan(
        "select p99(latency), e['geo']['country'] as c, 'v1', tick(), count(distinct u), "
        "count(*) as n, count(*) from api window 60 30 group by e['geo']['country'] "
        "having sum(b) > 2 and count(*) > 1 and max(c) > 0"
    )
    assert got["agent"]["partials"] == [
        "p99(latency)",
        "first(e['geo']['country'])",
        "first(tick())",
        "count(DISTINCT u)",
        "count(*)",
        "sum(b)",
        "max(c)",
    ]
    assert got["columns"] == ["P99(latency)", "c", "v1", "tick", "COUNT(u)", "n", "COUNT(*)"]
    assert got["agent"]["window"] == {"type": "sliding", "length": 60, "every": 30}
    assert got["agent"]["group_by"] == ["e['geo']['country']"]
    assert got["gateway"]["having"] == "sum(b) > 2 AND count(*) > 1 AND max(c) > 0"
    assert got["fields"] == ["latency", "e['geo']['country']", "u", "b", "c"]


def test_events_mode_agent_part_is_empty() -> None:
    got = plan(
        "select user from api where status >= 500 window 10 order by latency desc, user limit 5 "
        "sample 5%"
    )
    assert got["kind"] == "plain"
    assert got["columns"] is None
    assert got["agent"] == {
        "sample": "SAMPLE 5%",
        "where": "status >= 500",
        "ships": "events",
        "window": None,
        "group_by": [],
        "partials": [],
    }
    assert got["gateway"] == {
        "window": {"type": "tumbling", "length": 10},
        "group_by": [],
        "having": None,
        "order_by": ["latency DESC", "user"],
        "limit": 5,
        "completes": False,
    }


def test_count_window_aggregate_ships_events() -> None:
    got = plan("select average(latency_ms), max(latency_ms) from api window |3| limit 2")
    assert got["agent"]["ships"] == "events"
    assert got["agent"]["partials"] == []
    assert got["gateway"]["window"] == {"type": "count", "size": 3}
    assert got["gateway"]["completes"] is True
    assert got["columns"] == ["AVERAGE(latency_ms)", "MAX(latency_ms)"]


def test_sources_and_sample_object() -> None:
    got = plan(
        "select * from playback, api/log where _instance == 'i-1' "
        "sample {'strategy': 'sticky', 'keys': ['sessionId'], 'threshold': 100}"
    )
    assert got["sources"] == [
        {"app": "playback", "stream": "default"},
        {"app": "api", "stream": "log"},
    ]
    assert got["fields"] == ["*", "_instance"]
    assert got["agent"]["sample"] == (
        'SAMPLE {"strategy": "STICKY", "keys": ["sessionId"], "salt": "0", '
        '"factor": 10000, "threshold": 100}'
    )


def test_replay_plan_without_from() -> None:
    got = plan("select count(*) from x", mode="replay")
    assert got["mode"] == "replay"
    assert got["gateway"]["window"] is None
    assert got["agent"]["ships"] == "events"
    got = plan("select a", mode="replay")
    assert got["sources"] == []
