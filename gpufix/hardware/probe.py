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
            return self._inventory(pynvml)
        except pynvml.NVMLError as exc:
            raise ProbeError(f"NVML error while reading the GPUs: {exc}") from None
        finally:
            try:
                pynvml.nvmlShutdown()
            except Exception:
                pass

    def _inventory(self, nv: Any) -> Inventory:
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
            h = nv.nvmlDeviceGetHandleByIndex(i)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            cc = opt(nv.nvmlDeviceGetCudaComputeCapability, h)
            gpus.append(
                GpuInfo(
                    nvml_index=i,
                    name=_text(nv.nvmlDeviceGetName(h)),
                    uuid=_text(nv.nvmlDeviceGetUUID(h)),
                    pci_bus_id=_text(nv.nvmlDeviceGetPciInfo(h).busId),
                    memory_total_bytes=int(mem.total),
                    memory_free_bytes=int(mem.free),
                    compute_capability=f"{cc[0]}.{cc[1]}" if cc != NA else None,
                    ecc=self._ecc(nv, h, opt),
                    retired_pages=self._retired(nv, h, opt),
                    remapped_rows=self._remapped(nv, h, opt),
                    **self._mig(nv, h, opt),
                )
            )
        return Inventory(driver_version=driver, gpus=gpus, cuda_driver_version=cuda_drv)

    @staticmethod
    def _ecc(nv, h, opt):
        mode = opt(nv.nvmlDeviceGetEccMode, h)
        if mode == NA:
            return NA
        out = {"mode": "enabled" if mode[0] else "disabled"}
        for key, kind in (("volatile_corrected", nv.NVML_MEMORY_ERROR_TYPE_CORRECTED),
                          ("volatile_uncorrected", nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED)):
            out[key] = opt(nv.nvmlDeviceGetTotalEccErrors, h, kind, nv.NVML_VOLATILE_ECC)
        return out

    @staticmethod
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

    @staticmethod
    def _remapped(nv, h, opt):
        rows = opt(nv.nvmlDeviceGetRemappedRows, h)
        if rows == NA:
            return NA
        corr, unc, pending, failure = rows
        return {"correctable": corr, "uncorrectable": unc, "pending": bool(pending), "failure": bool(failure)}

    @staticmethod
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
                    continue
                mem = opt(nv.nvmlDeviceGetMemoryInfo, m)
                gi = opt(nv.nvmlDeviceGetGpuInstanceId, m)
                ci = opt(nv.nvmlDeviceGetComputeInstanceId, m)
                name = opt(nv.nvmlDeviceGetName, m)
                devices.append(
                    MigInfo(
                        uuid=_text(nv.nvmlDeviceGetUUID(m)),
                        gpu_instance_id=gi if gi != NA else None,
                        compute_instance_id=ci if ci != NA else None,
                        memory_total_bytes=int(mem.total) if mem != NA else None,
                        name=_text(name) if name != NA else None,
                    )
                )
        return {"mig_mode": enabled, "mig_devices": tuple(devices)}

    # ---- CUDA (child process) -----------------------------------------------------------
    def cuda_probe(self, env: Mapping[str, str], timeout: float) -> CudaReport:
        from gpufix.hardware.child import MARKER

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
        for line in reversed(proc.stdout.splitlines()):
            if line.startswith(MARKER):
                try:
                    data = json.loads(line[len(MARKER):])
                except ValueError:
                    break
                if "error" in data:
                    raise ProbeError(f"the CUDA child process failed: {data['error']}")
                return CudaReport.from_json(data)
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        how = f"was killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exited with code {proc.returncode}"
        raise ProbeError(f"the CUDA child process {how} without a result" + (f": {tail}" if tail else ""))


def child_env(visible_devices, device_order: str, base: Mapping[str, str] = None) -> dict:
    """The child's environment: `base` (default os.environ) with the policy's mask and order."""
    env = dict(os.environ if base is None else base)
    env["CUDA_DEVICE_ORDER"] = device_order
    if visible_devices is None:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        env["CUDA_VISIBLE_DEVICES"] = visible_devices
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env
