"""Parse + analyse of hostile 16 KB queries (issue 9): p99 per shape, against baselines of the same run.

    .venv/bin/python bench/parse_bench.py [--rounds N] [--json]

Each shape is a query of up to 16 KB built to be expensive: the digit run of the original attack
(``select 999…9x``), thousands of select items, ORs, regexes, GROUP BY keys, a full IN list,
deep parentheses, long literals. Queries over the complexity budget are rejected (E308), which is
part of what is measured: rejection must be cheap too. Every round uses fresh text (no cache).

Baselines measured interleaved in the same run: ``orjson.loads`` of a 16 KB JSON document and
parse + analyse of a 100-byte query. The target is p99 <= 20 ms per shape on an idle core; on a
shared machine read the ratios (p99 / baseline), which cancel most of the load.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import orjson  # noqa: E402

from mantis_py.errors import QueryError  # noqa: E402
from mantis_py.query.run.engine import prepare  # noqa: E402
from mantis_py.query.semantics.analyze import analyze  # noqa: E402
from mantis_py.query.syntax.parser import parse  # noqa: E402

LIMIT = 16_384


def _fit(text: str) -> str:
    return text.encode("utf-8")[:LIMIT].decode("utf-8", "ignore")


SHAPES: dict[str, Callable[[int], str]] = {
    "digits_then_x": lambda u: _fit("select " + "9" * 16_300 + f"x{u}"),
    "select_items": lambda u: _fit("select " + ",".join(f"a{i}_{u}" for i in range(3000))),
    "select_250_sums": lambda u: "select " + ",".join(f"sum(a{i}_{u})" for i in range(250))
    + " from x window 1",
    "where_or": lambda u: _fit(f"select * from x{u} where " + " or ".join(f"a=={i}" for i in range(3000))),
    "in_1000": lambda u: f"select * from x{u} where a in (" + ",".join(str(i) for i in range(1000)) + ")",
    "regex_64": lambda u: f"select * from x{u} where " + " or ".join(
        "a ==~ /" + "(a|b)?" * 36 + f"{i}/" for i in range(64)),
    "group_32": lambda u: f"select count(*) from x{u} window 1 group by "
    + ",".join(f"g{i}" for i in range(32)),
    "nested_parens": lambda u: _fit(f"select * from x{u} where " + "(" * 64 + "a == 1" + ")" * 64
                                    + " and b == 2" * 1500),
    "long_string": lambda u: f"select * from x{u} where a == '" + "x" * 4000 + "'",
    "words": lambda u: _fit(f"select a from x{u} where " + "a " * 8000),
}

SMALL = "select country, count(*) as n from playback where status == 500 window 1 group by country"


def _parse_analyse(text: str) -> None:
    try:
        analyze(parse(text), mode="live")
    except QueryError:
        pass


def _prepare(text: str) -> None:
    try:
        prepare(text, mode="live")
    except QueryError:
        pass


def _time(fn: Callable[[str], None], text: str) -> float:
    t = time.perf_counter()
    fn(text)
    return time.perf_counter() - t


def _p(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=100, help="fresh queries per shape (default 100)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    doc = orjson.dumps({"k": [{"a": i, "b": "x" * 20, "c": [1, 2.5, None]} for i in range(300)]})
    doc = doc[:LIMIT] if len(doc) > LIMIT else doc
    base_json: list[float] = []
    base_small: list[float] = []
    result: dict[str, dict[str, float]] = {}
    for fn in (_parse_analyse, _prepare):  # warm both paths
        fn(SMALL)
    gc.disable()
    try:
        for name, make in SHAPES.items():
            times: list[float] = []
            compile_times: list[float] = []
            for r in range(args.rounds):
                text = make(r)
                t = time.perf_counter()
                orjson.loads(doc)
                base_json.append(time.perf_counter() - t)
                base_small.append(_time(_parse_analyse, SMALL + f" limit {r + 1}"))
                times.append(_time(_parse_analyse, text))
                if r < max(5, args.rounds // 10):
                    compile_times.append(_time(_prepare, make(10_000 + r)))
            result[name] = {"bytes": len(make(0).encode()), "p50_ms": 1000 * _p(times, 0.5),
                            "p99_ms": 1000 * _p(times, 0.99),
                            "prepare_p99_ms": 1000 * _p(compile_times, 0.99)}
    finally:
        gc.enable()
    bj, bs = _p(base_json, 0.5), _p(base_small, 0.5)
    worst = max(v["p99_ms"] for v in result.values())
    out = {
        "baseline_orjson_16kb_p50_ms": 1000 * bj,
        "baseline_parse_100b_p50_ms": 1000 * bs,
        "shapes": result,
        "worst_p99_ms": worst,
        "worst_p99_vs_orjson_16kb": worst / (1000 * bj),
        "worst_p99_vs_parse_100b": worst / (1000 * bs),
        "target_p99_ms": 20.0,
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"baselines (p50): orjson.loads 16 KB {1000 * bj:.3f} ms, parse+analyse 100 B {1000 * bs:.3f} ms")
    print(f"{'shape':18} {'bytes':>6} {'p50 ms':>8} {'p99 ms':>8} {'p99/json':>9} {'p99/100B':>9} {'prepare p99':>12}")
    for name, v in result.items():
        print(f"{name:18} {v['bytes']:6d} {v['p50_ms']:8.2f} {v['p99_ms']:8.2f} "
              f"{v['p99_ms'] / (1000 * bj):9.1f} {v['p99_ms'] / (1000 * bs):9.1f} "
              f"{v['prepare_p99_ms']:10.2f} ms")
    print(f"worst p99 {worst:.2f} ms (target 20 ms) = {out['worst_p99_vs_parse_100b']:.1f}x a 100-byte "
          f"parse, {out['worst_p99_vs_orjson_16kb']:.1f}x orjson.loads of 16 KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
