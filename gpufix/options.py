"""The app's own GPU choice: a mask computed at run time and argparse options that pick a GPU.

Both conflict with the policy: the policy pins a GPU in the header, the app picks one when it runs.
GPU108 reports where, and which wins after the fix, so that the option is never broken silently.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from typing import Optional

from gpufix.analysis import MASK_VAR

# Option names that choose a GPU by index (`--gpu-device-id`, `--device_index`, `--gpu-split`,
# `--gpu-memory` (one value per GPU), `--gpus`), not a switch (`--use_cuda`, `--disable_cuda`) or a
# setting for whatever GPU is used (`--gpu-layers`, `--gpu-compute-type`). Matched on the name with
# dashes as underscores.
_GPU_OPTION_RE = re.compile(
    r"^(?:gpus?|devices|device_ids?|cuda_devices?|[a-z_]*(?:gpu|cuda)_devices?"
    r"|[a-z_]*(?:gpu|cuda|device)_?(?:id|ids|index|indices|idx|split|memory))$"
)
# Text that may hold such an option: files without a GPU import are linted for it too.
OPTION_TEXT_RE = re.compile(r"add_argument\(\s*['\"]-[^'\"]*(?:gpu|cuda|device)", re.I)


@dataclasses.dataclass
class GpuOption:
    flag: str
    dest: str
    line: int
    col: int
    reaches: str  # "mask" | "index" | "" (only its name says it picks a GPU)


def _dest(call: ast.Call) -> Optional[tuple]:
    flags = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if not flags:
        return None
    for kw in call.keywords:
        if kw.arg == "dest" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            return flags, kw.value.value
    long = next((f for f in flags if f.startswith("--")), flags[0])
    return flags, long.lstrip("-").replace("-", "_")


def gpu_options(tree: ast.Module, facts) -> list:
    """argparse options (add_argument calls) whose name picks a GPU, and whether the file feeds
    them into the mask or a device index."""
    out = []
    mask_sources = " ".join(w.value_src or "" for w in facts.env_writes if w.var == MASK_VAR and w.value_kind == "dynamic")
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"):
            continue
        got = _dest(node)
        if got is None:
            continue
        flags, dest = got
        gpu_flags = [f for f in flags if _GPU_OPTION_RE.match(f.lstrip("-").lower().replace("-", "_"))]
        if not gpu_flags:
            continue
        if any(isinstance(kw.value, ast.Constant) and kw.value.value in ("store_true", "store_false")
               for kw in node.keywords if kw.arg == "action"):
            continue  # an on/off switch (`--cpu`, `--no-gpu`): picks no GPU
        if any(kw.arg == "type" and isinstance(kw.value, ast.Name) and kw.value.id == "bool" for kw in node.keywords):
            continue
        if not re.search(r"gpu|cuda", gpu_flags[0], re.I):
            # `--device-index` may be an audio device: only when its help says it is a GPU
            help_text = " ".join(kw.value.value for kw in node.keywords
                                 if kw.arg == "help" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str))
            if not re.search(r"gpu|cuda", help_text, re.I):
                continue
        reaches = "mask" if re.search(rf"\.{re.escape(dest)}\b", mask_sources) else ""
        out.append(GpuOption(gpu_flags[0], dest, node.lineno, node.col_offset, reaches))
    return out
