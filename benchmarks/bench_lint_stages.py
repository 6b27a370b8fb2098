"""CPU (process time) of `engine.lint_source` over the Python files a cold scan analyses (the
prefilter's FULL and HEADER tiers), split by stage, without the profiler:

    PYTHONPATH=CHECKOUT python benchmarks/bench_lint_stages.py DIR [ROUNDS] [--tier full|header]

The project index is prepared once, outside the timing; each file is read and its tier decided
once; then every round lints them all (gc off, as in a scan) and the best round is printed with
what its stages took: ast.parse, the facts (the walk with the collectors' before/after hooks),
refine_gpu_imports, each collector's finish hook, the rules. Run it once per checkout, interleaved,
and compare the lines."""

from __future__ import annotations

import ast
import collections
import gc
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_perfile import project_under_policy  # noqa: E402


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    tier_arg = argv[argv.index("--tier") + 1] if "--tier" in argv else None
    args = [a for i, a in enumerate(argv) if a != "--tier" and (i == 0 or argv[i - 1] != "--tier")]
    d, rounds = os.path.abspath(args[0]), int(args[1]) if len(args) > 1 else 5
    sys.setrecursionlimit(10000)
    from gpufix import engine, registry
    from gpufix.source import ReadError, read_source

    members, policy, catalog = project_under_policy(d)
    todo = []
    for a, disp in members:
        with open(a, "rb") as fh:
            raw = fh.read()
        kind = engine.detect_kind(disp, raw)
        if kind in engine.TEXT_KINDS or kind in engine.CONFIG_KINDS:
            continue
        try:
            src = read_source(disp, raw)
        except ReadError:
            continue
        tier = engine.python_tier(src, os.path.abspath(a), disp, policy, catalog)
        if tier == engine.SKIP or (tier_arg == "full" and tier == engine.HEADER) or (tier_arg == "header" and tier != engine.HEADER):
            continue
        focused = tier == engine.HEADER or not registry.prefilter(catalog).irregular_spelling(src.text)
        todo.append((src, os.path.abspath(a), tier == engine.HEADER, focused))
    times: collections.Counter = collections.Counter()

    def timed(fn, key):
        def run(*a, **k):
            t = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                times[key] += time.process_time() - t
        return run

    for name in ("source_facts", "refine_gpu_imports", "run_rules"):
        setattr(engine, name, timed(getattr(engine, name), name))
    engine.ast.parse = timed(ast.parse, "ast.parse")
    collectors = registry.collectors()
    for c in collectors.all:
        for hook in ("before", "after", "finish"):
            if hook in type(c).__dict__:
                setattr(c, hook, timed(getattr(c, hook), f"{c.name}.{hook}"))
    gc.disable()
    runs = []
    for _ in range(rounds):
        times.clear()
        t0 = time.process_time()
        for src, a, header_only, focused in todo:
            engine.lint_source(src, policy, catalog, abs_path=a, header_only=header_only, focused=focused)
        runs.append((time.process_time() - t0, dict(times)))
    total, best = min(runs, key=lambda r: r[0])
    header = sum(h for _, _, h, _ in todo)
    print(f"{d}: {len(todo) - header} full + {header} header files, {sum(len(s.text) for s, *_ in todo):,} chars; "
          f"lint_source {total:.3f} s CPU (best of {rounds}: {' '.join('%.3f' % r[0] for r in runs)})")
    for key, value in sorted(best.items(), key=lambda kv: -kv[1]):
        print(f"  {key:<28} {value:7.3f} s {100 * value / total:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
