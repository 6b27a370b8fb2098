"""Which files to scan: `.py`, `.ipynb` and the other kinds gpufix.formats reads under the given paths, minus what users expect skipped
(VCS and virtualenv folders, caches, build output, `exclude` globs, .gitignore'd files).
Explicitly named files are always scanned."""

from __future__ import annotations

import functools
import operator
import os
from pathlib import Path
from typing import Optional

SKIP_DIRS = {
    ".git", ".hg", ".svn", ".venv", "venv", ".env", "__pycache__", "build", "dist", "node_modules",
    "site-packages", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".gpufix",
    ".eggs", ".ipynb_checkpoints", ".direnv", "__pypackages__",
}


class PathFilter:
    """gitignore-style globs (pathspec): `**` crosses folders, `*` does not, `[ab]` is a class; a
    pattern without `/` matches a name at any depth; a trailing `/` matches a folder and
    everything below it. Paths are matched relative to `root` (the config's folder)."""

    def __init__(self, patterns, root: str):
        import pathspec

        self.root = Path(root).resolve() if root else Path.cwd().resolve()
        self._below = str(self.root).rstrip(os.sep) + os.sep
        self.patterns = tuple(patterns)
        self.spec = pathspec.GitIgnoreSpec.from_lines(self.patterns) if self.patterns else None

    def relative(self, path: Path):
        # A path below the root, as a string: what relative_to gives, without two Paths an entry
        # (a walk asks for each of its entries). Anything else (the root itself, another
        # spelling of it, a path outside it) takes pathlib's way.
        absolute = os.path.abspath(path)
        if absolute.startswith(self._below) and not WINDOWS and len(absolute) > len(self._below):
            return absolute[len(self._below):]
        try:
            return Path(os.path.abspath(path)).relative_to(self.root).as_posix()
        except ValueError:
            try:
                return Path(path).resolve().relative_to(self.root).as_posix()
            except ValueError:
                return None

    def matches(self, path: Path, is_dir: bool = False) -> bool:
        if self.spec is None:
            return False
        rel = self.relative(path)
        if rel is None or rel == ".":
            return False
        if self.spec.match_file(rel):
            return True
        return is_dir and self.spec.match_file(rel + "/")


@functools.lru_cache(maxsize=64)
def path_filter(patterns: tuple, root) -> PathFilter:
    """One compiled PathFilter per (globs, root): a walk asks for it once per folder."""
    return PathFilter(patterns, root)


def _git_ignored(directory: Path) -> set:
    """Absolute paths git ignores under `directory` (folders end with '/'); empty outside git."""
    import subprocess

    # git itself, not GitPython: importing GitPython costs more than the whole warm scan's walk.
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "ls-files", "--others", "--ignored", "--exclude-standard", "--directory", "-z", "."],
            capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.SubprocessError):  # no git, or git hung: nothing is ignored
        return set()
    if done.returncode != 0:  # not a work tree, or git failed
        return set()
    out = done.stdout
    ignored = set()
    base = directory.resolve()
    for item in out.decode("utf-8", "surrogateescape").split("\0"):
        if item:
            p = (base / item).as_posix()
            ignored.add(p + "/" if item.endswith("/") else p)
    return ignored


# Windows file systems (and macOS's by default) do not tell `Run.PY` from `run.py`; ruff prints
# native paths (`src\\app.py`) on Windows. One place decides both, from the platform's separator
# (`sep`/`caseless` are parameters so that tests can ask for Windows on any machine).
WINDOWS = os.sep == "\\"


def skipped_dir(name: str, caseless: bool = WINDOWS) -> bool:
    """A folder gpufix never walks into (SKIP_DIRS, `*.egg-info`); on Windows `.VENV` and `Build`
    are the same folders as `.venv` and `build`."""
    if caseless:
        name = name.lower()
    return name in SKIP_DIRS or name.endswith(".egg-info")


def native_path(shown: str, sep: str = os.sep) -> str:
    """A display path (always `/`-separated inside gpufix) as the platform writes it: with `\\`
    on Windows, unchanged elsewhere. Reporters call this, nothing else does."""
    return shown.replace("/", "\\") if sep == "\\" and shown != "-" else shown


def path_key(path: str, caseless: bool = WINDOWS) -> str:
    """What two spellings of one path have in common: `os.path.normcase` on Windows (case and
    separators folded), the path itself elsewhere."""
    return path.replace("/", "\\").lower() if caseless else path


def same_path(a: str, b: str, caseless: bool = WINDOWS) -> bool:
    return path_key(a, caseless) == path_key(b, caseless)


def path_within(path: str, folder: str, caseless: bool = WINDOWS) -> bool:
    """Whether `path` is `folder` or below it (both absolute, normalised), compared the way the
    platform's file system compares names."""
    p, f = path_key(path, caseless), path_key(folder, caseless)
    sep = "\\" if caseless else os.sep
    f = f.rstrip(sep)
    return p == f or p == f + sep or p.startswith(f + sep)


def display_path(path) -> str:
    """The path relative to the current directory, with '/' separators; a path outside the
    current directory (`/dev/null`, `../other`) stays absolute, as ruff shows it."""
    if str(path) == "-":
        return "-"
    absolute = os.path.abspath(path)
    cwd = os.getcwd()
    if path_within(absolute, cwd):
        return os.path.relpath(absolute, cwd).replace(os.sep, "/")
    return Path(absolute).as_posix()


class _Fixed:
    """One policy for every path (what `discover` takes): its excludes, kinds and config file."""

    def __init__(self, exclude, root, kinds=None, skip=None):
        from gpufix.config import Policy

        policy = Policy(exclude=tuple(exclude), root=root, source=skip)
        if kinds is not None:
            import dataclasses

            policy = dataclasses.replace(policy, file_kinds=tuple(kinds))
        self.policy = policy

    def for_dir(self, directory):
        return self.policy

    def for_path(self, path):
        return self.policy


def discover(paths, exclude=(), root=None, respect_gitignore=True, warn=None, kinds=None, skip=None) -> list:
    """[(path, display path)] (paths as discover_files gives them) in a stable order, without duplicates, one exclude list.
    `kinds`: the file kinds a folder scan picks up (gpufix.formats; default: all); `skip`: a file a
    folder scan leaves out (the policy's own config file: gpufix's settings, not the project's)."""
    resolver = _Fixed(exclude, root, kinds, skip)
    return [(p, d) for p, d, _ in discover_files(paths, resolver, respect_gitignore, warn)]


def _force_excluded(p: Path, policy) -> bool:
    """A file named on the command line that the config excludes (ruff's --force-exclude): by an
    `exclude` glob, or inside a folder gpufix always skips (.venv, build, ...)."""
    filt = path_filter(tuple(policy.exclude), policy.root)
    rel = filt.relative(p)
    if rel is None:
        return False
    if any(skipped_dir(part) for part in Path(rel).parts[:-1]):
        return True
    return filt.matches(p)


_entry_name = operator.attrgetter("name")


def _folder_prefix(shown: str) -> str:
    """A folder's display path as the prefix of its entries' ("" for the current directory)."""
    return "" if shown == "." else shown if shown.endswith("/") else shown + "/"


def _absolute_shown(prefix: str) -> bool:
    """Whether a folder prefix is an absolute path (display_path shows a path outside the current
    directory so): its subfolders are then shown by display_path itself, since the current
    directory may lie below it."""
    return prefix.startswith("/") or os.path.isabs(prefix)


def _as_posix(path: str) -> str:
    """Path(path).as_posix() of a normalised absolute path string (realpath's), without a Path."""
    return path if os.sep == "/" else Path(path).as_posix()


def discover_files(paths, resolver, respect_gitignore=True, warn=None, force_exclude=False) -> list:
    """[(path, display path, Policy)]: each file with the policy of its nearest config, whose `exclude` also decides which folders are walked (ruff's hierarchical lookup), whose
    `file-kinds` which files a folder scan reads, and whose own config file is not scanned. A path
    is a string (no Path is made per entry): a named path as pathlib spells it, a found file as its
    folder's path joined with its name."""
    from gpufix.kinds import ALL_KINDS, kind_of, kind_of_name

    def kinds_of(policy) -> frozenset:
        kinds = getattr(policy, "file_kinds", None)
        return frozenset(ALL_KINDS if kinds is None else kinds)

    real_sources: dict = {}

    def is_config_file(path, policy, real: Optional[str] = None) -> bool:
        source = getattr(policy, "source", None)
        if not source:
            return False
        if source not in real_sources:
            real_sources[source] = os.path.realpath(source)
        return (real or os.path.realpath(path)) == real_sources[source]

    seen = set()
    out = []

    def add(p: str, policy, real: Optional[str] = None, shown: Optional[str] = None):
        key = real or os.path.realpath(p)
        if key in seen:
            return
        seen.add(key)
        out.append((p, shown if shown is not None else display_path(p), policy))

    for raw in paths:
        p = Path(raw)
        if p.is_file() or (p.is_symlink() and not p.is_dir()) or not p.is_dir():
            # explicitly named: always scanned (a broken link or a missing path becomes a read
            # error, like ruff), unless --force-exclude and the config excludes it, or it is of a
            # kind the policy leaves out (pre-commit passes every YAML/JSON file)
            policy = resolver.for_path(p)
            if force_exclude and _force_excluded(p, policy):
                continue
            named_kind = kind_of(p.name)
            if named_kind is not None and named_kind not in kinds_of(policy):
                continue
            add(str(p), policy)
            continue
        ignored = _git_ignored(p) if respect_gitignore else set()
        scan_root = os.path.realpath(p)
        # Each folder's real path and display path come from its parent's: a folder that is no link
        # is its parent's real path plus its name (os.path.realpath costs an lstat per part of the
        # path), and below a folder shown relative to the current directory, its display path is
        # the parent's plus its name. One realpath and one display_path a walk, not one a folder.
        stack = [(str(p), scan_root, _folder_prefix(display_path(p)))]
        while stack:
            d, real_d, shown_d = stack.pop()
            if shown_d is None:  # a folder shown by its absolute path: the current directory may be below it
                shown_d = _folder_prefix(display_path(d))
            policy = resolver.for_dir(d)
            excl = path_filter(tuple(policy.exclude), policy.root) if policy.exclude else None
            kinds = kinds_of(policy)
            try:
                entries = sorted(os.scandir(d), key=_entry_name, reverse=True)
            except OSError as exc:
                if warn:
                    warn(f"{display_path(Path(d))}: cannot list folder: {exc.strerror}")
                continue
            below = shown_d if not _absolute_shown(shown_d) else None
            # os.path.join(d, name) for an entry's name (no separator in it, never absolute) is the
            # folder's joined prefix plus the name: two joins a folder, not two an entry
            d_prefix = "" if d == "." else os.path.join(d, "")
            real_prefix = os.path.join(real_d, "")
            for entry in entries:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                    is_link = entry.is_symlink()
                except OSError:
                    continue
                name = entry.name
                if is_dir:
                    if skipped_dir(name):
                        continue
                    real = real_prefix + name  # a folder, not a link: its real path
                    if ignored and (_as_posix(real) + "/") in ignored:
                        continue
                    ep = d_prefix + name  # str(Path(entry.path))
                    if excl is not None and excl.matches(ep, is_dir=True):
                        continue
                    stack.append((ep, real, None if below is None else below + name + "/"))
                    continue
                if kind_of_name(name) not in kinds:
                    continue
                ep = d_prefix + name
                # A file that is no link resolves to its folder's real path plus its name; its
                # display path is its folder's plus its name.
                real = None if is_link else real_prefix + name
                if is_config_file(ep, policy, real):
                    continue
                if is_link:
                    target = os.path.realpath(ep)
                    if not os.path.exists(target):
                        if warn:
                            warn(f"{display_path(ep)}: broken symbolic link; skipped")
                        continue
                    if not path_within(target, scan_root):
                        continue  # a link out of the tree is not part of this codebase
                if ignored and (_as_posix(real) if real is not None else Path(ep).resolve().as_posix()) in ignored:
                    continue
                if excl is not None and excl.matches(ep):
                    continue
                add(ep, policy, real, shown_d + name)
    out.sort(key=lambda item: item[1])
    return out
