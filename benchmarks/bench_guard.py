"""Benchmark the start-up cost of `gpufix guard` against `python -c pass` in the same run.

    python benchmarks/bench_guard.py [--runs 100] [--output reports/bench-guard.md]

Makes two fresh virtual environments from the running Python (`python -m venv --without-pip`), installs
the guard into one (`gpufix guard install --venv`, policy visible-devices "1"), and measures, interleaved
in random order so that load on the machine hits both alike, --runs times each:

* wall clock of `VENV/bin/python -c pass`: without the guard, with it (nothing set in the caller's
  environment: the hook sets both variables), with a caller's CUDA_VISIBLE_DEVICES=0 (the module is
  imported, replaces it and writes its line to stderr);
* inside the interpreter, `python -X importtime -c pass`'s cumulative time of `site` (which runs every
  .pth file of site-packages) in the same three cases, and of the guard's module where it is imported:
  the start-up cost without the noise of process creation.

Reports medians and 10th/90th percentiles; writes a markdown table and a JSON file with every sample.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def py_of(env: Path) -> str:
    return str(env / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUDA_") and k not in ("PYTHONPATH", "GPUFIX_GUARD")}
    env.update(extra)
    return env


def wall(cmd, env) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def importtime(python: str, env: dict) -> dict:
    """{module: cumulative seconds} of `python -X importtime -c pass`."""
    out = subprocess.run([python, "-X", "importtime", "-c", "pass"], env=env, capture_output=True, text=True,
                         check=True).stderr
    times = {}
    for line in out.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)\s*$", line)
        if m:
            times[m.group(3)] = int(m.group(2)) / 1e6
    return times


HOOK_TIMER = r"""
import os, sys, timeit
line = open(sys.argv[1], encoding="utf-8").read()
def once():
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    os.environ.pop("CUDA_DEVICE_ORDER", None)
    exec(line)   # what site.addpackage does with an import line: compile it and run it
def baseline():
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    os.environ.pop("CUDA_DEVICE_ORDER", None)
n = 2000
best = min(timeit.repeat(once, number=n, repeat=7)) / n
base = min(timeit.repeat(baseline, number=n, repeat=7)) / n
print(best - base)
"""


def hook_line_cost(python: str, env_dir: Path) -> float:
    """Seconds site.py spends on the guard's .pth line where the caller set nothing (compile + run),
    in the venv's interpreter, best of 7 x 2000."""
    out = subprocess.run([python, "-S", "-c", HOOK_TIMER, str(next(env_dir.rglob("00-gpufix-guard.pth")))],
                         env=clean_env(), capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--output", default=None, help="markdown report (a .json with the samples beside it)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plain, guarded = tmp / "plain", tmp / "guarded"
        for e in (plain, guarded):
            venv.create(e, with_pip=False, symlinks=os.name != "nt")
        (tmp / "proj").mkdir()
        (tmp / "proj" / "gpufix.toml").write_text('visible-devices = "1"\n', encoding="utf-8")
        inst = subprocess.run([sys.executable, "-m", "gpufix", "guard", "install", "--venv", str(guarded)],
                              cwd=tmp / "proj", env=clean_env(PYTHONPATH=str(REPO)), capture_output=True, text=True)
        if inst.returncode != 0:
            raise SystemExit(inst.stderr)
        base = clean_env()
        wall([py_of(guarded), "-c", "pass"], base)  # writes the module's bytecode, as any first start does
        replace = clean_env(CUDA_VISIBLE_DEVICES="0")
        cases = {
            "pass": ([py_of(plain), "-c", "pass"], base),
            "guarded": ([py_of(guarded), "-c", "pass"], base),
            "replace": ([py_of(guarded), "-c", "pass"], replace),
        }
        timed = {"site pass": (py_of(plain), base, "site"), "site guarded": (py_of(guarded), base, "site"),
                 "site replace": (py_of(guarded), replace, "site"),
                 "module replace": (py_of(guarded), replace, "_gpufix_guard")}
        samples: dict = {k: [] for k in list(cases) + list(timed)}
        for _ in range(3):  # warm the OS caches
            for cmd, env in cases.values():
                wall(cmd, env)
        order = list(cases) + ["importtime"]
        for _ in range(args.runs):
            random.shuffle(order)
            for name in order:
                if name != "importtime":
                    samples[name].append(wall(*cases[name]))
                    continue
                for key in random.sample(list(timed), len(timed)):
                    python, env, module = timed[key]
                    got = importtime(python, env)
                    if module not in got:
                        raise SystemExit(f"{module} was not imported at start-up ({key})")
                    samples[key].append(got[module])
                    if key == "site guarded" and "_gpufix_guard" in got:
                        raise SystemExit("the hook imported its module where nothing was set")
            line_cost = hook_line_cost(py_of(guarded), guarded)
    med = {k: statistics.median(v) for k, v in samples.items()}
    low = {k: pct(v, 0.1) for k, v in samples.items()}
    rows = [
        ("wall: `python -c pass` (venv, no guard)", "pass"),
        ("wall: `python -c pass` (venv with the guard, nothing set by the caller)", "guarded"),
        ("wall: same, the caller's `CUDA_VISIBLE_DEVICES=0` replaced", "replace"),
        ("`site` at start-up, no guard (`-X importtime`, cumulative)", "site pass"),
        ("`site` at start-up, with the guard, nothing set by the caller", "site guarded"),
        ("`site` at start-up, with the guard, the caller's mask replaced", "site replace"),
        ("of which the guard's module (imported only in that case)", "module replace"),
    ]
    lines = [
        "# gpufix guard: start-up cost",
        "",
        f"`python benchmarks/bench_guard.py --runs {args.runs}`: {args.runs} runs of each, interleaved in random "
        f"order; Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPU(s), load average {' / '.join(f'{x:.1f}' for x in os.getloadavg()) if hasattr(os, 'getloadavg') else 'n/a'} at the end.",
        "",
        "| what | median | p10 | p90 |",
        "|---|---:|---:|---:|",
    ]
    for label, key in rows:
        xs = samples[key]
        lines.append(f"| {label} | {med[key] * 1e3:.3f} ms | {pct(xs, 0.1) * 1e3:.3f} ms | {pct(xs, 0.9) * 1e3:.3f} ms |")
    lines += [
        "",
        f"**The guard's start-up cost where the caller set nothing: {line_cost * 1e6:.1f} µs**, the time site.py "
        "spends on its .pth line (compiled and run in the venv's interpreter, best of 7 x 2,000, the environment "
        f"reset each time): {line_cost / low['pass'] * 100:.3f} % of `python -c pass` "
        f"({low['pass'] * 1e3:.1f} ms at p10, {med['pass'] * 1e3:.1f} ms median in this run). That path imports nothing.",
        f"Across processes (p10, less sensitive to load than the median): `site` takes "
        f"{(low['site guarded'] - low['site pass']) * 1e6:+.0f} µs with the guard where nothing is set, "
        f"{(low['site replace'] - low['site pass']) * 1e6:+.0f} µs where it replaces a caller's mask (the module's "
        f"import, {low['module replace'] * 1e6:.0f} µs at p10, and the stderr line).",
        f"Wall clock, difference of the medians: guarded - pass {(med['guarded'] - med['pass']) * 1e3:+.3f} ms, "
        f"replace - pass {(med['replace'] - med['pass']) * 1e3:+.3f} ms: process creation dominates these, and "
        "the spread on a loaded machine is far larger than the guard.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        out = Path(args.output)
        out.write_text(text, encoding="utf-8")
        out.with_suffix(".json").write_text(json.dumps({"runs": args.runs, "hook_line_s": line_cost, "median_s": med,
                                                        "p10_s": low, "samples_s": samples},
                                                       indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
