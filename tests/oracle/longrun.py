"""The oracle's long run: `python -m oracle.longrun N [SEED] [OUTDIR]` from tests/ (or
`GPUFIX_ORACLE_EXAMPLES=N pytest tests/unit/test_oracle.py`, which stops at the first counterexample).

Generates N programs, runs scan -> apply -> oracle on each, prints counterexamples by family (what
went wrong: device, header, collapse, ...) and by the grammar's families the failing programs use
(gen.program's tags, with how many programs used each), and writes the first few of each problem
family to OUTDIR (to become regression cases in tests/oracle/cases/).
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from pathlib import Path

from .gen import PENDING, random_program
from .oracle import judge


def main(argv) -> int:
    n = int(argv[0]) if argv else 1000
    seed = int(argv[1]) if len(argv) > 1 else 0
    outdir = Path(argv[2]) if len(argv) > 2 else None
    rng = random.Random(seed)
    families: Counter = Counter()
    clean: Counter = Counter()  # problem family -> programs without a PENDING family
    bad_clean = 0
    used: Counter = Counter()  # grammar family -> programs that use it
    failed: Counter = Counter()  # grammar family -> programs that use it and fail
    failed_clean: Counter = Counter()  # ... of those, the ones without a PENDING family
    bad_programs = 0
    errors = 0
    saved: Counter = Counter()
    t0 = time.time()
    for i in range(n):
        tags: set = set()
        raw, path, policy = random_program(rng, tags)
        used.update(tags)
        try:
            _, problems = judge(raw, path, policy)
        except Exception as exc:  # the pipeline itself failed: a finding of its own
            problems = [("internal", f"{type(exc).__name__}: {exc}")]
            errors += 1
        if problems:
            bad_programs += 1
            failed.update(tags)
            if not tags & set(PENDING):
                bad_clean += 1
                clean.update({p[0] for p in problems})
                failed_clean.update(tags)
        for fam in sorted({p[0] for p in problems}):
            families[fam] += 1
            if outdir is not None and saved[fam] < 20:
                saved[fam] += 1
                outdir.mkdir(parents=True, exist_ok=True)
                suffix = ".ipynb" if path.endswith(".ipynb") else ".py"
                (outdir / f"{fam}_{saved[fam]}{suffix}").write_bytes(raw)
                (outdir / f"{fam}_{saved[fam]}.txt").write_text(
                    f"policy {policy.visible_devices}\n" + "\n".join(f"{a}: {b}" for a, b in problems) + "\n")
    dt = time.time() - t0
    print(f"programs: {n} (seed {seed}) in {dt:.0f} s; with counterexamples: {bad_programs}; internal errors: {errors}")
    for fam, count in families.most_common():
        print(f"  {fam}: {count}")
    print(f"without the families fixed elsewhere ({', '.join(PENDING)}): {bad_clean} programs with counterexamples"
          + "".join(f"; {fam}: {count}" for fam, count in clean.most_common()))
    print("grammar families (failing programs / programs using it; failing without a pending family):")
    for tag in sorted(used):
        print(f"  {tag}: {failed[tag]} / {used[tag]}; {failed_clean[tag]}")
    return 1 if bad_programs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
