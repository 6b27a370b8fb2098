"""A second probe double, modelled on the real stack rather than on gpufix's own model of it.

`RealStackProbe` implements `gpufix.hardware.probe.Probe`, the seam the check uses, and nothing else
of gpufix is replaced. Behind that seam it runs gpufix's *real* code against models of the libraries:

* `nvml_inventory` runs `gpufix.hardware.probe.inventory_from_nvml` against `FakeNvml`: pynvml's API,
  raising pynvml's real error classes (`pynvml.NVMLError(code)` gives NVMLError_NotSupported,
  NVMLError_NoPermission, NVMLError_GpuIsLost, NVMLError_Uninitialized, ...) per call, as configured.
  `nvmlDeviceGetCount` is nvmlDeviceGetCount_v2, which counts GPUs whose handle lookup then fails
  with NO_PERMISSION (NVML API reference, nvmlDeviceGetCount_v2).
* `cuda_probe` runs `gpufix.hardware.child.probe` in-process against `FakeTorch`, whose
  `torch.cuda.device_count()` is torch's own code (torch 2.13, torch/cuda/__init__.py:
  `_parse_visible_devices`, `_transform_uuid_to_ordinals`, `_device_count_nvml`, `device_count`)
  rewritten here from that source, *not* imported from gpufix; whose `init()` fails the way
  `torch._C._cuda_init()` does (driver too old for the build, no device); whose device properties
  may lack `uuid`; whose TF32 flag obeys TORCH_ALLOW_TF32_CUBLAS_OVERRIDE on the torch versions
  where that override wins; and whose tensors are real CPU torch, so the smoke kernel really runs.
* The CUDA driver's own reading of the mask (what `cudaGetDeviceCount` sees after init) follows the
  CUDA documentation (CUDA C++ Programming Guide, "CUDA Environment Variables"): indices in
  CUDA_DEVICE_ORDER, `GPU-`/`MIG-` UUIDs and unique prefixes of them, the first invalid entry ends
  the list, one MIG instance per process; a GPU this process cannot open is not enumerated.
"""

from __future__ import annotations

import dataclasses
import json
import types
from typing import Mapping, Optional

import pynvml

from gpufix.hardware import child
from gpufix.hardware.model import CudaReport, Inventory, ProbeUnavailable
from gpufix.hardware.probe import inventory_from_nvml, report_from_child

NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
NO_PERMISSION = pynvml.NVML_ERROR_NO_PERMISSION
GPU_IS_LOST = pynvml.NVML_ERROR_GPU_IS_LOST
UNINITIALIZED = pynvml.NVML_ERROR_UNINITIALIZED
NOT_FOUND = pynvml.NVML_ERROR_NOT_FOUND

MIB = 2**20
ARCHS_CU128 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]


@dataclasses.dataclass
class Mig:
    uuid: str  # "MIG-..." (NVML's form since R470)
    gi: int
    ci: int
    nvml_total: int
    torch_total: int
    name: str = "NVIDIA A100-SXM4-80GB MIG 3g.40gb"


@dataclasses.dataclass
class Gpu:
    name: str
    uuid: str  # NVML's spelling: "GPU-" and lower-case hex
    bus: str  # "00000000:01:00.0"
    nvml_total: int  # nvmlDeviceGetMemoryInfo().total
    torch_total: int  # cudaDeviceProp.totalGlobalMem: what torch's total_memory reports
    cc: tuple
    fastest_rank: int = 0  # CUDA's FASTEST_FIRST position (0 = fastest)
    integrated: bool = False
    nvml_errors: dict = dataclasses.field(default_factory=dict)  # NVML function -> error code
    mig: list = dataclasses.field(default_factory=list)  # of Mig, when MIG mode is on
    ecc: bool = False  # data-centre boards: ECC queries answer; GeForce: NOT_SUPPORTED

    @property
    def cuda_can_open(self) -> bool:
        # NVML refusing the handle (permissions, a lost GPU) means CUDA cannot open it either
        return self.nvml_errors.get("nvmlDeviceGetHandleByIndex") is None and \
            GPU_IS_LOST not in self.nvml_errors.values()


@dataclasses.dataclass
class Machine:
    gpus: list
    driver: str = "575.64.03"
    driver_cuda: int = 12090  # nvmlSystemGetCudaDriverVersion: 1000*major + 10*minor
    nvml_library: bool = True
    torch_version: str = "2.7.1+cu128"
    torch_cuda: Optional[str] = "12.8"
    arch_list: list = dataclasses.field(default_factory=lambda: list(ARCHS_CU128))
    torch_has_uuid: bool = True  # older torch has no `uuid` in get_device_properties
    tf32_override_wins: bool = False  # torch versions where TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 forces TF32

    @property
    def driver_too_old(self) -> bool:
        """CUDA minor version compatibility: a build for CUDA X.y runs on any driver for CUDA X.0 or
        newer (CUDA Compatibility guide), so only an older major version is too old."""
        if self.torch_cuda is None:
            return False
        return self.driver_cuda < int(self.torch_cuda.split(".")[0]) * 1000


# ---- NVML ------------------------------------------------------------------------------------
class FakeNvml:
    """The part of pynvml gpufix calls, with pynvml's own error classes and constants."""

    NVMLError = pynvml.NVMLError

    def __init__(self, machine: Machine):
        self.m = machine
        self.initialized = False
        for name in dir(pynvml):
            if name.startswith("NVML_"):
                setattr(self, name, getattr(pynvml, name))

    def _check(self, fn: str, gpu: Optional[Gpu] = None):
        if not self.initialized:
            raise pynvml.NVMLError(UNINITIALIZED)
        code = gpu.nvml_errors.get(fn) if gpu is not None else None
        if code is not None:
            raise pynvml.NVMLError(code)

    def nvmlInit(self):
        if not self.m.nvml_library:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        self.initialized = True

    def nvmlShutdown(self):
        self._check("nvmlShutdown")
        self.initialized = False

    def nvmlSystemGetDriverVersion(self):
        self._check("nvmlSystemGetDriverVersion")
        return self.m.driver

    def nvmlSystemGetCudaDriverVersion(self):
        self._check("nvmlSystemGetCudaDriverVersion")
        return self.m.driver_cuda

    def nvmlDeviceGetCount(self):  # _v2: every GPU, including those the caller may not open
        self._check("nvmlDeviceGetCount")
        return len(self.m.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        if i >= len(self.m.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        self._check("nvmlDeviceGetHandleByIndex", self.m.gpus[i])
        return ("gpu", i)

    def _gpu(self, h, fn):
        kind, i, *rest = h
        gpu = self.m.gpus[i]
        self._check(fn, gpu)
        return gpu, (gpu.mig[rest[0]] if kind == "mig" else None)

    def nvmlDeviceGetName(self, h):
        gpu, mig = self._gpu(h, "nvmlDeviceGetName")
        return mig.name if mig else gpu.name

    def nvmlDeviceGetUUID(self, h):
        gpu, mig = self._gpu(h, "nvmlDeviceGetUUID")
        return mig.uuid if mig else gpu.uuid

    def nvmlDeviceGetPciInfo(self, h):
        gpu, _ = self._gpu(h, "nvmlDeviceGetPciInfo")
        return types.SimpleNamespace(busId=gpu.bus.encode())

    def nvmlDeviceGetMemoryInfo(self, h):
        gpu, mig = self._gpu(h, "nvmlDeviceGetMemoryInfo")
        total = mig.nvml_total if mig else gpu.nvml_total
        return types.SimpleNamespace(total=total, free=total - 400 * MIB, used=400 * MIB)

    def nvmlDeviceGetCudaComputeCapability(self, h):
        gpu, _ = self._gpu(h, "nvmlDeviceGetCudaComputeCapability")
        return gpu.cc

    def nvmlDeviceGetEccMode(self, h):
        gpu, _ = self._gpu(h, "nvmlDeviceGetEccMode")
        if not gpu.ecc:
            raise pynvml.NVMLError(NOT_SUPPORTED)
        return [1, 1]

    def nvmlDeviceGetTotalEccErrors(self, h, kind, counter):
        self._gpu(h, "nvmlDeviceGetTotalEccErrors")
        return 0

    def nvmlDeviceGetRetiredPages(self, h, cause):
        gpu, _ = self._gpu(h, "nvmlDeviceGetRetiredPages")
        if not gpu.ecc or gpu.cc >= (8, 0):  # Ampere+ remaps rows instead
            raise pynvml.NVMLError(NOT_SUPPORTED)
        return []

    def nvmlDeviceGetRetiredPagesPendingStatus(self, h):
        self._gpu(h, "nvmlDeviceGetRetiredPagesPendingStatus")
        return 0

    def nvmlDeviceGetRemappedRows(self, h):
        gpu, _ = self._gpu(h, "nvmlDeviceGetRemappedRows")
        if not gpu.ecc or gpu.cc < (8, 0):
            raise pynvml.NVMLError(NOT_SUPPORTED)
        return (0, 0, 0, 0)

    def nvmlDeviceGetMigMode(self, h):
        gpu, _ = self._gpu(h, "nvmlDeviceGetMigMode")
        if not gpu.ecc:  # GeForce boards have no MIG
            raise pynvml.NVMLError(NOT_SUPPORTED)
        return [1, 1] if gpu.mig else [0, 0]

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        self._gpu(h, "nvmlDeviceGetMaxMigDeviceCount")
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, j):
        gpu, _ = self._gpu(h, "nvmlDeviceGetMigDeviceHandleByIndex")
        if j >= len(gpu.mig):
            raise pynvml.NVMLError(NOT_FOUND)  # an empty slot
        return ("mig", h[1], j)

    def nvmlDeviceGetGpuInstanceId(self, h):
        _, mig = self._gpu(h, "nvmlDeviceGetGpuInstanceId")
        return mig.gi

    def nvmlDeviceGetComputeInstanceId(self, h):
        _, mig = self._gpu(h, "nvmlDeviceGetComputeInstanceId")
        return mig.ci

    # torch reads NVML through ctypes (return codes, not exceptions): these helpers give what
    # torch's _raw_device_count_nvml / _raw_device_uuid_nvml get
    def raw_count(self) -> int:
        return len(self.m.gpus) if self.m.nvml_library else -1

    def raw_uuids(self) -> Optional[list]:
        if not self.m.nvml_library:
            return None
        out = []
        for gpu in self.m.gpus:
            if gpu.nvml_errors.get("nvmlDeviceGetHandleByIndex") or gpu.nvml_errors.get("nvmlDeviceGetUUID"):
                return None  # "Can't get device handle" / "Can't get device UUID": torch gives up on NVML
            out.append(gpu.uuid)
        return out


# ---- the CUDA driver's reading of the mask (after init) -----------------------------------------
def cuda_enumeration(m: Machine, env: Mapping[str, str]) -> list:
    """[(gpu, mig or None)] in CUDA index order, as the CUDA driver reads CUDA_VISIBLE_DEVICES."""
    usable = [g for g in m.gpus if g.cuda_can_open]
    if env.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
        order = sorted(usable, key=lambda g: g.bus)
    else:  # FASTEST_FIRST is CUDA's default
        order = sorted(usable, key=lambda g: g.fastest_rank)
    mask = env.get("CUDA_VISIBLE_DEVICES")
    if mask is None:
        return [(g, None) for g in order if not g.mig]  # a GPU in MIG mode is not usable whole
    out: list = []
    mig_used = False
    for item in (e.strip() for e in mask.split(",")):
        found = None
        if item.isdigit():
            if int(item) < len(order):
                found = (order[int(item)], None)
        elif item.startswith("GPU-"):
            # how the driver matches a UUID in another case is not documented; matching it anyway is
            # the worst case for a disagreement with torch, which does not
            hits = [g for g in order if g.uuid.startswith("GPU-" + item[4:].lower())]
            found = (hits[0], None) if len(hits) == 1 else None
        elif item.startswith("MIG-"):
            hits = [(g, d) for g in order for d in g.mig if d.uuid.startswith(item)]
            found = hits[0] if len(hits) == 1 else None
        if found is None or found in out:
            break
        if found[1] is not None:
            if mig_used:
                continue
            mig_used = True
        out.append(found)
    return out


# ---- torch (torch 2.13, torch/cuda/__init__.py) ---------------------------------------------------
def _strtoul(s: str) -> int:
    if not s:
        return -1
    idx = 0
    for idx, c in enumerate(s):
        if not (c.isdigit() or (idx == 0 and c in "+-")):
            break
        if idx + 1 == len(s):
            idx += 1
    return int(s[:idx]) if idx > 0 else -1


def parse_visible_devices(var: Optional[str]) -> list:
    """torch.cuda._parse_visible_devices, CUDA builds."""
    if var is None:
        return list(range(64))

    def parse_list_with_prefix(lst: str, prefix: str) -> list:
        rcs: list = []
        for elem in lst.split(","):
            if elem in rcs:  # repeated id results in empty set
                return []
            if not elem.startswith(prefix):  # anything other but prefix is ignored
                break
            rcs.append(elem)
        return rcs

    if var.startswith("GPU-"):
        return parse_list_with_prefix(var, "GPU-")
    if var.startswith("MIG-"):
        return parse_list_with_prefix(var, "MIG-")
    rc: list = []
    for elem in var.split(","):
        x = _strtoul(elem.strip())
        if x in rc:  # repeated ordinal results in empty set
            return []
        if x < 0:  # negative value aborts the sequence
            break
        rc.append(x)
    return rc


def transform_uuid_to_ordinals(candidates: list, uuids: list) -> list:
    """torch.cuda._transform_uuid_to_ordinals."""
    def uuid_to_ordinal(candidate: str) -> int:
        best_match = -1
        for idx, uuid in enumerate(uuids):
            if not uuid.startswith(candidate):
                continue
            if best_match != -1:  # ambiguous candidate
                return -1
            best_match = idx
        return best_match

    rc: list = []
    for candidate in candidates:
        idx = uuid_to_ordinal(candidate)
        if idx < 0:  # first invalid ordinal stops parsing
            break
        if idx in rc:  # duplicates result in empty set
            return []
        rc.append(idx)
    return rc


def device_count_nvml(nvml: FakeNvml, var: Optional[str]) -> int:
    """torch.cuda._device_count_nvml: negative when NVML discovery fails."""
    visible = parse_visible_devices(var)
    if not visible:
        return 0
    if isinstance(visible[0], str):
        if visible[0].startswith("MIG-"):  # skip MIG parsing
            return -1
        uuids = nvml.raw_uuids()
        if uuids is None:
            return -1
        visible = transform_uuid_to_ordinals(visible, uuids)
    else:
        raw_cnt = nvml.raw_count()
        if raw_cnt <= 0:
            return raw_cnt
        for idx, val in enumerate(visible):  # trim the list up to a maximum available device
            if val >= raw_cnt:
                return idx
    return len(visible)


def _interval(start: int, exclude=()) -> set:
    return {cc for cc in range(start, start // 10 * 10 + 10) if cc not in exclude}


# torch/cuda/__init__.py DEVICE_REQUIREMENT: (code SM) -> device SMs that run it
DEVICE_REQUIREMENT = {
    50: _interval(50, {53}), 52: _interval(52, {53}), 53: {53}, 60: _interval(60, {62}), 61: _interval(61, {62}),
    62: {62}, 70: _interval(70, {72}), 72: {72}, 75: _interval(75), 80: _interval(80, {87}), 86: _interval(86, {87}),
    87: {87}, 89: _interval(89), 90: _interval(90), 100: _interval(100, {101}), 101: {101, 110},
    103: _interval(103), 110: _interval(110), 120: _interval(120), 121: _interval(121),
}


class _Uuid:
    """torch's _CUuuid: str() is the bare UUID (no GPU-/MIG- prefix)."""

    def __init__(self, nvml_uuid: str):
        self.text = nvml_uuid.split("-", 1)[1]

    def __str__(self):
        return self.text


def _tf32_round(t):
    """What TF32 tensor cores see of an fp32 input: 10 mantissa bits (the low 13 of 23 dropped)."""
    import torch as real

    return (t.contiguous().view(real.int32) & ~0x1FFF).view(real.float32)


class FakeTorch:
    """A CUDA build of torch on `machine`, in a process whose environment is `env`."""

    def __init__(self, machine: Machine, env: Mapping[str, str], nvml: FakeNvml):
        import torch as real

        self._real = real
        self._m = machine
        self._env = dict(env)
        self._nvml = nvml
        self._initialized = False
        self._allow_tf32 = False
        self._precision = "highest"
        self.__version__ = machine.torch_version
        self.version = types.SimpleNamespace(cuda=machine.torch_cuda, hip=None)
        fake = self

        class _Matmul:
            @property
            def allow_tf32(self):
                return fake._tf32_in_force()

            @allow_tf32.setter
            def allow_tf32(self, value):
                fake._allow_tf32 = bool(value)

            @property
            def fp32_precision(self):
                return "tf32" if fake._tf32_in_force() else "ieee"

        self.backends = types.SimpleNamespace(cuda=types.SimpleNamespace(matmul=_Matmul()))
        self.cuda = types.SimpleNamespace(
            device_count=self._device_count, init=self._init, get_arch_list=lambda: list(machine.arch_list),
            get_device_properties=self._props, synchronize=lambda device=None: None,
        )

    def __getattr__(self, name):  # tensors, dtypes, linalg...: real CPU torch
        return getattr(self._real, name)

    # the override is read once by cuBLAS (allowTF32CuBLAS) and wins over what the program sets
    def _tf32_in_force(self) -> bool:
        override = self._m.tf32_override_wins and self._env.get("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE") == "1"
        return override or self._allow_tf32 or self._precision != "highest"

    def get_float32_matmul_precision(self):
        return self._precision

    def set_float32_matmul_precision(self, value):
        self._precision = value

    def _kernel_image(self):
        """A kernel launch on a device the build has no code for fails (torch's family table:
        DEVICE_REQUIREMENT in torch/cuda/__init__.py; PTX compute_XY JIT-compiles for X.Y and up)."""
        gpu, _ = cuda_enumeration(self._m, self._env)[0]
        cc = gpu.cc[0] * 10 + gpu.cc[1]
        for arch in self._m.arch_list:
            kind, num = arch.split("_")
            code = int(num.rstrip("af"))
            if num.endswith("a"):
                ok = code == cc
            elif kind == "compute":
                ok = code <= cc
            else:
                ok = cc in DEVICE_REQUIREMENT.get(code, set(range(code, code // 10 * 10 + 10)))
            if ok:
                return
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device\n"
                           "CUDA kernel errors might be asynchronously reported at some other API call")

    def arange(self, *args, **kw):
        if "device" in kw:
            self._kernel_image()
        return self._real.arange(*args, **kw)

    def matmul(self, a, b):
        self._kernel_image()
        if self._tf32_in_force():
            return self._real.matmul(_tf32_round(a), _tf32_round(b))
        return self._real.matmul(a, b)

    def device(self, kind, index=None):
        if isinstance(kind, self._real.device):
            return kind
        return self._real.device("cpu")  # "GPU memory" is host memory here

    # torch.cuda
    def _runtime_count(self) -> int:
        """cudaGetDeviceCount: 0 when the driver cannot serve this build (it returns an error)."""
        if self._m.driver_too_old:
            return 0
        return len(cuda_enumeration(self._m, self._env))

    def _device_count(self) -> int:
        if self._initialized:
            return self._runtime_count()
        nvml_count = device_count_nvml(self._nvml, self._env.get("CUDA_VISIBLE_DEVICES"))
        return self._runtime_count() if nvml_count < 0 else nvml_count

    def _init(self):
        if self._initialized:
            return
        if self._m.driver_too_old:
            raise RuntimeError(
                f"The NVIDIA driver on your system is too old (found version {self._m.driver_cuda}). Please "
                "update your GPU driver by downloading and installing a new version from the URL: "
                "http://www.nvidia.com/Download/index.aspx Alternatively, go to: https://pytorch.org to install "
                "a PyTorch version that has been compiled with your version of the CUDA driver.")
        if self._runtime_count() == 0:
            raise RuntimeError("No CUDA GPUs are available")
        self._initialized = True

    def _props(self, i):
        self._init()
        devices = cuda_enumeration(self._m, self._env)
        if i < 0 or i >= len(devices):
            raise AssertionError("Invalid device id")
        gpu, mig = devices[i]
        props = types.SimpleNamespace(
            name=gpu.name, major=gpu.cc[0], minor=gpu.cc[1], is_integrated=int(gpu.integrated),
            total_memory=mig.torch_total if mig else gpu.torch_total, multi_processor_count=80)
        if self._m.torch_has_uuid:
            props.uuid = _Uuid(mig.uuid if mig else gpu.uuid)
        return props


# ---- the probe -----------------------------------------------------------------------------------
class RealStackProbe:
    """gpufix's real NVML reader and real child code, against models of NVML, torch and CUDA."""

    def __init__(self, machine: Machine, smoke_n: int = 256):
        self.machine = machine
        self.params = {"matmul_n": smoke_n, "buffer_bytes": 1 << 20, "repeats": 1}
        self.cuda_envs: list = []

    def nvml_inventory(self) -> Inventory:
        nv = FakeNvml(self.machine)
        try:
            nv.nvmlInit()
        except pynvml.NVMLError:
            raise ProbeUnavailable("no NVIDIA driver: the NVML library was not found", "nvml-library") from None
        try:
            return inventory_from_nvml(nv)
        finally:
            nv.nvmlShutdown()

    def cuda_probe(self, env: Mapping[str, str], timeout: float) -> CudaReport:
        self.cuda_envs.append(dict(env))
        return report_from_child(*self.child_output(env), 0)

    def child_output(self, env: Mapping[str, str]) -> tuple:
        """(stdout, stderr) of the child, run in-process on FakeTorch, as child.main prints them."""
        nv = FakeNvml(self.machine)
        nv.nvmlInit()
        fake = FakeTorch(self.machine, env, nv)
        result: dict = {}
        try:
            child.probe(self.params, result, torch=fake, environ=env)
        except BaseException as exc:  # as child.main: keep what was read
            result["error"] = f"{type(exc).__name__}: {exc}".rstrip(": ")
        return child.MARKER + json.dumps(result, default=str) + "\n", ""


# ---- machines ----------------------------------------------------------------------------------
UUID_5060 = "GPU-5a1f0c3e-7d2b-4c1e-9f00-111111111111"
UUID_3090 = "GPU-3b9e2d4f-8a6c-4d2f-8e11-222222222222"


def user_machine(**kw) -> Machine:
    """The user's desktop: RTX 5060 Ti 16 GB on PCI bus 0, RTX 3090 24 GB on bus 1; CUDA ranks the
    3090 fastest."""
    return Machine(gpus=[
        Gpu("NVIDIA GeForce RTX 5060 Ti", UUID_5060, "00000000:00:00.0", 16311 * MIB, 15848 * MIB, (12, 0),
            fastest_rank=1),
        Gpu("NVIDIA GeForce RTX 3090", UUID_3090, "00000000:01:00.0", 24576 * MIB, 24135 * MIB, (8, 6),
            fastest_rank=0),
    ], **kw)


def a100_80gb(mig: bool = False, **kw) -> Machine:
    """One A100-SXM4-80GB: 81,920 MiB in NVML, 81,153 MiB in torch (issue 15)."""
    gpu = Gpu("NVIDIA A100-SXM4-80GB", "GPU-a100a100-0000-4000-8000-000000000001", "00000000:07:00.0",
              81920 * MIB, 81153 * MIB, (8, 0), ecc=True)
    if mig:
        gpu.mig = [Mig("MIG-aaaa1111-2222-4333-8444-555555555555", 1, 0, 40192 * MIB, 39808 * MIB),
                   Mig("MIG-bbbb1111-2222-4333-8444-555555555555", 2, 0, 40192 * MIB, 39808 * MIB)]
    kw.setdefault("driver", "550.54.15")
    kw.setdefault("driver_cuda", 12040)
    return Machine(gpus=[gpu], **kw)


def dgx_spark(**kw) -> Machine:
    """GB10 (DGX Spark): one integrated GPU on unified memory; nvmlDeviceGetMemoryInfo is NOT_SUPPORTED."""
    return Machine(gpus=[
        Gpu("NVIDIA GB10", "GPU-9b10a0b1-0000-4000-8000-0000000000b1", "0000000F:01:00.0", 0, 128_526 * MIB,
            (12, 1), integrated=True, nvml_errors={"nvmlDeviceGetMemoryInfo": NOT_SUPPORTED}),
    ], **{"driver": "580.95.05", "driver_cuda": 13000, **kw})


def jetson_orin(**kw) -> Machine:
    """Jetson AGX Orin: integrated compute capability 8.7, memory shared with the host."""
    kw.setdefault("arch_list", ["sm_80", "sm_86", "sm_90"])
    return Machine(gpus=[
        Gpu("Orin", "GPU-0a1b2c3d-0000-4000-8000-00000000087f", "00000000:00:00.0", 0, 62_841 * MIB, (8, 7),
            integrated=True, nvml_errors={"nvmlDeviceGetMemoryInfo": NOT_SUPPORTED}),
    ], **{"driver": "540.4.0", "driver_cuda": 12060, **kw})
