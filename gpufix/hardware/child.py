"""The CUDA side of `gpufix check`, run in a fresh child process.

The parent starts `python -c ...` with CUDA_DEVICE_ORDER and CUDA_VISIBLE_DEVICES already in the
environment (a mask set after CUDA initialised is ignored). This module prints exactly one line
`GPUFIX-CHILD-JSON: {...}` on stdout and never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

MARKER = "GPUFIX-CHILD-JSON: "
ENV_KEYS = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")


def _env_text(env: dict) -> str:
    return ", ".join(f"{k}={env[k]!r}" if env[k] is not None else f"{k} unset" for k in ENV_KEYS)


def probe(params: dict) -> dict:
    env = {k: os.environ.get(k) for k in ENV_KEYS}
    out: dict = {"env": env}

    def unavailable(kind: str, message: str) -> dict:
        out["unavailable_kind"] = kind
        out["unavailable"] = message
        return out

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
            "(https://pytorch.org/get-started/locally/)",
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            torch.cuda.is_available()
            count = torch.cuda.device_count()
        except Exception as exc:
            count = 0
            caught.append(warnings.WarningMessage(f"{type(exc).__name__}: {exc}", Warning, "", 0))
    out["device_count"] = count
    if count == 0:
        why = "; ".join(str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip())
        return unavailable(
            "no-gpu",
            f"no GPU visible under the mask ({_env_text(env)}): torch.cuda.device_count() = 0"
            + (f" ({why})" if why else ""),
        )
    try:
        out["arch_list"] = list(torch.cuda.get_arch_list())
    except Exception:
        out["arch_list"] = []
    devices = []
    for i in range(count):
        p = torch.cuda.get_device_properties(i)
        uuid = getattr(p, "uuid", None)
        devices.append(
            {
                "index": i,
                "name": str(p.name),
                "uuid": str(uuid) if uuid is not None else "",
                "total_memory": int(p.total_memory),
                "capability": [int(p.major), int(p.minor)],
            }
        )
    out["devices"] = devices
    try:
        from gpufix.hardware.smoke import run_smoke

        out["smoke"] = run_smoke(
            torch.device("cuda", 0),
            matmul_n=int(params.get("matmul_n", 2048)),
            buffer_bytes=int(params.get("buffer_bytes", 256 * 2**20)),
            repeats=int(params.get("repeats", 3)),
        )
    except Exception as exc:
        text = str(exc).strip().splitlines()
        out["smoke_error"] = f"{type(exc).__name__}: {text[0] if text else ''}"[:500]
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        params = json.loads(argv[0]) if argv else {}
        result = probe(params)
    except BaseException as exc:  # never a traceback: the parent reads the error from the JSON
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
