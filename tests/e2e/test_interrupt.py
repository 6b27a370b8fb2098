"""`gpufix apply` killed with SIGKILL at random points: every file is wholly old or wholly new, a
complete backup (manifest + copies whose hashes match) exists whenever any file changed, and
`gpufix restore` puts the original bytes back."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import POSIX_ONLY

pytestmark = POSIX_ONLY  # SIGKILL of a process group (start_new_session, killpg)

ROOT = Path(__file__).resolve().parents[2]
N_FILES = 100  # enough for a kill to land among the replacements ([10:-10] of the changed files); each apply is the cost
ENV = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
ENV.pop("GPUFIX_DEBUG", None)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gpufix(*args, cwd, **kw):
    return subprocess.run([sys.executable, "-m", "gpufix", *args], cwd=cwd, capture_output=True, text=True, env=ENV, timeout=300, **kw)


def git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=ENV)


def tree_bytes(root: Path) -> dict:
    out = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if rel.parts[0] in (".git", ".gpufix") or not p.is_file():
            continue
        out[rel.as_posix()] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git repo of N_FILES fixture files, the bytes of every file before and after a full apply,
    and how long a full apply takes here."""
    base = tmp_path_factory.mktemp("interrupt")
    sources = sorted(p for p in (ROOT / "fixtures").rglob("*.py") if not p.name.endswith(".out.py") and "rules" in p.parts)
    sources += sorted(p for p in (ROOT / "fixtures" / "superwhisper").rglob("*.py"))[:20]
    assert sources
    pristine = base / "pristine"
    pristine.mkdir()
    (pristine / "gpufix.toml").write_text('visible-devices = "1"\n')
    for i in range(N_FILES):
        src = sources[i % len(sources)]
        target = pristine / f"pkg{i // 25:02d}" / f"m{i:03d}_{src.name}"
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(src.read_bytes())
    git("init", "-q", ".", cwd=pristine)
    git("add", "-A", cwd=pristine)
    git("commit", "-qm", "init", cwd=pristine)
    original = tree_bytes(pristine)

    full = base / "full"
    shutil.copytree(pristine, full, symlinks=True)
    t0 = time.monotonic()
    proc = gpufix("apply", ".", "--no-cache", "--no-tag", "-q", cwd=full)
    duration = time.monotonic() - t0
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    fixed = tree_bytes(full)
    changed = {k for k in original if fixed[k] != original[k]}
    assert len(changed) > N_FILES // 2
    return pristine, original, fixed, duration


def _wait_for(predicate, proc, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.002)
    return False


def _manifests(root: Path) -> list:
    return sorted((root / ".gpufix" / "backups").glob("*/manifest.json"))


def _check_and_restore(work: Path, original: dict, fixed: dict) -> str:
    now = tree_bytes(work)
    extra = set(now) - set(original)
    # a kill inside an atomic write can leave its temporary file, never a partial source file
    assert all(name.endswith(".gpufix-tmp") for name in extra), extra
    changed = set()
    for name, old in original.items():
        data = now[name]
        assert data in (old, fixed[name]), f"{name} is neither the original nor the fixed file"
        if data != old:
            changed.add(name)
    manifests = _manifests(work)
    if changed:
        assert len(manifests) == 1, "files changed without a complete backup"
        manifest = json.loads(manifests[0].read_text())
        folder = manifests[0].parent
        entries = {e["path"]: e for e in manifest["files"]}
        assert changed <= set(entries)
        for name, e in entries.items():
            copy = (folder / name).read_bytes()
            assert copy == original[name]
            assert sha(copy) == e["sha256_before"]
            assert e["sha256_after"] == sha(fixed[name])
        proc = gpufix("restore", cwd=work)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
    elif manifests:
        proc = gpufix("restore", cwd=work)  # nothing was replaced yet: restore is a no-op
        assert proc.returncode == 0, proc.stderr
    after = tree_bytes(work)
    for name, old in original.items():
        assert after[name] == old, f"{name} not restored"
    return f"{len(changed)} changed"


def _start(work: Path):
    return subprocess.Popen([sys.executable, "-m", "gpufix", "apply", ".", "--no-cache", "-q"], cwd=work, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _kill(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


# (how the kill point is chosen, a seed)
TRIALS = [("fraction", 1), ("fraction", 2), ("after-manifest", 3), ("after-manifest", 4), ("after-file", 5),
          ("after-file", 6), ("after-file", 7), ("during-backup", 8)]


@pytest.mark.parametrize("how, seed", TRIALS, ids=[f"{h}-{s}" for h, s in TRIALS])
def test_sigkill_leaves_old_or_new_and_a_complete_backup(project, tmp_path, how, seed):
    pristine, original, fixed, duration = project
    rng = random.Random(seed)
    work = tmp_path / "work"
    shutil.copytree(pristine, work, symlinks=True)
    proc = _start(work)
    try:
        if how == "fraction":
            time.sleep(rng.uniform(0.3, 1.0) * duration)
        elif how == "after-manifest":
            _wait_for(lambda: bool(_manifests(work)), proc, duration * 3)
            time.sleep(rng.uniform(0.0, 0.02))
        elif how == "after-file":  # in the middle of the replacements: once a random file is new
            name = rng.choice(sorted(k for k in original if fixed[k] != original[k])[10:-10])
            size = len(original[name])
            _wait_for(lambda: (work / name).stat().st_size != size, proc, duration * 3)
        else:  # the backup folder exists but its manifest may not yet
            _wait_for(lambda: any((work / ".gpufix" / "backups").glob("*/pkg*")), proc, duration * 3)
    finally:
        _kill(proc)
    print(how, seed, _check_and_restore(work, original, fixed), f"(a full apply takes {duration:.1f}s)")


def test_killed_run_then_rerun_finishes_the_job(project, tmp_path):
    """After a kill, running apply again (allow-dirty: the tree now has changes) completes the fix."""
    pristine, original, fixed, duration = project
    work = tmp_path / "work"
    shutil.copytree(pristine, work, symlinks=True)
    proc = _start(work)
    try:
        _wait_for(lambda: bool(_manifests(work)), proc, duration * 3)
        time.sleep(0.05)
    finally:
        _kill(proc)
    done = gpufix("apply", ".", "--no-cache", "--no-tag", "--allow-dirty", "-q", cwd=work)
    assert done.returncode in (0, 1), done.stderr
    now = tree_bytes(work)
    for name in original:
        assert now[name] == fixed[name], name
