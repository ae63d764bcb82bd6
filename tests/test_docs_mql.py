"""docs/mql.md is checked against the real parser and engine.

- every ```mql block is a query the parser and analyzer accept (replay mode);
- a ```mql block followed by a ```jsonl block and a ```json-rows block gives exactly those rows in
  replay (an event's ``ts`` member is its time, else 0);
- each line of a ```mql-errors block, ``CODE [live] QUERY``, is rejected with that code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from mantis_py.errors import QueryError
from mantis_py.query import analyze, format_query, parse, prepare
from mantis_py.query.run.replay import replay_rows

DOC = Path(__file__).resolve().parent.parent / "docs" / "mql.md"
_FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```$", re.M | re.S)


def _blocks() -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in _FENCE.finditer(DOC.read_text(encoding="utf-8"))]


BLOCKS = _blocks()
QUERIES = [text.strip() for kind, text in BLOCKS if kind == "mql"]
EXAMPLES = [
    (BLOCKS[i][1].strip(), BLOCKS[i + 1][1], BLOCKS[i + 2][1])
    for i in range(len(BLOCKS) - 2)
    if [k for k, _ in BLOCKS[i : i + 3]] == ["mql", "jsonl", "json-rows"]
]
ERRORS = [line.strip() for kind, text in BLOCKS if kind == "mql-errors"
          for line in text.splitlines() if line.strip()]


def test_the_document_has_examples_of_every_kind() -> None:
    assert len(QUERIES) >= 15
    assert len(EXAMPLES) >= 8
    assert len(ERRORS) >= 50


@pytest.mark.parametrize("text", QUERIES)
def test_every_query_is_accepted(text: str) -> None:
    q = parse(text)
    analyze(q, mode="replay")
    assert format_query(parse(format_query(q))) == format_query(q)


@pytest.mark.parametrize(("text", "events", "rows"), EXAMPLES, ids=[e[0][:40] for e in EXAMPLES])
def test_every_example_gives_its_rows(text: str, events: str, rows: str) -> None:
    parsed: list[dict[str, Any]] = [json.loads(line) for line in events.splitlines() if line.strip()]
    got = [r for _, r in replay_rows(prepare(text), [(e, e.get("ts", 0)) for e in parsed])]
    assert got == [json.loads(line) for line in rows.splitlines() if line.strip()]
    # the text is what `mantis-py replay` prints
    assert [json.dumps(r, separators=(",", ":"), ensure_ascii=False) for r in got] == [
        line for line in rows.splitlines() if line.strip()]


@pytest.mark.parametrize("line", ERRORS)
def test_every_error_example_gives_its_code(line: str) -> None:
    code, _, rest = line.partition(" ")
    mode = "replay"
    if rest.startswith("live "):
        mode, rest = "live", rest[len("live "):]
    with pytest.raises(QueryError) as info:
        analyze(parse(rest), mode=mode)  # type: ignore[arg-type]
    assert info.value.code == code, info.value.to_dict()
