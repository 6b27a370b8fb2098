"""The probe seam: the only place that touches NVML (pynvml) and CUDA (a torch child process).

`Probe` is what the check and `gpufix init` need; `RealProbe` implements it. pynvml and torch are
imported inside these functions only, never at module import time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Protocol, runtime_checkable

from gpufix.hardware.model import (
    NA,
    CudaReport,
    GpuInfo,
    Inventory,
    MigInfo,
    ProbeError,
    ProbeTimeout,
    ProbeUnavailable,
)


@runtime_checkable
class Probe(Protocol):
    def nvml_inventory(self) -> Inventory:
        """The driver and every physical GPU; raises ProbeUnavailable / ProbeError."""

    def cuda_probe(self, env: Mapping[str, str], timeout: float) -> CudaReport:
        """Run the CUDA side in a fresh process with exactly `env`; raises ProbeTimeout / ProbeError."""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class RealProbe:
    """NVML through nvidia-ml-py, CUDA through a torch child process."""

    def __init__(self, matmul_n: int = 2048, buffer_bytes: int = 256 * 2**20, repeats: int = 3):
        self.params = {"matmul_n": matmul_n, "buffer_bytes": buffer_bytes, "repeats": repeats}

    # ---- NVML -----------------------------------------------------------------------------
    def nvml_inventory(self) -> Inventory:
        try:
            import pynvml
        except ImportError:
            raise ProbeUnavailable(
                "nvidia-ml-py (module pynvml) is not installed: pip install 'gpufix[check]'",
                "nvml-missing",
            ) from None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code == pynvml.NVML_ERROR_LIBRARY_NOT_FOUND:
                raise ProbeUnavailable(
                    "no NVIDIA driver: the NVML library (libnvidia-ml.so.1 / nvml.dll) was not found",
                    "nvml-library",
                ) from None
            if code == pynvml.NVML_ERROR_DRIVER_NOT_LOADED:
                raise ProbeUnavailable("the NVIDIA driver is not loaded (NVML: Driver Not Loaded)", "driver") from None
            raise ProbeUnavailable(f"NVML failed to initialise: {exc}", "driver") from None
        except OSError as exc:
            raise ProbeUnavailable(f"no NVIDIA driver: loading NVML failed: {exc}", "nvml-library") from None
        try:
            return inventory_from_nvml(pynvml)
        except pynvml.NVMLError as exc:
            raise ProbeError(f"NVML error while reading the driver and the GPU count: {exc}") from None
        finally:
            try:
                pynvml.nvmlShutdown()
            except Exception:
                pass

    # ---- CUDA (child process) -----------------------------------------------------------
    def cuda_probe(self, env: Mapping[str, str], timeout: float) -> CudaReport:
        root = str(Path(__file__).resolve().parents[2])  # the directory holding the gpufix package
        code = (
            "import sys; sys.path.insert(0, %r); "
            "from gpufix.hardware.child import main; sys.exit(main())" % root
        )
        try:
            proc = subprocess.run(
                [sys.executable, "-c", code, json.dumps(self.params)],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise ProbeTimeout(timeout) from None
        except OSError as exc:
            raise ProbeError(f"could not start the CUDA child process ({sys.executable}): {exc}") from None
        return report_from_child(proc.stdout, proc.stderr, proc.returncode)


def report_from_child(stdout: str, stderr: str, returncode: int) -> CudaReport:
    """The child's one JSON line as a CudaReport. A child that broke part-way still gives what it read
    (torch version, environment, devices) with `error` set; only a child that printed nothing usable
    is a ProbeError."""
    from gpufix.hardware.child import MARKER

    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            try:
                data = json.loads(line[len(MARKER):])
            except ValueError:
                break
            try:
                return CudaReport.from_json(data)
            except (KeyError, TypeError, ValueError) as exc:
                raise ProbeError(f"the CUDA child process printed a result gpufix cannot read: {exc}") from None
    tail = " | ".join(stderr.strip().splitlines()[-3:])
    how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
    raise ProbeError(f"the CUDA child process {how} without a result" + (f": {tail}" if tail else ""))


def _nvml_error_text(exc: BaseException) -> str:
    """"Insufficient Permissions (NVML_ERROR_NO_PERMISSION)": pynvml's text and the error's name."""
    code = getattr(exc, "value", None)
    name = _NVML_NAMES.get(code)
    text = str(exc)
    return f"{text} ({name})" if name and name not in text else text


_NVML_NAMES = {1: "NVML_ERROR_UNINITIALIZED", 3: "NVML_ERROR_NOT_SUPPORTED", 4: "NVML_ERROR_NO_PERMISSION",
               13: "NVML_ERROR_FUNCTION_NOT_FOUND", 15: "NVML_ERROR_GPU_IS_LOST", 999: "NVML_ERROR_UNKNOWN"}
_GPU_IS_LOST = 15


def inventory_from_nvml(nv: Any) -> Inventory:
    """The driver and every GPU NVML counts, read through `nv` (the pynvml module, or a double of it).

    Only the driver version and the device count are needed for an inventory: every per-GPU call may
    fail on its own (NOT_SUPPORTED for memory on unified-memory GPUs, NO_PERMISSION for a GPU this user
    may not open, which nvmlDeviceGetCount_v2 still counts, GPU_IS_LOST, ...). Such a failure makes that
    field None ("n/a") or that GPU "inaccessible", never a failure of the whole inventory.
    """
    def opt(fn, *args):
        try:
            return fn(*args)
        except nv.NVMLError:
            return NA
        except (AttributeError, TypeError):  # an old pynvml without the function
            return NA

    driver = _text(nv.nvmlSystemGetDriverVersion())
    cuda_drv = opt(nv.nvmlSystemGetCudaDriverVersion)
    cuda_drv = f"{cuda_drv // 1000}.{cuda_drv % 1000 // 10}" if isinstance(cuda_drv, int) else None
    gpus = []
    for i in range(nv.nvmlDeviceGetCount()):
        errors: dict = {}
        lost = False

        def field(key, fn, *args):
            nonlocal lost
            try:
                return fn(*args)
            except nv.NVMLError as exc:
                errors[key] = _nvml_error_text(exc)
                lost = lost or getattr(exc, "value", None) == _GPU_IS_LOST
                return None
            except (AttributeError, TypeError) as exc:
                errors[key] = f"{type(exc).__name__}: {exc}"
                return None

        h = field("handle", nv.nvmlDeviceGetHandleByIndex, i)
        if h is None:
            gpus.append(GpuInfo(i, None, None, None, None, None, None, state="inaccessible", errors=errors))
            continue
        name = field("name", nv.nvmlDeviceGetName, h)
        uuid = field("uuid", nv.nvmlDeviceGetUUID, h)
        pci = field("pci_bus_id", nv.nvmlDeviceGetPciInfo, h)
        mem = field("memory", nv.nvmlDeviceGetMemoryInfo, h)
        cc = field("compute_capability", nv.nvmlDeviceGetCudaComputeCapability, h)
        gpu = GpuInfo(
            nvml_index=i,
            name=_text(name) if name is not None else None,
            uuid=_text(uuid) if uuid is not None else None,
            pci_bus_id=_text(pci.busId) if pci is not None else None,
            memory_total_bytes=int(mem.total) if mem is not None else None,
            memory_free_bytes=int(mem.free) if mem is not None else None,
            compute_capability=f"{cc[0]}.{cc[1]}" if cc is not None else None,
            ecc=_ecc(nv, h, opt),
            retired_pages=_retired(nv, h, opt),
            remapped_rows=_remapped(nv, h, opt),
            errors=errors,
            **_mig(nv, h, opt),
        )
        if lost:  # the GPU fell off the bus after its handle was opened: nothing can use it
            gpu.state = "inaccessible"
        gpus.append(gpu)
    return Inventory(driver_version=driver, gpus=gpus, cuda_driver_version=cuda_drv)


def _ecc(nv, h, opt):
    mode = opt(nv.nvmlDeviceGetEccMode, h)
    if mode == NA:
        return NA
    out = {"mode": "enabled" if mode[0] else "disabled"}
    for key, kind in (("volatile_corrected", nv.NVML_MEMORY_ERROR_TYPE_CORRECTED),
                      ("volatile_uncorrected", nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED)):
        out[key] = opt(nv.nvmlDeviceGetTotalEccErrors, h, kind, nv.NVML_VOLATILE_ECC)
    return out


def _retired(nv, h, opt):
    single = opt(nv.nvmlDeviceGetRetiredPages, h, nv.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS)
    double = opt(nv.nvmlDeviceGetRetiredPages, h, nv.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)
    if single == NA and double == NA:
        return NA
    pending = opt(nv.nvmlDeviceGetRetiredPagesPendingStatus, h)
    return {
        "single_bit": len(single) if single != NA else NA,
        "double_bit": len(double) if double != NA else NA,
        "pending": bool(pending) if pending != NA else NA,
    }


def _remapped(nv, h, opt):
    rows = opt(nv.nvmlDeviceGetRemappedRows, h)
    if rows == NA:
        return NA
    corr, unc, pending, failure = rows
    return {"correctable": corr, "uncorrectable": unc, "pending": bool(pending), "failure": bool(failure)}


def _mig(nv, h, opt):
    mode = opt(nv.nvmlDeviceGetMigMode, h)
    if mode == NA:
        return {"mig_mode": None, "mig_devices": ()}
    enabled = mode[0] == nv.NVML_DEVICE_MIG_ENABLE
    devices = []
    if enabled:
        count = opt(nv.nvmlDeviceGetMaxMigDeviceCount, h)
        for j in range(count if isinstance(count, int) else 0):
            m = opt(nv.nvmlDeviceGetMigDeviceHandleByIndex, h, j)
            if m == NA:
                continue  # an empty slot: NVML answers NOT_FOUND for unused MIG indices
            uuid = opt(nv.nvmlDeviceGetUUID, m)
            if uuid == NA:
                continue
            mem = opt(nv.nvmlDeviceGetMemoryInfo, m)
            gi = opt(nv.nvmlDeviceGetGpuInstanceId, m)
            ci = opt(nv.nvmlDeviceGetComputeInstanceId, m)
            name = opt(nv.nvmlDeviceGetName, m)
            devices.append(
                MigInfo(
                    uuid=_text(uuid),
                    gpu_instance_id=gi if gi != NA else None,
                    compute_instance_id=ci if ci != NA else None,
                    memory_total_bytes=int(mem.total) if mem != NA else None,
                    name=_text(name) if name != NA else None,
                )
            )
    return {"mig_mode": enabled, "mig_devices": tuple(devices)}


TF32_OVERRIDE = "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"


def child_env(visible_devices, device_order: str, base: Mapping[str, str] = None) -> dict:
    """The child's environment: `base` (default os.environ) with the policy's mask and order."""
    env = dict(os.environ if base is None else base)
    env["CUDA_DEVICE_ORDER"] = device_order
    # Some torch versions let TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 force TF32 in cuBLAS whatever the
    # program sets (read once, at the first matmul): the smoke kernel tests fp32, so the child pins it off.
    env[TF32_OVERRIDE] = "0"
    if visible_devices is None:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        env["CUDA_VISIBLE_DEVICES"] = visible_devices
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env
