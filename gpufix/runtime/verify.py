"""`gpufix run`'s pre-flight check: the GPU the policy's mask exposes is the expected one, read from
NVML through the probe seam (gpufix.hardware.probe), without torch and without starting CUDA.

What it judges is what `gpufix check` judges from NVML: the mask resolves to GPUs CUDA will
enumerate (gpufix.hardware.mask.resolve_mask), and the first of them (CUDA's device 0, a MIG
instance when the mask names one) has `expect-uuid`, contains `expect-name` and has at least
`min-memory-gib` of memory (gpufix.hardware.checks' own expectations).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from gpufix.config import Policy


@dataclasses.dataclass
class Verdict:
    status: str  # "pass" | "fail" (a check failed) | "unavailable" (cannot be verified)
    detail: str  # what cuda:0 is (pass) or why the run is refused


def verify(policy: Policy, probe: Any) -> Verdict:
    from gpufix.hardware.checks import _expectations
    from gpufix.hardware.mask import resolve_mask
    from gpufix.hardware.model import Inventory, ProbeError, ProbeUnavailable, gib

    try:
        inventory = probe.nvml_inventory()
    except ProbeUnavailable as exc:
        return Verdict("unavailable", f"cannot verify the GPU: {exc}")
    except ProbeError as exc:
        return Verdict("fail", f"NVML failed: {exc}")
    assert isinstance(inventory, Inventory)
    if not inventory.gpus:
        return Verdict("unavailable", "NVML sees no NVIDIA GPU")
    mask = f"CUDA_VISIBLE_DEVICES={policy.visible_devices!r}"
    res = resolve_mask(policy.visible_devices, policy.device_order, inventory)
    invalid = next((e for e in res.entries if e.status == "invalid"), None)
    if not res.targets:
        why = f": entry {invalid.entry!r}: {invalid.detail}" if invalid else ""
        return Verdict("fail", f"no GPU visible under {mask}{why}")
    if invalid:
        return Verdict("fail", f"{mask}: entry {invalid.entry!r}: {invalid.detail}")
    if not res.order_known:
        return Verdict("unavailable", f"under CUDA_DEVICE_ORDER={policy.device_order} the index mask {mask} does "
                                      "not say which physical GPU CUDA will pick, and NVML cannot tell; use "
                                      "device-order PCI_BUS_ID or a GPU-UUID mask")
    target = res.targets[0]
    gpu = next(g for g in inventory.gpus if g.nvml_index == target.nvml_index)
    mig = next((d for d in gpu.mig_devices if d.uuid == target.mig_uuid), None) if target.mig_uuid else None
    label = gpu.label + (f" MIG {mig.uuid}" if mig else "")
    uuid = mig.uuid if mig else gpu.uuid
    name = (mig.name or gpu.name) if mig else gpu.name
    total = mig.memory_total_bytes if mig else gpu.memory_total_bytes
    checks = _expectations(policy, f"cuda:0 = {label}", uuid, name, label, True, total,
                           "NVML total" + (" of the MIG instance" if mig else ""), None)
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        return Verdict("fail", "; ".join(c.detail for c in failed))
    judged = [c.name for c in checks if c.status == "pass"]
    size = f", {gib(total)}" if total is not None else ""
    return Verdict("pass", f"cuda:0 = {label}{size}" + (f" ({', '.join(judged)} ok)" if judged else ""))


def policy_problem(policy: Policy) -> Optional[str]:
    """Why `policy` cannot pin a run (a config error), or None."""
    from gpufix.hardware.mask import mask_form_error

    if policy.visible_devices is None:
        where = f" in {policy.source}" if policy.source else " (no gpufix.toml or [tool.gpufix] found)"
        return (f"no visible-devices policy{where}: nothing to pin; run `gpufix init --visible-devices N` "
                "or pass --config FILE")
    return mask_form_error(policy.visible_devices)
