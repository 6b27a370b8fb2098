"""Atomic file replacement, shared by apply, backups, the cache, reports and `gpufix init`.

Two ways in:
* `atomic_write(path, data)`: a temporary file in the same folder, then a rename; the file's mode
  and owner are kept (a new file gets 0666 less the umask, or `mode`). `atomic_write_with` takes
  a function that writes into the open temporary file (the cache signs the new file's identity).
* `replace_planned(planned, data)`: what `apply` writes. It replaces exactly the file it planned
  (`plan_file`): the folder and the file are opened without following a link and must be the
  same inodes as when planned, so a file swapped for a symlink (or a folder swapped for a link
  elsewhere) between plan and write is refused, never written through. A file with several hard
  links is refused too: a rename would split the links (the other names would keep the old bytes).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

# tempfile.mkstemp's flags, name alphabet and number of tries (tempfile's _bin_openflags,
# _RandomNameSequence.characters, TMP_MAX).
_TEMP_FLAGS = (os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_NOINHERIT", 0)
               | getattr(os, "O_BINARY", 0))
_TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_TEMP_TRIES = getattr(os, "TMP_MAX", 10000)


def _mkstemp(folder, prefix: str, suffix: str) -> tuple:
    """tempfile.mkstemp(suffix, prefix, folder): a new file (O_EXCL, mode 0600) named prefix + 8
    random characters + suffix, opened for writing; (fd, path). Written here because importing
    tempfile (with shutil, random, bz2 and lzma) cost every run that writes its cache 4-5 ms. A
    name only has to be unlikely to exist already: O_EXCL makes the creation safe either way."""
    folder = os.path.abspath(folder)
    for _ in range(_TEMP_TRIES):
        name = "".join(_TEMP_CHARS[b % len(_TEMP_CHARS)] for b in os.urandom(8))
        path = os.path.join(folder, prefix + name + suffix)
        try:
            return os.open(path, _TEMP_FLAGS, 0o600), path
        except FileExistsError:
            continue
        except PermissionError:
            # Windows raises this when a folder has the name, as tempfile knows
            if os.name == "nt" and os.path.isdir(folder) and os.access(folder, os.W_OK):
                continue
            raise
    raise FileExistsError(errno.EEXIST, "No usable temporary file name found")


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _keep_owner(fd_or_path, st) -> None:
    """Give the new file the old one's owner and group (as root, a rewrite must not hand a user's
    file to root); a user who cannot chown keeps their own ids, which are the file's anyway."""
    if st is None or not hasattr(os, "chown"):
        return
    try:
        if isinstance(fd_or_path, int):
            os.fchown(fd_or_path, st.st_uid, st.st_gid)
        else:
            os.chown(fd_or_path, st.st_uid, st.st_gid)
    except OSError:
        pass


def atomic_write(path: Path, data: bytes, mode: int = None, durable: bool = True, follow_links: bool = True) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename, keeping the
    file's mode and owner; `durable` also flushes it to disk before the rename (source files,
    backups). A symlink is written through (replacing the link would turn it into a copy), unless
    `follow_links` is False: then a link found there is replaced, never written through."""
    atomic_write_with(path, lambda fh, tmp: fh.write(data), mode, durable, follow_links)


def atomic_write_with(path: Path, write, mode: int = None, durable: bool = True, follow_links: bool = True,
                      suffix: str = ".gpufix-tmp") -> None:
    """atomic_write, the content written by `write(fh, tmp)` into the open temporary file (binary)
    named `tmp`: for a writer whose bytes depend on the new file itself (the cache signs its
    inode and the mtime it sets). `write` may set the file's times (after flushing what it
    wrote); the mode and owner are set after it."""
    path = Path(path)
    if follow_links and path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        st = os.stat(path) if follow_links else os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        st = None  # a link that is replaced lends the new file neither its target's mode nor owner
    if mode is None:
        mode = stat.S_IMODE(st.st_mode) if st is not None else _umask_mode()
    fd, tmp = _mkstemp(path.parent, f".{path.name}.", suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh, tmp)
            fh.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)
            else:  # Windows before Python 3.13
                os.chmod(tmp, mode)
            _keep_owner(fh.fileno(), st)
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class PlanChanged(Exception):
    """The file to write is no longer the file planned (or cannot be replaced safely): not written."""


@dataclasses.dataclass(frozen=True)
class PlannedFile:
    """A file apply plans to replace: its real path and the identities of it and its folder when planned."""

    path: str  # the real path (no symlink in it)
    dir_id: tuple  # (st_dev, st_ino) of its folder
    file_id: tuple  # (st_dev, st_ino) of the file
    nlink: int


def plan_file(real_path: str) -> PlannedFile:
    """The identity of a file `apply` will replace (`real_path`: os.path.realpath of it)."""
    st = os.lstat(real_path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise PlanChanged("not a regular file")
    dst = os.stat(os.path.dirname(real_path))
    return PlannedFile(real_path, (dst.st_dev, dst.st_ino), (st.st_dev, st.st_ino), st.st_nlink)


def _open_dir(planned: PlannedFile) -> int:
    dfd = os.open(os.path.dirname(planned.path), os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    st = os.fstat(dfd)
    if (st.st_dev, st.st_ino) != planned.dir_id:
        os.close(dfd)
        raise PlanChanged("its folder was replaced since gpufix read it")
    return dfd


_DIR_FD = os.open in os.supports_dir_fd and os.replace in os.supports_dir_fd


def _replace_by_path(planned: PlannedFile, data: bytes, expect_before) -> None:
    """Where folders cannot be opened (Windows): the same checks by lstat, then a rename."""
    st = os.lstat(planned.path)
    if stat.S_ISLNK(st.st_mode):
        raise PlanChanged("it was replaced by a symlink since gpufix read it")
    if (st.st_dev, st.st_ino) != planned.file_id or not stat.S_ISREG(st.st_mode):
        raise PlanChanged("it was replaced by another file since gpufix read it")
    if st.st_nlink > 1:
        raise PlanChanged(f"it has {st.st_nlink} hard links, and replacing it would split them")
    if expect_before is not None:
        with open(planned.path, "rb") as fh:
            if fh.read() != expect_before:
                raise PlanChanged("file changed while gpufix was running")
    atomic_write(Path(planned.path), data)


def replace_planned(planned: PlannedFile, data: bytes, expect_before: bytes = None) -> None:
    """Replace the planned file with `data` (atomic: a new file in the same folder, renamed over
    it), keeping its mode and owner. Refuses (PlanChanged, nothing written) when the folder or the
    file is not the one planned, the name is now a link, the file has several hard links, or its
    bytes are no longer `expect_before`."""
    if not _DIR_FD:
        return _replace_by_path(planned, data, expect_before)
    dfd = _open_dir(planned)
    name = os.path.basename(planned.path)
    tmp = None
    try:
        try:
            fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _CLOEXEC, dir_fd=dfd)
        except OSError as exc:
            if os.path.lexists(planned.path) and os.path.islink(planned.path):
                raise PlanChanged("it was replaced by a symlink since gpufix read it") from exc
            raise
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if (st.st_dev, st.st_ino) != planned.file_id or not stat.S_ISREG(st.st_mode):
                raise PlanChanged("it was replaced by another file since gpufix read it")
            if st.st_nlink > 1:
                raise PlanChanged(f"it has {st.st_nlink} hard links, and replacing it would split them "
                                  "(the other names would keep the old bytes)")
            if expect_before is not None and fh.read() != expect_before:
                raise PlanChanged("file changed while gpufix was running")
        import secrets  # only apply writes here: a scan's cache writes use atomic_write_with (signing)

        tmp = f".{name}.{secrets.token_hex(4)}.gpufix-tmp"
        wfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600, dir_fd=dfd)
        with os.fdopen(wfd, "wb") as out:
            out.write(data)
            os.fchmod(out.fileno(), stat.S_IMODE(st.st_mode))
            _keep_owner(out.fileno(), st)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        tmp = None
        try:
            os.fsync(dfd)
        except OSError:
            pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
        os.close(dfd)
