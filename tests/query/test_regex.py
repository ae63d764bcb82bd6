"""Regex semantics (MQL.md §3.5.4) and E216 rejections."""

from __future__ import annotations

from typing import Any

import pytest

from mantis_py.query.semantics.regex import compile_regex, regex_matches


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("200", 200, True),
        ("2", 200, False),
        ("2.*", 200, True),
        (r"1\.5", 1.5, True),
        ("(?i)ERROR.*", "error: disk", True),
        ("a.b", "a\nb", True),
        ("true", True, True),
        (".*", None, False),
        # more: full match, UTF-8, string forms
        ("200", 200.0, True),
        ("abc", "xabcx", False),
        (".*abc.*", "xabcx", True),
        ("é.", "éx", True),
        ("...", "日本語", True),
        (r'\{"a":1\}', {"a": 1}, True),
        (r"\[1,2\]", [1, 2], True),
        ("", "", True),
        (".*", "", True),
        ("1e\\+20", 1e20, True),
        (r"a\/b", "a/b", True),
        ("x", float("nan"), False),
    ],
)
def test_match_table(pattern: str, value: Any, expected: bool) -> None:
    assert regex_matches(compile_regex(pattern), value) is expected


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        (r"(a)\1", "escape"),
        ("(?=x)y", "(?="),
        ("(?<=x)y", "(?<="),
        ("(?!x)y", ""),
        ("[", "missing ]"),
        ("a++", "repetition"),
        ("a{1001}", "repetition"),
        (r"\pL{1000}", "too large"),
        ("(", "missing )"),
    ],
)
def test_rejected_patterns(pattern: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=r".") as info:
        compile_regex(pattern)
    assert fragment in str(info.value)


def test_repeat_1000_is_fine() -> None:
    assert regex_matches(compile_regex("a{1000}"), "a" * 1000)
    assert not regex_matches(compile_regex("a{1000}"), "a" * 999)


def test_cache_and_linear_time() -> None:
    assert compile_regex("(a|aa)*b") is compile_regex("(a|aa)*b")
    # catastrophic for backtracking engines, linear in RE2
    assert not regex_matches(compile_regex("(a|aa)*b"), "a" * 100_000)


@pytest.mark.parametrize("value", [None, True, 0, -0.0, 10**5000, "\ud800", [], {}, [float("inf")]],
                         ids=range(9))
def test_never_raises(value: Any) -> None:
    # a full match on the value's string form; null has none, so it never matches
    assert regex_matches(compile_regex(".*"), value) is (value is not None)
    assert regex_matches(compile_regex("x"), value) is False
