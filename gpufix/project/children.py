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

# What starts a process: `\bPopen\b|\bsubprocess\.|\bos\.(?:system|popen|spawn\w*|exec\w*)\s*\(`.
# One pattern per alternative, each starting with its literal, which the regex engine finds with a
# substring search (the alternation led by `\b` was tried at every position: 10x slower); the `\b`
# before it is checked by hand. None of the three can match again inside its own match ("Popen" and
# "subprocess." do not overlap themselves; the one "." of an `os.` match is its third character), so
# skipping a match whose `\b` fails never hides one whose `\b` holds.
_STARTS_PROCESSES = (re.compile(r"Popen\b"), re.compile(r"subprocess\."),
                     re.compile(r"os\.(?:system|popen|spawn\w*|exec\w*)\s*\("))
# a `.py` path inside a string literal on one line: `'"%s" train/train.py -e %s'`
_PY_PATH = re.compile(r"""["'][^"'\r\n]*?(?<![\w.\\/-])((?:[\w.-]+[\\/])*[\w-]+\.py)\b""")
_COUNTS_GPUS = re.compile(r"\bdevice_count\s*\(|\bgetDeviceCount\s*\(|\blist_physical_devices\s*\(\s*['\"]GPU")


def launched_paths(text: str) -> list:
    """The relative `.py` paths named in the string literals of a file that starts processes."""
    if ".py" not in text or not _starts_processes(text):
        return []
    # No _PY_PATH match crosses a line: none of its parts matches "\n" (the quote, `[^"'\r\n]`,
    # `[\w.-]`, `[\\/]`), and its lookbehind only looks at a character of the match itself. Each
    # holds ".py", so only the lines holding ".py" are searched, each up to and with its "\n" (then
    # the closing `\b` sees what it sees in the whole text): the matches of finditer on the whole
    # text, found without running the pattern over every other line.
    found = set()
    find = text.find
    at = find(".py")
    while at >= 0:
        start = text.rfind("\n", 0, at) + 1
        end = find("\n", at)
        end = len(text) if end < 0 else end + 1
        found.update(m.group(1).replace("\\", "/") for m in _PY_PATH.finditer(text, start, end))
        at = find(".py", end)
    return sorted(found)


def _starts_processes(text: str) -> bool:
    """Whether `text` calls what starts a process (_STARTS_PROCESSES), as the pattern led by `\b`."""
    for pattern in _STARTS_PROCESSES:
        for m in pattern.finditer(text):
            before = text[m.start() - 1] if m.start() else " "
            if not (before.isalnum() or before == "_"):  # `\b` before a word character
                return True
    return False


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
