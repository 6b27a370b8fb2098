"""Linear time of the PowerShell and batch readers (and the launcher scan), measured, not assumed.

    python benchmarks/bench_windows_readers.py [--sizes 2000,16000] [--output reports/bench-windows-readers.md]

For each input shape, the reader's time on N and 8N repetitions of a unit (best of 3 runs,
in-process): a linear reader keeps time/rep flat (the last column stays near 1). The baseline is
the existing shell reader (gpufix.formats.shell) on the same shapes, measured in the same run: its
ratio is what Python's allocation and garbage collection alone give. The shapes are
ordinary launcher lines and pathological ones that would make a backtracking reader quadratic
(unterminated quotes, many `${`, `$(`, `^`, `<#` with no end, one enormous line).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpufix.formats import batch, powershell, shell  # noqa: E402

SHAPES = {
    "powershell": {
        "launcher lines": '$env:CUDA_VISIBLE_DEVICES = "0"\r\npython bench.py --device cuda:1 --gpu 1\r\n',
        "unterminated quote": '"a $env:X = 1 ',
        "many ${ on one line": "${a ",
        "many $( on one line": "$( ",
        "open block comment": "<# x ",
        "SetEnvironmentVariable(": "[Environment]::SetEnvironmentVariable(",
    },
    "batch": {
        "launcher lines": "set CUDA_VISIBLE_DEVICES=0\r\npython bench.py --device cuda:1 --gpu 1\r\n",
        "unterminated quote": '"set A=1 ',
        "carets": "^^^ ",
        "one huge line of &": "set CUDA_VISIBLE_DEVICES=0 & ",
        "open parentheses": "( ",
        "word with many (": "echo a(",
    },
    "shell (baseline)": {
        "launcher lines": "export CUDA_VISIBLE_DEVICES=0\npython bench.py --device cuda:1 --gpu 1\n",
        "unterminated quote": '"a CUDA_VISIBLE_DEVICES=1 ',
        "one huge line of ;": "CUDA_VISIBLE_DEVICES=0 python x.py --device cuda:1 ; ",
    },
}
READERS = {"powershell": powershell.scan, "batch": batch.scan, "shell (baseline)": shell.scan}


def best(fn, text, runs=3):
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(text)
        out.append(time.perf_counter() - t)
    return min(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2000,16000")
    ap.add_argument("--output")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = ["| reader | input | " + " | ".join(f"{n} reps (ms)" for n in sizes) + " | time/rep, largest / smallest |",
            "|---|---|" + "---|" * len(sizes) + "---|"]
    for kind, shapes in SHAPES.items():
        reader = READERS[kind]
        for name, unit in shapes.items():
            times = [best(reader, unit * n) for n in sizes]
            ratio = (times[-1] / sizes[-1]) / (times[0] / sizes[0])
            rows.append(f"| {kind} | {name} | " + " | ".join(f"{t * 1000:.1f}" for t in times) + f" | {ratio:.2f} |")
    text = ("# PowerShell and batch readers: time against input size\n\n"
            f"Python {platform.python_version()}, {platform.machine()}, in-process, best of 3; the machine was "
            "shared with other jobs (2 cores), so ratios within about 1.5 of the baseline's are noise.\n\n" + "\n".join(rows) + "\n")
    print(text)
    if args.output:
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
