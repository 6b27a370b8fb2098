"""`gpufix init`: choose the policy GPU and set its keys in `[tool.gpufix]` (tomlkit).

Only the keys init sets change; every other key, table, comment, the BOM and the line endings are
kept. The result is parsed back to prove nothing else changed.
"""

from __future__ import annotations

import codecs
import json
import math
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


def edit_pyproject(raw: bytes, values: dict, force: bool, where: str, comments: Optional[dict] = None) -> tuple:
    """(new bytes, existed?) for a file whose bytes are `raw` (b"" for a new file).

    A style-preserving edit (tomlkit): only the keys in `values` are set; every other key, table,
    comment and the file's BOM and line endings stay. A key that already holds another value is
    changed only with `force`. In a gpufix.toml the keys live at the top level (or under its own
    [tool.gpufix] header when it has one)."""
    import tomlkit

    bom = codecs.BOM_UTF8 if raw.startswith(codecs.BOM_UTF8) else b""
    try:
        text = raw[len(bom):].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InitError(f"{where}: not UTF-8 ({exc}); nothing written") from None
    try:
        data = tomllib.loads(text)
        doc = tomlkit.parse(text)
    except (tomllib.TOMLDecodeError, tomlkit.exceptions.TOMLKitError) as exc:
        raise InitError(f"{where}: not valid TOML ({exc}); fix it first, nothing written") from None
    crlf = "\r\n" in text and "\n" not in text.replace("\r\n", "")
    if text and not text.endswith("\n"):
        text += "\r\n" if crlf else "\n"
        doc = tomlkit.parse(text)
    top_level = Path(where).name != "pyproject.toml" and not (isinstance(data.get("tool"), dict) and "gpufix" in data["tool"])
    if top_level:
        current, table = data, doc
        exists = bool(data)
    else:
        tool = data.get("tool") if isinstance(data.get("tool"), dict) else {}
        exists = "gpufix" in tool
        current = tool.get("gpufix", {})
        if not isinstance(current, dict):
            raise InitError(f"{where}: tool.gpufix is not a table; change it by hand, nothing written")
        if "tool" not in doc:
            doc.add("tool", tomlkit.table(is_super_table=True))
        if "gpufix" not in doc["tool"]:
            doc["tool"].add("gpufix", tomlkit.table())
        table = doc["tool"]["gpufix"]
    conflicts = [k for k in KEY_ORDER if k in values and k in current and current[k] != _plain(values[k])]
    if conflicts and not force:
        shown = ", ".join(f"{k} = {current[k]!r}" for k in conflicts)
        raise InitError(f"{where}: the policy already sets {shown}; pass --force to replace "
                        f"{'that value' if len(conflicts) == 1 else 'those values'} (other keys are kept), nothing written")
    for k in KEY_ORDER:
        if values.get(k) is not None:
            _set_key(table, k, _plain(values[k]))
            if comments and comments.get(k):
                table[k].comment(comments[k])
                table[k].trivia.comment_ws = "  "  # as render_table writes it
    new = tomlkit.dumps(doc)
    if crlf:
        new = new.replace("\r\n", "\n").replace("\n", "\r\n")
    # proof: our keys hold our values and nothing else changed
    try:
        got = tomllib.loads(new)
    except tomllib.TOMLDecodeError as exc:
        raise InitError(f"{where}: could not edit the policy safely ({exc}); nothing written") from None
    want = dict(data)
    target = want if top_level else want.setdefault("tool", {}).setdefault("gpufix", {})
    if not top_level:
        want["tool"] = dict(want["tool"])
        want["tool"]["gpufix"] = target = dict(target)
    target.update({k: _plain(v) for k, v in values.items() if v is not None and k in KEY_ORDER})
    if got != want:
        raise InitError(f"{where}: could not set the policy without touching the rest of the file; "
                        "edit it by hand, nothing written")
    return bom + new.encode("utf-8"), exists


def _set_key(table, key, value) -> None:
    """Set `key`; a new key goes right after the table's last key (not after the blank lines and
    comments that lead into the next table)."""
    import tomlkit

    if key in table:
        table[key] = value
        return
    container = getattr(table, "value", table)
    body = getattr(container, "body", None)
    try:
        plain = [i for i, (k, v) in enumerate(body) if k is not None
                 and not isinstance(v, (tomlkit.items.Table, tomlkit.items.AoT))]
        if plain and plain[-1] + 1 < len(body):
            container._insert_at(plain[-1] + 1, key, value)
            return
    except Exception:  # an older tomlkit without these internals: append, still correct TOML
        pass
    table[key] = value


def _plain(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def policy_file_for(directory: Path) -> Path:
    """Where `gpufix init` writes: the file the policy for `directory` is read from (the nearest
    gpufix.toml or pyproject.toml with [tool.gpufix]), else the project's pyproject.toml (the
    nearest one up to the git work tree's top), else `directory`/pyproject.toml."""
    from gpufix.config import find_config

    found = find_config(directory)
    if found is not None:
        return found
    here = directory.resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file():
            return d / "pyproject.toml"
        if (d / ".git").exists():
            break
    return here / "pyproject.toml"


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
