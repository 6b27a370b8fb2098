"""Interleaved rounds of two gpufix checkouts and the baselines on one corpus (a loaded machine:
ratios are against baselines measured in the same round).

    python benchmarks/bench_interleaved.py DIR --before CHECKOUT --after CHECKOUT [--rounds 3] [--json OUT]

Per round, in this order: for each checkout `gpufix scan DIR --visible-devices 1` cold (--no-cache),
warm (a cache filled before the first round, nothing changed), 5 GPU files of DIR named on the
command line with the warm cache and without any cache, and with --changed the pre-commit case:
5 GPU files of a second copy of DIR, each edited (a comment line appended, so findings stay the
same) just before a run with the warm cache (DIR is then copied twice to a temporary folder: the
corpus is never written, and the other runs see no edit); then
`ruff check --isolated --no-cache DIR`, `grep -rlE` of the device tokens, `python -c pass`.
Every gpufix run starts in DIR: `python -m` puts the current folder first on sys.path, so a run
started in a checkout would run that checkout's gpufix whatever PYTHONPATH says. Prints medians
and each gpufix median's ratio to its baseline (cold: ruff, warm: grep, 5 files:
python).

gpufix runs as installed: with its bytecode compiled (`compileall` before the first round) and
PYTHONDONTWRITEBYTECODE removed from the environment, as pip leaves a wheel."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scan import TOKENS, gpu_files  # noqa: E402


def timed(cmd, env=None, cwd=None) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if proc.returncode not in (0, 1):
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.decode()[-2000:]}")
    return dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("directory")
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--changed", action="store_true", help="also time 5 edited files (a copy of DIR)")
    ap.add_argument("--ruff", default=str(Path(sys.executable).with_name("ruff")))
    args = ap.parse_args(argv)
    d = os.path.abspath(args.directory)
    copy = None
    if args.changed:
        # The edited files live in a second copy: the warm runs of the first see no edit.
        copy = tempfile.mkdtemp(prefix="gpufix-bench-corpus-")
        edited = shutil.copytree(d, os.path.join(copy, "edited", os.path.basename(d)), symlinks=True)
        d = shutil.copytree(d, os.path.join(copy, "kept", os.path.basename(d)), symlinks=True)
        five_edited = gpu_files(edited)
    five = gpu_files(d)
    files = sum(1 for _ in Path(d).rglob("*.py"))
    base = {k: v for k, v in os.environ.items() if not k.startswith("GPUFIX_") and k != "PYTHONDONTWRITEBYTECODE"}
    for checkout in (args.before, args.after):
        subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(os.path.abspath(checkout), "gpufix")],
                       stdout=subprocess.DEVNULL, check=False)
    samples: dict = {}
    caches = {}
    envs = {}
    for name, checkout in (("before", args.before), ("after", args.after)):
        caches[name] = tempfile.mkdtemp(prefix=f"gpufix-bench-{name}-")
        envs[name] = {**base, "PYTHONPATH": os.path.abspath(checkout)}
    scan = [sys.executable, "-m", "gpufix", "scan", "--visible-devices", "1", "--exit-zero", "-q"]
    for name in envs:  # fill the caches (and the run snapshots of the two warm commands)
        subprocess.run(scan + [d], env={**envs[name], "GPUFIX_CACHE_DIR": caches[name]}, stdout=subprocess.DEVNULL, cwd=d)
        subprocess.run(scan + five, env={**envs[name], "GPUFIX_CACHE_DIR": caches[name]}, stdout=subprocess.DEVNULL, cwd=d)
        if args.changed:
            subprocess.run(scan + [edited], env={**envs[name], "GPUFIX_CACHE_DIR": caches[name]},
                           stdout=subprocess.DEVNULL, cwd=edited)
    try:
        for _ in range(args.rounds):
            for name, env in envs.items():
                warm = {**env, "GPUFIX_CACHE_DIR": caches[name]}
                samples.setdefault(f"{name} cold", []).append(timed(scan + ["--no-cache", d], env, cwd=d))
                samples.setdefault(f"{name} warm", []).append(timed(scan + [d], warm, cwd=d))
                samples.setdefault(f"{name} 5 files warm", []).append(timed(scan + five, warm, cwd=d))
                samples.setdefault(f"{name} 5 files no cache", []).append(timed(scan + ["--no-cache", *five], env, cwd=d))
                if args.changed:
                    for f in five_edited:
                        with open(f, "a", encoding="utf-8") as fh:
                            fh.write(f"# edited for a pre-commit run ({name})\n")
                    samples.setdefault(f"{name} 5 files changed", []).append(timed(scan + five_edited, warm, cwd=edited))
            samples.setdefault("ruff", []).append(timed([args.ruff, "check", "--isolated", "--no-cache", "--exit-zero", "-q", d]))
            samples.setdefault("grep", []).append(timed(["grep", "-rlE", "--include=*.py", TOKENS, d]))
            samples.setdefault("python -c pass", []).append(timed([sys.executable, "-c", "pass"]))
    finally:
        for c in [*caches.values(), *([copy] if copy else [])]:
            shutil.rmtree(c, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in samples.items()}
    baseline = {"cold": "ruff", "warm": "grep", "5 files warm": "python -c pass", "5 files no cache": "python -c pass",
                "5 files changed": "python -c pass"}
    print(f"corpus {os.path.basename(d)} ({files} .py files), {args.rounds} interleaved rounds, medians")
    for k, v in med.items():
        kind = k.split(" ", 1)[1] if k.startswith(("before ", "after ")) else None
        ratio = f"  = {v / med[baseline[kind]]:.2f}x {baseline[kind]}" if kind else ""
        print(f"  {k:28s} {v:7.3f} s{ratio}")
    if args.json:
        Path(args.json).write_text(json.dumps({"corpus": os.path.basename(d), "files": files, "rounds": args.rounds, "samples": samples,
                                               "medians": med}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
