"""Seeded random MQL queries and events for the engine's property tests (not a test module)."""

from __future__ import annotations

import random
from typing import Any

VALUES: list[Any] = [
    None, True, False, 0, 1, 1.0, -2.5, 7, 10**20, 1e20, 2**70, "", "a", "b", "1", "US", "a\nb",
    [], [1, "a"], [1.0, None], {"p": 1}, {"p": "a", "q": [1]}, {"x": None}, [{"sku": "X"}, {"sku": 1}],
]
LITERALS = ["null", "true", "false", "0", "1", "1.0", "-2.5", "7", "100000000000000000000", "1e+20", "''", "'a'", "'b'", "'1'", "'US'"]
SCALAR_PROPS = ["a", "b", "k", "nf.x", "e['o']['p']", "e['l'][0]", "e['l'][-1]", "e['o']['q'][0]"]
STAR_PROPS = ["e['l'][*]", "e['o'][*]", "e['l'][*]['sku']"]
REGEXES = ["a", ".*", "1", "[0-9]+", "(?i)US", "a.b", "true"]
OPS = ["==", "!=", "<", "<=", ">", ">=", "==+"]


def random_event(rng: random.Random) -> dict[str, Any]:
    e: dict[str, Any] = {}
    for key in ["a", "b", "k", "nf.x", "o", "l", "z"]:
        r = rng.random()
        if r < 0.2:
            continue
        if key == "o" and r < 0.7:
            e[key] = {"p": rng.choice(VALUES), "q": [rng.choice(VALUES)], "r": rng.choice(VALUES)}
        elif key == "l" and r < 0.7:
            e[key] = [rng.choice(VALUES) for _ in range(rng.randrange(4))]
        else:
            e[key] = rng.choice(VALUES)
    return e


def random_condition(rng: random.Random, depth: int = 0) -> str:
    r = rng.random()
    if depth < 2 and r < 0.25:
        joiner = rng.choice([" and ", " or "])
        return "(" + joiner.join(random_condition(rng, depth + 1) for _ in range(rng.randrange(2, 4))) + ")"
    if depth < 2 and r < 0.32:
        return f"not ({random_condition(rng, depth + 1)})"
    kind = rng.randrange(8)
    prop = rng.choice(SCALAR_PROPS)
    if kind == 0:
        return f"{prop} is {'not ' if rng.random() < 0.5 else ''}null"
    if kind == 1:
        items = ", ".join(rng.choice(LITERALS) for _ in range(rng.randrange(1, 4)))
        left = rng.choice(SCALAR_PROPS + STAR_PROPS)
        return f"{left} {'not ' if rng.random() < 0.4 else ''}in ({items})"
    if kind == 2:
        return f"{prop} {rng.choice(['==~', '!~'])} /{rng.choice(REGEXES)}/"
    if kind == 3:
        return f"{prop} ==+ {rng.choice(['a', '1', 'U', ''])!r}"
    if kind == 4:
        return f"{rng.choice(STAR_PROPS)} {rng.choice(OPS[:6])} {rng.choice(LITERALS)}"
    if kind == 5:
        return f"{prop} {rng.choice(OPS[:6])} {rng.choice(SCALAR_PROPS)}"
    if kind == 6:
        return f"not {prop} {rng.choice(['==', '!='])} {rng.choice(['true', 'false', rng.choice(SCALAR_PROPS)])}"
    lit = rng.choice(LITERALS)
    op = rng.choice(OPS[:6])
    if rng.random() < 0.3:
        return f"{lit} {op} {prop}"
    return f"{prop} {op} {lit}"


def random_plain_query(rng: random.Random) -> str:
    pool = ["a", "b", "k", "nf.x", "e['o']['p']", "e['o']", "e['l'][0]", "e['l'][-1]", "e[^'n']", "'lit' as c", "1.5", "a as aa"]
    n = rng.randrange(1, 4)
    items = rng.sample(pool, n)
    # avoid E207 clashes the analyzer would reject
    if "e['o']" in items and "e['o']['p']" in items:
        items.remove("e['o']['p']")
    q = f"select {', '.join(items)} from s"
    if rng.random() < 0.7:
        q += f" where {random_condition(rng)}"
    return q


AGGS = ["count(*)", "count(a)", "sum(a)", "average(a)", "min(a)", "max(a)", "list(a)", "p50(a)", "p99(b)",
        "percentile(a, 12.5)", "count(distinct a)", "list(distinct b)", "sum(distinct a)", "count(1)"]


def random_aggregate_query(rng: random.Random, window: str) -> str:
    aggs = rng.sample(AGGS, rng.randrange(1, 4))
    grouped = rng.random() < 0.6
    items = list(aggs)
    if rng.random() < 0.5:
        items.insert(0, "b")
    if rng.random() < 0.3:
        items.append("tick()")
    if grouped and rng.random() < 0.7:
        items.insert(0, "k")
    names = [f"c{i}" for i in range(len(items))]
    sel = ", ".join(f"{it} as {nm}" for it, nm in zip(items, names, strict=True))
    q = f"select {sel} from s"
    if rng.random() < 0.6:
        q += f" where {random_condition(rng)}"
    q += f" {window}"
    if grouped:
        q += " group by k"
    if rng.random() < 0.3:
        q += f" having count(*) >= {rng.randrange(1, 3)}"
    if grouped and rng.random() < 0.4:
        q += f" order by {rng.choice(names)}{' desc' if rng.random() < 0.5 else ''}"
        if rng.random() < 0.5:
            q += f" limit {rng.randrange(1, 4)}"
    return q


def _load_cases() -> list[dict[str, Any]]:
    import json
    from pathlib import Path

    path = Path(__file__).parent / "fixtures" / "cases.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


CASES = _load_cases()
