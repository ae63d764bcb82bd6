"""A tiny stand-in for the query engine, following the documented contract (docs/architecture.md).

For agent tests that must not depend on MQL. A fake query is a line of ``key=value`` words:

    fake select=a,b.c where=country:BR ships=events sample=0.5 window=1 raise=1

- ``select``: ``*`` or comma-separated dotted paths (prefix selectors as ``^p``);
- ``where``: ``path:value`` (the value compared as text; ``_app``/``_stream``/... are meta fields);
- ``ships``: ``events`` (default) or ``partials`` (a count per ``window`` seconds);
- ``sample``: keep fraction (drawn from the source's rng);
- ``raise=1``: ``matches``/``offer`` raise (to test that the agent contains engine bugs);
- any text starting with ``bad`` fails to compile (``QueryCompileError``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..agents.subscriptions import Engine
from ..errors import QueryCompileError

__all__ = [
    "FakeAnalysis",
    "FakePrepared",
    "FakeSource",
    "fake_engine",
    "fake_prepare",
    "fake_project",
]


@dataclass(frozen=True)
class FakeAnalysis:
    field_paths: tuple[tuple[str, ...], ...]
    field_prefixes: tuple[str, ...]
    star: bool
    meta_fields: tuple[str, ...]


def _get(event: Any, path: tuple[str, ...]) -> Any:
    for seg in path:
        if not isinstance(event, dict):
            return None
        event = event.get(seg)
    return event


@dataclass
class FakeSource:
    prepared: FakePrepared
    meta: dict[str, Any]
    rng: random.Random
    errors: int = 0
    next_start: float | None = None
    counts: dict[float, int] = field(default_factory=dict)

    def meta_values(self) -> dict[str, Any]:
        return {k: v for k, v in self.meta.items() if k in self.prepared.analysis.meta_fields}

    def _keep(self, event: Any) -> bool:
        p = self.prepared
        if p.raises:
            raise ZeroDivisionError("fake engine bug")
        if p.sample < 1.0 and self.rng.random() >= p.sample:
            return False
        if p.where is None:
            return True
        path, value = p.where
        got = self.meta.get(path[0]) if path[0] in self.meta else _get(event, path)
        if isinstance(got, (dict, list)):
            self.errors += 1
            return False
        return str(got) == value

    def matches(self, event: Any, t: float) -> bool:
        return self._keep(event)

    def start(self, now: float, **observation: Any) -> None:
        w = self.prepared.window
        self.next_start = math.ceil(now / w) * w

    def offer(self, event: Any, t: float) -> None:
        if self._keep(event):
            w = self.prepared.window
            start = math.floor(t / w) * w
            if self.next_start is not None and start >= self.next_start:
                self.counts[start] = self.counts.get(start, 0) + 1

    def poll(self, now: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        w = self.prepared.window
        while self.next_start is not None and self.next_start + w <= now:
            s = self.next_start
            out.append({"window": [s, s + w], "count": self.counts.pop(s, 0)})
            self.next_start = s + w
        return out


@dataclass(frozen=True)
class FakePrepared:
    canonical: str
    analysis: FakeAnalysis
    ships: str
    where: tuple[tuple[str, ...], str] | None
    sample: float
    window: float
    raises: bool

    def source(
        self,
        *,
        app: str,
        stream: str = "default",
        instance: str = "",
        zone: str | None = None,
        rng: random.Random | None = None,
        caps: Any = None,
    ) -> FakeSource:
        meta = {"_app": app, "_stream": stream, "_instance": instance, "_zone": zone}
        return FakeSource(self, meta, rng or random.Random())


def fake_prepare(text: str) -> FakePrepared:
    """Parse a fake query (see the module docstring)."""
    if text.startswith("bad"):
        raise QueryCompileError(code="E200", message=f"fake compile error in {text!r}")
    opts = dict(w.split("=", 1) for w in text.split()[1:] if "=" in w)
    sel = opts.get("select", "*")
    star = sel == "*"
    items = [] if star else [s for s in sel.split(",") if s]
    paths = tuple(tuple(s.split(".")) for s in items if not s.startswith("^"))
    prefixes = tuple(s[1:] for s in items if s.startswith("^"))
    where = None
    meta: tuple[str, ...] = ()
    if "where" in opts:
        p, v = opts["where"].split(":", 1)
        where = (tuple(p.split(".")), v)
        if p.startswith("_"):
            meta = (p,)
        else:
            paths = (*paths, where[0]) if not star else paths
    return FakePrepared(
        canonical=text,
        analysis=FakeAnalysis(paths, prefixes, star, meta),
        ships=opts.get("ships", "events"),
        where=where,
        sample=float(opts.get("sample", "1")),
        window=float(opts.get("window", "1")),
        raises=opts.get("raise") == "1",
    )


def fake_project(
    paths: tuple[tuple[str, ...], ...], prefixes: tuple[str, ...], star: bool
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A projector: copy the given paths (nested) and top-level keys starting with a prefix."""

    def proj(event: dict[str, Any]) -> dict[str, Any]:
        if star:
            return event
        out: dict[str, Any] = {}
        for k, v in event.items():
            if any(k.startswith(p) for p in prefixes):
                out[k] = v
        for path in paths:
            cur: Any = event
            for seg in path:
                if not isinstance(cur, dict) or seg not in cur:
                    break
                cur = cur[seg]
            else:
                dst = out
                for seg in path[:-1]:
                    dst = dst.setdefault(seg, {})
                dst[path[-1]] = cur
        return out

    return proj


def fake_engine() -> Engine:
    """An :class:`~mantis_py.agents.subscriptions.Engine` running fake queries."""
    return Engine(prepare=fake_prepare, make_projector=fake_project, make_caps=lambda obj: obj)
