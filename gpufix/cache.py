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

What may change a finding is in the file name: the policy's fingerprint, the prefilter switch, and
a hash of the rule catalogue and of gpufix's own code (so a new rule or API entry, or an edited
rule, never reads stale results). A cache file is trusted only when it carries a valid HMAC made
with a per-user key kept outside every project (in the user cache folder): an entry planted in
`.gpufix/cache` (forced into git, shipped in an archive, left on a shared CI runner) does not verify
and is ignored. A cache file that git tracks is never read either.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Optional

from gpufix import __version__

FORMAT = 3
_KEY_FILE = "cache-key"


def content_hash(raw: bytes) -> str:
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def user_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("gpufix", appauthor=False))


@functools.lru_cache(maxsize=None)
def code_fingerprint() -> str:
    """A hash of what decides findings besides the policy: gpufix's code and its rule catalogue."""
    from gpufix.catalog import catalog_dir

    package = Path(__file__).resolve().parent
    h = hashlib.blake2b(digest_size=12)
    h.update(__version__.encode())
    files = sorted(package.rglob("*.py")) + sorted(catalog_dir().rglob("*.toml"))
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        h.update(str(path.relative_to(path.anchor)).encode("utf-8", "surrogateescape"))
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _user_key() -> Optional[bytes]:
    """This user's secret for signing cache files, created on first use (0600, in the user cache
    folder, never inside a project). None when it cannot be read or written: then no cache."""
    path = user_cache_dir() / _KEY_FILE
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except OSError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        tmp = str(path) + f".{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        os.replace(tmp, path)
        return path.read_bytes()  # a concurrent first run may have won the rename: use its key
    except OSError:
        return None


def _mac(key: bytes, cache_path: Path, body: bytes) -> str:
    # The cache file's own location is signed too: a file copied from another project or cache
    # folder does not verify.
    msg = str(cache_path.resolve()).encode("utf-8", "surrogateescape") + b"\0" + body
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def _tracked_by_git(path: Path) -> bool:
    """Whether git tracks `path` (a cache file committed to a repository is someone else's)."""
    try:
        proc = subprocess.run(
            ["git", "ls-files", "--error-unmatch", "--", path.name], cwd=path.parent,
            capture_output=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def _load(path: Path):
    """(entries, mtime_ns) of a cache file; ({}, None) when missing, broken, foreign, forged or
    tracked by git."""
    key = _user_key()
    if key is None:
        return {}, None
    try:
        with open(path, "rb") as fh:
            mtime = os.fstat(fh.fileno()).st_mtime_ns
            raw = fh.read()
    except OSError:
        return {}, None
    mac, sep, body = raw.partition(b"\n")
    if not sep or not hmac.compare_digest(mac.decode("ascii", "replace"), _mac(key, path, body)):
        return {}, None
    if _tracked_by_git(path):
        return {}, None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return {}, None
    if not isinstance(data, dict) or data.get("version") != __version__ or data.get("format") != FORMAT:
        return {}, None
    files = data.get("files")
    if not isinstance(files, dict):
        return {}, None
    return files, mtime


def _valid(entry) -> bool:
    return (
        isinstance(entry, list) and len(entry) == 4 and isinstance(entry[3], dict)
        and isinstance(entry[0], int) and isinstance(entry[1], int)
    )


class ResultCache:
    def __init__(self, path: Path, entries: dict, loaded_mtime=None, fallback: Path = None):
        self.path = path
        self.entries = entries
        self.loaded_mtime = loaded_mtime
        self.fallback = fallback
        self.dirty = False

    @classmethod
    def open(cls, policy, options, kind: str = "scan", extra: str = "") -> Optional["ResultCache"]:
        """The cache for this policy, or None when there is no per-user key to sign it with.
        `kind`/`extra`: another cache of per-file entries beside the results (the project index)."""
        if _user_key() is None:
            return None
        if kind == "scan":
            name = f"scan-{policy.fingerprint()}-{code_fingerprint()}-{int(options.use_prefilter)}.json"
        else:
            name = f"{kind}-{code_fingerprint()}-{extra}.json"
        env = os.environ.get("GPUFIX_CACHE_DIR")
        # Without a config file there is no project root: the folder gpufix was started in is not one.
        project = Path(policy.root).resolve() if (policy.root and policy.source) else None
        fallback = None
        if env:
            root = Path(env)
        elif project is None:
            root = user_cache_dir() / "scans"
        else:
            root = project / ".gpufix" / "cache"
            # The user cache dir holds the caches of many projects: one file per project root.
            key = hashlib.blake2b(str(project).encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()
            fallback = user_cache_dir() / "scans" / f"{key}-{name}"
        path = root / name
        entries, mtime = _load(path)
        if not entries and fallback is not None and not os.access(project, os.W_OK):
            path, fallback = fallback, None
            entries, mtime = _load(path)
        return cls(path, entries, mtime, fallback)

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

    def save(self) -> None:
        if not self.dirty:
            return
        for path in (self.path, self.fallback):
            if path is not None and self._write(path):
                return

    def _write(self, path: Path) -> bool:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.parent.name == "cache" and path.parent.parent.name == ".gpufix":
                gitignore = path.parent.parent / ".gitignore"
                if not gitignore.exists():
                    gitignore.write_text("# created by gpufix\n*\n", encoding="utf-8")
            entries = self.entries
            # A concurrent run may have saved since we loaded: keep its entries for files we did not see.
            try:
                mtime = os.stat(path).st_mtime_ns
            except OSError:
                mtime = None
            if mtime is not None and mtime != self.loaded_mtime:
                theirs, _ = _load(path)
                if theirs:
                    entries = {**theirs, **entries}
            from gpufix.fsutil import atomic_write

            key = _user_key()
            if key is None:
                return False
            doc = {"version": __version__, "format": FORMAT, "files": entries}
            body = json.dumps(doc, separators=(",", ":")).encode("utf-8")
            atomic_write(path, _mac(key, path, body).encode("ascii") + b"\n" + body, mode=0o644, durable=False)
            return True
        except OSError:
            return False  # a read-only tree: try the next place, or run without a cache
