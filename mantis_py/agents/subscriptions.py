"""The agent's subscription table: sub id -> compiled agent part, counters, lease. Pure.

Theory of operation: the gateway owns subscription ids. Each :class:`Subscription` holds the
query engine's *source* for one (query, stream) and the counters the agent reports upstream.
Per stream, :func:`plan_for` precomputes what the hot path needs: the events-mode and
partials-mode subscriptions, and the *superset projection* (the union of the fields every
events-mode subscription needs, or the whole event when one of them selects ``*``), so each
event is projected and encoded once however many subscriptions it matches.

The query engine is reached through :class:`Engine` (``prepare``, ``project``, ``make_caps``),
so tests can plug in a fake that follows the documented contract (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Engine",
    "StreamPlan",
    "Subscription",
    "default_engine",
    "flat_projector",
    "plan_for",
    "union_paths",
]


@dataclass(frozen=True, slots=True)
class Engine:
    """The three query-engine entry points the agent uses.

    ``prepare(text) -> PreparedQuery`` (live mode); ``make_projector(field_paths, prefixes,
    star) -> (event -> shipped dict)``; ``make_caps(json_obj) -> caps`` for
    ``PreparedQuery.source(caps=...)``.
    """

    prepare: Callable[[str], Any]
    make_projector: Callable[
        [tuple[tuple[str, ...], ...], tuple[str, ...], bool], Callable[[dict[str, Any]], Any]
    ]
    make_caps: Callable[[dict[str, Any]], Any]


def default_engine() -> Engine:
    """The real query engine, imported on first use (so the agent imports cheaply) with its
    parser tables built: the one-time cost (~0.3 s of CPU) is paid here, in one place."""
    from ..query.run.engine import prepare
    from ..query.state.caps import Caps
    from ..query.state.projection import make_projector
    from ..query.syntax.parser import parse

    parse("select * from warm")  # builds the LALR tables

    def prepare_live(text: str) -> Any:
        return prepare(text, mode="live")

    return Engine(prepare=prepare_live, make_projector=make_projector, make_caps=Caps.from_json)


@dataclass(slots=True, eq=False)
class Subscription:
    """One running agent part (mutable, agent thread only)."""

    id: str
    stream: str
    query: str
    ships: str  # "events" | "partials"
    source: Any
    field_paths: tuple[tuple[str, ...], ...]
    prefixes: tuple[str, ...]
    star: bool
    link_gen: int
    unmasked: bool = False  # caps.unmasked: runs on the unmasked event (docs/operations.md)
    confirm_by: float | None = None  # after a reconnect: dropped unless re-subscribed by then
    matched: int = 0  # events mode: events kept by SAMPLE + WHERE
    folded: int = 0  # partials mode: events offered to the window partials
    raised: int = 0  # exceptions that escaped the engine (caught by the agent)
    parts_sent: int = 0
    parts_dropped: int = 0
    reported_errors: int = 0
    last_report: float = field(default=float("-inf"))
    last_message: str = ""

    @property
    def errors(self) -> int:
        """Evaluation errors: counted by the engine's source plus those the agent caught."""
        e = getattr(self.source, "errors", 0)
        n = e if isinstance(e, int) else len(e)
        return n + self.raised


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """What the hot path runs for one stream.

    ``event_subs`` / ``partial_subs`` hold every subscription (they all see the same event when
    it holds no masked key). ``split`` is True when some subscriptions run unmasked and others
    could not: events holding a masked key then take the split path, where the ``masked_*``
    ones see the masked copy and the ``unmasked_*`` ones the original.
    """

    event_subs: tuple[Subscription, ...] = ()
    partial_subs: tuple[Subscription, ...] = ()
    masked_events: tuple[Subscription, ...] = ()
    unmasked_events: tuple[Subscription, ...] = ()
    masked_partials: tuple[Subscription, ...] = ()
    unmasked_partials: tuple[Subscription, ...] = ()
    split: bool = False
    star: bool = False
    paths: tuple[tuple[str, ...], ...] = ()
    prefixes: tuple[str, ...] = ()
    project: Callable[[dict[str, Any]], Any] | None = None  # None: ship the whole event

    @property
    def empty(self) -> bool:
        """No subscription at all."""
        return not self.event_subs and not self.partial_subs


def union_paths(paths: Iterable[tuple[str, ...]]) -> tuple[tuple[str, ...], ...]:
    """Union of field paths, dropping any path that another one already covers (a prefix of it).

    >>> union_paths([("a", "b"), ("a",), ("c",), ("c",)])
    (('a',), ('c',))
    """
    out: list[tuple[str, ...]] = []
    for p in sorted(set(paths), key=len):
        if not any(p[: len(q)] == q for q in out):
            out.append(p)
    return tuple(sorted(out))


def flat_projector(keys: tuple[str, ...]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Projection onto top-level keys only: the same result as the engine's projector for such
    fields (each present key copied, missing ones omitted, in ``keys`` order).

    The common case (every key present) is one generated dict display, the fastest form on
    CPython 3.11 (no loop, no per-key call); a missing key falls back to a plain loop. The keys
    enter the generated source only as ``repr`` literals.

    >>> flat_projector(("a", "c"))({"a": 1, "b": 2})
    {'a': 1}
    >>> flat_projector(("a", "b"))({"b": 2, "a": 1})
    {'a': 1, 'b': 2}
    """
    keys = tuple(str(k) for k in keys)

    def slow(e: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for k in keys:
            if k in e:
                out[k] = e[k]
        return out

    items = ", ".join(f"{k!r}: e[{k!r}]" for k in keys)
    src = (
        "def project(e):\n"
        "    try:\n"
        f"        return {{{items}}}\n"
        "    except (KeyError, TypeError):\n"
        "        return slow(e)\n"
    )
    namespace: dict[str, Any] = {"slow": slow}
    exec(compile(src, "<mantis flat projection>", "exec"), namespace)
    project: Callable[[dict[str, Any]], dict[str, Any]] = namespace["project"]
    return project


def plan_for(subs: Iterable[Subscription], engine: Engine | None = None) -> StreamPlan:
    """Build the stream plan: events/partials split and the superset projection."""
    subs = tuple(subs)
    events = tuple(s for s in subs if s.ships != "partials")
    partials = tuple(s for s in subs if s.ships == "partials")
    star = any(s.star for s in events)
    paths = () if star else union_paths(p for s in events for p in s.field_paths)
    prefixes = () if star else tuple(sorted({p for s in events for p in s.prefixes}))
    project = None
    if events and not star and engine is not None:
        if not prefixes and paths and all(len(p) == 1 for p in paths):
            project = flat_projector(tuple(p[0] for p in paths))
        else:
            project = engine.make_projector(paths, prefixes, False)
    unmasked = any(s.unmasked for s in subs)
    return StreamPlan(
        event_subs=events,
        partial_subs=partials,
        masked_events=tuple(s for s in events if not s.unmasked),
        unmasked_events=tuple(s for s in events if s.unmasked),
        masked_partials=tuple(s for s in partials if not s.unmasked),
        unmasked_partials=tuple(s for s in partials if s.unmasked),
        split=unmasked,
        star=star,
        paths=paths,
        prefixes=prefixes,
        project=project,
    )
