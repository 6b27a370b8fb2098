"""Child processes a project file starts by path, and whether a process counts its GPUs.

An application may start its own scripts as child processes and hand them GPU indices it counted
itself (RVC-WebUI: `webui.py` counts `torch.cuda.device_count()` GPUs in `configs/config.py` and
runs `"python train/train.py -g 0-1"`; `train.py` then writes those indices into its own
`CUDA_VISIBLE_DEVICES`). Such indices are relative to the mask of the parent, while the child's
mask names physical GPUs: GPU108 says what happens to the child (gpufix.rules.gpu108_*).

Read from the text only (per file, for the index record): the `.py` paths named in string
literals of a file that starts processes, and whether the file counts the GPUs it sees."""

from __future__ import annotations

import os
import re

_STARTS_PROCESSES = re.compile(r"\bPopen\b|\bsubprocess\.|\bos\.(?:system|popen|spawn\w*|exec\w*)\s*\(")
# a `.py` path inside a string literal on one line: `'"%s" train/train.py -e %s'`
_PY_PATH = re.compile(r"""["'][^"'\r\n]*?(?<![\w.\\/-])((?:[\w.-]+[\\/])*[\w-]+\.py)\b""")
_COUNTS_GPUS = re.compile(r"\bdevice_count\s*\(|\bgetDeviceCount\s*\(|\blist_physical_devices\s*\(\s*['\"]GPU")


def launched_paths(text: str) -> list:
    """The relative `.py` paths named in the string literals of a file that starts processes."""
    if ".py" not in text or not _STARTS_PROCESSES.search(text):
        return []
    return sorted({m.group(1).replace("\\", "/") for m in _PY_PATH.finditer(text)})


def counts_gpus(text: str) -> bool:
    # the names first: a plain `in` is many times faster than the pattern's `\b` alternation
    if "device_count" not in text and "getDeviceCount" not in text and "list_physical_devices" not in text:
        return False
    return bool(_COUNTS_GPUS.search(text))


def child_launches(root: str, records: dict, forward: dict) -> tuple:
    """(child, parent, counter) for each project script that a project file names as a path to
    run (resolved from the project root, where the app starts, or the parent's own folder):
    `counter` is the first file among the parent and what its process imports that counts its
    GPUs, or "" when none does. `records`: abs path -> index record; `forward`: abs path -> the
    project files its imports run."""
    out = []
    for parent, rec in records.items():
        paths = rec.get("launches") if isinstance(rec, dict) else None
        if not paths:
            continue
        seen, order, stack = {parent}, [parent], [parent]
        while stack:
            for t in sorted(forward.get(stack.pop(), ())):
                if t not in seen:
                    seen.add(t)
                    order.append(t)
                    stack.append(t)
        counter = next((a for a in order if isinstance(records.get(a), dict) and records[a].get("counts_gpus")), "")
        for rel in paths:
            for base in (root, os.path.dirname(parent)):
                child = os.path.normpath(os.path.join(base, rel))
                if child != parent and child in records and not records[child].get("none"):
                    out.append((child, parent, counter))
                    break
    return tuple(sorted(set(out)))
