"""The words of MQL, in one place: keywords, function names, literal words and meta fields.

Every other table derives from these: the parser's ``FUNCTIONS`` and ``KEYWORDS``, the words a
bare property name may not be spelled as (``format.RESERVED_WORDS``), the analyzer's
``AGGREGATES`` and ``PERCENTILE_SHORTHANDS``, the aggregate registry's ``PERCENTILE_FUNCTIONS``
and the compiler's ``META_FIELDS``. Adding a percentile shorthand such as ``p999`` means adding
one entry to :data:`PERCENTILE_SHORTHANDS` here; ``tests/query/test_vocabulary.py`` checks that
the derived tables agree.

This module imports nothing from the package, so every phase may use it.
"""

from __future__ import annotations

from fractions import Fraction

__all__ = [
    "AGGREGATES",
    "FUNCTIONS",
    "KEYWORDS",
    "LITERAL_WORDS",
    "META_FIELDS",
    "PERCENTILE_SHORTHANDS",
    "RESERVED_WORDS",
    "SCALAR_FUNCTIONS",
    "SYNONYMS",
]

KEYWORDS: dict[str, str] = {
    "select": "SELECT", "from": "FROM", "where": "WHERE", "window": "WINDOW",
    "group": "GROUP_BY", "order": "ORDER_BY", "having": "HAVING", "limit": "LIMIT",
    "sample": "SAMPLE", "as": "AS", "and": "AND", "or": "OR", "not": "NOT", "in": "IN",
    "is": "IS", "distinct": "DISTINCT", "asc": "ASC", "desc": "DESC", "join": "JOIN",
    "seconds": "SECONDS", "on": "ON", "anomaly": "ANOMALY", "mad": "MAD",
}  # fmt: skip
"""Keyword spellings (lower case) -> grammar terminal. ``group`` and ``order`` stand for ``GROUP
BY`` and ``ORDER BY``; ``by`` is read with them (see :data:`RESERVED_WORDS`)."""

LITERAL_WORDS: dict[str, str] = {"true": "TRUE", "false": "FALSE", "null": "NULL"}
"""The literal words (any case) -> grammar terminal."""

PERCENTILE_SHORTHANDS: dict[str, Fraction] = {
    "p1": Fraction(1),
    "p5": Fraction(5),
    "p10": Fraction(10),
    "p25": Fraction(25),
    "p50": Fraction(50),
    "p75": Fraction(75),
    "p90": Fraction(90),
    "p95": Fraction(95),
    "p99": Fraction(99),
    "p995": Fraction("99.5"),
}
"""The one-argument percentile functions and the percentile (exact) each one computes."""

AGGREGATES: tuple[str, ...] = (
    "count", "sum", "min", "max", "average", "list", *PERCENTILE_SHORTHANDS, "percentile",
)  # fmt: skip
"""Aggregate function names (lower case), in the order of the function table."""

SCALAR_FUNCTIONS: tuple[str, ...] = ("tick",)
"""Functions that are not aggregates: ``tick()`` is the batch's window start (or event time)."""

FUNCTIONS: tuple[str, ...] = (*AGGREGATES, *SCALAR_FUNCTIONS)
"""Every function name, in table order (ties in "did you mean" suggestions go to the first)."""

RESERVED_WORDS: frozenset[str] = frozenset(
    [*KEYWORDS, "by", *FUNCTIONS, *LITERAL_WORDS]
)
"""Words a bare property name may not be spelled as, in any case: ``e['count']`` is a property,
``count`` a function name."""

SYNONYMS: dict[str, str] = {
    "avg": "average",
    "mean": "average",
    "median": "p50",
    "p999": "percentile(x, 99.9)",
    "count_distinct": "count(DISTINCT x)",
}
"""Common function names MQL does not have -> the fixed suggestion for each (an unknown function
otherwise gets the nearest name of :data:`FUNCTIONS`)."""

META_FIELDS: tuple[str, ...] = ("_app", "_instance", "_zone", "_stream")
"""Live-mode meta fields: the app, instance, zone and stream of the agent an event came from."""
