"""The scan result cache: one JSON file per (policy, gpufix version), keyed by absolute path and
validated by size and mtime (like ruff's). Written atomically, so concurrent runs at worst redo
work; a broken or foreign cache file is ignored."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from gpufix import __version__


class ResultCache:
    def __init__(self, path: Path, entries: dict):
        self.path = path
        self.entries = entries
        self.dirty = False

    @classmethod
    def open(cls, policy, options) -> "ResultCache":
        root = Path(os.environ.get("GPUFIX_CACHE_DIR") or Path(policy.root or ".") / ".gpufix" / "cache")
        name = f"scan-{__version__}-{policy.fingerprint()}-{int(options.use_prefilter)}.json"
        path = root / name
        entries = {}
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            if isinstance(data, dict) and data.get("version") == __version__:
                entries = data.get("files", {})
        except (OSError, ValueError):
            entries = {}
        return cls(path, entries)

    @staticmethod
    def _stamp(abs_path: str):
        try:
            st = os.stat(abs_path)
        except OSError:
            return None
        return [st.st_size, st.st_mtime_ns]

    def get(self, abs_path: str):
        entry = self.entries.get(abs_path)
        if entry is None:
            return None
        if entry.get("stamp") != self._stamp(abs_path):
            return None
        return entry.get("result")

    def put(self, abs_path: str, result: dict) -> None:
        stamp = self._stamp(abs_path)
        if stamp is not None:
            self.entries[abs_path] = {"stamp": stamp, "result": result}
            self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            gitignore = self.path.parent.parent / ".gitignore"
            if not gitignore.exists():
                gitignore.write_text("# created by gpufix\n*\n", encoding="utf-8")
            fd, tmp = tempfile.mkstemp(prefix=".scan-", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"version": __version__, "files": self.entries}, fh, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only tree: run without a cache
