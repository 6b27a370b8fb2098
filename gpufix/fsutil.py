"""Atomic file replacement, shared by apply, backups, the cache and `gpufix init`."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = None, durable: bool = True) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename, keeping the
    file's mode; `durable` also flushes it to disk before the rename (source files, backups)."""
    path = Path(path)
    if path.is_symlink():
        # Write through the link: replacing the link itself would turn it into a copy and leave
        # the file it points to unchanged.
        path = Path(os.path.realpath(path))
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".gpufix-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
