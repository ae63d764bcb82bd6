"""The shipped object of events mode (MQL.md §4.2) and its invariant."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from mql_gen import random_aggregate_query, random_event, random_plain_query

from mantis_py.query.run.engine import prepare
from mantis_py.query.semantics.values import resolve, resolve_star
from mantis_py.query.state.projection import project, union_fields
from mantis_py.query.syntax import ast


def _properties(node: Any) -> list[ast.Property]:
    """Every Property in a query (select items, WHERE, GROUP BY, ORDER BY keys, ...)."""
    out: list[ast.Property] = []
    stack = [node]
    while stack:
        x = stack.pop()
        if isinstance(x, ast.Property):
            out.append(x)
        elif dataclasses.is_dataclass(x) and not isinstance(x, type):
            stack.extend(getattr(x, f.name) for f in dataclasses.fields(x))
        elif isinstance(x, (tuple, list)):
            stack.extend(x)
    return out


def _check_invariant(text: str, event: dict[str, Any]) -> None:
    a = prepare(text, mode="replay").analysis
    shipped = project(event, a.field_paths, a.field_prefixes, a.star)
    props = _properties(a.query)
    if a.query.sample is not None:
        props += [ast.Property((k,)) for k in a.query.sample.keys]
    for prop in props:
        if prop.has_star:
            assert resolve_star(shipped, prop.segments) == resolve_star(event, prop.segments), (text, prop)
        else:
            assert resolve(shipped, prop.segments) == resolve(event, prop.segments), (text, prop)
    for pre in a.field_prefixes:
        assert [k for k in shipped if k.startswith(pre)] == [k for k in event if k.startswith(pre)]


@pytest.mark.parametrize("seed", range(30))
def test_field_invariant_on_random_queries_and_events(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(10):
        if rng.random() < 0.5:
            text = random_plain_query(rng)
        else:
            text = random_aggregate_query(rng, "window 10")
        for _ in range(10):
            _check_invariant(text, random_event(rng))


@pytest.mark.parametrize(
    ("text", "event", "shipped"),
    [
        ("select country, count(*) from playback where event == 'play' window 10 group by country",
         {"country": "US", "event": "play", "x": 1}, {"country": "US", "event": "play"}),
        ("select e['device']['type'], e['tags'][0] from p where e['device']['os'] ==~ /tv.*/",
         {"device": {"type": "tv", "os": "tvos", "m": 1}, "tags": [1, 2], "z": 0},
         {"device": {"type": "tv", "os": "tvos"}, "tags": [1, 2]}),
        ("select e['m'], e['m']['x'] from a", {"m": {"x": 1, "y": None}, "n": 2}, {"m": {"x": 1, "y": None}}),
        ("select a from s where b == 1", {"a": None, "c": 1}, {"a": None}),
        ("select e[^'nf.'], e['m']['x'] from s", {"nf.a": 1, "m": {"x": 1, "y": 2}, "nf.b": None, "q": 0},
         {"nf.a": 1, "m": {"x": 1}, "nf.b": None}),
        ("select id from a sample {'strategy': 'STICKY', 'keys': ['sessionId']}", {"id": 1, "sessionId": "s", "x": 2},
         {"id": 1, "sessionId": "s"}),
    ],
)
def test_shipped_objects(text: str, event: dict[str, Any], shipped: dict[str, Any]) -> None:
    a = prepare(text, mode="replay").analysis
    assert project(event, a.field_paths, a.field_prefixes, a.star) == shipped


def test_select_star_ships_everything_and_union_merges_fields() -> None:
    a1 = prepare("select * from s where x == 1").analysis
    assert project({"a": None, "b": 1}, a1.field_paths, a1.field_prefixes, a1.star) == {"a": None, "b": 1}
    a2 = prepare("select e['m']['x'] from s").analysis
    a3 = prepare("select e['m'] from s where y == 1").analysis
    paths, prefixes, star = union_fields([a2, a3])
    assert paths == (("m",), ("y",))
    assert not star
    assert project({"m": {"x": 1, "z": 2}, "y": 3, "q": 4}, paths, prefixes) == {"m": {"x": 1, "z": 2}, "y": 3}
