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

# Option names that choose a GPU (`--gpu-device-id`, `--device_index`, `--gpu-split`, `--gpus`).
_GPU_OPTION_RE = re.compile(r"^--?(?:[\w-]*gpu[\w-]*|[\w-]*cuda[\w-]*|device[-_]?(?:id|ids|index|indices|num))$", re.I)


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
        gpu_flags = [f for f in flags if _GPU_OPTION_RE.match(f)]
        if not gpu_flags:
            continue
        if any(isinstance(kw.value, ast.Constant) and kw.value.value in ("store_true", "store_false")
               for kw in node.keywords if kw.arg == "action"):
            continue  # an on/off switch (`--cpu`, `--no-gpu`): picks no GPU
        reaches = "mask" if re.search(rf"\.{re.escape(dest)}\b", mask_sources) else ""
        out.append(GpuOption(gpu_flags[0], dest, node.lineno, node.col_offset, reaches))
    return out
