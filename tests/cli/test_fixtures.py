"""Golden fixtures across rules: the seed-004 sample's JSON report, per-rule cases with their
hand-written fixed output (`case_x.py` beside `case_x.out.py`)."""

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, git, init_git_repo, run_gpufix, snapshot
from gpufix.apply import fix_source
from gpufix.config import load_policy
from gpufix.engine import lint_source
from gpufix.source import read_source

GOLDEN = ROOT / "reports" / "superwhisper-scan.json"
RULE_CASES = sorted(p for p in (FIXTURES / "rules").glob("GPU*/case_*.py") if not p.name.endswith(".out.py"))


def test_superwhisper_scan_matches_golden_report():
    proc = run_gpufix("scan", "fixtures/superwhisper", "--format", "json", "--no-cache", cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(proc.stdout, encoding="utf-8")
    assert report == json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_superwhisper_counts_match_the_seed_journal():
    """The seed's analysis: 38 files, 26 with problems, 23x CUDA_DEVICE_ORDER missing, 15x
    CUDA_VISIBLE_DEVICES missing, 7x '0' where '1' is expected."""
    report = json.loads(GOLDEN.read_text(encoding="utf-8"))
    s = report["summary"]
    assert (s["files_scanned"], s["files_with_findings"]) == (38, 26)
    assert s["by_rule"]["GPU102"] == 23
    assert s["by_rule"]["GPU101"] == 15
    assert s["by_rule"]["GPU103"] == 7
    # 7x gpu_device_index(1), 2x device_cuda(1), 2x set_device(1), 2x torch.device(.., 1) + 5 more
    ordinals = [f for f in report["findings"] if f["rule"] == "GPU001"]
    assert sum("gpu_device_index" in f["message"] for f in ordinals) == 7
    assert sum("device_cuda" in f["message"] for f in ordinals) == 2
    assert sum("set_device" in f["message"] for f in ordinals) == 2
    assert all(f["fix"] is not None for f in ordinals)


@pytest.mark.parametrize("case", RULE_CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_rule_case(case: Path):
    code = case.parent.name
    policy = load_policy([str(case)], config_file=str(FIXTURES / "rules" / "gpufix.toml"))
    src = read_source(case.name, case.read_bytes())
    found = lint_source(src, policy).findings
    assert code in {f.rule for f in found}
    out = case.with_name(case.stem + ".out.py")
    # A case whose fix is unsafe has its `--unsafe-fixes` result as .out.py (and is unchanged without).
    unsafe = any(f.fix is not None and f.fix.applicability == "unsafe" for f in found if f.rule == code)
    if unsafe:
        assert fix_source(src, policy, unsafe=False)[0] == case.read_bytes()
    fixed, rules = fix_source(src, policy, unsafe=unsafe)
    if out.exists():
        assert fixed == out.read_bytes()
        again = read_source(out.name, fixed)
        assert not [f for f in lint_source(again, policy).findings if f.rule == code]
        assert fix_source(again, policy, unsafe=unsafe)[0] == fixed
    else:
        assert fixed == case.read_bytes(), "a report-only case must not change"


def test_superwhisper_apply_then_restore_in_git(tmp_path):
    repo = tmp_path / "sw"
    shutil.copytree(FIXTURES / "superwhisper", repo)
    init_git_repo(repo)
    head = git(repo, "rev-parse", "HEAD").strip()
    before = snapshot(repo)

    proc = run_gpufix("apply", ".", "--format", "json", cwd=repo)
    assert proc.returncode == 1, proc.stderr  # report-only findings remain
    out = json.loads(proc.stdout)
    assert sorted(f["rule"] for f in out["remaining"]) == ["GPU002", "GPU003", "GPU107"]
    assert all(f["fix"] is None or f["fix"]["applicability"] == "unsafe" for f in out["remaining"])
    assert len(out["changed_files"]) == 26
    tag = out["git_tag"]
    assert tag == f"gpufix/before-{out['backup']['id']}"
    assert git(repo, "rev-parse", f"{tag}^{{commit}}").strip() == head
    assert git(repo, "cat-file", "-t", tag).strip() == "tag"  # annotated
    manifest = json.loads((repo / out["backup"]["dir"] / "manifest.json").read_text())
    assert sorted(e["path"] for e in manifest["files"]) == sorted(c["path"] for c in out["changed_files"])

    # every rewritten file compiles; a scan now shows only the report-only findings
    for changed in out["changed_files"]:
        compile((repo / changed["path"]).read_text(encoding="utf-8"), changed["path"], "exec")
    scan = json.loads(run_gpufix("scan", ".", "--format", "json", "--no-cache", cwd=repo).stdout)
    assert scan["summary"]["by_rule"] == {"GPU002": 1, "GPU003": 1, "GPU107": 1}

    # a second apply changes nothing (the tree is dirty now, so allow it)
    after = snapshot(repo)
    second = run_gpufix("apply", ".", "--format", "json", "--allow-dirty", cwd=repo)
    assert json.loads(second.stdout)["changed_files"] == []
    assert snapshot(repo) == after

    restored = run_gpufix("restore", cwd=repo)
    assert restored.returncode == 0, restored.stderr
    assert snapshot(repo) == before
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
