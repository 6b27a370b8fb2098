"""`gpufix run` in real processes: the command it starts sees the policy's environment, a failed
pre-flight check (the real-stack NVML double behind GPUFIX_PROBE) refuses with exit 3 and the
reason, and the command's own exit code comes back."""

import json
import os
import sys

import pytest

from conftest import ROOT, run_gpufix

pytest.importorskip("pynvml")

SHOW_ENV = ("import json, os, sys; print(json.dumps({k: os.environ.get(k) for k in "
            "('CUDA_VISIBLE_DEVICES', 'CUDA_DEVICE_ORDER')})); sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)")


def project(tmp_path, **keys):
    lines = ["[tool.gpufix]"] + [f"{k.replace('_', '-')} = {json.dumps(v)}" for k, v in keys.items()]
    (tmp_path / "pyproject.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def run(cwd, *args, machine="user", shell=None):
    env = {"GPUFIX_PROBE": "runtime_probes:from_env", "GPUFIX_TEST_MACHINE": machine,
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        env[name] = None
    env.update(shell or {})
    full = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    import subprocess

    return subprocess.run([sys.executable, "-m", "gpufix", "run", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=120)


def seen(res):
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_the_command_gets_the_policy_environment_and_its_exit_code_comes_back(tmp_path):
    project(tmp_path, visible_devices="1", expect_name="RTX 3090", min_memory_gib=20)
    res = run(tmp_path, "--", sys.executable, "-c", SHOW_ENV, "7")
    assert res.returncode == 7, res.stderr
    assert seen(res) == {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert "cuda:0 = GPU 1 NVIDIA GeForce RTX 3090 (00000000:01:00.0), 24.00 GiB (expect-name, min-memory ok)" \
        in res.stderr


def test_a_callers_other_mask_and_order_are_replaced_and_said_on_stderr(tmp_path):
    project(tmp_path, visible_devices="1")
    res = run(tmp_path, sys.executable, "-c", SHOW_ENV,
              shell={"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"})
    assert res.returncode == 0, res.stderr
    assert seen(res) == {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert ("replaced CUDA_DEVICE_ORDER='FASTEST_FIRST' with 'PCI_BUS_ID'; "
            "replaced CUDA_VISIBLE_DEVICES='0' with '1'") in res.stderr


@pytest.mark.parametrize("keys,reason", [
    ({"visible_devices": "0", "expect_name": "RTX 3090", "min_memory_gib": 8},
     "does not contain expect-name = 'RTX 3090'"),
    ({"visible_devices": "0"},  # the 5060 Ti's 15.93 GiB against the default 20
     "has 15.93 GiB (NVML total) < min-memory-gib = 20 GiB"),
    ({"visible_devices": "1", "expect_uuid": "GPU-5a1f"}, "but expect-uuid = 'GPU-5a1f'"),
    ({"visible_devices": "5"}, "no GPU visible under CUDA_VISIBLE_DEVICES='5': entry '5': index 5 is past the last GPU"),
    ({"visible_devices": "1", "device_order": "FASTEST_FIRST"}, "does not say which physical GPU CUDA will pick"),
])
def test_a_failed_check_refuses_to_start_with_exit_3_and_the_reason(tmp_path, keys, reason):
    project(tmp_path, **keys)
    marker = tmp_path / "started"
    res = run(tmp_path, "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')")
    assert res.returncode == 3, res.stderr
    assert res.stderr.startswith(f"gpufix run: refused to start {sys.executable}: ")
    assert reason in res.stderr
    assert not marker.exists()
    assert res.stdout == ""


def test_a_mig_instance_is_judged_by_its_own_memory(tmp_path):
    project(tmp_path, visible_devices="MIG-bbbb", min_memory_gib=30)
    ok = run(tmp_path, sys.executable, "-c", SHOW_ENV, machine="a100-mig")
    assert ok.returncode == 0, ok.stderr
    assert seen(ok)["CUDA_VISIBLE_DEVICES"] == "MIG-bbbb"
    project(tmp_path, visible_devices="MIG-bbbb", min_memory_gib=60)
    refused = run(tmp_path, sys.executable, "-c", SHOW_ENV, machine="a100-mig")
    assert refused.returncode == 3
    assert "39.25 GiB (NVML total of the MIG instance) < min-memory-gib = 60 GiB" in refused.stderr


def test_without_nvml_it_refuses_unless_no_verify(tmp_path):
    project(tmp_path, visible_devices="1")
    res = run(tmp_path, sys.executable, "-c", SHOW_ENV, machine="no-nvml")
    assert res.returncode == 3
    assert "cannot verify the GPU: no NVIDIA driver" in res.stderr
    assert "pass --no-verify to start without the check" in res.stderr
    res = run(tmp_path, "--no-verify", sys.executable, "-c", SHOW_ENV, "4", machine="no-nvml")
    assert res.returncode == 4, res.stderr
    assert seen(res) == {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


@pytest.mark.parametrize("cpu", ["", "-1"])
def test_a_callers_cpu_run_is_kept_under_cpu_runs_keep(tmp_path, cpu):
    project(tmp_path, visible_devices="1")
    res = run(tmp_path, sys.executable, "-c", SHOW_ENV, machine="no-nvml", shell={"CUDA_VISIBLE_DEVICES": cpu})
    assert res.returncode == 0, res.stderr
    assert seen(res) == {"CUDA_VISIBLE_DEVICES": cpu, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    project(tmp_path, visible_devices="1", cpu_runs="override")
    res = run(tmp_path, sys.executable, "-c", SHOW_ENV, shell={"CUDA_VISIBLE_DEVICES": cpu})
    assert seen(res)["CUDA_VISIBLE_DEVICES"] == "1"
    assert f"replaced CUDA_VISIBLE_DEVICES={cpu!r} with '1'" in res.stderr


def test_dry_run_prints_the_environment_and_starts_nothing(tmp_path):
    project(tmp_path, visible_devices="1", expect_name="3090")
    marker = tmp_path / "started"
    res = run(tmp_path, "--dry-run", sys.executable, "-c", f"open({str(marker)!r}, 'w')")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "CUDA_DEVICE_ORDER=PCI_BUS_ID\nCUDA_VISIBLE_DEVICES=1\n"
    assert "would start:" in res.stderr and not marker.exists()
    project(tmp_path, visible_devices="0", expect_name="3090")
    res = run(tmp_path, "--dry-run", "x")
    assert res.returncode == 3
    assert res.stdout == ""  # nothing for a shell to eval
    assert "would refuse to start: cuda:0 = GPU 0 NVIDIA GeForce RTX 5060 Ti" in res.stderr


@pytest.mark.parametrize("shell,lines", [
    ("posix", ["export CUDA_DEVICE_ORDER='PCI_BUS_ID'", "export CUDA_VISIBLE_DEVICES='1'"]),
    ("powershell", ["$env:CUDA_DEVICE_ORDER = 'PCI_BUS_ID'", "$env:CUDA_VISIBLE_DEVICES = '1'"]),
    ("cmd", ['set "CUDA_DEVICE_ORDER=PCI_BUS_ID"', 'set "CUDA_VISIBLE_DEVICES=1"']),
])
def test_dry_run_prints_lines_that_pin_a_shell(tmp_path, shell, lines):
    project(tmp_path, visible_devices="1")
    res = run(tmp_path, "--dry-run", "--shell", shell)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == lines


def test_the_posix_lines_pin_a_real_shell(tmp_path):
    project(tmp_path, visible_devices="1")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GPUFIX_PROBE": "gpufix.hardware.testing:user_machine",
           "GPUFIX": sys.executable}
    import subprocess

    out = subprocess.run(["sh", "-c", 'eval "$("$GPUFIX" -m gpufix run --dry-run --shell posix)"; '
                          'echo "$CUDA_VISIBLE_DEVICES $CUDA_DEVICE_ORDER"'], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.stdout == "1 PCI_BUS_ID\n", out.stderr


def test_config_flag_and_errors(tmp_path):
    (tmp_path / "elsewhere.toml").write_text('visible-devices = "1"\n', encoding="utf-8")
    res = run(tmp_path, "--config", str(tmp_path / "elsewhere.toml"), sys.executable, "-c", SHOW_ENV)
    assert res.returncode == 0, res.stderr
    assert seen(res)["CUDA_VISIBLE_DEVICES"] == "1"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".git").mkdir()  # a project without a policy
    res = run(tmp_path / "sub", sys.executable, "-c", SHOW_ENV)
    assert res.returncode == 2 and "no visible-devices policy" in res.stderr
    project(tmp_path, visible_devices="1")
    res = run(tmp_path)
    assert res.returncode == 2 and "no command" in res.stderr
    res = run(tmp_path, "no-such-command-gpufix")
    assert res.returncode == 127
    assert res.stderr.strip().endswith("gpufix run: error: no-such-command-gpufix: command not found")


def test_run_and_guard_are_listed_in_the_help(tmp_path):
    res = run_gpufix("--help", cwd=tmp_path)
    assert "run " in res.stdout and "guard " in res.stdout
