"""Where the project is and what is its own: the root (config file, markers), first-party names,
module names of files, the project's files (whatever paths a run names)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Optional

from gpufix.config import project_root as config_project_root
from gpufix.deferred import LazyPattern, toml_parser


_TEST_FILE_RE = re.compile(r"^(test_.*|.*_test)\.py$")


# -- where the project is and what is its own --------------------------------------------------
def project_root(paths: Iterable[str]) -> Path:
    """The project of the first scanned path: config.project_root of its folder (the one
    definition, shared with the policy's root)."""
    first = Path(next(iter(paths), ".") or ".").resolve()
    return config_project_root(first if first.is_dir() else first.parent)


def _read_pyproject(root: Path) -> Optional[dict]:
    """The project's pyproject.toml as a dict; None when it is missing, unreadable or not TOML."""
    try:
        with open(root / "pyproject.toml", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    tomllib = toml_parser()  # imported only once there is a pyproject.toml to read
    try:
        return tomllib.loads(raw.decode())  # what tomllib.load(fh) does with the bytes
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None


def _pyproject_name(root: Path) -> Optional[str]:
    data = _read_pyproject(root)
    if data is None:
        return None
    project = data.get("project")
    name = project.get("name") if isinstance(project, dict) else None
    if isinstance(name, str) and name.strip():
        return re.sub(r"[-.]+", "_", name.strip())
    return None


def _console_targets(root: Path) -> list:
    """Modules named by `[project.scripts]` / `[project.gui-scripts]` ("pkg.cli:main" -> "pkg.cli")."""
    data = _read_pyproject(root)
    if data is None:
        return []
    project = data.get("project")
    out = []
    if isinstance(project, dict):
        for key in ("scripts", "gui-scripts"):
            table = project.get(key)
            if isinstance(table, dict):
                out += [v.split(":")[0].strip() for v in table.values() if isinstance(v, str)]
    return out


_SETUP_SCRIPT_RE = LazyPattern(r"""['"]\s*[\w.-]+\s*=\s*([\w.]+)\s*:\s*\w+""")


def _setup_console_targets(root: Path) -> list:
    """Console-script targets of a setup.py / setup.cfg (`'tts=TTS.bin.synthesize:main'`); a text
    search in the `console_scripts` part: setup.py is code, never run here."""
    out = []
    for name in ("setup.py", "setup.cfg"):
        try:
            text = (root / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        at = text.find("console_scripts")
        if at < 0:
            continue
        chunk = text[at: at + 2000]
        if name == "setup.cfg":
            out += re.findall(r"^\s*[\w.-]+\s*=\s*([\w.]+)\s*:\s*\w+", chunk, re.M)
        else:
            out += _SETUP_SCRIPT_RE.findall(chunk)
    return out


# folder -> whether it holds an `__init__.py`: asked for every folder above every file; emptied at
# the start of each index build (and in each index worker), so it never outlives one run's view.
_HAS_INIT: dict = {}


def _package_dir(path, root: Optional[Path] = None) -> bool:
    # The project root itself is never a package (a stray `__init__.py` next to setup.py).
    if root is not None and path == root:
        return False
    key = str(path)
    got = _HAS_INIT.get(key)
    if got is None:
        got = _HAS_INIT[key] = os.path.isfile(os.path.join(key, "__init__.py"))
    return got


def module_name(abs_path: Path, root: Optional[Path] = None) -> tuple:
    """(dotted module name, top package dir or None) of a file. The top package is the outermost
    folder below the project root that holds an `__init__.py`; folders without one in between are
    namespace portions (`TTS/vc/configs` under `TTS/`: importing it runs `TTS/__init__.py` first)."""
    top = None
    if root is not None:
        path_s = os.fspath(abs_path)  # a str must be normalised (os.path.abspath's)
        top = _top_package(path_s, str(root).rstrip(os.sep) + os.sep)
        if top is None:
            return _stem(path_s), None
        # the path below the top package's parent, as strings (pathlib's parts cost more than the
        # rest of a warm run's project reading): `pkg/sub/mod.py` -> pkg.sub.mod
        parts = path_s[len(os.path.dirname(top)) + 1:].split(os.sep)
        parts[-1] = _stem(parts[-1])
        if parts[-1] == "__init__":
            parts.pop()
        return ".".join(parts), Path(top)
    top = None  # no project root: the run of package folders only
    directory = abs_path.parent
    while _package_dir(directory):
        top = directory
        directory = directory.parent
    if top is None:
        return abs_path.stem, None
    rel = abs_path.relative_to(top.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts), top


def _top_package(path_s: str, under: str):
    """The outermost folder holding an `__init__.py` between the file `path_s` and the root
    (`under`: the root's path and a separator), as a string; None when there is none. Folders
    strictly below the root, walked as strings (Path.parents is slow over 2,000 files)."""
    top = None
    directory_s = os.path.dirname(path_s)
    while directory_s.startswith(under) and os.path.dirname(directory_s) != directory_s:
        if _package_dir(directory_s):  # strictly below the root: never the root itself
            top = directory_s
        directory_s = os.path.dirname(directory_s)
    return top


def _stem_and_suffix(path: str) -> tuple:
    """pathlib's `stem` and `suffix` of a path's last part, on a string (the warm runs ask them of
    every project file)."""
    name = os.path.basename(path)
    i = name.rfind(".")
    return (name[:i], name[i:]) if 0 < i < len(name) - 1 else (name, "")


def _stem(path: str) -> str:
    return _stem_and_suffix(path)[0]


def _suffix(path: str) -> str:
    return _stem_and_suffix(path)[1]


def _import_names(abs_path: Path, root: Path) -> list:
    """The dotted names a file may be imported by: every tail of its path below the root
    (`modules/LoRA.py` is `modules.LoRA` from the root, `LoRA` from its own folder)."""
    try:
        rel = abs_path.relative_to(root).with_suffix("")
    except ValueError:
        return [abs_path.stem]
    parts = list(rel.parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return [".".join(parts[i:]) for i in range(len(parts)) if all(x.isidentifier() for x in parts[i:])]


def first_party_names(root: Path, files: Iterable[str], known_first_party=(), known_frameworks=()) -> tuple:
    """Top-level names of the project's own code (never GPU frameworks, unless `known_frameworks`)."""
    names = set(known_first_party)
    own = _pyproject_name(root)
    if own:
        names.add(own)
    src = root / "src"
    for base in (root, src):
        if base.is_dir():
            try:
                for child in base.iterdir():
                    if child.is_dir() and _package_dir(child) and child.name.isidentifier():
                        names.add(child.name)
                    elif child.suffix.lower() == ".py" and child.stem.isidentifier() and child.stem != "__init__":
                        names.add(child.stem)
            except OSError:
                pass
    under = str(root).rstrip(os.sep) + os.sep
    tops: dict = {}  # folder -> _top_package of a file in it, each folder's from its parent's

    def top_of(folder: str):
        if folder in tops:
            return tops[folder]
        parent = os.path.dirname(folder)
        top = None
        if folder.startswith(under) and parent != folder:  # strictly below the root
            top = top_of(parent)  # the outermost wins: the parent's, if it has one
            if top is None and _package_dir(folder):
                top = folder
        tops[folder] = top
        return top

    for f in files:
        name = os.path.basename(f)
        if len(name) <= 3 or not name.lower().endswith(".py"):  # pathlib's suffix: ".py" alone has none
            continue
        top = top_of(os.path.dirname(os.fspath(f)))
        if top is not None and os.path.basename(top).isidentifier():
            names.add(os.path.basename(top))
    names -= {m.split(".")[0] for m in known_frameworks}
    return tuple(sorted(names))


# setuptools' declarative configuration: `[metadata]`, `[options]` and its `[options.*]` tables.
# A setup.cfg without them configures tools only (flake8, pycodestyle, isort, pytest, mypy).
_SETUPTOOLS_SECTION_RE = LazyPattern(r"^[ \t]*\[[ \t]*(?:metadata|options(?:\.[^\]\n]*)?)[ \t]*\]", re.M)
_SETUP_CFG_MAX_BYTES = 1 << 20


def _setup_cfg_packages(path: Path) -> bool:
    """Whether a setup.cfg declares a distribution (a setuptools section). A file that cannot be
    read whole (too big, unreadable, not text) counts as one: being packaged makes more files
    entry points, which asks for more headers, never fewer."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_SETUP_CFG_MAX_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False  # no setup.cfg file
    except OSError:
        return True
    if len(raw) > _SETUP_CFG_MAX_BYTES:
        return True
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return True
    return _SETUPTOOLS_SECTION_RE.search(text) is not None


def _distributes_packages(root: Path) -> bool:
    """Whether the project is packaged (pyproject `[project]` or `[tool.poetry]`, setup.py, a
    setup.cfg with setuptools' `[metadata]` or `[options]`): then its packages may be imported by
    programs outside it. A setup.cfg that only configures tools (`[flake8]`, `[pycodestyle]`) is
    no package: an application's folders stay its own scripts' internals."""
    if (root / "setup.py").is_file() or _setup_cfg_packages(root / "setup.cfg"):
        return True
    data = _read_pyproject(root)
    if data is None:
        return False
    tool = data.get("tool") if isinstance(data.get("tool"), dict) else {}
    return isinstance(data.get("project"), dict) or isinstance(tool.get("poetry"), dict)


def _rel(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).name


# -- the run's project: the same for any subset of its files ---------------------------------------
def run_project_root(policy, run_files) -> Path:
    """The project a run's files belong to, from the config's folder (or, without a config file,
    the run's files) and the project markers above it: never from which files were named."""
    if policy.source and policy.root:
        start = [policy.root]
    else:
        abs_files = [os.path.abspath(a) for a, _ in run_files]
        start = [os.path.commonpath(abs_files)] if abs_files else ["."]
    return project_root(start)


def project_files(root: Path, policy, run_files, walked=None) -> list:
    """(abs_path, display) of the project's Python files and notebooks (discovered under the root
    with the policy's excludes), plus the run's own files. `walked`: what discover_files gave for
    that same walk (the run's own walk of the root, under the one policy): not walked again."""
    from gpufix.config import SinglePolicy
    from gpufix.discover import discover_files

    seen = set()
    out = []
    for a, d, _ in (walked if walked is not None else discover_files([str(root)], SinglePolicy(policy))):
        a = os.path.abspath(a)
        if a.lower().endswith((".py", ".ipynb")) and a not in seen:  # `Upper.PY` is Python too
            seen.add(a)
            out.append((a, d))
    for a, d in run_files:
        a = os.path.abspath(a)
        if a not in seen:
            seen.add(a)
            out.append((a, d))
    return out
