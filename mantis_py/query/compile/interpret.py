"""A slow, obviously correct tree-walking evaluator: the test oracle for ``compiler.py``.

Each function follows docs/mql.md line by line and calls only ``values`` helpers; there are no fast
paths. ``tests/query/test_interpret.py`` checks that compiled code agrees with it on generated
queries and events.
"""

from __future__ import annotations

from typing import Any

from ..semantics.names import literal_text
from ..semantics.regex import compile_regex, regex_matches
from ..semantics.values import (
    contains,
    equals,
    greater,
    greater_eq,
    less,
    less_eq,
    negate_operand,
    prefix_items,
    resolve,
    resolve_star,
)
from ..syntax import ast
from ..syntax.vocabulary import META_FIELDS

__all__ = ["Context", "eval_condition", "eval_operand", "project_plain"]

_OPS = {
    "==": equals,
    "!=": lambda a, b: not equals(a, b),
    "<": less,
    "<=": less_eq,
    ">": greater,
    ">=": greater_eq,
    "==+": contains,
}


class Context:
    """What an operand can see: the event, meta values (live), ``tick()``, and for output rows
    the column values and group key values, or the select items (plain ORDER BY aliases)."""

    def __init__(
        self,
        event: Any = None,
        meta: dict[str, Any] | None = None,
        tick: Any = None,
        live: bool = False,
        vals: Any = None,
        keys: Any = None,
        items: tuple[ast.SelectItem, ...] = (),
    ) -> None:
        self.event = event
        self.meta = meta or {}
        self.tick = tick
        self.live = live
        self.vals = vals
        self.keys = keys
        self.items = items


def _base(op: ast.OutputRef, ctx: Context) -> Any:
    return ctx.vals[op.index] if op.kind == "column" else ctx.keys[op.index]


def eval_operand(op: Any, ctx: Context) -> Any:
    """The value of a (non-star) operand."""
    if isinstance(op, ast.Property):
        segs = op.segments
        if ctx.live and len(segs) == 1 and segs[0] in META_FIELDS:
            return ctx.meta.get(segs[0])  # type: ignore[call-overload]
        return resolve(ctx.event, segs)
    if isinstance(op, ast.Literal):
        return op.value
    if isinstance(op, ast.Negation):
        return negate_operand(eval_operand(op.operand, ctx))
    if isinstance(op, ast.Call):
        return ctx.tick
    if isinstance(op, ast.OutputRef):
        if op.kind == "alias":
            return eval_operand(ctx.items[op.index].operand, ctx)
        return resolve(_base(op, ctx), op.rest)
    raise TypeError(op)


def _values(op: Any, ctx: Context) -> list[Any] | None:
    """The sequence of a star operand, or None for an ordinary one."""
    if isinstance(op, ast.Property) and op.has_star:
        return resolve_star(ctx.event, op.segments)
    if isinstance(op, ast.OutputRef) and any(isinstance(s, ast.Star) for s in op.rest):
        return resolve_star(_base(op, ctx), op.rest)
    return None


def eval_condition(c: Any, ctx: Context) -> bool:
    """True or false, per §3.5."""
    if isinstance(c, ast.And):
        return all(eval_condition(x, ctx) for x in c.items)
    if isinstance(c, ast.Or):
        return any(eval_condition(x, ctx) for x in c.items)
    if isinstance(c, ast.Not):
        return not eval_condition(c.condition, ctx)
    if isinstance(c, ast.BoolCondition):
        return c.value
    if isinstance(c, ast.Comparison):
        f = _OPS[c.op]
        right = eval_operand(c.right, ctx)
        seq = _values(c.left, ctx)
        if seq is not None:
            return any(f(v, right) for v in seq)
        return bool(f(eval_operand(c.left, ctx), right))
    if isinstance(c, ast.Match):
        hit = regex_matches(compile_regex(c.pattern), eval_operand(c.left, ctx))
        return not hit if c.negated else hit
    if isinstance(c, ast.IsNull):
        isnull = eval_operand(c.operand, ctx) is None
        return not isnull if c.negated else isnull
    if isinstance(c, ast.In):
        items = [eval_operand(x, ctx) for x in c.items]
        seq = _values(c.operand, ctx)
        if seq is not None:
            hit = any(equals(v, x) for v in seq for x in items)
        else:
            v = eval_operand(c.operand, ctx)
            hit = any(equals(v, x) for x in items)
        return not hit if c.negated else hit
    raise TypeError(c)


def project_plain(q: ast.Query, ctx: Context) -> dict[str, Any]:
    """A plain row, per the four steps of §3.6, written as plainly as possible."""
    if q.select_star:
        return ctx.event  # type: ignore[no-any-return]
    entries: list[tuple[tuple[str, ...], Any, bool]] = []  # (path, value, subsumable)
    for it in q.items:
        op = it.operand
        if isinstance(op, ast.PrefixSelector):
            for k, v in prefix_items(ctx.event, op.prefix):
                entries.append(((k,), v, True))
            continue
        v = eval_operand(op, ctx)
        if it.alias is not None:
            entries.append(((it.alias,), v, False))
        elif isinstance(op, ast.Property):
            path = tuple(s if isinstance(s, str) else str(s) for s in op.segments)
            entries.append((path, v, True))
        elif isinstance(op, ast.Literal):
            entries.append(((literal_text(op.value),), v, False))
        else:
            entries.append((("tick",), v, False))
    # 1. drop nulls
    entries = [en for en in entries if en[1] is not None]
    # alias / literal keys beat prefix-selector keys
    fixed = {p[0] for p, _, s in entries if not s}
    entries = [en for en in entries if not (en[2] and len(en[0]) == 1 and en[0][0] in fixed)]
    # 2. subsumption and collapse
    subs = [p for p, _, s in entries if s]
    kept: list[tuple[tuple[str, ...], Any]] = []
    seen: set[tuple[str, ...]] = set()
    for p, v, s in entries:
        if s:
            if p in seen or any(len(x) < len(p) and p[: len(x)] == x for x in subs):
                continue
            seen.add(p)
        kept.append((p, v))
    # 3. and 4. nest in order
    row: dict[str, Any] = {}
    made: list[int] = []
    for p, v in kept:
        d = row
        for k in p[:-1]:
            if k not in d or id(d[k]) not in made:
                d[k] = {}
                made.append(id(d[k]))
            d = d[k]
        d[p[-1]] = v
    return row
