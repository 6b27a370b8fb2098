"""Recall and noise of gpufix on the corpus of non-Python files (fixtures/files_corpus).

The corpus has one instance of every form gpufix follows in shell scripts, Dockerfiles, .env files,
compose files, CI workflows, Kubernetes manifests and YAML/JSON/TOML configs, each marked with a
form id (S1, D2, ...) in a comment, and the forms it deliberately does not follow. `expected.json`
lists, by hand, the finding each followed form must give and the lines of the others.

    python scripts/files_recall.py          # a table per kind; exit 1 on a miss or a noise finding
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "fixtures" / "files_corpus"


def measure() -> dict:
    sys.path.insert(0, str(ROOT))
    from gpufix.config import load_policy
    from gpufix.engine import Options, scan

    spec = json.loads((CORPUS / "expected.json").read_text())
    here = os.getcwd()
    os.chdir(CORPUS)
    try:
        policy = load_policy(["."], config_file=spec["policy"])
        result = scan(["."], policy, Options(use_cache=False))
    finally:
        os.chdir(here)
    got = {(f.path, f.line, f.rule) for f in result.findings}
    expected = {(e["path"], e["line"], e["rule"]): e["form"] for e in spec["expected"]}
    skipped = {(e["path"], e["line"]) for e in spec["not_followed"]}
    per_kind: dict = {}
    for key, form in expected.items():
        kind = spec["forms"][form[0]]
        row = per_kind.setdefault(kind, {"expected": 0, "found": 0, "forms": set()})
        row["expected"] += 1
        row["found"] += key in got
        row["forms"].add(form)
    return {
        "per_kind": per_kind,
        "missed": sorted(k for k in expected if k not in got),
        "noise": sorted(k for k in got if k not in expected),
        "not_followed_reported": sorted(k for k in got if (k[0], k[1]) in skipped),
        "not_followed": len(skipped),
        "errors": [e.to_json() for e in result.errors],
        "files": result.files_scanned,
    }


def main() -> int:
    m = measure()
    total_e = sum(r["expected"] for r in m["per_kind"].values())
    total_f = sum(r["found"] for r in m["per_kind"].values())
    print(f"{'kind':<16} {'forms':>5} {'expected':>8} {'found':>6} {'recall':>7}")
    for kind, r in sorted(m["per_kind"].items()):
        print(f"{kind:<16} {len(r['forms']):>5} {r['expected']:>8} {r['found']:>6} {r['found'] / r['expected']:>7.0%}")
    forms = sum(len(r["forms"]) for r in m["per_kind"].values())
    print(f"{'all':<16} {forms:>5} {total_e:>8} {total_f:>6} {total_f / total_e:>7.0%}")
    print(f"{m['files']} files; {m['not_followed']} lines of forms not followed on purpose, "
          f"{len(m['not_followed_reported'])} of them reported; {len(m['noise'])} findings not expected; "
          f"{len(m['errors'])} errors")
    for k in m["missed"]:
        print("missed:", *k)
    for k in m["noise"]:
        print("not expected:", *k)
    return 1 if (m["missed"] or m["noise"] or m["errors"]) else 0


if __name__ == "__main__":
    sys.exit(main())
