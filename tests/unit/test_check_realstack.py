"""`gpufix check` against the real-stack double (tests/realstack.py): every case of issue 15's "Why".

The double plugs in at the probe seam only; gpufix's NVML reader, child code, smoke kernel (on CPU
torch), checks and renderers are the real ones.
"""

import json

import pytest
from click.testing import CliRunner

from gpufix.config import Policy
from gpufix.hardware import testing as olddouble
from gpufix.hardware.checks import collect
from gpufix.hardware.commands import check_command, init_command, run_check
from gpufix.hardware.mask import mask_form_error, torch_count_before_init, torch_parse_visible_devices
from gpufix.hardware.probe import child_env
from gpufix.hardware.render import report_json, render_text

pytest.importorskip("torch")

from realstack import (  # noqa: E402
    GPU_IS_LOST,
    MIB,
    NO_PERMISSION,
    NOT_SUPPORTED,
    UNINITIALIZED,
    UUID_3090,
    UUID_5060,
    FakeNvml,
    Gpu,
    RealStackProbe,
    a100_80gb,
    cuda_enumeration,
    device_count_nvml,
    dgx_spark,
    jetson_orin,
    parse_visible_devices,
    user_machine,
)


@pytest.fixture(autouse=True)
def shell(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    monkeypatch.delenv("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", raising=False)
    monkeypatch.delenv("GPUFIX_PROBE", raising=False)


def check(policy, machine):
    return collect(policy, RealStackProbe(machine), timeout=30)


def statuses(rep):
    return {c.name: c.status for c in rep.checks}


# ---- NVML: one GPU NVML cannot fully read never fails the inventory -----------------------------
def test_memory_info_not_supported_is_na_and_the_cuda_side_still_runs():
    # DGX Spark / GB10: nvmlDeviceGetMemoryInfo -> NVML_ERROR_NOT_SUPPORTED
    rep = check(Policy(visible_devices="0", min_memory_gib=100), dgx_spark())
    assert rep.status == "pass", render_text(rep)
    assert rep.check("nvml").detail == "driver 580.95.05 (CUDA 13.0), 1 GPU(s); n/a: GPU 0 memory"
    assert rep.check("cuda-probe").status == "pass"
    # with no NVML figure, torch's total_memory is compared, and the detail says so
    assert rep.check("min-memory").detail == (
        "cuda:0 (NVIDIA GB10) has 125.51 GiB (torch total_memory; NVML reports no memory size for this GPU) "
        ">= min-memory-gib = 100 GiB")
    gpu = rep.gpus[0]
    assert (gpu["memory_total_bytes"], gpu["memory_free_bytes"], gpu["state"]) == (None, None, "ok")
    assert gpu["errors"] == {"memory": "Not Supported (NVML_ERROR_NOT_SUPPORTED)"}
    row = next(line for line in render_text(rep).splitlines() if "NVIDIA GB10" in line and "GPU-9b10" in line)
    assert row.split()[5:7] == ["n/a", "n/a"]  # memory, free


def test_a_gpu_nvml_may_not_open_is_inaccessible_and_indices_count_the_others():
    # nvmlDeviceGetCount_v2 counts GPU 0; its handle lookup answers NO_PERMISSION
    m = user_machine()
    m.gpus[0].nvml_errors = {"nvmlDeviceGetHandleByIndex": NO_PERMISSION}
    rep = check(Policy(visible_devices="0", expect_name="3090", expect_uuid=UUID_3090), m)
    assert rep.status == "pass", render_text(rep)
    assert rep.check("nvml").detail == ("driver 575.64.03 (CUDA 12.9), 2 GPU(s); inaccessible: GPU 0 "
                                        "(Insufficient Permissions (NVML_ERROR_NO_PERMISSION))")
    # CUDA cannot open GPU 0 either: index 0 is the 3090, and both counts agree on 1
    assert "cuda:0 = GPU 1 NVIDIA GeForce RTX 3090" in rep.check("mask").detail
    assert rep.check("device-count").status == "pass"
    assert rep.gpus[0]["state"] == "inaccessible" and rep.gpus[0]["name"] is None
    assert any("NVML GPU 0 is inaccessible" in n for n in rep.notes)
    row = next(line for line in render_text(rep).splitlines() if line.strip().startswith("0 "))
    assert "inaccessible" in row and "Insufficient Permissions" in row


def test_torch_counts_an_inaccessible_gpu_before_cuda_starts_and_the_check_predicts_it():
    m = user_machine()
    m.gpus[0].nvml_errors = {"nvmlDeviceGetHandleByIndex": NO_PERMISSION}
    rep = check(Policy(visible_devices="0,1"), m)
    # CUDA sees one GPU (index 1 is past the end); torch's NVML count (2) lets "0,1" through
    assert rep.check("mask").status == "fail" and "index 1 is past the last GPU" in rep.check("mask").detail
    assert rep.check("device-count").status == "pass"
    assert rep.check("device-count").detail.startswith(
        "torch.cuda.device_count() = 2 before CUDA starts (torch's own parse of the mask) and 1 after "
        "torch.cuda.init() (the CUDA runtime)")
    assert any("changes from 2 to 1 when CUDA starts" in n for n in rep.notes)


@pytest.mark.parametrize("code,word", [(GPU_IS_LOST, "GPU is lost"), (UNINITIALIZED, "Uninitialized")])
def test_other_per_call_errors(code, word):
    m = user_machine()
    m.gpus[0].nvml_errors = {"nvmlDeviceGetMemoryInfo": code, "nvmlDeviceGetName": code}
    rep = check(Policy(visible_devices="1"), m)
    g0 = rep.gpus[0]
    assert g0["name"] is None and word in g0["errors"]["name"] and g0["uuid"] == UUID_5060
    assert rep.check("nvml").status == "pass"
    if code == UNINITIALIZED:  # one call failing only blanks that field
        assert g0["state"] == "ok" and rep.status == "pass", render_text(rep)
    else:  # a lost GPU is inaccessible as a whole: CUDA cannot enumerate it, so index 1 names nothing
        assert g0["state"] == "inaccessible" and rep.status == "unavailable"
        assert rep.cause.endswith("entry '1': index 1 is past the last GPU (NVML sees 1: 0-0, not counting 1 "
                                  "inaccessible); CUDA stops reading the mask here")


def test_nvml_errors_are_pynvmls_real_classes():
    import pynvml

    nv = FakeNvml(dgx_spark())
    nv.nvmlInit()
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nv.nvmlDeviceGetMemoryInfo(nv.nvmlDeviceGetHandleByIndex(0))
    nv.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nv.nvmlDeviceGetCount()


# ---- the mask as torch reads it ----------------------------------------------------------------
@pytest.mark.parametrize("mask,torch_reads", [
    (None, list(range(64))),
    ("1", [1]),
    ("1,0", [1, 0]),
    ("1,1", []),  # the same ordinal twice: no device at all
    ("1gpu2,2ampere", [1, 2]),  # strtoul-like
    ("0,-1,1", [0]),
    ("GPU-3b9e,0", ["GPU-3b9e"]),  # mixed: stops at the first non-UUID entry
    ("0,GPU-3b9e", [0]),
    ("GPU-a,GPU-a", []),
    ("GPU-a, GPU-b", ["GPU-a"]),  # UUID entries are not stripped
    ("gpu-3b9e", []),  # the prefix is case-sensitive
    ("MIG-x,MIG-y", ["MIG-x", "MIG-y"]),
])
def test_gpufix_models_torchs_parse_exactly(mask, torch_reads):
    assert parse_visible_devices(mask) == torch_reads  # the double, written from torch's source
    assert torch_parse_visible_devices(mask) == torch_reads  # gpufix's model of it


@pytest.mark.parametrize("mask", ["1", "0", "0,1", "1,0", "5", "1,5", UUID_3090, "GPU-3b9e", "GPU-5a1f,GPU-3b9e",
                                  "GPU-3b9e,GPU-3b9e2d4f", "GPU-dead", "GPU-3B9E", "GPU-3b9e,0", "0,GPU-3b9e", None])
def test_gpufix_predicts_torchs_count_before_init(mask):
    m = user_machine()
    inv = RealStackProbe(m).nvml_inventory()
    nv = FakeNvml(m)
    real = device_count_nvml(nv, mask)
    predicted, _why = torch_count_before_init(mask, inv)
    assert predicted == (real if real >= 0 else None)


@pytest.mark.parametrize("mask,reason", [
    ("GPU-3b9e,0", "mixes GPU UUID entries and index entries"),
    ("0,GPU-3b9e", "mixes index entries and GPU UUID entries"),
    ("GPU-3B9E2D4F", "not in NVML's spelling"),
])
def test_masks_torch_and_cuda_read_differently_are_config_errors(mask, reason, capsys):
    m = user_machine()
    probe = RealStackProbe(m)
    # what the real stack does with it: torch's count before init and the runtime's disagree
    env = child_env(mask, "PCI_BUS_ID")
    rep = probe.cuda_probe(env, 30)
    assert rep.device_count_before_init != rep.device_count
    # so the check refuses it as a config error (exit 2), naming the reason, before probing anything
    probe.cuda_envs.clear()
    assert run_check(Policy(visible_devices=mask), probe=probe) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpufix check: config error: ") and reason in err
    assert probe.cuda_envs == []
    assert mask_form_error(mask) is not None


def test_mixed_mask_detail_says_where_torch_stops():
    assert mask_form_error("GPU-3b9e,0") == (
        "visible-devices = 'GPU-3b9e,0' mixes GPU UUID entries and index entries: torch (torch.cuda.device_count() "
        "before CUDA starts) reads it as a list of GPU UUID entries and stops at '0', while the CUDA driver reads "
        "every entry; use one form (all indices, or all GPU-UUIDs)")
    assert mask_form_error("GPU-3B9E") == (
        "visible-devices entry 'GPU-3B9E' is not in NVML's spelling: torch matches UUIDs case-sensitively against "
        "NVML's lower-case ones, so before CUDA starts it sees no GPU; write 'GPU-3b9e'")
    assert mask_form_error("GPU-3b9e,GPU-5a1f") is None and mask_form_error("1,0") is None


def test_init_refuses_a_mixed_mask(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(init_command, ["--visible-devices", "GPU-3b9e,0"])
    assert res.exit_code == 2 and "mixes GPU UUID entries and index entries" in res.stderr
    assert not (tmp_path / "pyproject.toml").exists()


def test_two_prefixes_of_one_gpu_fail_the_mask_and_the_counts_are_predicted():
    rep = check(Policy(visible_devices="GPU-3b9e,GPU-3b9e2d4f"), user_machine())
    assert rep.check("mask").status == "fail"
    assert "torch.cuda.device_count() reads a mask naming a GPU twice as no GPU at all" in rep.check("mask").detail
    # torch: 0 before init (duplicates give the empty set); CUDA: 1 after
    assert rep.check("device-count").status == "pass"
    assert rep.cuda.device_count_before_init == 0 and rep.cuda.device_count == 1


# ---- lazy CUDA init errors keep the partial result -------------------------------------------------
def test_driver_too_old_keeps_torch_version_env_and_counts():
    m = a100_80gb(driver="470.256.02", driver_cuda=11040)
    rep = check(Policy(visible_devices="0", expect_name="A100", min_memory_gib=79), m)
    assert rep.status == "fail"
    detail = rep.check("cuda-probe").detail
    assert "torch.cuda.init() failed: RuntimeError: The NVIDIA driver on your system is too old (found version 11040)" \
        in detail
    assert detail.endswith("the driver (470.256.02) supports CUDA 11.4, an older major version than the CUDA 12.8 this "
                           "torch was built for: update the NVIDIA driver, or install a torch build for CUDA 11.x")
    data = report_json(rep)
    assert data["cuda"]["torch_version"] == "2.7.1+cu128" and data["cuda"]["device_count_before_init"] == 1
    assert data["cuda"]["env"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert data["cuda"]["init_error"].startswith("RuntimeError: The NVIDIA driver on your system is too old")
    # the policy's GPU is still judged from NVML
    assert statuses(rep)["expect-name"] == "pass" and statuses(rep)["min-memory"] == "pass"


def test_a_newer_minor_build_runs_on_an_older_minor_driver():
    # CUDA minor version compatibility: a cu128 torch on a CUDA 12.4 driver initialises
    rep = check(Policy(visible_devices="0", min_memory_gib=79), a100_80gb(driver_cuda=12040))
    assert rep.status == "pass", render_text(rep)


def test_a_child_that_breaks_part_way_keeps_what_it_read(monkeypatch):
    from gpufix.hardware import smoke

    def boom(*a, **kw):
        raise KeyboardInterrupt  # not an Exception: escapes probe() like a crash would

    monkeypatch.setattr(smoke, "run_smoke", boom)
    rep = check(Policy(visible_devices="1"), user_machine())
    assert rep.check("cuda-probe").status == "fail"
    assert rep.check("cuda-probe").detail.endswith("but the child broke part-way: KeyboardInterrupt")
    assert rep.cuda.torch_version == "2.7.1+cu128" and [d.name for d in rep.cuda.devices] == ["NVIDIA GeForce RTX 3090"]


# ---- torch without uuid ------------------------------------------------------------------------
def test_torch_without_uuid_judges_expect_uuid_from_nvml():
    m = user_machine(torch_has_uuid=False)
    rep = check(Policy(visible_devices="1", expect_uuid=UUID_3090), m)
    assert rep.status == "pass", render_text(rep)
    assert rep.check("device0-uuid").status == "skip"
    assert rep.check("expect-uuid").detail.endswith(
        "(torch 2.7.1+cu128 reports no device UUIDs: judged on the GPU the mask names "
        "(GPU 1 NVIDIA GeForce RTX 3090 (00000000:01:00.0), from NVML))")
    rep = check(Policy(visible_devices="0", expect_uuid=UUID_3090), m)
    assert rep.check("expect-uuid").status == "fail"


def test_init_gpu_then_check_on_a_torch_without_uuid_passes(tmp_path, monkeypatch):
    import realstack

    m = user_machine(torch_has_uuid=False)
    monkeypatch.setattr(realstack, "CURRENT", m, raising=False)
    monkeypatch.setenv("GPUFIX_PROBE", "test_check_realstack:current_probe")
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(init_command, ["--gpu", "3090", "-q"]).exit_code == 0
    res = CliRunner().invoke(check_command, ["--format", "json"])
    assert res.exit_code == 0, res.stdout
    assert {c["name"]: c["status"] for c in json.loads(res.stdout)["checks"]}["expect-uuid"] == "pass"


def current_probe():
    import realstack

    return RealStackProbe(realstack.CURRENT)


# ---- compute capability: torch's family table ----------------------------------------------------
def test_integrated_orin_is_not_served_by_sm80_sm86():
    rep = check(Policy(visible_devices="0", min_memory_gib=1), jetson_orin())
    assert rep.check("compute-capability").status == "fail"
    assert "8.7 is an integrated GPU, which code built for 8.0, 8.6 does not serve" in \
        rep.check("compute-capability").detail
    # and the real stack agrees: the kernels do not launch
    assert "no kernel image is available" in rep.check("smoke-matmul").detail
    rep = check(Policy(visible_devices="0", min_memory_gib=1), jetson_orin(arch_list=["sm_80", "sm_87"]))
    assert rep.status == "pass", render_text(rep)


def test_arch_specific_ptx_is_not_forward_compatible():
    m = user_machine(arch_list=["sm_80", "sm_90a", "compute_90a"])
    rep = check(Policy(visible_devices="0", min_memory_gib=1), m)  # the 5060 Ti, 12.0
    assert rep.check("compute-capability").status == "fail"
    assert "arch-specific code (sm_XXa / compute_XXa) runs only on exactly that capability" in \
        rep.check("compute-capability").detail
    assert rep.check("smoke-matmul").status == "fail"
    m = user_machine(arch_list=["sm_80", "compute_90"])
    rep = check(Policy(visible_devices="0", min_memory_gib=1), m)
    assert rep.status == "pass" and "compute_90 PTX" in rep.check("compute-capability").detail


# ---- TF32 ------------------------------------------------------------------------------------------
def test_tf32_override_in_the_shell_does_not_reach_the_child(monkeypatch):
    monkeypatch.setenv("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "1")
    probe = RealStackProbe(user_machine(tf32_override_wins=True))
    rep = collect(Policy(visible_devices="1"), probe, timeout=30)
    assert probe.cuda_envs[0]["TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"] == "0"
    assert rep.check("smoke-matmul").status == "pass"
    assert "TF32 off (torch reads back allow_tf32=False" in rep.check("smoke-matmul").detail
    assert rep.cuda.precision["tf32"] is False and rep.cuda.env["TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"] == "0"


def test_without_the_pin_the_override_fails_the_smoke_test_and_the_report_says_tf32_on():
    from gpufix.hardware.checks import evaluate

    probe = RealStackProbe(user_machine(tf32_override_wins=True), smoke_n=512)
    env = dict(child_env("1", "PCI_BUS_ID"), TORCH_ALLOW_TF32_CUBLAS_OVERRIDE="1")
    cuda = probe.cuda_probe(env, 30)
    rep = evaluate(Policy(visible_devices="1"), probe.nvml_inventory(), cuda)
    c = rep.check("smoke-matmul")
    assert c.status == "fail"
    assert "TF32 ON although the kernel asked for full fp32 (torch reads back allow_tf32=True, " \
           "fp32_precision='tf32', TORCH_ALLOW_TF32_CUBLAS_OVERRIDE='1' in the child)" in c.detail
    err = cuda.smoke["matmul"]["rel_error"]
    assert 1e-4 < err < 1e-3  # TF32-sized, as issue 15 saw (~2.6e-4)


# ---- memory figure: init and check agree --------------------------------------------------------
def test_init_figure_passes_with_and_without_torch(tmp_path, monkeypatch):
    import realstack

    m = a100_80gb()
    monkeypatch.setattr(realstack, "CURRENT", m, raising=False)
    monkeypatch.setenv("GPUFIX_PROBE", "test_check_realstack:current_probe")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(init_command, ["--gpu", "A100"])
    assert res.exit_code == 0
    text = (tmp_path / "pyproject.toml").read_text()
    assert ("min-memory-gib = 79  # NVML total of the NVIDIA A100-SXM4-80GB (80.00 GiB) in whole GiB less a 1 GiB "
            "margin; gpufix check compares NVML's total too\n") in text
    with_torch = json.loads(CliRunner().invoke(check_command, ["--format", "json"]).stdout)
    m.torch_cuda = None  # the same machine with a CPU-only torch
    without = json.loads(CliRunner().invoke(check_command, ["--format", "json"]).stdout)
    mm = [next(c for c in d["checks"] if c["name"] == "min-memory") for d in (with_torch, without)]
    assert [c["status"] for c in mm] == ["pass", "pass"]
    assert "80.00 GiB (NVML total)" in mm[0]["detail"] and "80.00 GiB (NVML total)" in mm[1]["detail"]
    # 79.5 GiB: above torch's 81,153 MiB (79.25 GiB) but below NVML's 80: the verdict no longer
    # depends on whether torch ran
    for d in (True, False):
        m.torch_cuda = "12.8" if d else None
        rep = check(Policy(visible_devices="0", min_memory_gib=79.5), m)
        assert rep.check("min-memory").status == "pass"


def test_mig_memory_is_the_instances():
    rep = check(Policy(visible_devices="MIG-bbbb", min_memory_gib=39), a100_80gb(mig=True))
    assert rep.status == "pass", render_text(rep)
    assert "39.25 GiB (NVML total of the MIG instance)" in rep.check("min-memory").detail
    assert rep.cuda.device_count_before_init == 1  # torch skips MIG parsing and asks the runtime
    assert rep.check("device0-uuid").status == "pass"


# ---- CUDA_DEVICE_ORDER in the shell ---------------------------------------------------------------
def test_missing_cuda_device_order_in_the_shell_is_noted(monkeypatch):
    monkeypatch.delenv("CUDA_DEVICE_ORDER")
    rep = check(Policy(visible_devices="1"), user_machine())
    assert rep.status == "pass"
    assert any(n.startswith("this shell has no CUDA_DEVICE_ORDER: a program started from it") for n in rep.notes)
    # and what the note warns about is real: in FASTEST_FIRST order, "1" is the 5060 Ti
    env = {"CUDA_VISIBLE_DEVICES": "1"}
    assert [g.name for g, _ in cuda_enumeration(user_machine(), env)] == ["NVIDIA GeForce RTX 5060 Ti"]
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    assert not any("CUDA_DEVICE_ORDER" in n for n in check(Policy(visible_devices="1"), user_machine()).notes)
    rep = check(Policy(visible_devices="0"), dgx_spark())  # one GPU: the order cannot matter
    assert not any("CUDA_DEVICE_ORDER" in n for n in rep.notes)


# ---- the first double's built-in assumptions, checked against this one ----------------------------
VALID_MASKS = ["1", "0", "0,1", "1,0", "1,5", UUID_3090, "GPU-3b9e", "GPU-5a1f,GPU-3b9e", None]


@pytest.mark.parametrize("mask", VALID_MASKS)
@pytest.mark.parametrize("order", ["PCI_BUS_ID", "FASTEST_FIRST"])
def test_old_double_agrees_with_the_real_stack_on_valid_masks(mask, order):
    env = child_env(mask, order)
    old = olddouble.simulate_cuda(olddouble.user_inventory(), fastest_first=[1, 0])(env, 30)
    new = RealStackProbe(user_machine()).cuda_probe(env, 30)
    assert [(d.index, d.uuid) for d in old.devices] == [(d.index, d.uuid) for d in new.devices]
    # its assumption that torch's count before CUDA starts equals the runtime's holds here
    assert old.device_count_before_init == old.device_count == new.device_count == new.device_count_before_init


@pytest.mark.parametrize("mask", ["GPU-3b9e,0", "0,GPU-3b9e", "GPU-3B9E"])
def test_old_double_assumption_fails_exactly_where_gpufix_refuses_the_mask(mask):
    env = child_env(mask, "PCI_BUS_ID")
    old = olddouble.simulate_cuda(olddouble.user_inventory())(env, 30)
    new = RealStackProbe(user_machine()).cuda_probe(env, 30)
    assert old.device_count_before_init == old.device_count  # the old double's assumption
    assert new.device_count_before_init != new.device_count  # the real stack's behaviour
    assert mask_form_error(mask) is not None  # hence: a config error, never a contradictory report


def test_old_double_assumptions_the_real_stack_does_not_share():
    old_inv = olddouble.user_inventory()
    new_inv = RealStackProbe(user_machine()).nvml_inventory()
    # the old double never has an NVML error; the real stack's GeForce boards answer NOT_SUPPORTED
    assert all(not g.errors for g in old_inv.gpus + new_inv.gpus)
    assert [(g.name, g.uuid, g.pci_bus_id, g.memory_total_bytes) for g in old_inv.gpus] == \
        [(g.name, g.uuid, g.pci_bus_id, g.memory_total_bytes) for g in new_inv.gpus]
    # torch's total_memory is below NVML's in both; the check compares NVML's in both
    new = RealStackProbe(user_machine()).cuda_probe(child_env("1", "PCI_BUS_ID"), 30)
    assert new.devices[0].total_memory < new_inv.gpus[1].memory_total_bytes
    nvml_gb10 = RealStackProbe(dgx_spark()).nvml_inventory().gpus[0]
    assert nvml_gb10.memory_total_bytes is None  # what the old double's GpuInfo could not express


def test_inventory_of_a_gpu_with_every_call_failing_is_still_an_inventory():
    m = user_machine()
    m.gpus.append(Gpu("NVIDIA H100", "GPU-h100h100-0000-4000-8000-000000000003", "00000000:02:00.0",
                      81559 * MIB, 80000 * MIB, (9, 0),
                      nvml_errors={fn: NOT_SUPPORTED for fn in ("nvmlDeviceGetName", "nvmlDeviceGetUUID",
                                                                "nvmlDeviceGetPciInfo", "nvmlDeviceGetMemoryInfo",
                                                                "nvmlDeviceGetCudaComputeCapability")}))
    inv = RealStackProbe(m).nvml_inventory()
    h = inv.gpus[2]
    assert (h.name, h.uuid, h.pci_bus_id, h.memory_total_bytes, h.compute_capability) == (None,) * 5
    assert h.state == "ok" and len(h.errors) == 5
    rep = check(Policy(visible_devices="1"), m)
    assert rep.check("nvml").status == "pass"
    assert "n/a: GPU 2 compute_capability, memory, name, pci_bus_id, uuid" in rep.check("nvml").detail


def test_the_double_plugs_in_at_the_probe_seam_only():
    from gpufix.hardware.probe import Probe

    probe = RealStackProbe(user_machine())
    assert isinstance(probe, Probe)
    assert {n for n in dir(probe) if not n.startswith("_")} >= {"nvml_inventory", "cuda_probe"}


def test_init_on_a_gpu_without_an_nvml_memory_size_writes_no_min_memory(tmp_path, monkeypatch):
    import realstack

    monkeypatch.setattr(realstack, "CURRENT", dgx_spark(), raising=False)
    monkeypatch.setenv("GPUFIX_PROBE", "test_check_realstack:current_probe")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(init_command, ["--gpu", "GB10"])
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "pyproject.toml").read_text() == (
        '[tool.gpufix]\nvisible-devices = "0"\ndevice-order = "PCI_BUS_ID"\nexpect-name = "NVIDIA GB10"\n'
        'expect-uuid = "GPU-9b10a0b1-0000-4000-8000-0000000000b1"\n')
    assert "NVML reports no memory size for this GPU (n/a): no min-memory-gib written" in res.stderr


def test_init_lists_an_inaccessible_gpu_and_pins_by_cudas_index(tmp_path, monkeypatch):
    import realstack

    m = user_machine()
    m.gpus[0].nvml_errors = {"nvmlDeviceGetHandleByIndex": NO_PERMISSION}
    monkeypatch.setattr(realstack, "CURRENT", m, raising=False)
    monkeypatch.setenv("GPUFIX_PROBE", "test_check_realstack:current_probe")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(init_command, ["--gpu", "3090"])
    assert res.exit_code == 0, res.stderr
    # CUDA cannot open GPU 0, so the 3090 is CUDA's index 0
    assert 'visible-devices = "0"\n' in (tmp_path / "pyproject.toml").read_text()
    assert "GPU 0: inaccessible (Insufficient Permissions (NVML_ERROR_NO_PERMISSION)); CUDA cannot use it" in res.stdout
    res = CliRunner().invoke(check_command, ["--format", "json"])
    assert res.exit_code == 0, res.stdout


@pytest.mark.parametrize("mask", ["1,1", f"{UUID_3090},{UUID_3090}"])
def test_the_same_entry_twice_is_a_config_error_because_torch_reads_no_gpu(mask, tmp_path, monkeypatch):
    import realstack

    m = user_machine()
    # the real stack: torch's parse gives the empty set, so device_count() is 0 before CUDA starts
    assert RealStackProbe(m).cuda_probe(child_env(mask, "PCI_BUS_ID"), 30).device_count_before_init == 0
    monkeypatch.setattr(realstack, "CURRENT", m, raising=False)
    monkeypatch.setenv("GPUFIX_PROBE", "test_check_realstack:current_probe")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(check_command, ["--visible-devices", mask])
    assert res.exit_code == 2 and res.stdout == ""
    assert "names the same GPU twice" in res.stderr
