"""The smoke kernel: a plain function of a torch device (runs on CPU torch in the tests)."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

# Relative Frobenius error of an fp32 matmul against a float64 reference computed from the same
# (fp32-rounded) inputs. Plain fp32 accumulation gives ~1e-7..1e-6 at these sizes; TF32 (10-bit
# mantissa inputs) gives ~3e-4, bf16 ~3e-3, a broken GPU far more.
MATMUL_TOLERANCE = 2e-5
PATTERN = 0x5A5A5A5A


def _sync(torch: Any, device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_smoke(
    device: Any,
    matmul_n: int = 2048,
    buffer_bytes: int = 256 * 2**20,
    repeats: int = 3,
    matmul: Optional[Callable] = None,
    torch: Any = None,
) -> dict:
    """Run the fp32 matmul and the memory write/read-back pattern on `device`; return the numbers.

    `matmul` replaces `torch.matmul` (tests use it to show that a reduced-precision result fails);
    `torch` replaces the torch module (the tests' model of a CUDA torch runs this code on CPU torch).
    """
    if torch is None:
        import torch

    device = torch.device(device)
    matmul = matmul or torch.matmul
    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    old_precision = torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        precision = precision_in_force(torch)
        return {
            "device": str(device),
            "precision": precision,
            "matmul": _guard(_matmul_check, torch, device, matmul_n, repeats, matmul, precision),
            "memory": _guard(_memory_check, torch, device, buffer_bytes, repeats),
        }
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_tf32
        torch.set_float32_matmul_precision(old_precision)


def precision_in_force(torch: Any) -> dict:
    """The fp32 matmul precision torch reports after the smoke kernel asked for full fp32: read back,
    not assumed (TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 makes some torch versions keep TF32 on)."""
    out = {"allow_tf32": None, "float32_matmul_precision": None, "fp32_precision": None}
    try:
        out["allow_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
    except Exception:
        pass
    try:
        out["float32_matmul_precision"] = str(torch.get_float32_matmul_precision())
    except Exception:
        pass
    try:  # the newer API (torch 2.9+): "ieee" is full fp32, "tf32" is TF32
        out["fp32_precision"] = str(torch.backends.cuda.matmul.fp32_precision)
    except Exception:
        pass
    out["tf32"] = bool(out["allow_tf32"]) or out["fp32_precision"] == "tf32"
    return out


def _guard(fn: Callable, *args: Any) -> dict:
    """One part's result, or {"ok": False, "error": ...} when it raised (an OOM, no kernel image)."""
    try:
        return fn(*args)
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        return {"ok": False, "error": f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]}


def _matmul_check(torch: Any, device: Any, n: int, repeats: int, matmul: Callable, precision: dict) -> dict:
    gen = torch.Generator().manual_seed(1234)
    a = torch.rand((n, n), generator=gen, dtype=torch.float64).mul_(2).sub_(1).to(torch.float32)
    b = torch.rand((n, n), generator=gen, dtype=torch.float64).mul_(2).sub_(1).to(torch.float32)
    ref = a.double() @ b.double()
    da, db = a.to(device), b.to(device)
    out = matmul(da, db)  # warm-up, and the result we check
    _sync(torch, device)
    got = out.to("cpu", torch.float64)
    diff = got - ref
    rel = float(torch.linalg.norm(diff) / torch.linalg.norm(ref))
    max_abs = float(diff.abs().max())
    finite = bool(torch.isfinite(got).all())
    start = time.perf_counter()
    for _ in range(max(1, repeats)):
        matmul(da, db)
    _sync(torch, device)
    seconds = time.perf_counter() - start
    flops = 2.0 * n**3 * max(1, repeats)
    return {
        "n": n,
        "dtype": "float32",
        "tf32": precision["tf32"],  # what torch reports in force, not what was asked for
        "reference": "cpu float64",
        "metric": "relative Frobenius error",
        "rel_error": rel,
        "max_abs_error": max_abs,
        "tolerance": MATMUL_TOLERANCE,
        "ok": finite and rel <= MATMUL_TOLERANCE,
        "seconds": seconds,
        "tflops": flops / seconds / 1e12 if seconds > 0 else None,
    }


def _memory_check(torch: Any, device: Any, nbytes: int, repeats: int) -> dict:
    count = max(1, nbytes // 4)
    idx_cpu = torch.arange(count, dtype=torch.int32)
    mismatches = 0
    patterns = 0
    for pattern in (PATTERN, ~PATTERN):
        expected = torch.bitwise_xor(idx_cpu, pattern)
        buf = torch.arange(count, dtype=torch.int32, device=device)
        buf.bitwise_xor_(pattern)  # written on the device
        _sync(torch, device)
        back = buf.to("cpu")  # read back through the host
        mismatches += int((back != expected).sum())
        patterns += 1
        del back, expected
    dst = torch.empty_like(buf)
    dst.copy_(buf)
    _sync(torch, device)
    start = time.perf_counter()
    for _ in range(max(1, repeats)):
        dst.copy_(buf)
    _sync(torch, device)
    seconds = time.perf_counter() - start
    mismatches += int((dst != buf).sum())  # the copies must agree too
    moved = 2.0 * count * 4 * max(1, repeats)  # read + write
    return {
        "bytes": count * 4,
        "patterns": patterns,
        "mismatches": mismatches,
        "ok": mismatches == 0,
        "seconds": seconds,
        "bandwidth_gbps": moved / seconds / 1e9 if seconds > 0 else None,
    }
