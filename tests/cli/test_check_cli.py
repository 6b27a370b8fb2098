"""`gpufix check` end to end through the click command, with a double injected by GPUFIX_PROBE."""

import json
import shutil

import pytest
from click.testing import CliRunner

from gpufix.config import Policy
from gpufix.hardware.commands import check_command, run_check
from gpufix.hardware.model import CudaReport, ProbeTimeout, ProbeUnavailable
from gpufix.hardware.testing import UUID_3090, FakeProbe, user_inventory

PROBE = {"probe": None}


def make_probe():
    return PROBE["probe"]


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("GPUFIX_PROBE", f"{__name__}:make_probe")
    PROBE["probe"] = FakeProbe()

    def invoke(*args, probe=None):
        if probe is not None:
            PROBE["probe"] = probe
        return CliRunner().invoke(check_command, list(args))

    return invoke


def write_policy(tmp_path, body):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n\n[tool.gpufix]\n" + body, encoding="utf-8")


def test_policy_from_pyproject_passes_text(cli, tmp_path):
    write_policy(tmp_path, 'visible-devices = "1"\nmin-memory-gib = 20\nexpect-name = "RTX 3090"\n')
    res = cli()
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert "pass        mask                CUDA_VISIBLE_DEVICES='1', CUDA_DEVICE_ORDER=PCI_BUS_ID -> " \
           "cuda:0 = GPU 1 NVIDIA GeForce RTX 3090" in lines
    assert any(line.startswith("skip        expect-uuid") for line in lines)
    assert lines[-1] == "status: pass (10 pass, 2 skip)"
    # the GPU table: the 3090 is visible as cuda:0, the 5060 Ti hidden
    row_3090 = next(line for line in lines if "RTX 3090" in line and UUID_3090 in line)
    assert "yes" in row_3090 and "cuda:0" in row_3090
    row_5060 = next(line for line in lines if "RTX 5060 Ti" in line and "GPU-" in line)
    assert " no " in row_5060
    assert "reading the NVML inventory" in res.stderr  # progress on stderr, not stdout
    assert "NVML" not in res.stdout.splitlines()[0]


def test_json_report_matches_the_contract(cli, tmp_path):
    write_policy(tmp_path, 'visible-devices = "1"\n')
    res = cli("--format", "json")
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert (data["tool"], data["schema"], data["status"]) == ("gpufix", 1, "pass")
    assert data["policy"]["visible-devices"] == "1" and data["policy"]["device-order"] == "PCI_BUS_ID"
    assert data["driver_version"] == "575.64.03"
    assert [set(c) for c in data["checks"]] == [{"name", "status", "detail"}] * len(data["checks"])
    gpu1 = data["gpus"][1]
    assert {k: gpu1[k] for k in ("nvml_index", "name", "uuid", "pci_bus_id", "memory_total_bytes",
                                 "memory_free_bytes", "compute_capability", "visible", "cuda_index")} == {
        "nvml_index": 1, "name": "NVIDIA GeForce RTX 3090", "uuid": UUID_3090, "pci_bus_id": "00000000:01:00.0",
        "memory_total_bytes": 24576 * 2**20, "memory_free_bytes": 24100 * 2**20, "compute_capability": "8.6",
        "visible": True, "cuda_index": 0}
    assert (data["gpus"][0]["visible"], data["gpus"][0]["cuda_index"]) == (False, None)
    assert data["gpus"][0]["ecc"] == "n/a"


def test_visible_devices_flag_overrides_and_fails_with_exit_1(cli, tmp_path):
    write_policy(tmp_path, 'visible-devices = "1"\nexpect-name = "3090"\n')
    res = cli("--visible-devices", "0", "--format", "json")
    assert res.exit_code == 1
    data = json.loads(res.stdout)
    assert data["status"] == "fail"
    failed = {c["name"] for c in data["checks"] if c["status"] == "fail"}
    assert failed == {"expect-name", "min-memory"}


def test_quiet_text_shows_only_problems(cli, tmp_path):
    write_policy(tmp_path, 'visible-devices = "0"\nmin-memory-gib = 20\n')
    res = cli("-q")
    assert res.exit_code == 1
    assert res.stdout.splitlines() == [
        "FAIL        min-memory          cuda:0 (NVIDIA GeForce RTX 5060 Ti) has 15.93 GiB (NVML total) "
        "< min-memory-gib = 20 GiB",
        "status: fail (8 pass, 1 fail, 3 skip)",
    ]
    assert res.stderr == ""


def test_missing_gpu_is_exit_3(cli):
    res = cli("--visible-devices", "5", "--format", "json")
    assert res.exit_code == 3
    data = json.loads(res.stdout)
    assert data["status"] == "unavailable"
    assert data["cause"].startswith("no GPU visible under the mask (CUDA_VISIBLE_DEVICES='5'")


@pytest.mark.parametrize("probe,code,cause", [
    (FakeProbe(ProbeUnavailable("no NVIDIA driver: the NVML library was not found")), 3,
     "no NVIDIA driver: the NVML library was not found"),
    (FakeProbe(user_inventory(), CudaReport(unavailable="torch is not installed", unavailable_kind="torch-missing")),
     3, "torch is not installed"),
    (FakeProbe(user_inventory(), CudaReport(unavailable="torch 2.13.0+cpu is a CPU-only build",
                                            unavailable_kind="torch-cpu-only")), 3,
     "torch 2.13.0+cpu is a CPU-only build"),
    (FakeProbe(user_inventory(), ProbeTimeout(5)), 1, None),
])
def test_unavailable_and_timeout_exit_codes(cli, probe, code, cause):
    res = cli("--visible-devices", "1", "--timeout", "5", probe=probe)
    assert res.exit_code == code
    if cause:
        assert res.stdout.splitlines()[-1].endswith(f": {cause}")
        assert "Traceback" not in res.output
    else:
        assert "FAIL        cuda-probe          the CUDA child process did not finish within 5 s" in res.stdout


def test_config_error_is_exit_2(cli, tmp_path):
    write_policy(tmp_path, 'visible-devices = "1"\ndevice-order = "BOGUS"\n')
    res = cli()
    assert res.exit_code == 2 and res.stdout == ""
    assert "device-order" in res.stderr and "PCI_BUS_ID" in res.stderr
    res = cli("--config", "nope.toml")
    assert res.exit_code == 2 and "nope.toml: config file not found" in res.stderr


def test_bad_probe_factory_is_exit_2(cli, monkeypatch):
    monkeypatch.setenv("GPUFIX_PROBE", "no_such_module_xyz:factory")
    res = cli("--visible-devices", "1")
    assert res.exit_code == 2 and "GPUFIX_PROBE" in res.stderr


def test_output_file(cli, tmp_path):
    res = cli("--visible-devices", "1", "--format", "json", "--output", "report.json")
    assert res.exit_code == 0 and res.stdout == ""
    assert json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["status"] == "pass"


def test_run_check_for_apply(capsys, monkeypatch):
    monkeypatch.delenv("GPUFIX_PROBE", raising=False)
    probe = FakeProbe()
    code = run_check(Policy(visible_devices="GPU-3b9e2d4f"), fmt="json", probe=probe)
    assert code == 0
    assert json.loads(capsys.readouterr().out)["status"] == "pass"
    assert probe.cuda_calls[0][0]["CUDA_VISIBLE_DEVICES"] == "GPU-3b9e2d4f"


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has an NVIDIA driver")
def test_real_probe_on_this_machine_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GPUFIX_PROBE", raising=False)
    res = CliRunner().invoke(check_command, ["--visible-devices", "1"])
    assert res.exit_code == 3
    assert res.stdout.splitlines()[-1].startswith("status: unavailable")
    assert "no NVIDIA driver" in res.stdout.splitlines()[-1]
    res = CliRunner().invoke(check_command, ["--visible-devices", "1", "--format", "json"])
    assert res.exit_code == 3
    data = json.loads(res.stdout)
    assert data["status"] == "unavailable" and "no NVIDIA driver" in data["cause"]
    assert data["checks"][0]["name"] == "nvml" and data["checks"][0]["status"] == "unavailable"


def test_importing_the_commands_imports_neither_torch_nor_pynvml():
    import subprocess
    import sys

    code = ("import sys, gpufix.hardware.commands, gpufix.hardware.checks, gpufix.hardware.render, "
            "gpufix.hardware.initcfg, gpufix.hardware.probe, gpufix.hardware.testing; "
            "print(sorted(m for m in ('torch', 'pynvml') if m in sys.modules))")
    from pathlib import Path

    import gpufix

    root = Path(gpufix.__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"
