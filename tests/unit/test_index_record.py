"""One file's project-index record (gpufix.project.imports.index_record): what the graph reads of a
file, made with one parse of it, and the text tests that spare most files any parse."""

import ast
import textwrap

import pytest

from gpufix.catalog import catalog_for
from gpufix.config import Policy
from gpufix.project import imports as I

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
