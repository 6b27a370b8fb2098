"""Warm runs (issue 21): a run whose files are unchanged takes every result it needs from the result
cache, including those of project files outside the run that the fix holds and the project rules
need, and the hold decisions themselves; an edit anywhere they looked is seen. Each test compares
the findings with a run without any cache (what the user sees must not depend on the cache)."""

import json

from click.testing import CliRunner
from seed004_project import HEADER, MAIN, POLICY, VAD

import gpufix.engine as engine
from gpufix.cli import cli

HELPER = "import torch\n\n\ndef device_cuda(index=1):\n    return torch.device(f\"cuda:{index}\")\n"


def project(tmp_path, main=MAIN):
    for rel, text in {"pyproject.toml": POLICY, "STT/vad_manager.py": VAD, "main.py": main,
                      "utils/devices.py": HELPER,
                      "stt.py": "from utils.devices import device_cuda\n\n\ndef load():\n    return device_cuda(1)\n"}.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return tmp_path


def scan(*args) -> list:
    got = CliRunner().invoke(cli, ["scan", "--output-format", "json", "--exit-zero", *args])
    assert got.exit_code == 0, got.output
    return [(f["path"], f["line"], f["rule"], f["message"], f["fix"] is not None)
            for f in json.loads(got.output)["findings"]]


def counting(monkeypatch) -> dict:
    """How many files the run lints and how many texts the fix holds read."""
    calls = {"lint": 0, "text": 0}
    lint_bytes, read_text = engine.lint_bytes, engine._read_text

    def counted_lint(*a, **k):
        calls["lint"] += 1
        return lint_bytes(*a, **k)

    def counted_text(*a, **k):
        calls["text"] += 1
        return read_text(*a, **k)

    monkeypatch.setattr(engine, "lint_bytes", counted_lint)
    monkeypatch.setattr(engine, "_read_text", counted_text)
    return calls


def test_a_warm_run_of_named_files_reads_nothing_outside_them(tmp_path, monkeypatch):
    root = project(tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.setenv("GPUFIX_CACHE_DIR", str(tmp_path / "cache"))
    named = ["STT/vad_manager.py", "utils/devices.py"]
    expected = scan("--no-cache", *named)
    # the module's remap is held (main.py does not set the mask), the helper's default too (its
    # caller stt.py is not in the run): both decisions need files outside the run
    assert [f[4] for f in expected if f[2] == "GPU001"] and not any(f[4] for f in expected if f[2] == "GPU001")
    assert scan(".") and scan(*named) == expected  # the full scan fills the cache; the first subset run adds its holds
    calls = counting(monkeypatch)
    assert scan(*named) == expected
    assert calls == {"lint": 0, "text": 0}


def test_a_warm_run_sees_an_edit_of_a_file_outside_it(tmp_path, monkeypatch):
    root = project(tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.setenv("GPUFIX_CACHE_DIR", str(tmp_path / "cache"))
    scan(".")
    held = scan("STT/vad_manager.py")
    assert held == scan("--no-cache", "STT/vad_manager.py")
    assert any(f[2] == "GPU001" and not f[4] and "not fixed in this run" in f[3] for f in held)
    # the entry point now sets the mask: the module's remap is safe alone
    (root / "main.py").write_text(HEADER + MAIN, encoding="utf-8")
    calls = counting(monkeypatch)
    fixed = scan("STT/vad_manager.py")
    assert fixed == scan("--no-cache", "STT/vad_manager.py")
    assert any(f[2] == "GPU001" and f[4] for f in fixed) and not any("not fixed in this run" in f[3] for f in fixed)
    assert calls["lint"] >= 1  # main.py linted again, nothing else taken from a stale decision


def test_j1_starts_no_worker_process_anywhere(tmp_path, monkeypatch):
    """`-j 1`: the project index's records and the files' results are made in this process (a
    sandbox without process pools, a debugger, a profile all see the whole run)."""
    import concurrent.futures

    for i in range(50):  # enough files that both stages would use the pool otherwise
        (tmp_path / f"m{i:02d}.py").write_text(f"import os\n\nX{i} = {i}\n", encoding="utf-8")
    (tmp_path / "gpu.py").write_text("import torch\n\nx = torch.zeros(1, device='cuda:1')\n", encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text(POLICY, encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    def no_pool(*a, **k):
        raise AssertionError("a worker pool was started under -j 1")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_pool)
    got = scan("--no-cache", "-j", "1", ".")
    assert [(f[0], f[1], f[2]) for f in got if f[2] == "GPU001"] == [("gpu.py", 3, "GPU001")]


def counting_graph_builds(tmp_path, monkeypatch) -> tuple:
    """(the project's root, the list that grows by one each time the project graph is built)."""
    import gpufix.project.index as index

    root = project(tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.setenv("GPUFIX_CACHE_DIR", str(tmp_path / "cache"))
    builds = []
    real = index._build_graph
    monkeypatch.setattr(index, "_build_graph", lambda *a, **k: builds.append(1) or real(*a, **k))
    return root, builds


def test_an_edit_that_keeps_a_files_index_entry_keeps_the_project_graph(tmp_path, monkeypatch):
    """The pre-commit case: a function's body edited, its imports and launches unchanged. The
    project graph is reused (its key is each file's index entry, not its bytes); an edit of an
    import builds it again. Findings as without any cache either way."""
    root, builds = counting_graph_builds(tmp_path, monkeypatch)
    scan("stt.py")
    assert builds == [1]
    stt = root / "stt.py"
    stt.write_text(stt.read_text(encoding="utf-8").replace("return device_cuda(1)", "return device_cuda(0)"),
                   encoding="utf-8")
    assert scan("stt.py") == scan("--no-cache", "stt.py")
    assert len(builds) == 2  # the --no-cache run builds its own; the cached run reused the graph
    stt.write_text("import utils\n" + stt.read_text(encoding="utf-8"), encoding="utf-8")
    assert scan("stt.py") == scan("--no-cache", "stt.py")
    assert len(builds) == 4


def test_edits_that_change_which_file_is_biggest_keep_the_project_graph(tmp_path, monkeypatch):
    """The index's jobs go biggest file first; the graph's key must not follow that order. A
    comment that makes `stt.py` the biggest file, then the smallest again, reuses the graph."""
    root, builds = counting_graph_builds(tmp_path, monkeypatch)
    stt = root / "stt.py"
    text = stt.read_text(encoding="utf-8")
    first = scan("stt.py")
    stt.write_text(text + "# " + "x" * 4000 + "\n", encoding="utf-8")
    assert scan("stt.py") == first
    stt.write_text(text + "# short\n", encoding="utf-8")
    assert scan("stt.py") == first
    assert builds == [1]


def test_hold_notes_do_not_depend_on_the_order_results_arrive_in(tmp_path, monkeypatch):
    """With a cache the run's results come hits first, then the files linted again; without one,
    largest first. The notes of the hold decisions were made in that order, so a warm run after
    an edit anywhere said "the fix of X is held" where a cold run named the mask X's process keeps
    (lightning: 8 messages). Two generated projects (tests/oracle/project_gen) that showed it."""
    import random

    from oracle.project_gen import random_project

    real = engine._scan_group
    for seed in (13, 47):
        files, _ = random_project(random.Random(seed))
        root = tmp_path / str(seed)
        for rel, text in files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
        monkeypatch.chdir(root)
        monkeypatch.setattr(engine, "_scan_group", real)
        expected = scan("--no-cache", "-j", "1", ".")
        monkeypatch.setattr(engine, "_scan_group", lambda *a, **k: list(reversed(real(*a, **k))))
        assert scan("--no-cache", "-j", "1", ".") == expected
