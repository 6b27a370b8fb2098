"""Rule selection never splits fixes that are safe only together.

A remap (`cuda:1` -> `cuda:0`, GPU001) is right only under the mask the header (GPU101) puts in
force, and the header keeps an ordinal's meaning only once it is remapped. A run that selects one
and not the other (`apply --select GPU001`, a pre-commit hook with `--select`) makes neither: the
findings stay, their messages say which fix the run does not select. Across files the same holds
for a module's remaps and its entry point's header (gpufix.project.index.fix_holds)."""

from __future__ import annotations

import json

from conftest import run_gpufix
from test_project_context import found, make, seed004

POLICY = '[tool.gpufix]\nvisible-devices = "1"\ndevice-order = "PCI_BUS_ID"\ncpu-runs = "override"\n'
SCRIPT = 'import torch\n\nif __name__ == "__main__":\n    x = torch.zeros(1, device="cuda:1")\n'
HEADED = ('import os\n\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n\n'
          'import torch\n\nif __name__ == "__main__":\n    x = torch.zeros(1, device="cuda:0")\n')


def _apply(root, *select):
    return run_gpufix("apply", ".", "--no-backup", "--no-tag", "--no-cache", *select, cwd=root)


def test_a_remap_is_not_made_without_the_header_it_goes_with(tmp_path):
    # cuda:1 -> cuda:0 alone would move the script from physical GPU 1 to GPU 0, the forbidden one
    root = make(tmp_path, {"pyproject.toml": POLICY, "s.py": SCRIPT})
    proc = _apply(root, "--select", "GPU001")
    assert proc.returncode == 1
    assert (root / "s.py").read_text() == SCRIPT
    assert ('use "cuda:0" (not fixed in this run: safe only together with the fixes of GPU101 on line 1 and '
            'GPU102 on line 1, which this run does not select; select GPU101 and GPU102 too)') in proc.stdout


def test_a_header_is_not_made_without_the_remaps_it_goes_with(tmp_path):
    # the header alone would make cuda:1 name no GPU (one visible): a new exception
    root = make(tmp_path, {"pyproject.toml": POLICY, "s.py": SCRIPT})
    scan = run_gpufix("scan", ".", "--format", "json", "--no-cache", "--select", "GPU101,GPU102", cwd=root)
    assert found(scan) == [("s.py", 1, "GPU101", False), ("s.py", 1, "GPU102", False)]
    assert json.loads(scan.stdout)["findings"][0]["message"].endswith(
        "(not fixed in this run: safe only together with the fix of GPU001 on line 4, which this run does not select; "
        "select GPU001 too)")
    # the order alone would put the default device on the GPU of bus 0
    assert _apply(root, "--select", "GPU102").returncode == 1
    assert (root / "s.py").read_text() == SCRIPT
    # selected together, they are made together
    proc = _apply(root, "--select", "GPU001,GPU101,GPU102")
    assert proc.returncode == 0, proc.stdout
    assert (root / "s.py").read_text() == HEADED


def test_the_header_sets_the_order_that_an_unselected_order_rule_would(tmp_path):
    # GPU101's header holds the CUDA_DEVICE_ORDER line: not selecting GPU102 splits nothing
    root = make(tmp_path, {"pyproject.toml": POLICY, "s.py": SCRIPT})
    assert _apply(root, "--select", "GPU001,GPU101").returncode == 0
    assert (root / "s.py").read_text() == HEADED


def test_an_entry_points_header_waits_for_the_unselected_remaps_of_its_modules(tmp_path):
    # seed 004: main.py runs STT/vad_manager.py, whose set_device(1) needs GPU001's remap
    root = seed004(tmp_path)
    before = {p: (root / p).read_text() for p in ("main.py", "STT/vad_manager.py")}
    proc = _apply(root, "--select", "GPU101,GPU102")
    assert proc.returncode == 1
    assert {p: (root / p).read_text() for p in before} == before
    assert ("`STT/vad_manager.py` has ordinals that this run does not remap (this run does not select GPU001); "
            "fix them together: `gpufix apply main.py STT/vad_manager.py`)") in proc.stdout


def test_a_module_that_sets_the_mask_at_run_time_holds_its_entry_points_remaps(tmp_path):
    # util.select_device("0,1") replaces the header's mask when it runs: under "0,1", cuda:1 is
    # physical GPU 1 as written, and the remap to cuda:0 would move it to GPU 0
    util = 'import os\n\n\ndef select_device(device):\n    os.environ["CUDA_VISIBLE_DEVICES"] = device\n'
    main = ('import util\nimport torch\n\nif __name__ == "__main__":\n    util.select_device("0,1")\n'
            '    x = torch.zeros(1, device="cuda:1")\n')
    root = make(tmp_path, {"pyproject.toml": POLICY, "util.py": util, "main.py": main})
    proc = _apply(root)
    assert 'device="cuda:1"' in (root / "main.py").read_text()
    assert ("`util.py` keeps a mask of its own in `main.py`'s process, which no fix of this run replaces: "
            "make it keep the policy's mask by hand") in proc.stdout
