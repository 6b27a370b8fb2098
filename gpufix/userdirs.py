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
    if sys.platform == "win32":
        import platformdirs

        return platformdirs.user_cache_dir(APP, appauthor=False)
    base = _xdg("XDG_CACHE_HOME")
    if base:
        return posixpath.join(base, APP)
    home = os.path.expanduser("~")
    return os.path.join(home, "Library", "Caches", APP) if sys.platform == "darwin" else os.path.join(home, ".cache", APP)


def user_config_dir() -> str:
    """`$XDG_CONFIG_HOME/gpufix`, else `~/.config/gpufix` (Linux) or
    `~/Library/Application Support/gpufix` (macOS); platformdirs' on Windows."""
    if sys.platform == "win32":
        import platformdirs

        return platformdirs.user_config_dir(APP, appauthor=False)
    base = _xdg("XDG_CONFIG_HOME")
    if base:
        return posixpath.join(base, APP)
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Application Support", APP)
    return os.path.join(home, ".config", APP)
