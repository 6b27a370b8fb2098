"""Test doubles at the probe seam (used by the tests, and by CI through GPUFIX_PROBE).

`GPUFIX_PROBE=gpufix.hardware.testing:user_machine gpufix check` runs the whole command against
a simulated two-GPU machine (RTX 5060 Ti 16 GB on PCI bus 0, RTX 3090 24 GB on bus 1).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

from gpufix.hardware.model import CudaDevice, CudaReport, GpuInfo, Inventory, uuid_body, uuid_has_prefix

UUID_5060 = "GPU-5a1f0c3e-7d2b-4c1e-9f00-111111111111"
UUID_3090 = "GPU-3b9e2d4f-8a6c-4d2f-8e11-222222222222"
ARCHS_CU128 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]


def user_inventory() -> Inventory:
    return Inventory(
        driver_version="575.64.03",
        cuda_driver_version="12.9",
        gpus=[
            GpuInfo(0, "NVIDIA GeForce RTX 5060 Ti", UUID_5060, "00000000:00:00.0", 16311 * 2**20,
                    15900 * 2**20, "12.0", mig_mode=None),
            GpuInfo(1, "NVIDIA GeForce RTX 3090", UUID_3090, "00000000:01:00.0", 24576 * 2**20,
                    24100 * 2**20, "8.6", mig_mode=None),
        ],
    )


def passing_smoke(n: int = 2048) -> dict:
    return {
        "device": "cuda:0",
        "matmul": {"n": n, "dtype": "float32", "tf32": False, "reference": "cpu float64",
                   "metric": "relative Frobenius error", "rel_error": 3.1e-7, "max_abs_error": 2e-5,
                   "tolerance": 2e-5, "ok": True, "seconds": 0.05, "tflops": 21.5},
        "memory": {"bytes": 256 * 2**20, "patterns": 2, "mismatches": 0, "ok": True, "seconds": 0.01,
                   "bandwidth_gbps": 812.0},
    }


def cuda_device(index: int, gpu: GpuInfo, total_memory: Optional[int] = None) -> CudaDevice:
    major, minor = (int(x) for x in (gpu.compute_capability or "0.0").split("."))
    # torch prints the UUID without "GPU-", and reports a little less memory than NVML
    return CudaDevice(index, gpu.name, uuid_body(gpu.uuid),
                      total_memory if total_memory is not None else gpu.memory_total_bytes - 300 * 2**20,
                      (major, minor))


def cuda_report(devices: Sequence[CudaDevice], arch_list=None, smoke: Any = "pass", env=None) -> CudaReport:
    # this double's assumption: torch's own count before CUDA starts equals the runtime's (what
    # tests/realstack.py checks it against)
    return CudaReport(torch_version="2.7.1+cu128", torch_cuda="12.8",
                      arch_list=list(ARCHS_CU128 if arch_list is None else arch_list),
                      device_count_before_init=len(devices), device_count=len(devices), devices=list(devices),
                      smoke=passing_smoke() if smoke == "pass" else smoke, env=dict(env or {}))


def simulate_cuda(inventory: Inventory, fastest_first: Optional[Sequence[int]] = None) -> Callable:
    """A stand-in for the child: enumerates GPUs the way CUDA does for the mask in `env`.

    `fastest_first`: the NVML indices in CUDA's FASTEST_FIRST ranking (default: PCI order).
    """
    def run(env: Mapping[str, str], timeout: float) -> CudaReport:
        pci = sorted(inventory.gpus, key=lambda g: g.pci_bus_id)
        if env.get("CUDA_DEVICE_ORDER") == "FASTEST_FIRST" and fastest_first is not None:
            by = {g.nvml_index: g for g in inventory.gpus}
            order = [by[i] for i in fastest_first]
        else:
            order = pci
        mask = env.get("CUDA_VISIBLE_DEVICES")
        chosen = []
        for item in (mask.split(",") if mask is not None else [str(i) for i in range(len(order))]):
            item = item.strip()
            if item.isdigit() and int(item) < len(order):
                g = order[int(item)]
            elif item.upper().startswith("GPU-"):
                hits = [g for g in inventory.gpus if uuid_has_prefix(g.uuid, item)]
                g = hits[0] if len(hits) == 1 else None
            else:
                g = None
            if g is None or g in chosen:
                break
            chosen.append(g)
        env_seen = {k: env.get(k) for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")}
        if not chosen:
            return CudaReport(torch_version="2.7.1+cu128", torch_cuda="12.8", unavailable_kind="no-gpu",
                              unavailable="no GPU visible under the mask: torch.cuda.device_count() = 0",
                              env=env_seen)
        return cuda_report([cuda_device(i, g) for i, g in enumerate(chosen)], env=env_seen)

    return run


class FakeProbe:
    """`inventory`: an Inventory or the exception nvml_inventory raises; `cuda`: a CudaReport, an
    exception to raise, or a function (env, timeout) -> CudaReport. Calls are recorded."""

    def __init__(self, inventory: Any = None, cuda: Any = None):
        self.inventory = user_inventory() if inventory is None else inventory
        self.cuda = simulate_cuda(self.inventory) if cuda is None and isinstance(self.inventory, Inventory) else cuda
        self.cuda_calls: list = []

    def nvml_inventory(self) -> Inventory:
        if isinstance(self.inventory, BaseException):
            raise self.inventory
        return self.inventory

    def cuda_probe(self, env: Mapping[str, str], timeout: float) -> CudaReport:
        self.cuda_calls.append((dict(env), timeout))
        if isinstance(self.cuda, BaseException):
            raise self.cuda
        if callable(self.cuda):
            return self.cuda(env, timeout)
        return self.cuda


def user_machine() -> FakeProbe:
    """GPUFIX_PROBE factory: the two-GPU machine, CUDA simulated (FASTEST_FIRST ranks the 3090 first)."""
    inv = user_inventory()
    return FakeProbe(inv, simulate_cuda(inv, fastest_first=[1, 0]))
