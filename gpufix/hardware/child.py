"""The CUDA side of `gpufix check`, run in a fresh child process.

The parent starts `python -c ...` with CUDA_DEVICE_ORDER and CUDA_VISIBLE_DEVICES already in the
environment (a mask set after CUDA initialised is ignored). This module prints exactly one line
`GPUFIX-CHILD-JSON: {...}` on stdout and never a traceback.

Every step is guarded and its result stored as soon as it is known, so a step that raises (CUDA
initialisation with a driver too old for this torch build, one device's properties, the smoke
kernel) leaves what was read before it in the result: torch's version, the environment, the counts,
the devices read.
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from typing import Any, Mapping, Optional

MARKER = "GPUFIX-CHILD-JSON: "
ENV_KEYS = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
            "PYTORCH_NVML_BASED_CUDA_CHECK")
# what torch._C._cuda_init() raises when the CUDA runtime enumerates no device under the mask
_NO_DEVICE = re.compile(r"no CUDA GPUs are available|no CUDA-capable device|CUDA_ERROR_NO_DEVICE", re.IGNORECASE)


def _env_text(env: dict) -> str:
    return ", ".join(f"{k}={env[k]!r}" if env.get(k) is not None else f"{k} unset" for k in ENV_KEYS[:2])


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0].strip() if lines else ''}"[:500]


def probe(params: dict, out: Optional[dict] = None, torch: Any = None,
          environ: Optional[Mapping[str, str]] = None) -> dict:
    """Fill `out` step by step (the caller keeps it when a step raises) and return it.

    `torch` / `environ` replace the torch module and os.environ (the tests' model of a CUDA torch).
    """
    out = {} if out is None else out
    environ = os.environ if environ is None else environ
    env = {k: environ.get(k) for k in ENV_KEYS}
    out["env"] = env

    def unavailable(kind: str, message: str) -> dict:
        out["unavailable_kind"] = kind
        out["unavailable"] = message
        return out

    if torch is None:
        try:
            import torch
        except ImportError:
            return unavailable(
                "torch-missing",
                f"torch is not installed for {sys.executable}: pip install 'gpufix[check]' "
                "(or a CUDA build of torch from pytorch.org)",
            )
        except Exception as exc:  # a broken install: report, never a traceback
            return unavailable("torch-broken", f"torch failed to import: {type(exc).__name__}: {exc}")
    out["torch_version"] = str(torch.__version__)
    out["torch_cuda"] = getattr(torch.version, "cuda", None)
    if out["torch_cuda"] is None:
        hip = getattr(torch.version, "hip", None)
        build = f"a ROCm (HIP {hip}) build" if hip else "a CPU-only build (torch.version.cuda is None)"
        return unavailable(
            "torch-cpu-only",
            f"torch {torch.__version__} is {build}: install a CUDA build of torch "
            + ("(PyPI's torch for Windows is a CPU build: pip install torch --index-url "
               "https://download.pytorch.org/whl/cu126, or the cuXXX index your driver supports)"
               if os.name == "nt" else "(https://pytorch.org/get-started/locally/)"),
        )
    # 1. what a program asking torch before CUDA starts sees: torch's own NVML-based parse of the
    #    mask (torch.cuda._device_count_nvml), the runtime's count only where that parse gives up
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out["device_count_before_init"] = int(torch.cuda.device_count())
        except Exception as exc:
            out["device_count_before_init"] = None
            caught.append(warnings.WarningMessage(_first_line(exc), Warning, "", 0))
        # 2. CUDA itself: initialise in a guarded step; afterwards device_count() is the runtime's
        try:
            torch.cuda.init()
        except Exception as exc:
            out["init_error"] = _first_line(exc)
    why = "; ".join(str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip())
    if out.get("init_error"):
        out["device_count"] = 0
        if _NO_DEVICE.search(out["init_error"]):
            return unavailable(
                "no-gpu",
                f"no GPU visible under the mask ({_env_text(env)}): torch.cuda.init() says "
                f"{out['init_error']}" + (f" ({why})" if why else ""),
            )
        return out
    try:
        out["device_count"] = int(torch.cuda.device_count())
    except Exception as exc:
        out["device_count"] = 0
        out["error"] = f"torch.cuda.device_count() after init: {_first_line(exc)}"
        return out
    if out["device_count"] == 0:
        return unavailable(
            "no-gpu",
            f"no GPU visible under the mask ({_env_text(env)}): torch.cuda.device_count() = 0"
            + (f" ({why})" if why else ""),
        )
    try:
        out["arch_list"] = list(torch.cuda.get_arch_list())
    except Exception:
        out["arch_list"] = []
    out["devices"] = devices = []
    out["device_errors"] = device_errors = []
    for i in range(out["device_count"]):
        try:
            p = torch.cuda.get_device_properties(i)
            uuid = getattr(p, "uuid", None)  # older torch has no `uuid`
            integrated = getattr(p, "is_integrated", None)
            devices.append({
                "index": i,
                "name": str(p.name),
                "uuid": str(uuid) if uuid is not None else "",
                "total_memory": int(p.total_memory),
                "capability": [int(p.major), int(p.minor)],
                "integrated": bool(integrated) if integrated is not None else None,
            })
        except Exception as exc:
            device_errors.append(f"cuda:{i}: {_first_line(exc)}")
    if not devices or devices[0]["index"] != 0:
        return out  # cuda:0 unreadable: the smoke kernel would fail the same way
    try:
        from gpufix.hardware.smoke import run_smoke

        out["smoke"] = run_smoke(
            torch.device("cuda", 0),
            matmul_n=int(params.get("matmul_n", 2048)),
            buffer_bytes=int(params.get("buffer_bytes", 256 * 2**20)),
            repeats=int(params.get("repeats", 3)),
            torch=torch,
        )
        out["precision"] = out["smoke"].get("precision")
    except Exception as exc:
        out["smoke_error"] = _first_line(exc)
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    result: dict = {}
    try:
        params = json.loads(argv[0]) if argv else {}
        probe(params, result)
    except BaseException as exc:  # never a traceback: the parent reads the error from the JSON
        result["error"] = f"{type(exc).__name__}: {exc}".rstrip(": ")
    sys.stdout.write(MARKER + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
