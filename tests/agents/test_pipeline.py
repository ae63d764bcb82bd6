"""mantis_py/agents/pipeline.py: one recipe for every plan.

A stream running one events-mode query takes the recipe's short branch (no tag list, no loops);
any other plan the general one. Adding a query that never matches moves a stream from the first
branch to the second: what the first query ships and every stream counter must not change.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from mantis_py.agents.core import AgentCore
from mantis_py.testing import LinkPair, records_of

from .helpers import check_accounting, make_core

T = 1000.0


def _events(seed: int, n: int) -> list[Any]:
    rng = random.Random(seed)
    cyc: dict[str, Any] = {"country": "BR"}
    cyc["self"] = cyc
    odd = [
        {"country": "BR", "raw": b"\xff", "set": {2, 1}},  # converted to JSON types
        {"country": "BR", "o": object()},  # unserializable
        {"country": "BR", "pad": "x" * 5000},  # too large
        {(1, 2): "tuple key", "country": "BR"},  # bad key
        cyc,  # cycle
    ]
    out: list[Any] = []
    for i in range(n):
        if rng.random() < 0.15:
            out.append(rng.choice(odd))
            continue
        ev: dict[str, Any] = {"country": rng.choice(["BR", "US", "FR"]), "i": i}
        if rng.random() < 0.3:
            ev["user"] = {"card": f"4111-{i}", "id": i}  # masked key
        if rng.random() < 0.2:
            ev["password"] = "hunter2"  # masked key
        out.append(ev)
    return out


def _run(queries: list[str], events: list[Any]) -> tuple[AgentCore, list[dict[str, Any]]]:
    core = make_core(mask=("password", "user.card"), max_event_bytes=4096)
    pair = LinkPair(core, now=T)
    for i, q in enumerate(queries):
        pair.subscribe(f"s{i + 1}", q)
    for k, ev in enumerate(events):
        core.offer(ev, "default", T + k * 0.001)
    recs = records_of(pair.pump(T + 5, force=True))
    check_accounting(core)
    return core, recs


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(
    "query",
    [
        "fake select=country,user where=country:BR",
        "fake select=*",
        "fake select=user.card,i where=country:US",
    ],
)
def test_the_one_query_branch_and_the_general_branch_agree(seed: int, query: str) -> None:
    events = _events(seed, 400)
    one, one_recs = _run([query], events)
    assert len(one.streams["default"].plan.event_subs) == 1  # the short branch ran
    never = "fake select=country where=country:NOWHERE"  # adds no field to the projection
    two, two_recs = _run([query, never], events)
    assert one_recs, "the query kept nothing: the comparison would be vacuous"
    assert one_recs == two_recs  # same tags (["s1"]), payloads, times and sequence numbers
    assert all(r["subs"] == ["s1"] for r in two_recs)
    assert one.statistics().streams == two.statistics().streams
    assert one.subs["s1"].matched == two.subs["s1"].matched == len(one_recs)
    assert two.subs["s2"].matched == 0
    lost = one.statistics().streams["default"].lost
    assert {"too_large", "unserializable", "bad_key", "cycle"} <= set(lost)


def test_an_engine_error_counts_the_same_on_both_branches() -> None:
    events = [{"country": "BR", "i": i} for i in range(20)]
    one, _ = _run(["fake select=i raise=1"], events)
    two, _ = _run(["fake select=i raise=1", "fake select=i where=country:NOWHERE"], events)
    for core in (one, two):
        assert core.statistics().streams["default"].unmatched == 20
        assert core.statistics().subs["s1"].errors == 20
        assert "ZeroDivisionError" in core.subs["s1"].last_message
