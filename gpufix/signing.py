"""Files gpufix signs for itself (the result cache, run snapshots): this user's key, the MAC that
binds a file's body to its name and its identity on disk, and reading without following a link.
Standard library only, and no pathlib: a replayed scan (gpufix.snapshot) verifies one file with it
before anything else is imported."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat as stat_mod

KEY_FILE = "cache-key"  # in the user cache folder: one key signs this user's caches and snapshots
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class Rejected(Exception):
    """Why a signed file is not used (said once, as a notice)."""


def mac(key: bytes, project: str, path, identity: tuple, body) -> str:
    """The MAC of a signed file's body (bytes, or a list of the chunks it is made of)."""
    h = hmac.new(key, b"\0".join([
        b"gpufix-cache-v4", project.encode("utf-8", "surrogateescape"),
        os.path.abspath(path).encode("utf-8", "surrogateescape"),
        ":".join(map(str, identity)).encode(), b"",
    ]), hashlib.sha256)
    for chunk in body if isinstance(body, list) else (body,):
        h.update(chunk)  # the body is not copied into one message with the rest
    return h.hexdigest()


def verified_body(key: bytes, project: str, path, identity: tuple, raw: bytes):
    """The body of a signed file's bytes `raw` (a memoryview of them, nothing copied), or None
    when its MAC is not `key`'s for this project, name and identity."""
    end = raw.find(b"\n")
    if end < 0:
        return None
    body = memoryview(raw)[end + 1:]
    if not hmac.compare_digest(raw[:end].decode("ascii", "replace"), mac(key, project, path, identity, body)):
        return None
    return body


def read_key(path: str, create: bool = True):
    """This user's secret (at `path`, 0600, in the user cache folder, never inside a project),
    created on first use when `create`. None when it cannot be read or written: then nothing is
    signed and nothing signed is trusted."""
    try:
        with open(path, "rb") as fh:
            key = fh.read()
        if len(key) >= 32:
            return key
    except OSError:
        pass
    if not create:
        return None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        key = os.urandom(32)  # what secrets.token_bytes uses (importing secrets costs more)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        os.replace(tmp, path)
        with open(path, "rb") as fh:  # a concurrent first run may have won the rename: use its key
            return fh.read()
    except OSError:
        return None


def links_on_the_way(folders):
    """The first of `folders` (those inside the project) that is a symbolic link (or cannot be
    looked at), or None."""
    for folder in folders:
        try:
            if stat_mod.S_ISLNK(os.lstat(folder).st_mode):
                return folder
        except FileNotFoundError:
            continue
        except OSError:
            return folder
    return None


def read_nofollow(path, folders=(), limit=None):
    """((device, inode, mtime_ns), bytes) of a regular file reached without following a link (the
    file, or one of `folders`); None when it does not exist. Rejected when it is a link, not a
    regular file, or larger than `limit` bytes (it is never read then)."""
    link = links_on_the_way(folders)
    if link is not None:
        raise Rejected(f"{link} is a symbolic link")
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            raise Rejected(f"{path} is a symbolic link") from None
        raise Rejected(f"{path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            raise Rejected(f"{path} is not a regular file")
        if limit is not None and st.st_size > limit:
            raise Rejected(f"{path} is larger than {limit} bytes")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return (st.st_dev, st.st_ino, st.st_mtime_ns), fh.read()
    finally:
        os.close(fd)


def write_signed(path, key: bytes, project: str, body) -> tuple:
    """Write a fresh temporary file in the cache folder, sign it with its own identity, and rename
    it over `path` (a rename replaces a link at `path`, it never writes through one). Returns that
    identity: (device, inode, mtime_ns), what read_nofollow gives for the file while it is there.
    `body`: bytes, or a list of the chunks it is made of (written one after the other, never joined)."""
    import time

    from gpufix.fsutil import atomic_write_with

    identity = None

    def write(fh, tmp) -> None:
        nonlocal identity
        st = os.fstat(fh.fileno())
        # The file's identity: where it lives on disk and the modification time set below (a
        # rename keeps both; a copy, a checkout or a rewrite changes one).
        stamp = time.time_ns() // 1_000_000 * 1_000_000  # whole milliseconds: every filesystem keeps them
        identity = (st.st_dev, st.st_ino, stamp)
        fh.write(mac(key, project, path, identity, body).encode("ascii") + b"\n")
        for chunk in body if isinstance(body, list) else (body,):
            fh.write(chunk)
        fh.flush()
        os.utime(tmp, ns=(stamp, stamp))

    atomic_write_with(path, write, mode=0o644, durable=False, follow_links=False, suffix=".tmp")
    return identity
