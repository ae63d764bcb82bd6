"""A tiny fake of the query engine's contract (docs/architecture.md) for pure gateway tests.

``fake_prepare(text, mode="live", apps=...)`` understands just enough MQL:

- ``select * from a[, b/log]``               raw events, forever
- ``select * from a limit N``                raw events, completes after N rows
- ``select count(*) from a window N``        partials: agents ship {"window": [s, e], "count": n}
- anything else containing ``bad``           QuerySyntaxError
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mantis_py.errors import QueryCompileError, QuerySyntaxError
from mantis_py.query.run.outputs import Complete, CompleteReason, Coverage, Notice, NoticeKind, Rows

__all__ = ["Complete", "FakeMerger", "FakePrepared", "Notice", "Rows", "fake_prepare"]


@dataclass
class FakeMerger:
    prepared: FakePrepared
    start: float
    grace: float
    agents: set[str] = field(default_factory=set)
    pending: list[Any] = field(default_factory=list)
    emitted_rows: int = 0
    done: bool = False
    windows: dict[float, dict[str, int]] = field(default_factory=dict)
    next_window: float = 0.0
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = self.prepared.window or 1
        k = -(-self.start // n)
        self.next_window = k * n

    def add_agent(self, agent_id: str, now: float) -> None:
        self.agents.add(agent_id)
        self.added.append(agent_id)

    def remove_agent(self, agent_id: str, now: float) -> None:
        self.agents.discard(agent_id)
        self.removed.append(agent_id)

    def receive_events(self, agent_id: str, records: list[dict[str, Any]], now: float) -> None:
        if self.done:
            return
        rows = [dict(r["e"]) for r in records]
        limit = self.prepared.limit
        if limit is not None:
            rows = rows[: limit - self.emitted_rows]
        self.emitted_rows += len(rows)
        if rows:
            self.pending.append(Rows(None, rows))
        if limit is not None and self.emitted_rows >= limit:
            self.pending.append(Complete(CompleteReason.LIMIT))
            self.done = True

    def receive_part(self, agent_id: str, part: dict[str, Any], now: float) -> None:
        s = float(part["window"][0])
        if s < self.next_window:
            self.pending.append(Notice(NoticeKind.LATE, "1 late", 1))
            return
        self.windows.setdefault(s, {})[agent_id] = int(part["count"])

    def poll(self, now: float) -> list[Any]:
        out, self.pending = self.pending, []
        n = self.prepared.window
        if n is None:
            return out
        while True:
            s = self.next_window
            e = s + n
            got = self.windows.get(s, {})
            if not (set(self.agents) <= set(got) and now >= e) and now < e + self.grace:
                break
            self.windows.pop(s, None)
            exp = len(self.agents | set(got))
            # like the engine: a window's coverage rides on its rows (here only when short)
            cov = Coverage(len(got), exp) if len(got) < exp else None
            out.append(Rows((s, e), [{"count": sum(got.values())}], coverage=cov))
            if cov is not None:
                out.append(Notice(NoticeKind.COVERAGE, str(cov), len(got), coverage=cov))
            self.next_window = e
        return out

    @property
    def coverage(self) -> Coverage | None:
        return None  # unknown: the gateway assumes every expected agent

    def statistics(self) -> dict[str, Any]:
        return {}


@dataclass
class FakePrepared:
    canonical: str
    sources: tuple[tuple[str, str], ...]
    window: int | None
    limit: int | None
    mergers: list[FakeMerger] = field(default_factory=list)
    columns: int = 1

    @property
    def ships(self) -> str:
        return "partials" if self.window else "events"

    @property
    def completes(self) -> bool:
        return self.limit is not None and self.window is None

    def merger(self, start: float, grace: float, caps: Any = None) -> FakeMerger:
        m = FakeMerger(self, start, grace)
        self.mergers.append(m)
        return m


_QUERY = re.compile(
    r"^select (?P<sel>\*|count\(\*\)) from (?P<src>[\w/.,\s-]+?)"
    r"(?: window (?P<w>\d+))?(?: limit (?P<l>\d+))?$",
    re.I,
)

CACHE: dict[str, FakePrepared] = {}


def fake_prepare(text: str, mode: str = "live", apps: set[str] | None = None) -> FakePrepared:
    m = _QUERY.match(text.strip())
    if m is None or "bad" in text:
        raise QuerySyntaxError("E102", "expected something else, found 'bad'", 1, 8, 3,
                               text + "\n       ^^^", ["FROM"])
    sources = []
    for part in m["src"].split(","):
        app, _, stream = part.strip().partition("/")
        if apps is not None and app not in apps:
            raise QueryCompileError("E222", f"unknown application '{app}'")
        sources.append((app, stream or "default"))
    canonical = text.strip().upper().replace("SELECT", "SELECT")
    if canonical not in CACHE:
        CACHE[canonical] = FakePrepared(
            canonical, tuple(sources), int(m["w"]) if m["w"] else None,
            int(m["l"]) if m["l"] else None,
        )
    return CACHE[canonical]
