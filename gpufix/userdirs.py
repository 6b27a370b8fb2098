"""This user's folders for gpufix: the cache (the key, the scan caches, run snapshots) and the
config (the user-level gpufix.toml). Where platformdirs puts them, worked out without importing it
on Linux and macOS (its import is 15 ms, as much as a third of a replayed scan); on Windows
platformdirs answers (the known-folder API). Standard library only, no pathlib."""

from __future__ import annotations

import os
import posixpath
import sys

APP = "gpufix"


def _xdg(var: str):
    # XDG base directories: only an absolute path counts (a relative one is ignored, as the spec
    # and platformdirs say)
    value = os.environ.get(var, "")
    return value if posixpath.isabs(value) else None


def user_cache_dir() -> str:
    """`$XDG_CACHE_HOME/gpufix`, else `~/.cache/gpufix` (Linux) or `~/Library/Caches/gpufix`
    (macOS); platformdirs' on Windows."""
    return _folder("user_cache_dir", "XDG_CACHE_HOME", (".cache",), ("Library", "Caches"))


def user_config_dir() -> str:
    """`$XDG_CONFIG_HOME/gpufix`, else `~/.config/gpufix` (Linux) or
    `~/Library/Application Support/gpufix` (macOS); platformdirs' on Windows."""
    return _folder("user_config_dir", "XDG_CONFIG_HOME", (".config",), ("Library", "Application Support"))


def _folder(platformdirs_name: str, xdg_var: str, linux: tuple, macos: tuple) -> str:
    if sys.platform == "win32":
        import platformdirs

        return getattr(platformdirs, platformdirs_name)(APP, appauthor=False)
    base = _xdg(xdg_var)
    if base:
        return posixpath.join(base, APP)
    return os.path.join(os.path.expanduser("~"), *(macos if sys.platform == "darwin" else linux), APP)
