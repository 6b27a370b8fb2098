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
from gpufix.hardware.mask import Resolution, resolve_mask, torch_count_before_init
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
    guard: Optional[dict] = None  # the running environment's `gpufix guard` (guardinfo.running_guard)

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
_ARCH_RE = re.compile(r"^(sm|compute)_(\d+)([af]?)$")

# Which device compute capabilities run code built for a given one: torch's own table
# (DEVICE_REQUIREMENT in torch/cuda/__init__.py, used by torch.cuda._check_capability). Code for X.Y
# runs on X.Y..X.9 except the integrated GPUs of that family (5.3 Jetson TX1, 6.2 TX2, 7.2 Xavier,
# 8.7 Orin, 10.1 Thor), which need their own code; 10.1 code also runs on 11.0 (Thor's new number).
_FAMILY = {
    50: (50, {53}), 52: (52, {53}), 53: {53}, 60: (60, {62}), 61: (61, {62}), 62: {62},
    70: (70, {72}), 72: {72}, 75: (75, set()), 80: (80, {87}), 86: (86, {87}), 87: {87},
    89: (89, set()), 90: (90, set()), 100: (100, {101}), 101: {101, 110}, 103: (103, set()),
    110: (110, set()), 120: (120, set()), 121: (121, set()),
}


def _runs_on(code: int, device: int) -> bool:
    rule = _FAMILY.get(code, (code, set()))  # an unknown code: its major version from its minor up
    if isinstance(rule, set):
        return device in rule
    start, exclude = rule
    return device not in exclude and device // 10 == start // 10 and device % 10 >= start % 10


def arch_supported(capability: tuple, arch_list: list) -> tuple:
    """(supported?, how) for a device of compute capability (major, minor) and torch's arch list.

    A cubin `sm_XY` runs where torch's family table says (see _FAMILY); `sm_XYa` (arch-specific) only
    on exactly X.Y; `sm_XYf` (family-specific) like sm_XY. PTX `compute_XY` is JIT-compiled for any
    capability >= X.Y, integrated GPUs included; arch-specific PTX `compute_XYa` is not forward
    compatible (exactly X.Y only), family PTX `compute_XYf` runs on the family only.
    """
    major, minor = int(capability[0]), int(capability[1])
    cap = major * 10 + minor
    best = None
    for arch in arch_list:
        m = _ARCH_RE.match(arch.strip())
        if not m:
            continue
        kind, num, suffix = m.group(1), int(m.group(2)), m.group(3)
        if suffix == "a":
            ok = num == cap
        elif kind == "sm" or suffix == "f":
            ok = _runs_on(num, cap)
        else:
            ok = num <= cap
        if not ok:
            continue
        if kind == "sm":
            if num == cap:
                return True, f"{arch} cubin"
            best = (True, f"{arch} cubin (binary compatible: torch's table lets {num // 10}.{num % 10} code run "
                          f"on {major}.{minor})")
        elif best is None:
            best = (True, f"{arch} PTX (JIT-compiled at first use; the first start is slow)")
    return best or (False, "")


def _family_hint(cap: int, arch_list: list) -> str:
    """Why no entry serves `cap`, when that is one of the exceptions (an integrated GPU, `a` code)."""
    nums = []
    for arch in arch_list:
        m = _ARCH_RE.match(arch.strip())
        if m:
            nums.append((int(m.group(2)), m.group(3), m.group(1)))
    same_major = [n for n, suffix, kind in nums if n // 10 == cap // 10 and n % 10 <= cap % 10 and suffix != "a"]
    if same_major and any(cap in rule[1] for n in same_major if isinstance(rule := _FAMILY.get(n), tuple)):
        return (f"; {cap // 10}.{cap % 10} is an integrated GPU, which code built for "
                + ", ".join(f"{n // 10}.{n % 10}" for n in same_major) + " does not serve (torch's family table)")
    if any(suffix == "a" for _n, suffix, _k in nums):
        return "; arch-specific code (sm_XXa / compute_XXa) runs only on exactly that capability"
    return ""


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
    notes.extend(shell_order_notes(policy, inventory, os.environ))
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


def shell_order_notes(policy: Policy, inventory: Any, environ) -> list:
    """The check runs its child with the policy's CUDA_DEVICE_ORDER; say when this shell differs, since
    a program started from it without the gpufix header enumerates GPUs in the shell's order."""
    if not isinstance(inventory, Inventory) or len(inventory.gpus) < 2:
        return []  # with one GPU the order names the same GPU either way
    shell = environ.get("CUDA_DEVICE_ORDER")
    if shell == policy.device_order:
        return []
    if shell is None:
        return [f"this shell has no CUDA_DEVICE_ORDER: a program started from it that does not set it itself "
                f"enumerates GPUs FASTEST_FIRST (CUDA's default), so an index mask can name another GPU than "
                f"the one checked under {policy.device_order}; export CUDA_DEVICE_ORDER={policy.device_order}"]
    return [f"this shell has CUDA_DEVICE_ORDER={shell!r}; the check used the policy's {policy.device_order!r}, "
            f"as programs with the gpufix header do; export CUDA_DEVICE_ORDER={policy.device_order}"]


def _label(g) -> str:
    return g.label


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
        checks.sort(key=lambda c: names.index(c.name))
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
    lost = [g for g in inventory.gpus if not g.accessible]
    partial = [g for g in inventory.gpus if g.accessible and g.errors]
    extra = ""
    if lost:
        extra += "; inaccessible: " + ", ".join(f"GPU {g.nvml_index} ({'; '.join(dict.fromkeys(g.errors.values()))})"
                                                for g in lost)
    if partial:
        extra += "; n/a: " + ", ".join(f"GPU {g.nvml_index} {', '.join(sorted(g.errors))}" for g in partial)
    checks.append(Check("nvml", "pass", f"driver {drv}, {len(inventory.gpus)} GPU(s){extra}"))

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
    torch_before, torch_why = torch_count_before_init(policy.visible_devices, inventory)

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
    elif rep.init_error:
        checks.append(Check("cuda-probe", "fail", f"torch {rep.torch_version} (CUDA {rep.torch_cuda}) with {mask_text}: "
                                                  f"torch.cuda.init() failed: {rep.init_error}"
                                                  + _driver_hint(inventory, rep)))
    elif rep.error or rep.device_errors or not rep.devices:
        broke = rep.error or "; ".join(rep.device_errors) or "no device could be read"
        checks.append(Check("cuda-probe", "fail", f"torch {rep.torch_version} (CUDA {rep.torch_cuda}) with {mask_text}: "
                                                  f"{rep.device_count} device(s), but the child broke part-way: {broke}"))
    else:
        checks.append(Check("cuda-probe", "pass",
                            f"torch {rep.torch_version} (CUDA {rep.torch_cuda}) in a fresh process with {mask_text}: "
                            f"torch.cuda.init() ok, {rep.device_count} device(s)"))
    have = rep is not None and not rep.unavailable and not rep.init_error and bool(rep.devices) \
        and rep.devices[0].index == 0
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
    gpus = [_gpu_json(g, vis, known) for g in inventory.gpus]

    # the device counts: torch's own parse before CUDA starts, and the CUDA runtime's after init
    if rep is not None and not rep.unavailable and (rep.devices or rep.init_error):
        checks.append(_device_count(rep, res.expected_count, torch_before, torch_why, mask_text, notes))

    if not have:
        if exp_gpu is not None and exp_mig is None and exp_gpu.accessible:  # still judge the policy's GPU from NVML
            checks.extend(_expectations(policy, f"{_label(exp_gpu)} (NVML; CUDA not checked)", exp_gpu.uuid,
                                        exp_gpu.name, _label(exp_gpu), True, exp_gpu.memory_total_bytes,
                                        "NVML total", None))
            checks.append(_memory_health(exp_gpu))
        return finish(res, rep, gpus)

    # device 0
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

    # what the policy expects of cuda:0; the memory figure is NVML's total of the device CUDA uses
    # (the MIG instance's when the mask names one), as `gpufix init` writes it; torch's total_memory
    # only where NVML cannot tell (unified-memory GPUs)
    uuid_for_policy, uuid_src = dev0.uuid, None
    if not dev0.uuid and exp_gpu is not None:
        uuid_for_policy = exp_mig.uuid if exp_mig else exp_gpu.uuid
        uuid_src = (f"torch {rep.torch_version} reports no device UUIDs: judged on the GPU the mask names "
                    f"({_label(exp_gpu)}, from NVML)")
    mem_gpu, mem_mig = (act_gpu, act_mig) if act_gpu is not None else (exp_gpu, exp_mig)
    nvml_total = (mem_mig.memory_total_bytes if mem_mig is not None
                  else mem_gpu.memory_total_bytes if mem_gpu is not None else None)
    if nvml_total is not None:
        total, mem_source = nvml_total, "NVML total" + (" of the MIG instance" if mem_mig is not None else "")
    else:
        total, mem_source = dev0.total_memory, "torch total_memory; NVML reports no memory size for this GPU"
    checks.extend(_expectations(policy, f"cuda:0 ({dev0.name})", uuid_for_policy, dev0.name, act_desc,
                                res.order_known, total, mem_source, uuid_src))
    src = f"cuda:0 ({dev0.name})"

    cap = tuple(dev0.capability)
    sm = f"sm_{cap[0]}{cap[1]}"
    kind = " (integrated GPU)" if dev0.integrated else ""
    if not rep.arch_list:
        checks.append(Check("compute-capability", "skip", f"{src} is {sm}; torch reports no arch list"))
    else:
        ok, how = arch_supported(cap, rep.arch_list)
        archs = " ".join(rep.arch_list)
        if ok:
            checks.append(Check("compute-capability", "pass", f"{src} is {sm}{kind}: this torch build runs it ({how})"))
        else:
            checks.append(Check("compute-capability", "fail",
                                f"{src} is {sm}{kind}, which torch {rep.torch_version} was not built for (arch list: "
                                f"{archs}{_family_hint(cap[0] * 10 + cap[1], rep.arch_list)}); "
                                f"install a torch build that supports {sm}"))

    # smoke kernel
    checks.extend(_smoke_checks(rep))

    # ECC / retired pages / remapped rows of the physical GPU behind cuda:0
    g = act_gpu or exp_gpu
    if g is None:
        checks.append(Check("memory-health", "skip", "cuda:0 is not a GPU NVML lists"))
    else:
        checks.append(_memory_health(g))
    return finish(res, rep, gpus)


def _gpu_json(g, vis: dict, known: bool) -> dict:
    idx, mig_uuid = vis.get(g.nvml_index, (None, None))
    return {
        "nvml_index": g.nvml_index,
        "state": g.state,
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
        "errors": dict(g.errors),
    }


def _driver_hint(inventory: Inventory, rep: CudaReport) -> str:
    """What to do when CUDA would not start: a driver older than the torch build is the usual cause."""
    drv, built = inventory.cuda_driver_version, rep.torch_cuda
    try:  # CUDA minor version compatibility: an X.y build runs on any X.0+ driver; an older major does not
        older = drv is not None and built is not None and int(drv.split(".")[0]) < int(built.split(".")[0])
    except ValueError:
        older = False
    if older:
        return (f"; the driver ({inventory.driver_version}) supports CUDA {drv}, an older major version than the "
                f"CUDA {built} this torch was built for: update the NVIDIA driver, or install a torch build for "
                f"CUDA {drv.split('.')[0]}.x")
    return ""


def _device_count(rep: CudaReport, runtime_expected: int, torch_expected: Optional[int], torch_why: str,
                  mask_text: str, notes: list) -> Check:
    before, after = rep.device_count_before_init, rep.device_count
    before_expected = runtime_expected if torch_expected is None else torch_expected
    if before is None:  # a child that could not ask torch before init
        text = f"torch.cuda.device_count() = {after} after torch.cuda.init() (the CUDA runtime)"
    elif rep.init_error:
        text = f"torch.cuda.device_count() = {before} before CUDA starts (torch's own parse of the mask)"
        if torch_expected is None:  # torch asked the runtime, which failed as init did
            before = None
    else:
        text = (f"torch.cuda.device_count() = {before} before CUDA starts (torch's own parse of the mask) and "
                f"{after} after torch.cuda.init() (the CUDA runtime)")
    problems = []
    if rep.init_error is None and after != runtime_expected:
        problems.append(f"the mask ({mask_text}) should give {runtime_expected} CUDA device(s)")
    if before is not None and before != before_expected:
        problems.append(f"torch's parse should give {before_expected} ({torch_why})")
    if problems:
        return Check("device-count", "fail", text + ", but " + " and ".join(problems))
    if rep.init_error:
        return Check("device-count", "pass", text + ", as the mask gives; the runtime's count is unknown: CUDA "
                                                    "did not start")
    if before is not None and before != after and rep.init_error is None:
        notes.append(f"torch.cuda.device_count() changes from {before} to {after} when CUDA starts ({torch_why}): "
                     "a program that sizes its workers before CUDA starts sees the first number")
    return Check("device-count", "pass", text + ", as the mask gives")


# a fp32 matmul under TF32 (10-bit mantissa inputs) has a relative error of ~1e-4..1e-3
_TF32_SIZED = 5e-5


def _smoke_checks(rep: CudaReport) -> list:
    out = []
    smoke = rep.smoke or {}
    if rep.smoke_error:
        return [Check("smoke-matmul", "fail", f"the smoke kernel failed: {rep.smoke_error}"),
                Check("smoke-memory", "fail", f"the smoke kernel failed: {rep.smoke_error}")]
    mm = smoke.get("matmul") or {}
    prec = smoke.get("precision") or rep.precision or {}
    tf32 = bool(prec.get("tf32", mm.get("tf32")))
    override = (rep.env or {}).get("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE")
    if "error" in mm or "rel_error" not in mm:
        out.append(Check("smoke-matmul", "fail", f"fp32 matmul on cuda:0 failed: {mm.get('error', 'no result')}"))
    else:
        tf = f"; {mm['tflops']:.2f} TFLOP/s" if mm.get("tflops") else ""
        cmp = "<=" if mm["ok"] else ">"
        if tf32:
            mode = ("TF32 ON although the kernel asked for full fp32 (torch reads back allow_tf32="
                    f"{prec.get('allow_tf32')}, fp32_precision={prec.get('fp32_precision')!r}"
                    + (f", TORCH_ALLOW_TF32_CUBLAS_OVERRIDE={override!r} in the child" if override else "") + ")")
        else:
            mode = ("TF32 off (torch reads back allow_tf32=False, float32 matmul precision "
                    f"{prec.get('float32_matmul_precision', 'highest')!r})" if prec else "TF32 off")
        detail = (f"fp32 {mm['n']}x{mm['n']} matmul on cuda:0, {mode}, vs CPU float64: relative "
                  f"error {mm['rel_error']:.2e} {cmp} tolerance {mm['tolerance']:.0e}{tf}")
        if not mm["ok"] and not tf32 and mm["rel_error"] >= _TF32_SIZED:
            detail += ("; the error is the size TF32 gives although torch reports TF32 off: the GPU, or a library "
                       "below torch, computed with reduced precision")
        out.append(Check("smoke-matmul", "pass" if mm["ok"] else "fail", detail))
    mem = smoke.get("memory") or {}
    if "error" in mem or "mismatches" not in mem:
        out.append(Check("smoke-memory", "fail", f"memory pattern on cuda:0 failed: {mem.get('error', 'no result')}"))
    else:
        bw = f"; device copy {mem['bandwidth_gbps']:.1f} GB/s" if mem.get("bandwidth_gbps") else ""
        out.append(Check("smoke-memory", "pass" if mem["ok"] else "fail",
                         f"wrote and read back {mem['bytes'] / 2**20:.0f} MiB on cuda:0 in {mem['patterns']} "
                         f"patterns: {mem['mismatches']} mismatches{bw}"))
    return out


def _expectations(policy: Policy, src: str, uuid: Optional[str], name: Optional[str], desc: str, order_known: bool,
                  total: Optional[int], mem_source: str, uuid_src: Optional[str]) -> list:
    out = []
    how = f" ({uuid_src})" if uuid_src else ""
    if policy.expect_uuid is None:
        out.append(Check("expect-uuid", "skip", "expect-uuid is not set in the policy"
                         + ("" if order_known else " (set it: under FASTEST_FIRST it is the check that decides)")))
    elif not uuid:
        out.append(Check("expect-uuid", "skip", f"{src}: its UUID is not known (torch reports none and the mask does "
                                                "not say which physical GPU it is), so expect-uuid cannot be judged"))
    elif uuid_has_prefix(uuid, policy.expect_uuid):
        out.append(Check("expect-uuid", "pass", f"{src} has UUID {uuid}, as expect-uuid = {policy.expect_uuid!r}{how}"))
    else:
        out.append(Check("expect-uuid", "fail", f"{src} has UUID {uuid} = {desc}, "
                                                f"but expect-uuid = {policy.expect_uuid!r}{how}"))
    if policy.expect_name is None:
        out.append(Check("expect-name", "skip", "expect-name is not set in the policy"))
    elif name is None:
        out.append(Check("expect-name", "skip", f"{src}: NVML could not read its name"))
    elif policy.expect_name.lower() in name.lower():
        out.append(Check("expect-name", "pass", f"{src} matches expect-name = {policy.expect_name!r}"))
    else:
        out.append(Check("expect-name", "fail", f"{src} does not contain expect-name = {policy.expect_name!r}"))
    if total is None:
        out.append(Check("min-memory", "skip", f"{src}: NVML reports no memory size for it (n/a)"))
        return out
    need = policy.min_memory_gib * 2**30
    ok = total >= need
    out.append(Check("min-memory", "pass" if ok else "fail",
                     f"{src} has {gib(total)} ({mem_source}) {'>=' if ok else '<'} min-memory-gib = "
                     f"{policy.min_memory_gib:g} GiB"))
    return out


def _memory_health(g) -> Check:
    if not g.accessible:
        return Check("memory-health", "skip", f"{_label(g)}: NVML cannot read it")
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
