"""Benchmark `gpufix scan` and `gpufix apply` against baselines measured in the same run.

    python benchmarks/bench_scan.py [DIR] [--runs 3] [--apply-runs 1] [--output reports/bench-NAME.md]

Measures (medians of --runs runs, each a fresh subprocess), without a config ("default") and with
the policy `--visible-devices 1` ("policy"):
  cold        gpufix scan DIR --no-cache
  warm        gpufix scan DIR with a cache filled by a previous run (GPUFIX_CACHE_DIR), nothing changed
  5 files     gpufix scan on 5 files of DIR that contain GPU code (the pre-commit case), --no-cache
  apply       gpufix apply --visible-devices 1 (backups and git tag, as a user runs it) on a fresh git
              copy of DIR, --apply-runs times
  ruff        ruff check --isolated --no-cache DIR (ruff's default rules; needs `pip install ruff`)
  grep        grep -rlE of the device/env tokens over DIR
  python      python3 -c pass
  libcst      libcst.parse_module over every .py file of DIR (only with --libcst-runs N > 0)
and the peak RSS of each gpufix run (the largest process of the run, workers included).
Writes a markdown table and a JSON file with every sample. DIR defaults to the installed torch package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TOKENS = r"cuda:[0-9]|CUDA_VISIBLE_DEVICES|CUDA_DEVICE_ORDER|set_device|device_ids|device_index|device_map"

LIBCST_SCRIPT = r"""
import sys, time, libcst
files = [l for l in sys.stdin.read().split("\n") if l]
t = time.perf_counter()
ok = 0
for f in files:
    try:
        with open(f, "rb") as fh:
            libcst.parse_module(fh.read())
        ok += 1
    except Exception:
        pass
print(time.perf_counter() - t, ok)
"""


def default_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec and spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    return str(REPO / ".venv/lib/python3.11/site-packages/torch")


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = 0
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def run(cmd, env=None, stdin=None) -> tuple:
    """(seconds, peak RSS in MiB of the largest process of the run, stdout)."""
    wrapped = [sys.executable, "-c", _RSS_WRAPPER, *cmd]
    proc = subprocess.run(wrapped, env=env, input=stdin, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    out, _, tail = proc.stdout.rpartition("\n__RSS__ ")
    rss, dt = tail.split()
    return float(dt), float(rss) / 1024, out


# Runs the command as its child and reports RUSAGE_CHILDREN.ru_maxrss: the peak RSS of the largest
# process among the command and its descendants (pool workers are reaped by the command).
_RSS_WRAPPER = r"""
import resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)
dt = time.perf_counter() - t
sys.stdout.write(p.stdout.decode("utf-8", "replace"))
sys.stdout.write("\n__RSS__ %d %.6f\n" % (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, dt))
sys.exit(p.returncode)
"""


def gpu_files(directory: str, n: int = 5) -> list:
    """n files of the corpus that hold GPU code (a framework import and a device token)."""
    picked = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            p = os.path.join(root, f)
            try:
                text = Path(p).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if "import torch" in text and ("cuda" in text or "device" in text) and 2_000 < len(text) < 60_000:
                picked.append(p)
                if len(picked) == n:
                    return picked
    return picked


def py_files(directory: str) -> list:
    out = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in (".git", "__pycache__"))
        out.extend(os.path.join(root, f) for f in sorted(files) if f.endswith(".py"))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("directory", nargs="?", default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--name", default=None, help="report name (default: the directory's name)")
    ap.add_argument("--output", default=None, help="markdown report path (default reports/bench-NAME.md; .json beside it)")
    ap.add_argument("--libcst-sample", type=int, default=0, help="parse only N random files with libcst and extrapolate (labelled)")
    ap.add_argument("--libcst-runs", type=int, default=0, help="runs of the libcst baseline (default: none)")
    ap.add_argument("--apply-runs", type=int, default=1, help="runs of apply on a fresh git copy (0: skip)")
    beside = Path(sys.executable).with_name("ruff")  # the venv's own ruff, even when not activated
    ap.add_argument("--ruff", default=str(beside) if beside.exists() else (shutil.which("ruff") or "ruff"),
                    help="the ruff executable for the baseline (pip install ruff, or .[bench])")
    ap.add_argument("--python", default=sys.executable, help="interpreter that has gpufix and libcst")
    args = ap.parse_args(argv)

    directory = os.path.abspath(args.directory or default_dir())
    name = args.name or Path(directory).name
    out_md = Path(args.output or REPO / "reports" / f"bench-{name}.md")
    out_json = out_md.with_suffix(".json")
    py = args.python
    files = py_files(directory)
    five = gpu_files(directory)
    policies = {"default": [], "policy": ["--visible-devices", "1"]}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFIX_")}
    samples: dict = {}

    def record(key, dt, rss=None):
        samples.setdefault(key, {"seconds": [], "rss_mib": []})
        samples[key]["seconds"].append(dt)
        if rss is not None:
            samples[key]["rss_mib"].append(rss)

    scan = [py, "-m", "gpufix", "scan", "--format", "json", "--exit-zero", "-q"]
    findings = {}
    for pname, pflags in policies.items():
        cache_dir = tempfile.mkdtemp(prefix="gpufix-bench-cache-")
        try:
            env = {**base_env, "GPUFIX_CACHE_DIR": cache_dir}
            for i in range(args.runs):
                dt, rss, out = run(scan + [directory, "--no-cache", *pflags], env=base_env)
                record(f"cold/{pname}", dt, rss)
                findings[pname] = json.loads(out)["summary"]
            run(scan + [directory, *pflags], env=env)  # fill the cache
            for i in range(args.runs):
                dt, rss, _ = run(scan + [directory, *pflags], env=env)
                record(f"warm/{pname}", dt, rss)
            for i in range(args.runs if five else 0):
                dt, rss, _ = run(scan + ["--no-cache", *pflags, *five], env=base_env)
                record(f"5 files/{pname}", dt, rss)
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
        print(f"gpufix {pname}: cold {statistics.median(samples[f'cold/{pname}']['seconds']):.2f}s", file=sys.stderr)

    for i in range(args.runs):
        dt, _, _ = run(["grep", "-rlE", "--include=*.py", TOKENS, directory])
        record("grep -rlE tokens", dt)
        dt, _, _ = run([py, "-c", "pass"])
        record("python3 -c pass", dt)
        dt, _, _ = run([args.ruff, "check", "--isolated", "--no-cache", "--exit-zero", "-q", directory])
        record("ruff check --isolated --no-cache", dt)

    applied = None
    for i in range(args.apply_runs):
        work = tempfile.mkdtemp(prefix="gpufix-bench-apply-")
        try:
            copy = os.path.join(work, name)
            shutil.copytree(directory, copy, ignore=shutil.ignore_patterns(".git", ".gpufix"))
            for git_args in (["init", "-q"], ["add", "-A"], ["-c", "user.email=b@b", "-c", "user.name=bench", "commit", "-qm", "x"]):
                subprocess.run(["git", *git_args], cwd=copy, check=True, capture_output=True)
            env = {**base_env, "GPUFIX_CACHE_DIR": os.path.join(work, "cache")}
            dt, peak, out = run([py, "-m", "gpufix", "apply", copy, "--visible-devices", "1", "--format", "json"], env=env)
            record("apply/policy", dt, peak)
            data = json.loads(out)
            applied = {"changed_files": len(data.get("changed_files", [])), "remaining": len(data.get("remaining", []))}
            print(f"apply: {dt:.1f}s, {applied}", file=sys.stderr)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    cst_files = files
    extrapolated = False
    if args.libcst_sample and args.libcst_sample < len(files):
        cst_files = random.Random(0).sample(files, args.libcst_sample)
        extrapolated = True
    for i in range(args.libcst_runs):
        _, _, out = run([py, "-c", LIBCST_SCRIPT], stdin="\n".join(cst_files))
        secs = float(out.split()[0])
        if extrapolated:
            secs *= len(files) / len(cst_files)
        record("libcst.parse_module, every file, 1 process" + (" (EXTRAPOLATED from a sample)" if extrapolated else ""), secs)
        print(f"libcst: {secs:.1f}s", file=sys.stderr)

    med = {k: statistics.median(v["seconds"]) for k, v in samples.items()}
    rss = {k: max(v["rss_mib"]) for k, v in samples.items() if v["rss_mib"]}
    ruff_s, grep_s, py_s = med["ruff check --isolated --no-cache"], med["grep -rlE tokens"], med["python3 -c pass"]
    rows = []
    for pname in policies:
        cold = med[f"cold/{pname}"]
        rows.append((f"gpufix cold ({pname})", cold, rss[f"cold/{pname}"], f"{cold / ruff_s:.2f} x ruff",
                     "<= 2" if pname == "policy" else "", cold / ruff_s <= 2 if pname == "policy" else None))
        rows.append((f"gpufix warm ({pname})", med[f"warm/{pname}"], rss[f"warm/{pname}"],
                     f"{med[f'warm/{pname}'] / grep_s:.1f} x grep", "<= 10", med[f"warm/{pname}"] / grep_s <= 10))
        if f"5 files/{pname}" in med:
            rows.append((f"gpufix 5 files ({pname})", med[f"5 files/{pname}"], rss[f"5 files/{pname}"],
                         f"{med[f'5 files/{pname}'] / py_s:.1f} x python", "<= 20", med[f"5 files/{pname}"] / py_s <= 20))
    if "apply/policy" in med:
        rows.append(("gpufix apply (policy)", med["apply/policy"], rss["apply/policy"], "", "<= 30 s", med["apply/policy"] <= 30))
    rows.append(("ruff check --isolated --no-cache", ruff_s, None, "", "", None))
    rows.append(("grep -rlE tokens", grep_s, None, "", "", None))
    rows.append(("python3 -c pass", py_s, None, "", "", None))
    for key in med:
        if key.startswith("libcst"):
            rows.append((key, med[key], None, "", "", None))
    peak = max(rss.values())

    # No path of this machine in the report: the corpus is named, not located.
    shown_args = [name if os.path.abspath(a) == directory else a for a in (argv if argv is not None else sys.argv[1:])]
    cmd = "python benchmarks/bench_scan.py " + " ".join(shown_args)
    lines = [
        f"# gpufix scan benchmark: {name}",
        "",
        f"- corpus: `{name}` ({len(files)} .py files)",
        f"- machine: {machine()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}; medians of {args.runs} runs; each run a fresh process",
        f"- reproduce: `{cmd.strip()}`",
        "- policy runs: `--visible-devices 1` (default header scope); default runs: no config",
        "- apply (policy): " + (f"{applied['changed_files']} files changed, {applied['remaining']} findings left" if applied else "not run"),
        f"- 5 files: {', '.join(os.path.relpath(f, directory) for f in five)}",
        "- findings (cold): " + "; ".join(f"{k}: {v['findings']} findings in {v['files_with_findings']} files, {v['errors']} errors" for k, v in findings.items()),
        "",
        "| measurement | median s | peak RSS MiB | ratio | target | met |",
        "|---|---:|---:|---|---|---|",
    ]
    for label, secs, r, ratio, target, ok in rows:
        lines.append(f"| {label} | {secs:.3f} | {'' if r is None else f'{r:.0f}'} | {ratio} | {target} | {'' if ok is None else ('yes' if ok else '**no**')} |")
    lines.append(f"| peak memory (all gpufix runs) | | {peak:.0f} | | < 100 MB | {'yes' if peak < 100 else '**no**'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(text, encoding="utf-8")
    out_json.write_text(json.dumps({
        "corpus": name, "files": len(files), "applied": applied, "machine": machine(), "runs": args.runs, "command": cmd.strip(),
        "libcst_extrapolated": extrapolated, "samples": samples, "medians": med, "peak_rss_mib": rss, "findings": findings,
    }, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
