#!/usr/bin/env python3
"""Stress `gpufix scan` and `gpufix apply` on real code.

    python scripts/stress_repos.py DIR [DIR ...] [--each] [--report reports/stress-real-repos.md]

For each repository (each DIR, or with --each every sub-folder of each DIR) this:

1. runs `gpufix scan --format json --no-cache --visible-devices 1` on the original (read only);
2. copies the repository to a temporary folder (never touching the original) and runs
   `gpufix apply --visible-devices 1 --allow-dirty --no-tag --format json --no-cache` there;
3. checks every rewritten file: `.py` files must still compile (when the original did), notebooks
   must still be JSON whose code cells compile (magics masked), BOM and newline style must be kept;
4. runs `apply` a second time: anything it changes is a non-idempotent file;
5. reports crashes: exit codes outside 0/1, tracebacks or `internal error` on stderr,
   `internal-error` entries in the JSON `errors`, leftover temporary files.

Exit status: 0 when no problem was found, 1 otherwise.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

EXTS = (".py", ".ipynb")
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".gpufix"}


def gpufix_cmd() -> list:
    exe = Path(sys.executable).with_name("gpufix")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "gpufix"]


def snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            if name.endswith(EXTS):
                p = Path(dirpath, name)
                if p.is_symlink() or not p.is_file():
                    continue
                try:
                    out[p.relative_to(root).as_posix()] = p.read_bytes()
                except OSError:
                    pass
    return out


def leftover_temps(root: Path) -> list:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        out.extend(str(Path(dirpath, n).relative_to(root)) for n in filenames if n.endswith(".gpufix-tmp"))
    return out


def _compiles_py(data: bytes, name: str):
    """None when `data` compiles, else the error message."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(data, name, "exec", dont_inherit=True)
        return None
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        return f"{type(exc).__name__}: {exc}"


def _cell_sources(data: bytes):
    nb = json.loads(data.decode("utf-8-sig"))
    for i, cell in enumerate(nb.get("cells", []), 1):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            src = cell.get("source", "")
            yield i, "".join(src) if isinstance(src, list) else src


def _mask(source: str) -> str:
    """Mask IPython magics (independently of gpufix's own masking): `%`/`!`/`?` lines become
    comments, or `pass` plus a comment when they are the body of a block."""
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        return ""
    out, last_code, continued = [], "", False
    for ln in lines:
        s = ln.lstrip()
        if continued or (s[:1] in ("%", "!", "?") and not last_code.endswith("\\")):
            indent = ln[: len(ln) - len(s)]
            opens = last_code.split("#", 1)[0].rstrip().endswith(":")
            out.append(indent + ("pass  #" if indent and opens and not continued else "#") + s)
            continued = ln.endswith("\\")
            if not continued:
                last_code = ""
            continue
        out.append(ln)
        if s and not s.startswith("#"):
            last_code = ln
    return "\n".join(out) + "\n"


def _compiles_nb(data: bytes, name: str):
    try:
        cells = list(_cell_sources(data))
    except (ValueError, AttributeError) as exc:
        return f"notebook is not JSON any more: {exc}"
    for i, src in cells:
        err = _compiles_py(_mask(src).encode("utf-8"), f"{name}[cell {i}]")
        if err:
            return f"cell {i}: {err}"
    return None


def compiles(data: bytes, name: str):
    return _compiles_nb(data, name) if name.endswith(".ipynb") else _compiles_py(data, name)


def newline_kinds(data: bytes) -> set:
    kinds = set()
    if b"\r\n" in data:
        kinds.add("crlf")
    if re.search(rb"(?<!\r)\n", data):
        kinds.add("lf")
    return kinds


def run(cmd, cwd, timeout=3600):
    t = time.time()
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=timeout, env={**os.environ, "NO_COLOR": "1"})
    return p, time.time() - t


def crash_notes(label: str, proc) -> list:
    notes = []
    err = proc.stderr.decode("utf-8", "replace")
    if proc.returncode not in (0, 1):
        notes.append(f"{label}: exit code {proc.returncode}: {err.strip().splitlines()[-1:] }")
    if "Traceback (most recent call last)" in err:
        notes.append(f"{label}: traceback on stderr: {err.strip().splitlines()[-1]}")
    if "internal error" in err:
        notes.append(f"{label}: {[ln for ln in err.splitlines() if 'internal error' in ln][:3]}")
    try:
        data = json.loads(proc.stdout.decode("utf-8"))
    except ValueError:
        if proc.returncode in (0, 1):
            notes.append(f"{label}: stdout is not JSON")
        return notes
    for e in data.get("errors", []):
        if e.get("kind") == "internal-error":
            notes.append(f"{label}: internal-error {e['path']}: {e['message']}")
    return notes


def stress_one(repo: Path, keep: bool = False) -> dict:
    cmd = gpufix_cmd()
    res = {"repo": repo.name, "crashes": [], "bad_rewrites": [], "non_idempotent": [], "format_changes": []}
    t0 = time.time()
    # 1. scan the original, read only
    p, dt = run(cmd + ["scan", repo.name, "--format", "json", "--no-cache", "--visible-devices", "1", "-q"], cwd=repo.parent)
    res["scan_s"] = dt
    res["crashes"] += crash_notes("scan", p)
    try:
        scan = json.loads(p.stdout)
        res["files"] = scan["summary"]["files_scanned"]
        res["findings"] = scan["summary"]["findings"]
        res["fixable"] = scan["summary"]["fixable"]
        res["errors"] = Counter(e["kind"] for e in scan["errors"])
        res["error_list"] = scan["errors"]
    except (ValueError, KeyError):
        res.update(files=0, findings=0, fixable=0, errors=Counter(), error_list=[])
    # 2. apply on a copy
    tmp = Path(tempfile.mkdtemp(prefix="gpufix-stress-"))
    try:
        work = tmp / repo.name
        shutil.copytree(repo, work, symlinks=True, ignore=shutil.ignore_patterns(".git", "__pycache__", ".gpufix"))
        before = snapshot(work)
        p, dt = run(cmd + ["apply", ".", "--visible-devices", "1", "--allow-dirty", "--no-tag", "--format", "json", "--no-cache", "-q"], cwd=work)
        res["apply_s"] = dt
        res["crashes"] += crash_notes("apply", p)
        try:
            out = json.loads(p.stdout)
            res["changed"] = len(out.get("changed_files", []))
            res["remaining"] = len(out.get("remaining", []))
            res["safe_left"] = [f for f in out.get("remaining", []) if (f.get("fix") or {}).get("applicability") == "safe"]
            res["fix_errors"] = [e for e in out.get("errors", []) if e.get("kind") == "fix-error"]
        except ValueError:
            res.update(changed=0, remaining=0, fix_errors=[], safe_left=[])
        after = snapshot(work)
        for rel, old in before.items():
            new = after.get(rel)
            if new is None:
                res["bad_rewrites"].append((rel, "file disappeared"))
                continue
            if new == old:
                continue
            err = compiles(new, rel)
            if err and compiles(old, rel) is None:
                res["bad_rewrites"].append((rel, err))
            if old.startswith(codecs.BOM_UTF8) != new.startswith(codecs.BOM_UTF8):
                res["format_changes"].append((rel, "BOM changed"))
            ok, nk = newline_kinds(old), newline_kinds(new)
            if ok and not nk <= ok:
                res["format_changes"].append((rel, f"newlines {sorted(ok)} -> {sorted(nk)}"))
        for rel in set(after) - set(before):
            res["crashes"].append(f"apply: created an unexpected file {rel}")
        for t in leftover_temps(work):
            res["crashes"].append(f"apply: left a temporary file {t}")
        # 3. idempotence
        p, dt = run(cmd + ["apply", ".", "--visible-devices", "1", "--allow-dirty", "--no-tag", "--no-backup", "--format", "json", "--no-cache", "-q"], cwd=work)
        res["crashes"] += crash_notes("apply#2", p)
        again = snapshot(work)
        for rel, data in after.items():
            if again.get(rel) != data:
                res["non_idempotent"].append(rel)
    finally:
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    res["time_s"] = time.time() - t0
    return res


def render(results: list, argv: list) -> str:
    lines = [
        "# gpufix stress run on real repositories",
        "",
        f"Command: `python scripts/stress_repos.py {' '.join(argv)}` (policy `--visible-devices 1`; "
        "apply on a temporary copy with `--allow-dirty --no-tag`, then a second apply for idempotence).",
        "",
        "| repository | files | findings (fixable) | unparsable / unreadable | crashes | files rewritten | non-compiling rewrites | non-idempotent | BOM/newline changed | fix errors | left after apply (safe fix) | time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    tot = Counter()
    for r in results:
        unparsable = sum(r["errors"].values())
        lines.append(
            f"| {r['repo']} | {r['files']} | {r['findings']} ({r['fixable']}) | {unparsable} | {len(r['crashes'])} | {r.get('changed', 0)} | "
            f"{len(r['bad_rewrites'])} | {len(r['non_idempotent'])} | {len(r['format_changes'])} | {len(r.get('fix_errors', []))} | "
            f"{r.get('remaining', 0)} ({len(r.get('safe_left', []))}) | {r['time_s']:.0f} |"
        )
        for k, v in (("files", r["files"]), ("findings", r["findings"]), ("fixable", r["fixable"]), ("unparsable", unparsable),
                     ("crashes", len(r["crashes"])), ("changed", r.get("changed", 0)), ("bad", len(r["bad_rewrites"])),
                     ("nonidem", len(r["non_idempotent"])), ("fmt", len(r["format_changes"])), ("fixerr", len(r.get("fix_errors", []))),
                     ("left", r.get("remaining", 0)), ("safe_left", len(r.get("safe_left", []))), ("time", r["time_s"])):
            tot[k] += v
    lines.append(
        f"| **total** | {tot['files']} | {tot['findings']} ({tot['fixable']}) | {tot['unparsable']} | {tot['crashes']} | {tot['changed']} | "
        f"{tot['bad']} | {tot['nonidem']} | {tot['fmt']} | {tot['fixerr']} | {tot['left']} ({tot['safe_left']}) | {tot['time']:.0f} |"
    )
    lines.append("")
    for r in results:
        details = []
        for c in r["crashes"]:
            details.append(f"- crash: {c}")
        for rel, err in r["bad_rewrites"]:
            details.append(f"- rewrite does not compile: `{rel}`: {err}")
        for rel in r["non_idempotent"]:
            details.append(f"- non-idempotent: `{rel}`")
        for rel, what in r["format_changes"]:
            details.append(f"- format changed: `{rel}`: {what}")
        for f in r.get("safe_left", [])[:10]:
            details.append(f"- safe fix left after apply: `{f['path']}`:{f['line']} {f['rule']}: {f['message'][:120]}")
        for e in r.get("fix_errors", []):
            details.append(f"- fix error: `{e['path']}`: {e['message']}")
        if r["errors"]:
            details.append("- scan errors by kind: " + ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items())))
            for e in r["error_list"][:8]:
                details.append(f"  - `{e['path']}`:{e.get('line') or ''} {e['kind']}: {e['message'][:160]}")
            if len(r["error_list"]) > 8:
                details.append(f"  - ... {len(r['error_list']) - 8} more")
        if details:
            lines += [f"## {r['repo']}", ""] + details + [""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--each", action="store_true", help="treat every sub-folder of each DIR as a repository")
    ap.add_argument("--report", type=Path, help="write a Markdown report here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copies")
    args = ap.parse_args(argv)
    repos = []
    for d in args.dirs:
        repos.extend(sorted(p for p in d.iterdir() if p.is_dir()) if args.each else [d])
    results = []
    for repo in repos:
        r = stress_one(repo.resolve(), args.keep)
        results.append(r)
        print(
            f"{r['repo']}: {r['files']} files, {sum(r['errors'].values())} unparsable, {len(r['crashes'])} crashes, "
            f"{r.get('changed', 0)} rewritten, {len(r['bad_rewrites'])} non-compiling, {len(r['non_idempotent'])} non-idempotent, "
            f"{len(r['format_changes'])} format changes, {r['time_s']:.0f}s",
            flush=True,
        )
    text = render(results, sys.argv[1:] if argv is None else argv)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text, encoding="utf-8")
    else:
        print(text)
    bad = any(r["crashes"] or r["bad_rewrites"] or r["non_idempotent"] or r["format_changes"] or r.get("safe_left") for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
