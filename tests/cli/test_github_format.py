"""`--format github`: GitHub Actions workflow commands, one line a finding or file error.

Syntax: `::error|warning file=…,line=…,col=…,endLine=…,endColumn=…,title=…::message`; `%`, CR, LF escaped
in the message and also `:` and `,` in property values; col/endColumn only on a one-line span; a
notebook finding (line relative to its cell) is annotated on the file with the cell in the message.
"""

import io
import json

from conftest import run_gpufix
from gpufix.config import policy_from_table
from gpufix.engine import ScanResult
from gpufix.model import FileError, Finding
from gpufix.report.github import render_github

NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# title"]},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": [
            "import os\n", 'os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n', 'os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n', "import torch\n"]},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": ['t = torch.ones(2).to("cuda:1")\n']},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}

FILES = {
    "pyproject.toml": '[tool.gpufix]\nvisible-devices = "1"\n',
    # a path with `:`, `%` and `,`, which must be escaped in the file= property
    "late:50%,mask.py": (
        "import os\n\n"
        'os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n'
        "import torch\n\n"
        'os.environ["CUDA_VISIBLE_DEVICES"] = (\n    "1"\n)\n'
        'x = torch.zeros(1, device="cuda:1")\n'
    ),
    "env.py": 'import os\n\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ.setdefault("CUDA_VISIBLE_DEVICES", "1")\nimport torch\n',
    "broken.py": "import torch\ndef broken(:\n    pass\n",
    "clean.py": "def add(a, b):\n    return a + b\n",
    "train.ipynb": json.dumps(NOTEBOOK, indent=1),
}

# What precedes each line's message, in report order (findings by path, then file errors).
EXPECTED_PREFIXES = [
    "::warning file=env.py,line=4,col=1,endLine=4,endColumn=51,title=GPU107::GPU107 ",
    # a warning: only a lazy torch import comes before the mask (issue 11)
    "::warning file=late%3A50%25%2Cmask.py,line=6,col=1,endLine=6,endColumn=35,title=GPU105::GPU105 ",
    "::error file=late%3A50%25%2Cmask.py,line=9,col=27,endLine=9,endColumn=35,title=GPU001::GPU001 ",
    "::error file=train.ipynb,title=GPU001::GPU001 cell 3, line 1, col 22: ",
    "::error file=broken.py,line=2,title=gpufix syntax-error::",
]


def _write(tmp_path):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text, encoding="utf-8")


def test_github_lines_for_a_small_project(tmp_path):
    _write(tmp_path)
    gh = run_gpufix("scan", "--no-cache", "--format", "github", ".", cwd=tmp_path)
    assert gh.returncode == 1, gh.stderr
    report = json.loads(run_gpufix("scan", "--no-cache", "--format", "json", ".", cwd=tmp_path).stdout)
    # the messages themselves come from the catalogue; the JSON report says what they are
    messages = [f["message"] for f in report["findings"]] + [e["message"] for e in report["errors"]]
    assert len(messages) == len(EXPECTED_PREFIXES)
    assert gh.stdout.splitlines() == [p + m for p, m in zip(EXPECTED_PREFIXES, messages)]
    assert gh.stdout.endswith("\n") and gh.stderr == ""


def test_github_escaping_and_spans_exactly():
    findings = [
        Finding("GPU001", "dir,x/a:b.py", 3, 5, 3, 13, "bad 100% value\r\nsecond line: a, b", severity="error"),
        Finding("GPU105", "m.py", 7, 1, 9, 2, "spans three lines", severity="error"),
        Finding("GPU003", "n.py", 2, 4, 2, 4, "empty span", severity="warning"),
        Finding("GPU001", "nb.ipynb", 2, 1, 2, 9, "in a notebook", cell=4),
    ]
    errors = [FileError("nb2.ipynb", "notebook-error", "bad cell", line=3, cell=2), FileError("gone.py", "read-error", "cannot read")]
    policy = policy_from_table({"visible-devices": "1"}, "<test>", root="/nonexistent-root")
    out = io.StringIO()
    render_github(ScanResult(policy, [], findings, errors, []), out)
    assert out.getvalue().splitlines() == [
        "::error file=dir%2Cx/a%3Ab.py,line=3,col=5,endLine=3,endColumn=13,title=GPU001::GPU001 bad 100%25 value%0D%0Asecond line: a, b",
        "::error file=m.py,line=7,endLine=9,title=GPU105::GPU105 spans three lines",
        "::warning file=n.py,line=2,col=4,endLine=2,endColumn=4,title=GPU003::GPU003 empty span",
        "::error file=nb.ipynb,title=GPU001::GPU001 cell 4, line 2, col 1: in a notebook",
        "::error file=nb2.ipynb,title=gpufix notebook-error::cell 2, line 3: bad cell",
        "::error file=gone.py,title=gpufix read-error::cannot read",
    ]
