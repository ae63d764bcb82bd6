"""The MQL abstract syntax tree: one frozen dataclass per construct (docs/mql.md#text-and-tokens).

Theory of operation:
- ``parser.py`` builds these nodes from the text; nothing outside ``parser.py`` knows lark.
- Every node carries a ``span`` (offsets into the query text, in code points) that is ignored by
  ``==`` and ``hash``: two queries are equal when they mean the same text after the parser's
  normalisations (docs/mql.md#canonical-text), wherever their tokens stood.
- The parser already normalises what §8.2 lists: keyword case, operator spellings (``=`` is
  ``==``, ``<>`` is ``!=``, ``&&`` is AND ...), ``e['x']`` versus the bare name ``x`` (both are
  ``Property(("x",))``), number spellings, redundant parentheses and nested AND/OR (flattened),
  explicit ASC, clause order, ``WINDOW N N``, and the sample object.
- Literals compare by type *and* value (``1`` is not ``1.0`` is not ``true``), so the round trip
  ``parse(format(q)) == parse(q)`` is a real check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union
from typing import Literal as TLiteral

__all__ = [
    "NO_SPAN",
    "STAR",
    "And",
    "Anomaly",
    "BoolCondition",
    "Call",
    "CallArg",
    "Comparison",
    "Condition",
    "CountWindow",
    "In",
    "IsNull",
    "Join",
    "Literal",
    "LiteralValue",
    "Match",
    "Negation",
    "Node",
    "Not",
    "Operand",
    "Or",
    "OrderKey",
    "PrefixSelector",
    "Property",
    "Query",
    "Sample",
    "Segment",
    "SelectItem",
    "Source",
    "Span",
    "Star",
    "TimeWindow",
    "Window",
]


@dataclass(frozen=True, slots=True)
class Span:
    """Where a construct stands in the query text: ``text[start:end]`` (code-point offsets)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


NO_SPAN = Span(0, 0)


def _span() -> Any:
    return field(default=NO_SPAN, compare=False, repr=False)


class Star:
    """The ``*`` of ``count(*)`` and the ``[*]`` segment of a star path. Use the singleton STAR."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "STAR"

    def __reduce__(self) -> str:
        return "STAR"


STAR = Star()

Segment = Union[str, int, Star]
"""A path segment: a member name, a list index (negative counts from the end), or ``[*]``."""

LiteralValue = Union[str, int, float, bool, None]


# --------------------------------------------------------------------------- operands


@dataclass(frozen=True, slots=True)
class Property:
    """A bare name (``country``, ``nf.app``) or a path ``e['a'][0][*]``.

    A bare name and a one-string-segment path are the same property: ``Property(("nf.app",))``.
    """

    segments: tuple[Segment, ...]
    span: Span = _span()

    @property
    def has_star(self) -> bool:
        for s in self.segments:  # noqa: SIM110 (a loop, not any(): called for every operand)
            if isinstance(s, Star):
                return True
        return False

    @property
    def is_bare(self) -> bool:
        """True for a single string segment (a top-level key, possibly a meta field)."""
        return len(self.segments) == 1 and isinstance(self.segments[0], str)


@dataclass(frozen=True, slots=True)
class PrefixSelector:
    """``e[^'nf.']``: every top-level member whose key starts with ``prefix`` (docs/mql.md#properties)."""

    prefix: str
    span: Span = _span()


@dataclass(frozen=True, slots=True, eq=False)
class Literal:
    """A string, number, ``true``/``false`` or ``null`` literal.

    Equality and hash include the Python type, so ``Literal(1) != Literal(1.0) != Literal(True)``.
    ``text`` is the canonical text of a number literal (docs/mql.md#canonical-text), used for output names.
    """

    value: LiteralValue
    span: Span = _span()

    def _key(self) -> tuple[type, LiteralValue]:
        return (type(self.value), self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Literal) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True, slots=True)
class Negation:
    """Operand negation ``NOT x`` / ``!x`` (docs/mql.md#conditions): true when x is null or false."""

    operand: Operand
    span: Span = _span()


CallArg = Union["Operand", Star]


@dataclass(frozen=True, slots=True)
class Call:
    """A function call: an aggregate (``count(*)``, ``p99(x)``, ``percentile(x, 99.9)``,
    ``count(DISTINCT x)``) or ``tick()``.

    ``name`` is lower case. ``distinct`` is set when the first argument was written with
    DISTINCT. ``name_span`` covers the function name, ``span`` the whole call.
    """

    name: str
    args: tuple[CallArg, ...]
    distinct: bool = False
    span: Span = _span()
    name_span: Span = _span()


Operand = Union[Property, PrefixSelector, Literal, Negation, Call]


# --------------------------------------------------------------------------- conditions


@dataclass(frozen=True, slots=True)
class Comparison:
    """``left op right`` with op one of ``== != < <= > >= ==+`` (canonical spellings)."""

    left: Operand
    op: TLiteral["==", "!=", "<", "<=", ">", ">=", "==+"]
    right: Operand
    span: Span = _span()
    op_span: Span = _span()


@dataclass(frozen=True, slots=True)
class Match:
    """``left ==~ /pattern/`` or, with ``negated``, ``left !~ /pattern/``. ``pattern`` is the
    regex body exactly as written."""

    left: Operand
    pattern: str
    negated: bool = False
    span: Span = _span()
    pattern_span: Span = _span()


@dataclass(frozen=True, slots=True)
class IsNull:
    """``operand IS NULL`` or, with ``negated``, ``operand IS NOT NULL``."""

    operand: Operand
    negated: bool = False
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class In:
    """``operand IN (items)`` or, with ``negated``, ``operand NOT IN (items)``.

    The grammar lets any operand stand in the list; E229 rejects non-literals later."""

    operand: Operand
    items: tuple[Operand, ...]
    negated: bool = False
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class And:
    """A conjunction of two or more conditions; never directly holds another ``And``."""

    items: tuple[Condition, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Or:
    """A disjunction of two or more conditions; never directly holds another ``Or``."""

    items: tuple[Condition, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Not:
    """Condition-level ``NOT (c)``. A double NOT is kept (docs/mql.md#canonical-text)."""

    condition: Condition
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class BoolCondition:
    """``true`` or ``false`` used as a condition."""

    value: bool
    span: Span = _span()


Condition = Union[Comparison, Match, IsNull, In, And, Or, Not, BoolCondition]


# --------------------------------------------------------------------------- clauses


@dataclass(frozen=True, slots=True)
class SelectItem:
    """One item of the select list with its optional alias (already unquoted)."""

    operand: Operand
    alias: str | None = None
    span: Span = _span()
    alias_span: Span = _span()


@dataclass(frozen=True, slots=True)
class Source:
    """A FROM source ``app`` or ``app/stream``; ``stream`` is None when not written."""

    app: str
    stream: str | None = None
    span: Span = _span()

    @property
    def text(self) -> str:
        return self.app if self.stream is None else f"{self.app}/{self.stream}"


@dataclass(frozen=True, slots=True)
class Join:
    """``JOIN sources N SECONDS ON operand`` (docs/mql.md#join-and-anomaly)."""

    sources: tuple[Source, ...]
    seconds: int | float
    on: Operand
    span: Span = _span()
    seconds_span: Span = _span()


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """``WINDOW N`` (tumbling, ``every == length``) or ``WINDOW N M`` (sliding).

    Values are kept as written (int or float, any sign) so that the analyzer can report E214 and
    E306 at the right number; ``length_span``/``every_span`` locate them.
    """

    length: int | float
    every: int | float
    span: Span = _span()
    length_span: Span = _span()
    every_span: Span = _span()

    @property
    def is_tumbling(self) -> bool:
        return self.length == self.every


@dataclass(frozen=True, slots=True)
class CountWindow:
    """``WINDOW |N|``: a window every N events that passed SAMPLE and WHERE."""

    size: int
    span: Span = _span()
    size_span: Span = _span()


Window = Union[TimeWindow, CountWindow]


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One ORDER BY key; ``desc`` False means ASC (never printed)."""

    operand: Operand
    desc: bool = False
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Anomaly:
    """``ANOMALY MAD operand alpha beta`` (docs/mql.md#join-and-anomaly)."""

    operand: Operand
    alpha: int | float
    beta: int | float
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Sample:
    """A SAMPLE clause, normalised (docs/mql.md#sample).

    ``percent`` is the canonical number text when the clause was written ``SAMPLE n%`` (then
    strategy is RANDOM, factor 10000, threshold n×100). For the object form, defaults are filled
    in, names are lower case, the strategy upper case, the salt is its string form, and members
    RANDOM ignores are dropped (``keys == ()``, ``salt == "0"``).

    The parser cannot reject a bad sample object (E212/E213 are static rules, reported in
    position order with the others), so it stores the error it found in ``problem`` and the
    analyzer raises it. ``problem`` does not take part in equality.
    """

    strategy: TLiteral["RANDOM", "STICKY"]
    keys: tuple[str, ...] = ()
    salt: str = "0"
    factor: int = 10000
    threshold: int = 10000
    percent: str | None = None
    span: Span = _span()
    problem: Exception | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Query:
    """A whole query. ``items`` is empty exactly when ``select_star`` is set.

    ``where`` is None without a WHERE clause, and so on. ``clause_spans`` maps a clause keyword
    (``"SELECT"``, ``"FROM"``, ``"WHERE"``, ``"WINDOW"``, ``"GROUP BY"``, ``"HAVING"``,
    ``"ORDER BY"``, ``"LIMIT"``, ``"SAMPLE"``, ``"ANOMALY"``, ``"JOIN"``) to the span of the keyword
    itself, for errors reported "at the keyword" (E220, E222 ...).
    ``limit`` keeps the number as written (E215 rejects 0, negatives and floats later);
    ``limit_span`` locates it. ``text`` is the query text the spans point into.
    """

    select_star: bool
    items: tuple[SelectItem, ...] = ()
    sources: tuple[Source, ...] = ()
    joins: tuple[Join, ...] = ()
    where: Condition | None = None
    window: Window | None = None
    group_by: tuple[Property | Operand, ...] = ()
    anomaly: Anomaly | None = None
    having: Condition | None = None
    order_by: tuple[OrderKey, ...] = ()
    limit: int | float | None = None
    sample: Sample | None = None
    span: Span = _span()
    limit_span: Span = _span()
    clause_spans: dict[str, Span] = field(default_factory=dict, compare=False, repr=False, hash=False)
    text: str = field(default="", compare=False, repr=False)


Node = Union[Query, Operand, Condition, SelectItem, Source, Join, Window, OrderKey, Sample, Anomaly]


@dataclass(frozen=True, slots=True)
class OutputRef:
    """A name in HAVING or ORDER BY after the analyzer resolved it (docs/mql.md#group-by).

    Never produced by the parser. ``kind``:
    - ``"column"``: ``Analysis.columns[index]`` (visible or hidden), then ``rest`` applied as a path;
    - ``"key"``: the value of ``Query.group_by[index]`` for the row's group, then ``rest``;
    - ``"alias"`` (plain queries, ORDER BY only): the value of select item ``index``.
    ``rest`` may contain ``STAR`` (a fanned-out HAVING comparison).
    """

    kind: TLiteral["column", "key", "alias"]
    index: int
    rest: tuple[Segment, ...] = ()
    span: Span = _span()
