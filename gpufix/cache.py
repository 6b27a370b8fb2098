"""The scan result cache.

One JSON file per (policy fingerprint, gpufix version, prefilter on/off) under `.gpufix/cache/` in
the project root (or `$GPUFIX_CACHE_DIR`, or the user cache dir when the project is not writable).
Entries are keyed by absolute path and hold the file's stat stamp (size, mtime_ns), a hash of its
content and the result. A warm run only stats files: when the stamp matches, the result is used
without reading the file; when only the stamp changed (a checkout, a touch), the file is read and
hashed, and an unchanged hash still hits. The stamp and hash are the ones taken when the file was
read for linting, so a file edited during a scan is never cached under its new stamp.

Writes are atomic (temporary file + rename) and merge entries written meanwhile by a concurrent
run, so concurrent runs at worst redo work; a broken or foreign cache file is ignored.

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
  `.gpufix/cache/scan-*.json` (or as the folder) could otherwise make a scan overwrite, or read, any
  file its user can. Reads open with O_NOFOLLOW and take regular files only; writes go to a fresh
  temporary file in the folder, renamed over the name (a rename replaces a link, never follows it),
  after checking with lstat that no folder on the way inside the project is a link.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Callable, Optional

from gpufix import __version__, signing, userdirs

FORMAT = 4
_KEY_FILE = signing.KEY_FILE


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
    """(entries, mtime_ns) of a cache file: ({}, None) when missing; CacheRejected when it is not
    one this user's gpufix wrote for this project under this name (forged, copied, linked, broken)."""
    key = _user_key()
    if key is None:
        return {}, None
    _tell_snapshot(path, project)
    got = _read_nofollow(path, folders)
    if got is None:
        return {}, None
    identity, raw = got
    body = signing.verified_body(key, project, path, identity, raw)
    if body is None:
        raise CacheRejected(f"{path} was not written here by gpufix for this project (copied, linked, checked out or altered)")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise CacheRejected(f"{path} is not valid JSON") from None
    if not isinstance(data, dict) or data.get("version") != __version__ or data.get("format") != FORMAT:
        return {}, None
    files = data.get("files")
    if not isinstance(files, dict):
        raise CacheRejected(f"{path} holds no entries")
    try:
        mtime = os.lstat(path).st_mtime_ns
    except OSError:
        mtime = None
    return files, mtime


def _tell_snapshot(path, project: str) -> None:
    # A scan being recorded (gpufix.snapshot) keeps the project each cache file is signed for, so
    # that its replay can tell another gpufix run's additions from a cache planted or altered.
    snapshot = sys.modules.get("gpufix.snapshot")
    if snapshot is not None:
        snapshot.note_cache(path, project)


def _valid(entry) -> bool:
    return (
        isinstance(entry, list) and len(entry) == 4 and isinstance(entry[3], dict)
        and isinstance(entry[0], int) and isinstance(entry[1], int)
    )


class ResultCache:
    def __init__(self, path: Path, entries: dict, loaded_mtime=None, fallback: Path = None, project: str = "",
                 folders=(), notice: Optional[Callable] = None):
        self.path = path
        self.entries = entries
        self.loaded_mtime = loaded_mtime
        self.fallback = fallback
        self.project = project
        self.folders = tuple(folders)  # folders inside the project on the way to `path`
        self.notice = notice or (lambda message: None)
        self.dirty = False

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
            name = f"scan-{tag}-{policy.fingerprint()}-{code_fingerprint()}-{int(options.use_prefilter)}.json"
        else:
            name = f"{kind}-{tag}-{code_fingerprint()}-{extra}.json"
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
        entries, mtime = _load_or_notice(path, project_id, folders, notice)
        if not entries and fallback is not None and not os.access(project, os.W_OK):
            path, fallback, folders = fallback, None, ()
            entries, mtime = _load_or_notice(path, project_id, folders, notice)
        return cls(path, entries, mtime, fallback, project_id, folders, notice)

    def get(self, abs_path: str):
        """The cached result for a file, or None. Stats the file; reads it only when its stamp changed."""
        entry = self.entries.get(abs_path)
        if entry is None or not _valid(entry):
            return None
        try:
            st = os.stat(abs_path)
        except OSError:
            return None
        if entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            return entry[3]
        if entry[0] != st.st_size:
            return None
        try:
            with open(abs_path, "rb") as fh:
                raw = fh.read()
        except OSError:
            return None
        if content_hash(raw) != entry[2]:
            return None
        entry[1] = st.st_mtime_ns  # same content, new stamp: a hit, and remember the stamp
        self.dirty = True
        return entry[3]

    def hash_of(self, abs_path: str) -> Optional[str]:
        """The content hash of a file's entry (after `get` hit it: the hash of what it was made from)."""
        entry = self.entries.get(abs_path)
        return entry[2] if entry is not None and _valid(entry) and isinstance(entry[2], str) else None

    def put(self, abs_path: str, result: dict) -> None:
        """Store a job's result (it carries `_stamp` and `_hash`, taken when the file was read)."""
        stamp = result.pop("_stamp", None)
        digest = result.pop("_hash", None)
        if stamp is None or digest is None:
            return
        self.entries[abs_path] = [stamp[0], stamp[1], digest, result]
        self.dirty = True

    def get_value(self, key: str, digest: str):
        """A value stored under `key` (not a file) for inputs whose digest is `digest`, or None."""
        entry = self.entries.get(key)
        if entry is None or not _valid(entry) or entry[2] != digest:
            return None
        return entry[3]

    def put_value(self, key: str, digest: str, value: dict) -> None:
        self.entries[key] = [-1, -1, digest, value]
        self.dirty = True

    def get_kept(self, family: str, digest: str):
        """A value put by `put_kept` under `family` for inputs whose digest is `digest`, or None."""
        return self.get_value(family + digest, digest)

    def put_kept(self, family: str, digest: str, value: dict, keep: int) -> None:
        """Store a value for inputs whose digest is `digest`, beside the family's values for other
        inputs (a full scan's and a pre-commit subset's do not evict each other), keeping the
        `keep` newest."""
        self.entries.pop(family + digest, None)  # put last: the newest
        self.put_value(family + digest, digest, value)
        kept = [k for k in self.entries if k.startswith(family)]
        for old in kept[:-keep]:  # the oldest first (a dict keeps the order of insertion)
            del self.entries[old]

    def save(self) -> None:
        if not self.dirty:
            return
        for path, folders in ((self.path, self.folders), (self.fallback, ())):
            if path is not None and self._write(path, folders):
                return

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
            entries = self.entries
            # A concurrent run may have saved since we loaded: keep its entries for files we did not see.
            try:
                mtime = os.lstat(path).st_mtime_ns
            except OSError:
                mtime = None
            if mtime is not None and mtime != self.loaded_mtime:
                try:
                    theirs, _ = _load(path, self.project, folders)
                except CacheRejected:
                    theirs = {}
                if theirs:
                    entries = {**theirs, **entries}
            doc = {"version": __version__, "format": FORMAT, "files": entries}
            body = json.dumps(doc, separators=(",", ":")).encode("utf-8")
            _write_signed(path, key, self.project, body)
            _tell_snapshot(path, self.project)
            return True
        except OSError:
            return False  # a read-only tree: try the next place, or run without a cache


def _load_or_notice(path: Path, project: str, folders, notice):
    try:
        return _load(path, project, folders)
    except CacheRejected as exc:
        notice(f"ignored the scan cache: {exc}")
        return {}, None


def _create_new(path: Path, data: bytes) -> None:
    """Create a file that does not exist yet (never through a link: O_EXCL)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | signing.NOFOLLOW, 0o644)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


_write_signed = signing.write_signed
