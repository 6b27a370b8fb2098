"""The smoke kernel's own code on CPU torch, and the real child process / real probe on this machine."""

import shutil

import pytest

torch = pytest.importorskip("torch")

from gpufix.hardware.probe import RealProbe, child_env  # noqa: E402
from gpufix.hardware.smoke import MATMUL_TOLERANCE, run_smoke  # noqa: E402


def test_smoke_kernel_runs_on_cpu_and_passes():
    out = run_smoke(torch.device("cpu"), matmul_n=96, buffer_bytes=1 << 20, repeats=1)
    mm, mem = out["matmul"], out["memory"]
    assert mm["ok"] is True and mm["tf32"] is False and mm["tolerance"] == MATMUL_TOLERANCE
    assert 0 < mm["rel_error"] <= MATMUL_TOLERANCE and mm["tflops"] > 0
    assert mem == {**mem, "bytes": 1 << 20, "patterns": 2, "mismatches": 0, "ok": True}
    assert mem["bandwidth_gbps"] > 0


def test_smoke_kernel_catches_reduced_precision():
    # a bf16 matmul (what TF32 / a bad kernel would look like, only worse) must not pass
    out = run_smoke("cpu", matmul_n=96, buffer_bytes=4096, repeats=1,
                    matmul=lambda a, b: (a.bfloat16() @ b.bfloat16()).float())
    assert out["matmul"]["ok"] is False and out["matmul"]["rel_error"] > 100 * MATMUL_TOLERANCE


def test_smoke_kernel_reports_a_crash_instead_of_raising():
    def boom(a, b):
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device\nmore")

    out = run_smoke("cpu", matmul_n=8, buffer_bytes=4096, repeats=1, matmul=boom)
    assert out["matmul"] == {"ok": False, "error": "RuntimeError: CUDA error: no kernel image is available "
                                                   "for execution on the device"}
    assert out["memory"]["ok"] is True


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has an NVIDIA driver")
def test_real_child_with_cpu_only_torch_reports_unavailable():
    if torch.version.cuda is not None:
        pytest.skip("torch here is a CUDA build")
    rep = RealProbe(matmul_n=16, buffer_bytes=4096).cuda_probe(child_env("1", "PCI_BUS_ID"), timeout=120)
    assert rep.unavailable_kind == "torch-cpu-only"
    assert rep.unavailable.startswith(f"torch {torch.__version__} is a CPU-only build")
    # the mask was in the child's environment when it started
    assert rep.env == {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
                       "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "0", "PYTORCH_NVML_BASED_CUDA_CHECK": None}


def test_real_child_timeout_raises_probe_timeout():
    from gpufix.hardware.model import ProbeTimeout

    with pytest.raises(ProbeTimeout, match="did not finish within 0.01 s"):
        RealProbe().cuda_probe(child_env("1", "PCI_BUS_ID"), timeout=0.01)


def _stub_torch(count, warn=None):
    import types
    import warnings

    def is_available():
        if warn:
            warnings.warn(warn)
        return count > 0

    def init():
        if count == 0:
            raise RuntimeError("No CUDA GPUs are available")

    props = [types.SimpleNamespace(name="NVIDIA GeForce RTX 3090", uuid="3b9e2d4f-8a6c-4d2f-8e11-222222222222",
                                   total_memory=25_438_715_904, major=8, minor=6)]
    cuda = types.SimpleNamespace(is_available=is_available, init=init,
                                 device_count=lambda: (is_available(), count)[1],
                                 get_arch_list=lambda: ["sm_80", "sm_86"],
                                 get_device_properties=lambda i: props[i])
    return types.SimpleNamespace(__version__="2.7.1+cu128", version=types.SimpleNamespace(cuda="12.8"), cuda=cuda,
                                 device=lambda *a: ("device", a))


def test_child_reports_devices_and_smoke_with_a_cuda_torch(monkeypatch):
    import sys

    from gpufix.hardware import child, smoke

    monkeypatch.setitem(sys.modules, "torch", _stub_torch(1))
    monkeypatch.setattr(smoke, "run_smoke", lambda device, **kw: {"device": device, **kw})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    out = child.probe({"matmul_n": 64, "buffer_bytes": 4096, "repeats": 1})
    assert out["devices"] == [{"index": 0, "name": "NVIDIA GeForce RTX 3090",
                               "uuid": "3b9e2d4f-8a6c-4d2f-8e11-222222222222", "total_memory": 25_438_715_904,
                               "capability": [8, 6], "integrated": None}]
    assert out["arch_list"] == ["sm_80", "sm_86"] and out["device_count"] == 1
    smoke_args = dict(out["smoke"])
    assert smoke_args.pop("torch") is sys.modules["torch"]  # the smoke kernel uses the torch the child imported
    assert smoke_args == {"device": ("device", ("cuda", 0)), "matmul_n": 64, "buffer_bytes": 4096, "repeats": 1}
    assert out["env"]["CUDA_VISIBLE_DEVICES"] == "1"


def test_child_with_no_device_names_the_mask_and_torchs_reason(monkeypatch):
    import sys

    from gpufix.hardware import child

    monkeypatch.setitem(sys.modules, "torch", _stub_torch(0, warn="CUDA initialization: CUDA driver is too old"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    out = child.probe({})
    assert out["unavailable_kind"] == "no-gpu"
    assert out["unavailable"] == ("no GPU visible under the mask (CUDA_VISIBLE_DEVICES='5', "
                                  "CUDA_DEVICE_ORDER='PCI_BUS_ID'): torch.cuda.init() says RuntimeError: No CUDA "
                                  "GPUs are available (CUDA initialization: CUDA driver is too old)")
    assert out["torch_version"] == "2.7.1+cu128" and out["device_count_before_init"] == 0


def test_child_without_torch(monkeypatch):
    import sys

    from gpufix.hardware import child

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    out = child.probe({})
    assert out["unavailable_kind"] == "torch-missing" and "pip install 'gpufix[check]'" in out["unavailable"]
