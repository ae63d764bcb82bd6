"""MQL text -> :class:`ast.Query` (docs/mql.md#text-and-tokens), with the syntax errors of
docs/mql.md#errors.

Theory of operation:
- ``lexer.tokenize`` turns the text into raw tokens (words are not classified yet).
- One cached lark LALR(1) parser (``grammar.lark``) is driven token by token through its
  ``ParserState``. Before each word is fed, the parse table says which terminals the grammar
  accepts at that point, and the word is classified accordingly (keywords are not reserved,
  §2.12): the same word ``from`` is the FROM keyword after a select item and a property name
  where an operand is expected.
- The grammar's reductions call :class:`_Builder` directly (lark's ``transformer=`` option with
  LALR), so no parse tree is built and nothing recurses in proportion to the input.
- Long lists are taken a run at a time (:meth:`_Parse.in_items`, :meth:`_Parse.select_items`,
  :meth:`_Parse.condition_items`): after a separator, items of a common shape are appended to
  the list on the stack directly, once the parse table shows (:func:`_simulate`, cached) that
  feeding their tokens would do exactly that. They build the same nodes; anything else, and
  every error, goes through the token-by-token loop.
- When a token is not accepted, :meth:`_Parse.fail` turns the parser state into one precise
  error: E113/E114/E118/E120/E122/E124/E125 where they apply, otherwise E101 (end of query) or
  E102 with the ``expected`` list built from what the parser accepts there.

lark itself is behind ``lalr.py`` (the only module that imports it); its exceptions never leave
this module.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from mantis_py.errors import QueryError
from mantis_py.query.syntax import ast, lalr
from mantis_py.query.syntax.diagnostics import describe_token, line_column, query_error, suggest
from mantis_py.query.syntax.lexer import (
    WHITESPACE,
    RawToken,
    classify_number,
    percentage_sample,
    tokenize,
)
from mantis_py.query.syntax.vocabulary import FUNCTIONS, KEYWORDS
from mantis_py.query.syntax.vocabulary import LITERAL_WORDS as _LITERAL_WORDS

__all__ = ["CLAUSE_ORDER", "FUNCTIONS", "KEYWORDS", "MAX_IN_ITEMS", "MAX_QUERY_BYTES", "parse"]

MAX_QUERY_BYTES = 16_384
MAX_IN_ITEMS = 1000


CLAUSE_ORDER: dict[str, int] = {
    "SELECT": 0, "FROM": 1, "JOIN": 1, "WHERE": 2, "WINDOW": 2, "GROUP BY": 3, "ANOMALY": 4,
    "HAVING": 5, "ORDER BY": 6, "LIMIT": 6, "SAMPLE": 7,
}  # fmt: skip
"""Clause keyword -> rank; a clause may not follow one of a higher rank (E125)."""

_CLAUSE_TERMINALS = {
    "SELECT": "SELECT", "FROM": "FROM", "JOIN": "JOIN", "WHERE": "WHERE", "WINDOW": "WINDOW",
    "GROUP_BY": "GROUP BY", "ANOMALY": "ANOMALY", "HAVING": "HAVING", "ORDER_BY": "ORDER BY",
    "LIMIT": "LIMIT", "SAMPLE": "SAMPLE",
}  # fmt: skip
_CLAUSE_WORDS = {
    "select": "SELECT", "from": "FROM", "join": "JOIN", "where": "WHERE", "window": "WINDOW",
    "group": "GROUP BY", "anomaly": "ANOMALY", "having": "HAVING", "order": "ORDER BY",
    "limit": "LIMIT", "sample": "SAMPLE",
}  # fmt: skip
_CLAUSE_HINT = (
    "the clause order is SELECT, FROM, WHERE/WINDOW, GROUP BY, HAVING, ORDER BY/LIMIT, SAMPLE"
)

_PUNCT = {"(": "LPAR", ")": "RPAR", ",": "_COMMA", "*": "STAR"}
_OPS = {"==": "CMP_OP", "!=": "CMP_OP", "<": "CMP_OP", "<=": "CMP_OP", ">": "CMP_OP",
        ">=": "CMP_OP", "==+": "CMP_OP", "==~": "MATCH_OP", "!~": "MATCH_OP", "!": "BANG",
        "AND": "AND", "OR": "OR"}  # fmt: skip
_OPERAND_KINDS = frozenset({"WORD", "STRING", "PATH", "PREFIX"})
_FUNCTION_SET = frozenset(FUNCTIONS)
_TIME_WORDS = frozenset({"seconds", "second", "secs", "sec", "s", "minutes", "minute", "min",
                         "m", "ms", "hours", "hour", "h"})  # fmt: skip

# ------------------------------------------------------------------ the `expected` vocabulary

_VOCAB = {
    "_COMMA": ",", "LPAR": "(", "RPAR": ")", "STAR": "*", "CMP_OP": "an operator",
    "MATCH_OP": "an operator", "NAME": "a property", "PATH": "a property",
    "PREFIX": "a property", "STRING": "a string", "NUMBER": "a number",
    "TRUE": "a literal", "FALSE": "a literal", "NULL": "a literal", "REGEX": "a regex /…/",
    "SOURCE": "a source", "COUNT_WINDOW": "a number", "PERCENTAGE": "a number",
    "PERCENT": "%", "SAMPLE_OBJECT": "a sample object {…}", "FUNC_NAME": "an operand",
    "BANG": "NOT", "GROUP_BY": "GROUP BY", "ORDER_BY": "ORDER BY", "$END": "end of query",
}  # fmt: skip
_TRACKED = frozenset({"LPAR", "RPAR", "_COMMA", *_CLAUSE_TERMINALS})
"""The terminals :meth:`_Parse.track` keeps books on."""
_RESERVED = frozenset({"JOIN", "ANOMALY"})  # §5.2: only these two are never listed
_OPERAND_TERMS = frozenset({"NAME", "PATH", "PREFIX", "STRING", "NUMBER", "TRUE", "FALSE",
                            "NULL", "FUNC_NAME", "NOT", "BANG"})  # fmt: skip
_EXPECTED_ORDER = [
    ",", "(", ")", "*", "an operator", "a condition", "an operand", "a property", "a literal",
    "a string", "a number", "a whole number", "a regex /…/", "a source", "a sample object {…}",
    "%", "AS", "DISTINCT", "ASC", "DESC", "IS", "NOT", "NOT IN", "IN", "NULL", "AND", "OR",
    "SECONDS", "ON", "MAD",
    "FROM", "WHERE", "WINDOW", "GROUP BY", "HAVING", "ORDER BY", "LIMIT", "SAMPLE",
    "end of query",
]  # fmt: skip
_EXPECTED_RANK = {s: k for k, s in enumerate(_EXPECTED_ORDER)}


def _expected(accepted: set[str]) -> list[str]:
    """The §5.2 vocabulary for a set of accepted terminals, in a stable, readable order."""
    acc = set(accepted) - {"BANG"} | ({"NOT"} if "BANG" in accepted else set())
    out: set[str] = set()
    if "NAME" in acc and "LPAR" in acc:
        out.add("a condition")
        acc -= _OPERAND_TERMS | {"LPAR"}
    elif "NAME" in acc and "FUNC_NAME" in acc:
        out.add("an operand")
        acc -= _OPERAND_TERMS
    if "SOURCE" in acc:
        acc.discard("STRING")  # accepted only to report E225 on `from "x"`
    if acc == {"NAME", "STRING"}:  # an alias
        acc = {"STRING"}
    if "NULL" in acc and "NAME" not in acc and "STRING" not in acc:
        out.add("NULL")  # IS [NOT] NULL
        acc.discard("NULL")
    if "IN" in acc and "NOT" in acc and "IS" in acc:
        acc.discard("NOT")
        out.add("NOT IN")
    for t in acc:
        if t in _RESERVED:
            continue
        out.add(_VOCAB.get(t, t))
    return sorted(out, key=lambda s: (_EXPECTED_RANK.get(s, len(_EXPECTED_RANK)), s))


def _join_expected(items: list[str]) -> str:
    shown = [f"'{s}'" if s in (",", "(", ")", "*", "%") else s for s in items]
    if len(shown) <= 1:
        return "".join(shown)
    return ", ".join(shown[:-1]) + " or " + shown[-1]


# ------------------------------------------------------------------ spans


def _maker(cls: Any) -> Any:
    """``cls(*values)`` for a frozen, slotted AST dataclass, every field given in order, without
    its generated ``__init__`` (which sets each field through ``object.__setattr__``: about
    twice the time, and the parser makes several such nodes per token). The object is the same:
    same class, every slot set; ``tests/query/test_parse_runs.py`` checks it against ``cls``."""
    names = [f.name for f in dataclasses.fields(cls)]
    if hasattr(cls, "__post_init__") or getattr(cls, "__slots__", None) != tuple(names):
        raise AssertionError(f"{cls.__name__}: not a plain slotted dataclass")  # pragma: no cover
    new = object.__new__
    setters = [cls.__dict__[name].__set__ for name in names]
    if len(setters) == 2:
        s0, s1 = setters

        def make2(a: Any, b: Any) -> Any:
            o = new(cls)
            s0(o, a)
            s1(o, b)
            return o

        return make2
    if len(setters) == 4:
        s0, s1, s2, s3 = setters

        def make4(a: Any, b: Any, c: Any, d: Any) -> Any:
            o = new(cls)
            s0(o, a)
            s1(o, b)
            s2(o, c)
            s3(o, d)
            return o

        return make4
    s0, s1, s2, s3, s4 = setters  # five fields

    def make5(a: Any, b: Any, c: Any, d: Any, e: Any) -> Any:
        o = new(cls)
        s0(o, a)
        s1(o, b)
        s2(o, c)
        s3(o, d)
        s4(o, e)
        return o

    return make5


_span: Callable[[int, int], ast.Span] = _maker(ast.Span)
_property: Callable[[tuple[ast.Segment, ...], ast.Span], ast.Property] = _maker(ast.Property)
_literal: Callable[[ast.LiteralValue, ast.Span], ast.Literal] = _maker(ast.Literal)
_comparison: Callable[[Any, str, Any, ast.Span, ast.Span], ast.Comparison] = _maker(ast.Comparison)
_call: Callable[[str, tuple[Any, ...], bool, ast.Span, ast.Span], ast.Call] = _maker(ast.Call)
_select_item: Callable[[Any, str | None, ast.Span, ast.Span], ast.SelectItem] = _maker(
    ast.SelectItem)  # fmt: skip


def _b(x: Any) -> int:
    if isinstance(x, lalr.Tok):
        return x.start_pos
    start: int = x.span.start
    return start


def _e(x: Any) -> int:
    if isinstance(x, lalr.Tok):
        return x.end_pos
    end: int = x.span.end
    return end


def _sp(a: Any, b: Any = None) -> ast.Span:
    return ast.Span(_b(a), _e(a if b is None else b))


def _source(tok: Any) -> ast.Source:
    text = str(tok)
    if tok.type == "SOURCE" and "/" in text:
        app, stream = text.split("/", 1)
        return ast.Source(app, stream, span=_sp(tok))
    return ast.Source(text, span=_sp(tok))


class _Seq:
    """A list built by a left-recursive rule, one cell per item: O(1) per reduction, no copies."""

    __slots__ = ("item", "prev")

    def __init__(self, prev: _Seq | None, item: Any) -> None:
        self.prev = prev
        self.item = item

    def items(self) -> tuple[Any, ...]:
        out: list[Any] = []
        cell: _Seq | None = self
        while cell is not None:
            out.append(cell.item)
            cell = cell.prev
        out.reverse()
        return tuple(out)


def _seq(self: Any, c: list[Any]) -> _Seq:
    return _Seq(None, c[0]) if len(c) == 1 else _Seq(c[0], c[-1])


class _Builder:
    """Reduction callbacks: grammar rule (or alias) name -> AST node. Never recursive."""

    select_seq = source_seq = join_seq = operand_seq = order_seq = or_seq = and_seq = _seq
    argument_seq = _seq

    # ---------------------------------------------------------- query and clauses

    def start(self, c: list[Any]) -> ast.Query:
        select, sel = c[0], c[1]
        spans: dict[str, ast.Span] = {"SELECT": _sp(select)}
        f: dict[str, Any] = {}
        for part in c[2:]:
            for tag, kw, value in part if isinstance(part, list) else [part]:
                spans.setdefault(kw[0], kw[1])
                f[tag] = value
                if tag == "from" and value[1]:
                    spans.setdefault("JOIN", value[2])
        star = sel[0] == "star"
        sources, joins = f.get("from", ((), (), None))[:2]
        limit_tok = f.get("limit")
        return ast.Query(
            select_star=star,
            items=() if star else sel[1],
            sources=sources,
            joins=joins,
            where=f.get("where"),
            window=f.get("window"),
            group_by=f.get("group", ()),
            anomaly=f.get("anomaly"),
            having=f.get("having"),
            order_by=f.get("order", ()),
            limit=limit_tok.payload if limit_tok is not None else None,
            sample=f.get("sample"),
            span=_sp(select),  # the end is set by the driver
            limit_span=_sp(limit_tok) if limit_tok is not None else ast.NO_SPAN,
            clause_spans=spans,
        )

    def select_star(self, c: list[Any]) -> tuple[str, Any]:
        return ("star", c[0])

    def select_items(self, c: list[Any]) -> tuple[str, Any]:
        return ("items", c[0].items())

    def select_item(self, c: list[Any]) -> ast.SelectItem:
        op = c[0]
        if len(c) == 1:
            return _select_item(op, None, op.span, ast.NO_SPAN)
        alias = c[2]
        name = alias.payload if alias.type == "STRING" else str(alias)
        return ast.SelectItem(op, name, span=_sp(op, alias), alias_span=_sp(alias))

    @staticmethod
    def _kw(tok: Any, name: str) -> tuple[str, ast.Span]:
        return (name, _sp(tok))

    def from_clause(self, c: list[Any]) -> tuple[str, Any, Any]:
        sources = tuple(_source(x) for x in c[1].items())
        joins: tuple[ast.Join, ...] = c[2].items() if len(c) > 2 else ()
        join_span = ast.Span(joins[0].span.start, joins[0].span.start + 4) if joins else None
        return ("from", self._kw(c[0], "FROM"), (sources, joins, join_span))

    def join_clause(self, c: list[Any]) -> ast.Join:
        sources = tuple(_source(x) for x in c[1].items())
        return ast.Join(sources, c[-4].payload, c[-1], span=_sp(c[0], c[-1]),
                        seconds_span=_sp(c[-4]))

    def window_where(self, c: list[Any]) -> list[Any]:
        return list(c)

    where_window = window_where

    def order_limit(self, c: list[Any]) -> list[Any]:
        return list(c)

    limit_order = order_limit

    def time_window(self, c: list[Any]) -> tuple[str, Any, Any]:
        length = c[1]
        every = c[2] if len(c) > 2 else c[1]
        node = ast.TimeWindow(length.payload, every.payload, span=_sp(c[0], c[-1]),
                              length_span=_sp(length), every_span=_sp(every))  # fmt: skip
        return ("window", self._kw(c[0], "WINDOW"), node)

    def count_window(self, c: list[Any]) -> tuple[str, Any, Any]:
        node = ast.CountWindow(c[1].payload, span=_sp(c[0], c[1]), size_span=_sp(c[1]))
        return ("window", self._kw(c[0], "WINDOW"), node)

    def where_clause(self, c: list[Any]) -> tuple[str, Any, Any]:
        return ("where", self._kw(c[0], "WHERE"), c[1])

    def having_clause(self, c: list[Any]) -> tuple[str, Any, Any]:
        return ("having", self._kw(c[0], "HAVING"), c[1])

    def group_clause(self, c: list[Any]) -> tuple[str, Any, Any]:
        return ("group", self._kw(c[0], "GROUP BY"), c[1].items())

    def anomaly_clause(self, c: list[Any]) -> tuple[str, Any, Any]:
        node = ast.Anomaly(c[2], c[3].payload, c[4].payload, span=_sp(c[0], c[4]))
        return ("anomaly", self._kw(c[0], "ANOMALY"), node)

    def order_clause(self, c: list[Any]) -> tuple[str, Any, Any]:
        return ("order", self._kw(c[0], "ORDER BY"), c[1].items())

    def order_key(self, c: list[Any]) -> ast.OrderKey:
        op = c[0]
        desc = len(c) > 1 and c[1].type == "DESC"
        return ast.OrderKey(op, desc, span=_sp(op, c[-1]))

    def limit_clause(self, c: list[Any]) -> tuple[str, Any, Any]:
        return ("limit", self._kw(c[0], "LIMIT"), c[1])

    def sample_object(self, c: list[Any]) -> tuple[str, Any, Any]:
        return ("sample", self._kw(c[0], "SAMPLE"), c[1].payload)

    def sample_percentage(self, c: list[Any]) -> tuple[str, Any, Any]:
        return ("sample", self._kw(c[0], "SAMPLE"), c[-1].payload)

    # ---------------------------------------------------------- conditions

    def condition(self, c: list[Any]) -> Any:
        seq = c[0]
        return seq.item if seq.prev is None else self._flat(seq.items(), ast.Or)

    def conjunction(self, c: list[Any]) -> Any:
        seq = c[0]
        return seq.item if seq.prev is None else self._flat(seq.items(), ast.And)

    @staticmethod
    def _flat(items: tuple[Any, ...], cls: Any) -> Any:
        if len(items) == 1:
            return items[0]
        flat: list[Any] = []
        for x in items:
            if isinstance(x, cls):
                flat.extend(x.items)
            else:
                flat.append(x)
        return cls(tuple(flat), span=_sp(items[0], items[-1]))

    def not_condition(self, c: list[Any]) -> ast.Not:
        return ast.Not(c[2], span=_sp(c[0], c[3]))

    def paren_condition(self, c: list[Any]) -> Any:
        return c[1]

    def bool_condition(self, c: list[Any]) -> ast.BoolCondition:
        return ast.BoolCondition(c[0].type == "TRUE", span=_sp(c[0]))

    def comparison(self, c: list[Any]) -> ast.Comparison:
        left, op, right = c  # two operand nodes around a token
        return _comparison(left, op.payload, right, _span(left.span.start, right.span.end),
                           _span(op.start_pos, op.end_pos))  # fmt: skip

    def match(self, c: list[Any]) -> ast.Match:
        left, op, regex = c
        return ast.Match(left, regex.payload, op.payload == "!~", span=_sp(left, regex),
                         pattern_span=_sp(regex))  # fmt: skip

    def is_null(self, c: list[Any]) -> ast.IsNull:
        return ast.IsNull(c[0], False, span=_sp(c[0], c[-1]))

    def is_not_null(self, c: list[Any]) -> ast.IsNull:
        return ast.IsNull(c[0], True, span=_sp(c[0], c[-1]))

    def in_list(self, c: list[Any]) -> ast.In:
        return ast.In(c[0], c[3].items(), False, span=_sp(c[0], c[-1]))

    def not_in_list(self, c: list[Any]) -> ast.In:
        return ast.In(c[0], c[4].items(), True, span=_sp(c[0], c[-1]))

    # ---------------------------------------------------------- operands

    def name(self, c: list[Any]) -> ast.Property:
        tok = c[0]
        return _property((tok.value,), _span(tok.start_pos, tok.end_pos))

    def path(self, c: list[Any]) -> ast.Property:
        return ast.Property(c[0].payload, span=_sp(c[0]))

    def prefix(self, c: list[Any]) -> ast.PrefixSelector:
        return ast.PrefixSelector(c[0].payload, span=_sp(c[0]))

    def literal(self, c: list[Any]) -> ast.Literal:
        tok = c[0]
        t = tok.type
        value: ast.LiteralValue
        if t in ("STRING", "NUMBER"):
            value = tok.payload
        elif t == "NULL":
            value = None
        else:
            value = t == "TRUE"
        return _literal(value, _span(tok.start_pos, tok.end_pos))

    def negated_name(self, c: list[Any]) -> ast.Negation:
        return ast.Negation(self.name(c[1:]), span=_sp(c[0], c[1]))

    def negated_path(self, c: list[Any]) -> ast.Negation:
        return ast.Negation(self.path(c[1:]), span=_sp(c[0], c[1]))

    def negated_literal(self, c: list[Any]) -> ast.Negation:
        return ast.Negation(c[1], span=_sp(c[0], c[1]))

    def call(self, c: list[Any]) -> ast.Call:
        name_tok, rpar = c[0], c[-1]
        args: list[Any] = []
        distinct = False
        for k, a in enumerate(c[2].items() if len(c) > 3 else ()):
            if isinstance(a, tuple):  # ("distinct", operand)
                distinct = distinct or k == 0
                args.append(a[1])
            else:
                args.append(a)
        start = name_tok.start_pos
        return _call(name_tok.payload, tuple(args), distinct, _span(start, rpar.end_pos),
                     _span(start, name_tok.end_pos))  # fmt: skip

    def star_argument(self, c: list[Any]) -> ast.Star:
        return ast.STAR

    def distinct_argument(self, c: list[Any]) -> tuple[str, Any]:
        return ("distinct", c[1])

    def distinct_star_argument(self, c: list[Any]) -> tuple[str, Any]:
        return ("distinct", ast.STAR)


_TABLES_LOCK = threading.Lock()
_TABLES: lalr.Tables | None = None


def _tables() -> lalr.Tables:
    """The LALR tables (see ``lalr.py``), built once, under a lock: threads parsing for the
    first time at the same moment must share one set of rule objects."""
    global _TABLES
    tables = _TABLES
    if tables is not None:
        return tables
    with _TABLES_LOCK:
        if _TABLES is None:
            _TABLES = lalr.load("mantis_py.query.syntax", "grammar.lark", _Builder())
        return _TABLES


# ------------------------------------------------------------------ the parse


def parse(text: str) -> ast.Query:
    """Parse MQL text into an :class:`ast.Query` (spans, ``clause_spans`` and ``text`` filled).

    Raises only :class:`~mantis_py.errors.QueryError` subclasses: E1xx
    (:class:`~mantis_py.errors.QuerySyntaxError`) and E301–E305, E307
    (:class:`~mantis_py.errors.QueryLimitError`). Sample-object and percentage problems
    (E212/E213) are not raised: they are stored in ``Query.sample.problem`` for the analyzer.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_QUERY_BYTES:
        raise query_error("E301", f"the query is {size:,} bytes; the limit is 16,384", text, 0, 0)
    if not text.strip(WHITESPACE):
        raise query_error("E100", "the query is empty", text, 0, 0,
                          hint="start with select * from <app>")  # fmt: skip
    try:
        q = _Parse(text).run()
    except QueryError:
        raise
    except lalr.DriverError as exc:  # pragma: no cover - a grammar/driver bug, never user input
        raise query_error("E102", f"the query cannot be read ({type(exc).__name__})", text, 0,
                          0) from exc  # fmt: skip
    _check_budget(q, text)
    return q


MAX_SELECT_ITEMS = 250
"""Complexity budget (E308): select items (the compiled row builder grows with them)."""
MAX_GROUP_KEYS = 32
"""Complexity budget (E308): GROUP BY keys."""


def _check_budget(q: ast.Query, text: str) -> None:
    """E308: the parts of the complexity budget that need the tree (tokens and regex literals
    are counted by the tokenizer)."""
    for items, limit, what in ((q.items, MAX_SELECT_ITEMS, "select items"),
                               (q.group_by, MAX_GROUP_KEYS, "GROUP BY keys")):
        if len(items) > limit:
            span = items[limit].span
            raise query_error("E308", f"the query has more than {limit} {what}", text,
                              span.start, span.end - span.start,
                              hint="split it into smaller queries")  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """What feeding a fixed sequence of terminals does from a fixed top of the state stack:
    ``choices[k]`` is the action row the k-th terminal is classified against, ``steps[k]`` the
    reductions it triggers (``(nonterminal, length, callback name or None)``), and ``loops``
    whether the state stack ends exactly as it started (so the sequence may repeat)."""

    choices: tuple[dict[str, Any], ...]
    steps: tuple[tuple[tuple[str, int, str | None], ...], ...]
    loops: bool


def _simulate(tables: lalr.Tables, key: tuple[int, ...], types: tuple[str, ...]) -> _Plan | None:
    """Feed ``types`` to the parse table from the states ``key`` (the top of the stack) without
    building anything; None when a terminal is not accepted or a reduction reaches below
    ``key`` (what happens there depends on states not in the key)."""
    actions, gotos = tables.actions, tables.gotos
    stack = list(key)
    choices: list[dict[str, Any]] = []
    steps: list[tuple[tuple[str, int, str | None], ...]] = []
    for terminal in types:
        choices.append(actions[stack[-1]])
        done: list[tuple[str, int, str | None]] = []
        while True:
            act = actions[stack[-1]].get(terminal)
            if act is None:
                return None
            if act[0]:
                stack.append(act[1])
                break
            size, origin, callback = act[1]
            if size >= len(stack):
                return None
            del stack[len(stack) - size :]
            done.append((origin, size, None if callback is None else
                         getattr(callback, "__name__", "?")))  # fmt: skip
            stack.append(gotos[stack[-1]][origin])
        steps.append(tuple(done))
    return _Plan(tuple(choices), tuple(steps), stack == list(key))


_PLANS: dict[tuple[tuple[int, ...], tuple[str, ...]], _Plan | None] = {}


def _plan(key: tuple[int, ...], types: tuple[str, ...]) -> _Plan | None:
    """:func:`_simulate`, cached (the tables never change once built)."""
    try:
        return _PLANS[(key, types)]
    except KeyError:
        plan = _PLANS[(key, types)] = _simulate(_tables(), key, types)
        return plan


_Steps = tuple[tuple[tuple[str, int, str | None], ...], ...]


def _operand_steps(t: str) -> tuple[tuple[str, int, str | None], ...]:
    """The reductions that turn a simple operand token of type ``t`` into an operand."""
    if t == "NAME":
        return (("operand", 1, "name"),)
    if t == "PATH":
        return (("operand", 1, "path"),)
    return (("literal", 1, "literal"), ("operand", 1, None))  # NUMBER, STRING


def _condition_steps(lt: str, rt: str, sep: str) -> _Steps:
    """``lt CMP_OP rt sep`` after ``sep``: a comparison appended to the OR (or AND) list."""
    tail = (("and_seq", 1, "_seq"), ("conjunction", 1, "conjunction"), ("or_seq", 3, "_seq")) \
        if sep == "OR" else (("and_seq", 3, "_seq"),)
    cmp = (("predicate", 3, "comparison"), ("factor", 1, None))
    return ((), _operand_steps(lt), (), _operand_steps(rt) + cmp + tail)


def _select_steps(types: tuple[str, ...]) -> _Steps:
    """A select item of the shape ``types`` (see :meth:`_Parse.select_items`) appended to the
    select list."""
    item = (("select_item", 1, "select_item"), ("select_seq", 3, "<lambda>"))
    if len(types) == 2:
        return ((), _operand_steps(types[0]) + item)
    at = types[2]
    first = (("call_argument", 1, "star_argument"),) if at == "STAR" else (
        *_operand_steps(at), ("call_argument", 1, None))  # fmt: skip
    first += (("first_argument", 1, None), ("argument_seq", 1, "_seq"))
    tail = (("call", 4, "call"), ("operand", 1, None), *item)
    if len(types) == 5:
        return ((), (), (), first, tail)
    second = (*_operand_steps(types[4]), ("call_argument", 1, None), ("argument_seq", 3, "<lambda>"))
    return ((), (), (), first, (), second, tail)


def _fits(plan: _Plan | None, steps: _Steps) -> bool:
    """The plan repeats, does ``steps``, and no word in it could be read as a source."""
    return (
        plan is not None and plan.loops and plan.steps == steps
        and not any("SOURCE" in c for c in plan.choices)
    )  # fmt: skip


_FITS: dict[tuple[str, tuple[int, ...], tuple[str, ...]], bool] = {}


def _run_fits(family: str, key: tuple[int, ...], types: tuple[str, ...]) -> bool:
    """Whether an item of the shape ``types`` of a run of ``family`` ("in", "condition" or
    "select") may be taken directly with ``key`` on top of the state stack (cached: one table
    walk per family, top of stack and shape)."""
    try:
        return _FITS[(family, key, types)]
    except KeyError:
        pass
    if family == "condition":
        steps = _condition_steps(types[0], types[2], types[3])
    elif family == "in":
        steps = ((), (*_operand_steps(types[0]), ("operand_seq", 3, "<lambda>")))
    else:
        steps = _select_steps(types)
    ok = _FITS[(family, key, types)] = _fits(_plan(key, types), steps)
    return ok


_NOT_PLAIN = frozenset([*KEYWORDS, *_LITERAL_WORDS, *FUNCTIONS])
"""Words (lower case) that classify_word may read as something other than a property name."""


class _Parse:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks: list[RawToken] = tokenize(text)
        self.end = len(text.rstrip(WHITESPACE))
        self.hist: list[lalr.Tok] = []
        self.parens: list[list[Any]] = []  # [start, kind ("in"/"call"/"cond"), commas]
        self.clauses: dict[str, int] = {}  # clause name -> start offset of its first keyword
        self.clause_seq: list[str] = []

    # ---------------------------------------------------------- driver

    def run(self) -> ast.Query:
        toks = self.toks
        n = len(toks)
        last = toks[-1]
        if last.kind == "ERROR" and last.error is not None and last.error.code == "E308":
            raise last.error  # over the complexity budget: not worth parsing what came before
        first = toks[0]
        if first.kind == "ERROR":
            assert first.error is not None
            raise first.error
        if not (first.kind == "WORD" and first.text.lower() == "select"):
            raise self.e103(first)
        tables = _tables()
        states = tables.actions
        gotos = tables.gotos
        state_stack: list[Any] = [tables.start_state]
        value_stack: list[Any] = []

        text, hist, parens, new_token = self.text, self.hist, self.parens, lalr.new_token

        def state() -> lalr.Snapshot:
            return lalr.Snapshot(tables, state_stack, value_stack)

        i = 0
        while i < n:
            raw = toks[i]
            choices = states[state_stack[-1]]
            kind = raw.kind
            if kind == "PUNCT":  # the common kinds classified inline (see classify)
                ttype, payload, used = _PUNCT[raw.value], raw.value, 1
            elif kind == "WORD":
                if raw.number is not None and "SOURCE" not in choices:
                    ttype, payload, used = "NUMBER", raw.number, 1  # as classify_word reads it
                else:
                    ttype, payload, used = self.classify_word(i, raw, choices)
            elif kind == "ERROR":
                assert raw.error is not None
                raise raw.error
            else:
                ttype, payload, used = self.classify(i, raw, choices)
            if ttype not in choices:
                raise self.fail(i, ttype, state(), used)
            end = toks[i + used - 1].end if used > 1 else raw.end
            tok = new_token(ttype, text[raw.start : end], raw.start, end, payload)
            if parens and parens[-1][2] >= MAX_IN_ITEMS:
                self.check_in_list(tok)
            # lark's LALR step (ParserState.feed_token), inlined: reduce, then shift `tok`
            while True:
                action = states[state_stack[-1]].get(ttype)
                if action is None:
                    raise self.fail(i, ttype, state(), used)
                if action[0]:  # shift
                    state_stack.append(action[1])
                    value_stack.append(tok)
                    break
                size, origin, callback = action[1]
                if callback is None:  # an inlined one-symbol rule: the value stays as it is
                    state_stack[-1] = gotos[state_stack[-2]][origin]
                elif size == 1:
                    value_stack[-1] = callback([value_stack[-1]])
                    state_stack[-1] = gotos[state_stack[-2]][origin]
                else:
                    if size:
                        children = value_stack[-size:]
                        del state_stack[-size:]
                        del value_stack[-size:]
                    else:
                        children = []
                    value_stack.append(callback(children))
                    state_stack.append(gotos[state_stack[-1]][origin])
            if ttype in _TRACKED and ttype != "_COMMA":
                self.track(ttype, tok)  # before hist.append: it reads the token before `tok`
            hist.append(tok)
            i += used
            if ttype == "_COMMA":
                if parens and parens[-1][1] == "in":  # one more item in the IN list
                    parens[-1][2] += 1
                    if i + 1 < n:
                        i = self.in_items(i, state_stack, value_stack)
                elif i + 1 < n:
                    i = self.select_items(i, state_stack, value_stack)
            if (ttype == "OR" or ttype == "AND") and i + 3 < n:
                i = self.condition_items(i, ttype, state_stack, value_stack)
        # the end of the query: reduce until the start rule is complete
        end_state = tables.end_state
        while True:
            action = states[state_stack[-1]].get("$END")
            if action is None or action[0]:
                raise self.fail(n, "$END", state(), 0)
            size, origin, callback = action[1]
            if callback is None:
                state_stack[-1] = gotos[state_stack[-2]][origin]
            else:
                if size:
                    children = value_stack[-size:]
                    del state_stack[-size:]
                    del value_stack[-size:]
                else:
                    children = []
                value_stack.append(callback(children))
                state_stack.append(gotos[state_stack[-1]][origin])
            if state_stack[-1] == end_state:
                break
        q = value_stack[-1]
        assert isinstance(q, ast.Query)
        return dataclasses.replace(q, text=self.text, span=ast.Span(q.span.start, self.end))

    # ---------------------------------------------------------- runs of list items
    #
    # Long lists are where the time goes: IN lists, select lists, and runs of comparisons
    # joined by one connective. After a separator (',' / AND / OR) the state stack may be back
    # where it was after the previous one; then each further item of a common shape only
    # appends one node to the list on the stack. The three methods below take such items
    # directly, after checking on the parse table (:func:`_simulate`, cached per top of the
    # stack and token shape) that feeding the tokens one by one would do exactly that:
    # classify each word against the same action row, run the expected reductions, and end
    # in the same states. They build the nodes the reduction callbacks would build, leave
    # ``hist``, ``parens`` and the stacks as the generic loop would, and stop (returning
    # where the generic loop resumes) at the first token that does not fit, so anything
    # unusual, and every error, goes through the generic loop.

    def in_items(self, i: int, state_stack: list[Any], value_stack: list[Any]) -> int:
        """IN-list items after a ',' (``toks[i]`` on): runs of ``literal ,`` (a number or a
        string); stops at the list's last item or before the 1,001st (E303 is raised there)."""
        if len(state_stack) < 3:
            return i
        key = (state_stack[-3], state_stack[-2], state_stack[-1])
        if not (_run_fits("in", key, ("NUMBER", "_COMMA"))
                and _run_fits("in", key, ("STRING", "_COMMA"))):  # fmt: skip
            return i
        toks, parens = self.toks, self.parens
        n = len(toks)
        count = parens[-1][2]
        seq = value_stack[-2]
        literal, span, cell = _literal, _span, _Seq
        j = i
        while j + 1 < n and count < MAX_IN_ITEMS:
            comma = toks[j + 1]
            if comma.kind != "PUNCT" or comma.value != ",":
                break
            raw = toks[j]
            kind = raw.kind
            if kind == "WORD":
                value = raw.number  # a word read as a number here (classify_word)
                if value is None:
                    break
            elif kind == "STRING":
                value = raw.value
            else:
                break
            seq = cell(seq, literal(value, span(raw.start, raw.end)))
            count += 1
            j += 2
        if j == i:
            return i
        last = toks[j - 2]
        ltype, payload = ("NUMBER", last.number) if last.kind == "WORD" else ("STRING", last.value)
        self.finish_run(j, value_stack, seq, lalr.new_token(ltype, last.text, last.start, last.end,
                                                            payload))  # fmt: skip
        parens[-1][2] = count
        return j

    def finish_run(self, j: int, value_stack: list[Any], seq: _Seq, last: lalr.Tok) -> None:
        """The stacks and ``hist`` after a run that ended with ``last`` and a separator."""
        sep = self.toks[j - 1]
        types = _PUNCT if sep.kind == "PUNCT" else _OPS
        ttype = types[sep.value] if sep.kind != "WORD" else KEYWORDS[sep.text.lower()]
        payload = sep.value if sep.kind != "WORD" else None
        sep_tok = lalr.new_token(ttype, sep.text, sep.start, sep.end, payload)
        self.hist.append(last)
        self.hist.append(sep_tok)
        value_stack[-2] = seq
        value_stack[-1] = sep_tok

    def operand_type(self, j: int) -> str | None:
        """The terminal of ``toks[j]`` when it is a simple operand (a plain name, a path, a
        number or a string) that is not followed by '('; None otherwise. A plain name is read
        as NAME wherever the grammar accepts NAME and not SOURCE (see classify_word)."""
        raw = self.toks[j]
        kind = raw.kind
        if kind == "WORD":
            if raw.number is not None:
                return "NUMBER"
            w = raw.text
            if raw.number_error is not None or w[-1] == "%" or w[0] == "|" \
                    or w.lower() in _NOT_PLAIN:
                return None
            nxt = self.toks[j + 1] if j + 1 < len(self.toks) else None
            if nxt is not None and nxt.kind == "PUNCT" and nxt.value == "(":
                return None
            return "NAME"
        if kind == "STRING" or kind == "PATH":
            return kind
        return None

    def operand_node(self, j: int, ttype: str) -> Any:
        """The node the reductions build for the simple operand ``toks[j]`` of type ``ttype``."""
        raw = self.toks[j]
        span = _span(raw.start, raw.end)
        if ttype == "NAME":
            return _property((raw.text,), span)
        if ttype == "PATH":
            return _property(raw.value, span)
        return _literal(raw.number if ttype == "NUMBER" else raw.value, span)

    def operand_tok(self, j: int, ttype: str) -> lalr.Tok:
        raw = self.toks[j]
        payload = raw.number if ttype == "NUMBER" else raw.text if ttype == "NAME" else raw.value
        return lalr.new_token(ttype, raw.text, raw.start, raw.end, payload)

    def condition_items(
        self, i: int, sep: str, state_stack: list[Any], value_stack: list[Any]
    ) -> int:
        """After AND / OR: runs of ``operand op operand sep`` (a comparison of simple operands,
        then the same connective)."""
        if len(state_stack) < 3:
            return i
        key = (state_stack[-3], state_stack[-2], state_stack[-1])
        toks = self.toks
        n = len(toks)
        seq = value_stack[-2]
        if not isinstance(seq, _Seq):
            return i
        comparison, span, cell = _comparison, _span, _Seq
        operand_type, operand_node = self.operand_type, self.operand_node
        word_sep = sep.lower()
        fits: dict[tuple[str, str], bool] = {}  # (left type, right type) -> _run_fits
        j = i
        last: tuple[int, str] | None = None
        while j + 3 < n:
            op, raw_sep = toks[j + 1], toks[j + 3]
            if op.kind != "OP" or _OPS[op.value] != "CMP_OP":
                break
            if raw_sep.kind == "OP":
                if raw_sep.value != sep:
                    break
            elif raw_sep.kind != "WORD" or raw_sep.text.lower() != word_sep:
                break
            lt, rt = operand_type(j), operand_type(j + 2)
            if lt is None or rt is None or lt == "NUMBER" or lt == "STRING":
                break
            ok = fits.get((lt, rt))
            if ok is None:
                ok = fits[(lt, rt)] = _run_fits("condition", key, (lt, "CMP_OP", rt, sep))
            if not ok:
                break
            if raw_sep.kind == "WORD" and j + 4 < n and toks[j + 4].value == "(":
                break  # `or (`: classify_word would look for a call
            left, right = operand_node(j, lt), operand_node(j + 2, rt)
            seq = cell(seq, comparison(left, op.value, right, span(left.span.start, right.span.end),
                                       span(op.start, op.end)))  # fmt: skip
            last = (j + 2, rt)
            j += 4
        if last is None:
            return i
        self.finish_run(j, value_stack, seq, self.operand_tok(*last))
        return j

    def select_items(self, i: int, state_stack: list[Any], value_stack: list[Any]) -> int:
        """After a ',' of a select list: runs of ``operand ,`` and ``f(x) ,`` / ``f(*) ,`` /
        ``f(x, number) ,`` with simple operands, no alias."""
        if len(state_stack) < 3 or self.parens:
            return i
        key = (state_stack[-3], state_stack[-2], state_stack[-1])
        toks = self.toks
        n = len(toks)
        seq = value_stack[-2]
        if not isinstance(seq, _Seq):
            return i
        item, cell, no_span = _select_item, _Seq, ast.NO_SPAN
        j = i
        last: lalr.Tok | None = None
        while j + 1 < n:
            raw = toks[j]
            nxt = toks[j + 1]
            if nxt.kind == "PUNCT" and nxt.value == ",":  # operand ,
                t = self.operand_type(j)
                if t is None:
                    break
                types: tuple[str, ...] = (t, "_COMMA")
                if not _run_fits("select", key, types):
                    break
                op = self.operand_node(j, t)
                seq = cell(seq, item(op, None, op.span, no_span))
                last = self.operand_tok(j, t)
                j += 2
                continue
            if not (raw.kind == "WORD" and nxt.kind == "PUNCT" and nxt.value == "("
                    and raw.text.lower() in _FUNCTION_SET and j + 4 < n):  # fmt: skip
                break
            a = toks[j + 2]
            at = "STAR" if a.kind == "PUNCT" and a.value == "*" else self.operand_type(j + 2)
            if at is None:
                break
            close = toks[j + 3]
            k = j + 4
            second = None
            if close.kind == "PUNCT" and close.value == "," and at != "STAR" and j + 6 < n:
                second = self.operand_type(j + 4)  # f(x, 99.5)
                if second is None:
                    break
                close = toks[j + 5]
                k = j + 6
            if not (close.kind == "PUNCT" and close.value == ")" and toks[k].kind == "PUNCT"
                    and toks[k].value == ","):  # fmt: skip
                break
            middle = ("_COMMA", second) if second is not None else ()
            types = ("FUNC_NAME", "LPAR", at, *middle, "RPAR", "_COMMA")
            if not _run_fits("select", key, types):
                break
            args: tuple[Any, ...] = (ast.STAR if at == "STAR" else self.operand_node(j + 2, at),)
            if second is not None:
                args += (self.operand_node(j + 4, second),)
            name = raw.text.lower()
            call = _call(name, args, False, _span(raw.start, close.end), _span(raw.start, raw.end))
            seq = cell(seq, item(call, None, call.span, no_span))
            last = lalr.new_token("RPAR", close.text, close.start, close.end, ")")
            j = k + 1
        if last is None:
            return i
        self.finish_run(j, value_stack, seq, last)
        return j

    # ---------------------------------------------------------- classification

    def classify(self, i: int, raw: RawToken, choices: dict[str, Any]) -> tuple[str, Any, int]:
        """(terminal, payload, raw tokens used) for the raw token at ``i``."""
        kind = raw.kind
        if kind == "WORD":
            return self.classify_word(i, raw, choices)
        if kind == "PUNCT":
            return _PUNCT[raw.value], raw.value, 1
        if kind == "OP":
            return _OPS[raw.value], raw.value, 1
        if kind == "BAD":
            return "BAD", None, 1
        if kind == "STRING" and "SOURCE" in choices:
            return "STRING", raw.value, 1
        return kind, raw.value, 1  # STRING PATH PREFIX REGEX SAMPLE_OBJECT

    def next_raw(self, i: int) -> RawToken | None:
        return self.toks[i + 1] if i + 1 < len(self.toks) else None

    def classify_word(self, i: int, raw: RawToken, choices: dict[str, Any]) -> tuple[str, Any, int]:
        w = raw.text
        lw = w.lower()
        if "SOURCE" in choices:
            return "SOURCE", w, 1
        if raw.number is not None or raw.number_error is not None:
            if raw.number_error is not None:
                raise raw.number_error
            return "NUMBER", raw.number, 1
        if w[-1] == "%" or w[0] == "|":  # the rare shapes first
            rare = self.classify_rare(raw, choices, w)
            if rare is not None:
                return rare
        toks = self.toks
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        is_call = nxt is not None and nxt.kind == "PUNCT" and nxt.value == "("
        if is_call and "FUNC_NAME" in choices:
            if lw in _FUNCTION_SET:
                return "FUNC_NAME", lw, 1
            if lw not in KEYWORDS and lw not in _LITERAL_WORDS:
                raise self.e104(raw)
        lit = _LITERAL_WORDS.get(lw)
        if lit is not None:
            if lit in choices or "NAME" not in choices:
                return lit, None, 1
            return "NAME", w, 1
        kw = KEYWORDS.get(lw)
        if kw is not None:
            by = nxt is not None and nxt.kind == "WORD" and nxt.text.lower() == "by"
            if kw in choices:
                if kw in ("NOT", "DISTINCT") and "NAME" in choices:
                    starts = nxt is not None and (
                        nxt.kind in _OPERAND_KINDS
                        or (kw == "NOT" and nxt.kind == "PUNCT" and nxt.value == "(")
                        or (kw == "DISTINCT" and nxt.kind == "PUNCT" and nxt.value == "*")
                    )
                    if not starts:
                        return "NAME", w, 1
                if kw in ("GROUP_BY", "ORDER_BY"):
                    if not by:
                        raise self.e123(i, w)
                    return kw, None, 2
                return kw, None, 1
            if (
                lw == "distinct"
                and self.at_item_start()
                and nxt is not None
                and (nxt.kind in _OPERAND_KINDS or nxt.value == "(")
            ):
                raise self.e126(raw, nxt)
            if "NAME" in choices:
                return "NAME", w, 1
            return kw, None, (2 if by and kw in ("GROUP_BY", "ORDER_BY") else 1)
        return "NAME", w, 1

    def classify_rare(
        self, raw: RawToken, choices: dict[str, Any], w: str
    ) -> tuple[str, Any, int] | None:
        """:meth:`classify_word` for a word ending with ``%`` or starting with ``|``: a
        percentage, ``%`` after a number, or a count window; None for anything else."""
        if "PERCENTAGE" in choices and len(w) > 1 and w.endswith("%"):
            looks, value, err = classify_number(w[:-1], self.text, raw.start)
            if looks:
                if err is not None:
                    raise err
                assert value is not None
                return "PERCENTAGE", percentage_sample(w[:-1], value, self.text, raw.start,
                                                       raw.end), 1  # fmt: skip
        if w == "%" and "PERCENT" in choices and self.hist and self.hist[-1].type == "NUMBER":
            num = self.hist[-1]
            sample = percentage_sample(str(num), num.payload, self.text, num.start_pos, raw.end)
            return "PERCENT", sample, 1
        if "COUNT_WINDOW" in choices and len(w) > 2 and w[0] == "|" and w[-1] == "|":
            looks, value, err = classify_number(w[1:-1], self.text, raw.start + 1)
            if looks:
                if err is not None:
                    raise err
                if isinstance(value, int):
                    return "COUNT_WINDOW", value, 1
        return None

    def at_item_start(self) -> bool:
        """True right after SELECT or after a ',' of the select list."""
        if not self.hist:
            return False
        last = self.hist[-1].type
        return last == "SELECT" or (
            last == "_COMMA" and not self.parens and self.clause_seq[-1:] == ["SELECT"]
        )

    def check_in_list(self, tok: lalr.Tok) -> None:
        """E303: ``tok`` would start the 1,001st item of an IN list."""
        parens = self.parens
        if (
            parens and parens[-1][1] == "in" and parens[-1][2] >= MAX_IN_ITEMS
            and self.hist and self.hist[-1].type == "_COMMA"
        ):  # fmt: skip
            raise query_error("E303", "the IN list has more than 1,000 items", self.text,
                              tok.start_pos, tok.end_pos - tok.start_pos)  # fmt: skip

    def track(self, ttype: str, tok: lalr.Tok) -> None:
        """Bookkeeping after ``tok`` was accepted: open parentheses, IN items, clauses seen."""
        parens = self.parens
        if ttype == "LPAR":
            last = self.hist[-1].type if self.hist else ""
            kind = "in" if last == "IN" else "call" if last == "FUNC_NAME" else "cond"
            parens.append([tok.start_pos, kind, 0])
        elif ttype == "RPAR":
            if parens:
                parens.pop()
        elif ttype == "_COMMA":
            if parens and parens[-1][1] == "in":
                parens[-1][2] += 1
        elif ttype in _CLAUSE_TERMINALS:
            name = _CLAUSE_TERMINALS[ttype]
            self.clauses.setdefault(name, tok.start_pos)
            self.clause_seq.append(name)

    # ---------------------------------------------------------- errors

    def err(self, code: str, message: str, start: int, length: int, **kw: Any) -> QueryError:
        return query_error(code, message, self.text, start, length, **kw)

    def e103(self, raw: RawToken) -> QueryError:
        found = raw.text
        lw = found.lower()
        hint = None
        if lw in ("true", "false"):
            hint = f"write select * where {lw}"
        suggestion = suggest(found, ["SELECT"]) if raw.kind == "WORD" else None
        return self.err("E103", f"a query starts with SELECT, found '{describe_token(found)}'",
                        raw.start, raw.end - raw.start, expected=["SELECT"],
                        suggestion=suggestion, hint=hint)  # fmt: skip

    def e104(self, raw: RawToken) -> QueryError:
        return self.err("E104", f"unknown function {raw.text}()", raw.start, raw.end - raw.start,
                        suggestion=suggest(raw.text, FUNCTIONS),
                        hint="the functions are " + ", ".join(FUNCTIONS[:-1]) + " and tick")  # fmt: skip

    def e123(self, i: int, word: str) -> QueryError:
        nxt = self.next_raw(i)
        kw = word.upper()
        if nxt is None:
            return self.err("E123", f"expected BY after {kw}", self.end, 0, expected=["BY"])
        if nxt.kind == "ERROR":
            assert nxt.error is not None
            return nxt.error
        return self.err("E123", f"expected BY after {kw}", nxt.start, nxt.end - nxt.start,
                        expected=["BY"])  # fmt: skip

    def e126(self, raw: RawToken, nxt: RawToken) -> QueryError:
        a = nxt.text if nxt.kind in _OPERAND_KINDS else "a"
        return self.err("E126", "DISTINCT belongs inside an aggregate", raw.start,
                        raw.end - raw.start,
                        hint=f"count(DISTINCT {a}), list(DISTINCT {a}) or GROUP BY {a}")  # fmt: skip

    def pending_operand(self, ps: lalr.Snapshot) -> Any:
        """The operand just completed at ``ps`` (what a comparison operator would now follow)."""
        stack = lalr.probe(ps, lalr.new_token("CMP_OP", "==", self.end, self.end, "=="))
        if stack is None:
            return None
        node = stack[-2] if len(stack) >= 2 else None
        return node if isinstance(node, ast.Property | ast.PrefixSelector | ast.Literal |
                                  ast.Negation | ast.Call) else None  # fmt: skip

    def fail(self, i: int, ttype: str, ps: lalr.Snapshot, used: int) -> QueryError:
        """The one error to report when the token at ``i`` (``len(toks)``: the end) fails."""
        toks = self.toks
        at_end = i >= len(toks)
        raw = None if at_end else toks[i]
        if raw is None:
            start, length, found = self.end, 0, ""
        else:
            stop = toks[min(i + max(used, 1), len(toks)) - 1].end
            start, length, found = raw.start, stop - raw.start, self.text[raw.start : stop]
        accepted = lalr.accepts(ps)
        hist = self.hist
        last = hist[-1] if hist else None
        prev = hist[-2] if len(hist) >= 2 else None
        word = raw.text.lower() if raw is not None and raw.kind == "WORD" else None

        # a ')' without '('
        if raw is not None and raw.kind == "PUNCT" and raw.value == ")" and not self.parens:
            return self.err("E122", "')' has no matching '('", start, 1)
        # SAMPLE arguments
        if last is not None and (
            last.type == "SAMPLE" or (last.type == "NUMBER" and prev and prev.type == "SAMPLE")
        ):
            if last.type == "NUMBER":
                start, length = last.start_pos, last.end_pos - last.start_pos
            return self.err("E120", "SAMPLE needs an object {…} or a percentage such as 5%",
                            start, length)  # fmt: skip
        # '*' mixed with select items
        if (
            last is not None and last.type == "STAR" and prev and prev.type == "SELECT"
            and ttype in ("_COMMA", "AS")
        ):  # fmt: skip
            s = last.start_pos
            return self.err("E114", "'*' must be the only item of the select list", s, 1)
        if ttype == "STAR" and self.at_item_start() and last and last.type == "_COMMA":
            return self.err("E114", "'*' must be the only item of the select list", start, 1)
        # a select item is missing
        if ttype == "_COMMA" and self.at_item_start():
            return self.err("E113", "a select item is missing", start, 1,
                            hint="remove the trailing ','; a property named like a keyword "
                                 "is written e['from']")  # fmt: skip
        if (
            last is not None and last.type == "NAME" and prev is not None
            and (prev.type == "SELECT" or (prev.type == "_COMMA" and self.clause_seq == ["SELECT"]
                                           and not self.parens))
            and str(last).lower() in _CLAUSE_WORDS
        ):  # fmt: skip
            w = str(last)
            return self.err("E113", "a select item is missing", last.start_pos, len(w),
                            hint="remove the trailing ','; a property named like a keyword "
                                 f"is written e['{w.lower()}']")  # fmt: skip
        # a clause keyword given twice or out of order
        clause = _CLAUSE_WORDS.get(word) if word is not None else None
        boundary = "$END" in accepted or any(t in accepted for t in _CLAUSE_TERMINALS)
        if clause is not None and boundary:
            if clause in self.clauses:
                ln, col = line_column(self.text, self.clauses[clause])
                first = f"the first one is at line {ln}, column {col}"
                if clause in ("WHERE", "HAVING"):
                    first += "; combine the conditions with AND"
                return self.err("E124", f"{clause} appears twice", start, length, hint=first)
            later = [c for c in self.clause_seq if CLAUSE_ORDER[c] > CLAUSE_ORDER[clause]]
            if later:
                return self.err("E125", f"{clause} cannot come after {later[-1]}", start, length,
                                hint=_CLAUSE_HINT)  # fmt: skip
        # an unclosed '('
        if (at_end or clause is not None) and self.parens and "RPAR" in accepted:
            return self.err("E122", "'(' is not closed", self.parens[-1][0], 1)
        # a bare operand used as a condition
        if "CMP_OP" in accepted and (
            at_end or clause is not None or ttype in ("AND", "OR", "RPAR")
        ):
            node = self.pending_operand(ps)
            if node is not None:
                otext = self.text[node.span.start : node.span.end]
                short = describe_token(otext)
                how = f"compare it, e.g. {short} == true or {short} != null"
                if isinstance(node, ast.Negation):  # already a boolean
                    how = f"compare it, e.g. {short} == true"
                return self.err("E118", f"'{short}' is not a condition", node.span.start,
                                node.span.length, hint=how)  # fmt: skip
        expected = _expected(accepted)
        if at_end:
            return self.err("E101", "the query ends too early: expected "
                            + _join_expected(expected), start, 0, expected=expected)  # fmt: skip
        assert raw is not None
        suggestion = None
        if raw.kind == "WORD":
            keywords = [s for s in expected if s.isupper() and s not in ("NOT IN",)]
            suggestion = suggest(raw.text, keywords)
        hint = raw.hint
        if raw.kind == "WORD" and (raw.text == "-" or (
            raw.text.startswith("-") and raw.number is not None
        )):  # fmt: skip
            hint = "MQL has no arithmetic; '-' joins words into one name"
        elif word in _TIME_WORDS and self.clause_seq[-1:] == ["WINDOW"]:
            hint = "window lengths are plain seconds"
        message = f"expected {_join_expected(expected)}, found '{describe_token(found)}'"
        return self.err("E102", message, start, length, expected=expected,
                        suggestion=suggestion, hint=hint)  # fmt: skip
