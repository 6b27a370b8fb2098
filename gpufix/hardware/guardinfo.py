"""What `gpufix guard install` left in an environment's site-packages, read without running it.

The guard writes three files into site-packages (gpufix.runtime.guard): the start-up hook
`PTH_NAME`, the module `MODULE_NAME`.py it imports, and the record `RECORD_NAME` (JSON: the values
the module sets and every file written, with its SHA-256). `gpufix check` reports the guard of the
environment it runs in from the record alone; this module imports nothing of the runtime package.
"""

from __future__ import annotations

import json
import os
import site
import sys
from typing import Optional

PTH_NAME = "00-gpufix-guard.pth"  # sorted first: site.py runs .pth files in name order
MODULE_NAME = "_gpufix_guard"
RECORD_NAME = "_gpufix_guard.json"


def read_record(site_dir: str) -> Optional[dict]:
    """The guard's record in `site_dir`, or None (none there, or not one gpufix wrote)."""
    try:
        with open(os.path.join(site_dir, RECORD_NAME), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == "gpufix-guard" else None


def running_site_dirs() -> list:
    """The site-packages folders of the environment this interpreter runs in."""
    try:
        dirs = list(site.getsitepackages())
    except AttributeError:  # an old virtualenv's site.py
        import sysconfig

        dirs = [sysconfig.get_paths()["purelib"]]
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def running_guard() -> dict:
    """The guard of the running environment, as `gpufix check` reports it (JSON-ready)."""
    dirs = running_site_dirs()
    for d in dirs:
        rec = read_record(d)
        if rec is None:
            continue
        values = rec.get("values") or {}
        return {
            "installed": True,
            "site_packages": d,
            "mode": values.get("mode"),
            "visible_devices": values.get("visible_devices"),
            "device_order": values.get("device_order"),
            "cpu_runs": values.get("cpu_runs"),
            "source": rec.get("source"),
            "hook_present": os.path.isfile(os.path.join(d, PTH_NAME)),
            "in_force": _ran_here(d),
        }
    return {"installed": False, "site_packages": dirs[0] if dirs else None, "mode": None,
            "visible_devices": None, "device_order": None, "cpu_runs": None, "source": None,
            "hook_present": False, "in_force": False}


def _ran_here(site_dir: str) -> bool:
    """Whether the hook ran at this interpreter's start: it is in place, site.py ran (not -S), and
    GPUFIX_GUARD does not turn it off. (Its common path imports nothing, so sys.modules cannot tell.)"""
    off = os.environ.get("GPUFIX_GUARD", "").lower() in ("off", "0", "false", "no")
    return os.path.isfile(os.path.join(site_dir, PTH_NAME)) and not sys.flags.no_site and not off


def guard_line(guard: dict) -> str:
    """One line for the check's text report."""
    if not guard.get("installed"):
        return ("guard: none in this environment (gpufix guard install pins every Python start of it)"
                if guard.get("site_packages") else "guard: none (no site-packages found)")
    state = "in force in this process" if guard.get("in_force") else (
        "start-up hook missing" if not guard.get("hook_present") else "off in this process (python -S or GPUFIX_GUARD=off)")
    return (f"guard: {guard['mode']}: CUDA_VISIBLE_DEVICES={guard['visible_devices']!r}, "
            f"CUDA_DEVICE_ORDER={guard['device_order']}, cpu-runs {guard['cpu_runs']} "
            f"in {guard['site_packages']} ({state})")


def guard_notes(guard: dict, visible_devices: Optional[str], device_order: str) -> list:
    """A note when the installed guard sets other values than the policy being checked."""
    if not guard.get("installed"):
        return []
    if guard.get("visible_devices") == visible_devices and guard.get("device_order") == device_order:
        return []
    return [f"the guard of this environment sets CUDA_VISIBLE_DEVICES={guard.get('visible_devices')!r} and "
            f"CUDA_DEVICE_ORDER={guard.get('device_order')}, not the checked policy's {visible_devices!r} and "
            f"{device_order}: run `gpufix guard install` again to write the policy's values"]
