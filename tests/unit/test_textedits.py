"""gpufix.fix.textedits: a fix as text edits (the JSON report's `fix.edits`, the language server's
quick fixes). The edits applied to the text must give exactly what the fixer writes for that fix
alone, for every fixable finding of the fixtures (Python, notebooks, the other file kinds), also
where the edits are computed without libcst (a value replaced, a header placed as text)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufix.catalog import catalog_for
from gpufix.config import PolicyResolver
from gpufix.engine import lint_bytes
from gpufix.lsp.analysis import Analysis, ignore_edit
from gpufix.model import Edit
from gpufix.source import read_source
from gpufix.fix.textedits import _apply, diff_text, fix_edits, fixed_raw, raw_edits

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ORACLE_CASES = Path(__file__).resolve().parents[1] / "oracle" / "cases"  # notebooks with magics, moves
KINDS = ("*.py", "*.ipynb", "*.sh", "*.yaml", "*.yml", "Dockerfile*", "*.env", ".env", "*.toml")


def fixture_files() -> list:
    out = set()
    for pattern in KINDS:
        out.update(p for p in FIXTURES.rglob(pattern) if p.is_file())
        out.update(p for p in ORACLE_CASES.glob(pattern) if p.is_file() and ".fixed." not in p.name)
    return sorted(out)


def findings_of(path: Path):
    raw = path.read_bytes()
    policy = PolicyResolver(None, {"visible_devices": "1"}).for_path(str(path))
    res = lint_bytes(raw, str(path), str(path), policy, False, catalog_for(policy))
    return read_source(str(path), raw), res.findings


def _cells(raw: bytes) -> dict:
    import json

    nb = json.loads(raw.decode("utf-8-sig"))
    return {i: "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for i, c in enumerate(nb["cells"], 1) if c.get("cell_type") == "code"}


def test_each_fix_as_text_edits_writes_what_the_fixer_writes():
    checked = 0
    for path in fixture_files():
        try:
            src, findings = findings_of(path)
        except Exception:  # an unreadable fixture (the bad-input ones) has nothing to fix
            continue
        for f in findings:
            if f.fix is None or not f.fix.edits:
                continue
            edits = fix_edits(src, f)
            try:
                reference = fixed_raw(src, [f.fix])  # the fixer (libcst where the fix needs it)
            except Exception:
                assert edits is None, (path, f)
                continue
            assert edits is not None, (path, f)
            if src.is_notebook:
                before, after = _cells(src.raw), _cells(reference)
                for idx, text in before.items():
                    mine = _apply(text, [e for e in edits if e.cell == idx])
                    assert mine == after[idx], (path, f.rule, f.line, idx)
            else:
                assert _apply(src.text, edits) == read_source(src.path, reference).text, (path, f.rule, f.line)
            checked += 1
    assert checked > 50  # the fixtures hold that many fixable findings


@pytest.mark.parametrize("old,new", [
    ("a\nb\nc\n", "a\nB\nc\n"),
    ("x = 'cuda:1'\n", "x = 'cuda:0'\n"),
    ("", "import os\n"),
    ("a\r\nb\r\n", "a\r\nc\r\nb\r\n"),
    ("export CUDA_VISIBLE_DEVICES=0\n", "export CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=0\n"),
    ("one\ntwo\nthree\n", "zero\none\nthree\nfour\n"),
])
def test_diff_text_round_trips(old, new):
    edits = diff_text(old, new)
    assert _apply(old, edits) == new
    spans = [(e.line, e.col, e.end_line, e.end_col) for e in edits]
    assert spans == sorted(spans)


def test_diff_text_edits_whole_words():
    (edit,) = diff_text("export CUDA_VISIBLE_DEVICES=0\n", "export CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=0\n")
    assert (edit.line, edit.col, edit.end_line, edit.end_col) == (1, 7, 1, 27)
    assert edit.content == "CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES"


def test_json_shape_is_ruffs():
    assert Edit.span(2, 4, 2, 12, "'cuda:0'").report_json() == {
        "content": "'cuda:0'", "location": {"row": 2, "column": 5}, "end_location": {"row": 2, "column": 13}}
    assert Edit.span(1, 0, 1, 0, "x", cell=3).report_json()["cell"] == 3


def _analysis(tmp_path, name: str, text: str) -> tuple:
    path = tmp_path / name
    path.write_text(text)
    (tmp_path / "pyproject.toml").write_text('[tool.gpufix]\nvisible-devices = "1"\n')
    src, findings = findings_of(path)
    return Analysis(str(path), 1, src, None, findings, []), findings


@pytest.mark.parametrize("name,text,rule,expected_line", [
    ("a.py", "import torch\nx = torch.zeros(1, device='cuda:1')  # keep\n", "GPU001",
     "x = torch.zeros(1, device='cuda:1')  # keep  # gpufix: ignore[GPU001]"),
    ("a.py", "import torch\nx = torch.zeros(1, device='cuda:1')  # gpufix: ignore[GPU105]\n", "GPU001",
     "x = torch.zeros(1, device='cuda:1')  # gpufix: ignore[GPU105, GPU001]"),
    ("compose.yaml", "services:\n  app:\n    environment:\n      CUDA_VISIBLE_DEVICES: \"0\"\n", "GPU103",
     "      CUDA_VISIBLE_DEVICES: \"0\"  # gpufix: ignore[GPU103]"),
    (".env", "CUDA_DEVICE_ORDER=PCI_BUS_ID\nCUDA_VISIBLE_DEVICES=0\n", "GPU103",
     "CUDA_VISIBLE_DEVICES=0  # gpufix: ignore[GPU103]"),
])
def test_ignore_comment_silences_exactly_that_finding(tmp_path, name, text, rule, expected_line):
    analysis, findings = _analysis(tmp_path, name, text)
    target = [f for f in findings if f.rule == rule][0]
    edit = ignore_edit(analysis, target)
    new = _apply(text, [edit])
    assert new.splitlines()[target.line - 1] == expected_line
    (tmp_path / name).write_text(new)
    _, after = findings_of(tmp_path / name)
    assert [(f.rule, f.line) for f in after] == [(f.rule, f.line) for f in findings if f is not target]


def test_no_ignore_comment_where_none_can_go(tmp_path):
    analysis, findings = _analysis(tmp_path, "cfg.json", '{"env": {"CUDA_VISIBLE_DEVICES": "0"}}\n')
    assert findings and all(ignore_edit(analysis, f) is None for f in findings)
    text = "#!/bin/sh\nCUDA_VISIBLE_DEVICES=0 \\\n  python x.py\n"
    analysis, findings = _analysis(tmp_path, "run.sh", text)
    assert all(ignore_edit(analysis, f) is None for f in findings if f.line == 2)


def test_raw_edits_of_a_notebook_are_per_cell(tmp_path):
    from gpufix.lsp.analysis import notebook_bytes

    raw = notebook_bytes([("code", "import torch\n"), ("markdown", "# title\n"), ("code", "x = 'cuda:1'\n")])
    src = read_source("nb.ipynb", raw)
    new = notebook_bytes([("code", "import torch\n"), ("markdown", "# title\n"), ("code", "x = 'cuda:0'\n")])
    assert raw_edits(src, new) == [Edit.span(1, 10, 1, 11, "0", cell=3)]
