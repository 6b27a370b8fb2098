"""Every way code writes the mask or reaches a framework, in every file kind (issue 20): what scan
reports and what apply writes, exactly. The Python and notebook families are also regression cases
of the oracle (tests/oracle/cases/write_*, *_before_mask_*, flow_*, reorder_*, set_env_magic_*); the
shell, Dockerfile and YAML ones are judged here (the oracle runs Python only)."""

from __future__ import annotations

import json

import pytest

from gpufix.apply import fix_source
from gpufix.config import Policy
from gpufix.engine import lint_source
from gpufix.source import read_source


def _policy(value: str) -> Policy:
    return Policy(cpu_runs="override", visible_devices=value)


def scan(text: str, path: str = "prog.py", policy: str = "1") -> list:
    res = lint_source(read_source(path, text.encode()), _policy(policy))
    assert not res.errors
    return sorted((f.rule, f.line, f.fix.applicability if f.fix else None) for f in res.findings)


def apply(text: str, path: str = "prog.py", policy: str = "1") -> str:
    return fix_source(read_source(path, text.encode()), _policy(policy))[0].decode()


# -- mask writes: each is the file's mask (no "never sets"), judged and fixed in place ----------------
WRITES = {
    "update-dict": ('os.environ.update({"CUDA_VISIBLE_DEVICES": "0"})', 'os.environ.update({"CUDA_VISIBLE_DEVICES": "1"})'),
    "update-dict-call": ('os.environ.update(dict(CUDA_VISIBLE_DEVICES="0"))', 'os.environ.update(dict(CUDA_VISIBLE_DEVICES="1"))'),
    "update-keywords": ('os.environ.update(CUDA_VISIBLE_DEVICES="0")', 'os.environ.update(CUDA_VISIBLE_DEVICES="1")'),
    "update-merge": ('os.environ.update({"A": "1"} | {"CUDA_VISIBLE_DEVICES": "0"})',
                     'os.environ.update({"A": "1"} | {"CUDA_VISIBLE_DEVICES": "1"})'),
    "ior": ('os.environ |= {"CUDA_VISIBLE_DEVICES": "0"}', 'os.environ |= {"CUDA_VISIBLE_DEVICES": "1"}'),
    "setitem-dunder": ('os.environ.__setitem__("CUDA_VISIBLE_DEVICES", "0")', 'os.environ.__setitem__("CUDA_VISIBLE_DEVICES", "1")'),
    "alias": ('env = os.environ\nenv["CUDA_VISIBLE_DEVICES"] = "0"', 'env = os.environ\nenv["CUDA_VISIBLE_DEVICES"] = "1"'),
    "named-dict": ('S = {"CUDA_VISIBLE_DEVICES": "0"}\nos.environ.update(S)', 'S = {"CUDA_VISIBLE_DEVICES": "1"}\nos.environ.update(S)'),
    "spread": ('S = {"CUDA_VISIBLE_DEVICES": "0"}\nos.environ.update(**S)', 'S = {"CUDA_VISIBLE_DEVICES": "1"}\nos.environ.update(**S)'),
    "loop-items": ('S = {"CUDA_VISIBLE_DEVICES": "0"}\nfor k, v in S.items():\n    os.environ[k] = v',
                   'S = {"CUDA_VISIBLE_DEVICES": "1"}\nfor k, v in S.items():\n    os.environ[k] = v'),
    "loop-keys": ('S = {"CUDA_VISIBLE_DEVICES": "0"}\nfor k in S:\n    os.environ[k] = S[k]',
                  'S = {"CUDA_VISIBLE_DEVICES": "1"}\nfor k in S:\n    os.environ[k] = S[k]'),
}


@pytest.mark.parametrize("family", sorted(WRITES))
def test_a_mask_write_of_every_form_is_the_files_mask_and_its_value_is_fixed(family):
    write, fixed_write = WRITES[family]
    order = 'os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n'
    text = f"import os\n{order}{write}\nimport torch\ntorch.cuda.set_device(0)\n"
    value_line = 4 if family == "alias" else 3  # the literal (a settings dict's: where it is written)
    assert scan(text) == [("GPU103", value_line, "safe")]
    assert apply(text) == f"import os\n{order}{fixed_write}\nimport torch\ntorch.cuda.set_device(0)\n"


def test_a_settings_dict_written_elsewhere_is_not_a_constant():
    # SETTINGS changes before the update: which value it holds is a run-time question (not followed)
    text = 'import os\nS = {"CUDA_VISIBLE_DEVICES": "0"}\nS["CUDA_VISIBLE_DEVICES"] = "1"\nos.environ.update(S)\nimport torch\n'
    assert ("GPU103", 2, "safe") not in scan(text)


def test_an_alias_rebound_to_something_else_is_no_alias():
    text = 'import os\nenv = os.environ\nenv = {}\nenv["CUDA_VISIBLE_DEVICES"] = "0"\nimport torch\n'
    assert [r for r, _, _ in scan(text)] == ["GPU101", "GPU102"]


# -- frameworks reached without an import statement -----------------------------------------------
@pytest.mark.parametrize("reach", [
    'import importlib\ntorch = importlib.import_module("torch")',
    'from importlib import import_module\ntorch = import_module("torch")',
    'torch = __import__("torch")',
    "def load_backend():\n    import torch\n    return torch\ntorch = load_backend()",
    "def _load():\n    import torch\n    return torch\ndef load_backend():\n    return _load()\ntorch = load_backend()",
])
def test_a_framework_reached_before_the_mask_without_an_import_statement_is_too_late(reach):
    text = f"import os\n{reach}\nos.environ[\"CUDA_DEVICE_ORDER\"] = \"PCI_BUS_ID\"\nos.environ[\"CUDA_VISIBLE_DEVICES\"] = \"1\"\ntorch.cuda.set_device(0)\n"
    n = reach.count("\n") + 3
    findings = lint_source(read_source("prog.py", text.encode()), _policy("1")).findings
    assert [(f.rule, f.line) for f in findings] == [("GPU105", n), ("GPU105", n + 1)]
    call_line = reach.count("\n") + 2
    assert f"the import of torch on line {call_line}" in findings[0].message
    fixed = apply(text)
    assert fixed.startswith('import os\n\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n\n')


def test_a_dynamic_import_makes_a_gpu_module_and_its_name_resolves():
    text = 'import importlib\nT = importlib.import_module("torch")\nx = T.zeros(1).to("cuda:1")\n'
    assert scan(text) == [("GPU001", 3, "safe"), ("GPU101", 1, "safe"), ("GPU102", 1, "safe")]  # where the header goes
    assert scan('import importlib\nnp = importlib.import_module("numpy")\nprint(np)\n') == []


# -- value flow ---------------------------------------------------------------------------------------
def test_walrus_tuple_and_format_keyword_reach_the_device():
    text = ("import torch\n(g := 1)\ntorch.cuda.set_device(g)\na, b = 0, 1\nx = torch.zeros(1).to(f\"cuda:{b}\")\n"
            "c = 1\ny = torch.zeros(1).to(\"cuda:{i}\".format(i=c))\nif (w := 1) is not None:\n    z = torch.zeros(1).to(f\"cuda:{w}\")\n")
    assert scan(text) == [("GPU001", 2, "safe"), ("GPU001", 4, "safe"), ("GPU001", 6, "safe"), ("GPU001", 8, None),
                          ("GPU101", 1, "safe"), ("GPU102", 1, "safe")]
    fixed = apply(text)
    assert "(g := 0)\n" in fixed and "a, b = 0, 0\n" in fixed and "c = 0\n" in fixed
    assert "if (w := 1) is not None:" in fixed  # the walrus's own value is tested: left, and reported


# -- reordered masks: remapped consistently or withheld ------------------------------------------------
TWO = 'import torch\nenc = torch.zeros(1).to("cuda:0")\ndec = torch.zeros(1).to("cuda:1")\n'


def test_a_reordered_mask_that_would_merge_two_gpus_is_withheld():
    text = 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "0,1"\n' + TWO
    res = lint_source(read_source("prog.py", text.encode()), _policy("1,0"))
    assert [(f.rule, f.line, f.fix) for f in res.findings] == [("GPU001", 6, None), ("GPU103", 3, None)]
    assert ('index 0 in this file names physical GPU 0 under "0,1" and would name 1 under "1,0"'
            in res.findings[1].message)
    assert apply(text, policy="1,0") == text
    # without a mask of its own the policy's header would do the same: only the order goes in
    assert apply(TWO, policy="1,0") == 'import os\n\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n\n' + TWO
    # one GPU the policy forbids (GPU 0 under "1"): moving it onto the policy's GPU is the point
    assert apply(TWO, policy="1") == ('import os\n\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n\n'
                                      + TWO.replace("cuda:1", "cuda:0"))


def test_a_reordered_mask_with_one_ordinal_is_remapped():
    text = 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "0,1"\nimport torch\nx = torch.zeros(1).to("cuda:1")\n'
    assert apply(text, policy="1,0") == text.replace('"0,1"', '"1,0"').replace("cuda:1", "cuda:0")


SHELL = "export CUDA_DEVICE_ORDER=PCI_BUS_ID\nexport CUDA_VISIBLE_DEVICES=0,1\npython enc.py --device cuda:0 &\npython dec.py --device cuda:1\n"


def test_a_reordered_mask_in_a_shell_script_is_withheld_when_two_gpus_would_merge():
    assert scan(SHELL, "run.sh", "1,0") == [("GPU001", 4, None), ("GPU103", 2, None)]
    assert apply(SHELL, "run.sh", "1,0") == SHELL
    one = SHELL.replace("python enc.py --device cuda:0 &\n", "")
    assert apply(one, "run.sh", "1,0") == one.replace("0,1", "1,0").replace("cuda:1", "cuda:0")
    prefix = "CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=0,1 python x.py --a cuda:0 --b cuda:1\n"
    assert apply(prefix, "run.sh", "1,0") == prefix


# -- other file kinds ---------------------------------------------------------------------------------
def _nb(*cells) -> str:
    return json.dumps({"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": list(c)}
                                 for c in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.mark.parametrize("magic", ["%set_env CUDA_VISIBLE_DEVICES=0", "%set_env CUDA_VISIBLE_DEVICES 0", "%env CUDA_VISIBLE_DEVICES=0"])
def test_set_env_in_a_notebook_is_read_like_env(magic):
    nb = _nb([magic + "\n", "import torch"], ["torch.cuda.set_device(0)"])
    res = lint_source(read_source("n.ipynb", nb.encode()), _policy("1"))
    assert [(f.rule, f.cell, f.line, f.fix) for f in res.findings] == [("GPU102", 1, 1, None), ("GPU103", 1, 1, None)]
    assert 'CUDA_VISIBLE_DEVICES is set to "0"' in res.findings[1].message


def test_a_dockerfile_order_covers_only_its_stage_and_the_stages_built_on_it():
    text = ("FROM python:3.11 AS build\nENV CUDA_DEVICE_ORDER=PCI_BUS_ID\nRUN pip install torch\n"
            "FROM python:3.11-slim\nENV CUDA_VISIBLE_DEVICES=1\nCMD python app.py\n")
    assert scan(text, "Dockerfile") == [("GPU102", 5, "safe")]
    assert apply(text, "Dockerfile") == text.replace("ENV CUDA_VISIBLE_DEVICES=1", "ENV CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=1")
    inherited = "FROM python:3.11 AS base\nENV CUDA_DEVICE_ORDER=PCI_BUS_ID\nFROM base AS runtime\nENV CUDA_VISIBLE_DEVICES=1\n"
    assert scan(inherited, "Dockerfile") == []
    # FROM <stage> carries its mask: cuda:1 is read under "0,1"
    mask = "FROM python:3.11 AS base\nENV CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=0,1\nFROM base\nRUN python a.py --device cuda:1\n"
    assert scan(mask, "Dockerfile") == [("GPU001", 4, "unsafe"), ("GPU103", 2, "unsafe")]


def test_each_yaml_document_is_its_own_scope():
    text = ("kind: Pod\nspec:\n  containers:\n  - name: a\n    env:\n    - name: CUDA_DEVICE_ORDER\n      value: PCI_BUS_ID\n"
            "---\nkind: Pod\nspec:\n  containers:\n  - name: b\n    env:\n    - name: CUDA_VISIBLE_DEVICES\n      value: \"1\"\n")
    assert scan(text, "pods.yaml") == [("GPU102", 15, None)]
    # an ordinal is read through its own document's mask
    docs = "CUDA_VISIBLE_DEVICES: '0,1'\ndevice: cuda:1\n---\nCUDA_VISIBLE_DEVICES: '1'\n---\ndevice: cuda:1\n"
    findings = lint_source(read_source("c.yaml", docs.encode()), _policy("1")).findings
    gpu001 = [f for f in findings if f.rule == "GPU001"]
    assert [(f.line, f.fix.applicability) for f in gpu001] == [(2, "unsafe"), (6, "safe")]
    assert all("means physical GPU 1" in f.message for f in gpu001)


def test_a_function_that_sets_the_mask_then_imports_is_no_late_write_when_called():
    # main() is a loader (it imports torch) and its own write runs before its import: not too late
    text = ('import os\ndef main():\n    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n    os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'
            '    import torch\n    torch.cuda.set_device(0)\nif __name__ == "__main__":\n    main()\n')
    assert "GPU105" not in [r for r, _, _ in scan(text)]
    # a write in another function after the loader's call at module level is not known to be late
    other = ('import os\ndef load():\n    import torch\n    return torch\ndef pin():\n    os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'
             'torch = load()\npin()\n')
    assert "GPU105" not in [r for r, _, _ in scan(other)]
