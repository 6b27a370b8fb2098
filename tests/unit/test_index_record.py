"""One file's project-index record (gpufix.project.imports.index_record): what the graph reads of a
file, made with one parse of it, and the text tests that spare most files any parse."""

import ast
import pathlib
import re
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufix.catalog import catalog_for
from gpufix.config import Policy
from gpufix.project import children
from gpufix.project import imports as I

REPO = pathlib.Path(__file__).resolve().parents[2]

# Every reader of the record at work: a lazy framework import (the tree's `lazy_gpu`), a device
# helper, a plugin run by path, a child script and a `python -m` module started by it.
EVERYTHING = textwrap.dedent('''\
    import subprocess

    def helper(index=1):
        import torch
        return torch.device(f"cuda:{index}")

    def run():
        exec(open("plugins/p.py").read())
        subprocess.Popen(["python", "train/train.py"])
        subprocess.Popen(["python", "-m", "pkg.worker"])
''')


@pytest.fixture
def indexed(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    catalog = catalog_for(Policy(visible_devices="1")).for_project(("pkg",), ())
    I._index_init(tmp_path, set(), catalog)
    return tmp_path


def test_record_of_every_reader_parses_the_file_once(indexed, monkeypatch):
    parses = []
    real = ast.parse
    monkeypatch.setattr(ast, "parse", lambda text, *a, **k: parses.append(1) or real(text, *a, **k))
    record = I.index_record(str(indexed / "pkg" / "tool.py"), EVERYTHING)
    assert record["module"] == "pkg.tool" and record["gpu"] is True
    assert record["lazy_gpu"] == ["helper"]
    assert record["helpers"] == [["helper", "index", 0]]
    assert record["loads"] == ["plugins/p.py"]
    assert record["launches"] == ["plugins/p.py", "train/train.py"]
    assert record["runs_m"] == ["pkg.worker"]
    assert len(parses) == 1
    assert I._LAST_PARSE == [None, None]  # no tree outlives its record


# -- the fast text tests give what the plain regular expressions give ----------------------------
# The patterns as they were first written, run over the whole text: the reference.
STARTS_PROCESSES = re.compile(r"\bPopen\b|\bsubprocess\.|\bos\.(?:system|popen|spawn\w*|exec\w*)\s*\(")


def launched_paths_reference(text: str) -> list:
    if ".py" not in text or not STARTS_PROCESSES.search(text):
        return []
    return sorted({m.group(1).replace("\\", "/") for m in children._PY_PATH.finditer(text)})


# Texts made of the pieces the patterns turn on: quotes, line breaks, path characters, the names.
PIECES = st.sampled_from([
    '"', "'", "\n", "\r", "\r\n", " ", "\t", ".py", ".pyc", "py", ".", "/", "\\", "-", "_", "a", "x1", "é",
    "train/train.py", "'a.py'", "Popen", "subprocess.", "os.system(", "os.execvp (", "os.", "x.", "(", ")", ",",
])
TEXTS = st.lists(st.lists(PIECES, max_size=8).map("".join), max_size=6).map("\n".join)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(TEXTS)
def test_starts_processes_is_the_pattern_led_by_a_word_boundary(text):
    assert children._starts_processes(text) == bool(STARTS_PROCESSES.search(text))


@FAST
@given(st.sampled_from(["", "import subprocess\n", "x = 1\n"]), TEXTS)
def test_launched_paths_is_the_whole_text_regex(head, text):
    assert children.launched_paths(head + text) == launched_paths_reference(head + text)


def test_launched_paths_on_the_bundled_files():
    for path in sorted((REPO / "gpufix").rglob("*.py")) + sorted((REPO / "tests").rglob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        assert children.launched_paths(text) == launched_paths_reference(text), path


ORDINAL_PIECES = st.sampled_from([
    "cuda:", "cuda", "{", "}", "x", "i2", " ", "'", '"', "+", "str(", "(", ")", "%d", "%", ",", "=", "\n", "_",
    "é", "set_device(", "device(", "set_", ".cuda(", "device_id", "device_index", "index", "device_",
])


@FAST
@given(st.lists(ORDINAL_PIECES, max_size=40).map("".join))
def test_ordinal_names_are_the_whole_text_regex(text):
    # `device_id=cuda:{y}`: finditer's match `device_id=cuda` hides the `cuda:{y}` inside it
    expected = {g for m in I._ORDINAL_USE.finditer(text) for g in m.groups() if g}
    assert I._ordinal_names(text) == expected


def test_a_match_hides_the_starts_inside_it():
    assert I._ordinal_names("device_id=cuda:{y}") == {"cuda"}
    assert I._ordinal_names("set_device(n) torch.device('cuda', k)") == {"n", "k"}
