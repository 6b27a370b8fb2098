"""Bad input through the real CLI: every odd file gets a clear message (path, line), no traceback,
the contract's exit code, the other files are still scanned, and `apply` writes nothing it should
not while keeping newline style, BOM and encoding of the files it fixes, byte for byte."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import POSIX_ONLY, WINDOWS

ROOT = Path(__file__).resolve().parents[2]

GOOD = b"import torch\ntorch.cuda.set_device(1)\n"
HEADER = (b'import os\n\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n'
          b'if os.environ.get("CUDA_VISIBLE_DEVICES") not in ("", "-1"):  # keep an explicit CPU run\n'
          b'    os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n\n')
GOOD_FIXED = HEADER + b"import torch\ntorch.cuda.set_device(0)\n"

CRLF = b"import torch\r\ntorch.cuda.set_device(1)\r\n"
CRLF_FIXED = GOOD_FIXED.replace(b"\n", b"\r\n")
BOM = b"\xef\xbb\xbf" + GOOD
BOM_FIXED = b"\xef\xbb\xbf" + GOOD_FIXED
LATIN1 = b'# -*- coding: latin-1 -*-\nimport torch\nname = "caf\xe9"\ntorch.cuda.set_device(1)\n'
LATIN1_FIXED = b'# -*- coding: latin-1 -*-\n' + HEADER + b'import torch\nname = "caf\xe9"\ntorch.cuda.set_device(0)\n'

MAGIC_NB = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# GPU notebook\n"]},
        {
            "cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": ["%env CUDA_VISIBLE_DEVICES=1\n", "%env CUDA_DEVICE_ORDER=PCI_BUS_ID\n", "%matplotlib inline\n",
                       "!nvidia-smi\n", "import torch\n", "x = torch.zeros(1).to(\"cuda:1\")"],
        },
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
         "source": ["%%bash\n", "echo cuda:1\n"]},
    ],
    "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
}

# name -> (bytes, error kind, line or None, words the message must contain)
BAD_FILES = {
    "py2.py": (b"import torch\nprint \"hello\"\n", "syntax-error", 2, ["Python 2"]),
    "nul.py": (b"import torch\nx = 1\x00\n", "binary-file", 2, ["NUL"]),
    "invalid_utf8.py": (b"import torch\nx = '\xff\xfe'\n", "decode-error", 2, ["utf-8"]),
    "unknown_cookie.py": (b"# -*- coding: klingon -*-\nimport torch\n", "decode-error", 1, ["klingon"]),
    "wrong_cookie.py": (b"# -*- coding: ascii -*-\nimport torch\nname = 'caf\xc3\xa9'\n", "decode-error", 3, ["ascii"]),
    "deep_parens.py": (b"import torch\nx = " + b"(" * 500 + b"1" + b")" * 500 + b"\n", "syntax-error", 2, ["nested"]),
    "deep_chain.py": (b"import torch\nx = " + b" + ".join([b"1"] * 20000) + b"\n", "syntax-error", None, ["nested too deeply"]),
    "truncated.ipynb": (b'{"cells": [{"cell_type": "code", "source": ["import torch\\n"', "notebook-error", 1, ["not valid JSON"]),
    "not_a_notebook.ipynb": (b'{"metadata": {}}\n', "notebook-error", None, ["cells"]),
    "bad_cell.ipynb": (b'{"cells": [{"cell_type": "code", "source": 42}], "nbformat": 4}\n', "notebook-error", None, ["cell 1"]),
    # non-Python files (gpufix.formats)
    "broken.yaml": (b"env:\n  CUDA_VISIBLE_DEVICES: '1'\n  bad: [unclosed\nnext: 1\n", "syntax-error", 4, ["invalid YAML"]),
    "tabs.yml": (b"jobs:\n\tgpus: [1]\n", "syntax-error", 2, ["invalid YAML"]),
    "invalid.json": (b'{\n  "device": "cuda:1",\n  "gpu_id": 1,,\n}\n', "syntax-error", 3, ["invalid JSON"]),
    "deep.json": (b'{"gpu_id": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "syntax-error", None, ["nested too deeply"]),
    "bad.toml": (b"[trainer]\ndevices = [1\ngpu_id = 2\n", "syntax-error", 3, ["invalid TOML"]),
    "bin/Dockerfile": (b"FROM x\nENV CUDA_VISIBLE_DEVICES=1\n\x00\x01\x02\xff", "binary-file", 3, ["NUL"]),
    "latin1.sh": (b"# caf\xe9\nCUDA_VISIBLE_DEVICES=0 python x.py\n", "decode-error", 1, ["UTF-8"]),
}

GOOD_FILES = {
    "good.py": GOOD,
    "crlf.py": CRLF,
    "bom.py": BOM,
    "latin1.py": LATIN1,
    "empty.py": b"",
    "nocode.ipynb": (json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# only text\n"]}],
                                 "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1) + "\n").encode(),
    "magics.ipynb": (json.dumps(MAGIC_NB, indent=1) + "\n").encode(),
    "deep_lists.py": b"import torch\ntorch.cuda.set_device(1)\nx = " + b"[" * 180 + b"1" + b"]" * 180 + b"\n",
    "pkg.py/inner.py": GOOD,  # a directory named like a Python file
    # non-Python files: a CRLF + BOM shell script, a Helm template (not YAML until rendered), a YAML
    # alias bomb, a binary-looking YAML without any device word (skipped by the byte test), an
    # empty Dockerfile
    "crlf_bom.sh": b"\xef\xbb\xbf#!/bin/sh\r\nexport CUDA_VISIBLE_DEVICES=0\r\npython t.py --device cuda:1\r\n",
    "chart/templates/job.yaml": b"env:\n  - name: CUDA_VISIBLE_DEVICES\n    value: {{ .Values.gpu | quote }}\n",
    "bomb.yaml": b"a: &a [devices, devices, devices, devices, devices, devices, devices, devices, devices]\n"
                 + b"".join(b"%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n" % ((ord("b") + i,) * 2 + (ord("a") + i,) * 9) for i in range(8)),
    "data.yaml": b"\x00\x01 binary, but no device word\xff\n",
    "empty/Dockerfile": b"",
}
CRLF_BOM_SH_FIXED = (b"\xef\xbb\xbf#!/bin/sh\r\nexport CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=1\r\n"
                     b"python t.py --device cuda:0\r\n")
FIXED = {"good.py": GOOD_FIXED, "crlf.py": CRLF_FIXED, "bom.py": BOM_FIXED, "latin1.py": LATIN1_FIXED, "pkg.py/inner.py": GOOD_FIXED,
         "crlf_bom.sh": CRLF_BOM_SH_FIXED}


def gpufix(*args, cwd, timeout=120):
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    env.pop("GPUFIX_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "gpufix", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def assert_no_traceback(proc):
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr, proc.stderr


def build_tree(root: Path) -> None:
    for name, data in {**GOOD_FILES, **{k: v[0] for k, v in BAD_FILES.items()}}.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    # links: one that loops, one out of the tree (whose target has findings), a loop of folders
    # (not on Windows, where a symlink needs a privilege: the tests that judge them are POSIX_ONLY)
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "target.py").write_bytes(GOOD)
    if WINDOWS:
        return
    os.symlink("loop.py", root / "loop.py")
    os.symlink(outside / "target.py", root / "escape.py")
    os.symlink(root, root / "sub_loop")


def snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink() and ".gpufix" not in p.parts}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "proj"
    root.mkdir()
    build_tree(root)
    return root


@pytest.fixture(scope="module")
def scan_json(tree):
    proc = gpufix("scan", ".", "--visible-devices", "1", "--format", "json", "--no-cache", cwd=tree)
    return proc, json.loads(proc.stdout)


# -- scan ------------------------------------------------------------------------------------------
def test_scan_exit_code_and_no_traceback(scan_json):
    proc, data = scan_json
    assert proc.returncode == 1
    assert_no_traceback(proc)
    assert not [e for e in data["errors"] if e["kind"] == "internal-error"]


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_scan_reports_bad_file(scan_json, name):
    _, data = scan_json
    _, kind, line, words = BAD_FILES[name]
    errs = [e for e in data["errors"] if e["path"] == name]
    assert len(errs) == 1, data["errors"]
    err = errs[0]
    assert err["kind"] == kind
    if line is not None:
        assert err["line"] == line
    for w in words:
        assert w.lower() in err["message"].lower(), err["message"]
    assert not [f for f in data["findings"] if f["path"] == name]


def test_scan_still_scans_the_good_files(scan_json):
    _, data = scan_json
    by_path = {}
    for f in data["findings"]:
        by_path.setdefault(f["path"], set()).add((f["rule"], f["line"]))
    for name in ("good.py", "crlf.py", "bom.py", "pkg.py/inner.py"):
        assert by_path[name] == {("GPU101", 1), ("GPU102", 1), ("GPU001", 2)}, name
    assert by_path["latin1.py"] == {("GPU101", 2), ("GPU102", 2), ("GPU001", 4)}
    assert ("GPU001", 2) in by_path["deep_lists.py"]
    # the magics notebook: the `%env` lines set the mask, so only the ordinal is reported, in cell 2
    nb = [f for f in data["findings"] if f["path"] == "magics.ipynb"]
    assert [(f["rule"], f["cell"], f["line"]) for f in nb] == [("GPU001", 2, 6)]
    assert by_path["crlf_bom.sh"] == {("GPU102", 2), ("GPU103", 2), ("GPU001", 3)}
    for quiet in ("empty.py", "nocode.ipynb", "chart/templates/job.yaml", "bomb.yaml", "data.yaml", "empty/Dockerfile"):
        assert quiet not in by_path
        assert not [e for e in data["errors"] if e["path"] == quiet]
    # only the good files and the bad ones were scanned: no link out of the tree, no loop
    assert "escape.py" not in by_path and not any("sub_loop" in p for p in by_path)
    assert data["summary"]["files_scanned"] == len(GOOD_FILES) + len(BAD_FILES)


@POSIX_ONLY
def test_scan_symlinks(scan_json):
    proc, data = scan_json
    assert "loop.py" in proc.stderr and "symbolic link" in proc.stderr
    assert not [e for e in data["errors"] if e["path"] in ("loop.py", "escape.py")]


def test_scan_text_format_names_path_and_line(tree):
    proc = gpufix("scan", "py2.py", "nul.py", "good.py", "--visible-devices", "1", "--no-cache", cwd=tree)
    assert proc.returncode == 1
    assert_no_traceback(proc)
    assert "py2.py:2:" in proc.stdout and "nul.py:2:" in proc.stdout
    assert "good.py:2:23: GPU001" in proc.stdout


def test_scan_only_bad_file_exits_1(tree):
    proc = gpufix("scan", "nul.py", "--visible-devices", "1", "--no-cache", "--format", "json", cwd=tree)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["summary"]["errors"] == 1


def test_scan_empty_file_is_clean(tree):
    proc = gpufix("scan", "empty.py", "nocode.ipynb", "--visible-devices", "1", "--no-cache", cwd=tree)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_no_traceback(proc)


@POSIX_ONLY
def test_explicit_broken_link_and_directory(tmp_path):
    (tmp_path / "good.py").write_bytes(GOOD)
    os.symlink("nowhere.py", tmp_path / "dangling.py")
    os.symlink("self.py", tmp_path / "self.py")
    (tmp_path / "folder.py").mkdir()
    (tmp_path / "folder.py" / "m.py").write_bytes(GOOD)
    proc = gpufix("scan", "dangling.py", "self.py", "folder.py", "good.py", "--visible-devices", "1", "--no-cache", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 1
    assert_no_traceback(proc)
    data = json.loads(proc.stdout)
    errs = {e["path"]: e for e in data["errors"]}
    assert errs["dangling.py"]["kind"] == "read-error" and "cannot read" in errs["dangling.py"]["message"]
    assert errs["self.py"]["kind"] == "read-error"
    assert {f["path"] for f in data["findings"]} == {"good.py", "folder.py/m.py"}


@POSIX_ONLY
def test_unreadable_file(tmp_path):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading, so there is no unreadable file to test "
                    "(test_explicit_broken_link_and_directory covers read errors)")
    (tmp_path / "good.py").write_bytes(GOOD)
    locked = tmp_path / "locked.py"
    locked.write_bytes(GOOD)
    locked.chmod(0)
    try:
        proc = gpufix("scan", ".", "--visible-devices", "1", "--no-cache", "--format", "json", cwd=tmp_path)
    finally:
        locked.chmod(0o644)
    assert proc.returncode == 1
    assert_no_traceback(proc)
    data = json.loads(proc.stdout)
    assert [(e["path"], e["kind"]) for e in data["errors"]] == [("locked.py", "read-error")]
    assert "good.py" in {f["path"] for f in data["findings"]}


@POSIX_ONLY
def test_fifo_named_py_does_not_hang(tmp_path):
    """A named pipe called pipe.py used to be opened and read, which blocks forever."""
    (tmp_path / "good.py").write_bytes(GOOD)
    os.mkfifo(tmp_path / "pipe.py")
    try:
        proc = gpufix("scan", ".", "--visible-devices", "1", "--no-cache", "--format", "json", cwd=tmp_path, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("gpufix scan hangs on a FIFO named pipe.py")
    assert proc.returncode == 1
    assert_no_traceback(proc)
    data = json.loads(proc.stdout)
    assert [(e["path"], e["kind"]) for e in data["errors"]] == [("pipe.py", "read-error")]
    assert "good.py" in {f["path"] for f in data["findings"]}
    proc = gpufix("apply", ".", "--visible-devices", "1", "--no-cache", "--no-tag", cwd=tmp_path, timeout=30)
    assert proc.returncode == 1
    assert (tmp_path / "good.py").read_bytes() == GOOD_FIXED
    assert (tmp_path / "pipe.py").is_fifo()


def test_huge_file_is_skipped_with_a_message(tmp_path):
    (tmp_path / "good.py").write_bytes(GOOD)
    line = b"value = torch.zeros(1)  # padding padding padding padding\n"
    big = b"import torch\n" + line * (20_000_000 // len(line) + 1)
    (tmp_path / "huge.py").write_bytes(big)
    assert len(big) > 20_000_000
    proc = gpufix("scan", ".", "--visible-devices", "1", "--no-cache", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 1
    assert_no_traceback(proc)
    data = json.loads(proc.stdout)
    assert [(e["path"], e["kind"]) for e in data["errors"]] == [("huge.py", "too-large")]
    assert "MiB" in data["errors"][0]["message"]
    assert "good.py" in {f["path"] for f in data["findings"]}
    proc = gpufix("apply", ".", "--visible-devices", "1", "--no-cache", "--no-tag", cwd=tmp_path)
    assert proc.returncode == 1
    assert_no_traceback(proc)
    assert (tmp_path / "huge.py").read_bytes() == big
    assert (tmp_path / "good.py").read_bytes() == GOOD_FIXED


def test_huge_config_files(tmp_path):
    """A big data file (YAML/JSON/TOML) without any device word is skipped silently, even over the
    size limit (the byte test runs first); one that has a device word is reported as too large."""
    (tmp_path / "run.sh").write_bytes(b"CUDA_VISIBLE_DEVICES=0 python t.py\n")
    row = b'{"text": "padding padding padding padding padding", "label": 3},\n'
    (tmp_path / "dataset.json").write_bytes(b"[\n" + row * (20_000_000 // len(row)) + b"{}]\n")
    (tmp_path / "big_config.json").write_bytes(b'{"device": "cuda:1", "pad": "' + b"x" * 20_000_000 + b'"}')
    proc = gpufix("scan", ".", "--visible-devices", "1", "--no-cache", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 1
    assert_no_traceback(proc)
    data = json.loads(proc.stdout)
    assert [(e["path"], e["kind"]) for e in data["errors"]] == [("big_config.json", "too-large")]
    assert {f["path"] for f in data["findings"]} == {"run.sh"}


# -- apply -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    root = tmp_path_factory.mktemp("apply") / "proj"
    root.mkdir()
    build_tree(root)
    before = snapshot(root)
    outside_before = (root.parent / "outside" / "target.py").read_bytes()
    proc = gpufix("apply", ".", "--visible-devices", "1", "--no-cache", "--no-tag", "--format", "json", cwd=root)
    return root, before, outside_before, proc


def test_apply_exit_code_and_errors(applied):
    root, before, _, proc = applied
    assert proc.returncode == 1  # the bad files are errors that remain
    assert_no_traceback(proc)
    data = json.loads(proc.stdout)
    assert {e["path"] for e in data["errors"]} == set(BAD_FILES)
    assert not [e for e in data["errors"] if e["kind"] in ("internal-error", "fix-error")]
    changed = {c["path"] for c in data["changed_files"]}
    assert changed == set(FIXED) | {"magics.ipynb", "deep_lists.py"}
    assert data["backup"] is not None


@POSIX_ONLY  # reads the link out of the tree back
def test_apply_writes_nothing_for_bad_files(applied):
    root, before, outside_before, _ = applied
    after = snapshot(root)
    for name in BAD_FILES:
        assert after[name] == before[name], name
    for name in ("empty.py", "nocode.ipynb"):
        assert after[name] == before[name]
    assert (root.parent / "outside" / "target.py").read_bytes() == outside_before  # the link out of the tree
    assert os.readlink(root / "escape.py") == str(root.parent / "outside" / "target.py")
    assert not [p for p in root.rglob("*.gpufix-tmp")]


@pytest.mark.parametrize("name", sorted(FIXED))
def test_apply_keeps_newlines_bom_encoding(applied, name):
    root, _, _, _ = applied
    assert (root / name).read_bytes() == FIXED[name]


def test_apply_notebook_with_magics(applied):
    root, before, _, _ = applied
    nb = json.loads((root / "magics.ipynb").read_bytes())
    expected = json.loads(before["magics.ipynb"])
    expected["cells"][1]["source"][-1] = "x = torch.zeros(1).to(\"cuda:0\")"
    assert nb == expected  # magics (line and cell) untouched, only the ordinal changed


def test_apply_deeply_nested_file(applied):
    # regression: libcst's visitor recursion on 180 nested lists crashed the whole apply (RecursionError)
    root, _, _, _ = applied
    data = (root / "deep_lists.py").read_bytes()
    assert data.startswith(HEADER + b"import torch\ntorch.cuda.set_device(0)\nx = [[[")
    compile(data, "deep_lists.py", "exec")


def test_apply_restore_roundtrip(applied):
    root, before, _, _ = applied
    proc = gpufix("restore", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(root) == before


# -- config errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config, words",
    [
        ('[tool.gpufix]\nvisible-device = "1"\n', ["pyproject.toml", "visible-device", "allowed"]),
        ('[tool.gpufix]\nvisible-devices = "1,x"\n', ["pyproject.toml", "visible-devices", "1,x"]),
        ('[tool.gpufix]\nheader-scope = "everything"\n', ["pyproject.toml", "header-scope", "gpu-modules"]),
        ('[tool.gpufix\nvisible-devices = "1"\n', ["pyproject.toml", "TOML"]),
        ('[tool.gpufix]\nselect = ["XYZ"]\n', ["pyproject.toml", "select"]),
    ],
    ids=["unknown-key", "malformed-mask", "bad-scope", "bad-toml", "bad-select"],
)
@pytest.mark.parametrize("command", ["scan", "apply"])
def test_config_errors(tmp_path, config, words, command):
    (tmp_path / "pyproject.toml").write_text(config)
    (tmp_path / "good.py").write_bytes(GOOD)
    proc = gpufix(command, ".", "--no-cache", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert_no_traceback(proc)
    assert proc.stdout == ""
    assert proc.stderr.startswith("gpufix: error: ")
    for w in words:
        assert w in proc.stderr, proc.stderr
    assert (tmp_path / "good.py").read_bytes() == GOOD
    assert not (tmp_path / ".gpufix" / "backups").exists()


def test_config_error_from_gpufix_toml_flag(tmp_path):
    (tmp_path / "good.py").write_bytes(GOOD)
    (tmp_path / "gpufix.toml").write_text('visible-devices = "1,x"\n')
    proc = gpufix("scan", ".", "--config", "gpufix.toml", "--no-cache", cwd=tmp_path)
    assert proc.returncode == 2
    assert "gpufix.toml" in proc.stderr and "1,x" in proc.stderr
    assert_no_traceback(proc)


def test_bad_visible_devices_flag(tmp_path):
    (tmp_path / "good.py").write_bytes(GOOD)
    proc = gpufix("apply", ".", "--visible-devices", "1,x", "--no-cache", cwd=tmp_path)
    assert proc.returncode == 2
    assert "1,x" in proc.stderr
    assert_no_traceback(proc)
    assert (tmp_path / "good.py").read_bytes() == GOOD


# -- regressions found by this suite and the stress run ------------------------------------------
def _nb(source, indent=1):
    return {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_regression_notebook_bom_and_crlf_layout_kept(tmp_path):
    nb = _nb(["import torch\n", "x = 'cuda:1'\n"])
    text = json.dumps(nb, indent=1) + "\n"
    (tmp_path / "bom.ipynb").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (tmp_path / "crlf.ipynb").write_bytes(text.replace("\n", "\r\n").encode())
    proc = gpufix("apply", ".", "--visible-devices", "1", "--no-cache", "--no-tag", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = _nb(["import os\n", "\n", 'os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n',
                    'if os.environ.get("CUDA_VISIBLE_DEVICES") not in ("", "-1"):  # keep an explicit CPU run\n',
                    '    os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n', "\n", "import torch\n", "x = 'cuda:0'\n"])
    out = json.dumps(expected, indent=1, ensure_ascii=False) + "\n"
    assert (tmp_path / "bom.ipynb").read_bytes() == b"\xef\xbb\xbf" + out.encode()
    assert (tmp_path / "crlf.ipynb").read_bytes() == out.replace("\n", "\r\n").encode()


def test_regression_notebook_cell_crlf_kept(tmp_path):
    (tmp_path / "cell.ipynb").write_text(json.dumps(_nb("import torch\r\nx = 'cuda:1'\r\n"), indent=1) + "\n")
    proc = gpufix("apply", ".", "--visible-devices", "1", "--no-cache", "--no-tag", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    source = json.loads((tmp_path / "cell.ipynb").read_text())["cells"][0]["source"]
    assert source == (HEADER + b"import torch\nx = 'cuda:0'\n").decode().replace("\n", "\r\n")


def test_regression_form_feed_file_left_unchanged(tmp_path):
    # libcst drops a form feed at the start of a line: the rewrite would change an untargeted byte
    ff = b"import torch\n\x0ctorch.cuda.set_device(1)\n"
    (tmp_path / "ff.py").write_bytes(ff)
    (tmp_path / "good.py").write_bytes(GOOD)
    proc = gpufix("apply", ".", "--visible-devices", "1", "--no-cache", "--no-tag", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 1
    assert_no_traceback(proc)
    errs = json.loads(proc.stdout)["errors"]
    assert [(e["path"], e["kind"]) for e in errs] == [("ff.py", "fix-error")] and "form feed" in errs[0]["message"]
    assert (tmp_path / "ff.py").read_bytes() == ff
    assert (tmp_path / "good.py").read_bytes() == GOOD_FIXED


def test_regression_apply_survives_a_crash_on_one_file(tmp_path, monkeypatch):
    """A bug while fixing one file is an `internal-error` for that file; the others are fixed."""
    from gpufix import apply as apply_mod
    from gpufix.config import Policy

    (tmp_path / "a.py").write_bytes(GOOD)
    (tmp_path / "b.py").write_bytes(GOOD)
    real = apply_mod.fix_source

    def flaky(src, *a, **kw):
        if src.path.endswith("a.py"):
            raise KeyError("boom")
        return real(src, *a, **kw)

    monkeypatch.setattr(apply_mod, "fix_source", flaky)
    monkeypatch.chdir(tmp_path)
    out = apply_mod.run_apply(["."], Policy(visible_devices="1"), apply_mod.ApplyOptions(tag=False, backup=False))
    assert [(e.path, e.kind) for e in out.remaining.errors] == [("a.py", "internal-error")]
    assert "KeyError" in out.remaining.errors[0].message
    assert (tmp_path / "a.py").read_bytes() == GOOD
    assert (tmp_path / "b.py").read_bytes() == GOOD_FIXED


def test_regression_fixed_code_must_compile():
    """`ast.parse` accepts a misplaced `from __future__`; the fixer's check must not."""
    from gpufix.apply import _must_parse
    from gpufix.fix import FixError

    bad = "import os\nfrom __future__ import annotations\n"
    with pytest.raises(FixError):
        _must_parse(bad, "m.py", before="from __future__ import annotations\n")
    _must_parse(bad, "m.py", before=bad)  # already broken before: not the fixer's doing
    _must_parse("await thing()\n", "nb.ipynb", before="", notebook=True)  # top-level await in a notebook


def test_regression_backup_copies_and_folders_synced_before_manifest(tmp_path, monkeypatch):
    from gpufix import backup

    events = []
    real_write, real_sync = backup.atomic_write, backup.fsync_dir
    monkeypatch.setattr(backup, "atomic_write", lambda p, *a, **k: (events.append(("write", Path(p).name)), real_write(p, *a, **k))[1])
    monkeypatch.setattr(backup, "fsync_dir", lambda p: (events.append(("sync", Path(p).name)), real_sync(p))[1])
    files = [(tmp_path / "src" / "deep" / "a.py", b"old", b"new"), (tmp_path / "b.py", b"old2", b"new2")]
    folder = backup.write_backup(tmp_path, "ID1", files)
    manifest_at = events.index(("write", "manifest.json"))
    assert {e[1] for e in events[:manifest_at] if e[0] == "write"} == {"a.py", "b.py"}
    synced_before = {e[1] for e in events[:manifest_at] if e[0] == "sync"}
    assert {"deep", "src", "ID1"} <= synced_before
    assert events[-1] == ("sync", "ID1")  # the manifest's own folder entry
    assert json.loads((folder / "manifest.json").read_text())["files"][0]["path"] == "src/deep/a.py"


@POSIX_ONLY
def test_regression_apply_writes_through_an_in_tree_symlink(tmp_path):
    """The link used to be replaced by a regular file, leaving the real file unfixed."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "mod.py").write_bytes(GOOD)
    os.symlink("real/mod.py", tmp_path / "a_link.py")
    proc = gpufix("apply", ".", "--visible-devices", "1", "--no-cache", "--no-tag", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.readlink(tmp_path / "a_link.py") == "real/mod.py"
    assert (tmp_path / "real" / "mod.py").read_bytes() == GOOD_FIXED
    proc = gpufix("restore", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert os.path.islink(tmp_path / "a_link.py")
    assert (tmp_path / "real" / "mod.py").read_bytes() == GOOD


def _one_backup(tmp_path):
    (tmp_path / "good.py").write_bytes(GOOD)
    proc = gpufix("apply", ".", "--visible-devices", "1", "--no-cache", "--no-tag", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return tmp_path / json.loads(proc.stdout)["backup"]["dir"]


def test_regression_restore_damaged_backups_fail_cleanly(tmp_path):
    folder = _one_backup(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    # a copy missing from the backup: a clear error, not a traceback
    (folder / "good.py").unlink()
    proc = gpufix("restore", cwd=tmp_path)
    assert proc.returncode == 2 and "incomplete" in proc.stderr and "good.py" in proc.stderr
    assert_no_traceback(proc)
    # a manifest naming a path outside the project is refused
    manifest["files"][0]["path"] = "../escape.py"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    proc = gpufix("restore", cwd=tmp_path)
    assert proc.returncode == 2 and "outside the project" in proc.stderr
    assert_no_traceback(proc)
    assert not (tmp_path.parent / "escape.py").exists()
    # a manifest without the keys gpufix needs is not a backup at all
    (folder / "manifest.json").write_text(json.dumps({"id": manifest["id"], "files": [{"path": "good.py"}]}))
    proc = gpufix("restore", cwd=tmp_path)
    assert proc.returncode == 2 and "no complete backup" in proc.stderr
    assert_no_traceback(proc)
    assert (tmp_path / "good.py").read_bytes() == GOOD_FIXED


def test_regression_a_file_that_cannot_be_written_does_not_stop_the_others(tmp_path, monkeypatch):
    """An OSError while replacing one file (read-only folder, full disk) used to abort the whole
    apply half way, as an internal error; now that file is a fix-error and keeps its bytes."""
    from gpufix import apply as apply_mod
    from gpufix.backup import restore_backup
    from gpufix.config import Policy

    for name in ("a.py", "b.py", "c.py"):
        (tmp_path / name).write_bytes(GOOD)
    real = apply_mod.replace_planned

    def failing(planned, data, *a, **k):
        if Path(planned.path).name == "b.py":
            raise PermissionError(13, "Permission denied")
        return real(planned, data, *a, **k)

    monkeypatch.setattr(apply_mod, "replace_planned", failing)
    monkeypatch.chdir(tmp_path)
    out = apply_mod.run_apply(["."], Policy(visible_devices="1"), apply_mod.ApplyOptions(tag=False))
    assert [(e.path, e.kind) for e in out.remaining.errors] == [("b.py", "fix-error")]
    assert "Permission denied" in out.remaining.errors[0].message
    assert [f.path for f in out.fixes] == ["a.py", "c.py"]
    assert (tmp_path / "b.py").read_bytes() == GOOD
    assert (tmp_path / "a.py").read_bytes() == (tmp_path / "c.py").read_bytes() == GOOD_FIXED
    restore_backup(tmp_path)
    assert all((tmp_path / n).read_bytes() == GOOD for n in ("a.py", "b.py", "c.py"))


NB_MAGIC_CELLS = [
    "if 'google.colab' in str(get_ipython()):\n    !pip install nemo_toolkit\n",  # a magic as a block's whole body
    "model.prompt?\n",  # help on a dotted name
    "WORK_DIR=!pwd  # a list\nWORK_DIR=WORK_DIR[0]\n",  # assigned shell escape
    "ls ./embeddings/\n",  # automagic
    "pip install sagemaker awscli\n",  # automagic
    "    !python train.py \\\n                trainer.devices=1\n",  # an indented cell, continued magic
    "msg = 'sets: %s' \\\n    % ('a',)\n",  # a Python continuation line starting with % is not a magic
    "ls -la\n",  # valid Python (ls minus la): left alone
    "import torch\nx = torch.zeros(1).to('cuda:1')\n",
]


def test_regression_notebook_magics_real_world_shapes(tmp_path):
    """Shapes from NeMo's tutorials that used to be syntax errors (40 notebooks): the magics are
    masked so the notebook parses, and `apply` puts every magic line back byte for byte."""
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": src}
                    for src in NB_MAGIC_CELLS], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "tutorial.ipynb").write_text(json.dumps(nb, indent=1) + "\n")
    proc = gpufix("scan", ".", "--visible-devices", "1", "--no-cache", "--format", "json", cwd=tmp_path)
    data = json.loads(proc.stdout)
    assert data["errors"] == []
    assert ("GPU001", 9, 2) in {(f["rule"], f["cell"], f["line"]) for f in data["findings"]}
    proc = gpufix("apply", ".", "--visible-devices", "1", "--no-cache", "--no-tag", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cells = [c["source"] for c in json.loads((tmp_path / "tutorial.ipynb").read_text())["cells"]]
    assert cells[0] == HEADER.decode() + NB_MAGIC_CELLS[0]  # header leads the first code cell, magic kept
    assert cells[1:8] == NB_MAGIC_CELLS[1:8]
    assert cells[8] == "import torch\nx = torch.zeros(1).to('cuda:0')\n"


def test_stress_script_smoke(tmp_path):
    """scripts/stress_repos.py on a small tree: runs, reports, leaves the original alone."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "good.py").write_bytes(GOOD)
    (repo / "crlf.py").write_bytes(CRLF)
    (repo / "py2.py").write_bytes(BAD_FILES["py2.py"][0])
    (repo / "magics.ipynb").write_bytes(GOOD_FILES["magics.ipynb"])
    before = snapshot(repo)
    report = tmp_path / "report.md"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "stress_repos.py"), str(repo), "--report", str(report)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = report.read_text()
    assert "| repo | 4 | " in text and "| 1 | 0 | 3 | 0 | 0 | 0 | 0 |" in text, text
    assert "py2.py" in text
    assert snapshot(repo) == before


def test_value_flow_through_deep_nesting_and_long_chains(tmp_path):
    """Value flow on odd input: 150 nested lists and 60 nested functions around the use, and a
    chain of 200 names (longer than gpufix follows): the literal is fixed, nothing crashes."""
    nested_defs = "".join("    " * i + f"def f{i}(x=None):\n" for i in range(60))
    deep = (
        b"import torch\nGPU = 1\n"
        + b"x = " + b"[" * 150 + b"GPU" + b"]" * 150 + b"\n"
        + nested_defs.encode() + b"    " * 60 + b"torch.cuda.set_device(GPU)\n"
        + b"".join(f"n{i} = n{i + 1}\n".encode() for i in range(200)) + b"n200 = 2\ntorch.cuda.set_device(n0)\n"
    )
    (tmp_path / "deep_flow.py").write_bytes(deep)
    proc = gpufix("apply", ".", "--visible-devices", "1", "--no-cache", "--no-tag", "--format", "json", cwd=tmp_path)
    assert "Traceback" not in proc.stderr and proc.returncode in (0, 1), proc.stderr
    data = (tmp_path / "deep_flow.py").read_bytes()
    compile(data, "deep_flow.py", "exec")
    # GPU is also read outside a device use (inside the nested lists): reported, not rewritten
    report = json.loads(proc.stdout)
    flows = [f for f in report["remaining"] if f["rule"] == "GPU001"]
    # (line 2 before the 6-line header gpufix inserts above it: the CPU-run-keeping form)
    assert [(f["line"], f["fix"]) for f in flows] == [(8, None)] and b"n200 = 2\n" in data
