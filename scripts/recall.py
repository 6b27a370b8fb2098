"""Recall of gpufix on the recall corpus (fixtures/recall/, issue 12): every line that ends with
`# expect: CODE [CODE...]` must be reported with those codes, and nothing else may be (the header
rules GPU101/GPU102 aside). Prints recall per file and the misses / unexpected findings.

    python scripts/recall.py [FOLDER]      (default: fixtures/recall; exit 1 when recall < 100 %)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from gpufix.config import load_policy
from gpufix.engine import Options, scan

EXPECT_RE = re.compile(r"#\s*expect:\s*((?:GPU\d{3}\s*)+)$")


def measure(folder: Path) -> tuple:
    """(expected, found, misses, unexpected, per-file rows)."""
    policy = load_policy([str(folder)], overrides={"select": (), "ignore": ()})
    result = scan([str(folder)], policy, Options(use_prefilter=True, use_cache=False, jobs=1))
    reported = {(Path(f.path).resolve(), f.line, f.rule) for f in result.findings if f.rule not in ("GPU101", "GPU102")}
    expected = set()
    rows = []
    for path in sorted(folder.glob("*.py")):
        mine = set()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = EXPECT_RE.search(line)
            if m:
                mine |= {(path.resolve(), n, code) for code in m.group(1).split()}
        expected |= mine
        rows.append((path.name, len(mine), len(mine & reported)))
    return expected, reported, sorted(expected - reported), sorted(reported - expected), rows


def main(argv) -> int:
    folder = Path(argv[1] if len(argv) > 1 else Path(__file__).resolve().parent.parent / "fixtures" / "recall")
    expected, reported, misses, unexpected, rows = measure(folder)
    for name, want, got in rows:
        print(f"{name:24} {got:3}/{want:<3} {100.0 * got / want if want else 100.0:5.1f} %")
    total = len(expected)
    print(f"{'total':24} {total - len(misses):3}/{total:<3} {100.0 * (total - len(misses)) / max(total, 1):5.1f} %")
    for path, line, code in misses:
        print(f"missed: {path.name}:{line} {code}")
    for path, line, code in unexpected:
        print(f"unexpected: {path.name}:{line} {code}")
    return 1 if misses or unexpected else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
