"""Run snapshots (gpufix.snapshot): a scan whose inputs are unchanged prints what it printed last
time without importing the engine; any change to what the scan looked at (a file's bytes, a new
file in a walked folder, a config above the project, git's excludes, the snapshot itself) makes it
scan again. Each test runs the real command in subprocesses and compares with a run without any
cache: what the user sees must never depend on the snapshot."""

import os
import subprocess
import sys

import pytest
from pathlib import Path

from conftest import POSIX_ONLY, ROOT, init_git_repo

POLICY = '[tool.gpufix]\nvisible-devices = "1"\n'
SCAN = ("scan", ".", "--exit-zero")


def env(tmp_path, **extra) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("GPUFIX_")}
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e["GPUFIX_CACHE_DIR"] = str(tmp_path / "cache")
    e["NO_COLOR"] = "1"
    e.update(extra)
    return e


def gpufix(cwd, environ, *args, trace=False):
    """(exit code, stdout, whether the engine was imported) of `python -m gpufix ARGS`."""
    cmd = [sys.executable, *(["-X", "importtime"] if trace else []), "-m", "gpufix", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=environ, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, "gpufix.engine" in proc.stderr


def project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(POLICY, encoding="utf-8")
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("", encoding="utf-8")
    (root / "pkg" / "train.py").write_text("import torch\nx = torch.zeros(1).to('cuda:1')\n", encoding="utf-8")
    (root / "pkg" / "clean.py").write_text("import os\n", encoding="utf-8")
    return root


def settled(root, environ, *args):
    """Scan until a snapshot is replayed (the first run records; the project cache folder the
    first run creates is itself a change the second run sees): the replayed run's result."""
    for _ in range(3):
        code, out, engine = gpufix(root, environ, *args, trace=True)
        if not engine:
            return code, out
    raise AssertionError("no run was replayed from its snapshot")


def test_an_unchanged_scan_is_replayed_byte_for_byte_without_the_engine(tmp_path):
    root = project(tmp_path / "proj")
    e = env(tmp_path)
    fresh = gpufix(root, e, *SCAN, "--no-cache")
    assert "GPU001" in fresh[1] or "cuda:1" in fresh[1]
    assert settled(root, e, *SCAN) == fresh[:2]
    code, out, engine = gpufix(root, e, "scan", ".", trace=True)  # another command line: its own snapshot
    assert engine and code == 1 and out == fresh[1]


def test_an_edit_of_the_same_size_is_seen(tmp_path):
    root = project(tmp_path / "proj")
    e = env(tmp_path)
    settled(root, e, *SCAN)
    target = root / "pkg" / "train.py"
    target.write_text(target.read_text(encoding="utf-8").replace("cuda:1", "cuda:0"), encoding="utf-8")
    code, out, engine = gpufix(root, e, *SCAN, trace=True)
    assert engine
    assert (code, out) == gpufix(root, e, *SCAN, "--no-cache")[:2]
    assert "train.py" not in out


def test_entries_another_run_adds_to_the_cache_keep_the_snapshot(tmp_path):
    """pre-commit's runs on a few files add to the cache the full scan read: the next full scan
    is still replayed (a cache is a memo), and prints what a scan without any cache prints."""
    root = project(tmp_path / "proj")
    e = env(tmp_path)
    expected = settled(root, e, *SCAN)
    caches = {p: p.read_bytes() for p in (tmp_path / "cache").glob("*.cache")}
    gpufix(root, e, "scan", "pkg/clean.py", "pkg/train.py", "--exit-zero")
    assert any(p.read_bytes() != raw for p, raw in caches.items())  # the case under test happened
    snaps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "runs").glob("run-*.snap")}
    code, out, engine = gpufix(root, e, *SCAN, trace=True)
    assert not engine and (code, out) == expected == gpufix(root, e, *SCAN, "--no-cache")[:2]
    # the replay took the caches' new stamps into its snapshot (once): the next one only stats them
    restamped = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "runs").glob("run-*.snap")}
    assert sum(restamped[p] != t for p, t in snaps.items()) == 1
    assert gpufix(root, e, *SCAN, trace=True) == (*expected, False)
    assert {p: p.stat().st_mtime_ns for p in restamped} == restamped
    for p in caches:  # caches removed since: the scan would start from nothing, without a word
        p.unlink()
    assert gpufix(root, e, *SCAN, trace=True) == (*expected, False)


def test_a_cache_altered_since_the_snapshot_is_a_miss(tmp_path):
    """A cache file changed by anything but this user's gpufix: the scan runs, ignores that cache
    with a notice, and records no snapshot of a run that said so."""
    root = project(tmp_path / "proj")
    e = env(tmp_path)
    expected = settled(root, e, *SCAN)
    (scan_cache,) = (tmp_path / "cache").glob("scan-*.cache")
    raw = scan_cache.read_bytes()
    scan_cache.write_bytes(raw.replace(b"GPU001", b"GPU002"))  # same size, signature broken
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "gpufix", *SCAN], cwd=root, env=e,
                          capture_output=True, text=True, timeout=120)
    assert "gpufix.engine" in proc.stderr and "ignored the scan cache" in proc.stderr
    assert (proc.returncode, proc.stdout) == expected


def test_a_new_file_in_a_walked_folder_is_seen(tmp_path):
    root = project(tmp_path / "proj")
    e = env(tmp_path)
    settled(root, e, *SCAN)
    (root / "pkg" / "deep").mkdir()
    (root / "pkg" / "deep" / "infer.py").write_text("import torch\ntorch.cuda.set_device(1)\n", encoding="utf-8")
    code, out, _ = gpufix(root, e, *SCAN)
    assert "pkg/deep/infer.py" in out
    assert (code, out) == gpufix(root, e, *SCAN, "--no-cache")[:2]


def test_a_config_created_above_the_project_is_seen(tmp_path):
    """No config in the scanned folder: gpufix looks in every folder above it."""
    outer = tmp_path / "outer"
    inner = outer / "work"
    inner.mkdir(parents=True)
    (inner / "train.py").write_text("import torch\nx = torch.zeros(1).to('cuda:1')\n", encoding="utf-8")
    e = env(tmp_path)
    before = settled(inner, e, *SCAN)
    (outer / "gpufix.toml").write_text('visible-devices = "1"\nselect = ["GPU1"]\n', encoding="utf-8")
    after = gpufix(inner, e, *SCAN)[:2]
    assert after != before
    assert after == gpufix(inner, e, *SCAN, "--no-cache")[:2]


def test_named_files_see_an_edit_elsewhere_in_their_project(tmp_path):
    """A run of named files (pre-commit's) is judged in its project: a launcher added elsewhere
    changes what the named module is told."""
    root = project(tmp_path / "proj")
    e = env(tmp_path)
    before = settled(root, e, "scan", "pkg/train.py", "--exit-zero")
    (root / "run.py").write_text(
        'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'
        "import pkg.train\n", encoding="utf-8")
    after = gpufix(root, e, "scan", "pkg/train.py", "--exit-zero")[:2]
    assert after == gpufix(root, e, "scan", "pkg/train.py", "--exit-zero", "--no-cache")[:2]
    assert after != before


@POSIX_ONLY
def test_git_excludes_are_inputs(tmp_path):
    root = init_git_repo(project(tmp_path / "proj"))
    (root / "scratch.py").write_text("import torch\ntorch.cuda.set_device(1)\n", encoding="utf-8")
    e = env(tmp_path)
    _, before = settled(root, e, *SCAN)
    assert "scratch.py" in before
    exclude = root / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with open(exclude, "a", encoding="utf-8") as fh:
        fh.write("scratch.py\n")
    code, out, _ = gpufix(root, e, *SCAN)
    assert "scratch.py" not in out
    assert (code, out) == gpufix(root, e, *SCAN, "--no-cache")[:2]


def test_a_forged_or_copied_snapshot_is_not_replayed(tmp_path):
    root = project(tmp_path / "proj")
    e = env(tmp_path)
    expected = settled(root, e, *SCAN)
    runs = tmp_path / "cache" / "runs"
    (snap,) = list(runs.glob("run-*.snap"))
    # altered in place: same name, the body changed (a finding removed from the replayed text)
    raw = snap.read_bytes()
    snap.write_bytes(raw.replace(b"cuda:1", b"cuda:0"))
    code, out, engine = gpufix(root, e, *SCAN, trace=True)
    assert engine and (code, out) == expected
    # a valid snapshot of another command line put under this one's name
    settled(root, e, "scan", ".", "--exit-zero", "--output-format", "json")
    snaps = sorted(runs.glob("run-*.snap"), key=lambda p: p.stat().st_mtime_ns)
    theirs, mine = snaps[-1], [p for p in snaps if p != snaps[-1]][0]
    mine.unlink()
    os.link(theirs, mine)
    code, out, engine = gpufix(root, e, *SCAN, trace=True)
    assert engine and (code, out) == expected


def test_no_cache_leaves_no_snapshot(tmp_path):
    root = project(tmp_path / "proj")
    e = env(tmp_path)
    gpufix(root, e, *SCAN, "--no-cache")
    gpufix(root, e, *SCAN, "--no-cache")
    assert not (tmp_path / "cache").exists()  # nothing written, not even a folder


def test_the_names_probed_above_a_folder_are_those_gpufix_looks_for():
    """A marker or config name the recorder does not stamp above the project would let a replay
    miss a new project root or config (gpufix.config decides both)."""
    from gpufix import config, snapshot

    looked_for = {"gpufix.toml", "pyproject.toml", "__init__.py", *config.REPOSITORY_MARKERS, *config.BUILD_MARKERS}
    assert looked_for <= set(snapshot.PROBE_NAMES)


@POSIX_ONLY
def test_a_scan_whose_output_could_not_be_written_is_not_recorded(tmp_path):
    """A full disk or a closed pipe cuts the output short: that run is never replayed."""
    if not os.path.exists("/dev/full"):
        import pytest

        pytest.skip("no /dev/full here")
    root = project(tmp_path / "proj")
    e = env(tmp_path)
    with open("/dev/full", "w") as full:
        subprocess.run([sys.executable, "-m", "gpufix", *SCAN], cwd=root, env=e, stdout=full,
                       stderr=subprocess.DEVNULL, timeout=120)
    assert not list((tmp_path / "cache" / "runs").glob("run-*"))
    code, out, engine = gpufix(root, e, *SCAN, trace=True)
    assert engine and (code, out) == gpufix(root, e, *SCAN, "--no-cache")[:2]


def test_old_snapshots_are_pruned(tmp_path, monkeypatch):
    """One snapshot per command line, the newest KEEP kept (pre-commit's file lists differ each time)."""
    from gpufix import snapshot

    monkeypatch.setenv("GPUFIX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    monkeypatch.setattr(snapshot, "KEEP", 3)
    runs = tmp_path / "cache" / "runs"
    for i in range(5):
        snapshot._save(f"k{i}", b"x" * 10)
        newest = runs / f"run-k{i}.snap"
        os.utime(newest, ns=(i * 10**9, i * 10**9))
    assert sorted(p.name for p in runs.iterdir()) == ["run-k2.snap", "run-k3.snap", "run-k4.snap"]


def test_gpufix_code_and_catalogue_are_in_the_key(tmp_path):
    """An edited rule file or module (a new size or modification time) changes the code stamp that
    keys both the snapshots and the result cache."""
    import shutil

    shutil.copytree(ROOT / "gpufix", tmp_path / "gpufix", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    probe = [sys.executable, "-c", "from gpufix import snapshot; print(snapshot.code_stamp())"]

    def stamp():
        return subprocess.run(probe, cwd=tmp_path, env=env(tmp_path, PYTHONPATH=str(tmp_path)), capture_output=True,
                              text=True, check=True, timeout=60).stdout

    first = stamp()
    assert stamp() == first
    rule = sorted((tmp_path / "rules").glob("GPU*.toml"))[0]
    rule.write_text(rule.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    second = stamp()
    assert second != first
    module = tmp_path / "gpufix" / "valueflow.py"
    st = module.stat()
    os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert stamp() not in (first, second)


@pytest.mark.skipif(sys.platform == "win32", reason="Windows asks platformdirs itself")
@pytest.mark.parametrize("xdg", [None, "", "relative/dir", "/abs/dir", "  /abs/dir"])
def test_the_user_folders_are_platformdirs_ones_found_without_importing_it(monkeypatch, tmp_path, xdg):
    """The key, the snapshots and the user config live where platformdirs puts them, and finding
    them imports nothing (a replayed scan is 50 ms; platformdirs' import is 15)."""
    import platformdirs

    from gpufix import userdirs

    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        if xdg is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, xdg)
    assert userdirs.user_cache_dir() == platformdirs.user_cache_dir("gpufix", appauthor=False)
    assert userdirs.user_config_dir() == platformdirs.user_config_dir("gpufix", appauthor=False)
    code = ("import sys; from gpufix import config, snapshot, userdirs; userdirs.user_cache_dir(); snapshot.user_cache_dir(); config.user_config_path();"
            " print('platformdirs' in sys.modules)")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**{k: v for k, v in os.environ.items() if k != "GPUFIX_USER_CONFIG"}, "PYTHONPATH": str(ROOT)})
    assert got.stdout.strip() == "False", got.stderr
