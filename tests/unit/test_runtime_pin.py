"""The one rule the run-time pieces apply (gpufix.runtime.pin), the policy keys they read, and the
guard's generated files (each compiles; the hook is one line)."""

import pytest

from gpufix.config import ConfigError, policy_from_table
from gpufix.runtime.guard import module_source, pth_line
from gpufix.runtime.pin import describe, pin


@pytest.mark.parametrize("mode,cpu_runs,caller,after,replaced", [
    ("enforce", "keep", {}, {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, []),
    ("enforce", "keep", {"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
     [("CUDA_VISIBLE_DEVICES", "0", "1")]),
    ("default", "keep", {"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"},
     {"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"}, []),
    ("enforce", "keep", {"CUDA_VISIBLE_DEVICES": ""}, {"CUDA_VISIBLE_DEVICES": "", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, []),
    ("enforce", "keep", {"CUDA_VISIBLE_DEVICES": "-1"}, {"CUDA_VISIBLE_DEVICES": "-1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, []),
    ("enforce", "override", {"CUDA_VISIBLE_DEVICES": ""}, {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
     [("CUDA_VISIBLE_DEVICES", "", "1")]),
    ("enforce", "keep", {"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}, {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
     [("CUDA_DEVICE_ORDER", "FASTEST_FIRST", "PCI_BUS_ID")]),
    # putting the policy's index mask in force under the caller's FASTEST_FIRST would name another GPU:
    # the order goes with the mask, in mode default too
    ("default", "keep", {"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}, {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
     [("CUDA_DEVICE_ORDER", "FASTEST_FIRST", "PCI_BUS_ID")]),
    ("default", "keep", {"CUDA_VISIBLE_DEVICES": "", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"},
     {"CUDA_VISIBLE_DEVICES": "", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"}, []),
    ("default", "keep", {"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, []),
])
def test_pin(mode, cpu_runs, caller, after, replaced):
    env = dict(caller, OTHER="x")
    assert pin(env, "1", "PCI_BUS_ID", cpu_runs, mode) == replaced
    assert env == dict(after, OTHER="x")


def test_describe_says_what_was_replaced():
    assert describe([("CUDA_VISIBLE_DEVICES", "0", "1")]) == "replaced CUDA_VISIBLE_DEVICES='0' with '1'"


def test_policy_keys():
    p = policy_from_table({"visible-devices": "1", "guard-mode": "default", "pytest-guard": True}, "gpufix.toml")
    assert (p.guard_mode, p.pytest_guard) == ("default", True)
    assert (policy_from_table({}, "x").guard_mode, policy_from_table({}, "x").pytest_guard) == ("enforce", False)
    with pytest.raises(ConfigError, match=r"gpufix.toml: `guard-mode` = 'always'; allowed: enforce, default"):
        policy_from_table({"guard-mode": "always"}, "gpufix.toml")
    with pytest.raises(ConfigError, match=r"gpufix.toml: `pytest-guard` must be true or false, got 'yes'"):
        policy_from_table({"pytest-guard": "yes"}, "gpufix.toml")


@pytest.mark.parametrize("vd", ["1", "0,1", "GPU-3b9e2d4f-8a6c-4d2f-8e11-222222222222", "MIG-bbbb"])
def test_the_generated_files_compile_and_hold_the_values(vd):
    values = {"visible_devices": vd, "device_order": "PCI_BUS_ID", "cpu_runs": "keep", "mode": "enforce"}
    line = pth_line(values)
    assert line.startswith("import os; ") and line.count("\n") == 1 and line.endswith("\n")
    compile(line, "00-gpufix-guard.pth", "exec")
    src = module_source(values, "/p/pyproject.toml")
    compile(src, "_gpufix_guard.py", "exec")
    assert f"VISIBLE_DEVICES = {vd!r}\n" in src
    assert "import gpufix" not in src  # the venv may not have gpufix at all
