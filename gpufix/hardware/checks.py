"""The checks and the verdict: pure functions of the policy and the probe's data.

`collect` is the only function here that calls the probe; `evaluate` turns what it got into a
`Report` (a list of checks with pass / fail / skip / unavailable and the overall status).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Optional

from gpufix.config import Policy
from gpufix.hardware.mask import Resolution, resolve_mask
from gpufix.hardware.model import (
    NA,
    CudaReport,
    Inventory,
    ProbeError,
    ProbeUnavailable,
    gib,
    same_uuid,
    uuid_has_prefix,
)
from gpufix.hardware.probe import child_env

EXIT_CODES = {"pass": 0, "fail": 1, "unavailable": 3}


@dataclasses.dataclass
class Check:
    name: str
    status: str  # "pass" | "fail" | "skip" | "unavailable"
    detail: str

    def to_json(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclasses.dataclass
class Report:
    status: str  # "pass" | "fail" | "unavailable"
    cause: Optional[str]
    policy: Policy
    inventory: Optional[Inventory]
    resolution: Optional[Resolution]
    cuda: Optional[CudaReport]
    checks: list
    notes: list
    gpus: list  # JSON-ready dicts, NVML index order

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def check(self, name: str) -> Optional[Check]:
        return next((c for c in self.checks if c.name == name), None)


def verdict(checks: list) -> str:
    """Any failed check: "fail"; else anything unavailable: "unavailable"; else "pass"."""
    statuses = {c.status for c in checks}
    if "fail" in statuses:
        return "fail"
    if "unavailable" in statuses:
        return "unavailable"
    return "pass"


# --- compute capability -------------------------------------------------------------------
_ARCH_RE = re.compile(r"^(sm|compute)_(\d+)([a-z]?)$")


def arch_supported(capability: tuple, arch_list: list) -> tuple:
    """(supported?, how) for a device of compute capability (major, minor) and torch's arch list.

    A cubin `sm_XY` runs on major X with minor >= Y (`sm_XYa`: exactly X.Y); PTX `compute_XY` is
    JIT-compiled for any capability >= X.Y.
    """
    major, minor = int(capability[0]), int(capability[1])
    cap = major * 10 + minor
    best = None
    for arch in arch_list:
        m = _ARCH_RE.match(arch.strip())
        if not m:
            continue
        kind, num, suffix = m.group(1), int(m.group(2)), m.group(3)
        a_major, a_minor = divmod(num, 10)
        if kind == "sm":
            if suffix == "a" and (a_major, a_minor) != (major, minor):
                continue
            if a_major == major and a_minor <= minor:
                if (a_major, a_minor) == (major, minor):
                    return True, f"{arch} cubin"
                best = best or (True, f"{arch} cubin (binary compatible within compute capability {major}.x)")
        elif kind == "compute" and num <= cap and best is None:
            best = (True, f"{arch} PTX (JIT-compiled at first use)")
    return best or (False, "")


# --- orchestration ------------------------------------------------------------------------
def collect(policy: Policy, probe: Any, timeout: float = 120.0,
            progress: Optional[Callable[[str], None]] = None) -> Report:
    """Ask the probe (NVML, then the CUDA child when the mask shows a GPU) and evaluate."""
    say = progress or (lambda _msg: None)
    notes = []
    shell = os.environ.get("CUDA_VISIBLE_DEVICES")
    if shell is not None and shell != policy.visible_devices:
        notes.append(f"this shell has CUDA_VISIBLE_DEVICES={shell!r}; the check uses the policy's "
                     f"value {policy.visible_devices!r} instead")
    say("reading the NVML inventory")
    try:
        inventory: Any = probe.nvml_inventory()
    except (ProbeUnavailable, ProbeError) as exc:
        inventory = exc
    cuda: Any = None
    if isinstance(inventory, Inventory) and inventory.gpus:
        res = resolve_mask(policy.visible_devices, policy.device_order, inventory)
        if res.targets:
            env = child_env(policy.visible_devices, policy.device_order)
            shown = "unset" if policy.visible_devices is None else repr(policy.visible_devices)
            say(f"running the CUDA probe in a child process (CUDA_DEVICE_ORDER={policy.device_order}, "
                f"CUDA_VISIBLE_DEVICES {shown}, timeout {timeout:g} s)")
            try:
                cuda = probe.cuda_probe(env, timeout)
            except (ProbeUnavailable, ProbeError) as exc:
                cuda = exc
    return evaluate(policy, inventory, cuda, notes)


def _label(g) -> str:
    return f"GPU {g.nvml_index} {g.name} ({g.pci_bus_id})"


def _find_by_uuid(inventory: Inventory, uuid: str):
    """(gpu, mig) whose UUID is `uuid` (torch prints it without the GPU-/MIG- prefix)."""
    for g in inventory.gpus:
        if same_uuid(g.uuid, uuid):
            return g, None
        for d in g.mig_devices:
            if same_uuid(d.uuid, uuid):
                return g, d
    return None, None


def evaluate(policy: Policy, inventory: Any, cuda: Any, notes: Optional[list] = None) -> Report:
    """The checks from the probe's data: `inventory` is an Inventory or the ProbeUnavailable /
    ProbeError NVML gave; `cuda` a CudaReport, the exception the child gave, or None (not run)."""
    checks: list = []
    notes = list(notes or ())
    names = ["nvml", "mask", "cuda-probe", "device-count", "device0-uuid", "expect-uuid", "expect-name",
             "min-memory", "compute-capability", "smoke-matmul", "smoke-memory", "memory-health"]

    def finish(res=None, cuda_rep=None, gpus=()):
        done = {c.name for c in checks}
        for name in names:
            if name not in done:
                checks.append(Check(name, "skip", "not run: " + first_problem()))
        status = verdict(checks)
        cause = next((c.detail for c in checks if c.status == "unavailable"), None) if status == "unavailable" else None
        return Report(status, cause, policy, inventory if isinstance(inventory, Inventory) else None, res,
                      cuda_rep, checks, notes + (res.notes if res else []), list(gpus))

    def first_problem() -> str:
        bad = next((c for c in checks if c.status in ("unavailable", "fail")), None)
        return f"{bad.name} did not pass" if bad else "nothing to check"

    # NVML inventory
    if isinstance(inventory, ProbeUnavailable):
        checks.append(Check("nvml", "unavailable", str(inventory)))
        return finish()
    if isinstance(inventory, ProbeError):
        checks.append(Check("nvml", "fail", str(inventory)))
        return finish()
    drv = inventory.driver_version or "?"
    if inventory.cuda_driver_version:
        drv += f" (CUDA {inventory.cuda_driver_version})"
    if not inventory.gpus:
        checks.append(Check("nvml", "unavailable", f"no GPU: NVML (driver {drv}) sees no NVIDIA GPU"))
        return finish(gpus=[])
    checks.append(Check("nvml", "pass", f"driver {drv}, {len(inventory.gpus)} GPU(s)"))

    # the mask
    res = resolve_mask(policy.visible_devices, policy.device_order, inventory)
    by_index = {g.nvml_index: g for g in inventory.gpus}
    mask_text = ("CUDA_VISIBLE_DEVICES unset (no visible-devices policy)" if policy.visible_devices is None
                 else f"CUDA_VISIBLE_DEVICES={policy.visible_devices!r}") + f", CUDA_DEVICE_ORDER={policy.device_order}"
    seen = []
    for i, t in enumerate(res.targets):
        what = by_index[t.nvml_index].name if t.nvml_index is not None else f"index {t.entry} (physical GPU unknown)"
        if t.nvml_index is not None:
            what = f"GPU {t.nvml_index} {what}" + (f" MIG {t.mig_uuid}" if t.mig_uuid else "")
        seen.append(f"cuda:{i} = {what}")
    invalid = next((e for e in res.entries if e.status == "invalid"), None)
    if not res.targets:
        why = f": entry {invalid.entry!r}: {invalid.detail}" if invalid else ""
        checks.append(Check("mask", "unavailable", f"no GPU visible under the mask ({mask_text}){why}"))
    elif invalid:
        checks.append(Check("mask", "fail", f"{mask_text}: entry {invalid.entry!r}: {invalid.detail}; "
                                            f"CUDA sees only " + "; ".join(seen)))
    else:
        extra = "" if res.order_known else " (FASTEST_FIRST: index entries do not map to NVML/PCI order; the UUID checks decide)"
        checks.append(Check("mask", "pass", f"{mask_text} -> " + "; ".join(seen) + extra))
    target0 = res.targets[0] if res.targets else None
    exp_gpu = by_index.get(target0.nvml_index) if target0 and target0.nvml_index is not None else None
    exp_mig = None
    if exp_gpu is not None and target0.mig_uuid:
        exp_mig = next((d for d in exp_gpu.mig_devices if d.uuid == target0.mig_uuid), None)

    # the CUDA child
    rep = cuda if isinstance(cuda, CudaReport) else None
    if cuda is None:
        if res.targets:
            checks.append(Check("cuda-probe", "skip", "not run"))
    elif isinstance(cuda, ProbeUnavailable):
        checks.append(Check("cuda-probe", "unavailable", str(cuda)))
    elif isinstance(cuda, ProbeError):
        checks.append(Check("cuda-probe", "fail", str(cuda)))
    elif rep.unavailable:
        checks.append(Check("cuda-probe", "unavailable", rep.unavailable))
    else:
        checks.append(Check("cuda-probe", "pass",
                            f"torch {rep.torch_version} (CUDA {rep.torch_cuda}) in a fresh process with {mask_text}: "
                            f"{rep.device_count} device(s)"))
    have = rep is not None and not rep.unavailable and bool(rep.devices)
    dev0 = rep.devices[0] if have else None
    act_gpu, act_mig = _find_by_uuid(inventory, dev0.uuid) if dev0 and dev0.uuid else (None, None)
    act_desc = (_label(act_gpu) + (f" MIG {act_mig.uuid}" if act_mig else "")) if act_gpu else "not a GPU NVML lists"

    # fill in which GPUs are visible, and as which CUDA index
    vis: dict = {}
    if res.order_known:
        for i, t in enumerate(res.targets):
            vis.setdefault(t.nvml_index, (i, t.mig_uuid))
    elif have:
        for d in rep.devices:
            g, m = _find_by_uuid(inventory, d.uuid)
            if g is not None:
                vis.setdefault(g.nvml_index, (d.index, m.uuid if m else None))
    known = res.order_known or have
    gpus = []
    for g in inventory.gpus:
        idx, mig_uuid = vis.get(g.nvml_index, (None, None))
        gpus.append({
            "nvml_index": g.nvml_index,
            "name": g.name,
            "uuid": g.uuid,
            "pci_bus_id": g.pci_bus_id,
            "memory_total_bytes": g.memory_total_bytes,
            "memory_free_bytes": g.memory_free_bytes,
            "compute_capability": g.compute_capability,
            "visible": (g.nvml_index in vis) if known else None,
            "cuda_index": idx,
            "ecc": g.ecc,
            "retired_pages": g.retired_pages,
            "remapped_rows": g.remapped_rows,
            "mig_mode": g.mig_mode,
            "mig_devices": [dict(dataclasses.asdict(d), visible=(d.uuid == mig_uuid) if known else None,
                                 cuda_index=idx if d.uuid == mig_uuid else None) for d in g.mig_devices],
        })

    if not have:
        if exp_gpu is not None and exp_mig is None:  # still judge the policy's GPU from NVML alone
            checks.extend(_expectations(policy, f"{_label(exp_gpu)} (NVML; CUDA not checked)", exp_gpu.uuid,
                                        exp_gpu.name, exp_gpu.memory_total_bytes, "NVML total", _label(exp_gpu),
                                        True))
            checks.append(_memory_health(exp_gpu))
        return finish(res, rep, gpus)

    # device count and device 0
    if rep.device_count == res.expected_count:
        checks.append(Check("device-count", "pass", f"torch.cuda.device_count() = {rep.device_count}, as the mask gives"))
    else:
        checks.append(Check("device-count", "fail", f"torch.cuda.device_count() = {rep.device_count}, but the mask "
                                                    f"({mask_text}) should give {res.expected_count}"))
    if not dev0.uuid:
        checks.append(Check("device0-uuid", "skip", f"torch {rep.torch_version} does not report device UUIDs"))
    elif exp_gpu is None:
        checks.append(Check("device0-uuid", "skip",
                            f"cuda:0 is {dev0.uuid} = {act_desc}; under FASTEST_FIRST the index mask does not say "
                            "which physical GPU it should be (expect-uuid decides)"))
    else:
        want = exp_mig.uuid if exp_mig else exp_gpu.uuid
        want_desc = _label(exp_gpu) + (f" MIG {exp_mig.uuid}" if exp_mig else "")
        if same_uuid(dev0.uuid, want):
            checks.append(Check("device0-uuid", "pass", f"cuda:0 is {want} = {want_desc}, the GPU the mask names"))
        else:
            checks.append(Check("device0-uuid", "fail",
                                f"cuda:0 is {dev0.uuid} = {act_desc}, but the mask names {want} = {want_desc}"))

    # what the policy expects of cuda:0
    checks.extend(_expectations(policy, f"cuda:0 ({dev0.name})", dev0.uuid, dev0.name, dev0.total_memory,
                                "torch total_memory", act_desc, res.order_known))
    src = f"cuda:0 ({dev0.name})"

    cap = tuple(dev0.capability)
    sm = f"sm_{cap[0]}{cap[1]}"
    if not rep.arch_list:
        checks.append(Check("compute-capability", "skip", f"{src} is {sm}; torch reports no arch list"))
    else:
        ok, how = arch_supported(cap, rep.arch_list)
        archs = " ".join(rep.arch_list)
        if ok:
            checks.append(Check("compute-capability", "pass", f"{src} is {sm}: this torch build runs it ({how})"))
        else:
            checks.append(Check("compute-capability", "fail",
                                f"{src} is {sm}, which torch {rep.torch_version} was not built for (arch list: {archs}); "
                                f"install a torch build that supports {sm}"))

    # smoke kernel
    smoke = rep.smoke or {}
    if rep.smoke_error:
        checks.append(Check("smoke-matmul", "fail", f"the smoke kernel failed: {rep.smoke_error}"))
        checks.append(Check("smoke-memory", "fail", f"the smoke kernel failed: {rep.smoke_error}"))
    else:
        mm = smoke.get("matmul") or {}
        if "error" in mm or "rel_error" not in mm:
            checks.append(Check("smoke-matmul", "fail", f"fp32 matmul on cuda:0 failed: {mm.get('error', 'no result')}"))
        else:
            tf = f"; {mm['tflops']:.2f} TFLOP/s" if mm.get("tflops") else ""
            cmp = "<=" if mm["ok"] else ">"
            checks.append(Check("smoke-matmul", "pass" if mm["ok"] else "fail",
                                f"fp32 {mm['n']}x{mm['n']} matmul on cuda:0, TF32 off, vs CPU float64: relative "
                                f"error {mm['rel_error']:.2e} {cmp} tolerance {mm['tolerance']:.0e}{tf}"))
        mem = smoke.get("memory") or {}
        if "error" in mem or "mismatches" not in mem:
            checks.append(Check("smoke-memory", "fail", f"memory pattern on cuda:0 failed: {mem.get('error', 'no result')}"))
        else:
            bw = f"; device copy {mem['bandwidth_gbps']:.1f} GB/s" if mem.get("bandwidth_gbps") else ""
            checks.append(Check("smoke-memory", "pass" if mem["ok"] else "fail",
                                f"wrote and read back {mem['bytes'] / 2**20:.0f} MiB on cuda:0 in {mem['patterns']} "
                                f"patterns: {mem['mismatches']} mismatches{bw}"))

    # ECC / retired pages / remapped rows of the physical GPU behind cuda:0
    g = act_gpu or exp_gpu
    if g is None:
        checks.append(Check("memory-health", "skip", "cuda:0 is not a GPU NVML lists"))
    else:
        checks.append(_memory_health(g))
    return finish(res, rep, gpus)


def _expectations(policy: Policy, src: str, uuid: str, name: str, total: int, mem_source: str,
                  desc: str, order_known: bool) -> list:
    out = []
    if policy.expect_uuid is None:
        out.append(Check("expect-uuid", "skip", "expect-uuid is not set in the policy"
                         + ("" if order_known else " (set it: under FASTEST_FIRST it is the check that decides)")))
    elif uuid and uuid_has_prefix(uuid, policy.expect_uuid):
        out.append(Check("expect-uuid", "pass", f"{src} has UUID {uuid}, as expect-uuid = {policy.expect_uuid!r}"))
    else:
        out.append(Check("expect-uuid", "fail", f"{src} has UUID {uuid or '(unknown)'} = {desc}, "
                                                f"but expect-uuid = {policy.expect_uuid!r}"))
    if policy.expect_name is None:
        out.append(Check("expect-name", "skip", "expect-name is not set in the policy"))
    elif policy.expect_name.lower() in name.lower():
        out.append(Check("expect-name", "pass", f"{src} matches expect-name = {policy.expect_name!r}"))
    else:
        out.append(Check("expect-name", "fail", f"{src} does not contain expect-name = {policy.expect_name!r}"))
    need = policy.min_memory_gib * 2**30
    ok = total >= need
    out.append(Check("min-memory", "pass" if ok else "fail",
                     f"{src} has {gib(total)} ({mem_source}) {'>=' if ok else '<'} min-memory-gib = "
                     f"{policy.min_memory_gib:g} GiB"))
    return out


def _memory_health(g) -> Check:
    if g.ecc == NA and g.retired_pages == NA and g.remapped_rows == NA:
        return Check("memory-health", "skip", f"ECC, retired pages, remapped rows: n/a (NVML: not supported on {g.name})")
    parts, problems = [], []
    if isinstance(g.ecc, dict):
        unc = g.ecc.get("volatile_uncorrected", NA)
        parts.append(f"ECC {g.ecc.get('mode')}, volatile uncorrected errors {unc}, "
                     f"corrected {g.ecc.get('volatile_corrected', NA)}")
        if isinstance(unc, int) and unc > 0:
            problems.append(f"{unc} uncorrected ECC errors since the driver loaded")
    else:
        parts.append("ECC n/a")
    if isinstance(g.retired_pages, dict):
        r = g.retired_pages
        parts.append(f"retired pages {r.get('single_bit')} single-bit, {r.get('double_bit')} double-bit")
        if r.get("pending") is True:
            problems.append("page retirement pending (reset the GPU or reboot)")
    else:
        parts.append("retired pages n/a")
    if isinstance(g.remapped_rows, dict):
        r = g.remapped_rows
        parts.append(f"remapped rows {r.get('correctable')} correctable, {r.get('uncorrectable')} uncorrectable")
        if r.get("failure"):
            problems.append("row remapping failed (the GPU needs service)")
        if r.get("pending"):
            problems.append("row remapping pending (reset the GPU or reboot)")
    else:
        parts.append("remapped rows n/a")
    text = f"{_label(g)}: " + "; ".join(parts)
    if problems:
        return Check("memory-health", "fail", text + ": " + "; ".join(problems))
    return Check("memory-health", "pass", text)
