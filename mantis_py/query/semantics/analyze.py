"""The MQL analyzer: static rules, live-mode rules, output names, name resolution and fields.

Theory of operation (docs/mql.md):
- :func:`analyze` takes a parsed :class:`~mantis_py.query.syntax.ast.Query` and either returns an
  :class:`~mantis_py.query.semantics.analysis.Analysis` or raises exactly one ``QueryError``.
- Phase 3, static rules (E2xx except E220–E222, plus E306 and the sample problem the parser stored
  for E212/E213): every rule is checked and each violation is *collected* with its position; the
  one at the earliest text position is raised (ties: the first one found). Checking never stops at
  the first violation, because a later clause may hold an earlier position (WINDOW may follow
  WHERE, ORDER BY may follow LIMIT).
- Phase 4, live-mode rules (E220–E222), only in live mode, again earliest position first.
- While checking, the analyzer builds what the compiler needs: the columns of an aggregate query
  (§3.7.2), hidden HAVING aggregates (§3.10), HAVING and ORDER BY names resolved into
  :class:`~mantis_py.query.syntax.ast.OutputRef`, and the fields of §4.2.
- Each construct is checked in the context of its clause by one small function; which operand may
  stand where is decided in :meth:`_Checker._select_operand`, :meth:`_Checker._side`,
  :meth:`_Checker._group_key`, :meth:`_Checker._order_key` and :meth:`_Checker._aggregate_arg`.

Everything is pure and linear in the query size; nothing here raises anything but ``QueryError``
(and ``ValueError`` for a bad ``mode`` argument, a caller bug).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Literal as TLiteral
from typing import cast

from ...errors import QueryError
from ..syntax import ast
from ..syntax.diagnostics import query_error, suggest
from ..syntax.format import format_condition, format_operand, format_property, format_query
from ..syntax.vocabulary import AGGREGATES, META_FIELDS, PERCENTILE_SHORTHANDS
from .analysis import Analysis, Column
from .names import default_name, dotted, item_name, literal_text, plain_conflicts
from .regex import compile_regex

__all__ = [
    "AGGREGATES",
    "META_FIELDS",
    "PERCENTILE_SHORTHANDS",
    "analyze",
    "is_aggregate_call",
    "is_aggregate_query",
]

WINDOW_MAX_SECONDS = 600
SLIDING_MAX_OVERLAP = 60
COUNT_WINDOW_MAX = 10_000

_SOURCE_PART = re.compile(r"[A-Za-z0-9_\-.:]{1,128}")

# Messages and hints of docs/mql.md#errors, where they are fixed text.
_HINT_HAVING = "filter on aggregates with HAVING"
_HINT_ARGUMENT = "the argument is a property, or * for count"
_HINT_ALIAS = "give one an alias with AS"
_HINT_REGEX = "backreferences and lookaround are not supported; the engine is linear-time"
_HINT_SOURCE = "app or app/stream, letters, digits and _ - . :"
_HINT_IN = "use OR with comparisons"
_MSG_STAR = "[*] is only allowed on the left of a comparison or IN in WHERE or HAVING"
_MSG_PREFIX = "e[^'…'] is only allowed as an item of a plain select list, without AS"
_MSG_PERCENTILE = "percentile() needs a property and a number from 0 to 100"
_MSG_WINDOW_VALUE = "WINDOW {} must be a whole number, at least 1"
_MSG_LIMIT = "LIMIT must be a whole number, at least 1"


def is_aggregate_call(operand: object) -> bool:
    """True for a call of an aggregate function (``count(*)``, ``p99(x)`` ...), not ``tick()``."""
    return isinstance(operand, ast.Call) and operand.name in AGGREGATES


def is_aggregate_query(q: ast.Query) -> bool:
    """docs/mql.md#at-a-glance: the select list has an aggregate call, or there is a GROUP BY."""
    return bool(q.group_by) or any(is_aggregate_call(i.operand) for i in q.items)


# --------------------------------------------------------------------------- violations


@dataclass(frozen=True, slots=True)
class _Violation:
    """One broken rule, located at ``text[start:start + length]``."""

    start: int
    length: int
    code: str
    message: str
    suggestion: str | None = None
    hint: str | None = None
    error: QueryError | None = None  # already built (the parser's sample problem)
    suggest: Callable[[], str | None] | None = None  # computed only for the reported one

    def to_error(self, text: str) -> QueryError:
        if self.error is not None:
            return self.error
        suggestion = self.suggest() if self.suggest is not None else self.suggestion
        return query_error(
            self.code,
            self.message,
            text,
            self.start,
            self.length,
            suggestion=suggestion,
            hint=self.hint,
        )


class _Found:
    """The violations found so far; :meth:`earliest` picks the one to report."""

    def __init__(self) -> None:
        self.items: list[_Violation] = []

    def add(
        self,
        code: str,
        span: ast.Span,
        message: str,
        *,
        suggestion: str | None = None,
        hint: str | None = None,
        suggest: Callable[[], str | None] | None = None,
    ) -> None:
        self.items.append(
            _Violation(span.start, span.length, code, message, suggestion, hint, suggest=suggest)
        )

    def earliest(self) -> _Violation | None:
        return min(self.items, key=lambda v: v.start, default=None)


# --------------------------------------------------------------------------- the static rules


class _Checker:
    """Checks one query (phase 3) and builds columns and resolved HAVING / ORDER BY."""

    def __init__(self, q: ast.Query, kind: TLiteral["plain", "aggregate"]) -> None:
        self.q = q
        self.kind = kind
        self.found = _Found()
        self.columns: list[Column] = []
        self.having: ast.Condition | None = None
        self.order_by: tuple[ast.OrderKey, ...] = q.order_by
        self._names: dict[str, int] = {}  # visible column name -> column index
        self._calls: dict[ast.Call, int] = {}  # aggregate call -> first column computing it
        self._keys: dict[str, int] = {}  # dotted GROUP BY property -> group_by index
        self._hint: str | None = None  # E206 hint, built once

    # -- the recipe -------------------------------------------------------------------------

    def run(self) -> None:
        self._sources()
        self._join_and_anomaly()
        if self.kind == "aggregate":
            self._select_aggregate()
        else:
            self._select_plain()
        if self.q.where is not None:
            self._condition(self.q.where, "WHERE")
        self._window()
        for key in self.q.group_by:
            self._group_key(key)
        self._having()
        self._order_by()
        self._limit()
        self._sample()

    # -- FROM, JOIN, ANOMALY ----------------------------------------------------------------

    def _sources(self) -> None:
        seen: set[tuple[str, str]] = set()
        for s in (*self.q.sources, *(s for j in self.q.joins for s in j.sources)):
            parts = (s.app,) if s.stream is None else (s.app, s.stream)
            if not all(_SOURCE_PART.fullmatch(p) for p in parts):
                self.found.add(
                    "E225", s.span, f"'{s.text}' is not a valid source name", hint=_HINT_SOURCE
                )
            key = (s.app, s.stream or "default")
            if key in seen:
                self.found.add("E223", s.span, f"source '{s.text}' is named twice")
            seen.add(key)

    def _join_and_anomaly(self) -> None:
        """JOIN (one clause, ON a property without [*]) and ANOMALY (a property or an aggregate
        call; alpha and beta numbers above 0), docs/mql.md#join-and-anomaly. Forms outside that are E217."""
        q = self.q
        for j in q.joins[1:]:
            self.found.add("E217", j.span, "only one JOIN per query is supported")
        for j in q.joins[:1]:
            if type(j.seconds) is not int or j.seconds < 0:  # §2.4: an integer position
                self.found.add("E217", j.seconds_span,
                               "JOIN needs a whole number of seconds, at least 0")
            on = j.on
            if not isinstance(on, ast.Property) or on.has_star:
                self.found.add("E217", getattr(on, "span", j.span),
                               "JOIN ... ON needs a property (a name or a path without [*])")
        an = q.anomaly
        if an is not None:
            op = an.operand
            ok = (isinstance(op, ast.Property) and not op.has_star) or (
                isinstance(op, ast.Call) and is_aggregate_call(op) and self.kind == "aggregate")
            if not ok:
                self.found.add("E217", getattr(op, "span", an.span),
                               "ANOMALY MAD needs a property or an output column")
            for v in (an.alpha, an.beta):
                if type(v) not in (int, float) or not v > 0 or v != v or v == float("inf"):
                    self.found.add("E217", an.span,
                                   "ANOMALY MAD alpha and beta must be numbers above 0")
                    break

    # -- SELECT -----------------------------------------------------------------------------

    def _select_plain(self) -> None:
        for item in self.q.items:
            self._select_operand(item.operand, plain=True, aliased=item.alias is not None)
            self._alias(item)
        for clash in plain_conflicts(self.q.items):
            item = self.q.items[clash.index]
            self.found.add(
                "E207",
                _item_span(item),
                f"two select items produce the output name '{clash.name}'",
                hint=_HINT_ALIAS,
            )

    def _select_aggregate(self) -> None:
        if self.q.select_star:
            self.found.add(
                "E204",
                _star_item_span(self.q),
                "'*' cannot be selected in an aggregate query",
                hint="select the GROUP BY properties and aggregates",
            )
        for index, item in enumerate(self.q.items):
            self._select_operand(item.operand, plain=False, aliased=item.alias is not None)
            self._alias(item)
            name = item_name(item)
            if name in self._names:
                self.found.add(
                    "E207",
                    _item_span(item),
                    f"two select items produce the output name '{name}'",
                    hint=_HINT_ALIAS,
                )
            else:
                self._names[name] = index
            op = item.operand
            if is_aggregate_call(op):
                self._calls.setdefault(cast(ast.Call, op), index)
            self.columns.append(Column(name, op, _role(op)))
        for index, key in enumerate(self.q.group_by):
            if isinstance(key, ast.Property):
                self._keys.setdefault(dotted(key.segments), index)

    def _select_operand(self, op: ast.Operand, *, plain: bool, aliased: bool) -> None:
        if isinstance(op, ast.Property):
            if op.has_star:
                self.found.add("E208", op.span, _MSG_STAR)
        elif isinstance(op, ast.PrefixSelector):
            if not plain or aliased:
                self.found.add("E209", op.span, _MSG_PREFIX)
        elif isinstance(op, ast.Literal):
            if op.value is None:
                self.found.add("E211", op.span, "selecting null has no effect")
        elif isinstance(op, ast.Negation):
            self.found.add("E210", op.span, "NOT cannot be used in a select list")
        elif isinstance(op, ast.Call):
            self._call(op, "SELECT")

    def _alias(self, item: ast.SelectItem) -> None:
        if item.alias == "":
            self.found.add("E226", item.alias_span, "an alias cannot be empty")

    # -- calls ------------------------------------------------------------------------------

    def _call(self, call: ast.Call, place: str) -> None:
        """A call standing in ``place``: aggregates only in SELECT and HAVING (E201)."""
        if call.name in AGGREGATES:
            if place in ("SELECT", "HAVING"):
                self._aggregate_args(call)
            else:
                self.found.add(
                    "E201",
                    call.span,
                    f"aggregate {call.name}() cannot be used in {place}",
                    hint=_HINT_HAVING,
                )
        elif call.name == "tick":
            if call.distinct:
                self.found.add(
                    "E228",
                    _distinct_span(self.q.text, call),
                    "DISTINCT is only allowed as the first argument of an aggregate",
                )
            elif call.args:
                self.found.add("E227", call.span, "tick() takes no arguments")

    def _aggregate_args(self, call: ast.Call) -> None:
        f, args = call.name, call.args
        if f == "percentile":
            if len(args) < 2:
                self.found.add("E203", call.span, _MSG_PERCENTILE)
            else:
                q = args[1]
                if not _is_percent(q):
                    self.found.add("E203", _arg_span(self.q.text, call, q), _MSG_PERCENTILE)
                if len(args) > 2:
                    self.found.add("E203", _arg_span(self.q.text, call, args[2]), _MSG_PERCENTILE)
        elif f in PERCENTILE_SHORTHANDS:
            if len(args) != 1:
                span = call.span if not args else _arg_span(self.q.text, call, args[1])
                self.found.add("E203", span, f"{f}() takes one argument")
        elif len(args) != 1:
            span = call.span if not args else _arg_span(self.q.text, call, args[1])
            count = "zero" if not args else str(len(args))
            self.found.add("E202", span, f"{f}() cannot take {count} arguments", hint=_HINT_ARGUMENT)
        if args:
            self._aggregate_arg(call, args[0])

    def _aggregate_arg(self, call: ast.Call, arg: ast.CallArg) -> None:
        """The first argument of an aggregate: a property, a literal, or ``*`` for count."""
        f, distinct = call.name, call.distinct
        what: str | None = None
        if isinstance(arg, ast.Star):
            if f != "count" or distinct:
                what = "DISTINCT *" if distinct else "*"
        elif isinstance(arg, ast.Property):
            if arg.has_star:
                what = "a [*] path"
        elif isinstance(arg, ast.Literal):
            if arg.value is None:
                what = "null"
            elif distinct:
                what = f"DISTINCT {format_operand(arg)}"
        elif isinstance(arg, ast.Call) and arg.name in AGGREGATES:
            self.found.add(
                "E201",
                arg.span,
                f"aggregate {arg.name}() cannot be used in {f}()",
                hint=_HINT_HAVING,
            )
        elif isinstance(arg, ast.PrefixSelector):
            what = "a prefix selector"
        else:  # tick(), a negated operand
            what = format_operand(arg)
        if what is not None:
            self.found.add(
                "E202",
                _arg_span(self.q.text, call, arg),
                f"{f}() cannot take {what}",
                hint=_HINT_ARGUMENT,
            )

    # -- conditions (WHERE, HAVING) ---------------------------------------------------------

    def _condition(self, c: ast.Condition, place: str) -> None:
        if isinstance(c, (ast.And, ast.Or)):
            for item in c.items:
                self._condition(item, place)
        elif isinstance(c, ast.Not):
            self._condition(c.condition, place)
        elif isinstance(c, ast.Comparison):
            self._side(c.left, place, star_ok=True)
            self._side(c.right, place, star_ok=False)
            self._comparison_negation(c)
            if c.op == "==+" and isinstance(c.right, ast.Literal):
                self._contains_literal(c.right)
        elif isinstance(c, ast.Match):
            self._side(c.left, place, star_ok=False)
            self._negation_never_true(c, c.left, f"/{c.pattern}/")
            try:
                compile_regex(c.pattern)
            except ValueError as exc:
                self.found.add("E216", _regex_span(self.q.text, c), f"regex cannot be used: {exc}", hint=_HINT_REGEX)
        elif isinstance(c, ast.IsNull):
            self._side(c.operand, place, star_ok=False)
            self._negation_never_true(c, c.operand, "null")
        elif isinstance(c, ast.In):
            self._side(c.operand, place, star_ok=True)
            if isinstance(c.operand, ast.Negation):
                listed = "(" + ", ".join(format_operand(i) for i in c.items) + ")"
                self._negation_never_true(c, c.operand, listed)
            for entry in c.items:
                if not isinstance(entry, ast.Literal):
                    self.found.add(
                        "E229",
                        entry.span,
                        f"IN lists hold literals only, found {_describe(entry)}",
                        hint=_HINT_IN,
                    )

    def _side(self, op: ast.Operand, place: str, *, star_ok: bool) -> None:
        """An operand of a predicate. Star paths only on the left of a comparison or IN."""
        if isinstance(op, ast.Negation):
            op = op.operand  # the negation itself is judged by the predicate's rule
            star_ok = False
        if isinstance(op, ast.Property):
            if op.has_star and not star_ok:
                self.found.add("E208", op.span, _MSG_STAR)
        elif isinstance(op, ast.PrefixSelector):
            self.found.add("E209", op.span, _MSG_PREFIX)
        elif isinstance(op, ast.Call):
            self._call(op, place)

    def _comparison_negation(self, c: ast.Comparison) -> None:
        """E210: NOT x is a boolean; only ``==``/``!=`` with a boolean or a non-literal make sense."""
        if not isinstance(c.left, ast.Negation) and not isinstance(c.right, ast.Negation):
            return
        for side, other in ((c.left, c.right), (c.right, c.left)):
            if not isinstance(side, ast.Negation):
                continue
            fine = c.op in ("==", "!=") and (
                not isinstance(other, ast.Literal) or isinstance(other.value, bool)
            )
            if not fine:
                self._negation_never_true(c, side, format_operand(other))

    def _negation_never_true(self, c: ast.Condition, side: ast.Operand, other: str) -> None:
        if not isinstance(side, ast.Negation):
            return
        inner = side.operand
        fixed = _replace_operand(c, side, inner)
        self.found.add(
            "E210",
            side.span,
            f"NOT {format_operand(inner)} is true or false, so comparing it with {other} "
            "is never true",
            suggestion=f"NOT ({format_condition(fixed)})",
        )

    def _contains_literal(self, right: ast.Literal) -> None:
        if isinstance(right.value, str):
            return
        text = literal_text(right.value)
        suggestion = None if right.value is None else _string_literal(text)
        self.found.add("E224", right.span, "==+ needs a string on its right", suggestion=suggestion)

    # -- WINDOW, GROUP BY, HAVING, ORDER BY, LIMIT, SAMPLE ------------------------------------

    def _window(self) -> None:
        w = self.q.window
        if isinstance(w, ast.CountWindow):
            span = _number_span(self.q.text, w.size_span if w.size_span != ast.NO_SPAN else w.span)
            self._window_value("size", w.size, span, COUNT_WINDOW_MAX)
        elif isinstance(w, ast.TimeWindow):
            ok = self._window_value("length", w.length, w.length_span, WINDOW_MAX_SECONDS)
            if w.every_span == ast.NO_SPAN and w.every == w.length:
                return  # WINDOW N: one number
            ok = self._window_value("step", w.every, w.every_span, WINDOW_MAX_SECONDS) and ok
            if ok:
                overlap = -(-int(w.length) // int(w.every))
                if overlap > SLIDING_MAX_OVERLAP:
                    self.found.add(
                        "E306",
                        w.every_span,
                        f"WINDOW overlap (length / step, rounded up) is {overlap}; "
                        f"the limit is {SLIDING_MAX_OVERLAP}",
                    )

    def _window_value(self, what: str, value: object, span: ast.Span, limit: int) -> bool:
        if type(value) is not int or value < 1:
            self.found.add("E214", span, _MSG_WINDOW_VALUE.format(what))
            return False
        if value > limit:
            self.found.add("E306", span, f"WINDOW {what} is {value}; the limit is {limit}")
            return False
        return True

    def _group_key(self, key: ast.Operand) -> None:
        if isinstance(key, ast.Property):
            if key.has_star:
                self.found.add("E208", key.span, _MSG_STAR)
        elif isinstance(key, ast.PrefixSelector):
            self.found.add("E209", key.span, _MSG_PREFIX)
        elif isinstance(key, ast.Negation):
            self.found.add("E210", key.span, "NOT cannot be used in GROUP BY")
        elif is_aggregate_call(key):
            self._call(cast(ast.Call, key), "GROUP BY")
        else:
            self.found.add("E218", key.span, f"GROUP BY needs properties, found {_describe(key)}")

    def _having(self) -> None:
        having = self.q.having
        if having is None:
            return
        if self.kind == "plain":
            span = self.q.clause_spans.get("HAVING", having.span)
            self.found.add("E205", span, "HAVING needs an aggregate query", hint="use WHERE")
            return
        self._condition(having, "HAVING")
        self.having = self._resolve_condition(having)

    def _order_by(self) -> None:
        keys: list[ast.OrderKey] = []
        aliases: dict[str, int] = {}
        if self.kind == "plain":
            for index, item in enumerate(self.q.items):
                if item.alias is not None:
                    aliases.setdefault(item.alias, index)
        for key in self.q.order_by:
            op = key.operand
            ref: ast.OutputRef | None = None
            if not self._order_key(op) or not isinstance(op, ast.Property):
                pass
            elif self.kind == "aggregate":
                ref = self._resolve_name(op)
            elif op.is_bare and op.segments[0] in aliases:
                ref = ast.OutputRef("alias", aliases[str(op.segments[0])], span=op.span)
            keys.append(key if ref is None else dataclasses.replace(key, operand=_op(ref)))
        self.order_by = tuple(keys)

    def _order_key(self, op: ast.Operand) -> bool:
        """Check an ORDER BY key; True when it is a property that can be resolved."""
        if isinstance(op, ast.Property):
            if op.has_star:
                self.found.add("E208", op.span, _MSG_STAR)
                return False
            return True
        if isinstance(op, ast.PrefixSelector):
            self.found.add("E209", op.span, _MSG_PREFIX)
        elif isinstance(op, ast.Negation):
            self.found.add("E210", op.span, "NOT cannot be used in ORDER BY")
        else:
            self.found.add(
                "E219",
                op.span,
                f"ORDER BY needs a property or an output name, found {_describe(op)}",
                suggestion=self._order_suggestion(op),
            )
        return False

    def _order_suggestion(self, op: ast.Operand) -> str | None:
        """For ``order by count(*)``: the matching column, as ``e['COUNT(*)']`` or its alias."""
        if self.kind != "aggregate" or not isinstance(op, ast.Call):
            return None
        for column in self.columns:
            if column.operand == op and not column.hidden:
                return format_property((column.name,))
        return None

    def _limit(self) -> None:
        limit = self.q.limit
        if limit is not None and (type(limit) is not int or limit < 1):
            self.found.add("E215", self.q.limit_span, _MSG_LIMIT)

    def _sample(self) -> None:
        sample = self.q.sample
        if sample is None or sample.problem is None:
            return
        problem = sample.problem
        if not isinstance(problem, QueryError):
            problem = query_error(
                "E212", f"SAMPLE: {problem}", self.q.text, sample.span.start, sample.span.length
            )
        start = sample.span.start
        self.found.items.append(_Violation(start, 0, problem.code, problem.message, error=problem))

    # -- name resolution (HAVING, aggregate ORDER BY) ---------------------------------------

    def _resolve_condition(self, c: ast.Condition) -> ast.Condition:
        r = self._resolve_operand
        if isinstance(c, ast.Comparison):
            return dataclasses.replace(c, left=r(c.left), right=r(c.right))
        if isinstance(c, ast.Match):
            return dataclasses.replace(c, left=r(c.left))
        if isinstance(c, ast.IsNull):
            return dataclasses.replace(c, operand=r(c.operand))
        if isinstance(c, ast.In):
            return dataclasses.replace(c, operand=r(c.operand))
        if isinstance(c, (ast.And, ast.Or)):
            return dataclasses.replace(c, items=tuple(self._resolve_condition(i) for i in c.items))
        if isinstance(c, ast.Not):
            return dataclasses.replace(c, condition=self._resolve_condition(c.condition))
        return c

    def _resolve_operand(self, op: ast.Operand) -> ast.Operand:
        if isinstance(op, ast.Property):
            ref = self._resolve_name(op)
            return op if ref is None else _op(ref)
        if isinstance(op, ast.Negation):
            return dataclasses.replace(op, operand=self._resolve_operand(op.operand))
        if isinstance(op, ast.Call):
            if op.name in AGGREGATES:
                return _op(ast.OutputRef("column", self._aggregate_column(op), span=op.span))
            for index, column in enumerate(self.columns):
                if column.operand == op and not column.hidden:
                    return _op(ast.OutputRef("column", index, span=op.span))
            self._unknown_name(format_operand(op), op.span)
        return op

    def _aggregate_column(self, call: ast.Call) -> int:
        """The column computing ``call``: a select-list one, else a new hidden aggregate."""
        index = self._calls.get(call)
        if index is None:
            index = len(self.columns)
            self.columns.append(Column(default_name(call), call, "aggregate", hidden=True))
            self._calls[call] = index
        return index

    def _resolve_name(self, prop: ast.Property) -> ast.OutputRef | None:
        """docs/mql.md#group-by: the longest leading run of string segments naming a column, else a
        GROUP BY key; the rest of the path applies to its value. E206 when nothing matches."""
        segments = prop.segments
        lead: list[str] = []
        for s in segments:
            if not isinstance(s, str):
                break
            lead.append(s)
        for n in range(len(lead), 0, -1):  # longest run first; a column before a key
            name = ".".join(lead[:n])
            rest = tuple(segments[n:])
            if name in self._names:
                return ast.OutputRef("column", self._names[name], rest, span=prop.span)
            if name in self._keys:
                return ast.OutputRef("key", self._keys[name], rest, span=prop.span)
        self._unknown_name(".".join(lead) if lead else format_operand(prop), prop.span)
        return None

    def _columns_hint(self) -> str:
        if self._hint is None:
            self._hint = "output columns: " + ", ".join(self._names)
        return self._hint

    def _unknown_name(self, name: str, span: ast.Span) -> None:
        visible = list(self._names)

        def nearest() -> str | None:
            near = suggest(name, visible)
            return None if near is None else format_property((near,))

        self.found.add(
            "E206",
            span,
            f"'{name}' is not an output column",
            hint=self._columns_hint(),
            suggest=nearest,
        )


# --------------------------------------------------------------------------- small helpers


def _op(ref: ast.OutputRef) -> ast.Operand:
    """An OutputRef standing where the AST types say Operand (see ast.OutputRef)."""
    return cast(ast.Operand, ref)


def _role(op: ast.Operand) -> TLiteral["aggregate", "first", "literal"]:
    if is_aggregate_call(op):
        return "aggregate"
    if isinstance(op, ast.Literal):
        return "literal"
    return "first"


def _is_percent(arg: ast.CallArg) -> bool:
    if not isinstance(arg, ast.Literal) or type(arg.value) not in (int, float):
        return False
    return 0 <= cast(float, arg.value) <= 100


def _describe(op: ast.Operand) -> str:
    """A short description of an operand for 'found …' messages."""
    if isinstance(op, ast.Literal):
        return f"the literal {format_operand(op)}"
    if isinstance(op, ast.PrefixSelector):
        return f"the prefix selector {format_operand(op)}"
    return format_operand(op)


def _string_literal(text: str) -> str:
    """``text`` as a canonical MQL string literal (docs/mql.md#canonical-text)."""
    return f'"{text}"' if "'" in text else f"'{text}'"


def _item_span(item: ast.SelectItem) -> ast.Span:
    return item.span if item.span != ast.NO_SPAN else item.operand.span


def _star_item_span(q: ast.Query) -> ast.Span:
    """The ``*`` of ``SELECT *``: the first non-blank character after the SELECT keyword."""
    select = q.clause_spans.get("SELECT", ast.Span(0, 0))
    i = select.end
    while i < len(q.text) and q.text[i] in " \t\n\v\f\r":
        i += 1
    if i < len(q.text) and q.text[i] == "*":
        return ast.Span(i, i + 1)
    return select


def _regex_span(text: str, m: ast.Match) -> ast.Span:
    """The regex literal ``/…/`` of a match, slashes included."""
    span = m.pattern_span if m.pattern_span != ast.NO_SPAN else m.span
    if text[span.start : span.start + 1] != "/" and text[span.start - 1 : span.start] == "/":
        end = span.end + 1 if text[span.end : span.end + 1] == "/" else span.end
        return ast.Span(span.start - 1, end)
    return span


def _number_span(text: str, span: ast.Span) -> ast.Span:
    """The number of a count window ``|N|``, without the bars."""
    if text[span.start : span.start + 1] == "|" and text[span.end - 1 : span.end] == "|":
        return ast.Span(span.start + 1, span.end - 1)
    return span


def _call_body_start(call: ast.Call) -> int:
    return call.name_span.end if call.name_span != ast.NO_SPAN else call.span.start


def _arg_span(text: str, call: ast.Call, arg: ast.CallArg) -> ast.Span:
    """Where a call argument stands; ``*`` has no span of its own, so find it in the text."""
    if not isinstance(arg, ast.Star):
        return arg.span
    i = text.find("*", _call_body_start(call), call.span.end)
    return ast.Span(i, i + 1) if i >= 0 else call.span


def _distinct_span(text: str, call: ast.Call) -> ast.Span:
    """The DISTINCT keyword of a call (found in the text between ``(`` and the first argument)."""
    start = _call_body_start(call)
    end = call.args[0].span.start if call.args and not isinstance(call.args[0], ast.Star) else 0
    i = text.lower().find("distinct", start, end or call.span.end)
    return ast.Span(i, i + 8) if i >= 0 else call.span


def _replace_operand(c: ast.Condition, old: ast.Operand, new: ast.Operand) -> ast.Condition:
    """``c`` with the operand ``old`` (compared by identity) replaced by ``new``."""
    if isinstance(c, ast.Comparison):
        if c.left is old:
            return dataclasses.replace(c, left=new)
        return dataclasses.replace(c, right=new)
    if isinstance(c, ast.Match):
        return dataclasses.replace(c, left=new)
    if isinstance(c, (ast.IsNull, ast.In)):
        return dataclasses.replace(c, operand=new)
    return c


# --------------------------------------------------------------------------- live rules


def _live_violations(
    q: ast.Query, kind: str, apps: Collection[str] | None
) -> Iterator[_Violation]:
    """Phase 4 (docs/mql.md#errors): E220–E222, only in live mode."""
    select = q.clause_spans.get("SELECT", ast.Span(0, 0))
    if not q.sources:
        yield _Violation(select.start, select.length, "E222", "a live query needs FROM <application>")
    elif apps is not None:
        known = sorted(apps)
        for s in q.sources:
            if s.app in apps:
                continue
            hint = None
            if s.app in ("stream", "observable"):
                hint = (
                    f"'{s.app}' is a default name meaningful only in replay; a live query "
                    "names an application"
                )
            yield _Violation(
                s.span.start,
                s.span.length,
                "E222",
                f"unknown application '{s.app}'",
                suggestion=suggest(s.app, known),
                hint=hint,
            )
    if q.window is not None:
        return
    if q.order_by:
        span = q.clause_spans.get("ORDER BY", q.order_by[0].span)
        yield _Violation(
            span.start,
            span.length,
            "E220",
            "in a live query ORDER BY needs a WINDOW",
            hint="add window 10; a live stream never ends",
        )
    if kind == "aggregate":
        calls = [i.operand for i in q.items if is_aggregate_call(i.operand)]
        span = calls[0].span if calls else q.clause_spans.get("GROUP BY", q.group_by[0].span)
        yield _Violation(
            span.start,
            span.length,
            "E221",
            "in a live query an aggregate query needs a WINDOW",
            hint="add window 10",
        )


# --------------------------------------------------------------------------- fields (§4.2)


def _operand_properties(op: ast.Operand | ast.Star) -> Iterator[ast.Property | ast.PrefixSelector]:
    if isinstance(op, (ast.Property, ast.PrefixSelector)):
        yield op
    elif isinstance(op, ast.Negation):
        yield from _operand_properties(op.operand)
    elif isinstance(op, ast.Call):
        for arg in op.args:
            yield from _operand_properties(arg)


_PROPERTIES = (ast.Property, ast.PrefixSelector)


def _condition_properties(c: ast.Condition) -> Iterator[ast.Property | ast.PrefixSelector]:
    if isinstance(c, ast.Comparison):
        yield from _operand_properties(c.left)
        yield from _operand_properties(c.right)
    elif isinstance(c, ast.Match):
        yield from _operand_properties(c.left)
    elif isinstance(c, ast.IsNull):
        yield from _operand_properties(c.operand)
    elif isinstance(c, ast.In):
        yield from _operand_properties(c.operand)
        for entry in c.items:
            if not isinstance(entry, ast.Literal):  # a literal reads nothing
                yield from _operand_properties(entry)
    elif isinstance(c, (ast.And, ast.Or)):
        for item in c.items:
            if type(item) is ast.Comparison:  # the common item, without a nested generator
                for op in (item.left, item.right):
                    if isinstance(op, _PROPERTIES):
                        yield op
                    elif not isinstance(op, ast.Literal):
                        yield from _operand_properties(op)
            else:
                yield from _condition_properties(item)
    elif isinstance(c, ast.Not):
        yield from _condition_properties(c.condition)


def _event_properties(
    q: ast.Query, columns: tuple[Column, ...], order_by: tuple[ast.OrderKey, ...]
) -> Iterator[ast.Property | ast.PrefixSelector]:
    """Everything the query reads from an event, in canonical clause order (the ``fields`` of
    docs/architecture.md)."""
    for item in q.items:
        yield from _operand_properties(item.operand)
    if q.where is not None:
        yield from _condition_properties(q.where)
    for key in q.group_by:
        yield from _operand_properties(key)
    for column in columns:
        if column.hidden:  # hidden HAVING aggregates are computed from events too
            yield from _operand_properties(column.operand)
    for order_key in order_by:  # still a Property: a plain-query key read from the event
        if isinstance(order_key.operand, ast.Property):
            yield order_key.operand
    if q.sample is not None and q.sample.strategy == "STICKY":
        for k in q.sample.keys:
            yield ast.Property((k,))


@dataclass(frozen=True, slots=True)
class _Fields:
    fields: tuple[str, ...]
    paths: tuple[tuple[str, ...], ...]
    prefixes: tuple[str, ...]
    meta: tuple[str, ...]


def _fields(
    q: ast.Query,
    mode: str,
    columns: tuple[Column, ...],
    order_by: tuple[ast.OrderKey, ...],
) -> _Fields:
    """The ``fields`` of docs/architecture.md. A path whose first segment is ``[*]`` needs every top-level member: it is
    shipped as the prefix selector ``e[^'']``; a path starting with an index reads nothing."""
    live = mode == "live"
    entries: list[tuple[str, ...] | str] = []  # a cut path, or a prefix (str)
    meta: list[str] = []
    join_keys = [j.on for j in q.joins if isinstance(j.on, ast.Property)]
    for p in (*_event_properties(q, columns, order_by), *join_keys):
        if isinstance(p, ast.PrefixSelector):
            entries.append(p.prefix)
            continue
        if live and p.is_bare and p.segments[0] in META_FIELDS:
            name = str(p.segments[0])
            if name not in meta:
                meta.append(name)
        cut = _cut(p.segments)
        if cut:
            entries.append(cut)
        elif p.segments and isinstance(p.segments[0], ast.Star):
            entries.append("")
    if q.select_star:
        return _Fields(("*", *meta), tuple((m,) for m in meta), (), tuple(meta))
    return _reduce(entries, set(meta), tuple(meta))


def _cut(segments: tuple[ast.Segment, ...]) -> tuple[str, ...]:
    cut: list[str] = []
    for s in segments:
        if not isinstance(s, str):
            break
        cut.append(s)
    return tuple(cut)


def _reduce(entries: list[tuple[str, ...] | str], meta: set[str], meta_order: tuple[str, ...]) -> _Fields:
    """Step 4: remove duplicates, subsumed paths and paths a prefix selector covers."""
    unique = list(dict.fromkeys(entries))
    prefixes = [e for e in unique if isinstance(e, str)]
    # a live meta field is not read from the event, so it subsumes nothing
    subsumers = {e for e in unique if isinstance(e, tuple) and not (len(e) == 1 and e[0] in meta)}
    prefix_set = set(prefixes)
    lengths = sorted({len(p) for p in prefixes})

    def covered(key: str) -> bool:  # linear in the distinct prefix lengths, not the prefixes
        return any(key[:n] in prefix_set for n in lengths if n <= len(key))

    kept: list[tuple[str, ...] | str] = []
    for e in unique:
        if isinstance(e, tuple):
            is_meta = len(e) == 1 and e[0] in meta
            if len(e) > 1 and any(e[:i] in subsumers for i in range(1, len(e))):
                continue
            if lengths and not is_meta and covered(e[0]):
                continue
        kept.append(e)
    texts = tuple(
        format_operand(ast.PrefixSelector(e)) if isinstance(e, str) else format_property(e)
        for e in kept
    )
    paths = tuple(e for e in kept if isinstance(e, tuple))
    return _Fields(texts, paths, tuple(e for e in kept if isinstance(e, str)), meta_order)


# --------------------------------------------------------------------------- entry point


def analyze(
    q: ast.Query,
    mode: TLiteral["replay", "live"] = "replay",
    apps: Collection[str] | None = None,
) -> Analysis:
    """Check a parsed query and describe it for the compiler (docs/mql.md).

    Args:
        q: the query from :func:`mantis_py.query.syntax.parser.parse`.
        mode: ``"replay"`` or ``"live"``; live mode adds E220–E222 and meta fields.
        apps: live mode only: the applications the gateway knows. ``None`` skips the lookup
            (``mantis-py check --mode live``).

    Returns:
        The :class:`Analysis` of the query.

    Raises:
        QueryCompileError: a static rule (E2xx) or, in live mode, E220–E222 is broken; the
            violation at the earliest text position is reported.
        QueryLimitError: a window is over its limit (E306).
    """
    if mode not in ("replay", "live"):
        raise ValueError(f"mode must be 'replay' or 'live', not {mode!r}")
    kind: TLiteral["plain", "aggregate"] = "aggregate" if is_aggregate_query(q) else "plain"
    checker = _Checker(q, kind)
    checker.run()
    first = checker.found.earliest()
    if first is None and mode == "live":
        first = min(_live_violations(q, kind, apps), key=lambda v: v.start, default=None)
    if first is not None:
        raise first.to_error(q.text)

    columns = tuple(checker.columns)
    fields = _fields(q, mode, columns, checker.order_by)
    windowed_by_time = isinstance(q.window, ast.TimeWindow)
    return Analysis(
        query=q,
        canonical=format_query(q),
        mode=mode,
        kind=kind,
        columns=columns if kind == "aggregate" else (),
        having=checker.having,
        order_by=checker.order_by,
        fields=fields.fields,
        field_paths=fields.paths,
        field_prefixes=fields.prefixes,
        star=q.select_star,
        meta_fields=fields.meta,
        # a JOIN runs at the gateway, so the agents ship events (docs/mql.md#join-and-anomaly)
        ships="partials" if kind == "aggregate" and windowed_by_time and not q.joins else "events",
        completes=q.limit is not None and (q.window is None or (kind == "aggregate" and not q.group_by)),
    )
