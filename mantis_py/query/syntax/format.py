"""AST -> canonical MQL text (docs/mql.md#canonical-text).

``format_query(parse(t))`` is the canonical text of ``t``: one line (unless a regex body holds a
line break), upper-case keywords, SQL clause order, normalised operators, parentheses only where
needed, properties bare when they read back as the same name. For every query that parses,
``parse(format_query(q)) == q`` and ``format_query`` is idempotent (§8.2).

The helpers format one construct each, for the analyzer's messages and the ``check`` plan:
``format_operand`` (``count(DISTINCT a)``), ``format_condition`` (a WHERE body),
``format_property`` (``e['from']``), ``format_number`` (``1.5``), ``format_window``
(``WINDOW 60 30``) and ``format_sample`` (``SAMPLE 5%``).

Recursion is bounded by the nesting of the query (at most 64 parentheses when parsed).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from mantis_py.query.syntax import ast
from mantis_py.query.syntax.lexer import classify_number, is_word_text
from mantis_py.query.syntax.spelling import bracketed_path, format_string
from mantis_py.query.syntax.vocabulary import RESERVED_WORDS

__all__ = [
    "RESERVED_WORDS",
    "format_condition",
    "format_number",
    "format_operand",
    "format_property",
    "format_query",
    "format_sample",
    "format_string",
    "format_window",
    "is_bare_name",
]



def format_number(v: int | float) -> str:
    """Integers as decimal digits, floats as Python's ``repr`` (``1.50`` → ``1.5``, ``1e20`` →
    ``1e+20``)."""
    if isinstance(v, bool):
        raise TypeError("a boolean is not a number")
    return repr(v) if isinstance(v, float) else str(v)


def _json_string(s: str) -> str:
    """A string inside a sample object: ``"…"``, or ``'…'`` when the content contains ``"``."""
    return f"'{s}'" if '"' in s else f'"{s}"'


def is_bare_name(name: str) -> bool:
    """True when ``name`` written bare is read back as the same property (docs/mql.md#canonical-text)."""
    if len(name) <= 64:  # canonical text and fields ask this for every use of a name
        return _is_bare_short(name)
    return _is_bare(name)


@lru_cache(maxsize=4096)  # short names only: the cache stays small (under 1 MB)
def _is_bare_short(name: str) -> bool:
    return _is_bare(name)


def _is_bare(name: str) -> bool:
    if not is_word_text(name):
        return False
    low = name.lower()
    if low in RESERVED_WORDS or low.startswith("sample{"):
        return False
    if name[0] not in "0123456789+-.":  # cannot read as a number: skip the number scan
        return True
    looks, _, _ = classify_number(name, name, 0)
    return not looks


def format_property(segments: Sequence[ast.Segment]) -> str:
    """``country``, ``nf.app``; otherwise ``e['a'][0][*]`` (``e['from']``, ``e['1.5']`` ...)."""
    if len(segments) == 1 and isinstance(segments[0], str) and is_bare_name(segments[0]):
        return segments[0]
    return bracketed_path(segments)


def format_operand(op: ast.Operand | ast.Star) -> str:
    """One operand (or ``*``) in canonical form: ``count(DISTINCT a)``, ``NOT x``, ``'s'``."""
    if isinstance(op, ast.Property):
        return format_property(op.segments)
    if isinstance(op, ast.Literal):
        v = op.value
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return format_string(v)
        return format_number(v)
    if isinstance(op, ast.Call):
        args = [format_operand(a) for a in op.args]
        if op.distinct and args:
            args[0] = "DISTINCT " + args[0]
        return f"{op.name}({', '.join(args)})"
    if isinstance(op, ast.Negation):
        return "NOT " + format_operand(op.operand)
    if isinstance(op, ast.PrefixSelector):
        return f"e[^{format_string(op.prefix)}]"
    if isinstance(op, ast.Star):
        return "*"
    # OutputRef and other analyzer-only nodes: best effort, never used for canonical text
    return repr(op)


def format_condition(c: ast.Condition) -> str:
    """A condition in canonical form, parenthesised only where §8.1 says so."""
    if isinstance(c, ast.Comparison):
        return f"{format_operand(c.left)} {c.op} {format_operand(c.right)}"
    if isinstance(c, ast.Match):
        op = "!~" if c.negated else "==~"
        return f"{format_operand(c.left)} {op} /{c.pattern}/"
    if isinstance(c, ast.IsNull):
        return f"{format_operand(c.operand)} IS {'NOT NULL' if c.negated else 'NULL'}"
    if isinstance(c, ast.In):
        items = ", ".join(format_operand(i) for i in c.items)
        return f"{format_operand(c.operand)} {'NOT IN' if c.negated else 'IN'} ({items})"
    if isinstance(c, ast.And):
        return " AND ".join(
            f"({format_condition(i)})" if isinstance(i, ast.Or) else format_condition(i)
            for i in c.items
        )
    if isinstance(c, ast.Or):
        return " OR ".join(format_condition(i) for i in c.items)
    if isinstance(c, ast.Not):
        return f"NOT ({format_condition(c.condition)})"
    if isinstance(c, ast.BoolCondition):
        return "true" if c.value else "false"
    raise TypeError(f"not a condition: {c!r}")


def format_window(w: ast.Window) -> str:
    """The WINDOW clause: ``WINDOW 10``, ``WINDOW 60 30``, ``WINDOW |100|``."""
    if isinstance(w, ast.CountWindow):
        return f"WINDOW |{w.size}|"
    if w.length == w.every:
        return f"WINDOW {format_number(w.length)}"
    return f"WINDOW {format_number(w.length)} {format_number(w.every)}"


def format_sample(s: ast.Sample) -> str:
    """The SAMPLE clause: ``SAMPLE 5%`` or the normalised object form of docs/mql.md#canonical-text."""
    if s.percent is not None:
        return f"SAMPLE {s.percent}%"
    members = [f'"strategy": "{s.strategy}"']
    if s.strategy == "STICKY":
        keys = ", ".join(_json_string(k) for k in s.keys)
        members.append(f'"keys": [{keys}]')
        members.append(f'"salt": {_json_string(s.salt)}')
    members.append(f'"factor": {s.factor}')
    members.append(f'"threshold": {s.threshold}')
    return "SAMPLE {" + ", ".join(members) + "}"


def _format_item(item: ast.SelectItem) -> str:
    text = format_operand(item.operand)
    if item.alias is not None:
        text += " AS " + format_string(item.alias)
    return text


def _format_source(s: ast.Source) -> str:
    return s.text


def format_query(q: ast.Query) -> str:
    """The canonical text of a whole query (docs/mql.md#canonical-text)."""
    parts = ["SELECT"]
    parts.append("*" if q.select_star else ", ".join(_format_item(i) for i in q.items))
    if q.sources:
        parts.append("FROM " + ", ".join(_format_source(s) for s in q.sources))
    for j in q.joins:
        sources = ", ".join(_format_source(s) for s in j.sources)
        parts.append(f"JOIN {sources} {format_number(j.seconds)} SECONDS ON "
                     + format_operand(j.on))  # fmt: skip
    if q.where is not None:
        parts.append("WHERE " + format_condition(q.where))
    if q.window is not None:
        parts.append(format_window(q.window))
    if q.group_by:
        parts.append("GROUP BY " + ", ".join(format_operand(g) for g in q.group_by))
    if q.anomaly is not None:
        a = q.anomaly
        parts.append(f"ANOMALY MAD {format_operand(a.operand)} {format_number(a.alpha)} "
                     f"{format_number(a.beta)}")  # fmt: skip
    if q.having is not None:
        parts.append("HAVING " + format_condition(q.having))
    if q.order_by:
        keys = ", ".join(format_operand(k.operand) + (" DESC" if k.desc else "") for k in q.order_by)
        parts.append("ORDER BY " + keys)
    if q.limit is not None:
        parts.append("LIMIT " + format_number(q.limit))
    if q.sample is not None:
        parts.append(format_sample(q.sample))
    return " ".join(parts)
