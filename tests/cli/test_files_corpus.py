"""The corpus of non-Python forms (fixtures/files_corpus, expected.json written by hand): every
followed form is found at its line with its rule, nothing else is reported (the forms not followed
on purpose included), and `apply` on a copy leaves only report-only findings, idempotently."""

import json
import shutil
import sys

from conftest import FIXTURES, ROOT, init_git_repo, run_gpufix

sys.path.insert(0, str(ROOT / "scripts"))
import files_recall  # noqa: E402


def test_recall_is_complete_and_nothing_else_is_reported():
    m = files_recall.measure()
    assert m["missed"] == []
    assert m["noise"] == []
    assert m["not_followed_reported"] == []
    assert m["errors"] == []
    assert sum(len(r["forms"]) for r in m["per_kind"].values()) == 46


def test_apply_on_the_corpus(tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(FIXTURES / "files_corpus", root)
    init_git_repo(root)
    spec = json.loads((root / "expected.json").read_text())
    proc = run_gpufix("apply", ".", "--no-backup", "--no-tag", "--no-cache", "--format", "json", cwd=root)
    assert "Traceback" not in proc.stderr, proc.stderr
    data = json.loads(proc.stdout)
    remaining = sorted((f["path"], f["rule"]) for f in data["remaining"])
    # What is left has no safe fix: device-index lists (GPU002) and container pins (GPU103), and
    # the two-GPU masks of serve.sh (S6 "0,1", S8 "1,3") with the ordinals under them (S7, S8):
    # shrinking a mask to the policy's one GPU is an unsafe fix, and the remap goes with it.
    # Everything else was rewritten.
    assert all(f["fix"] is None or f["fix"]["applicability"] == "unsafe" for f in data["remaining"])
    report_only = {"A1", "C3", "D2", "J3", "T1", "Y1", "Y2", "Y3", "Y7", "S6", "S7", "S8"}
    # C1's mask: inside the container pinned to host GPU 0 the policy's "1" names no GPU (issue 19)
    kept = [(e["path"], e["rule"]) for e in spec["expected"] if e["form"] == "C1" and e["rule"] == "GPU103"]
    assert remaining == sorted([(e["path"], e["rule"]) for e in spec["expected"] if e["form"] in report_only] + kept)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".git" not in p.parts}
    again = run_gpufix("apply", ".", "--no-backup", "--no-tag", "--no-cache", cwd=root)
    assert again.returncode == 1  # the report-only findings remain
    assert {p: p.read_bytes() for p in before} == before


def test_prefilter_keeps_every_finding():
    """The byte test that skips YAML/JSON/TOML/shell files before decoding loses nothing."""
    args = ("scan", ".", "--no-cache", "--format", "json", "--config", "gpufix.toml")
    fast = json.loads(run_gpufix(*args, cwd=FIXTURES / "files_corpus").stdout)
    slow = json.loads(run_gpufix(*args, "--no-prefilter", cwd=FIXTURES / "files_corpus").stdout)
    assert fast["findings"] == slow["findings"] and fast["findings"]
