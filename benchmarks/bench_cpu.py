"""CPU seconds (user + sys) of two gpufix checkouts, interleaved rounds, medians: a measure that a
loaded machine disturbs far less than wall time (it counts the work, not the wait for a core).

    python benchmarks/bench_cpu.py DIR ROUNDS BEFORE_CHECKOUT AFTER_CHECKOUT [--cold]

Per round and checkout: a warm re-scan of DIR, 5 GPU files named (warm cache, then no cache), and
with --cold a sequential cold scan (`--no-cache -j 1`: the whole work in one process). Every
gpufix run starts in DIR (`python -m` puts the current folder first on sys.path: started in a
checkout it would run that checkout's gpufix whatever PYTHONPATH says)."""
import os, resource, subprocess, sys, tempfile, statistics
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scan import gpu_files
def cpu(cmd, env, cwd):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
rounds = int(sys.argv[2]); d = os.path.abspath(sys.argv[1]); cold = "--cold" in sys.argv
five = gpu_files(d)
base = {k: v for k, v in os.environ.items() if not k.startswith("GPUFIX_")}
scan = [sys.executable, "-m", "gpufix", "scan", "--visible-devices", "1", "--exit-zero", "-q"]
who = {"before": os.path.abspath(sys.argv[3]), "after": os.path.abspath(sys.argv[4])}
env = {n: {**base, "PYTHONPATH": p, "GPUFIX_CACHE_DIR": tempfile.mkdtemp()} for n, p in who.items()}
for n in who:
    subprocess.run(scan + [d], env=env[n], cwd=d, stdout=subprocess.DEVNULL); subprocess.run(scan + five, env=env[n], cwd=d, stdout=subprocess.DEVNULL)
s = {}
for _ in range(rounds):
    for n in who:
        s.setdefault(f"{n} warm", []).append(cpu(scan + [d], env[n], d))
        s.setdefault(f"{n} 5 files warm", []).append(cpu(scan + five, env[n], d))
        s.setdefault(f"{n} 5 files no cache", []).append(cpu(scan + ["--no-cache"] + five, env[n], d))
        if cold:
            s.setdefault(f"{n} cold -j 1", []).append(cpu(scan + ["--no-cache", "-j", "1", d], env[n], d))
s["python -c pass"] = [cpu([sys.executable, "-c", "pass"], base, None) for _ in range(rounds)]
for k, v in s.items():
    print(f"  {k:28s} {statistics.median(v):7.3f} s CPU  {[round(x, 2) for x in v]}")
