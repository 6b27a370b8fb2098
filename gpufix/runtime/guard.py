"""`gpufix guard`: a start-up hook in a virtual environment that pins every Python process of it.

`install` writes into the environment's site-packages, in this order, each atomically:
the module `_gpufix_guard.py` (the policy's values resolved now, and the standard-library-only
code of gpufix.runtime.pin), the record `_gpufix_guard.json` (those values and every file written,
with its SHA-256), then the hook `00-gpufix-guard.pth`, one `import` line that site.py runs at every
interpreter start, before any user code. `uninstall` deletes the hook first, then every file the
record lists, the module's compiled `__pycache__` files, and `__pycache__` itself when the guard's
import created it and nothing else is in it. Files not in the record are never touched.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

from gpufix.hardware.guardinfo import MODULE_NAME, PTH_NAME, RECORD_NAME, read_record

OFF_VALUES = ("off", "0", "false", "no")  # GPUFIX_GUARD=off: the guard does nothing in that process


def pth_line(values: dict) -> str:
    """The start-up hook: one line site.py compiles and runs at every interpreter start.

    The common cases cost no import and no second compile: where each variable is unset or already
    holds the policy's value (a fresh shell; a child of a pinned process; a profile that exports
    only the order), it sets both, which is what `pin` does there. Any other case (a caller's own
    mask or order, a CPU run) imports the module, which applies the whole rule (gpufix.runtime.pin)
    to the untouched environment and says what it replaced. Nothing in it raises: the import is
    inside a try (a missing or broken module must not break Python, and site.py would print a
    traceback at every start), which `exec` puts on the one line a .pth file allows.
    """
    vd, order = values["visible_devices"], values["device_order"]
    load = f"try:\n import {MODULE_NAME}\nexcept Exception:\n pass"
    return (f"import os; e = os.environ; e.get('GPUFIX_GUARD', '').lower() in {OFF_VALUES!r} or "
            f"(e.get('CUDA_DEVICE_ORDER') in (None, {order!r}) and e.get('CUDA_VISIBLE_DEVICES') in (None, {vd!r}) "
            f"and not e.update(CUDA_DEVICE_ORDER={order!r}, CUDA_VISIBLE_DEVICES={vd!r})) or exec({load!r})\n")


class GuardError(Exception):
    """A venv gpufix cannot write to or read, a file in the way: the message says what to do."""


def _pin_source() -> str:
    text = (Path(__file__).parent / "pin.py").read_text(encoding="utf-8")
    return text[text.index("CPU_RUN_VALUES"):]


def module_source(values: dict, source: Optional[str]) -> str:
    from gpufix import __version__

    return (
        '"""gpufix guard: puts the policy\'s GPU mask in force at every start of this environment\'s Python.\n\n'
        f"Written by `gpufix guard install` (gpufix {__version__}); `gpufix guard uninstall` removes it and\n"
        f"every other file it wrote (listed in {RECORD_NAME}). GPUFIX_GUARD=off turns it off for one process.\n"
        '"""\n\n'
        f"VISIBLE_DEVICES = {values['visible_devices']!r}\n"
        f"DEVICE_ORDER = {values['device_order']!r}\n"
        f"CPU_RUNS = {values['cpu_runs']!r}\n"
        f"MODE = {values['mode']!r}\n"
        f"SOURCE = {source!r}\n\n"
        + _pin_source()
        + "\n\ndef _apply():\n"
        "    import os\n\n"
        f"    if os.environ.get(\"GPUFIX_GUARD\", \"\").lower() in {OFF_VALUES!r}:\n"
        "        return\n"
        "    replaced = pin(os.environ, VISIBLE_DEVICES, DEVICE_ORDER, CPU_RUNS, MODE)\n"
        "    if replaced:\n"
        "        import sys\n\n"
        "        sys.stderr.write(\"gpufix guard: \" + describe(replaced) + \" (this environment's policy; \"\n"
        "                         \"GPUFIX_GUARD=off keeps yours)\\n\")\n\n\n"
        "try:\n"
        "    _apply()\n"
        "except Exception:  # a broken guard must never break Python\n"
        "    pass\n"
    )


# ---- which environment -------------------------------------------------------------------------
def default_env() -> Path:
    """--venv's default: the activated venv ($VIRTUAL_ENV), else the one gpufix runs in, else an
    activated conda environment."""
    if os.environ.get("VIRTUAL_ENV"):
        return Path(os.environ["VIRTUAL_ENV"])
    if sys.prefix != getattr(sys, "base_prefix", sys.prefix):
        return Path(sys.prefix)
    if os.environ.get("CONDA_PREFIX"):
        return Path(os.environ["CONDA_PREFIX"])
    raise GuardError("no virtual environment: activate one, or pass --venv PATH (the guard is never written "
                     "into a system Python)")


def env_python(env: Path) -> Path:
    for rel in ("bin/python3", "bin/python", "Scripts/python.exe", "python.exe"):
        p = env / rel
        if p.is_file():
            return p
    raise GuardError(f"{env}: no Python interpreter in it (looked for bin/python and Scripts\\python.exe)")


def site_packages(env: Path) -> Path:
    """The environment's site-packages, as its own interpreter says (any OS, any layout)."""
    env = Path(env)
    if not env.is_dir():
        raise GuardError(f"{env}: no such folder")
    if not (env / "pyvenv.cfg").is_file() and not (env / "conda-meta").is_dir():
        raise GuardError(f"{env}: not a virtual environment (no pyvenv.cfg) nor a conda environment; "
                         "the guard is never written into a system Python")
    if Path(sys.prefix).resolve() == env.resolve():
        import sysconfig

        site = Path(sysconfig.get_paths()["purelib"])
        _inside(site, env)
        return site
    py = env_python(env)
    # not -S: without site.py a venv's interpreter reports the base Python's prefix and paths
    child_env = dict(os.environ, GPUFIX_GUARD="off")
    try:
        out = subprocess.run([str(py), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=child_env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GuardError(f"{py}: cannot run it to find site-packages: {exc}") from None
    if out.returncode != 0 or not out.stdout.strip():
        raise GuardError(f"{py}: cannot find its site-packages: {out.stderr.strip()[-300:]}")
    site = Path(out.stdout.strip().splitlines()[-1])
    _inside(site, env)
    return site


def _inside(site: Path, env: Path) -> None:
    """The guard writes into the environment asked for, never into the Python it was made from."""
    try:
        site.resolve().relative_to(env.resolve())
    except ValueError:
        raise GuardError(f"{env}: its interpreter reports site-packages {site}, outside the environment; "
                         "refusing to write there") from None


# ---- install / uninstall / status ---------------------------------------------------------------
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write(path: Path, data: bytes) -> None:
    from gpufix.fsutil import atomic_write

    atomic_write(path, data, mode=0o644, durable=False)


def install(env: Path, values: dict, source: Optional[str]) -> tuple:
    """Write the guard into `env`; (site-packages, record). Reinstalling replaces the guard's own files."""
    from gpufix import __version__

    site = site_packages(env)
    if not site.is_dir():
        raise GuardError(f"{site}: the environment's site-packages does not exist")
    old = read_record(str(site))
    owned = {f["path"] for f in (old or {}).get("files", [])}
    for name in (PTH_NAME, MODULE_NAME + ".py", RECORD_NAME):
        if (site / name).exists() and name not in owned:
            raise GuardError(f"{site / name}: exists and was not written by gpufix guard; remove it first")
    module = module_source(values, source).encode("utf-8")
    pth = pth_line(values).encode("utf-8")
    pycache_existed = old.get("pycache_existed", True) if old else (site / "__pycache__").exists()
    record = {
        "tool": "gpufix-guard",
        "gpufix_version": __version__,
        "installed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "values": dict(values),
        "files": [{"path": MODULE_NAME + ".py", "sha256": _sha(module)},
                  {"path": RECORD_NAME, "sha256": None},
                  {"path": PTH_NAME, "sha256": _sha(pth)}],
        "pycache_existed": pycache_existed,
    }
    try:
        _write(site / (MODULE_NAME + ".py"), module)
        _stale_pycache(site)  # an older module's bytecode must not outlive its source's values
        pyc = _compile(env, site / (MODULE_NAME + ".py"))
        if pyc is not None:
            record["files"].insert(1, {"path": pyc, "sha256": None})
        _write(site / RECORD_NAME, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
        _write(site / PTH_NAME, pth)  # last: the hook never points at a module that is not there
    except OSError as exc:
        raise GuardError(f"{site}: cannot write the guard: {exc.strerror or exc}") from None
    return site, record


def _compile(env: Path, module: Path) -> Optional[str]:
    """Compile the module with the environment's own interpreter (its bytecode format), so that no
    start has to: an interpreter that may not write bytecode (PYTHONDONTWRITEBYTECODE, a read-only
    site-packages) would otherwise compile it at every start, milliseconds instead of microseconds.
    The path of the .pyc relative to site-packages, or None when it could not be written."""
    code = "import py_compile, sys; print(py_compile.compile(sys.argv[1], doraise=True))"
    try:
        out = subprocess.run([str(env_python(env)), "-I", "-c", code, str(module)], capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL, env=dict(os.environ, GPUFIX_GUARD="off"))
    except (OSError, subprocess.TimeoutExpired, GuardError):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    try:
        return Path(out.stdout.strip().splitlines()[-1]).resolve().relative_to(module.parent.resolve()).as_posix()
    except ValueError:
        return None


def _stale_pycache(site: Path) -> list:
    cache = site / "__pycache__"
    removed = []
    if cache.is_dir():
        for p in cache.glob(MODULE_NAME + ".*.pyc"):
            p.unlink()
            removed.append(p)
    return removed


def _guard_file(name: str) -> bool:
    """One of the names install writes: the hook, the module, the record, the module's bytecode."""
    if name in (PTH_NAME, MODULE_NAME + ".py", RECORD_NAME):
        return True
    parts = name.split("/")
    return (len(parts) == 2 and parts[0] == "__pycache__" and parts[1].startswith(MODULE_NAME + ".")
            and parts[1].endswith(".pyc") and "\\" not in parts[1])


def uninstall(env: Path) -> tuple:
    """Remove the guard from `env`; (site-packages, [removed paths]); [] when none was installed."""
    site = site_packages(env)
    rec = read_record(str(site))
    removed: list = []
    if rec is None:
        # a hook or module without a record (an interrupted install): only the exact names gpufix uses
        for name in (PTH_NAME, MODULE_NAME + ".py"):
            p = site / name
            if p.is_file():
                p.unlink()
                removed.append(p)
        return site, removed + _stale_pycache(site)
    names = [f["path"] for f in rec.get("files", []) if isinstance(f, dict) and isinstance(f.get("path"), str)]
    order = [PTH_NAME] + [n for n in names if n not in (PTH_NAME, RECORD_NAME)] + [RECORD_NAME]
    try:
        for name in order:
            if not _guard_file(name):  # a record, even a planted one, can only name the guard's own files
                continue
            p = site / name
            if p.is_file():
                p.unlink()
                removed.append(p)
        removed += _stale_pycache(site)
        cache = site / "__pycache__"
        if not rec.get("pycache_existed", True) and cache.is_dir() and not any(cache.iterdir()):
            cache.rmdir()
            removed.append(cache)
    except OSError as exc:
        raise GuardError(f"{site}: cannot remove the guard: {exc.strerror or exc}") from None
    return site, removed


def status(env: Path) -> dict:
    """What is installed where: the record's values and each file's state (ok, modified, missing)."""
    site = site_packages(env)
    rec = read_record(str(site))
    out = {"env": str(env), "site_packages": str(site), "installed": rec is not None, "record": rec, "files": []}
    if rec is None:
        stray = [n for n in (PTH_NAME, MODULE_NAME + ".py") if (site / n).exists()]
        out["files"] = [{"path": n, "state": "not recorded"} for n in stray]
        return out
    for f in rec.get("files", []):
        if not isinstance(f, dict) or not _guard_file(str(f.get("path"))):
            continue
        p = site / f["path"]
        if not p.is_file():
            state = "missing"
        elif f.get("sha256") and _sha(p.read_bytes()) != f["sha256"]:
            state = "modified"
        else:
            state = "ok"
        out["files"].append({"path": f["path"], "state": state})
    return out
