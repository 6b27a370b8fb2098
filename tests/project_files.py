"""Helpers of the CLI tests that build a small committed project and run the real CLI on it (the
format readers' tests and the Windows launchers' tests share them)."""

import json

from conftest import init_git_repo, run_gpufix

POLICY = '[tool.gpufix]\nvisible-devices = "1"\n'


def project(tmp_path, files: dict, policy: str = POLICY):
    """`files` ({relative path: text or bytes}) under a pyproject policy, committed in a git repo."""
    (tmp_path / "pyproject.toml").write_text(policy)
    for rel, data in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
    init_git_repo(tmp_path)
    return tmp_path


def scan(root, *args):
    """The JSON report of `gpufix scan .` in `root` (no cache), after checking it ran cleanly."""
    proc = run_gpufix("scan", ".", "--format", "json", "--no-cache", *args, cwd=root)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def found(report):
    return [(f["path"], f["line"], f["column"], f["rule"], bool(f["fix"])) for f in report["findings"]]


def apply(root, *args):
    """`gpufix apply .` in `root` without backup, tag or dirty check; the CompletedProcess."""
    proc = run_gpufix("apply", ".", "--no-backup", "--no-tag", "--allow-dirty", "--no-cache", *args, cwd=root)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc
