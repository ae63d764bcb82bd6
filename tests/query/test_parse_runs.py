"""The parser's fast paths for long lists build exactly what the generic LALR loop builds.

``parser._Parse`` takes runs of IN-list items, select items and comparisons joined by one
connective directly (``in_items``, ``select_items``, ``condition_items``) instead of feeding
their tokens one by one. These tests parse seeded random queries full of such runs, and of
everything that must make a run stop (aliases, keywords used as names, function names, calls
that are not aggregates, ``NOT``, ``true``, paths, stars, mixed AND/OR, errors in the middle,
over-long IN lists), once with the fast paths and once with them switched off, and compare the
whole result: every node with every span, ``clause_spans``, or the error with its code,
message, position, expected list, suggestion and hint.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from mantis_py.errors import QueryError
from mantis_py.query.semantics.analyze import analyze
from mantis_py.query.syntax import parser
from mantis_py.query.syntax.format import format_query
from tests.query.mql_gen import random_aggregate_query, random_plain_query


def _dump(x: Any) -> Any:
    """Everything in ``x``, spans and types included (``==`` on the AST ignores spans)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return (type(x).__name__,) + tuple(
            (f.name, _dump(getattr(x, f.name))) for f in dataclasses.fields(x)
            if f.name != "problem"
        ) + ((("problem", _dump_error(x.problem)),) if hasattr(x, "problem") else ())  # fmt: skip
    if isinstance(x, tuple | list):
        return (type(x).__name__, *(_dump(v) for v in x))
    if isinstance(x, dict):
        return ("dict", *sorted((k, _dump(v)) for k, v in x.items()))
    return (type(x).__name__, x if not isinstance(x, float) else repr(x))


def _dump_error(e: Any) -> Any:
    if e is None:
        return None
    return (type(e).__name__, e.to_dict())


def _outcome(text: str) -> Any:
    try:
        return ("ok", _dump(parser.parse(text)))
    except QueryError as e:
        return ("error", _dump_error(e))


def _generic(text: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as m:
        for name in ("in_items", "select_items", "condition_items"):
            m.setattr(parser._Parse, name, lambda self, i, *a: i)
        return _outcome(text)


_LITERALS = ["0", "1", "42", "-3", "2.5", "1e3", "007", "01", "'a'", "\"b\"", "''", "'it''s'",
             "true", "false", "null", "x", "e['k']", "e['l'][0]", "NOT 1", "!x", "(1)", "1%"]
_NAMES = ["a", "b1", "nf.app", "from", "select", "count", "window", "as", "and", "or", "in",
          "true", "e['from']", "e['l'][*]", "e[^'nf.']", "_app", "x-y", "sample", "by", "%", "|3|",
          "distinct", "not", "tick", "P99", "Sum", "9", "1.5"]
_FUNCS = ["sum", "count", "p99", "min", "percentile", "tick", "avg", "Max", "list"]
_OPS = ["==", "=", "!=", "<>", "<", "<=", ">", ">=", "==+", "==~", "!~", "is"]


def _in_query(rng: random.Random) -> str:
    n = rng.choice([1, 2, 3, 10, 200, 999, 1000, 1001])
    pick = rng.random()
    items = []
    for _ in range(n):
        if pick < 0.4:
            items.append(str(rng.randrange(-5, 10_000)))
        elif pick < 0.6:
            items.append(f"'v{rng.randrange(100)}'")
        else:
            items.append(rng.choice(_LITERALS) if rng.random() < 0.3 else str(rng.randrange(99)))
    sep = [","] * n
    if rng.random() < 0.2:
        sep[rng.randrange(n)] = rng.choice([" ", ",,", ", ,", "", ")"])
    body = "".join(item + s for item, s in zip(items, sep, strict=True))[:-1]
    neg = rng.choice(["", "not "])
    tail = rng.choice(["", " and b == 1", " or c in (1, 2)", " window 1", " limit 3", ""])
    return f"select * from x where a {neg}in ({body}){tail}"


def _operand(rng: random.Random) -> str:
    return rng.choice(_NAMES + _LITERALS) if rng.random() < 0.25 else rng.choice(
        ["a", "b", "nf.x", "e['o']['p']", "12", "'s'", "k9"])


def _condition_query(rng: random.Random) -> str:
    n = rng.choice([1, 2, 3, 8, 50, 300])
    joiners = [rng.choice([" or ", " OR ", " || "])] if rng.random() < 0.5 else [" and ", " && "]
    if rng.random() < 0.2:
        joiners = [" and ", " or "]
    parts = []
    for _ in range(n):
        op = rng.choice(_OPS) if rng.random() < 0.2 else rng.choice(["==", "!=", "<", ">="])
        right = _operand(rng)
        if op in ("==~", "!~"):
            right = "/a.*/"
        elif op == "is":
            right = rng.choice(["null", "not null", "1"])
        parts.append(f"{_operand(rng)} {op} {right}")
    body = "".join(p + rng.choice(joiners) for p in parts)[: -len(joiners[0])]
    if rng.random() < 0.3:
        body = f"({body})" + rng.choice(["", " and z == 1", " or (y == 2 or y == 3)"])
    clause = rng.choice(["where", "where", "having"]) if rng.random() < 0.9 else "window"
    head = "select count(*) as n from x window 1 group by k " if clause == "having" else \
        "select * from x "
    return f"{head}{clause} {body}" + rng.choice(["", " limit 5", " window 10", " order by a"])


def _select_query(rng: random.Random) -> str:
    n = rng.choice([1, 2, 3, 20, 249, 250, 251])
    items = []
    for _ in range(n):
        r = rng.random()
        if r < 0.35:
            items.append(rng.choice(["a", "b", f"k{rng.randrange(999)}", "e['x'][0]", "7", "'s'"]))
        elif r < 0.7:
            f = rng.choice(["sum", "count", "p99", "min", "average", "SUM", "Count"])
            arg = rng.choice(["a", "e['p']", "*", f"v{rng.randrange(50)}"])
            items.append(f"{f}({arg})")
        elif r < 0.8:
            items.append(f"percentile({rng.choice(['a', 'b', 'e[0]'])}, {rng.choice(['50', '99.5', 'x', '101'])})")
        else:
            items.append(rng.choice([
                f"{rng.choice(_NAMES)}", f"{rng.choice(_FUNCS)}({rng.choice(_NAMES)})",
                "count(distinct a)", "a as b", "sum(a) as 's'", "tick()", "count()", "*",
                "sum(a, b)", "x(", "NOT a", "sum(sum(a))", "f(a)",
            ]))
    sep = rng.choice([",", ", ", " ,"])
    tail = rng.choice([" from x window 1", " from x", " from x window 1 group by a", "",
                       " from x where a == 1", " , from x"])
    return "select " + sep.join(items) + tail


@pytest.mark.parametrize("kind", ["in", "condition", "select", "generated"])
def test_fast_paths_build_what_the_generic_loop_builds(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(f"parse-runs-{kind}")
    make = {"in": _in_query, "condition": _condition_query, "select": _select_query}.get(kind)
    for k in range(150):
        if make is not None:
            text = make(rng)
        else:
            text = random_plain_query(rng) if k % 2 else random_aggregate_query(rng, "window 1")
        if len(text.encode()) > 16_384:
            continue
        fast, generic = _outcome(text), _generic(text, monkeypatch)
        assert fast == generic, text[:300]


def test_the_fast_paths_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shapes the fast paths exist for do go through them (a grammar change that makes the
    table check fail would silently fall back to the slow loop)."""
    taken: dict[str, int] = {}
    for name in ("in_items", "select_items", "condition_items"):
        original = getattr(parser._Parse, name)

        def spy(self: Any, i: int, *a: Any, _o: Any = original, _n: str = name) -> int:
            j = _o(self, i, *a)
            taken[_n] = taken.get(_n, 0) + (j > i)
            return int(j)

        monkeypatch.setattr(parser._Parse, name, spy)
    parser.parse("select * from x where a in (" + ",".join(map(str, range(50))) + ")")
    parser.parse("select * from x where a in (" + ",".join(f"'{i}'" for i in range(50)) + ")")
    parser.parse("select * from x where " + " or ".join(f"a == {i}" for i in range(50)))
    parser.parse("select * from x where " + " and ".join(f"e['a'][{i}] != 'x'" for i in range(50)))
    parser.parse("select " + ",".join(f"sum(a{i})" for i in range(50)) + " from x window 1")
    parser.parse("select " + ",".join(f"percentile(a{i}, 99)" for i in range(50)) + " from x")
    parser.parse("select " + ",".join(f"a{i}" for i in range(50)) + " from x")
    assert taken.get("in_items", 0) >= 2
    assert taken.get("condition_items", 0) >= 2
    assert taken.get("select_items", 0) >= 3


def test_a_1000_item_in_list_and_one_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """E303 at the 1,001st item, the same with and without the fast path."""
    for n in (999, 1000, 1001, 1200):
        text = "select * from x where a in (" + ",".join(str(i) for i in range(n)) + ")"
        fast, generic = _outcome(text), _generic(text, monkeypatch)
        assert fast == generic
        assert (fast[0] == "ok") == (n <= 1000)
        if n > 1000:
            assert fast[1][1]["code"] == "E303"


def test_runs_round_trip_through_canonical_text() -> None:
    """The fast-path trees format and analyse like any other (the canonical text reads back
    as the same tree)."""
    rng = random.Random(7)
    for _ in range(40):
        text = rng.choice([_in_query, _condition_query, _select_query])(rng)
        try:
            q = parser.parse(text)
            analyze(q, mode="replay")
        except QueryError:
            continue
        assert parser.parse(format_query(q)) == q


# --------------------------------------------------------------------------- the lexer's shortcuts

_PIECES = ["a", "b1", "e", "E", "e['k']", "e[\"k\"]", "e[0]", "e[-1]", "e[*]", "e['a'][0][*]",
           "e[01]", "e[1.5]", "e[]", "e[ 'a']", "e['a'] [0]", "e['a']x", "e['a\nb']", "e[^'p']",
           "e['a'][^'p']", "e['" + "k" * 1100 + "']", "e" + "[0]" * 65, "x[0]", "sample", "sample{",
           "samplex", "Sample {'strategy': 'RANDOM'}", "-", "--", "//", "/*", "/", "1", "01", "1.5",
           "-2", "+3", "1e5", "9" * 50, "1%", "|3|", "%", "'s'", "\"t\"", "(", ")", ",", "*", "==",
           "=", "!=", "~", "&&", "||", "&", "|", "[", "]", ";", "\u00a0", "\u2019", "é", "_a",
           "nf.app", "x-y", "e[", "e['", "e[0", "e[*", "'a\nb'", "'a\rb'", "''", "\"\"",
           "'" + "x" * 1100 + "'", "'" + "é" * 1500 + "'", "'" + "€" * 1400 + "'", "'open", "\"open", "'it''s'", "E['k']",
           "sum", "s", "error", "e ['k']", "E  [0]", "SAMPLE{'strategy': 'RANDOM'}", "sAmple"]


def _tokens(text: str) -> Any:
    from mantis_py.query.syntax.lexer import tokenize

    return [(t.kind, t.text, t.start, t.end, _dump(t.value), _dump(t.number),
             _dump_error(t.number_error), t.hint, _dump_error(t.error)) for t in tokenize(text)]


def test_the_lexer_shortcuts_read_what_the_general_code_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Plain words, whole numbers and short strings read inline by the main loop, and paths
    read by ``read_plain_path``, give the tokens (and errors) that ``read_word``,
    ``read_string`` and ``read_path`` give."""
    from mantis_py.query.syntax import lexer

    rng = random.Random("lexer-shortcuts")
    for _ in range(3000):
        text = "".join(rng.choice(_PIECES) + rng.choice(["", " ", "  ", "\n", ""])
                       for _ in range(rng.randrange(1, 8)))
        fast = _tokens(text)
        with monkeypatch.context() as m:
            m.setattr(lexer, "_SHORTCUTS", False)
            slow = _tokens(text)
        assert fast == slow, repr(text[:200])


def test_the_parsers_node_makers_make_the_same_nodes() -> None:
    """``parser._maker`` skips the dataclass ``__init__``; the node is the same in every way."""
    import pickle

    from mantis_py.query.syntax import ast

    span, other = ast.Span(3, 9), ast.Span(1, 2)
    prop = ast.Property(("a", 0, ast.STAR), span)
    cases = [
        (parser._span, ast.Span, (3, 9)),
        (parser._property, ast.Property, (("a", 0, ast.STAR), span)),
        (parser._literal, ast.Literal, (1.5, span)),
        (parser._literal, ast.Literal, (True, span)),
        (parser._comparison, ast.Comparison, (prop, "==+", ast.Literal("x", other), span, other)),
        (parser._call, ast.Call, ("count", (ast.STAR,), True, span, other)),
        (parser._select_item, ast.SelectItem, (prop, None, span, ast.NO_SPAN)),
        (parser._select_item, ast.SelectItem, (prop, "b", span, other)),
    ]
    for make, cls, values in cases:
        fast, slow = make(*values), cls(*values)
        assert type(fast) is cls
        assert _dump(fast) == _dump(slow)
        assert fast == slow
        assert hash(fast) == hash(slow)
        assert repr(fast) == repr(slow)
        assert _dump(pickle.loads(pickle.dumps(fast))) == _dump(slow)
        assert _dump(dataclasses.replace(fast)) == _dump(slow)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(fast, dataclasses.fields(cls)[0].name, None)
