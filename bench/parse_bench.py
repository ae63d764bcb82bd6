"""Parse + analyse of hostile 16 KB queries (issue 9): p99 per shape, against baselines of the same run.

    .venv/bin/python bench/parse_bench.py [--rounds N] [--json] [--shapes a,b]
    .venv/bin/python bench/parse_bench.py --against main [--rounds N] [--shapes a,b]

Each shape is a query of up to 16 KB built to be expensive: the digit run of the original attack
(``select 999…9x``), thousands of select items, ORs, regexes, GROUP BY keys, a full IN list,
deep parentheses, long literals. Queries over the complexity budget are rejected (E308), which is
part of what is measured: rejection must be cheap too. Every round uses fresh text (no cache).

Baselines measured interleaved in the same run: ``orjson.loads`` of a 16 KB JSON document and
parse + analyse of a 100-byte query. The target is p99 <= 20 ms per shape on an idle core; on a
shared machine read the ratios (p99 / baseline), which cancel most of the load.

``--against REF`` compares this tree with the package as committed at the git ref ``REF``
(``git archive`` into a temporary directory): two worker processes, one per tree, time the same
fresh query texts, taking turns every few rounds (never at the same time), so both see the same
machine state; the output is p50/p99 per shape for each tree and the old/new ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a worker of --against imports the package from the tree it is given
sys.path.insert(0, os.environ.get("MANTIS_BENCH_TREE") or ROOT)

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
    # valid queries just under the token budget (2,500): every token is parsed and analysed
    "where_or_620": lambda u: f"select * from x{u} where " + " or ".join(
        f"a{u}=={i}" for i in range(620)),
    "and_paths_580": lambda u: f"select count(*) from x{u} window 1 where " + " and ".join(
        f"e['k{i}'][0] != 'v{i}'" for i in range(580)),
    "select_250_pcts": lambda u: "select " + ",".join(f"percentile(a{i}_{u}, 99.5)" for i in range(250))
    + " from x window 1",
    "in_1000_strings": lambda u: f"select * from x{u} where a not in ("
    + ",".join(f"'v{i}'" for i in range(1000)) + ")",
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


def _worker() -> int:
    """--against's worker: reads ``shape round`` lines, answers with the seconds of one
    parse + analyse of that shape's text for that round."""
    _parse_analyse(SMALL)
    gc.disable()
    for line in sys.stdin:
        name, r = line.split()
        text = SHAPES[name](int(r))
        t = time.perf_counter()
        _parse_analyse(text)
        dt = time.perf_counter() - t
        gc.collect()  # outside the timed part, as the main bench's gc.disable() leaves it
        sys.stdout.write(f"{dt!r}\n")
        sys.stdout.flush()
    return 0


class _Tree:
    """A worker process timing parse + analyse with the package of one source tree."""

    def __init__(self, tree: str) -> None:
        env = dict(os.environ, MANTIS_BENCH_TREE=tree)
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)  # fmt: skip

    def time(self, name: str, r: int) -> float:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(f"{name} {r}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


_BLOCK = 5
"""--against: rounds a worker runs in a row before the other takes its turn. Switching process
on every query leaves each one's caches cold and doubles some shapes' times for both trees."""


def _against(ref: str, rounds: int, shapes: list[str], as_json: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="parse_bench_") as tmp:
        archive = os.path.join(tmp, "old.tar")
        try:
            subprocess.run(["git", "-C", ROOT, "archive", "-o", archive, ref, "mantis_py"],
                           check=True, capture_output=True, text=True)  # fmt: skip
        except subprocess.CalledProcessError as exc:
            print(f"error: git archive {ref}: {exc.stderr.strip()}", file=sys.stderr)
            return 2
        old_tree = os.path.join(tmp, "old")
        with tarfile.open(archive) as tar:
            tar.extractall(old_tree, filter="data")
        trees = {"old": _Tree(old_tree), "new": _Tree(ROOT)}
        times: dict[str, dict[str, list[float]]] = {s: {"old": [], "new": []} for s in shapes}
        try:
            for name in shapes:
                for t in trees.values():  # warm: first use of the shape's paths
                    t.time(name, 1_000_000)
                for block, first in enumerate(range(0, rounds, _BLOCK)):
                    order = ("old", "new") if block % 2 == 0 else ("new", "old")
                    for which in order:
                        for r in range(first, min(first + _BLOCK, rounds)):
                            times[name][which].append(trees[which].time(name, r))
        finally:
            for t in trees.values():
                t.close()
    out: dict[str, dict[str, float]] = {}
    for name in shapes:
        o, nw = times[name]["old"], times[name]["new"]
        out[name] = {"old_p50_ms": 1000 * _p(o, 0.5), "old_p99_ms": 1000 * _p(o, 0.99),
                     "new_p50_ms": 1000 * _p(nw, 0.5), "new_p99_ms": 1000 * _p(nw, 0.99)}  # fmt: skip
        out[name]["p50_old_over_new"] = out[name]["old_p50_ms"] / out[name]["new_p50_ms"]
        out[name]["p99_old_over_new"] = out[name]["old_p99_ms"] / out[name]["new_p99_ms"]
    worst_old = max(v["old_p99_ms"] for v in out.values())
    worst_new = max(v["new_p99_ms"] for v in out.values())
    if as_json:
        print(json.dumps({"against": ref, "rounds": rounds, "shapes": out,
                          "worst_old_p99_ms": worst_old, "worst_new_p99_ms": worst_new}, indent=2))
        return 0
    print(f"parse + analyse, this tree (new) against {ref} (old), {rounds} rounds, taking turns")
    print(f"{'shape':18} {'old p50':>8} {'old p99':>8} {'new p50':>8} {'new p99':>8} "
          f"{'p50 old/new':>12} {'p99 old/new':>12}")  # fmt: skip
    for name, v in out.items():
        print(f"{name:18} {v['old_p50_ms']:8.2f} {v['old_p99_ms']:8.2f} {v['new_p50_ms']:8.2f} "
              f"{v['new_p99_ms']:8.2f} {v['p50_old_over_new']:11.2f}x {v['p99_old_over_new']:11.2f}x")
    print(f"worst p99: old {worst_old:.2f} ms, new {worst_new:.2f} ms (target 20 ms)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=100, help="fresh queries per shape (default 100)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--shapes", help=f"comma-separated subset of: {', '.join(SHAPES)}")
    ap.add_argument("--against", metavar="REF",
                    help="compare with the package at this git ref (e.g. main), taking turns")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return _worker()
    shapes = list(SHAPES) if not args.shapes else args.shapes.split(",")
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        ap.error(f"unknown shape {unknown[0]!r}; the shapes are {', '.join(SHAPES)}")
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if args.against:
        return _against(args.against, args.rounds, shapes, args.json)
    doc = orjson.dumps({"k": [{"a": i, "b": "x" * 20, "c": [1, 2.5, None]} for i in range(300)]})
    doc = doc[:LIMIT] if len(doc) > LIMIT else doc
    base_json: list[float] = []
    base_small: list[float] = []
    result: dict[str, dict[str, float]] = {}
    for fn in (_parse_analyse, _prepare):  # warm both paths
        fn(SMALL)
    gc.disable()
    try:
        for name in shapes:
            make = SHAPES[name]
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
