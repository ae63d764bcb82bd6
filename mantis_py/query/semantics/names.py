"""Output names and output paths of select items (docs/mql.md#plain-queries).

Theory of operation:
- An aggregate query's row is a flat object: each select item has one output *name*, its alias or
  the default name of §3.7.2 (``COUNT(*)``, ``P99(nf.lat)``, ``geo.country``, ``2.5``, ``tick``).
  Two equal names are E207.
- A plain query's row is nested: each item contributes an output *path* (§3.6). Two items that are
  not both unaliased properties must not produce equal or prefix-related paths, and two different
  unaliased properties must not produce the same path (``e['l'][0]`` and ``e['l']['0']``): E207.
  :func:`plain_conflicts` finds these in time linear in the total path length, so a select list of
  thousands of items stays fast (docs/mql.md#errors).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ..syntax import ast
from ..syntax.format import format_number, format_operand

__all__ = [
    "PlainConflict",
    "default_name",
    "dotted",
    "item_name",
    "literal_text",
    "output_path",
    "plain_conflicts",
    "segment_text",
]


def segment_text(segment: ast.Segment) -> str:
    """A path segment as it appears in names and output paths: ``"a"``, ``"0"``, ``"-1"``, ``"*"``."""
    if isinstance(segment, ast.Star):
        return "*"
    if isinstance(segment, bool):  # never produced by the parser; keep str() honest anyway
        return str(segment).lower()
    return str(segment)


def dotted(segments: Sequence[ast.Segment]) -> str:
    """Segments joined with ``.``: ``e['geo']['country']`` → ``geo.country``, ``e['l'][0]`` → ``l.0``."""
    if len(segments) == 1 and type(segments[0]) is str:  # a bare name, the common case
        return segments[0]
    return ".".join(segment_text(s) for s in segments)


def literal_text(value: ast.LiteralValue) -> str:
    """A literal's canonical text without quotes: ``'abc'`` → ``abc``, ``2.50`` → ``2.5``."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    return format_number(value)


def _argument_name(arg: ast.CallArg) -> str:
    if isinstance(arg, ast.Star):
        return "*"
    if isinstance(arg, ast.Property):
        return dotted(arg.segments)
    if isinstance(arg, ast.Literal):
        return literal_text(arg.value)
    return format_operand(arg)


def default_name(operand: ast.Operand) -> str:
    """The output name of an unaliased item of an aggregate query (docs/mql.md#aggregate-queries).

    >>> default_name(ast.Call("count", (ast.STAR,)))
    'COUNT(*)'
    >>> default_name(ast.Property(("geo", "country")))
    'geo.country'
    """
    if isinstance(operand, ast.Call):
        if operand.name == "tick":
            return "tick"
        args = operand.args
        inner = _argument_name(args[0]) if len(args) == 1 else ", ".join(
            _argument_name(a) for a in args)  # fmt: skip
        return f"{operand.name.upper()}({inner})"
    if isinstance(operand, ast.Property):
        return dotted(operand.segments)
    if isinstance(operand, ast.Literal):
        return literal_text(operand.value)
    return format_operand(operand)


def item_name(item: ast.SelectItem) -> str:
    """The output name of a select item of an aggregate query: its alias, else its default name."""
    return item.alias if item.alias is not None else default_name(item.operand)


def output_path(item: ast.SelectItem) -> tuple[str, ...] | None:
    """The output path of a plain select item (docs/mql.md#plain-queries), or None for a prefix selector (whose
    keys depend on the event) and for operands that cannot be selected (rejected elsewhere)."""
    op = item.operand
    if item.alias is not None:
        return (item.alias,)
    if isinstance(op, ast.Property):
        return tuple(segment_text(s) for s in op.segments)
    if isinstance(op, ast.Literal):
        return None if op.value is None else (literal_text(op.value),)
    if isinstance(op, ast.Call) and op.name == "tick":
        return ("tick",)
    return None


# --------------------------------------------------------------------------- plain conflicts


@dataclass(frozen=True, slots=True)
class PlainConflict:
    """Item ``index`` clashes with an earlier item over the output path ``name`` (dotted)."""

    index: int
    name: str


@dataclass(slots=True)
class _Bucket:
    """What earlier items put at or under one output path.

    ``other``: some item that is not an unaliased property; ``sigs``: up to two distinct property
    segment prefixes (cut to the bucket's length). Two are enough: a new property differs from at
    least one of them.
    """

    other: bool = False
    sigs: list[tuple[ast.Segment, ...]] = field(default_factory=list)

    def clashes(self, sig: tuple[ast.Segment, ...] | None) -> bool:
        if self.other:
            return True
        if sig is None:
            return bool(self.sigs)
        return any(s != sig for s in self.sigs)

    def add(self, sig: tuple[ast.Segment, ...] | None) -> None:
        if sig is None:
            self.other = True
        elif sig not in self.sigs and len(self.sigs) < 2:
            self.sigs.append(sig)


def plain_conflicts(items: Sequence[ast.SelectItem]) -> Iterator[PlainConflict]:
    """Yield, in select-list order, each item whose output path clashes with an earlier item's
    (docs/mql.md#plain-queries "Conflicts"). Each later item is reported at most once."""
    exact: dict[tuple[str, ...], _Bucket] = {}  # full paths of earlier items
    under: dict[tuple[str, ...], _Bucket] = {}  # every prefix of earlier items' paths
    for index, item in enumerate(items):
        path = output_path(item)
        if not path:
            continue
        op = item.operand
        segs = op.segments if item.alias is None and isinstance(op, ast.Property) else None
        clash = _find_clash(path, segs, exact, under)
        if clash is not None:
            yield PlainConflict(index, ".".join(clash))
        for i in range(1, len(path) + 1):
            sig = None if segs is None else tuple(segs[:i])
            under.setdefault(path[:i], _Bucket()).add(sig)
        exact.setdefault(path, _Bucket()).add(segs if segs is None else tuple(segs))


def _find_clash(
    path: tuple[str, ...],
    segs: Sequence[ast.Segment] | None,
    exact: dict[tuple[str, ...], _Bucket],
    under: dict[tuple[str, ...], _Bucket],
) -> tuple[str, ...] | None:
    """The shorter path of a clash between ``path`` and an earlier item, or None."""
    for i in range(1, len(path) + 1):  # an earlier path equal to, or a prefix of, this one
        bucket = exact.get(path[:i])
        if bucket is not None and bucket.clashes(None if segs is None else tuple(segs[:i])):
            return path[:i]
    bucket = under.get(path)  # an earlier path that this one is a prefix of
    if bucket is not None and bucket.clashes(None if segs is None else tuple(segs)):
        return path
    return None
