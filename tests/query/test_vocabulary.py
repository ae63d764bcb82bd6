"""Every function and keyword table derives from ``mantis_py/query/syntax/vocabulary.py``.

Adding a percentile shorthand (say ``p999``) must mean one new entry in ``PERCENTILE_SHORTHANDS``:
these tests fail when another module keeps its own copy of a name list, or when a name the
vocabulary lists does not work from parse to result.
"""

from __future__ import annotations

import ast as pyast
import math
from fractions import Fraction
from pathlib import Path

import pytest

from mantis_py.query import prepare
from mantis_py.query.compile import compiler
from mantis_py.query.run.replay import replay_rows
from mantis_py.query.semantics import analyze
from mantis_py.query.state import aggregates
from mantis_py.query.syntax import diagnostics, format, parser, vocabulary
from mantis_py.query.syntax.format import format_property, is_bare_name
from mantis_py.query.syntax.parser import parse

PACKAGE = Path(__file__).resolve().parents[2] / "mantis_py"


def test_the_derived_tables_are_the_vocabulary() -> None:
    assert parser.FUNCTIONS == vocabulary.FUNCTIONS
    assert parser.KEYWORDS == vocabulary.KEYWORDS
    assert format.RESERVED_WORDS == vocabulary.RESERVED_WORDS
    assert analyze.AGGREGATES == vocabulary.AGGREGATES
    assert analyze.PERCENTILE_SHORTHANDS == vocabulary.PERCENTILE_SHORTHANDS
    assert aggregates.PERCENTILE_FUNCTIONS == vocabulary.PERCENTILE_SHORTHANDS
    assert set(aggregates.FUNCTIONS) == set(vocabulary.AGGREGATES)
    assert set(compiler.META_FIELDS) == set(analyze.META_FIELDS) == set(vocabulary.META_FIELDS)
    assert diagnostics.SYNONYMS == vocabulary.SYNONYMS


def test_the_tables_fit_together() -> None:
    assert vocabulary.FUNCTIONS[-1] == "tick"  # the unknown-function hint ends "... and tick"
    assert set(vocabulary.PERCENTILE_SHORTHANDS) < set(vocabulary.AGGREGATES)
    assert not set(vocabulary.KEYWORDS) & set(vocabulary.FUNCTIONS)
    assert not set(vocabulary.SYNONYMS) & set(vocabulary.FUNCTIONS)  # a synonym is not a function
    for name, q in vocabulary.PERCENTILE_SHORTHANDS.items():
        assert name == "p" + f"{float(q):g}".replace(".", "")  # p995 is the 99.5th percentile
        assert 0 < q < 100


@pytest.mark.parametrize("word", sorted(vocabulary.RESERVED_WORDS))
def test_a_reserved_word_is_never_written_bare(word: str) -> None:
    for spelling in (word, word.upper()):
        assert not is_bare_name(spelling)
        text = f"select {format_property((spelling,))} from x"
        assert parse(text).items[0].operand.segments == (spelling,)  # type: ignore[union-attr]


def _shorthand_literals(path: Path) -> set[str]:
    """Percentile shorthands written as items of a list, tuple, set or dict in ``path`` (a name
    table); a lone string such as an instance id ``"p1"`` is not a table."""
    tree = pyast.parse(path.read_text(encoding="utf-8"))
    names = set(vocabulary.PERCENTILE_SHORTHANDS)
    found: set[str] = set()
    for node in pyast.walk(tree):
        items: list[pyast.expr | None] = []
        if isinstance(node, pyast.List | pyast.Tuple | pyast.Set):
            items = list(node.elts)
        elif isinstance(node, pyast.Dict):
            items = list(node.keys)
        found |= {
            i.value for i in items
            if isinstance(i, pyast.Constant) and isinstance(i.value, str) and i.value in names
        }
    return found if len(found) >= 2 else set()


def test_no_module_keeps_its_own_list_of_percentile_shorthands() -> None:
    spelled = {
        str(p.relative_to(PACKAGE)): found
        for p in PACKAGE.rglob("*.py")
        if p.name != "vocabulary.py" and (found := _shorthand_literals(p))
    }
    assert not spelled, f"percentile shorthands spelled outside syntax/vocabulary.py: {spelled}"


def _nearest_rank(values: list[int], q: Fraction) -> int:
    return sorted(values)[max(1, math.ceil(q / 100 * len(values))) - 1]


@pytest.mark.parametrize("name", list(vocabulary.PERCENTILE_SHORTHANDS))
def test_every_percentile_shorthand_works_from_text_to_result(name: str) -> None:
    values = list(range(1000, 0, -1))
    p = prepare(f"select {name}(v) as q, percentile(v, {float(vocabulary.PERCENTILE_SHORTHANDS[name])}) as r from x")
    rows = [r for _, r in replay_rows(p, [({"v": v}, 0) for v in values])]
    want = _nearest_rank(values, vocabulary.PERCENTILE_SHORTHANDS[name])
    assert rows == [{"q": want, "r": want}]


@pytest.mark.parametrize("name", vocabulary.FUNCTIONS)
def test_every_function_name_is_known_to_the_parser(name: str) -> None:
    call = parse(f"select {name.upper()}(v) from x").items[0].operand
    assert call.name == name  # type: ignore[union-attr]
