"""Which files to scan: `.py`, `.ipynb` and the other kinds gpufix.formats reads under the given paths, minus what users expect skipped
(VCS and virtualenv folders, caches, build output, `exclude` globs, .gitignore'd files).
Explicitly named files are always scanned."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

SKIP_DIRS = {
    ".git", ".hg", ".svn", ".venv", "venv", ".env", "__pycache__", "build", "dist", "node_modules",
    "site-packages", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".gpufix",
    ".eggs", ".ipynb_checkpoints", ".direnv", "__pypackages__",
}


def glob_to_regex(pattern: str) -> re.Pattern:
    """gitignore-like globs: `**` crosses folders, `*` does not; a pattern without `/` matches a
    name at any depth; a trailing `/` matches a folder and everything below it."""
    directory = pattern.endswith("/")
    pat = pattern.strip("/") if directory else pattern.lstrip("/")
    anchored = "/" in pat
    out = []
    i = 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pat.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(c))
        i += 1
    body = "".join(out)
    prefix = "^" if anchored else r"^(?:.*/)?"
    # Matching a folder matches everything below it.
    return re.compile(prefix + body + r"(?:/.*)?$")


class PathFilter:
    def __init__(self, patterns, root: str):
        self.root = Path(root).resolve() if root else Path.cwd().resolve()
        self.rules = [glob_to_regex(p) for p in patterns]

    def relative(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def matches(self, path: Path) -> bool:
        if not self.rules:
            return False
        rel = self.relative(path)
        return any(rx.match(rel) for rx in self.rules)


def _git_ignored(directory: Path) -> set:
    """Absolute paths git ignores under `directory` (folders end with '/'); empty outside git."""
    try:
        top = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--show-toplevel"],
            capture_output=True, text=True, timeout=20,
        )
        if top.returncode != 0:
            return set()

        out = subprocess.run(
            ["git", "-C", str(directory), "ls-files", "--others", "--ignored", "--exclude-standard", "--directory", "-z", "."],
            capture_output=True, timeout=60,
        )
        if out.returncode != 0:
            return set()
    except (OSError, subprocess.SubprocessError):
        return set()
    ignored = set()
    base = directory.resolve()
    for item in out.stdout.decode("utf-8", "surrogateescape").split("\0"):
        if item:
            p = (base / item).as_posix()
            ignored.add(p + "/" if item.endswith("/") else p)
    return ignored


def display_path(path) -> str:
    """The path relative to the current directory, with '/' separators."""
    try:
        return os.path.relpath(os.path.abspath(path), os.getcwd()).replace(os.sep, "/")
    except ValueError:  # another drive on Windows
        return Path(os.path.abspath(path)).as_posix()


def discover(paths, exclude=(), root=None, respect_gitignore=True, warn=None, kinds=None, skip=None) -> list:
    """[(absolute Path, display path)] in a stable order, without duplicates. `kinds`: the file
    kinds a folder scan picks up (gpufix.formats; default: all); `skip`: a file a folder scan
    leaves out (the policy's own config file: gpufix's settings, not the project's)."""
    from gpufix.formats import ALL_KINDS, kind_of

    kinds = frozenset(ALL_KINDS if kinds is None else kinds)
    skip_key = os.path.realpath(skip) if skip else None
    excl = PathFilter(exclude, root)
    seen = set()
    out = []

    def add(p: Path):
        key = os.path.realpath(p)
        if key in seen:
            return
        seen.add(key)
        out.append((p, display_path(p)))

    for raw in paths:
        p = Path(raw)
        if p.is_file() or (p.is_symlink() and not p.is_dir()):
            named_kind = kind_of(p.name)
            if named_kind is not None and named_kind not in kinds:
                continue  # a kind the policy leaves out (pre-commit passes every YAML/JSON file)
            add(p)  # explicitly named: always scanned (a broken link becomes a read error)
            continue
        if not p.is_dir():
            add(p)  # a named path that does not exist: reported as a read error (exit 1), like ruff
            continue
        ignored = _git_ignored(p) if respect_gitignore else set()
        scan_root = os.path.realpath(p)
        stack = [p]
        while stack:
            d = stack.pop()
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name, reverse=True)
            except OSError as exc:
                if warn:
                    warn(f"{display_path(Path(d))}: cannot list folder: {exc.strerror}")
                continue
            for entry in entries:
                ep = Path(entry.path)
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                    is_link = entry.is_symlink()
                except OSError:
                    continue
                if is_dir:
                    if entry.name in SKIP_DIRS or entry.name.endswith(".egg-info"):
                        continue
                    if ignored and (ep.resolve().as_posix() + "/") in ignored:
                        continue
                    if excl.matches(ep):
                        continue
                    stack.append(ep)
                    continue
                if kind_of(entry.name) not in kinds:
                    continue
                if skip_key is not None and os.path.realpath(ep) == skip_key:
                    continue
                if is_link:
                    target = os.path.realpath(ep)
                    if not os.path.exists(target):
                        if warn:
                            warn(f"{display_path(ep)}: broken symbolic link; skipped")
                        continue
                    if not (target + os.sep).startswith(scan_root + os.sep):
                        continue  # a link out of the tree is not part of this codebase
                if ignored and ep.resolve().as_posix() in ignored:
                    continue
                if excl.matches(ep):
                    continue
                add(ep)
    out.sort(key=lambda item: item[1])
    return out
