"""Issue 11 measurement: files edited by `apply` and findings per rule, before and after.

usage: python scripts/precision_measure.py BEFORE_GPUFIX AFTER_GPUFIX REPOS_DIR WORK_DIR NAME...
(BEFORE_GPUFIX or AFTER_GPUFIX may be "-" to skip that side)
Each repository is copied twice into WORK_DIR (git init + commit there), scanned and applied with
`--visible-devices 1` by each gpufix executable; prints one JSON object per repository.
"""

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def sh(*args, cwd):
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True)


def fresh_copy(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.email=m@e", "-c", "user.name=m", "commit", "-qm", "base", "--no-verify"]):
        sh("git", *args, cwd=dst)
    return dst


def measure(exe: str, repo: Path, out_json: Path) -> dict:
    scan = sh(exe, "scan", ".", "--visible-devices", "1", "--format", "json", "--no-cache", "--exit-zero", cwd=repo)
    report = json.loads(scan.stdout)
    out_json.write_text(scan.stdout)
    apply = sh(exe, "apply", ".", "--visible-devices", "1", "--format", "json", "--no-backup", "--no-tag", "--allow-dirty", cwd=repo)
    applied = json.loads(apply.stdout) if apply.stdout.strip().startswith("{") else {}
    return {
        "files": report["summary"]["files_scanned"],
        "findings": report["summary"]["findings"],
        "by_rule": dict(sorted(Counter(f["rule"] for f in report["findings"]).items())),
        "edited": len(applied.get("changed_files", [])),
        "edited_paths": [c["path"] for c in applied.get("changed_files", [])],
    }


def main():
    before, after, repos, work = sys.argv[1:5]
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[5:]:
        row = {"repo": name}
        for label, exe in (("before", before), ("after", after)):
            if exe == "-":
                continue  # measured in an earlier run
            copy = fresh_copy(Path(repos) / name, work / f"{name}-{label}")
            row[label] = measure(exe, copy, work / f"{name}-{label}.json")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
