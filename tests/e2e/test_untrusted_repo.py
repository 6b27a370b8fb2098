"""A repository is untrusted input: each attack reported against 0.1.x, as a user would meet it.

`.gpufix/` planted in a clone, symlinks and hard links, several repositories and GIT_DIR layouts,
hostile names and values in reports, `-o FILE` on an error. (The cache's own attacks are tested
with the cache; the readers' with the fuzz suite, tests/unit/test_reader_fuzz.py.)
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import ROOT, git, init_git_repo

GOOD = b"import torch\ntorch.cuda.set_device(1)\n"
FIXED_TAIL = b"import torch\ntorch.cuda.set_device(0)\n"


def gpufix(*args, cwd, env=None):
    full = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    full.pop("GPUFIX_DEBUG", None)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "gpufix", *args], cwd=cwd, capture_output=True, timeout=120, env=full)


def out(proc) -> str:
    return proc.stdout.decode("utf-8")


def err(proc) -> str:
    text = proc.stderr.decode("utf-8")
    assert "Traceback" not in text and "internal error" not in text, text
    return text


def repo_with(path: Path, files: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    return init_git_repo(path)


def apply_args(*extra):
    return ("apply", *extra, "--visible-devices", "1", "--no-cache")


# -- .gpufix/ is data, not authority ----------------------------------------------------------------
def _plant_backup(root: Path, ident: str, files: list, folder: str = None) -> Path:
    d = root / ".gpufix" / "backups" / (folder or "20200101T000000-000-abcd")
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"id": ident, "created": "2020-01-01T00:00:00+00:00", "root": str(root),
                                                 "files": files}))
    return d


@pytest.mark.parametrize("ident", ["../../../victim", "/ABS/victim"])
def test_prune_never_removes_outside_the_backups_folder(tmp_path, ident):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    project = tmp_path / "proj"
    project.mkdir()
    ident = ident.replace("/ABS/victim", str(victim))
    _plant_backup(project, ident, [])
    proc = gpufix("backups", "prune", "--keep", "0", cwd=project)
    assert proc.returncode == 0
    assert "ignoring backup 20200101T000000-000-abcd: its id" in err(proc)
    assert (victim / "precious").read_text() == "keep me"


def test_restore_refuses_external_entries_outside_the_project(tmp_path):
    target = tmp_path / "outside.txt"
    target.write_bytes(b"known content\n")
    project = tmp_path / "proj"
    project.mkdir()
    ext = "_external/" + str(target).lstrip("/")
    import hashlib

    evil = b"attacker bytes\n"
    d = _plant_backup(project, "20200101T000000-000-abcd", [{
        "path": ext, "sha256_before": hashlib.sha256(evil).hexdigest(),
        "sha256_after": hashlib.sha256(b"known content\n").hexdigest()}])
    (d / ext).parent.mkdir(parents=True)
    (d / ext).write_bytes(evil)
    proc = gpufix("restore", cwd=project)
    assert proc.returncode == 2
    assert "outside the project" in err(proc) and "never writes outside the project" in err(proc)
    assert target.read_bytes() == b"known content\n"


def test_a_symlinked_backups_folder_is_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    project = repo_with(tmp_path / "proj", {"m.py": GOOD})
    (project / ".gpufix").mkdir()
    os.symlink(elsewhere, project / ".gpufix" / "backups")
    proc = gpufix(*apply_args("."), cwd=project)
    assert proc.returncode == 2 and "symlink" in err(proc)
    assert list(elsewhere.iterdir()) == []
    assert (project / "m.py").read_bytes() == GOOD  # nothing written when the backup cannot be made


def test_backups_are_private(tmp_path):
    project = repo_with(tmp_path / "proj", {".env": b"CUDA_VISIBLE_DEVICES=0\nSECRET=hunter2\n"})
    os.chmod(project / ".env", 0o600)
    proc = gpufix(*apply_args(".", "--format", "json"), cwd=project)
    assert proc.returncode == 0, err(proc)
    folder = project / json.loads(out(proc))["backup"]["dir"]
    assert stat.S_IMODE(os.stat(folder / ".env").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(folder / "manifest.json").st_mode) == 0o600
    for d in (folder, folder.parent, folder.parent.parent):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
    assert stat.S_IMODE(os.stat(project / ".env").st_mode) == 0o600  # the file keeps its mode


# -- apply stays in each file's work tree -----------------------------------------------------------
def test_a_committed_symlink_to_a_file_outside_the_repo_is_skipped(tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_bytes(GOOD)
    project = tmp_path / "proj"
    project.mkdir()
    os.symlink(outside, project / "link.py")
    (project / "own.py").write_bytes(GOOD)
    init_git_repo(project)
    proc = gpufix(*apply_args("link.py", "own.py", "--format", "json"), cwd=project)  # named: read, not discovered
    assert outside.read_bytes() == GOOD
    errors = json.loads(out(proc))["errors"]
    assert [(e["path"], e["kind"]) for e in errors] == [("link.py", "fix-error")]
    assert "outside the git work tree" in errors[0]["message"]
    assert (project / "own.py").read_bytes().endswith(FIXED_TAIL)


def test_a_file_swapped_for_a_symlink_between_plan_and_write_is_not_written_through(tmp_path, monkeypatch):
    from gpufix import apply as apply_mod
    from gpufix.config import Policy

    outside = tmp_path / "secret.py"
    outside.write_bytes(GOOD)
    project = tmp_path / "proj"
    project.mkdir()
    (project / "m.py").write_bytes(GOOD)
    real_backup = apply_mod.write_backup

    def swap_then_backup(root, ident, files):
        folder = real_backup(root, ident, files)
        os.unlink(project / "m.py")  # the attacker's move, after gpufix read and planned the file
        os.symlink(outside, project / "m.py")
        return folder

    monkeypatch.setattr(apply_mod, "write_backup", swap_then_backup)
    monkeypatch.chdir(project)
    got = apply_mod.run_apply(["."], Policy(visible_devices="1"), apply_mod.ApplyOptions(tag=False))
    assert outside.read_bytes() == GOOD
    assert [(e.path, e.kind) for e in got.remaining.errors] == [("m.py", "fix-error")]
    assert "symlink" in got.remaining.errors[0].message
    assert got.fixes == []


def test_hard_links_are_not_split(tmp_path):
    project = repo_with(tmp_path / "proj", {"a.py": GOOD})
    os.link(project / "a.py", tmp_path / "other_name.py")
    proc = gpufix(*apply_args(".", "--format", "json"), cwd=project)
    errors = json.loads(out(proc))["errors"]
    assert [(e["path"], e["kind"]) for e in errors] == [("a.py", "fix-error")]
    assert "2 hard links" in errors[0]["message"]
    assert (project / "a.py").read_bytes() == (tmp_path / "other_name.py").read_bytes() == GOOD
    assert os.stat(project / "a.py").st_ino == os.stat(tmp_path / "other_name.py").st_ino


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give a file to another user")
def test_apply_as_root_keeps_the_owner(tmp_path):
    project = repo_with(tmp_path / "proj", {"a.py": GOOD})
    os.chown(project / "a.py", 4321, 4322)
    os.chmod(project / "a.py", 0o640)
    proc = gpufix(*apply_args("."), cwd=project)
    assert proc.returncode == 0, err(proc)
    st = os.stat(project / "a.py")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 4322, 0o640)
    assert (project / "a.py").read_bytes().endswith(FIXED_TAIL)


def test_first_path_outside_git_does_not_skip_the_dirty_check_of_the_second(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "x.py").write_bytes(GOOD)
    project = repo_with(tmp_path / "proj", {"m.py": b"import torch\n"})
    (project / "m.py").write_bytes(GOOD)  # the user's uncommitted work
    proc = gpufix(*apply_args(str(loose / "x.py"), str(project / "m.py")), cwd=tmp_path)
    assert proc.returncode == 2 and "uncommitted changes" in err(proc) and "m.py" in err(proc)
    assert (project / "m.py").read_bytes() == GOOD and (loose / "x.py").read_bytes() == GOOD


def test_two_repositories_in_one_run_each_checked_backed_up_and_tagged(tmp_path):
    one = repo_with(tmp_path / "one", {"a.py": GOOD})
    two = repo_with(tmp_path / "two", {"b.py": GOOD})
    proc = gpufix(*apply_args(str(one), str(two)), cwd=tmp_path)
    assert proc.returncode == 0, err(proc)
    for repo, name in ((one, "a.py"), (two, "b.py")):
        assert (repo / name).read_bytes().endswith(FIXED_TAIL)
        assert git(repo, "tag", "-l", "gpufix/before-*").strip()
        assert any((repo / ".gpufix" / "backups").iterdir())
        restored = gpufix("restore", cwd=repo)
        assert restored.returncode == 0, err(restored)
        assert (repo / name).read_bytes() == GOOD
    # and a dirty file in the second refuses the whole run
    (two / "b.py").write_bytes(GOOD + b"# my work\n")
    proc = gpufix(*apply_args(str(one), str(two)), cwd=tmp_path)
    assert proc.returncode == 2 and "uncommitted changes" in err(proc)
    assert (one / "a.py").read_bytes() == GOOD


def test_git_dir_and_work_tree_layout_keeps_the_dirty_check(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    gitdir = tmp_path / "store.git"
    env = {"GIT_DIR": str(gitdir), "GIT_WORK_TREE": str(tree)}
    run = lambda *a: subprocess.run(["git", *a], cwd=tree, env={**os.environ, **env}, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tree / "m.py").write_bytes(b"import torch\n")
    run("add", "-A")
    run("-c", "user.email=t@e", "-c", "user.name=t", "-c", "commit.gpgsign=false", "commit", "-qm", "i")
    (tree / "m.py").write_bytes(GOOD)  # uncommitted
    proc = gpufix(*apply_args("."), cwd=tree, env=env)
    assert proc.returncode == 2 and "uncommitted changes: m.py" in err(proc)
    assert (tree / "m.py").read_bytes() == GOOD


# -- every output is safe to print and to parse ----------------------------------------------------
INJECT = b'import os\nos.environ["CUDA_VISIBLE_DEVICES"] = "0\\n::error file=x::pwned\\x1b]0;title\\x07"\nimport torch\n'


@pytest.fixture
def hostile(tmp_path):
    (tmp_path / "inj.py").write_bytes(INJECT)
    (tmp_path / os.fsdecode(b"bad\xff\x1b[31m.py")).write_bytes(b"import torch\ntorch.device('cuda:1')\n")
    (tmp_path / "ctl\x01name.py").write_bytes(b"import torch\ntorch.device('cuda:1')\n")
    return tmp_path


@pytest.mark.parametrize("fmt", ["text", "concise", "pylint", "github"])
def test_human_formats_escape_control_characters_one_line_a_finding(hostile, fmt):
    proc = gpufix("scan", ".", "--visible-devices", "1", "--no-cache", "--format", fmt, cwd=hostile)
    assert proc.returncode == 1, err(proc)
    text = out(proc)  # valid UTF-8 whatever the names
    assert "\x1b" not in text and "\x07" not in text and "\x01" not in text
    assert not any(line.startswith("::error file=x") for line in text.splitlines())
    assert "bad\\xff\\x1b[31m.py" in text and "ctl\\x01name.py" in text
    assert "\\x1b]0;title\\x07" in text


def test_text_format_prints_a_repositorys_emoji_codes_as_written(tmp_path):
    """rich turns `:warning:` into an emoji by default, in escaped text too: a code frame and a
    file name would show other characters than the file holds."""
    (tmp_path / ":fire:.py").write_bytes(b"import torch\ntorch.device('cuda:1')  # :warning: :smile:\n")
    proc = gpufix("scan", ".", "--visible-devices", "1", "--no-cache", "--format", "text", cwd=tmp_path)
    assert proc.returncode == 1, err(proc)
    text = out(proc)
    assert ":fire:.py:2:" in text and "# :warning: :smile:" in text
    assert not any(ord(c) > 0x2000 for c in text)


def test_junit_is_well_formed_and_json_formats_are_valid_for_any_name(hostile):
    for fmt in ("junit", "json", "json-lines", "sarif", "gitlab"):
        proc = gpufix("scan", ".", "--visible-devices", "1", "--no-cache", "--format", fmt, cwd=hostile)
        assert proc.returncode == 1, (fmt, err(proc))
        text = out(proc)
        if fmt == "junit":
            names = {s.get("name") for s in ET.fromstring(text.split("\n", 1)[1]).iter("testsuite")}
            assert "ctl\\x01name.py" in names and "bad\\xff\\x1b[31m.py" in names
        elif fmt == "json-lines":
            paths = {json.loads(line).get("path") for line in text.splitlines()}
            assert "bad\\xff\x1b[31m.py" in paths
        else:
            json.loads(text)
            assert fmt == "sarif" or "bad\\\\xff" in text  # the JSON text of the string `bad\xff` (SARIF: a URI)
    sarif = json.loads(out(gpufix("scan", ".", "--visible-devices", "1", "--no-cache", "--format", "sarif", cwd=hostile)))
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in sarif["runs"][0]["results"]}
    assert "bad%FF%1B%5B31m.py" in uris  # the name's own bytes, percent-encoded


def test_output_file_is_written_atomically(hostile, monkeypatch, tmp_path):
    report = tmp_path / "report.json"
    proc = gpufix("scan", ".", "--visible-devices", "1", "--no-cache", "--format", "json", "-o", str(report), cwd=hostile)
    assert proc.returncode == 1, err(proc)
    assert json.loads(report.read_text(encoding="utf-8"))["summary"]["findings"] >= 3
    # an error while rendering leaves the previous report whole
    from click.testing import CliRunner

    from gpufix import cli
    from gpufix.report import formats

    report.write_text("previous report\n")

    def broken(result, stream):
        stream.write("<testsuites partial")
        raise RuntimeError("renderer failed")

    monkeypatch.setattr(formats, "render_junit", broken)
    monkeypatch.chdir(hostile)
    res = CliRunner().invoke(cli.cli, ["scan", ".", "--visible-devices", "1", "--no-cache", "--format", "junit", "-o", str(report)])
    assert isinstance(res.exception, RuntimeError)
    assert report.read_text() == "previous report\n"
    assert not [p for p in report.parent.iterdir() if p.name.endswith(".gpufix-tmp")]
