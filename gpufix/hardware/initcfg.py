"""`gpufix init`: choose the policy GPU and write `[tool.gpufix]` by text edit.

The rest of the file is kept byte for byte (line endings, BOM, comments, order): the table is
appended, or with --force the old table's lines (header to its last key line, sub-tables
included) are replaced. The result is parsed back to prove nothing else changed.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Optional

from gpufix.hardware.mask import pci_order
from gpufix.hardware.model import Inventory, gib, normalize_bus_id, uuid_has_prefix

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KEY_ORDER = ("visible-devices", "device-order", "min-memory-gib", "expect-name", "expect-uuid")


class InitError(Exception):
    """`gpufix init` refuses (exit 2); the message says why and what to pass."""


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def render_table(values: dict, newline: str = "\n", comments: Optional[dict] = None) -> str:
    """The table's text; `comments` puts a `# ...` after a key's value (why init chose it)."""
    comments = comments or {}
    lines = ["[tool.gpufix]"] + [f"{k} = {toml_value(values[k])}" + (f"  # {comments[k]}" if comments.get(k) else "")
                                 for k in KEY_ORDER if values.get(k) is not None]
    return newline.join(lines) + newline


_HEADER = re.compile(r"^[ \t]*\[\[?(?P<key>[^\[\]#=]+)\]\]?[ \t]*(#.*)?$")


def _key_path(key: str) -> tuple:
    return tuple(part.strip().strip("\"'").strip() for part in key.split("."))


def find_table(text: str) -> Optional[tuple]:
    """(start, end) character offsets of the [tool.gpufix] table with its sub-tables: from its header
    line to the end of its last non-blank, non-comment line. None when there is no such header."""
    start = end = None
    inside = False
    offset = 0
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        m = _HEADER.match(bare)
        if m:
            path = _key_path(m.group("key"))
            if path[:2] == ("tool", "gpufix"):
                if start is None:
                    start, inside = offset, True
                if inside:  # the table's header, or a sub-table right after it
                    end = offset + len(line)
            else:
                inside = False
        elif inside and bare.strip() and not bare.strip().startswith("#"):
            end = offset + len(line)
        offset += len(line)
    return (start, end) if start is not None else None


def _without_ours(data: dict) -> dict:
    data = dict(data)
    tool = dict(data.get("tool", {})) if isinstance(data.get("tool"), dict) else None
    if tool is not None:
        tool.pop("gpufix", None)
        if tool:
            data["tool"] = tool
        else:
            data.pop("tool")
    return data


def edit_pyproject(raw: bytes, values: dict, force: bool, where: str, comments: Optional[dict] = None) -> tuple:
    """(new bytes, replaced?) for a file whose bytes are `raw` (b"" for a new file)."""
    bom = codecs.BOM_UTF8 if raw.startswith(codecs.BOM_UTF8) else b""
    try:
        text = raw[len(bom):].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InitError(f"{where}: not UTF-8 ({exc}); nothing written") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InitError(f"{where}: not valid TOML ({exc}); fix it first, nothing written") from None
    first_eol = re.search(r"\r?\n", text)
    newline = first_eol.group(0) if first_eol else ("\r\n" if os.name == "nt" and not text else "\n")
    if not text:
        newline = "\n"
    tool = data.get("tool")
    exists = isinstance(tool, dict) and "gpufix" in tool
    table = render_table(values, newline, comments)
    if exists:
        region = find_table(text)
        if not force:
            line = text.count("\n", 0, region[0]) + 1 if region else None
            raise InitError(f"{where}: already has a [tool.gpufix] table" + (f" (line {line})" if line else "")
                            + "; pass --force to replace it, nothing written")
        if region is None:
            raise InitError(f"{where}: tool.gpufix is defined with dotted keys or an inline table, which "
                            "gpufix init does not edit; change it by hand, nothing written")
        start, end = region
        tail = text[end:]
        new = text[:start] + table + tail
    else:
        if not text:
            new = table
        else:
            sep = "" if text.endswith("\n") else newline
            blank = "" if (text + sep).endswith(newline * 2) else newline
            new = text + sep + blank + table
    # proof: the new table is exactly ours and nothing else changed
    try:
        got = tomllib.loads(new)
    except tomllib.TOMLDecodeError as exc:
        raise InitError(f"{where}: could not insert the table safely ({exc}); nothing written") from None
    want = tomllib.loads(render_table(values))["tool"]["gpufix"]
    if got.get("tool", {}).get("gpufix") != want or _without_ours(got) != _without_ours(data):
        raise InitError(f"{where}: could not replace the [tool.gpufix] table without touching the rest of the "
                        "file (is it split in several places?); edit it by hand, nothing written")
    return bom + new.encode("utf-8"), exists


def write_atomic(path: Path, data: bytes) -> None:
    from gpufix.fsutil import atomic_write

    atomic_write(path, data)


def gpu_lines(inventory: Inventory, mark: Optional[int] = None) -> list:
    out = []
    for pos, g in enumerate(pci_order(inventory, accessible_only=True)):
        flag = "  <- pinned" if mark is not None and g.nvml_index == mark else ""
        mem = gib(g.memory_total_bytes) if g.memory_total_bytes is not None else "memory n/a"
        out.append(f"  GPU {g.nvml_index} (PCI order {pos}): {g.name or 'name n/a'}  {g.uuid or 'uuid n/a'}  "
                   f"{g.pci_bus_id or 'bus n/a'}  {mem}{flag}")
    for g in inventory.gpus:
        if not g.accessible:
            out.append(f"  GPU {g.nvml_index}: inaccessible ({'; '.join(g.errors.values())}); CUDA cannot use it")
    return out


def select_gpu(inventory: Inventory, selector: str):
    """The one GPU `selector` names: a UUID (or unique prefix), a PCI bus id, or a name substring."""
    sel = selector.strip()
    bus = normalize_bus_id(sel)
    gpus = inventory.accessible  # a GPU NVML cannot open cannot be pinned (nor used by CUDA)
    if sel.upper().startswith("GPU-"):
        how, matches = "UUID", [g for g in gpus if g.uuid and uuid_has_prefix(g.uuid, sel)]
    elif bus is not None:
        how, matches = "PCI bus id", [g for g in gpus if g.pci_bus_id and normalize_bus_id(g.pci_bus_id) == bus]
    else:
        how = "name"
        matches = [g for g in gpus if g.name and sel.lower() in g.name.lower()]
        exact = [g for g in matches if g.name.lower() == sel.lower()]
        if len(matches) > 1 and len(exact) == 1:
            matches = exact
    listing = "\n".join(gpu_lines(inventory))
    if not matches:
        raise InitError(f"--gpu {selector!r} matches no GPU by {how}; NVML sees:\n{listing}")
    if len(matches) > 1:
        raise InitError(f"--gpu {selector!r} is ambiguous ({len(matches)} GPUs match by {how}); pass a UUID or "
                        f"PCI bus id instead. NVML sees:\n{listing}")
    return matches[0]


# The memory figure: `gpufix check` compares min-memory-gib with NVML's total memory of the device
# (the same number nvidia-smi prints; torch's total_memory is smaller by what the driver reserves,
# 767 MiB on an A100-80GB), so init writes from that same figure. The margin: whole GiB rounded
# down, less 1 GiB, so a board of the same model that reports a little less (another memory
# vendor, a driver that reserves more) still passes.
MEMORY_MARGIN_GIB = 1


def values_for_gpu(inventory: Inventory, gpu, device_order: str = "PCI_BUS_ID") -> dict:
    """visible-devices (its PCI-order index among the GPUs CUDA can open, or its UUID under
    FASTEST_FIRST), expect-uuid, expect-name, and min-memory-gib (NVML's total rounded down to whole
    GiB, less MEMORY_MARGIN_GIB; left out when NVML reports no memory size)."""
    position = [g.nvml_index for g in pci_order(inventory, accessible_only=True)].index(gpu.nvml_index)
    visible = str(position) if device_order == "PCI_BUS_ID" else gpu.uuid
    values = {
        "visible-devices": visible,
        "device-order": device_order,
        "min-memory-gib": None,
        "expect-name": gpu.name,
        "expect-uuid": gpu.uuid,
    }
    if gpu.memory_total_bytes is not None:
        values["min-memory-gib"] = max(0, math.floor(gpu.memory_total_bytes / 2**30) - MEMORY_MARGIN_GIB)
    return {k: v for k, v in values.items() if v is not None}


def memory_comment(gpu) -> str:
    """The policy comment that says where min-memory-gib came from and what the check compares."""
    return (f"NVML total of the {gpu.name} ({gib(gpu.memory_total_bytes)}) in whole GiB less a "
            f"{MEMORY_MARGIN_GIB} GiB margin; gpufix check compares NVML's total too")
