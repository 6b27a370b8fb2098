"""The per-file cost of one checkout on one corpus, in measures a loaded machine does not blur:
which tier each Python file gets, how many files are fully analysed and how many of those have no
finding, the characters `ast.parse` reads, the CPU time (min of 3) of `lint_bytes` over every file
(the project index prepared once, outside the timing), and with --profile the cProfile shares.

    PYTHONPATH=CHECKOUT python benchmarks/bench_perfile.py DIR [--profile]

Run it once per checkout (PYTHONPATH picks the code measured) and compare the lines."""

from __future__ import annotations

import ast
import cProfile
import collections
import gc
import os
import pstats
import sys
import time


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    d = os.path.abspath(argv[0])
    sys.setrecursionlimit(10000)
    gc.disable()
    from gpufix import engine

    members, policy, catalog = project_under_policy(d)
    raws = []
    for a, disp in members:
        with open(a, "rb") as fh:
            raws.append((os.path.abspath(a), disp, fh.read()))

    tiers: dict = {}
    real_tier = engine.python_tier

    def python_tier(src, abs_path, display, pol, cat):
        tiers[display] = (real_tier(src, abs_path, display, pol, cat), len(src.text))
        return tiers[display][0]

    parsed = [0]
    real_parse = ast.parse

    def parse(source, *args, **kwargs):
        parsed[0] += len(source) if isinstance(source, (str, bytes)) else 0
        return real_parse(source, *args, **kwargs)

    engine.python_tier, ast.parse = python_tier, parse
    with_findings = set()
    best = None
    for _ in range(3):
        parsed[0] = 0
        start = time.process_time()
        for a, disp, raw in raws:
            if engine.lint_bytes(raw, a, disp, policy, True, catalog).findings:
                with_findings.add(disp)
        took = time.process_time() - start
        best = took if best is None else min(best, took)
    engine.python_tier = real_tier
    count, size = collections.Counter(), collections.Counter()
    for disp, (tier, n) in tiers.items():
        key = ("skip", "header", "full")[tier] + (" with findings" if disp in with_findings else " no finding")
        count[key] += 1
        size[key] += n
    print(f"{d}: {len(raws)} files, per-file CPU {best:.2f} s (min of 3), ast.parse read {parsed[0]:,} chars, "
          f"{len(with_findings)} files with findings")
    for key in sorted(count):
        print(f"  {key:<24} {count[key]:>5} files {size[key] / 1e6:7.2f} M chars")
    if "--profile" in argv:
        prof = cProfile.Profile()
        prof.enable()
        for a, disp, raw in raws:
            engine.lint_bytes(raw, a, disp, policy, True, catalog)
        prof.disable()
        stats = pstats.Stats(prof)
        total = stats.total_tt

        def cum(name: str, where: str = "") -> float:
            return 100 * sum(v[3] for k, v in stats.stats.items() if k[2] == name and where in k[0]) / total

        print(f"  cProfile (cumulative share of lint_bytes): prefilter {cum('python_tier'):.1f}%, "
              f"ast.parse {cum('parse', 'ast.py'):.1f}%, analysis walk {cum('source_facts'):.1f}%, "
              f"refine_gpu_imports {cum('refine_gpu_imports'):.1f}%, finish hooks {cum('finish_facts') + cum('finish', 'registry.py'):.1f}%, "
              f"rules {cum('run_rules'):.1f}%")
    return 0


def project_under_policy(d: str) -> tuple:
    """((abs path, display) of every file a scan of `d` reads, the policy `--visible-devices 1`
    with the project's index, its catalogue): what a cold scan of `d` judges each file under.
    Shared by the per-file benchmarks (bench_lint_stages imports it)."""
    from gpufix import engine
    from gpufix.catalog import catalog_for
    from gpufix.config import PolicyResolver
    from gpufix.discover import discover_files

    files = discover_files([d], PolicyResolver(overrides={"visible_devices": "1"}))
    members = [(a, disp) for a, disp, _ in files]
    policy = engine.prepare_policy([d], files[0][2], members, use_cache=False)
    return members, policy, catalog_for(policy)


if __name__ == "__main__":
    sys.exit(main())
