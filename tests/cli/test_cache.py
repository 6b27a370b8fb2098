"""The scan result cache: same report warm as cold, invalidation per file and per config, no writes
with --no-cache, safe under concurrent runs, a corrupt cache file ignored."""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpufix import engine


def write_project(root: Path, n: int = 60) -> None:
    (root / "pyproject.toml").write_text('[tool.gpufix]\nvisible-devices = "1"\n', encoding="utf-8")
    pkg = root / "pkg"
    pkg.mkdir()
    for i in range(n):
        body = "import torch\n" if i % 2 else "import os\n"
        if i % 5 == 0:
            body += f"x = torch.zeros(1).cuda({i % 3})\n"
        (pkg / f"m{i:03d}.py").write_text(body, encoding="utf-8")


def _env(env_extra=None) -> dict:
    from conftest import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFIX_")}
    # this checkout's gpufix, whatever else the interpreter has installed
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    return env


def run_scan(root: Path, *args, env_extra=None) -> dict:
    env = _env(env_extra)
    proc = subprocess.run(
        [sys.executable, "-m", "gpufix", "scan", ".", "--format", "json", "--exit-zero", "-q", *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def cache_body(path: Path) -> dict:
    """A cache file's entries, {key: [size, mtime_ns, content hash, value]}: its first line is the
    HMAC that signs the rest, a header line (format, gpufix version, interpreter), then the table
    of entries and the values (marshal)."""
    from gpufix import cache

    mac, body = path.read_bytes().split(b"\n", 1)
    assert len(mac) == 64 and body.startswith(cache._HEADER)
    rows, area = cache._decode(body, path)
    return {k: [r[0], r[1], r[2], marshal.loads(area[r[4]:r[4] + r[5]])] for k, r in rows.items()}


def encoded_body(entries: dict) -> bytes:
    """A cache file's body holding `entries` (as cache_body gives them), as gpufix writes one."""
    from gpufix import cache

    rows, area = cache._appended({}, b"", [(k, (e[0], e[1], e[2], None, 0, 0), marshal.dumps(e[3])) for k, e in entries.items()])
    return b"".join(cache._encode(rows, area))


def cache_files(root: Path) -> list:
    d = root / ".gpufix" / "cache"
    return sorted(d.glob("scan-*.cache")) if d.is_dir() else []


@pytest.fixture
def project(tmp_path):
    write_project(tmp_path)
    return tmp_path


class Counting:
    """Counts the files linted (cache misses) in-process."""

    def __init__(self, monkeypatch):
        self.paths = []
        real = engine._lint_job

        def job(args):
            self.paths.append(args[1])
            return real(args)

        monkeypatch.setattr(engine, "_lint_job", job)


def scan_in_process(root: Path, monkeypatch, **overrides):
    from gpufix.config import load_policy

    monkeypatch.chdir(root)
    ov = {"visible_devices": None, "select": (), "ignore": (), "header_scope": None, **overrides}
    policy = load_policy(["."], overrides=ov)
    return engine.scan(["."], policy, engine.Options(use_cache=True, jobs=1))


def report(res) -> list:
    return [json.dumps(engine._finding_to_cache(f), sort_keys=True) for f in res.findings]


def test_warm_run_gives_the_same_report(project):
    cold = run_scan(project)
    assert cache_files(project)
    warm = run_scan(project)
    assert warm == cold
    assert cold == run_scan(project, "--no-cache")


def test_changing_a_file_invalidates_only_it(project, monkeypatch):
    first = scan_in_process(project, monkeypatch)
    counting = Counting(monkeypatch)
    again = scan_in_process(project, monkeypatch)
    assert counting.paths == [] and report(again) == report(first)
    target = project / "pkg" / "m001.py"
    target.write_text("import torch\nx = torch.zeros(1).cuda(1)\n", encoding="utf-8")
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    third = scan_in_process(project, monkeypatch)
    assert counting.paths == ["pkg/m001.py"]
    assert any(f.path == "pkg/m001.py" and f.rule == "GPU001" for f in third.findings)


def test_touched_but_unchanged_file_is_a_hit_by_content(project, monkeypatch):
    scan_in_process(project, monkeypatch)
    target = project / "pkg" / "m002.py"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    counting = Counting(monkeypatch)
    scan_in_process(project, monkeypatch)
    assert counting.paths == []


def test_changed_config_invalidates(project, monkeypatch):
    scan_in_process(project, monkeypatch)
    counting = Counting(monkeypatch)
    res = scan_in_process(project, monkeypatch, visible_devices="0")
    assert len(counting.paths) == 60
    assert res.policy.visible_devices == "0"
    (project / "pyproject.toml").write_text('[tool.gpufix]\nvisible-devices = "1"\nheader-scope = "all"\n', encoding="utf-8")
    counting.paths.clear()
    scan_in_process(project, monkeypatch)
    assert len(counting.paths) == 60


def test_no_cache_writes_nothing(project):
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    run_scan(project, "--no-cache")
    after = sorted(p.relative_to(project) for p in project.rglob("*"))
    assert before == after
    assert not (project / ".gpufix").exists()


def test_concurrent_scans_do_not_corrupt_the_cache(project):
    expected = run_scan(project, "--no-cache")
    env = _env()
    cmd = [sys.executable, "-m", "gpufix", "scan", ".", "--format", "json", "--exit-zero", "-q"]
    for _ in range(3):
        procs = [subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err
            assert json.loads(out) == expected
        for f in cache_files(project):
            data = cache_body(f)  # a complete, valid file
            assert len([k for k in data if os.path.isabs(k)]) == 60  # and the run's values (fix holds)
        assert not list((project / ".gpufix" / "cache").glob("*.tmp"))
    assert run_scan(project) == expected


def test_a_corrupt_cache_file_is_ignored(project):
    expected = run_scan(project)
    for f in cache_files(project):
        f.write_text('{"version": "0.1.0", "format": 2, "files": {"x": [1, 2', encoding="utf-8")
    assert run_scan(project) == expected
    for f in cache_files(project):
        f.write_bytes(b"\x00\xff garbage")
    assert run_scan(project) == expected
    for f in cache_files(project):  # valid JSON, wrong shapes
        f.write_text(json.dumps({"version": "0.1.0", "format": 2, "files": {str(project / "pkg" / "m001.py"): [1, 2, 3, 4]}}), encoding="utf-8")
    assert run_scan(project) == expected


def test_cache_dir_from_environment(project, tmp_path_factory):
    where = tmp_path_factory.mktemp("cachedir")
    expected = run_scan(project, "--no-cache")
    assert run_scan(project, env_extra={"GPUFIX_CACHE_DIR": str(where)}) == expected
    assert list(where.glob("scan-*.cache")) and not (project / ".gpufix").exists()
    assert run_scan(project, env_extra={"GPUFIX_CACHE_DIR": str(where)}) == expected


# -- what the cache key covers, and forged caches ------------------------------------------------
def _one_file_project(root: Path) -> Path:
    root.mkdir()
    (root / "pyproject.toml").write_text('[tool.gpufix]\nvisible-devices = "1"\nheader-scope = "all"\n', encoding="utf-8")
    (root / "app.py").write_text(
        'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'
        "import torch\nmy_pin_gpu(1)\n", encoding="utf-8")
    return root


def test_a_changed_catalogue_is_never_answered_from_the_cache(tmp_path):
    """A copy of gpufix whose catalogue gains an API: the warm scan must see the new finding."""
    import shutil

    from conftest import ROOT

    install = tmp_path / "install"
    shutil.copytree(ROOT / "gpufix", install / "gpufix", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "rules", install / "rules")
    project = _one_file_project(tmp_path / "project")
    env = {"PYTHONPATH": str(install)}
    assert run_scan(project, env_extra=env)["findings"] == []
    with open(install / "rules" / "apis" / "torch.toml", "a", encoding="utf-8") as fh:
        fh.write('\n[[api]]\nname = "my_pin_gpu"\nargs = [{position = 0}]\n')
    found = run_scan(project, env_extra=env)["findings"]
    assert [(f["rule"], f["line"]) for f in found] == [("GPU001", 5)]


def test_a_changed_rule_module_is_never_answered_from_the_cache(tmp_path):
    import shutil

    from conftest import ROOT

    install = tmp_path / "install"
    shutil.copytree(ROOT / "gpufix", install / "gpufix", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "rules", install / "rules")
    project = _one_file_project(tmp_path / "project")
    (project / "app.py").write_text((project / "app.py").read_text() + 'x = "cuda:1"\n', encoding="utf-8")
    env = {"PYTHONPATH": str(install)}
    assert [f["rule"] for f in run_scan(project, env_extra=env)["findings"]] == ["GPU001"]
    rule = next((install / "gpufix" / "rules").glob("gpu001_*.py"))
    rule.write_text(rule.read_text().replace("def check(self, ctx: RuleContext):",
                                             "def check(self, ctx: RuleContext):\n        return\n        yield"))
    assert run_scan(project, env_extra=env)["findings"] == []


def _plant_forged_entry(project: Path) -> None:
    """Replace every cached result with 'no findings', keeping the (valid) stamps: what an attacker
    who cannot sign writes into .gpufix/cache."""
    for f in cache_files(project):
        f.write_bytes(b"0" * 64 + b"\n" + _forged_body(f))


def test_a_forged_cache_entry_is_ignored(project):
    expected = run_scan(project, "--no-cache")
    assert expected["findings"]
    run_scan(project)
    _plant_forged_entry(project)
    assert run_scan(project) == expected


def _sign(f: Path, key: bytes, project: Path, body: bytes) -> None:
    """Rewrite cache file `f` in place (same inode) with `body`, signed with `key` as gpufix signs."""
    from gpufix.cache import _mac

    st = f.stat()
    where = project.resolve() / ".gpufix" / "cache" / f.name
    mac = _mac(key, str(project.resolve()), where, (st.st_dev, st.st_ino, st.st_mtime_ns), body)
    with open(f, "r+b") as fh:
        fh.truncate(0)
        fh.write(mac.encode() + b"\n" + body)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))


def _forged_body(f: Path) -> bytes:
    data = cache_body(f)
    for entry in data.values():
        entry[3]["findings"] = []
    return encoded_body(data)


def test_a_cache_made_with_another_users_key_is_ignored(project, tmp_path_factory):
    """The cache planted in a fresh clone (forced into git, same absolute path as on a CI runner),
    signed with its author's key: another user's scan does not trust it, and says so."""
    expected = run_scan(project, "--no-cache")
    attacker_home = tmp_path_factory.mktemp("attacker-cache")
    run_scan(project, env_extra={"XDG_CACHE_HOME": str(attacker_home)})
    key = (attacker_home / "gpufix" / "cache-key").read_bytes()
    for f in cache_files(project):
        _sign(f, key, project, _forged_body(f))  # valid for the attacker, not for us
    mine = run_gpufix_scan(project, env_extra={"XDG_CACHE_HOME": str(attacker_home)})
    assert json.loads(mine.stdout)["findings"] == [], mine.stderr  # the attacker's own view
    proc = run_gpufix_scan(project)
    assert json.loads(proc.stdout) == expected  # ours: the planted cache is not trusted
    assert "ignored the scan cache" in proc.stderr and "was not written here by gpufix" in proc.stderr


def run_gpufix_scan(root: Path, *args, env_extra=None):
    env = _env(env_extra)
    proc = subprocess.run([sys.executable, "-m", "gpufix", "scan", ".", "--format", "json", "--exit-zero", *args],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_a_cache_file_that_git_checks_out_is_not_trusted(project):
    """Our own signed cache, committed and checked out again (a new file on disk): not replayed."""
    from conftest import git, init_git_repo

    expected = run_scan(project, "--no-cache")
    init_git_repo(project)
    run_scan(project)
    key = (Path(os.environ["XDG_CACHE_HOME"]) / "gpufix" / "cache-key").read_bytes()
    for f in cache_files(project):
        _sign(f, key, project, _forged_body(f))
    assert run_scan(project)["findings"] == []  # signed by us, written in place: trusted
    git(project, "add", "-f", ".gpufix/cache")
    git(project, "commit", "-qm", "cache")
    for f in cache_files(project):
        f.unlink()
    git(project, "checkout", "--", ".gpufix/cache")
    assert cache_files(project)
    assert run_scan(project) == expected


# -- links, replays and copies (issue 22) ----------------------------------------------------------------
def test_a_committed_cache_symlink_never_makes_scan_write_its_target(project, tmp_path_factory):
    """`.gpufix/cache/scan-*.json` committed as a link to a file of the user's: the scan neither
    overwrites nor reads the target, and still reports the same findings."""
    expected = run_scan(project, "--no-cache")
    run_scan(project)
    victim = tmp_path_factory.mktemp("victim") / "notes.txt"
    victim.write_text("the user's own notes\n", encoding="utf-8")
    names = [f.name for f in cache_files(project)]
    assert names
    for name in names:
        (project / ".gpufix" / "cache" / name).unlink()
        (project / ".gpufix" / "cache" / name).symlink_to(victim)
    for _ in range(2):
        proc = run_gpufix_scan(project)
        assert json.loads(proc.stdout) == expected
        assert victim.read_text(encoding="utf-8") == "the user's own notes\n"
        assert all((project / ".gpufix" / "cache" / n).is_symlink() for n in names)
    assert "symbolic link" in proc.stderr


def test_a_committed_cache_folder_symlink_is_not_written_through(project, tmp_path_factory):
    expected = run_scan(project, "--no-cache")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (project / ".gpufix").mkdir()
    (project / ".gpufix" / "cache").symlink_to(elsewhere, target_is_directory=True)
    proc = run_gpufix_scan(project)
    assert json.loads(proc.stdout) == expected
    assert list(elsewhere.iterdir()) == []
    assert "symbolic link" in proc.stderr


def test_a_cache_linked_or_copied_under_another_policys_name_is_not_replayed(project, tmp_path_factory):
    """A shared GPUFIX_CACHE_DIR: the cache of one policy put under the name of another (a copy or a
    link) is rejected: its MAC covers its own name."""
    shared = tmp_path_factory.mktemp("shared-cache")
    env = {"GPUFIX_CACHE_DIR": str(shared)}
    zero = run_scan(project, "--visible-devices", "0", env_extra=env)
    one = run_scan(project, "--visible-devices", "1", env_extra=env)
    assert zero["findings"] != one["findings"]
    files = sorted(shared.glob("scan-*.cache"), key=lambda p: p.stat().st_mtime_ns)
    assert len(files) == 2
    first, second = files  # the "0" policy's cache, then the "1" policy's
    for how in ("copy", "link"):
        second.unlink()
        if how == "copy":
            second.write_bytes(first.read_bytes())
        else:
            second.symlink_to(first)
        proc = run_gpufix_scan(project, "--visible-devices", "1", env_extra=env)
        assert json.loads(proc.stdout) == one, how
        assert "ignored the scan cache" in proc.stderr, how


def test_a_cache_copied_into_another_project_is_rejected(project, tmp_path_factory):
    """A project copied with its cache: the copied cache file is never looked up (caches are named
    per project root), and put under the copy's own cache name it fails validation (its MAC covers
    the project root)."""
    import shutil

    run_scan(project)
    other = tmp_path_factory.mktemp("other") / "copy"
    shutil.copytree(project, other)
    expected = run_scan(other, "--no-cache")
    copied = cache_files(other)
    assert copied and run_scan(other) == expected
    own = [f for f in cache_files(other) if f not in copied]
    assert len(own) == 1
    own[0].unlink()
    own[0].write_bytes(copied[0].read_bytes())
    proc = run_gpufix_scan(other)
    assert json.loads(proc.stdout) == expected
    assert "ignored the scan cache" in proc.stderr


def test_the_signing_key_is_private_and_outside_the_project(project):
    run_scan(project)
    key = Path(os.environ["XDG_CACHE_HOME"]) / "gpufix" / "cache-key"
    assert key.is_file() and (key.stat().st_mode & 0o777) == 0o600 and len(key.read_bytes()) == 32
    assert not any(p.name == "cache-key" for p in project.rglob("*"))


def test_a_scan_without_a_config_writes_nothing_into_the_current_folder(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "app.py").write_text("import torch\nx = 'cuda:1'\n", encoding="utf-8")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = _env()
    proc = subprocess.run([sys.executable, "-m", "gpufix", "scan", str(target), "--exit-zero", "-q"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert list(cwd.iterdir()) == [] and not (target / ".gpufix").exists()


def test_the_project_index_is_cached_per_file(tmp_path, monkeypatch):
    """A warm scan parses no unchanged file for the import graph; an edited file is parsed again."""
    from gpufix.project import imports as project

    (tmp_path / "pyproject.toml").write_text('[tool.gpufix]\nvisible-devices = "1"\n', encoding="utf-8")
    for i in range(6):
        (tmp_path / f"s{i}.py").write_text(f"import torch\nif __name__ == '__main__':\n    print({i})\n", encoding="utf-8")
    parsed = []
    real = project._read_for_graph
    monkeypatch.setattr(project, "_read_for_graph", lambda p: parsed.append(p.name) or real(p))
    first = scan_in_process(tmp_path, monkeypatch)
    assert sorted(parsed) == [f"s{i}.py" for i in range(6)]
    assert list((tmp_path / ".gpufix" / "cache").glob("index-*.cache"))
    parsed.clear()
    again = scan_in_process(tmp_path, monkeypatch)
    assert parsed == [] and [f.rule for f in again.findings] == [f.rule for f in first.findings]
    (tmp_path / "s3.py").write_text("import os\n", encoding="utf-8")
    third = scan_in_process(tmp_path, monkeypatch)
    assert parsed == ["s3.py"]
    assert not [f for f in third.findings if f.path.endswith("s3.py")]


def test_the_cached_index_follows_a_change_in_an_imported_module(tmp_path, monkeypatch):
    """The warm index is reused whole only while every file's entry is unchanged: a script that
    reaches the GPU only through a helper gains (and loses) its header finding when the helper's
    imports change, and the graph is not rebuilt when nothing changed."""
    from gpufix.project import index as project

    (tmp_path / "pyproject.toml").write_text('[tool.gpufix]\nvisible-devices = "1"\n', encoding="utf-8")
    (tmp_path / "helper.py").write_text("import os\n", encoding="utf-8")
    (tmp_path / "app.py").write_text("import helper\n\nif __name__ == '__main__':\n    helper.run()\n", encoding="utf-8")
    built = []
    real = project._build_graph
    monkeypatch.setattr(project, "_build_graph", lambda *a: built.append(1) or real(*a))

    def app_rules():
        return sorted(f.rule for f in scan_in_process(tmp_path, monkeypatch).findings if f.path.endswith("app.py"))

    assert app_rules() == [] and len(built) == 1
    assert app_rules() == [] and len(built) == 1  # warm: the cached index, no graph walk
    (tmp_path / "helper.py").write_text("import torch\n", encoding="utf-8")
    assert app_rules() == ["GPU101", "GPU102"] and len(built) == 2
    assert app_rules() == ["GPU101", "GPU102"] and len(built) == 2
    (tmp_path / "helper.py").write_text("import os\n", encoding="utf-8")
    # back to the first content: the index kept for it is right again (a few are kept per cache)
    assert app_rules() == [] and len(built) == 2
    (tmp_path / "helper.py").write_text("import os\nimport torch\n", encoding="utf-8")
    assert app_rules() == ["GPU101", "GPU102"] and len(built) == 3


# -- the format: values decoded on demand, concurrent saves merged under a lock -------------------
def _open_raw(path: Path, project: str = ""):
    from gpufix import cache

    rows, area, identity = cache._load(path, project)
    return cache.ResultCache(path, rows, identity, project=project, area=area)


def _entry(tmp_path: Path, name: str) -> tuple:
    f = tmp_path / name
    f.write_text(f"# {name}\n", encoding="utf-8")
    st = f.stat()
    return str(f), {"_stamp": [st.st_size, st.st_mtime_ns], "_hash": "h-" + name, "findings": [name]}


def test_concurrent_saves_keep_every_runs_entries(tmp_path, monkeypatch):
    """Two runs load the same cache; one saves while the other is between reading the file and
    renaming its own over it (pre-commit's parallel chunks): both runs' entries are kept."""
    import threading

    from gpufix import cache

    path = tmp_path / "scan-x.cache"
    a, b = _open_raw(path), _open_raw(path)
    (pa, ra), (pb, rb) = _entry(tmp_path, "a.py"), _entry(tmp_path, "b.py")
    a.put(pa, ra)
    b.put(pb, rb)
    real = cache._write_signed
    others = []

    def slow_write(*args):
        if not others:  # a's save, inside its critical section: b saves now
            others.append(threading.Thread(target=b.save))
            others[0].start()
            others[0].join(0.3)  # b waits for the lock (without one, b would be renamed over here)
        return real(*args)

    monkeypatch.setattr(cache, "_write_signed", slow_write)
    a.save()
    others[0].join(10)
    monkeypatch.setattr(cache, "_write_signed", real)
    got = _open_raw(path)
    assert got.get(pa) == {"findings": ["a.py"]} and got.get(pb) == {"findings": ["b.py"]}
    # saved one after the other, the second merges the first's entries too
    c, d = _open_raw(path), _open_raw(path)
    (pc, rc), (pd, rd) = _entry(tmp_path, "c.py"), _entry(tmp_path, "d.py")
    c.put(pc, rc)
    d.put(pd, rd)
    c.save()
    d.save()
    got = _open_raw(path)
    assert [bool(got.get(p)) for p in (pa, pb, pc, pd)] == [True] * 4


def test_pre_commit_chunks_in_parallel_fill_one_cache(project):
    """pre-commit splits the file list and runs gpufix on each chunk at once: every chunk's files
    end up in the cache, and the next run reads them all from it with the output of a cold run."""
    files = sorted(str(p.relative_to(project)) for p in (project / "pkg").glob("*.py"))
    chunks = [files[i::3] for i in range(3)]
    env = _env()
    cmd = [sys.executable, "-m", "gpufix", "scan", "--format", "json", "--exit-zero", "-q"]
    procs = [subprocess.Popen(cmd + chunk, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for chunk in chunks]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and not err, err
    (scan_cache,) = cache_files(project)
    assert sorted(os.path.relpath(k, project) for k in cache_body(scan_cache) if os.path.isabs(k)) == files
    proc = subprocess.run(cmd + files, cwd=project, env=env, capture_output=True, text=True, timeout=120)
    cold = subprocess.run(cmd + files + ["--no-cache"], cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert (proc.stdout, proc.stderr) == (cold.stdout, cold.stderr)


def test_a_cache_of_another_interpreter_or_format_is_empty_and_silent(project):
    """A cache file signed by this user's gpufix on another Python (another marshal format) or of
    an older format is never decoded: the run starts from an empty cache, says nothing, and
    rewrites it."""
    from gpufix import cache

    expected = run_gpufix_scan(project, "--no-cache")
    run_scan(project)
    key = (Path(os.environ["XDG_CACHE_HOME"]) / "gpufix" / "cache-key").read_bytes()
    for f in cache_files(project):
        header, rows = f.read_bytes().split(b"\n", 2)[1:]
        assert header + b"\n" == cache._HEADER
        _sign(f, key, project, header.replace(cache._INTERPRETER.encode(), b"cpython-99-9") + b"\n" + b"\xff" * 64)
    proc = run_gpufix_scan(project)
    assert (proc.stdout, proc.stderr) == (expected.stdout, expected.stderr)
    assert all(f.read_bytes().split(b"\n", 2)[1] + b"\n" == cache._HEADER for f in cache_files(project))


def test_a_cache_file_past_the_size_limit_is_not_read(project, monkeypatch):
    from gpufix import cache

    f = project / "scan-big.cache"
    f.write_bytes(b"x" * 100)
    monkeypatch.setattr(cache, "MAX_BYTES", 99)
    with pytest.raises(cache.CacheRejected, match="larger than 99 bytes"):
        cache._load(f, "")


def test_a_verified_body_of_the_wrong_shape_is_rejected_not_a_traceback():
    from gpufix import cache

    good = encoded_body({"/a.py": [1, 2, "h", {"x": 1}]})
    rows, area = cache._decode(good, "c")
    assert marshal.loads(area[rows["/a.py"][4]:][:rows["/a.py"][5]]) == {"x": 1}
    table_at = len(cache._HEADER)
    bad = [good[:table_at] + b"9999\n" + good[good.index(b"\n", table_at) + 1:], cache._HEADER + b"x\n",
           cache._HEADER + b"3\n" + marshal.dumps([1]), cache._HEADER + b"12", good[:table_at + 3]]
    for body in bad:
        with pytest.raises(cache.CacheRejected):
            cache._decode(body, "c")
    # rows of another shape or values past the end are misses, never a traceback
    odd = cache.ResultCache(Path("c"), {"k": (-1, -1, "d", None, 5, 99), "j": (1,)}, area=b"abc")
    assert odd.get_value("k", "d") is None and odd.get_value("j", "d") is None


def test_a_cache_rewritten_many_times_stays_compact(tmp_path, monkeypatch):
    """A save appends only the values it changed; the bytes of replaced values are dropped once
    they outweigh the live ones: the file stays about the size of its entries."""
    from gpufix import cache

    monkeypatch.setattr(cache, "_COMPACT_SLACK", 0)
    path = tmp_path / "scan-x.cache"
    files = [_entry(tmp_path, f"m{i}.py") for i in range(20)]
    for round_ in range(12):
        c = _open_raw(path)
        for p, r in files[round_ % 3::3]:
            c.put(p, {**r, "findings": [round_] * 50})
        c.save()
    got = _open_raw(path)
    assert [got.get(p)["findings"][0] for p, _ in files] == [9 + i % 3 for i in range(20)]
    live = sum(len(marshal.dumps(got.get(p))) for p, _ in files)
    assert path.stat().st_size < 4 * live
