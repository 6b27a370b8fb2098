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
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from gpufix import __version__

FORMAT = 2


def content_hash(raw: bytes) -> str:
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def user_cache_dir() -> Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "gpufix" / "cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "gpufix"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpufix"


def _load(path: Path):
    """(entries, mtime_ns) of a cache file; ({}, None) when missing, broken or foreign."""
    try:
        with open(path, "rb") as fh:
            mtime = os.fstat(fh.fileno()).st_mtime_ns
            data = json.loads(fh.read())
    except (OSError, ValueError, RecursionError):
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
    def open(cls, policy, options) -> "ResultCache":
        name = f"scan-{__version__}-{policy.fingerprint()}-{int(options.use_prefilter)}.json"
        env = os.environ.get("GPUFIX_CACHE_DIR")
        project = Path(policy.root or ".").resolve()
        fallback = None
        if env:
            root = Path(env)
        else:
            root = project / ".gpufix" / "cache"
            # The user cache dir holds the caches of many projects: one file per project root.
            key = hashlib.blake2b(str(project).encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()
            fallback = user_cache_dir() / f"{key}-{name}"
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

            doc = {"version": __version__, "format": FORMAT, "files": entries}
            atomic_write(path, json.dumps(doc, separators=(",", ":")).encode("utf-8"), mode=0o644, durable=False)
            return True
        except OSError:
            return False  # a read-only tree: try the next place, or run without a cache
