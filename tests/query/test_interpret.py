"""The oracle itself, checked against the example tables of MQL.md §3.5 and §3.6."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mantis_py.query.compile.interpret import Context, eval_condition, project_plain
from mantis_py.query.run.engine import prepare

CASES = [json.loads(x) for x in (Path(__file__).parent / "fixtures" / "cases.jsonl").read_text().splitlines() if x.strip()]
CONDS = [c for c in CASES if c["name"].startswith(("cond ", "regex ", "resolve"))]
PROJ = [c for c in CASES if c["name"].startswith("project ")]


@pytest.mark.parametrize("case", CONDS, ids=[c["name"] for c in CONDS])
def test_interpreter_conditions(case: dict) -> None:
    q = prepare(case["query"]).analysis.query
    assert q.where is not None
    assert int(eval_condition(q.where, Context(case["events"][0]))) == case["rows"][0]["n"]


@pytest.mark.parametrize("case", PROJ, ids=[c["name"] for c in PROJ])
def test_interpreter_projection(case: dict) -> None:
    q = prepare(case["query"]).analysis.query
    assert project_plain(q, Context(case["events"][0])) == case["rows"][0]
