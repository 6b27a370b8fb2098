"""`gpufix scan` as a user runs it: exit codes, JSON, selection, suppression, config, notebooks."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, run_gpufix


def write(root, rel, text):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return p


def scan_json(root, *args):
    proc = run_gpufix("scan", ".", "--format", "json", "--no-cache", *args, cwd=root)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def rules_at(report):
    return [(f["path"], f["line"], f["rule"]) for f in report["findings"]]


POLICY = '[tool.gpufix]\nvisible-devices = "1"\n'
GOOD_HEADER = 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'


def test_clean_tree_exits_0_and_text_says_so(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "ok.py", GOOD_HEADER + "import torch\nx = torch.zeros(2, device='cuda:0')\n")
    proc = run_gpufix("scan", ".", "--no-cache", cwd=tmp_path)
    assert proc.returncode == 0
    assert "no findings" in proc.stdout
    assert proc.stderr == ""


def test_text_format_lines_and_exit_1(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "app.py", GOOD_HEADER + "import torch\ntorch.cuda.set_device(1)\n")
    proc = run_gpufix("scan", ".", "--no-cache", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == (
        'app.py:5:23: GPU001 device index 1 in torch.cuda.set_device() means physical GPU 1, which is cuda:0 '
        'under CUDA_VISIBLE_DEVICES="1"; use 0 [*]'
    )
    assert "5 | torch.cuda.set_device(1)" in proc.stdout
    assert "1 fixable with `gpufix apply`" in proc.stdout


def test_json_shape_is_the_contract(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "STT/vad.py", "import torch\nd = 'cuda:1'\n")
    code, report = scan_json(tmp_path)
    assert code == 1
    assert set(report) == {"tool", "version", "schema", "policy", "summary", "findings", "errors"}
    assert (report["tool"], report["schema"]) == ("gpufix", 1)
    assert report["policy"] == {"visible-devices": "1", "device-order": "PCI_BUS_ID", "header-scope": "entrypoints"}
    assert report["summary"] == {"files_scanned": 1, "files_with_findings": 1, "findings": 3, "fixable": 3,
                                 "unsafe_fixable": 0, "errors": 0, "by_rule": {"GPU001": 1, "GPU101": 1, "GPU102": 1}}
    gpu001 = [f for f in report["findings"] if f["rule"] == "GPU001"][0]
    assert gpu001 == {
        "rule": "GPU001", "severity": "error", "path": "STT/vad.py", "line": 2, "column": 5, "end_line": 2,
        "end_column": 13,
        "fix": {"applicability": "safe", "title": "use 'cuda:0'", "message": "use 'cuda:0'",
                "edits": [{"content": "'cuda:0'", "location": {"row": 2, "column": 5}, "end_location": {"row": 2, "column": 13}}]},
        "message": "'cuda:1' means physical GPU 1, which is cuda:0 under CUDA_VISIBLE_DEVICES=\"1\"; use 'cuda:0'",
    }


def test_json_to_output_file_and_nothing_else_on_stdout(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "a.py", "import torch\n")
    proc = run_gpufix("scan", ".", "--format", "json", "--output", "out.json", "--no-cache", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert json.loads((tmp_path / "out.json").read_text())["summary"]["findings"] == 2


def test_select_ignore_prefixes_and_exit_zero(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "a.py", "import torch\ntorch.cuda.set_device(1)\n")
    assert {f["rule"] for f in scan_json(tmp_path, "--select", "GPU1")[1]["findings"]} == {"GPU101", "GPU102"}
    assert {f["rule"] for f in scan_json(tmp_path, "--ignore", "GPU1")[1]["findings"]} == {"GPU001"}
    # the most specific code wins, like ruff
    assert {f["rule"] for f in scan_json(tmp_path, "--ignore", "GPU", "--select", "GPU101")[1]["findings"]} == {"GPU101"}
    assert run_gpufix("scan", ".", "--exit-zero", "--no-cache", cwd=tmp_path).returncode == 0


def test_suppression_comments(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "a.py", GOOD_HEADER + """
        import torch
        a = "cuda:1"  # gpufix: ignore[GPU001]
        b = "cuda:1"  # noqa: GPU001
        c = "cuda:1"  # gpufix: ignore
        d = "cuda:1"  # noqa: E501
        e = "cuda:1"
    """.replace("\n        ", "\n"))
    write(tmp_path, "skipped.py", "# gpufix: ignore-file\nimport torch\nx = 'cuda:1'\n")
    _, report = scan_json(tmp_path)
    assert rules_at(report) == [("a.py", 9, "GPU001"), ("a.py", 10, "GPU001")]


def test_per_file_ignores_and_exclude(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY + 'exclude = ["build_scripts/", "*.generated.py"]\n'
          'per-file-ignores = { "tests/**" = ["GPU101", "GPU102"] }\n')
    write(tmp_path, "tests/unit/test_a.py", "import torch\nx = 'cuda:1'\n")
    write(tmp_path, "build_scripts/gen.py", "import torch\n")
    write(tmp_path, "model.generated.py", "import torch\n")
    _, report = scan_json(tmp_path)
    assert rules_at(report) == [("tests/unit/test_a.py", 2, "GPU001")]
    assert report["summary"]["files_scanned"] == 1


def test_gitignore_and_default_skips_but_named_files_are_scanned(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, ".gitignore", "generated/\n")
    write(tmp_path, "generated/x.py", "import torch\n")
    write(tmp_path, ".venv/lib/y.py", "import torch\n")
    write(tmp_path, "node_modules/z.py", "import torch\n")
    write(tmp_path, "real.py", "import torch\n")
    _, report = scan_json(tmp_path)
    assert {f["path"] for f in report["findings"]} == {"real.py"}
    proc = run_gpufix("scan", "generated/x.py", "--format", "json", "--no-cache", cwd=tmp_path)
    assert {f["path"] for f in json.loads(proc.stdout)["findings"]} == {"generated/x.py"}


def test_aliases_are_resolved_from_imports_not_text(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "a.py", GOOD_HEADER + """
        import torch as T
        from torch import cuda as tc
        from numba import cuda
        import cupy as cp
        import sounddevice as sd
        T.cuda.set_device(1)
        tc.get_device_properties(1)
        cuda.select_device(1)
        cp.cuda.Device(1).use()
        sd.play(data, device=1)
        other.set_device(1)
    """.replace("\n        ", "\n"))
    _, report = scan_json(tmp_path)
    assert [(f["line"], f["rule"]) for f in report["findings"]] == [(10, "GPU001"), (11, "GPU001"), (12, "GPU001"), (13, "GPU001")]


def test_what_is_not_a_finding(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "a.py", GOOD_HEADER + """
        import subprocess
        import torch
        state = torch.load("x.pt", map_location={"cuda:1": "cuda:0"})
        subprocess.run("CUDA_VISIBLE_DEVICES=0 python train.py", shell=True)
        current = os.environ.get("CUDA_VISIBLE_DEVICES")
        name = f"cuda:{1}"
        x = torch.zeros(3, device="cuda")
        y = torch.zeros(3, device=0)
    """.replace("\n        ", "\n"))
    code, report = scan_json(tmp_path)
    assert (code, report["findings"]) == (0, [])


def test_no_policy_semantics(tmp_path):
    write(tmp_path, "lib/__init__.py", "")
    write(tmp_path, "lib/model.py", "import torch\nx = torch.zeros(1, device='cuda:1')\n")
    write(tmp_path, "train.py", "import torch\n\nif __name__ == '__main__':\n    pass\n")
    for i in range(3):
        write(tmp_path, f"run_{i}.py", 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n')
    write(tmp_path, "odd.py", 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "0"\nx = "cuda:1"\n')
    _, report = scan_json(tmp_path)
    assert report["policy"]["visible-devices"] is None and report["policy"]["header-scope"] == "entrypoints"
    found = {(f["path"], f["rule"]): f for f in report["findings"]}
    # entry points only: the package's top __init__.py (Python runs it before lib/model.py) and the
    # script; lib/model.py itself is covered by lib/__init__.py
    # the masks disagree: every one is reported (no vote on which GPU is allowed)
    assert sorted(found) == [("lib/__init__.py", "GPU101"), ("lib/__init__.py", "GPU102"), ("odd.py", "GPU001"),
                             ("odd.py", "GPU103"), ("run_0.py", "GPU103"), ("run_1.py", "GPU103"), ("run_2.py", "GPU103"),
                             ("train.py", "GPU101"), ("train.py", "GPU102")]
    assert "gpufix init" in found[("train.py", "GPU101")]["message"] and found[("train.py", "GPU101")]["fix"] is None
    assert found[("odd.py", "GPU103")]["fix"] is None and '("1" in 3 of 4 files, "0" in 1 of 4 files)' in found[("odd.py", "GPU103")]["message"]
    assert found[("odd.py", "GPU001")]["fix"] is None


def test_visible_devices_flag_overrides_policy(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "a.py", 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "0,1"\nimport torch\n')
    assert rules_at(scan_json(tmp_path)[1]) == [("a.py", 3, "GPU103")]
    assert scan_json(tmp_path, "--visible-devices", "0,1")[1]["findings"] == []


@pytest.mark.parametrize("config,needle", [
    ('[tool.gpufix]\nvisible-device = "1"\n', "unknown key(s) 'visible-device'"),
    ('[tool.gpufix]\nvisible-devices = "1,x"\n', "'1,x' is not a valid CUDA_VISIBLE_DEVICES value"),
    ('[tool.gpufix]\nheader-scope = "modules"\n', "allowed: gpu-modules, entrypoints, all"),
    ('[tool.gpufix\n', "invalid TOML"),
])
def test_bad_config_is_exit_2_naming_file_and_key(tmp_path, config, needle):
    write(tmp_path, "pyproject.toml", config)
    write(tmp_path, "a.py", "import torch\n")
    proc = run_gpufix("scan", ".", "--no-cache", cwd=tmp_path)
    assert proc.returncode == 2
    assert "pyproject.toml" in proc.stderr and needle in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_bad_flag_value_is_exit_2(tmp_path):
    proc = run_gpufix("scan", ".", "--visible-devices", "one", cwd=tmp_path)
    assert proc.returncode == 2 and "--visible-devices" in proc.stderr


def test_notebook_findings_point_at_cells(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    nb = {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# title"]},
        {"cell_type": "code", "metadata": {}, "execution_count": 1, "outputs": [], "source": ["!nvidia-smi\n", "import torch"]},
        {"cell_type": "code", "metadata": {}, "execution_count": 2, "outputs": [], "source": ["x = torch.ones(1).to('cuda:1')"]},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "nb.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    _, report = scan_json(tmp_path)
    assert [(f["rule"], f.get("cell"), f["line"], f["column"]) for f in report["findings"]] == [
        ("GPU101", 2, 2, 1), ("GPU102", 2, 2, 1), ("GPU001", 3, 1, 22)]
    text = run_gpufix("scan", ".", "--no-cache", cwd=tmp_path).stdout
    assert "nb.ipynb:cell 3:1:22: GPU001" in text


def test_notebook_env_magic_is_a_setting(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "source":
                     ["%env CUDA_DEVICE_ORDER=PCI_BUS_ID\n", "%env CUDA_VISIBLE_DEVICES=1\n", "import torch"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "nb.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    assert scan_json(tmp_path)[1]["findings"] == []


def test_scan_does_not_import_torch_libcst_git_or_rich_for_json(tmp_path):
    write(tmp_path, "a.py", "import torch\nx = 'cuda:1'\n")
    code = (
        "import sys, runpy\n"
        "sys.argv = ['gpufix', 'scan', 'a.py', '--format', 'json', '--no-cache', '--visible-devices', '1']\n"
        "try:\n    runpy.run_module('gpufix', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'libcst', 'git', 'rich', 'pynvml') if m in sys.modules)\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert "HEAVY=" in proc.stderr and proc.stderr.rsplit("HEAVY=", 1)[1] == ""


def test_a_pre_commit_scan_imports_no_parser_or_module_it_does_not_use(tmp_path):
    """The pre-commit case: files named in a project whose cache is warm, one of them edited, the
    text report on a pipe. Without a TOML file to read (no pyproject.toml, no gpufix.toml) it
    imports no TOML parser (the rule catalogue is read from its parsed form, rules/catalogue.json), no
    tempfile (the cache is written through fsutil._mkstemp),
    none of the modules only apply, `check`, a terminal or non-Python files (formats.facts, the text
    rules' context) need, and no framework."""
    write(tmp_path, "train.py", "import os\nimport torch\nx = torch.device('cuda:1')\n")
    write(tmp_path, "util.py", "def f():\n    return 1\n")
    env = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GPUFIX_USER_CONFIG": "",
           "GPUFIX_CACHE_DIR": str(tmp_path / "cache")}
    args = ["scan", "--visible-devices", "1", "train.py", "util.py"]
    first = subprocess.run([sys.executable, "-m", "gpufix", *args], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert "GPU001" in first.stdout and first.returncode == 1, first.stderr
    write(tmp_path, "util.py", "def f():\n    return 2\n")
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['gpufix', *{args!r}]\n"
        "try:\n    runpy.run_module('gpufix', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "unused = ('tomllib', 'tomli', 'secrets', 'tempfile', 'difflib', 'torch', 'pynvml', 'libcst', 'git', 'rich', 'gpufix.apply',\n"
        "          'gpufix.fix.python', 'gpufix.hardware.commands', 'gpufix.formats.tree', 'gpufix.formats.facts',\n"
        "          'gpufix.rules._text')\n"
        "sys.stderr.write('IMPORTED=' + ','.join(m for m in unused if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert "GPU001" in proc.stdout and "train.py:3" in proc.stdout, proc.stdout + proc.stderr
    assert "IMPORTED=" in proc.stderr and proc.stderr.rsplit("IMPORTED=", 1)[1] == ""


def test_rules_and_explain(tmp_path):
    proc = run_gpufix("rules", cwd=tmp_path)
    assert proc.returncode == 0
    # every catalogue entry, in code order (the list derives from rules/*.toml: a new rule needs no edit here)
    from gpufix.catalog import load_rule_docs

    codes = [line.split()[0] for line in proc.stdout.splitlines()]
    assert codes == sorted(load_rule_docs()) and {"GPU001", "GPU101", "GPU108"} <= set(codes)
    doc = run_gpufix("explain", "gpu105", cwd=tmp_path)
    assert doc.returncode == 0
    for section in ("# GPU105 mask-set-too-late", "## What it does", "## Why is this bad?", "## Example", "## Fix safety"):
        assert section in doc.stdout
    assert run_gpufix("explain", "GPU999", cwd=tmp_path).returncode == 2


def test_notebook_env_magic_findings_say_how_to_fix(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "source": ["%env CUDA_VISIBLE_DEVICES=0\n", "import torch"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "nb.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    found = {f["rule"]: f for f in scan_json(tmp_path)[1]["findings"]}
    assert sorted(found) == ["GPU102", "GPU103"]
    assert "`%env CUDA_DEVICE_ORDER=PCI_BUS_ID`" in found["GPU102"]["message"] and found["GPU102"]["fix"] is None
    assert "`%env CUDA_VISIBLE_DEVICES=1`" in found["GPU103"]["message"] and found["GPU103"]["fix"] is None


def test_a_named_path_that_does_not_exist_is_a_file_error(tmp_path):
    write(tmp_path, "a.py", "x = 1\n")
    proc = run_gpufix("scan", "a.py", "missing.py", "--format", "json", "--no-cache", cwd=tmp_path)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["errors"] == [{"path": "missing.py", "kind": "read-error", "line": None,
                                 "message": "cannot read: No such file or directory"}]
    assert report["summary"]["files_scanned"] == 2
