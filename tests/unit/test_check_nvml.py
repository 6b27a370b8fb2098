"""RealProbe.nvml_inventory against a stand-in pynvml module (this machine has no NVIDIA driver)."""

import sys
import types

import pytest

from gpufix.hardware.model import NA, ProbeUnavailable
from gpufix.hardware.probe import RealProbe


class NVMLError(Exception):
    def __init__(self, value):
        super().__init__(f"NVML error {value}")
        self.value = value


NOT_SUPPORTED, LIB_NOT_FOUND = 3, 12


def fake_pynvml(init_error=None, ecc=False):
    gpus = [
        dict(name=b"NVIDIA GeForce RTX 5060 Ti", uuid="GPU-5a1f", bus=b"00000000:00:00.0", total=16311 << 20,
             free=15000 << 20, cc=(12, 0)),
        dict(name="NVIDIA GeForce RTX 3090", uuid="GPU-3b9e", bus=b"00000000:01:00.0", total=24576 << 20,
             free=24000 << 20, cc=(8, 6)),
    ]

    def unsupported(*a):
        raise NVMLError(NOT_SUPPORTED)

    def init():
        if init_error:
            raise NVMLError(init_error)

    nv = types.SimpleNamespace(
        NVMLError=NVMLError, NVML_ERROR_LIBRARY_NOT_FOUND=LIB_NOT_FOUND, NVML_ERROR_DRIVER_NOT_LOADED=9,
        NVML_MEMORY_ERROR_TYPE_CORRECTED=0, NVML_MEMORY_ERROR_TYPE_UNCORRECTED=1, NVML_VOLATILE_ECC=0,
        NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS=0, NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR=1,
        NVML_DEVICE_MIG_ENABLE=1,
        nvmlInit=init, nvmlShutdown=lambda: None,
        nvmlSystemGetDriverVersion=lambda: "575.64.03", nvmlSystemGetCudaDriverVersion=lambda: 12090,
        nvmlDeviceGetCount=lambda: len(gpus), nvmlDeviceGetHandleByIndex=lambda i: gpus[i],
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(total=h["total"], free=h["free"]),
        nvmlDeviceGetCudaComputeCapability=lambda h: h["cc"],
        nvmlDeviceGetName=lambda h: h["name"], nvmlDeviceGetUUID=lambda h: h["uuid"],
        nvmlDeviceGetPciInfo=lambda h: types.SimpleNamespace(busId=h["bus"]),
        nvmlDeviceGetEccMode=(lambda h: [1, 1]) if ecc else unsupported,
        nvmlDeviceGetTotalEccErrors=lambda h, kind, counter: 0,
        nvmlDeviceGetRetiredPages=(lambda h, cause: [0x1000] * cause) if ecc else unsupported,
        nvmlDeviceGetRetiredPagesPendingStatus=lambda h: 0,
        nvmlDeviceGetRemappedRows=unsupported, nvmlDeviceGetMigMode=unsupported,
    )
    return nv


def test_inventory_with_unsupported_ecc_is_na(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    inv = RealProbe().nvml_inventory()
    assert (inv.driver_version, inv.cuda_driver_version) == ("575.64.03", "12.9")
    g = inv.gpus[1]
    assert (g.nvml_index, g.name, g.uuid, g.pci_bus_id, g.memory_total_bytes, g.memory_free_bytes,
            g.compute_capability) == (1, "NVIDIA GeForce RTX 3090", "GPU-3b9e", "00000000:01:00.0",
                                      24576 << 20, 24000 << 20, "8.6")
    assert inv.gpus[0].name == "NVIDIA GeForce RTX 5060 Ti" and inv.gpus[0].compute_capability == "12.0"
    assert (g.ecc, g.retired_pages, g.remapped_rows, g.mig_mode) == (NA, NA, NA, None)


def test_inventory_with_ecc(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(ecc=True))
    g = RealProbe().nvml_inventory().gpus[0]
    assert g.ecc == {"mode": "enabled", "volatile_corrected": 0, "volatile_uncorrected": 0}
    assert g.retired_pages == {"single_bit": 0, "double_bit": 1, "pending": False}


def test_missing_driver_and_missing_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error=LIB_NOT_FOUND))
    with pytest.raises(ProbeUnavailable, match="no NVIDIA driver: the NVML library"):
        RealProbe().nvml_inventory()
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(ProbeUnavailable, match=r"nvidia-ml-py \(module pynvml\) is not installed"):
        RealProbe().nvml_inventory()
