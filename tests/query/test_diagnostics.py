"""Tests for mantis_py.query.syntax.diagnostics: positions, snippets, suggestions (MQL.md §5.2, §5.3)."""

from __future__ import annotations

import pytest

from mantis_py.errors import QueryCompileError, QueryLimitError, QuerySyntaxError
from mantis_py.query.syntax.diagnostics import (
    describe_char,
    describe_token,
    line_column,
    osa_distance,
    query_error,
    snippet,
    suggest,
)

KEYWORDS = [
    "SELECT",
    "FROM",
    "WHERE",
    "WINDOW",
    "GROUP BY",
    "HAVING",
    "ORDER BY",
    "LIMIT",
    "SAMPLE",
]
FUNCTIONS = ["count", "sum", "min", "max", "average", "list", "p1", "p5", "p10", "p25", "p50",
             "p75", "p90", "p95", "p99", "p995", "percentile", "tick"]  # fmt: skip


def test_error_classes() -> None:
    assert isinstance(query_error("E102", "m", "x", 0, 1), QuerySyntaxError)
    assert isinstance(query_error("E212", "m", "x", 0, 1), QueryCompileError)
    assert isinstance(query_error("E302", "m", "x", 0, 1), QueryLimitError)


def test_spec_example_position_and_snippet() -> None:
    e = query_error("E102", "m", "select a form playback", 9, 4, expected=[",", "AS"],
                    suggestion="FROM")  # fmt: skip
    d = e.to_dict()
    assert (d["line"], d["column"], d["length"]) == (1, 10, 4)
    assert d["snippet"] == "select a form playback\n         ^^^^"
    assert d["expected"] == [",", "AS"]
    assert d["suggestion"] == "FROM"


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [
        ("abc", 0, (1, 1)),
        ("abc", 3, (1, 4)),
        ("a\nb", 2, (2, 1)),
        ("a\r\nb", 3, (2, 1)),
        ("a\rb", 2, (2, 1)),
        ("a\r\rb", 3, (3, 1)),
        ("\tx", 1, (1, 2)),
        ("é\nab", 3, (2, 2)),
        ("ab\r\ncd", 2, (1, 3)),
    ],
)
def test_line_column(text: str, offset: int, expected: tuple[int, int]) -> None:
    assert line_column(text, offset) == expected


def test_snippet_tabs_and_end_of_query() -> None:
    assert snippet("select\ta", 7, 1) == "select a\n       ^"
    assert (
        snippet("select a from x where", 21, 0) == "select a from x where\n                     ^"
    )
    assert snippet("select *\nfrom x where", 21, 0) == "from x where\n            ^"
    # length is clipped to the rest of the line, and at least one caret is drawn
    assert snippet("ab\ncd", 1, 10) == "ab\n ^"
    assert snippet("ab", 0, 0) == "ab\n^"


def test_snippet_long_lines() -> None:
    line = "x" * 300
    s = snippet(line, 5, 2)
    first, carets = s.split("\n")
    assert first == "x" * 100 + "…"
    assert carets == "     ^^"
    s = snippet(line, 200, 3)
    first, carets = s.split("\n")
    assert first.startswith("…")
    assert first.endswith("…")
    assert len(first) == 102
    assert carets.index("^") == 200 - 175 + 1
    assert carets.count("^") == 3
    # end of a long last line: one caret just after the last character
    s = snippet(line, 300, 0)
    first, carets = s.split("\n")
    assert first == "…" + "x" * 100
    assert carets == " " * 101 + "^"


@pytest.mark.parametrize(
    ("word", "candidates", "expected"),
    [
        ("form", KEYWORDS, "FROM"),
        ("slect", KEYWORDS, "SELECT"),
        ("wher", KEYWORDS, "WHERE"),
        ("limt", KEYWORDS, "LIMIT"),
        ("groupby", KEYWORDS, "GROUP BY"),
        ("ORDERBY", KEYWORDS, "ORDER BY"),
        ("xyz", KEYWORDS, None),
        ("cout", FUNCTIONS, "count"),
        ("avg", FUNCTIONS, "average"),
        ("mean", FUNCTIONS, "average"),
        ("median", FUNCTIONS, "p50"),
        ("p999", FUNCTIONS, "percentile(x, 99.9)"),
        ("count_distinct", FUNCTIONS, "count(DISTINCT x)"),
        ("upper", FUNCTIONS, None),
        ("stratgy", ["strategy", "keys", "salt", "factor", "threshold"], "strategy"),
        ("STIKY", ["RANDOM", "STICKY"], "STICKY"),
        ("avg", KEYWORDS, None),  # synonyms only where the function is a candidate
        ("ab", ["ax", "ay"], "ax"),  # ties go to the first
        ("abcd", ["abxy"], None),  # distance 2 is too far for a 4-letter word
        ("abcde", ["abxye"], "abxye"),
    ],
)
def test_suggest(word: str, candidates: list[str], expected: str | None) -> None:
    assert suggest(word, candidates) == expected


def test_osa_distance() -> None:
    assert osa_distance("ab", "ba") == 1
    assert osa_distance("ca", "abc") == 3  # OSA, not full Damerau
    assert osa_distance("kitten", "sitting") == 3
    assert osa_distance("", "abc") == 3
    assert osa_distance("abcdef", "a", limit=2) == 3


def test_describe() -> None:
    assert describe_token("form") == "form"
    assert describe_token("a" * 20) == "a" * 20
    assert describe_token("a" * 21) == "a" * 19 + "…"
    assert describe_char("\u00a0") == "U+00A0 (NO-BREAK SPACE)"
    assert describe_char("\u2018") == "U+2018 (LEFT SINGLE QUOTATION MARK)"
    assert describe_char("\x00") == "U+0000 (NULL)"
