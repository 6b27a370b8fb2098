"""The scan result cache.

One file per (policy fingerprint, gpufix version, prefilter on/off) under `.gpufix/cache/` in
the project root (or `$GPUFIX_CACHE_DIR`, or the user cache dir when the project is not writable).
Entries are keyed by absolute path and hold the file's stat stamp (size, mtime_ns), a hash of its
content and the result. A warm run only stats files: when the stamp matches, the result is used
without reading the file; when only the stamp changed (a checkout, a touch), the file is read and
hashed, and an unchanged hash still hits. The stamp and hash are the ones taken when the file was
read for linting, so a file edited during a scan is never cached under its new stamp.

The format is made for small runs (pre-commit's few files in a warm project): after the MAC line
and a header line (cache format, gpufix version, the interpreter and its marshal version) come the
table, marshal data mapping each key to its stamp, content hash, a short tag and where its value's
marshal bytes lie, then the area of those bytes. A run decodes the table only, then just the values
it asks for (the project index's key needs each file entry's tag, not its fields). A save encodes
only the values this run put and appends them to the area, which is written again as it was read
(never decoded or encoded); once replaced values outweigh the live ones (and _COMPACT_SLACK) a save
compacts it. marshal is for trusted data: a body is decoded only once its MAC verified (this
user's gpufix wrote it) and only when its header names this interpreter's marshal (another Python,
an older format or another gpufix version reads as an empty cache, without a word); a file is read
only up to MAX_BYTES, and decoding a verified body is linear in its size. What is left of a small
run's cache I/O is one read, one HMAC and one rename per cache file (~1 ms per MB): measured on
torch-801 (1.3 MB index cache) and diffusers (4.8 MB), a 5-file run's cache work went from ~45 and
~170 ms (JSON load, then a dump of every entry) to ~5 and ~15 ms.

Writes are atomic (temporary file + rename) and merge entries written meanwhile by a concurrent
run: each save holds `<cache file>.lock` (flock; msvcrt.locking on Windows) while it reads what
another run saved since this one loaded, lays this run's changed and removed entries over it and
renames the result into place, so runs in parallel (pre-commit's chunks of a file list) keep each
other's entries. Where no lock can be had, a save goes on without it: at worst a run's entries are
lost, which is work redone, never a wrong result. A broken or foreign cache file is ignored.

What may change a finding is in the file name: the policy's fingerprint, the prefilter switch, a
digest of the file stats of the rule catalogue and of gpufix's own code (so a new rule or API entry, or an edited rule,
never reads stale results), and a hash of the project root (caches are per project, also in a
shared `$GPUFIX_CACHE_DIR`).

A repository is untrusted input, and so is every file in `.gpufix/cache`:
* A cache file is trusted only when it carries a valid HMAC made with a per-user key kept outside
  every project (in the user cache folder). The MAC covers the project root, the cache file's own
  name and folder (as given, never resolved through a link) and the file's identity on disk
  (device, inode and the modification time gpufix gives it): an entry planted in `.gpufix/cache` (forced into
  git, shipped in an archive, left on a shared CI runner), a valid cache copied or linked under
  another cache's name (another policy's results) or into another project, or a cache file that git
  checks out again, does not verify. A cache that fails validation is ignored with a notice.
* Cache files and folders are never written or read through a symbolic link: a link committed as
  `.gpufix/cache/scan-*.cache` (or as the folder) could otherwise make a scan overwrite, or read, any
  file its user can. Reads open with O_NOFOLLOW and take regular files only; writes go to a fresh
  temporary file in the folder, renamed over the name (a rename replaces a link, never follows it),
  after checking with lstat that no folder on the way inside the project is a link.
"""

from __future__ import annotations

import functools
import hashlib
import marshal
import os
import sys
from pathlib import Path
from typing import Callable, Optional

from gpufix import __version__, signing, userdirs

FORMAT = 5
_KEY_FILE = signing.KEY_FILE
_SUFFIX = ".cache"
# marshal's format is the interpreter's: a body is decoded only by the implementation and marshal
# version that wrote it (another one reads an empty cache, as after an upgrade).
_INTERPRETER = f"{sys.implementation.cache_tag or sys.implementation.name + sys.version}-{marshal.version}"
_HEADER = f"gpufix-cache {FORMAT} {__version__} {_INTERPRETER}\n".encode("utf-8", "surrogateescape")
MAX_BYTES = 1 << 30  # a cache file is read whole, so never past this (a planted one of any size)
_LOCK_WAIT = 10.0  # seconds a save waits for a concurrent run's save before it writes anyway


def content_hash(raw: bytes) -> str:
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def user_cache_dir() -> Path:
    return Path(userdirs.user_cache_dir())


@functools.lru_cache(maxsize=None)
def code_fingerprint() -> str:
    """What decides findings besides the policy: gpufix's version and the stats of its code and
    rule catalogue files (gpufix.snapshot.code_stamp; stats, not bytes: a warm run reads none of
    them, and an edit, a reinstall or a new rule changes a file's size or modification time)."""
    from gpufix.snapshot import code_stamp

    return code_stamp()


@functools.lru_cache(maxsize=None)
def _user_key() -> Optional[bytes]:
    """This user's secret for signing cache files (gpufix.signing.read_key)."""
    return signing.read_key(str(user_cache_dir() / _KEY_FILE))


_mac = signing.mac
CacheRejected = signing.Rejected
_links_on_the_way = signing.links_on_the_way
_read_nofollow = signing.read_nofollow


def _load(path: Path, project: str, folders=()):
    """(rows, area, identity) of a cache file (_decode; identity: its (device, inode, mtime_ns));
    ({}, b"", None) when missing or of another format, nothing decoded but the table. Raises
    CacheRejected when it is not one this user's gpufix wrote for this project under this name
    (forged, copied, linked, broken)."""
    key = _user_key()
    if key is None:
        return {}, b"", None
    _tell_snapshot(path, project)
    got = _read_nofollow(path, folders, MAX_BYTES)
    if got is None:
        return {}, b"", None
    identity, raw = got
    body = signing.verified_body(key, project, path, identity, raw)
    if body is None:
        raise CacheRejected(f"{path} was not written here by gpufix for this project (copied, linked, checked out or altered)")
    if body[:len(_HEADER)] != _HEADER:
        return {}, b"", None  # another gpufix, cache format or interpreter: an empty cache
    return (*_decode(body, path), identity)


def _decode(body, path) -> tuple:
    """(rows, area) of a verified body: after the header, the table's length, the table (marshal:
    {key: (size, mtime_ns, hash, tag, offset, length)}), then the area that holds each value's
    marshal bytes at its offset. Nothing is copied and no value decoded: `_value` does that for
    the keys a run asks for."""
    # Only this user's gpufix, on this interpreter, wrote these bytes (their MAC verified): marshal
    # is for such data. The work is linear in the body, which is at most MAX_BYTES.
    view = memoryview(body)
    start = len(_HEADER)
    end = bytes(view[start:start + 24]).find(b"\n")
    end = start + end if end >= 0 else -1
    try:
        at = end + 1 + int(bytes(view[start:end]))
        if end < 0 or at > len(body):
            raise ValueError
        rows = marshal.loads(view[end + 1:at])
    except (ValueError, EOFError, TypeError):
        raise CacheRejected(f"{path} is not a gpufix cache") from None
    if not isinstance(rows, dict):
        raise CacheRejected(f"{path} holds no entries")
    return rows, view[at:]


def _encode(rows: dict, area: list) -> list:
    """The chunks of a body of `rows` whose values lie at their offsets in the concatenation of
    `area`'s chunks (as _appended gives them)."""
    table = marshal.dumps(rows, marshal.version)
    return [_HEADER, b"%d\n" % len(table), table, *area]


def _tell_snapshot(path, project: str) -> None:
    # A scan being recorded (gpufix.snapshot) keeps the project each cache file is signed for, so
    # that its replay can tell another gpufix run's additions from a cache planted or altered.
    snapshot = sys.modules.get("gpufix.snapshot")
    if snapshot is not None:
        snapshot.note_cache(path, project)


def _valid(row) -> bool:
    return (
        isinstance(row, tuple) and len(row) == 6 and isinstance(row[0], int) and isinstance(row[1], int)
        and (row[4] is _FRESH or (isinstance(row[4], int) and isinstance(row[5], int)))
    )


_FRESH = object()  # a row's offset while its value (put this run) is not encoded yet
_COMPACT_SLACK = 1 << 20  # bytes of replaced values a cache file keeps before a save compacts it


class Hit:
    """A cache hit whose value is decoded only when asked for: most hits of a small run are only
    counted (the project index's key needs each file entry's `tag`, not its fields)."""

    __slots__ = ("tag", "_cache", "_key")

    def __init__(self, cache: "ResultCache", key: str, tag):
        self.tag, self._cache, self._key = tag, cache, key

    def value(self):
        return self._cache._value(self._key)


class ResultCache:
    def __init__(self, path: Path, rows: dict, identity=None, fallback: Path = None, project: str = "",
                 folders=(), notice: Optional[Callable] = None, area=b""):
        self.path = path
        # key -> (size, mtime_ns, hash, tag, offset, length): the value's marshal bytes are
        # area[offset:offset + length]; offset _FRESH: put this run, in _values
        self._rows = rows
        self._area = area
        self._values: dict = {}  # key -> its value, decoded or put (each decoded at most once)
        self._changed: dict = {}  # keys whose row this run changed, in order (a dict: ordered, unique)
        self._deleted: set = set()
        self._keep: dict = {}  # family -> how many of its values put_kept keeps
        self.identity = identity  # (device, inode, mtime_ns) of the file loaded, None: none
        self.fallback = fallback
        self.project = project
        self.folders = tuple(folders)  # folders inside the project on the way to `path`
        self.notice = notice or (lambda message: None)

    @property
    def dirty(self) -> bool:
        return bool(self._changed or self._deleted)

    @classmethod
    def open(cls, policy, options, kind: str = "scan", extra: str = "", notice: Optional[Callable] = None) -> Optional["ResultCache"]:
        """The cache for this policy, or None when there is no per-user key to sign it with.
        `kind`/`extra`: another cache of per-file entries beside the results (the project index).
        `notice(message)`: told when a cache file is ignored (it failed validation)."""
        if _user_key() is None:
            return None
        notice = notice or (lambda message: None)
        # Without a config file there is no project root: the folder gpufix was started in is not one.
        project = Path(policy.root).resolve() if (policy.root and policy.source) else None
        project_id = str(project) if project is not None else ""
        # One file per project root, also where many projects share a folder.
        tag = hashlib.blake2b(project_id.encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()
        if kind == "scan":
            name = f"scan-{tag}-{policy.fingerprint()}-{code_fingerprint()}-{int(options.use_prefilter)}{_SUFFIX}"
        else:
            name = f"{kind}-{tag}-{code_fingerprint()}-{extra}{_SUFFIX}"
        env = os.environ.get("GPUFIX_CACHE_DIR")
        fallback = None
        folders: tuple = ()
        if env:
            root = Path(env)
        elif project is None:
            root = user_cache_dir() / "scans"
        else:
            root = project / ".gpufix" / "cache"
            folders = (project / ".gpufix", root)
            fallback = user_cache_dir() / "scans" / name
        path = root / name
        rows, area, identity = _load_or_notice(path, project_id, folders, notice)
        if not rows and fallback is not None and not os.access(project, os.W_OK):
            path, fallback, folders = fallback, None, ()
            rows, area, identity = _load_or_notice(path, project_id, folders, notice)
        return cls(path, rows, identity, fallback, project_id, folders, notice, area)

    def _area_bytes(self):
        if isinstance(self._area, list):  # as saved: its chunks, joined when a value is read
            self._area = b"".join(self._area)
        return self._area

    def _value(self, key: str):
        if key in self._values:
            return self._values[key]
        _, _, _, _, offset, length = self._rows[key]
        area = self._area_bytes()
        try:
            if not 0 <= offset <= offset + length <= len(area):
                raise ValueError
            value = marshal.loads(area[offset:offset + length])
        except (ValueError, EOFError, TypeError):
            value = None  # never written so by gpufix: a miss
        self._values[key] = value
        return value

    def _change(self, key: str, row: tuple) -> None:
        self._rows.pop(key, None)  # last: the newest (put_kept keeps the newest of a family)
        self._rows[key] = row
        self._changed.pop(key, None)
        self._changed[key] = None
        self._deleted.discard(key)

    def _stat_hit(self, abs_path: str) -> bool:
        """Whether a file's entry is still good: stats it; reads it only when its stamp changed."""
        row = self._rows.get(abs_path)
        if row is None or not _valid(row):
            return False
        try:
            st = os.stat(abs_path)
        except OSError:
            return False
        if row[0] == st.st_size and row[1] == st.st_mtime_ns:
            return True
        if row[0] != st.st_size:
            return False
        try:
            with open(abs_path, "rb") as fh:
                raw = fh.read()
        except OSError:
            return False
        if content_hash(raw) != row[2]:
            return False
        # same content, new stamp: a hit, and remember the stamp (the value is kept as it is)
        self._change(abs_path, (row[0], st.st_mtime_ns, *row[2:]))
        return True

    def get(self, abs_path: str):
        """The cached result for a file, or None. Stats the file; reads it only when its stamp changed."""
        if not self._stat_hit(abs_path):
            return None
        value = self._value(abs_path)
        return value if isinstance(value, dict) else None

    def get_lazily(self, abs_path: str) -> Optional[Hit]:
        """As `get`, the value decoded only when the Hit is asked for it; the Hit's `tag` is the
        one `put` was given."""
        if not self._stat_hit(abs_path):
            return None
        return Hit(self, abs_path, self._rows[abs_path][3])

    def hash_of(self, abs_path: str) -> Optional[str]:
        """The content hash of a file's entry (after `get` hit it: the hash of what it was made from)."""
        row = self._rows.get(abs_path)
        return row[2] if row is not None and _valid(row) and isinstance(row[2], str) else None

    def put(self, abs_path: str, result: dict, tag=None) -> None:
        """Store a job's result (it carries `_stamp` and `_hash`, taken when the file was read).
        `tag`: a short value get_lazily hands back without decoding the result."""
        stamp = result.pop("_stamp", None)
        digest = result.pop("_hash", None)
        if stamp is None or digest is None:
            return
        self._change(abs_path, (stamp[0], stamp[1], digest, tag, _FRESH, 0))
        self._values[abs_path] = result

    def get_value(self, key: str, digest: str):
        """A value stored under `key` (not a file) for inputs whose digest is `digest`, or None."""
        row = self._rows.get(key)
        if row is None or not _valid(row) or row[2] != digest:
            return None
        value = self._value(key)
        return value if isinstance(value, dict) else None

    def put_value(self, key: str, digest: str, value: dict) -> None:
        self._change(key, (-1, -1, digest, None, _FRESH, 0))
        self._values[key] = value

    def get_kept(self, family: str, digest: str):
        """A value put by `put_kept` under `family` for inputs whose digest is `digest`, or None."""
        return self.get_value(family + digest, digest)

    def put_kept(self, family: str, digest: str, value: dict, keep: int) -> None:
        """Store a value for inputs whose digest is `digest`, beside the family's values for other
        inputs (a full scan's and a pre-commit subset's do not evict each other), keeping the
        `keep` newest."""
        self.put_value(family + digest, digest, value)
        self._keep[family] = keep
        for old in _beyond_keep(self._rows, family, keep):
            self._drop(old)

    def _drop(self, key: str) -> None:
        del self._rows[key]
        self._values.pop(key, None)
        self._changed.pop(key, None)
        self._deleted.add(key)

    def save(self) -> None:
        if not self.dirty:
            return
        for path, folders in ((self.path, self.folders), (self.fallback, ())):
            if path is not None and self._write(path, folders):
                return

    def _changes(self) -> list:
        """(key, row, value bytes) of each row this run changed: a value put is encoded here, once
        (marshal, as _value reads it); a row only restamped has None (its bytes are in our area)."""
        out = []
        for k in self._changed:
            row = self._rows[k]
            out.append((k, row, marshal.dumps(self._values[k], marshal.version) if row[4] is _FRESH else None))
        return out

    def _write(self, path: Path, folders) -> bool:
        key = _user_key()
        if key is None:
            return False
        link = _links_on_the_way(folders)
        if link is None and os.path.islink(path):
            link = path
        if link is not None:
            # A link in the project's own cache folder is someone else's: never write through it.
            self.notice(f"not writing the cache: {link} is a symbolic link")
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if _links_on_the_way(folders) is not None:
                return False  # replaced by a link meanwhile
            if path.parent.name == "cache" and path.parent.parent.name == ".gpufix":
                gitignore = path.parent.parent / ".gitignore"
                if not os.path.lexists(gitignore):
                    _create_new(gitignore, b"# created by gpufix\n*\n")
            try:
                changes = self._changes()
            except (ValueError, TypeError):
                return False  # a value marshal cannot write (never one gpufix puts): no cache
            with _locked(path):
                rows, area = self._rows, self._area_bytes()
                # A concurrent run may have saved since we loaded (pre-commit runs chunks of the
                # file list in parallel): its rows, with this run's changes on top. Done under the
                # lock, so that no save lands between this read and the rename below.
                if path != self.path or _identity(path) != self.identity:
                    try:
                        theirs, their_area, _ = _load(path, self.project, folders)
                    except CacheRejected:
                        theirs = {}
                    if theirs:
                        for k in self._deleted:
                            theirs.pop(k, None)
                        rows, area = theirs, their_area
                if rows is not self._rows:  # this run's restamped rows: their bytes, from our area
                    changes = [(k, row, self._area_bytes()[row[4]:row[4] + row[5]] if blob is None else blob)
                               for k, row, blob in changes]
                rows, area = _appended(rows, area, changes)
                for family, keep in self._keep.items():
                    for old in _beyond_keep(rows, family, keep):
                        del rows[old]
                rows, area = _compacted(rows, area)
                written = _write_signed(path, key, self.project, _encode(rows, area))
            self._rows, self._area = rows, area
            self._changed.clear()
            self._deleted.clear()
            self.path, self.identity = path, written
            _tell_snapshot(path, self.project)
            return True
        except OSError:
            return False  # a read-only tree: try the next place, or run without a cache
        except (TypeError, IndexError, ValueError):
            return False  # rows of another shape (signed by this user's key, not by this gpufix)


def _appended(rows: dict, area, changes: list) -> tuple:
    """`rows` and the chunks of their area with `changes` laid over them: each changed value's
    bytes appended to `area` (the others' bytes are written again as read, never decoded, encoded
    or copied)."""
    blobs = [area]
    at = len(area)
    for k, row, blob in changes:
        rows.pop(k, None)  # last: the newest
        if blob is None:  # restamped: its bytes are where they were
            rows[k] = row
            continue
        rows[k] = (*row[:4], at, len(blob))
        blobs.append(blob)
        at += len(blob)
    return rows, blobs


def _compacted(rows: dict, area: list) -> tuple:
    """`rows` and the chunks of their area without the bytes of values replaced or removed, once
    they are more than the live values and _COMPACT_SLACK together (an area only grows between
    compactions)."""
    live = sum(r[5] for r in rows.values())
    if sum(map(len, area)) <= 2 * live + _COMPACT_SLACK:
        return rows, area
    area = b"".join(area)
    out, blobs, at = {}, [], 0
    for k, r in rows.items():
        out[k] = (*r[:4], at, r[5])
        blobs.append(area[r[4]:r[4] + r[5]])
        at += r[5]
    return out, blobs


def _beyond_keep(rows: dict, family: str, keep: int) -> list:
    """The keys of `family` in `rows` past its `keep` newest (a dict keeps the order of insertion)."""
    kept = [k for k in rows if k.startswith(family)]
    return kept[:-keep] if len(kept) > keep else []


def _identity(path: Path):
    """(device, inode, mtime_ns) of a file now, as signing.read_nofollow takes it; None: none."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


class _locked:
    """Holds `<cache file>.lock` locked while a save merges and renames (POSIX flock, Windows
    msvcrt.locking). Best effort: where the lock cannot be made or got within _LOCK_WAIT seconds
    (a link there, a read-only folder, a run that hangs), the save goes on without it, as it always
    could (an entry lost to a concurrent run is work redone, never a wrong result)."""

    def __init__(self, path: Path):
        self.lock = f"{path}.lock"
        self.fd = None

    def __enter__(self):
        import time

        try:
            if not signing.NOFOLLOW and os.path.islink(self.lock):
                return self
            # Never written: a link there is refused (O_NOFOLLOW), a file there only locked.
            self.fd = os.open(self.lock, os.O_RDWR | os.O_CREAT | signing.NOFOLLOW, 0o644)
        except OSError:
            return self
        deadline = time.monotonic() + _LOCK_WAIT
        while True:
            try:
                _lock_fd(self.fd, True)
                return self
            except OSError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    self.fd = None
                    return self
                time.sleep(0.002)

    def __exit__(self, *exc):
        if self.fd is not None:
            try:
                _lock_fd(self.fd, False)
            except OSError:
                pass
            os.close(self.fd)
        return False


def _lock_fd(fd: int, take: bool) -> None:
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK if take else msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, (fcntl.LOCK_EX | fcntl.LOCK_NB) if take else fcntl.LOCK_UN)


def _load_or_notice(path: Path, project: str, folders, notice):
    try:
        return _load(path, project, folders)
    except CacheRejected as exc:
        notice(f"ignored the scan cache: {exc}")
        return {}, b"", None


def _create_new(path: Path, data: bytes) -> None:
    """Create a file that does not exist yet (never through a link: O_EXCL)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | signing.NOFOLLOW, 0o644)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


_write_signed = signing.write_signed
