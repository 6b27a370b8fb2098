"""The checks and the verdict, driven through a double at the probe seam."""

import pytest

from gpufix.config import Policy
from gpufix.hardware.checks import arch_supported, collect
from gpufix.hardware.model import CudaReport, Inventory, ProbeError, ProbeTimeout, ProbeUnavailable
from gpufix.hardware.testing import (
    UUID_3090,
    FakeProbe,
    cuda_device,
    cuda_report,
    simulate_cuda,
    user_inventory,
)


def run(policy, probe=None):
    return collect(policy, probe or FakeProbe(), timeout=30)


def status(report, name):
    return report.check(name).status


def test_policy_1_passes_on_the_users_machine():
    probe = FakeProbe()
    rep = run(Policy(visible_devices="1", expect_name="RTX 3090", expect_uuid=UUID_3090, min_memory_gib=20), probe)
    assert rep.status == "pass" and rep.exit_code == 0
    assert {c.name: c.status for c in rep.checks} == {
        "nvml": "pass", "mask": "pass", "cuda-probe": "pass", "device-count": "pass", "device0-uuid": "pass",
        "expect-uuid": "pass", "expect-name": "pass", "min-memory": "pass", "compute-capability": "pass",
        "smoke-matmul": "pass", "smoke-memory": "pass", "memory-health": "skip"}
    # the child got the mask in its environment from the start
    env, timeout = probe.cuda_calls[0]
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" and timeout == 30
    by = {g["nvml_index"]: g for g in rep.gpus}
    assert (by[1]["visible"], by[1]["cuda_index"]) == (True, 0)
    assert (by[0]["visible"], by[0]["cuda_index"]) == (False, None)
    assert "relative error 3.10e-07 <= tolerance 2e-05" in rep.check("smoke-matmul").detail
    assert "21.50 TFLOP/s" in rep.check("smoke-matmul").detail
    assert "812.0 GB/s" in rep.check("smoke-memory").detail


def test_fastest_first_index_reaches_the_wrong_gpu_and_the_uuid_check_decides():
    inv = user_inventory()
    # CUDA ranks the 3090 fastest: under FASTEST_FIRST, "1" is the 5060 Ti
    probe = FakeProbe(inv, simulate_cuda(inv, fastest_first=[1, 0]))
    rep = run(Policy(visible_devices="1", device_order="FASTEST_FIRST", expect_uuid=UUID_3090), probe)
    assert probe.cuda_calls[0][0]["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"
    assert rep.status == "fail" and rep.exit_code == 1
    assert "do not map to NVML/PCI order" in rep.check("mask").detail
    assert status(rep, "device0-uuid") == "skip"
    assert status(rep, "expect-uuid") == "fail"
    assert "NVIDIA GeForce RTX 5060 Ti" in rep.check("expect-uuid").detail
    # which physical GPU was visible is filled in from the child's UUIDs
    by = {g["nvml_index"]: g for g in rep.gpus}
    assert (by[0]["visible"], by[0]["cuda_index"], by[1]["visible"]) == (True, 0, False)


def test_same_policy_under_pci_order_passes():
    inv = user_inventory()
    probe = FakeProbe(inv, simulate_cuda(inv, fastest_first=[1, 0]))
    rep = run(Policy(visible_devices="1", device_order="PCI_BUS_ID", expect_uuid=UUID_3090), probe)
    assert rep.status == "pass"


def test_child_showing_another_gpu_than_the_mask_names_fails_device0_uuid():
    inv = user_inventory()
    probe = FakeProbe(inv, cuda_report([cuda_device(0, inv.gpus[0])]))
    rep = run(Policy(visible_devices="1"), probe)
    assert status(rep, "device0-uuid") == "fail"
    assert "but the mask names " + UUID_3090 in rep.check("device0-uuid").detail


def test_uuid_mask_and_prefix_pass():
    for mask in (UUID_3090, "GPU-3b9e2d4f"):
        rep = run(Policy(visible_devices=mask, expect_name="3090"))
        assert rep.status == "pass", rep.checks
        assert rep.check("device0-uuid").status == "pass"


def test_wrong_gpu_expect_name_mismatch():
    rep = run(Policy(visible_devices="0", expect_name="RTX 3090", min_memory_gib=10))
    assert rep.status == "fail" and rep.exit_code == 1
    assert rep.check("expect-name").detail == (
        "cuda:0 (NVIDIA GeForce RTX 5060 Ti) does not contain expect-name = 'RTX 3090'")


def test_gpu_too_small():
    rep = run(Policy(visible_devices="0", min_memory_gib=20))
    assert status(rep, "min-memory") == "fail"
    # NVML's total, the figure `gpufix init` writes from (torch's total_memory would be 15.64 GiB)
    assert "has 15.93 GiB (NVML total) < min-memory-gib = 20 GiB" in rep.check("min-memory").detail


def test_missing_gpu_index_5_is_unavailable_and_the_child_is_not_run():
    probe = FakeProbe()
    rep = run(Policy(visible_devices="5"), probe)
    assert rep.status == "unavailable" and rep.exit_code == 3
    assert rep.cause.startswith("no GPU visible under the mask")
    assert "index 5 is past the last GPU (NVML sees 2: 0-1)" in rep.cause
    assert probe.cuda_calls == []


def test_partly_invalid_mask_fails():
    rep = run(Policy(visible_devices="1,5"))
    assert status(rep, "mask") == "fail" and rep.status == "fail"
    assert status(rep, "device-count") == "pass"  # CUDA sees only the 3090, as predicted


def test_nvml_missing():
    rep = run(Policy(visible_devices="1"), FakeProbe(ProbeUnavailable("no NVIDIA driver: NVML not found", "nvml-library")))
    assert rep.status == "unavailable" and rep.cause == "no NVIDIA driver: NVML not found"
    assert all(c.status == "skip" for c in rep.checks[1:])


def test_nvml_error_is_a_failure():
    rep = run(Policy(visible_devices="1"), FakeProbe(ProbeError("NVML error: GPU is lost")))
    assert rep.status == "fail" and rep.check("nvml").detail == "NVML error: GPU is lost"


def test_no_gpus_in_nvml():
    rep = run(Policy(visible_devices="0"), FakeProbe(Inventory("575.64.03", []), cuda=None))
    assert rep.status == "unavailable" and "sees no NVIDIA GPU" in rep.cause


@pytest.mark.parametrize("kind,message", [
    ("torch-missing", "torch is not installed for /usr/bin/python3: pip install 'gpufix[check]'"),
    ("torch-cpu-only", "torch 2.13.0+cpu is a CPU-only build (torch.version.cuda is None)"),
    ("no-gpu", "no GPU visible under the mask: torch.cuda.device_count() = 0"),
])
def test_torch_problems_are_unavailable_but_nvml_facts_still_judged(kind, message):
    probe = FakeProbe(user_inventory(), CudaReport(unavailable=message, unavailable_kind=kind))
    rep = run(Policy(visible_devices="1", expect_name="3090"), probe)
    assert rep.status == "unavailable" and rep.exit_code == 3 and rep.cause == message
    assert status(rep, "expect-name") == "pass"  # from NVML
    assert "(NVML; CUDA not checked)" in rep.check("expect-name").detail
    # and a wrong GPU is still a failure, even without torch
    rep = run(Policy(visible_devices="0", expect_name="3090"), probe)
    assert rep.status == "fail"


def test_child_timeout_is_a_failure():
    rep = run(Policy(visible_devices="1"), FakeProbe(user_inventory(), ProbeTimeout(30)))
    assert rep.status == "fail" and status(rep, "cuda-probe") == "fail"
    assert "did not finish within 30 s" in rep.check("cuda-probe").detail
    assert status(rep, "smoke-matmul") == "skip"


def test_unsupported_compute_capability_and_failed_smoke():
    inv = user_inventory()
    smoke = {"matmul": {"n": 64, "rel_error": 3e-4, "tolerance": 2e-5, "ok": False, "tflops": 1.0},
             "memory": {"ok": False, "error": "RuntimeError: CUDA error: no kernel image is available"}}
    rep_cuda = cuda_report([cuda_device(0, inv.gpus[0])], arch_list=["sm_50", "sm_80", "sm_86", "sm_90"], smoke=smoke)
    rep = run(Policy(visible_devices="0", min_memory_gib=8), FakeProbe(inv, rep_cuda))
    assert status(rep, "compute-capability") == "fail"
    assert "is sm_120, which torch 2.7.1+cu128 was not built for" in rep.check("compute-capability").detail
    assert status(rep, "smoke-matmul") == "fail" and "3.00e-04 > tolerance 2e-05" in rep.check("smoke-matmul").detail
    assert status(rep, "smoke-memory") == "fail" and "no kernel image" in rep.check("smoke-memory").detail


def test_arch_supported_rules():
    assert arch_supported((8, 6), ["sm_80"]) == (
        True, "sm_80 cubin (binary compatible: torch's table lets 8.0 code run on 8.6)")
    assert arch_supported((8, 6), ["sm_86"]) == (True, "sm_86 cubin")
    assert arch_supported((12, 0), ["sm_80", "sm_90", "compute_90"])[0] is True  # PTX JIT
    assert arch_supported((12, 0), ["sm_80", "sm_90"]) == (False, "")
    assert arch_supported((9, 0), ["sm_90a"])[0] is True
    assert arch_supported((8, 9), ["sm_90a", "compute_90"]) == (False, "")


def test_memory_health_reports_na_and_real_counts():
    inv = user_inventory()
    inv.gpus[1].ecc = {"mode": "enabled", "volatile_corrected": 0, "volatile_uncorrected": 2}
    inv.gpus[1].remapped_rows = {"correctable": 0, "uncorrectable": 1, "pending": False, "failure": True}
    rep = run(Policy(visible_devices="1"), FakeProbe(inv))
    assert status(rep, "memory-health") == "fail"
    assert "2 uncorrected ECC errors" in rep.check("memory-health").detail
    assert "row remapping failed" in rep.check("memory-health").detail
    rep = run(Policy(visible_devices="0", min_memory_gib=1))
    assert rep.check("memory-health").detail == (
        "ECC, retired pages, remapped rows: n/a (NVML: not supported on NVIDIA GeForce RTX 5060 Ti)")
    assert rep.status == "pass"


def test_device_count_mismatch_fails():
    inv = user_inventory()
    rep = run(Policy(visible_devices="1"),
              FakeProbe(inv, cuda_report([cuda_device(0, inv.gpus[1]), cuda_device(1, inv.gpus[0])])))
    assert status(rep, "device-count") == "fail"
    assert rep.check("device-count").detail == (
        "torch.cuda.device_count() = 2 before CUDA starts (torch's own parse of the mask) and 2 after "
        "torch.cuda.init() (the CUDA runtime), but the mask (CUDA_VISIBLE_DEVICES='1', CUDA_DEVICE_ORDER=PCI_BUS_ID) "
        "should give 1 CUDA device(s) and torch's parse should give 1 (torch counted the indices against NVML's "
        "GPU count)")
