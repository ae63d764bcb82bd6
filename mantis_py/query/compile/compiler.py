"""Analysis -> Python source -> ``compile()`` -> the callables the engines run (STYLE.md rule 9).

Theory of operation:
- :func:`compile_query` walks the analysed AST and writes one small Python module as text: a
  ``where`` predicate, one getter per select item / aggregate argument, a group-key extractor, a
  HAVING predicate and ORDER BY key functions. The text names only what is in ``runtime.ENV`` plus
  bound constants ``c0``, ``c1`` … (literals, keys, path tuples, regexes, IN-sets): user text is
  never pasted into the source. ``CompiledQuery.source`` keeps the text for debugging.
- Event-side functions take ``(e, m, tk)``: the event dict, the meta values (live mode: ``_app``,
  ``_instance``, ``_zone``, ``_stream`` referenced as a bare name or one-segment path resolve to
  ``m``, never to the event) and the event's ``tick()`` in ms (None unless ``uses_tick``).
  Row-side functions (HAVING, aggregate ORDER BY) take ``(vals, keys)``: the output column values
  (hidden ones included) and the group key values as first seen.
- Specialised code for the common shapes keeps WHERE close to a hand-written loop: a literal on
  one side of a comparison becomes an inline type-checked test (``v == 500 and v.__class__ is not
  bool``), falling back to ``values.equals`` and friends only where types need it.
- Generated code may raise only on an implementation bug; engines wrap each event and count.
- Compiled queries are cached by ``(canonical, mode)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..semantics.analysis import Analysis
from ..semantics.names import literal_text
from ..semantics.regex import compile_regex
from ..semantics.values import group_key, int_text, prefix_items
from ..syntax import ast
from ..syntax.vocabulary import META_FIELDS
from .runtime import ENV

__all__ = [
    "META_FIELDS",
    "CompiledQuery",
    "ProjectionEntry",
    "compile_query",
]

EventFn = Callable[[Any, Any, Any], Any]
RowFn = Callable[[Any, Any], Any]

_MIRROR = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_GENERAL = {
    "==": "equals",
    "<": "less",
    "<=": "less_eq",
    ">": "greater",
    ">=": "greater_eq",
    "==+": "contains",
}


@dataclass(frozen=True, slots=True)
class ProjectionEntry:
    """One plain select item: ``kind`` is ``"P"`` (unaliased property: subsumable), ``"A"`` (alias,
    literal or ``tick()``: one fixed key) or ``"X"`` (prefix selector ``prefix``)."""

    kind: str
    path: tuple[str, ...] = ()
    getter: EventFn | None = None
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    """Everything an engine needs to evaluate one analysed query. See the module docstring."""

    analysis: Analysis
    source: str
    where: EventFn
    uses_tick: bool
    where_batch: EventFn | None = None
    scan_chunk: Callable[..., Any] | None = None
    # plain queries
    project: EventFn | None = None
    order_event: EventFn | None = None
    # aggregate queries
    group: EventFn | None = None
    args: tuple[EventFn | None, ...] = ()
    having: RowFn | None = None
    order_row: RowFn | None = None
    order_desc: tuple[bool, ...] = ()
    sticky_keys: EventFn | None = None
    constants: dict[str, Any] = field(default_factory=dict, repr=False)


# --------------------------------------------------------------------------- code generation


class _Gen:
    def __init__(self, mode: str) -> None:
        self.live = mode == "live"
        self.consts: dict[str, Any] = {}
        self.ntemp = 0
        self.uses_tick = False

    def const(self, value: Any) -> str:
        name = f"c{len(self.consts)}"
        self.consts[name] = value
        return name

    def temp(self) -> str:
        self.ntemp += 1
        return f"_t{self.ntemp}"

    # ---------------------------------------------------------------- operands

    def prop(self, segments: tuple[ast.Segment, ...], base: str = "e") -> str:
        if (
            base == "e"
            and self.live
            and len(segments) == 1
            and isinstance(segments[0], str)
            and segments[0] in META_FIELDS
        ):
            return f"m.get({self.const(segments[0])})"
        if len(segments) == 1 and isinstance(segments[0], str) and base == "e":
            return f"e.get({self.const(segments[0])})"
        if len(segments) == 2 and all(isinstance(s, str) for s in segments) and base == "e":
            t = self.temp()
            ka, kb = self.const(segments[0]), self.const(segments[1])
            return f"({t}.get({kb}) if ({t} := e.get({ka})).__class__ is dict else None)"
        if not segments:
            return base
        return f"resolve({base}, {self.const(tuple(segments))})"

    def operand(self, op: Any, ctx: str = "event", items: tuple[ast.SelectItem, ...] = ()) -> str:
        if isinstance(op, ast.Property):
            return self.prop(op.segments)
        if isinstance(op, ast.Literal):
            return self.literal(op.value)
        if isinstance(op, ast.Negation):
            return f"negate_operand({self.operand(op.operand, ctx, items)})"
        if isinstance(op, ast.Call) and op.name == "tick":
            self.uses_tick = True
            return "tk"
        if isinstance(op, ast.OutputRef):
            if op.kind == "alias":
                return self.operand(items[op.index].operand, ctx, items)
            base = f"vals[{op.index}]" if op.kind == "column" else f"keys[{op.index}]"
            return self.prop(op.rest, base) if op.rest else base
        raise TypeError(f"cannot compile operand {op!r}")  # pragma: no cover (analyzer rejects)

    def literal(self, value: Any) -> str:
        if value is None:
            return "None"
        if value is True:
            return "True"
        if value is False:
            return "False"
        return self.const(value)

    def star_seq(self, op: Any) -> str | None:
        """Code for the value sequence of a star operand, or None when ``op`` has no star."""
        if isinstance(op, ast.Property) and op.has_star:
            return f"resolve_star(e, {self.const(tuple(op.segments))})"
        if isinstance(op, ast.OutputRef) and any(isinstance(s, ast.Star) for s in op.rest):
            base = f"vals[{op.index}]" if op.kind == "column" else f"keys[{op.index}]"
            return f"resolve_star({base}, {self.const(tuple(op.rest))})"
        return None

    # ---------------------------------------------------------------- conditions

    def cond(self, c: Any, items: tuple[ast.SelectItem, ...] = ()) -> str:
        if isinstance(c, ast.And):
            return "(" + " and ".join(self.cond(x, items) for x in c.items) + ")"
        if isinstance(c, ast.Or):
            return "(" + " or ".join(self.cond(x, items) for x in c.items) + ")"
        if isinstance(c, ast.Not):
            return f"(not {self.cond(c.condition, items)})"
        if isinstance(c, ast.BoolCondition):
            return "True" if c.value else "False"
        if isinstance(c, ast.Comparison):
            return self.comparison(c, items)
        if isinstance(c, ast.Match):
            code = f"regex_matches({self.const(compile_regex(c.pattern))}, {self.operand(c.left, items=items)})"
            return f"(not {code})" if c.negated else code
        if isinstance(c, ast.IsNull):
            x = self.operand(c.operand, items=items)
            return f"({x} is not None)" if c.negated else f"({x} is None)"
        if isinstance(c, ast.In):
            return self.in_(c, items)
        raise TypeError(f"cannot compile condition {c!r}")  # pragma: no cover

    def comparison(self, c: ast.Comparison, items: tuple[ast.SelectItem, ...]) -> str:
        seq = self.star_seq(c.left)
        if seq is not None:
            rcode = self.operand(c.right, items=items)
            if c.op == "!=":
                return f"any(not equals(_s, {rcode}) for _s in {seq})"
            return f"any({_GENERAL[c.op]}(_s, {rcode}) for _s in {seq})"
        op: str = c.op
        left: Any = c.left
        right: Any = c.right
        if isinstance(left, ast.Literal) and not isinstance(right, ast.Literal) and op in _MIRROR:
            op, left, right = _MIRROR[op], right, left
        if isinstance(right, ast.Literal) and not isinstance(left, ast.Literal):
            fast = self.fast_compare(op, self.operand(left, items=items), right.value)
            if fast is not None:
                return fast
        a, b = self.operand(left, items=items), self.operand(right, items=items)
        if op == "!=":
            return f"(not equals({a}, {b}))"
        return f"{_GENERAL[op]}({a}, {b})"

    def fast_compare(self, op: str, x: str, value: Any) -> str | None:
        """Inline code for ``x op literal`` where the literal's type allows it, else None."""
        t = self.temp()
        if value is None:
            if op == "==":
                return f"({x} is None)"
            if op == "!=":
                return f"({x} is not None)"
            if op in ("<", "<=", ">", ">="):
                return "False"
            return None
        if type(value) is bool:
            if op == "==":
                return f"({x} is {value})"
            if op == "!=":
                return f"({x} is not {value})"
            if op in ("<", "<=", ">", ">="):
                return "False"
            return None
        c = self.const(value)
        if type(value) is str:
            if op == "==":
                return f"({x} == {c})"
            if op == "!=":
                return f"({x} != {c})"
            if op in ("<", "<=", ">", ">="):
                return f"(({t} := {x}).__class__ is str and {t} {op} {c})"
            return None
        if type(value) in (int, float):
            if op == "==":
                return f"(({t} := {x}) == {c} and {t}.__class__ is not bool)"
            if op == "!=":
                return f"(not (({t} := {x}) == {c} and {t}.__class__ is not bool))"
            if op in ("<", "<=", ">", ">="):
                # ints first (the common case); a float must also be finite (§3.1)
                return (
                    f"(({t} := {x}).__class__ is int and {t} {op} {c}"
                    f" or {t}.__class__ is float and {t} {op} {c} and {t} - {t} == 0.0)"
                )
        return None

    def in_(self, c: ast.In, items: tuple[ast.SelectItem, ...]) -> str:
        values = [it.value for it in c.items if isinstance(it, ast.Literal)]
        seq = self.star_seq(c.operand)
        keys = self.const(frozenset(group_key(v) for v in values))
        if seq is not None:
            code = f"any(group_key(_s) in {keys} for _s in {seq})"
        else:
            x = self.operand(c.operand, items=items)
            if values and all(type(v) is str or v is None for v in values):
                t = self.temp()
                strs = self.const(frozenset(v for v in values if v is not None))
                code = f"(({t} := {x}).__class__ is str and {t} in {strs}"
                code += f" or {t} is None)" if None in values else ")"
            else:
                code = f"(group_key({x}) in {keys})"
        return f"(not {code})" if c.negated else code


# --------------------------------------------------------------------------- projection


def _output_path(segments: tuple[ast.Segment, ...]) -> tuple[str, ...]:
    return tuple(s if isinstance(s, str) else int_text(s) for s in segments if not isinstance(s, ast.Star))


def _project_general(entries: tuple[ProjectionEntry, ...], e: Any, m: Any, tk: Any) -> dict[str, Any]:
    """The four steps of §3.6 for select lists with nested paths or prefix selectors."""
    # 1. entries with a non-null value: (path, value, subsumable)
    got: list[tuple[tuple[str, ...], Any, bool]] = []
    fixed: set[str] = set()
    for en in entries:
        if en.kind == "X":
            for k, v in prefix_items(e, en.prefix):
                if v is not None:
                    got.append(((k,), v, True))
            continue
        v = en.getter(e, m, tk)  # type: ignore[misc]
        if v is None:
            continue
        got.append((en.path, v, en.kind == "P"))
        if en.kind == "A":
            fixed.add(en.path[0])
    # 2. subsumption among unaliased properties and prefix selectors; alias/literal keys win
    kept: list[tuple[tuple[str, ...], Any]] = []
    sub_paths = [p for p, _, s in got if s]
    seen: set[tuple[str, ...]] = set()
    for p, v, s in got:
        if s:
            if p in seen:
                continue
            if len(p) == 1 and p[0] in fixed:
                continue
            if any(len(q) < len(p) and p[: len(q)] == q for q in sub_paths):
                continue
            seen.add(p)
        kept.append((p, v))
    # 3./4. nest, in entry order
    row: dict[str, Any] = {}
    built: set[int] = set()  # ids of the objects built here (never an event value)
    for p, v in kept:
        d = row
        for k in p[:-1]:
            nxt = d.get(k)
            if nxt is None or id(nxt) not in built:
                nxt = {}
                built.add(id(nxt))
                d[k] = nxt
            d = nxt
        d[p[-1]] = v
    return row


# --------------------------------------------------------------------------- entry point

_CONST_NAME = re.compile(r"\bc[0-9]+\b")


def _bind(code: str) -> str:
    """``, c3=c3, c7=c7`` for the constants ``code`` uses: default arguments are fast locals."""
    names = sorted(set(_CONST_NAME.findall(code)), key=lambda n: int(n[1:]))
    return "".join(f", {n}={n}" for n in names)


_CACHE: dict[tuple[str, str], CompiledQuery] = {}
_CACHE_MAX = 512


def compile_query(a: Analysis) -> CompiledQuery:
    """Compile an analysed query (cached by canonical text and mode)."""
    key = (a.canonical, a.mode)
    hit = _CACHE.get(key)
    if hit is not None and hit.analysis == a:
        return hit
    cq = _compile(a)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[key] = cq
    return cq


def _compile(a: Analysis) -> CompiledQuery:
    q = a.query
    g = _Gen(a.mode)
    lines: list[str] = []
    items = q.items

    def fn(name: str, params: str, expr: str) -> None:
        lines.append(f"def {name}({params}{_bind(expr)}):\n    return {expr}\n")

    cond = g.cond(q.where) if q.where is not None else "True"  # generated once, used thrice
    fn("where", "e, m, tk", cond)
    # a batch filter: one loop, constants bound as defaults (fast locals), no per-event call;
    # compiled on first use (most queries never need it, and compile() dominates prepare time)
    batch_source = (
        f"def where_batch(es, m, tk{_bind(cond)}):\n    out = []\n    append = out.append\n"
        f"    for e in es:\n        if {cond}:\n            append(e)\n    return out\n"
    )
    # replay's hot loop for streamed plain rows: parse, check, filter in one pass over raw lines;
    # None when some line is not an object or lacks a numeric time (the caller then takes the
    # careful path); parse errors propagate
    scan_source = (
        f"def scan_chunk(lines, loads, key, m, tk{_bind(cond)}):\n    out = []\n"
        "    append = out.append\n    for raw in lines:\n        e = loads(raw)\n"
        "        if e.__class__ is not dict:\n            return None\n"
        "        if key is not None:\n            t = e.get(key)\n"
        "            if t.__class__ is not int and t.__class__ is not float:\n"
        "                return None\n"
        f"        if {cond}:\n            append(e)\n    return out\n"
    )

    # STICKY sampling keys: top-level names, meta fields included
    if q.sample is not None and q.sample.strategy == "STICKY":
        keys = ", ".join(g.prop((k,)) for k in q.sample.keys)
        fn("sticky_keys", "e, m, tk", f"({keys},)")

    plain_entries: list[tuple[str, tuple[str, ...], str | None, str]] = []
    if a.kind == "plain":
        if not a.star:
            for i, it in enumerate(items):
                op = it.operand
                if isinstance(op, ast.PrefixSelector):
                    plain_entries.append(("X", (), None, op.prefix))
                    continue
                fn(f"item{i}", "e, m, tk", g.operand(op))
                if it.alias is not None:
                    plain_entries.append(("A", (it.alias,), f"item{i}", ""))
                elif isinstance(op, ast.Property):
                    plain_entries.append(("P", _output_path(op.segments), f"item{i}", ""))
                elif isinstance(op, ast.Literal):
                    plain_entries.append(("A", (literal_text(op.value),), f"item{i}", ""))
                else:  # tick()
                    plain_entries.append(("A", ("tick",), f"item{i}", ""))
            simple = all(k != "X" and len(p) == 1 for k, p, _, _ in plain_entries)
            if simple:
                body = ["def project(e, m, tk):", "    row = {}"]
                for _, p, getter, _ in plain_entries:
                    k = g.const(p[0])
                    body.append(f"    v = {getter}(e, m, tk)")
                    body.append(f"    if v is not None: row[{k}] = v")
                body.append("    return row\n")
                text = "\n".join(body[1:])
                lines.append(f"def project(e, m, tk{_bind(text)}):\n{text}")
        if a.order_by:
            keys = ", ".join(
                f"sort_key({g.operand(k.operand, items=items)})" for k in a.order_by
            )
            fn("order_event", "e, m, tk", f"({keys},)")
    else:
        group_by = q.group_by
        if group_by:
            body = ["def group(e, m, tk):"]
            names = []
            for i, gp in enumerate(group_by):
                body.append(f"    v{i} = {g.operand(gp)}")
                names.append(f"v{i}")
            if len(names) == 1:
                body.append("    return (v0 if v0.__class__ is str else group_key(v0)), (v0,)")
            else:
                hk = ", ".join(f"group_key({n})" for n in names)
                body.append(f"    return ({hk},), ({', '.join(names)},)")
            text = "\n".join(body[1:])
            lines.append(f"def group(e, m, tk{_bind(text)}):\n{text}\n")
        for j, col in enumerate(a.columns):
            op = col.operand
            if col.role == "aggregate":
                arg = op.args[0] if isinstance(op, ast.Call) and op.args else None
                if arg is None or isinstance(arg, ast.Star):
                    continue
                fn(f"arg{j}", "e, m, tk", g.operand(arg))
            elif col.role == "first":
                fn(f"arg{j}", "e, m, tk", g.operand(op))
        if a.having is not None:
            fn("having", "vals, keys", g.cond(a.having))
        if a.order_by:
            keys = ", ".join(f"sort_key({g.operand(k.operand)})" for k in a.order_by)
            fn("order_row", "vals, keys", f"({keys},)")

    source = "\n".join(lines)
    ns: dict[str, Any] = dict(ENV)
    ns.update(g.consts)
    exec(compile(source, f"<mql {a.canonical[:60]!r}>", "exec"), ns)

    project: EventFn | None = None
    if a.kind == "plain":
        if a.star:
            project = _project_star
        elif "project" in ns:
            project = ns["project"]
        else:
            entries = tuple(
                ProjectionEntry(kind, path, ns[getter] if getter else None, prefix)
                for kind, path, getter, prefix in plain_entries
            )

            def project(e: Any, m: Any, tk: Any, _entries: tuple[ProjectionEntry, ...] = entries) -> Any:
                return _project_general(_entries, e, m, tk)

    args: tuple[EventFn | None, ...] = tuple(ns.get(f"arg{j}") for j in range(len(a.columns)))
    return CompiledQuery(
        analysis=a,
        source=source,
        where=ns["where"],
        uses_tick=g.uses_tick,
        where_batch=_LazyFunction(batch_source, "where_batch", g.consts, a.canonical),
        scan_chunk=_LazyFunction(scan_source, "scan_chunk", g.consts, a.canonical),
        project=project,
        order_event=ns.get("order_event"),
        group=ns.get("group"),
        args=args,
        having=ns.get("having"),
        order_row=ns.get("order_row"),
        order_desc=tuple(k.desc for k in a.order_by),
        sticky_keys=ns.get("sticky_keys"),
        constants=g.consts,
    )


class _LazyFunction:
    """A generated function compiled on its first call."""

    __slots__ = ("_consts", "_fn", "_label", "_name", "source")

    def __init__(self, source: str, name: str, consts: dict[str, Any], label: str) -> None:
        self.source = source
        self._name = name
        self._consts = consts
        self._label = label
        self._fn: Any = None

    def __call__(self, *args: Any) -> Any:
        fn = self._fn
        if fn is None:
            ns: dict[str, Any] = dict(ENV)
            ns.update(self._consts)
            exec(compile(self.source, f"<mql {self._label[:60]!r}>", "exec"), ns)
            fn = self._fn = ns[self._name]
        return fn(*args)


def _project_star(e: Any, m: Any, tk: Any) -> Any:
    """``select *``: the event unchanged (meta fields are never added)."""
    return e


# --------------------------------------------------------------------------- group fold


def compile_fold(
    a: Analysis, aggs: tuple[Any, ...], cols: tuple[int, ...]
) -> tuple[Callable[..., None], Callable[..., tuple[Any, Any, int]], str]:
    """``fold(table, e, m, tk, ok)``: add one event (that passed SAMPLE and WHERE) to its group
    in a ``groups.GroupTable``. Each aggregate folds through its own inline template
    (``Aggregate.inline``: ``count``, ``sum``/``average`` and first values have one), or else a
    call of its ``add``. ``aggs``/``cols``: the aggregate objects and column indexes of the
    stateful columns.
    """
    g = _Gen(a.mode)
    q = a.query
    body = ["groups = table.groups"]
    if q.group_by:
        raws = []
        for i, gp in enumerate(q.group_by):
            body.append(f"v{i} = {g.operand(gp)}")
            raws.append(f"v{i}")
        if len(raws) == 1:
            body.append("hk = v0 if v0.__class__ is str else group_key(v0)")
        else:
            body.append(f"hk = ({', '.join(f'group_key({r})' for r in raws)},)")
        body.append("grp = groups.get(hk)")
        body.append("if grp is None:")
        body.append(f"    grp = table.slot(hk, ({', '.join(raws)},), ok)")
        body.append("if grp is table.other:")
        body.append("    table.folded += 1")
    else:
        body.append("grp = groups[()]")
    body.append("if grp[1] is None:")
    body.append("    grp[1] = ok")
    body.append("st = grp[2]")
    for i, (agg, j) in enumerate(zip(aggs, cols, strict=True)):
        col = a.columns[j]
        if col.role == "first":
            value: str | None = g.operand(col.operand)
        else:
            call = col.operand
            assert isinstance(call, ast.Call)
            arg = call.args[0] if call.args else None
            value = None if arg is None or isinstance(arg, ast.Star) else g.operand(arg)
        slot = f"st[{i}]"
        if agg.inline is not None:
            body.extend(agg.inline(slot, value, lambda agg=agg: g.const(agg.add)))
        else:
            body.append(f"{slot} = {g.const(agg.add)}({slot}, {value or 'True'}, ok)")
    fold = "\n".join("    " + ln for ln in body)
    # fold_run: the same body inlined in a loop over (event, time, line) items of one window (no
    # call per event); it stops at the first item outside [start, end) and returns
    # (that item or None, the largest time seen, errors)
    cond = g.cond(q.where) if q.where is not None else "True"
    inner = "\n".join("            " + ln for ln in body[1:])
    run = (
        "    groups = table.groups\n    errors = 0\n    top = start\n"
        "    for e, t, line in items:\n"
        "        if t < start or t >= end:\n            return (e, t, line), top, errors\n"
        "        if t > top:\n            top = t\n"
        "        try:\n"
        f"          if {cond}:\n            ok = (line,)\n{inner}\n"
        "        except Exception:\n            errors += 1\n"
        "    return None, top, errors\n"
    )
    source = (
        f"def fold(table, e, m, tk, ok{_bind(fold)}):\n{fold}\n\n"
        f"def fold_run(table, items, start, end, m, tk=None{_bind(run)}):\n{run}"
    )
    ns: dict[str, Any] = dict(ENV)
    ns.update(g.consts)
    exec(compile(source, f"<mql fold {a.canonical[:60]!r}>", "exec"), ns)
    return ns["fold"], ns["fold_run"], source
