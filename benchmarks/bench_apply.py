"""Benchmark `gpufix apply` as a user runs it (backups and a git tag) on a fresh git copy of a
corpus: wall time, CPU time, and peak memory of the gpufix process itself and of its largest
worker process, separately (issue 21's target: apply on diffusers <= 30 s, peak memory < 100 MB).

    python benchmarks/bench_apply.py DIR [--runs 1] [--jobs N] [--output reports/bench-apply-NAME.md]

Each run copies DIR (without .git/.gpufix) to a temporary folder, commits it, and runs
`python -m gpufix apply COPY --visible-devices 1 --backup --format json` from that folder with an
empty cache folder. Memory: the gpufix process reads its own peak RSS (RUSAGE_SELF) and that of the
largest of the processes it waited for (RUSAGE_CHILDREN: the pool's workers, git) when it exits;
and a sampler reads every process's VmRSS and the tree's Pss every 20 ms from /proc (Linux). A
forked worker's RUSAGE figure starts from its parent's RSS at the fork (the kernel copies the
high-water mark), so the worker's own peak is the sampled one. The checkout measured is the one whose `gpufix` package Python imports: run it with
PYTHONPATH=CHECKOUT, from any folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# Runs gpufix in this interpreter and reports, when it exits, its own peak RSS and the largest
# peak RSS among the processes it waited for (KiB on Linux).
_WRAPPER = r"""
import atexit, resource, runpy, sys
def _report():
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    sys.stderr.write("\n__RSS__ %d %d\n" % (own, kids))
    sys.stderr.flush()
atexit.register(_report)
sys.argv = ["gpufix"] + sys.argv[1:]
runpy.run_module("gpufix", run_name="__main__", alter_sys=True)
"""


def _tree(root_pid: int) -> list:
    """root_pid and its descendants (Linux /proc)."""
    children: dict = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(stat[1]), []).append(int(entry))
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _kib(pid: int, path: str, key: bytes) -> int:
    try:
        with open(f"/proc/{pid}/{path}", "rb") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Sampler(threading.Thread):
    """Every 20 ms: each process's resident set (VmRSS, shared pages counted in each process that
    maps them) and the tree's proportional total (Pss: a page shared by n processes counts 1/n),
    so that a forked worker's copy-on-write pages are not counted twice in the total."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.done = pid, threading.Event()
        self.rss: dict = {}  # pid -> peak VmRSS KiB
        self.names: dict = {}
        self.pss_total = 0

    def run(self):
        while not self.done.is_set():
            total = 0
            for pid in _tree(self.pid):
                rss = _kib(pid, "status", b"VmRSS:")
                if rss:
                    self.rss[pid] = max(self.rss.get(pid, 0), rss)
                    if pid not in self.names:
                        try:
                            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                                self.names[pid] = fh.read().split(b"\0")[0].decode("utf-8", "replace")
                        except OSError:
                            self.names[pid] = "?"
                total += _kib(pid, "smaps_rollup", b"Pss:")
            self.pss_total = max(self.pss_total, total)
            self.done.wait(0.02)


def one_run(directory: str, jobs) -> dict:
    name = os.path.basename(os.path.abspath(directory))
    work = tempfile.mkdtemp(prefix="gpufix-bench-apply-")
    try:
        copy = os.path.join(work, name)
        shutil.copytree(directory, copy, ignore=shutil.ignore_patterns(".git", ".gpufix"), symlinks=True)
        for git_args in (["init", "-q"], ["add", "-A"],
                         ["-c", "user.email=b@b", "-c", "user.name=bench", "-c", "commit.gpgsign=false", "commit", "-qm", "x"]):
            subprocess.run(["git", *git_args], cwd=copy, check=True, capture_output=True)
        env = {**os.environ, "GPUFIX_CACHE_DIR": os.path.join(work, "cache"), "NO_COLOR": "1"}
        cmd = [sys.executable, "-c", _WRAPPER, "apply", ".", "--visible-devices", "1", "--backup", "--format", "json"]
        if jobs:
            cmd += ["-j", str(jobs)]
        timed = ["/usr/bin/time", "-f", "__TIME__ %e %U %S %M"] if os.path.exists("/usr/bin/time") else []
        t = time.perf_counter()
        child = subprocess.Popen(timed + cmd, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler = Sampler(child.pid)
        sampler.start()
        stdout, stderr = child.communicate()
        sampler.done.set()
        sampler.join()
        wall = time.perf_counter() - t
        proc = subprocess.CompletedProcess(cmd, child.returncode, stdout, stderr)
        gpufix_pid = next((p for p in sorted(sampler.rss) if p != child.pid and sampler.names.get(p, "").endswith(("python", "python3"))
                           and p in sampler.rss), child.pid) if timed else child.pid
        workers = [kib for p, kib in sampler.rss.items() if p not in (child.pid, gpufix_pid)
                   and sampler.names.get(p, "") == sampler.names.get(gpufix_pid)]
        if proc.returncode not in (0, 1):
            raise SystemExit(f"apply failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        own = kids = tree = None
        cpu = None
        for line in proc.stderr.splitlines():
            if line.startswith("__RSS__ "):
                own, kids = (int(x) / 1024 for x in line.split()[1:3])
            elif line.startswith("__TIME__ "):
                e, u, s, m = line.split()[1:5]
                wall, cpu, tree = float(e), float(u) + float(s), int(m) / 1024
        data = json.loads(proc.stdout)
        return {"wall_s": wall, "cpu_s": cpu, "parent_mib": own, "largest_child_mib": kids, "tree_max_mib": tree,
                "sampled_parent_mib": sampler.rss.get(gpufix_pid, 0) / 1024,
                "sampled_largest_worker_mib": max(workers, default=0) / 1024, "workers": len(workers),
                "sampled_total_pss_mib": sampler.pss_total / 1024,
                "changed_files": len(data.get("changed_files", [])), "remaining": len(data.get("remaining", []))}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("directory")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=None, help="gpufix's -j (default: gpufix's own default)")
    ap.add_argument("--output", help="write a Markdown report here")
    args = ap.parse_args(argv)
    runs = [one_run(args.directory, args.jobs) for _ in range(args.runs)]
    for r in runs:
        print(json.dumps(r), file=sys.stderr)
    med = {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "cpu_s", "parent_mib", "largest_child_mib",
                                                               "sampled_largest_worker_mib", "sampled_total_pss_mib")
           if all(r[k] is not None for r in runs)}
    name = os.path.basename(os.path.abspath(args.directory))
    peak = max(med.get("parent_mib", 0), med.get("sampled_largest_worker_mib", 0))
    lines = [
        f"# gpufix apply benchmark: {name}",
        "",
        f"- reproduce: `PYTHONPATH=CHECKOUT python benchmarks/bench_apply.py {name} --runs {args.runs}"
        + (f" --jobs {args.jobs}" if args.jobs else "") + "`",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"date {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; medians of {args.runs} run(s)",
        f"- apply --visible-devices 1 --backup on a fresh git copy: {runs[0]['changed_files']} files changed, "
        f"{runs[0]['remaining']} findings left",
        "",
        "| measurement | value | target | met |",
        "|---|---:|---|---|",
        f"| wall time | {med['wall_s']:.1f} s | <= 30 s | {'yes' if med['wall_s'] <= 30 else '**no**'} |",
    ]
    if "cpu_s" in med:
        lines.append(f"| CPU time (user+sys, all processes) | {med['cpu_s']:.1f} s | | |")
    def mb(mib):  # the target is in MB (10^6 bytes)
        return mib * 1.048576

    for key, label in (("parent_mib", "peak RSS, the gpufix process (RUSAGE_SELF)"),
                       ("sampled_largest_worker_mib", "peak RSS, its largest worker process (sampled VmRSS)")):
        if key in med:
            lines.append(f"| {label} | {med[key]:.0f} MiB = {mb(med[key]):.0f} MB | < 100 MB | {'yes' if mb(med[key]) < 100 else '**no**'} |")
    if "largest_child_mib" in med:
        lines.append(f"| RUSAGE_CHILDREN max RSS (workers and git; a forked child starts from its parent's figure) | {med['largest_child_mib']:.0f} MiB | | |")
    if "sampled_total_pss_mib" in med:
        lines.append(f"| peak of the whole tree's Pss (shared pages counted once) | {med['sampled_total_pss_mib']:.0f} MiB | | |")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    print(f"peak {peak:.0f} MiB", file=sys.stderr)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
