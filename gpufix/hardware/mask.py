"""The policy's CUDA_VISIBLE_DEVICES resolved against the NVML inventory, as CUDA reads it.

* index entries count GPUs in CUDA_DEVICE_ORDER: under PCI_BUS_ID that is PCI bus order (what NVML
  indices follow); under FASTEST_FIRST it is CUDA's own ranking, which NVML cannot tell, so index
  entries then map to no known physical GPU (unless there is only one GPU);
* `GPU-<uuid>` entries, and unique prefixes of them, name a GPU whatever the order;
* `MIG-<uuid>` / `MIG-GPU-<uuid>/<gi>/<ci>` entries name a MIG instance; CUDA uses one MIG instance
  per process (the first one the mask names);
* the first entry that names no GPU (an index past the end, an unknown or ambiguous UUID prefix, a
  GPU already listed) ends the list: it and everything after it are ignored.
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


def pci_order(inventory: Inventory) -> list:
    """The GPUs in PCI bus order (domain, bus, device, function): CUDA's PCI_BUS_ID order."""

    def key(g):
        try:
            dom, bus, rest = g.pci_bus_id.split(":")
            dev, fn = rest.split(".")
            return (int(dom, 16), int(bus, 16), int(dev, 16), int(fn, 16), g.nvml_index)
        except ValueError:
            return (1 << 40, 0, 0, 0, g.nvml_index)

    return sorted(inventory.gpus, key=key)


def _label(g) -> str:
    return f"GPU {g.nvml_index} {g.name} ({g.pci_bus_id})"


def resolve_mask(value: Optional[str], device_order: str, inventory: Inventory) -> Resolution:
    gpus = pci_order(inventory)
    n = len(gpus)
    notes: list = []
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
                    f"0-{n - 1})" if n else "none)")
            elif index_order_known:
                gpu = gpus[raw]
        elif raw.upper().startswith("GPU-"):
            matches = [g for g in gpus if uuid_has_prefix(g.uuid, raw)]
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
                        if (uuid_body(g.uuid) == uuid_body(m.group(1)) and d.gpu_instance_id == int(m.group(2))
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
                problem = "names a device already listed"
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
