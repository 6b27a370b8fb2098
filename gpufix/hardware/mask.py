"""The policy's CUDA_VISIBLE_DEVICES resolved against the NVML inventory, as CUDA reads it.

* index entries count GPUs in CUDA_DEVICE_ORDER: under PCI_BUS_ID that is PCI bus order (what NVML
  indices follow); under FASTEST_FIRST it is CUDA's own ranking, which NVML cannot tell, so index
  entries then map to no known physical GPU (unless there is only one GPU);
* `GPU-<uuid>` entries, and unique prefixes of them, name a GPU whatever the order;
* `MIG-<uuid>` / `MIG-GPU-<uuid>/<gi>/<ci>` entries name a MIG instance; CUDA uses one MIG instance
  per process (the first one the mask names);
* the first entry that names no GPU (an index past the end, an unknown or ambiguous UUID prefix, a
  GPU already listed) ends the list: it and everything after it are ignored;
* a GPU NVML cannot open (NO_PERMISSION, GPU_IS_LOST) cannot be opened by CUDA either: it is not
  among CUDA's devices, so indices count only the GPUs this process can use.

torch reads the same variable differently *before* CUDA initialises: `torch.cuda.device_count()`
parses it itself against NVML (`torch.cuda._parse_visible_devices`, `_transform_uuid_to_ordinals`,
`_device_count_nvml` in torch/cuda/__init__.py). `torch_parse_visible_devices` and
`torch_count_before_init` model that parse, and `mask_form_error` names the masks on which it and the
CUDA driver disagree (a config error: the same program would see a different number of GPUs
depending on whether it asked torch before or after CUDA started).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

from gpufix.config import parse_mask
from gpufix.hardware.model import Inventory, uuid_body, uuid_has_prefix


@dataclasses.dataclass
class Target:
    """One device CUDA will enumerate: a physical GPU (or a MIG instance of it)."""

    entry: str
    nvml_index: Optional[int]  # None: not known (index entry under FASTEST_FIRST)
    mig_uuid: Optional[str] = None


@dataclasses.dataclass
class EntryResult:
    entry: str
    status: str  # "ok" | "invalid" | "ignored"
    nvml_index: Optional[int]
    detail: str
    mig_uuid: Optional[str] = None


@dataclasses.dataclass
class Resolution:
    value: Optional[str]  # None: no mask, every GPU visible
    device_order: str
    entries: list
    targets: list  # of Target, in CUDA order
    order_known: bool  # every target's physical GPU is known
    notes: list

    @property
    def expected_count(self) -> int:
        return len(self.targets)

    @property
    def truncated(self) -> bool:
        return any(e.status == "invalid" for e in self.entries)

    def to_json(self) -> dict:
        return {
            "value": self.value,
            "device_order": self.device_order,
            "expected_device_count": self.expected_count,
            "order_known": self.order_known,
            "entries": [
                {"entry": e.entry, "status": e.status, "nvml_index": e.nvml_index, "mig_uuid": e.mig_uuid,
                 "detail": e.detail}
                for e in self.entries
            ],
            "notes": list(self.notes),
        }


_OLD_MIG = re.compile(r"^MIG-(GPU-[0-9A-Za-z-]+)/(\d+)/(\d+)$", re.IGNORECASE)


def pci_order(inventory: Inventory, accessible_only: bool = False) -> list:
    """The GPUs in PCI bus order (domain, bus, device, function): CUDA's PCI_BUS_ID order.
    GPUs whose bus id NVML could not read come last, in NVML order."""

    def key(g):
        try:
            dom, bus, rest = g.pci_bus_id.split(":")
            dev, fn = rest.split(".")
            return (int(dom, 16), int(bus, 16), int(dev, 16), int(fn, 16), g.nvml_index)
        except (ValueError, AttributeError):
            return (1 << 40, 0, 0, 0, g.nvml_index)

    gpus = inventory.accessible if accessible_only else inventory.gpus
    return sorted(gpus, key=key)


def _label(g) -> str:
    return g.label


# ---- torch's own parse (torch/cuda/__init__.py, CUDA builds) -------------------------------------
def _torch_strtoul(s: str) -> int:
    """torch.cuda._parse_visible_devices._strtoul: the leading [+-]digits as an int, or -1."""
    if not s:
        return -1
    idx = 0
    for idx, c in enumerate(s):
        if not (c.isdigit() or (idx == 0 and c in "+-")):
            break
        if idx + 1 == len(s):
            idx += 1
    try:
        return int(s[:idx]) if idx > 0 else -1
    except ValueError:  # "+" alone: torch itself raises here; for gpufix it names no GPU
        return -1


def torch_parse_visible_devices(value: Optional[str]) -> list:
    """torch.cuda._parse_visible_devices: unset -> 0..63; a value starting with "GPU-" (or "MIG-") is
    read as that kind of UUID up to the first entry without the prefix (case-sensitive, entries not
    stripped); otherwise as strtoul-like ordinals up to the first negative / non-number; naming the
    same entry twice gives the empty list."""
    if value is None:
        return list(range(64))
    for prefix in ("GPU-", "MIG-"):
        if value.startswith(prefix):
            rcs: list = []
            for elem in value.split(","):
                if elem in rcs:
                    return []
                if not elem.startswith(prefix):
                    break
                rcs.append(elem)
            return rcs
    rc: list = []
    for elem in value.split(","):
        x = _torch_strtoul(elem.strip())
        if x in rc:
            return []
        if x < 0:
            break
        rc.append(x)
    return rc


def torch_transform_uuid_to_ordinals(candidates: list, uuids: list) -> list:
    """torch.cuda._transform_uuid_to_ordinals: each candidate is a case-sensitive prefix of exactly one
    NVML UUID (`str.startswith`); the first unknown or ambiguous one ends the list; the same GPU twice
    gives the empty list."""
    rc: list = []
    for candidate in candidates:
        hits = [i for i, u in enumerate(uuids) if u.startswith(candidate)]
        if len(hits) != 1:
            break
        if hits[0] in rc:
            return []
        rc.append(hits[0])
    return rc


def torch_count_before_init(value: Optional[str], inventory: Inventory) -> tuple:
    """(count, why): what `torch.cuda.device_count()` returns before CUDA initialises, as
    torch.cuda._device_count_nvml computes it from NVML; count None where torch gives up on NVML
    and asks the CUDA runtime instead (a MIG mask; a GPU whose handle or UUID NVML cannot read)."""
    visible = torch_parse_visible_devices(value)
    if not visible:
        return 0, "torch's parse of the mask gives no device"
    if isinstance(visible[0], str):
        if visible[0].startswith("MIG-"):
            return None, "torch does not parse MIG masks itself and asks the CUDA runtime"
        uuids = [g.uuid for g in inventory.gpus]
        if any(u is None for u in uuids):
            return None, "NVML cannot read every GPU's UUID, so torch asks the CUDA runtime"
        return len(torch_transform_uuid_to_ordinals(visible, uuids)), "torch matched the UUIDs against NVML"
    raw = len(inventory.gpus)  # nvmlDeviceGetCount_v2: GPUs this user cannot open count too
    if raw <= 0:
        return raw, "NVML counts no GPU"
    for idx, val in enumerate(visible):
        if val >= raw:
            return idx, f"torch cut the list at index {val} (NVML counts {raw} GPU(s))"
    return len(visible), "torch counted the indices against NVML's GPU count"


_HEX_UPPER = re.compile(r"[A-F]")


def mask_form_error(value: Optional[str]) -> Optional[str]:
    """Why torch and the CUDA driver would read `value` differently (a config error), or None.

    Checked without a GPU: a mask mixing index and UUID entries (torch reads it in the form of its
    first entry and stops at the first entry of another form), and UUIDs not in NVML's spelling
    (torch matches them case-sensitively against NVML's lower-case UUIDs, so they name no GPU).
    Spaces and repeated entries never get here: the policy's value is normalised and refused when it
    names the same entry twice (torch reads that as no GPU at all).
    """
    if value is None:
        return None
    entries = [e.strip() for e in value.split(",")]
    kinds = []
    for e in entries:
        kind = "MIG UUID" if e.upper().startswith("MIG-") else "GPU UUID" if e.upper().startswith("GPU-") else "index"
        if kind not in kinds:
            kinds.append(kind)
    if len(kinds) > 1:
        torch_sees = torch_parse_visible_devices(value)
        stop = entries[len(torch_sees)] if len(torch_sees) < len(entries) else None
        return (f"visible-devices = {value!r} mixes {' and '.join(k + ' entries' for k in kinds)}: torch "
                f"(torch.cuda.device_count() before CUDA starts) reads it as a list of {kinds[0]} entries and "
                + (f"stops at {stop!r}" if stop else "reads another number of devices")
                + ", while the CUDA driver reads every entry; use one form (all indices, or all GPU-UUIDs)")
    for e in entries:
        prefix, _, body = e.partition("-")
        if prefix in ("GPU", "MIG") and (_HEX_UPPER.search(body) or body.upper().startswith("GPU-") and
                                        not body.startswith("GPU-")):
            fixed = prefix + "-" + (body[:4] + body[4:].lower() if body.upper().startswith("GPU-") else body.lower())
            return (f"visible-devices entry {e!r} is not in NVML's spelling: torch matches UUIDs case-sensitively "
                    f"against NVML's lower-case ones, so before CUDA starts it sees no GPU; write {fixed!r}")
    return None


def resolve_mask(value: Optional[str], device_order: str, inventory: Inventory) -> Resolution:
    gpus = pci_order(inventory, accessible_only=True)
    n = len(gpus)
    notes: list = []
    lost = [g for g in inventory.gpus if not g.accessible]
    for g in lost:
        why = "; ".join(f"{k}: {v}" for k, v in g.errors.items()) or "not readable"
        notes.append(f"NVML GPU {g.nvml_index} is inaccessible ({why}): CUDA cannot use it either, so it is not "
                     "among CUDA's devices and indices count only the other GPUs; torch.cuda.device_count() "
                     "before CUDA starts still counts it (nvmlDeviceGetCount_v2 includes GPUs this user cannot open)")
    entries: list = []
    targets: list = []
    bad = None
    if value is None:
        notes.append("no visible-devices policy: CUDA sees every GPU")
        raw_entries: list = list(range(n))
    else:
        raw_entries = parse_mask(value)
        parts = [p.strip() for p in value.split(",")]
        if len(raw_entries) < len(parts):  # a syntactically invalid entry already ends the list
            raw_entries = raw_entries + [None]
            bad = parts[len(raw_entries) - 1]
    index_order_known = device_order == "PCI_BUS_ID" or n <= 1
    if not index_order_known and any(isinstance(e, int) for e in raw_entries):
        notes.append(
            "CUDA_DEVICE_ORDER=FASTEST_FIRST: index entries do not map to NVML/PCI order, so which "
            "physical GPU they name is not known here; the UUID check in the CUDA child decides "
            "(use PCI_BUS_ID or GPU-UUID entries to make the mask unambiguous)"
        )
    seen: set = set()
    mig_used = False
    stopped = False
    for raw in raw_entries:
        text = bad if raw is None else str(raw)
        if stopped:
            entries.append(EntryResult(text, "ignored", None, "after an invalid entry: CUDA ignores it"))
            continue
        gpu = None
        mig = None
        problem = None
        if raw is None:
            problem = "not an index or a GPU-/MIG- UUID"
        elif isinstance(raw, int):
            if raw >= n:
                problem = f"index {raw} is past the last GPU (NVML sees {n}: " + (
                    f"0-{n - 1}" if n else "none") + (f", not counting {len(lost)} inaccessible" if lost else "") + ")"
            elif index_order_known:
                gpu = gpus[raw]
        elif raw.upper().startswith("GPU-"):
            matches = [g for g in gpus if g.uuid and uuid_has_prefix(g.uuid, raw)]
            if not matches:
                problem = "no GPU has this UUID (or UUID prefix)"
            elif len(matches) > 1:
                problem = "ambiguous UUID prefix: " + ", ".join(_label(g) for g in matches)
            else:
                gpu = matches[0]
        else:  # MIG-
            m = _OLD_MIG.match(raw)
            found = []
            for g in gpus:
                for d in g.mig_devices:
                    if m:
                        if (uuid_body(g.uuid or "") == uuid_body(m.group(1)) and d.gpu_instance_id == int(m.group(2))
                                and d.compute_instance_id == int(m.group(3))):
                            found.append((g, d))
                    elif uuid_has_prefix(d.uuid, raw):
                        found.append((g, d))
            if not found:
                problem = "no MIG instance has this UUID"
            elif len(found) > 1:
                problem = "ambiguous MIG UUID prefix"
            else:
                gpu, mig = found[0]
        if problem is None:
            key = (gpu.nvml_index if gpu else ("idx", raw), mig.uuid if mig else None)
            if key in seen:
                problem = ("names a device already listed (torch.cuda.device_count() reads a mask naming a GPU "
                           "twice as no GPU at all)")
        if problem is not None:
            entries.append(EntryResult(text, "invalid", None, problem + "; CUDA stops reading the mask here"))
            stopped = True
            continue
        seen.add(key)
        if mig is not None:
            if mig_used:
                entries.append(EntryResult(text, "ignored", gpu.nvml_index,
                                           "CUDA uses one MIG instance per process (the first listed)", mig.uuid))
                continue
            mig_used = True
        elif gpu is not None and gpu.mig_mode:
            notes.append(f"{_label(gpu)} is in MIG mode: CUDA cannot use it as a whole GPU; "
                         "name one of its MIG instances (MIG-<uuid>) instead")
        if gpu is None:
            detail = f"index {raw} under FASTEST_FIRST: physical GPU not known from NVML"
        else:
            detail = _label(gpu) + (f", MIG instance {mig.uuid}" if mig else "")
        entries.append(EntryResult(text, "ok", gpu.nvml_index if gpu else None, detail, mig.uuid if mig else None))
        targets.append(Target(text, gpu.nvml_index if gpu else None, mig.uuid if mig else None))
    if any(e.status == "invalid" for e in entries):
        first = next(e for e in entries if e.status == "invalid")
        notes.append(f"entry {first.entry!r}: {first.detail}")
    return Resolution(
        value=value,
        device_order=device_order,
        entries=entries,
        targets=targets,
        order_known=all(t.nvml_index is not None for t in targets),
        notes=notes,
    )
