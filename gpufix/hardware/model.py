"""Plain data that crosses the probe seam (no pynvml / torch imports here)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

NA = "n/a"  # what NVML says is not supported on a GPU: reported, never a failure


class ProbeUnavailable(Exception):
    """The check cannot run: no NVIDIA driver / NVML, no torch, a CPU-only torch, no GPU.

    `kind` is a short stable word (nvml-missing, nvml-library, driver, torch-missing, torch-cpu-only,
    no-gpu); the message names the cause and the way out.
    """

    def __init__(self, message: str, kind: str = "unavailable"):
        super().__init__(message)
        self.kind = kind


class ProbeError(Exception):
    """The probe ran but broke (NVML error on a GPU, the CUDA child crashed): a failed check."""


class ProbeTimeout(ProbeError):
    """The CUDA child did not finish within the timeout."""

    def __init__(self, timeout: float):
        super().__init__(f"the CUDA child process did not finish within {timeout:g} s and was killed")
        self.timeout = timeout


@dataclasses.dataclass
class MigInfo:
    uuid: str  # "MIG-..." as NVML reports it
    gpu_instance_id: Optional[int] = None
    compute_instance_id: Optional[int] = None
    memory_total_bytes: Optional[int] = None
    name: Optional[str] = None


@dataclasses.dataclass
class GpuInfo:
    """One GPU as NVML reads it. A field NVML could not read is None (reported as "n/a") and the NVML
    error is kept in `errors`; a GPU whose handle NVML cannot open at all (NO_PERMISSION, GPU_IS_LOST)
    has `state` "inaccessible" and only its index is known."""

    nvml_index: int
    name: Optional[str]
    uuid: Optional[str]  # "GPU-..."
    pci_bus_id: Optional[str]  # "00000000:01:00.0"
    memory_total_bytes: Optional[int]  # None: NVML says NOT_SUPPORTED (integrated / unified-memory GPUs)
    memory_free_bytes: Optional[int]
    compute_capability: Optional[str]  # "8.6"
    ecc: Any = NA  # {"mode": "enabled"|"disabled", "volatile_corrected", "volatile_uncorrected"} or "n/a"
    retired_pages: Any = NA  # {"single_bit", "double_bit", "pending"} or "n/a"
    remapped_rows: Any = NA  # {"correctable", "uncorrectable", "pending", "failure"} or "n/a"
    mig_mode: Optional[bool] = None  # None: not supported
    mig_devices: tuple = ()  # tuple of MigInfo
    state: str = "ok"  # "ok" | "inaccessible"
    errors: dict = dataclasses.field(default_factory=dict)  # field -> NVML error text

    @property
    def accessible(self) -> bool:
        return self.state == "ok"

    @property
    def label(self) -> str:
        if not self.accessible:
            return f"GPU {self.nvml_index} (inaccessible)"
        return f"GPU {self.nvml_index} {self.name or '?'} ({self.pci_bus_id or 'bus n/a'})"


@dataclasses.dataclass
class Inventory:
    driver_version: Optional[str]
    gpus: list
    cuda_driver_version: Optional[str] = None

    @property
    def accessible(self) -> list:
        return [g for g in self.gpus if g.accessible]


@dataclasses.dataclass
class CudaDevice:
    index: int
    name: str
    uuid: str  # "" when this torch does not report UUIDs (older torch has no `uuid` property)
    total_memory: int
    capability: tuple  # (major, minor)
    integrated: Optional[bool] = None  # cudaDeviceProp.integrated: shares memory with the host


@dataclasses.dataclass
class CudaReport:
    """What the child process saw (it prints this as one JSON object)."""

    torch_version: Optional[str] = None
    torch_cuda: Optional[str] = None
    arch_list: list = dataclasses.field(default_factory=list)
    # torch.cuda.device_count() before CUDA initialises: torch's own NVML-based parse of the mask
    # (torch.cuda._device_count_nvml), or the runtime's count when that parse gives up
    device_count_before_init: Optional[int] = None
    init_error: Optional[str] = None  # torch.cuda.init() raised this (driver too old, no device, ...)
    device_count: int = 0  # the CUDA runtime's count after torch.cuda.init() (cudaGetDeviceCount)
    devices: list = dataclasses.field(default_factory=list)  # of CudaDevice
    device_errors: list = dataclasses.field(default_factory=list)  # "cuda:N: error" for devices not read
    precision: Optional[dict] = None  # the fp32 matmul precision in force during the smoke kernel
    smoke: Optional[dict] = None
    smoke_error: Optional[str] = None
    unavailable: Optional[str] = None  # message, when the child could not use CUDA
    unavailable_kind: Optional[str] = None  # torch-missing | torch-cpu-only | no-gpu | torch-broken
    error: Optional[str] = None  # the child broke part-way; everything above it was kept
    env: dict = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["devices"] = [dataclasses.asdict(d) if dataclasses.is_dataclass(d) else d for d in self.devices]
        for d in data["devices"]:
            d["capability"] = list(d["capability"])
        return data

    @classmethod
    def from_json(cls, data: dict) -> "CudaReport":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        kw["devices"] = [
            CudaDevice(
                index=int(d["index"]),
                name=str(d["name"]),
                uuid=str(d["uuid"]),
                total_memory=int(d["total_memory"]),
                capability=tuple(d["capability"]),
                integrated=d.get("integrated"),
            )
            for d in data.get("devices") or []
        ]
        return cls(**kw)


_UUID_PREFIX = re.compile(r"^(gpu|mig)-", re.IGNORECASE)


def uuid_body(uuid: str) -> str:
    """A UUID without its GPU-/MIG- prefix, lower case: torch prints bare UUIDs, NVML prefixed ones."""
    return _UUID_PREFIX.sub("", (uuid or "").strip()).lower()


def same_uuid(a: Optional[str], b: Optional[str]) -> bool:
    return bool(a) and bool(b) and uuid_body(a) == uuid_body(b)


def uuid_has_prefix(uuid: str, prefix: str) -> bool:
    """CUDA accepts a unique prefix of a GPU UUID: does `prefix` match `uuid`?"""
    body = uuid_body(prefix)
    return bool(body) and uuid_body(uuid).startswith(body)


_BUS_RE = re.compile(r"^(?:([0-9a-f]{1,8}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])$", re.IGNORECASE)


def normalize_bus_id(value: str) -> Optional[str]:
    """"01:00.0", "0000:01:00.0", "00000000:01:00.0" -> "00000000:01:00.0"; None if not a bus id."""
    m = _BUS_RE.match((value or "").strip())
    if not m:
        return None
    domain, bus, dev, fn = m.groups()
    return f"{int(domain or '0', 16):08x}:{int(bus, 16):02x}:{int(dev, 16):02x}.{fn}".upper()


def gib(nbytes: Optional[float]) -> str:
    if nbytes is None:
        return "?"
    return f"{nbytes / 2**30:.2f} GiB"
