"""What a Python tool cannot go below, against the issue's baselines, measured in the same rounds.

    python benchmarks/bench_floors.py DIR [--rounds 5] [--jobs 2]

Per round, each a fresh subprocess (wall seconds; medians printed):
  parse every file   `ast.parse` of every .py file of DIR, split over --jobs processes (the floor
                     of any tool that parses every file with Python's parser, as ruff parses with
                     its own)
  import gpufix      `python -c "import gpufix.cli, gpufix.engine, gpufix.project"`: the modules
                     every scan imports before it reads a file (the floor of one gpufix process)
  ruff               `ruff check --isolated --no-cache DIR`
  python -c pass     the interpreter alone
The cold-scan target is 2x ruff and the pre-commit target 6x `python -c pass`: the printed ratios
say how far below or above those lines each floor lies. Run it from a checkout, with the
interpreter gpufix is installed in."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

_PARSE = r"""
import ast, os, sys, warnings
from concurrent.futures import ProcessPoolExecutor

def files(root):
    for d, ds, fs in os.walk(root):
        ds[:] = [x for x in ds if not x.startswith(".")]
        for f in fs:
            if f.endswith(".py"):
                yield os.path.join(d, f)

def parse(chunk):
    warnings.simplefilter("ignore")
    n = 0
    for p in chunk:
        with open(p, "rb") as fh:
            src = fh.read()
        try:
            ast.parse(src)
            n += 1
        except (SyntaxError, ValueError, RecursionError):
            pass
    return n

if __name__ == "__main__":
    found, jobs = sorted(files(sys.argv[1])), int(sys.argv[2])
    if jobs <= 1:
        parse(found)
    else:
        with ProcessPoolExecutor(jobs) as pool:
            list(pool.map(parse, [found[i::jobs] for i in range(jobs)]))
"""


def timed(cmd, cwd=None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    corpus = str(Path(args.dir).resolve())
    checkout = str(Path(__file__).resolve().parent.parent)
    py = sys.executable
    ruff = [py, "-m", "ruff"] if subprocess.run([py, "-m", "ruff", "--version"], capture_output=True).returncode == 0 else ["ruff"]
    runs = {
        "parse every file": [py, "-c", _PARSE, corpus, str(args.jobs)],
        "import gpufix": [py, "-c", "import gpufix.cli, gpufix.engine, gpufix.project"],
        "ruff": [*ruff, "check", "--isolated", "--no-cache", "--exit-zero", "-q", corpus],
        "python -c pass": [py, "-c", "pass"],
    }
    samples: dict = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, cmd in runs.items():
            samples[name].append(timed(cmd, cwd=checkout if name == "import gpufix" else corpus))
    med = {name: statistics.median(v) for name, v in samples.items()}
    n = sum(1 for _ in Path(corpus).rglob("*.py"))
    print(f"corpus {Path(corpus).name} ({n} .py files), {args.rounds} rounds, --jobs {args.jobs}, medians")
    print(f"  parse every file   {med['parse every file']:.3f} s = {med['parse every file'] / med['ruff']:.2f}x ruff")
    print(f"  import gpufix      {med['import gpufix']:.3f} s = {med['import gpufix'] / med['python -c pass']:.2f}x python -c pass")
    print(f"  ruff               {med['ruff']:.3f} s")
    print(f"  python -c pass     {med['python -c pass']:.3f} s")


if __name__ == "__main__":
    main()
