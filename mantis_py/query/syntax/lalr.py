"""The lark adapter: the only module that imports lark.

``parser.py`` drives lark's LALR(1) tables by hand, one token at a time, so that each word can be
classified by what the grammar accepts at that point (keywords are not reserved). That needs
lark's parse table and its ``ParserState`` (lark 1.3: ``lark.parsers.lalr_analysis.Shift``,
``lark.parsers.lalr_parser_state``), which are not lark's documented public API; everything that
touches them is here, and ``pyproject.toml`` pins lark to the minor versions tested with it.

What the parser gets:

- :func:`load` -> :class:`Tables`: the state table (``state -> {terminal: (action, arg)}``), the
  start and end states, and ``id(rule) -> (length, nonterminal, callback)`` with the reduction
  callbacks bound to the parser's builder;
- :attr:`Tables.actions`: the same table with shifts and reductions resolved for the driver's
  inlined LALR step;
- :func:`new_token` (and :class:`Tok`): a token carrying a decoded ``payload``;
- :class:`Snapshot` plus :func:`accepts` and :func:`probe`: what the parser accepts in a state,
  and what it would hold after one more token (used only to build error messages);
- :data:`DriverError`: lark's base exception, for the one "cannot happen" path.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import copy
from dataclasses import dataclass
from importlib import resources
from typing import Any

from lark import Lark, Token
from lark.exceptions import LarkError, UnexpectedInput
from lark.lexer import Lexer
from lark.parsers.lalr_analysis import Shift
from lark.parsers.lalr_parser_state import ParseConf, ParserState

__all__ = ["DriverError", "Snapshot", "Tables", "Tok", "accepts", "load", "new_token", "probe"]

DriverError = LarkError
"""lark's base exception; user input never raises it (the parser checks each token first)."""


class Tok:
    """A token fed to the parser: terminal ``type``, source ``value`` (also its ``str``), offsets,
    and the decoded value (``payload``) of the raw token. A plain slotted object rather than a
    lark ``Token`` (a ``str`` subclass with a ``__dict__``): one is made per token, and lark's
    ``ParserState`` reads only ``type`` (and, with ``getattr`` defaults, positions for errors)."""

    __slots__ = ("end_pos", "payload", "start_pos", "type", "value")

    def __init__(self, ttype: str, text: str, start: int, end: int, payload: Any) -> None:
        self.type = ttype
        self.value = text
        self.start_pos = start
        self.end_pos = end
        self.payload = payload

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"Tok({self.type!r}, {self.value!r})"


new_token = Tok
"""``new_token(type, text, start, end, payload)`` -> :class:`Tok`."""

_NO_LEXER: Any = None  # tokens are fed by hand; ParserState never touches its lexer


class _NoLexer(Lexer):
    """Tokens are fed by hand; lark never lexes."""

    def __init__(self, lexer_conf: Any) -> None:
        pass

    def lex(self, lexer_state: Any, parser_state: Any) -> Any:  # pragma: no cover
        raise NotImplementedError


def _passthrough(rule: Any) -> bool:
    """True for an inlined one-symbol rule (``?operand: literal``): the reduction hands its one
    child up unchanged, so the driver only has to replace the top state (no callback, no list)."""
    if len(rule.expansion) != 1 or not rule.options.expand1 or rule.alias:
        return False
    sym = rule.expansion[0]
    if sym.is_term:
        return not sym.filter_out or bool(rule.options.keep_all_tokens)
    return not sym.name.startswith("_")


def _callback(rule: Any, builder: object) -> Any:
    """The reduction callback for one grammar rule, doing what lark's tree builder would do
    (drop ``_X`` terminals, splice ``_rule`` children, inline ``?rule`` with one child) with
    less overhead per reduction. ``builder`` has one method per rule name or alias."""
    f = getattr(builder, rule.alias or rule.origin.name, None)
    spec = [
        (i, not sym.is_term and sym.name.startswith("_"))
        for i, sym in enumerate(rule.expansion)
        if rule.options.keep_all_tokens or not (sym.is_term and sym.filter_out)
    ]
    expand1 = bool(rule.options.expand1) and not rule.alias
    if f is None and not (expand1 or rule.origin.name.startswith("_")):  # pragma: no cover
        raise AssertionError(f"no builder for rule {rule.origin.name}")
    if f is not None and len(spec) == len(rule.expansion) and not any(e for _, e in spec):
        if expand1:
            return lambda c: c[0] if len(c) == 1 else f(c)
        return f

    if not any(e for _, e in spec):  # only dropped tokens: pick the kept children, no splicing
        keep = tuple(i for i, _ in spec)
        if f is None:  # a `_rule` (spliced into its parent) or an inlined `?rule`
            if expand1:
                return lambda c: c[keep[0]] if len(keep) == 1 else [c[i] for i in keep]
            return lambda c: [c[i] for i in keep]
        g = f
        if expand1:
            return lambda c: c[keep[0]] if len(keep) == 1 else g([c[i] for i in keep])
        if len(keep) == 2:
            a, b = keep
            return lambda c: g([c[a], c[b]])
        return lambda c: g([c[i] for i in keep])

    def callback(c: list[Any]) -> Any:
        out: list[Any] = []
        for i, splice in spec:
            if splice:
                out.extend(c[i])
            else:
                out.append(c[i])
        if expand1 and len(out) == 1:
            return out[0]
        return out if f is None else f(out)

    return callback


@dataclass(frozen=True, slots=True)
class Tables:
    """The LALR tables with the builder's callbacks bound."""

    conf: ParseConf[Any]
    states: dict[int, dict[str, tuple[Any, Any]]]
    start_state: int
    end_state: int
    rules: dict[int, tuple[int, str, Callable[[list[Any]], Any]]]
    """``id(rule)`` -> (expansion length, nonterminal name, callback). Keyed by identity:
    hashing a lark Rule hashes its whole expansion."""
    actions: dict[int, dict[str, tuple[bool, Any]]]
    """:attr:`states` resolved for the driver loop: ``state -> {symbol: (True, next state)}``
    for a shift (or a goto on a nonterminal), ``(False, (length, nonterminal, callback))`` for
    a reduce; the same keys as :attr:`states`. ``callback`` is None for a rule that hands its
    one child up unchanged (an inlined ``?rule`` with one symbol)."""
    gotos: dict[int, dict[str, int]]
    """``state -> {nonterminal: next state}``: the gotos of :attr:`actions`, as plain ints."""


def load(package: str, grammar_file: str, builder: object) -> Tables:
    """Build the LALR(1) tables of ``grammar_file`` (a resource of ``package``), strict about
    conflicts, with reductions calling ``builder``."""
    grammar = resources.files(package).joinpath(grammar_file).read_text("utf-8")
    lark = Lark(grammar, parser="lalr", lexer=_NoLexer, strict=True)
    conf: ParseConf[Any] = copy(lark.parse_interactive("").parser_state.parse_conf)
    callbacks: Any = {rule: _callback(rule, builder) for rule in lark.rules}
    conf.callbacks = callbacks
    # the nonterminal as a plain str: lark's names are Token objects, and a dict lookup with a
    # Token key runs Token.__eq__ in Python on every reduction
    rules = {id(r): (len(r.expansion), str(r.origin.name), cb) for r, cb in callbacks.items()}
    passthrough = {id(r) for r in lark.rules if _passthrough(r)}

    def reduce(rule: Any) -> tuple[int, str, Any]:
        size, origin, cb = rules[id(rule)]
        return (size, origin, None if id(rule) in passthrough else cb)

    actions = {
        state: {
            str(sym): (True, arg) if action is Shift else (False, reduce(arg))
            for sym, (action, arg) in row.items()
        }
        for state, row in conf.states.items()
    }
    gotos = {
        state: {str(sym): arg for sym, (action, arg) in row.items() if not str(sym).isupper()}
        for state, row in conf.states.items()
    }
    return Tables(conf, conf.states, conf.start_state, conf.end_state, rules, actions, gotos)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The parser's stacks at one point (copied on use: probing never changes the parse)."""

    tables: Tables
    state_stack: list[Any]
    value_stack: list[Any]


def _state(snap: Snapshot, conf: ParseConf[Any]) -> ParserState[Any]:
    return ParserState(conf, _NO_LEXER, list(snap.state_stack), list(snap.value_stack))


def accepts(snap: Snapshot) -> set[str]:
    """The terminals that really advance the parser from ``snap`` (exact, unlike the LALR
    lookaheads of its state)."""
    conf = copy(snap.tables.conf)
    conf.callbacks = {}
    out: set[str] = set()
    for t in conf.states[snap.state_stack[-1]]:
        if not t.isupper():
            continue
        try:
            _state(snap, conf).feed_token(Token(t, ""), t == "$END")
        except (UnexpectedInput, AssertionError, LarkError):
            continue
        out.add(t)
    return out


def probe(snap: Snapshot, tok: Tok) -> list[Any] | None:
    """The value stack after feeding ``tok`` at ``snap`` (reductions run), or None when the
    grammar does not accept ``tok`` there."""
    st = _state(snap, snap.tables.conf)
    fed: Any = tok  # lark reads only .type (and positions, with defaults, for its errors)
    try:
        st.feed_token(fed)
    except (UnexpectedInput, AssertionError, LarkError):
        return None
    return list(st.value_stack)
