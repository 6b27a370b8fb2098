"""Facts about the scanned project as a whole: its first-party packages and where its processes start.

Python runs `pkg/__init__.py` before any module of `pkg`, pytest imports the rootmost `conftest.py`
before the test modules under it, and a script's header covers everything it imports. So with the
`entrypoints` header scope, the mask header is required only in the files where a process starts
(scripts, the top `__init__.py` of each first-party package, the rootmost `conftest.py` of each test
tree, notebooks), and only when that process reaches a GPU framework: directly, or through the
project's own modules (an import graph; imports inside functions count, imports under
`if TYPE_CHECKING:` or used only in annotations do not).

First-party packages (the pyproject's `[project] name`, the packages of a `src/` layout, the top-level
packages and modules of the scanned tree) are never GPU frameworks, even when the catalogue lists the
name (scanning TTS itself, `from TTS.api import TTS` is the project's own code). The policy keys
`known-first-party` and `known-gpu-frameworks` override this both ways.

The pass reads imports, the `__main__` guard and the shebang of each file, from its text
(gpufix.importscan) where the text settles them, else with `ast`; nothing is imported or run.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Iterable, Optional

from gpufix.importscan import read_imports

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")
_TEST_FILE_RE = re.compile(r"^(test_.*|.*_test)\.py$")


@dataclasses.dataclass(frozen=True)
class ProjectIndex:
    """What the per-file rules need from the whole project (passed to the workers in the Policy)."""

    root: str
    first_party: tuple = ()  # top-level names that are the project's own code
    # abs path -> why the file must hold the header ("a script (`__main__` guard)", ...)
    entries: tuple = ()  # tuple of (abs_path, reason)
    # abs path of a GPU module outside `entries` -> what covers it
    covered: tuple = ()  # tuple of (abs_path, covered-by text)
    graph_built: bool = False
    unparsed: frozenset = frozenset()  # files the index could not read: linted anyway, to report why

    @property
    def entry_map(self) -> dict:
        d = self.__dict__.get("_entry_map")
        if d is None:
            d = dict(self.entries)
            object.__setattr__(self, "_entry_map", d)
        return d

    @property
    def covered_map(self) -> dict:
        d = self.__dict__.get("_covered_map")
        if d is None:
            d = dict(self.covered)
            object.__setattr__(self, "_covered_map", d)
        return d

    def to_json(self) -> dict:
        return {"root": self.root, "first_party": list(self.first_party), "entries": [list(e) for e in self.entries],
                "covered": [list(c) for c in self.covered], "graph_built": self.graph_built,
                "unparsed": sorted(self.unparsed)}

    @classmethod
    def from_json(cls, data: dict) -> "ProjectIndex":
        return cls(data["root"], tuple(data["first_party"]), tuple(tuple(e) for e in data["entries"]),
                   tuple(tuple(c) for c in data["covered"]), bool(data["graph_built"]), frozenset(data["unparsed"]))

    def fingerprint(self) -> str:
        blob = repr((self.first_party, self.entries, self.covered, self.graph_built, sorted(self.unparsed))).encode()
        return hashlib.blake2b(blob, digest_size=12).hexdigest()


# -- where the project is and what is its own --------------------------------------------------
def project_root(paths: Iterable[str]) -> Path:
    """The nearest directory at or above the first scanned path holding pyproject.toml, setup.py,
    setup.cfg or .git; else the scanned directory itself."""
    first = Path(next(iter(paths), ".") or ".").resolve()
    start = first if first.is_dir() else first.parent
    for directory in (start, *start.parents):
        if (directory / "__init__.py").is_file():
            continue  # a package folder is never a project root (lightning's trainer/setup.py)
        if any((directory / m).exists() for m in _PROJECT_MARKERS):
            return directory
    return start


def _pyproject_name(root: Path) -> Optional[str]:
    try:
        with open(root / "pyproject.toml", "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    project = data.get("project")
    name = project.get("name") if isinstance(project, dict) else None
    if isinstance(name, str) and name.strip():
        return re.sub(r"[-.]+", "_", name.strip())
    return None


def _console_targets(root: Path) -> list:
    """Modules named by `[project.scripts]` / `[project.gui-scripts]` ("pkg.cli:main" -> "pkg.cli")."""
    try:
        with open(root / "pyproject.toml", "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return []
    project = data.get("project")
    out = []
    if isinstance(project, dict):
        for key in ("scripts", "gui-scripts"):
            table = project.get(key)
            if isinstance(table, dict):
                out += [v.split(":")[0].strip() for v in table.values() if isinstance(v, str)]
    return out


_SETUP_SCRIPT_RE = re.compile(r"""['"]\s*[\w.-]+\s*=\s*([\w.]+)\s*:\s*\w+""")


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


def _package_dir(path: Path, root: Optional[Path] = None) -> bool:
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
        # Folders strictly below the root, walked as strings (Path.parents is slow over 2,000 files).
        under = str(root).rstrip(os.sep) + os.sep
        directory_s = os.path.dirname(str(abs_path))
        while directory_s.startswith(under) and os.path.dirname(directory_s) != directory_s:
            if _HAS_INIT.get(directory_s) or (directory_s not in _HAS_INIT and _package_dir(Path(directory_s), root)):
                top = directory_s
            directory_s = os.path.dirname(directory_s)
        top = Path(top) if top is not None else None
    if root is None:  # no project root: the run of package folders only
        top = None
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
                    elif child.suffix == ".py" and child.stem.isidentifier() and child.stem != "__init__":
                        names.add(child.stem)
            except OSError:
                pass
    for f in files:
        p = Path(f)
        if p.suffix != ".py":
            continue
        _, top = module_name(p, root)
        if top is not None and top.name.isidentifier():
            names.add(top.name)
    names -= {m.split(".")[0] for m in known_frameworks}
    return tuple(sorted(names))


# -- one file's imports ----------------------------------------------------------------------------
def _is_type_checking(test) -> bool:
    if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
        return True
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def type_checking_stmt_ids(body) -> set:
    """ids of the statements inside `if TYPE_CHECKING:` blocks (never run)."""
    out: set = set()

    def walk(stmts):
        for stmt in stmts:
            if isinstance(stmt, ast.If) and _is_type_checking(stmt.test):
                for inner in ast.walk(ast.Module(body=stmt.body, type_ignores=[])):
                    if isinstance(inner, ast.stmt):
                        out.add(id(inner))
                walk(stmt.orelse)
                continue
            for field in ("body", "orelse", "finalbody"):
                block = getattr(stmt, field, None)
                if block:
                    walk(block)
            for h in getattr(stmt, "handlers", None) or ():
                walk(h.body)

    walk(body)
    return out


def annotation_only_names(tree: ast.Module, names: set, text: Optional[str] = None) -> set:
    """Of `names` (bound by imports), those used only inside annotations (and used at least once).

    With the file's `text`, only the statements are walked (annotations hang off `def`s and
    annotated assignments) and each name's occurrences are found in the text: one outside every
    annotation, an import and a comment (a docstring mention counts too) keeps the import a run-time
    one. Without it, the whole tree is walked."""
    if not names:
        return set()
    if text is not None:
        return _annotation_only_by_text(tree, names, text)
    in_annotation: set = set()
    for node in ast.walk(tree):
        for ann in _annotations_of(node):
            for sub in ast.walk(ann):
                if isinstance(sub, ast.Name):
                    in_annotation.add(id(sub))
    used_outside: set = set()
    used_inside: set = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in names:
            (used_inside if id(node) in in_annotation else used_outside).add(node.id)
    return used_inside - used_outside


def _annotations_of(node) -> list:
    out = []
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        a = node.args
        for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
            if arg is not None and arg.annotation is not None:
                out.append(arg.annotation)
        if node.returns is not None:
            out.append(node.returns)
    elif isinstance(node, ast.AnnAssign):
        out.append(node.annotation)
    return out


def _annotation_only_by_text(tree: ast.Module, names: set, text: str) -> set:
    from gpufix.analysis import iter_statements

    spans = []  # annotation expressions: ((line, byte col), (end line, end byte col))
    import_lines: set = set()
    for stmt in iter_statements(tree.body):
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            import_lines.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
        for ann in _annotations_of(stmt):
            spans.append(((ann.lineno, ann.col_offset), (ann.end_lineno or ann.lineno, ann.end_col_offset or 0)))
    if not spans:
        return set()
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    import bisect

    out = set()
    for name in names:
        inside = 0
        for at in _word_positions(text, name):
            line_no = bisect.bisect_right(starts, at)
            if line_no in import_lines:
                continue
            line = lines[line_no - 1]
            col = at - starts[line_no - 1]
            if "#" in line[:col]:
                continue
            pos = (line_no, len(line[:col].encode("utf-8")))
            if any(a <= pos < b for a, b in spans):
                inside += 1
            else:
                break
        else:
            if inside:
                out.add(name)
    return out


def _word_positions(text: str, name: str):
    """Offsets of `name` as a whole name, not an attribute (what `(?<![\\w.])name(?!\\w)` finds;
    a substring search is much faster than a regex that starts with a lookbehind)."""
    find = text.find
    size = len(name)
    at = find(name)
    while at >= 0:
        before = text[at - 1] if at else " "
        after = text[at + size: at + size + 1]
        if not (before.isalnum() or before in "_." or after.isalnum() or after == "_"):
            yield at
        at = find(name, at + size)


@dataclasses.dataclass
class ModuleImports:
    modules: list  # absolute dotted names imported at run time (lazy ones included)
    gpu: list  # of those, GPU framework modules


def _from_target(package: str, level: int, module: str) -> str:
    """The absolute module a `from` import names (`from ..x import y` in package `a.b.c` -> `a.b.x`);
    "" when the dots climb above the top package."""
    if not level:
        return module
    base = package.split(".") if package else []
    if level - 1 > len(base):
        return ""
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def runtime_imports(tree: ast.Module, module: str, is_package: bool, is_framework, text: Optional[str] = None) -> ModuleImports:
    """The modules a file imports when it runs (imports inside functions count: calling the
    function imports them; `if TYPE_CHECKING:` blocks and annotation-only framework imports do not).
    `text`, when given, lets the cheap cases skip whole-tree walks."""
    skip = type_checking_stmt_ids(tree.body) if (text is None or "TYPE_CHECKING" in text) else set()
    package = module if is_package else module.rpartition(".")[0]
    found: list = []  # (module, bound names)
    from gpufix.analysis import iter_statements

    # every statement, function bodies included (a lazy import counts); imports are statements
    for node in iter_statements(tree.body):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                found.append((alias.name, {bound}))
        elif isinstance(node, ast.ImportFrom):
            target = _from_target(package, node.level, node.module or "")
            if not target:
                continue
            bound = {a.asname or a.name for a in node.names if a.name != "*"}
            found.append((target, bound))
            for a in node.names:
                if a.name != "*":
                    found.append((f"{target}.{a.name}", {a.asname or a.name}))
    # importlib.import_module("pkg.mod") / import_module(f"extensions.{name}.script"): a dynamic
    # import of a constant name, or of every module whose name fits the pattern ("*" per field).
    dynamic = text is None or "import_module" in text or "__import__" in text
    for node in (ast.walk(tree) if dynamic else ()):
        if isinstance(node, ast.Call) and node.args and id(node) not in skip:
            func = node.func
            last = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if last not in ("import_module", "__import__"):
                continue
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((arg.value, set()))
            elif isinstance(arg, ast.JoinedStr):
                pattern = "".join(v.value if isinstance(v, ast.Constant) else "*" for v in arg.values)
                if pattern.replace("*", "").strip("."):
                    found.append(("pattern:" + pattern, set()))
    gpu_bound = set()
    for name, bound in found:
        if is_framework(name):
            gpu_bound |= bound
    annotation_only = annotation_only_names(tree, gpu_bound, text)
    modules, gpu = [], []
    for name, bound in found:
        modules.append(name)
        if is_framework(name) and not (bound and bound <= annotation_only):
            gpu.append(name)
    return ModuleImports(modules, gpu)


_RUNTIME_BEFORE = re.compile(
    r"(?:[=(@]|\b(?:return|yield|await|not|in|is|and|or|if|elif|while|assert|raise|del|with|else|print))$"
)
_CALL_AFTER = re.compile(r"(?:[ \t]*\.[ \t]*\w+)*[ \t]*\(")


def _used_at_run_time(name: str, text: str, import_spans: list) -> Optional[bool]:
    """Whether an imported `name` is used outside annotations, by its text: True when one use
    surely is (a call, a default or argument value, a decorator, after `return`/`if`/...), or when
    it is never used; None when every use may be inside an annotation (then `ast` decides).
    `import_spans`: sorted (start, end) offsets of the import statements, whose names do not count."""
    import bisect

    seen = False
    size = len(name)
    for pos in _word_positions(text, name):
        k = bisect.bisect_right(import_spans, (pos, len(text))) - 1
        if k >= 0 and import_spans[k][0] <= pos < import_spans[k][1]:
            continue
        line_start = text.rfind("\n", 0, pos) + 1
        prefix = text[line_start:pos]
        if "#" in prefix:
            continue
        seen = True
        if _RUNTIME_BEFORE.search(prefix.rstrip()) or _CALL_AFTER.match(text, pos + size):
            return True
    return None if seen else True


def runtime_imports_from_text(found_stmts, text: str, module: str, is_package: bool, is_framework) -> Optional[ModuleImports]:
    """runtime_imports from gpufix.importscan's reading of the text (no `TYPE_CHECKING`, no dynamic
    import: read_imports leaves those files to ast); None when an annotation-only use is possible
    (then `ast` decides)."""
    package = module if is_package else module.rpartition(".")[0]
    found: list = []  # (module, bound names, statement)
    for st in found_stmts:
        if st.level < 0:
            for name, asname in st.names:
                found.append((name, {asname or name.split(".")[0]}, st))
            continue
        target = _from_target(package, st.level, st.module)
        if not target:
            continue
        found.append((target, {a or n for n, a in st.names if n != "*"}, st))
        for n, a in st.names:
            if n != "*":
                found.append((f"{target}.{n}", {a or n}, st))
    modules = [name for name, _, _ in found]
    gpu_found = [(name, bound) for name, bound, _ in found if is_framework(name)]
    if not gpu_found:
        return ModuleImports(modules, [])
    import_spans = sorted((st.start, st.end) for st in found_stmts)
    verdict: dict = {}
    gpu = []
    undecided = False
    for name, bound in gpu_found:
        if not bound:
            gpu.append(name)  # a star import
            continue
        runtime = False
        for b in bound:
            if b not in verdict:
                verdict[b] = _used_at_run_time(b, text, import_spans)
            if verdict[b] is True:
                runtime = True
                break
        if runtime:
            gpu.append(name)
        else:
            undecided = True
    if undecided and not gpu:
        return None  # the file is a GPU module only if an annotation-only import is not: ast decides
    return ModuleImports(modules, gpu)


_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
                ast.AnnAssign, ast.AugAssign, ast.Pass, ast.Global, ast.Nonlocal) + (
                    (ast.TypeAlias,) if hasattr(ast, "TypeAlias") else ())


def _runs_code(body) -> bool:
    """Whether module-level statements do something when the file runs: a call or other expression
    statement (not a docstring), a loop, a `with`, ...; definitions, assignments and the branches
    of an `if` / `try` holding only those (`if is_torch_available(): import torch`) do not."""
    for stmt in body:
        if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if any(not isinstance(t, (ast.Name, ast.Tuple, ast.List)) for t in targets):
                return True  # `os.environ[...] = ...`, `torch.backends.x = ...`: changes the process
            continue
        if isinstance(stmt, _DEFINITIONS):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a docstring or a bare constant
        if isinstance(stmt, ast.If):
            if _runs_code(stmt.body) or _runs_code(stmt.orelse):
                return True
            continue
        if isinstance(stmt, ast.Try) or (hasattr(ast, "TryStar") and isinstance(stmt, ast.TryStar)):
            if any(_runs_code(b) for b in (stmt.body, stmt.orelse, stmt.finalbody, *(h.body for h in stmt.handlers))):
                return True
            continue
        return True
    return False


def _defines(body) -> bool:
    """Whether the module body defines a function or a class (a plugin's or helper's reason to be;
    a file with none is module-level code, a script)."""
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return True
        if isinstance(stmt, (ast.If, ast.Try)) or (hasattr(ast, "TryStar") and isinstance(stmt, ast.TryStar)):
            blocks = [stmt.body, stmt.orelse, getattr(stmt, "finalbody", [])] + [h.body for h in getattr(stmt, "handlers", [])]
            if any(_defines(b) for b in blocks):
                return True
    return False


def _has_main_guard(tree: ast.Module) -> bool:
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Compare):
            sides = [stmt.test.left, *stmt.test.comparators]
            if any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and any(
                isinstance(s, ast.Constant) and s.value == "__main__" for s in sides
            ):
                return True
    return False


# -- the whole project -----------------------------------------------------------------------------
@dataclasses.dataclass
class _File:
    path: Path
    module: str
    top: Optional[Path]  # top package dir (None: outside any package)
    is_init: bool
    imports: list
    gpu: bool
    script: Optional[str]  # why it is a script, or None


def _read_for_graph(path: Path):
    """(stat stamp, bytes, text) of a .py or .ipynb file; text is None when it does not decode;
    None when it cannot be read at all."""
    from gpufix.source import MAX_FILE_BYTES, ReadError, read_source

    import stat

    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None  # a FIFO named *.py would block a read forever
        if st.st_size > MAX_FILE_BYTES:
            return None  # too large to read (the scan says so): never read a sparse 8 GB file whole
        raw = path.read_bytes()
    except OSError:
        return None
    stamp = [st.st_size, st.st_mtime_ns]
    try:
        return stamp, raw, read_source(str(path), raw).text
    except (ReadError, ValueError):
        return stamp, raw, None


def _parse(text: str):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


# Set before the worker processes fork (and in each by the initializer): what every file's entry needs.
_INDEX_STATE: dict = {}


def _index_init(root, console, fp_catalog) -> None:
    _INDEX_STATE.update(root=root, console=console, fp_catalog=fp_catalog)
    _HAS_INIT.clear()


def _index_file(a: str, text: str, use_text: bool = True):
    """(_File, the dotted names the file is importable by) of one .py/.ipynb file; None when it
    does not parse. Its imports are read from the text (gpufix.importscan) when the text settles
    them, else from `ast` (`use_text=False`: always from `ast`, what the tests compare with)."""
    root, console, fp_catalog = _INDEX_STATE["root"], _INDEX_STATE["console"], _INDEX_STATE["fp_catalog"]
    p = Path(a)
    notebook = p.suffix == ".ipynb"
    import_names = [] if notebook else list(_import_names(p, root))
    if notebook:
        module, top = p.stem, None
    else:
        module, top = module_name(p, root)
        if top is None:
            # a namespace portion (a folder without `__init__.py`): relative imports resolve
            # against its path from the root (`from . import gligen` in ldm_patched/modules/)
            module = import_names[0] if import_names else module
    is_init = p.name == "__init__.py"
    def is_framework(name: str) -> bool:
        return fp_catalog.framework_of_module(name) is not None

    imports = tree = None
    read = read_imports(text) if use_text else None
    if read is not None:
        imports = runtime_imports_from_text(read.statements, text, module, is_init, is_framework)
        main_guard = read.has_main_guard
    if imports is None:
        tree = _parse(text)
        if tree is None:
            return None
        imports = runtime_imports(tree, module, is_init, is_framework, text)
        main_guard = _has_main_guard(tree)
    script = None
    if notebook:
        script = "a notebook"
    elif p.name == "__main__.py":
        script = "a `__main__.py`"
    elif module in console or any(n in console for n in import_names):
        script = "a console-script target"
    elif text.startswith("#!"):
        script = "a script (shebang)"
    elif main_guard:
        script = "a script (`__main__` guard)"
    elif top is None and p.name != "conftest.py":
        # Outside any package and (the graph decides) imported by no file: a script, when running
        # it does something (module-level code, or no function or class to offer). A file of
        # definitions only is a plugin or helper loaded by path (diffusers' community pipelines,
        # `custom_pipeline="name"`): the loading process's header covers it. Test files count as
        # scripts either way: pytest runs them.
        if _TEST_FILE_RE.match(p.name):
            script = "a file outside any package"
        else:
            if tree is None:
                tree = _parse(text)
            if tree is None or _runs_code(tree.body) or not _defines(tree.body):
                script = "a file outside any package"
    return _File(p, module, top, is_init, imports.modules, bool(imports.gpu), script), import_names


def _index_job(a: str) -> dict:
    """_index_file as a JSON-able entry, with the stat stamp and content hash of the bytes read
    (what the index cache keys on); {"none": True} for a file that cannot be read or parsed."""
    from gpufix.cache import content_hash

    read = _read_for_graph(Path(a))
    if read is None:
        return {"none": True}  # unreadable: not cached, read again next time
    stamp, raw, text = read
    got = _index_file(a, text) if text is not None else None
    if got is None:
        entry: dict = {"none": True}
    else:
        f, import_names = got
        entry = {"module": f.module, "top": str(f.top) if f.top is not None else None, "is_init": f.is_init,
                 "imports": f.imports, "gpu": f.gpu, "script": f.script, "names": import_names}
    entry["_stamp"], entry["_hash"] = stamp, content_hash(raw)
    return entry


def _entry_to_file(a: str, entry: dict):
    if entry.get("none"):
        return None
    top = Path(entry["top"]) if entry["top"] is not None else None
    return _File(Path(a), entry["module"], top, entry["is_init"], list(entry["imports"]), entry["gpu"], entry["script"]), entry["names"]


def _index_key(root, first_party, console, known_frameworks) -> str:
    import hashlib
    import json

    blob = json.dumps([str(root), sorted(first_party), sorted(console), sorted(known_frameworks)]).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def build_index(paths, files, catalog, known_first_party=(), known_frameworks=(), graph: bool = True,
                cache_factory=None) -> ProjectIndex:
    """The ProjectIndex of the scanned files (`files`: (abs_path, display) pairs from discover)."""
    _HAS_INIT.clear()
    root = project_root(paths or ["."])
    abs_files = [os.path.abspath(a) for a, _ in files]
    first_party = first_party_names(root, abs_files, known_first_party, known_frameworks)
    if not graph:
        return ProjectIndex(str(root), first_party)
    fp_catalog = catalog.for_project(first_party, known_frameworks)

    console = set(_console_targets(root)) | set(_setup_console_targets(root))
    from gpufix.workers import run_in_workers

    py_files = [a for a in abs_files if Path(a).suffix in (".py", ".ipynb")]  # shell, configs: no imports
    # Biggest first, as scan does: the workers then finish together.
    py_files.sort(key=lambda a: os.path.getsize(a) if os.path.isfile(a) else 0, reverse=True)
    # Per-file entries are cached (a warm scan reads none of the unchanged files), keyed on what
    # they depend on besides the file: the root, the first-party names, the console scripts.
    cache = cache_factory(_index_key(root, first_party, console, known_frameworks)) if cache_factory else None
    entries: dict = {}
    todo = []
    for a in py_files:
        hit = cache.get(a) if cache else None
        if hit is not None:
            entries[a] = hit
        else:
            todo.append(a)
    for a, entry in zip(todo, run_in_workers(_index_job, todo, initializer=_index_init,
                                             initargs=(root, console, fp_catalog))):
        if cache is not None:
            cache.put(a, entry)
        entry.pop("_stamp", None)
        entry.pop("_hash", None)
        entries[a] = entry
    digest = None
    if cache is not None:
        # The index is a function of the per-file entries and the project's names: a warm run whose
        # entries all hit reuses the index built from them (the graph walk is most of a warm scan).
        import json

        blob = json.dumps([str(root), list(first_party), sorted(console), abs_files, [entries[a] for a in py_files]],
                          sort_keys=True)
        digest = hashlib.blake2b(blob.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
        saved = cache.get_value("project-index", digest)
        if saved is not None:
            cache.save()
            return ProjectIndex.from_json(saved)
    index = _build_graph(root, first_party, abs_files, py_files, entries)
    if cache is not None:
        cache.put_value("project-index", digest, index.to_json())
        cache.save()
    return index


def _build_graph(root: Path, first_party: tuple, abs_files: list, py_files: list, entries: dict) -> ProjectIndex:
    parsed: dict = {}
    by_module: dict = {}
    unparsed: set = set()
    for a in py_files:
        got = _entry_to_file(a, entries[a])
        if got is None:
            unparsed.add(a)
            continue
        f, import_names = got
        parsed[a] = f
        for n, name in enumerate(import_names):
            by_module.setdefault(name, []).append((a, n == 0))
    parsed = {a: parsed[a] for a in abs_files if a in parsed}  # discovery order, as before

    # Edges: a module -> the first-party files it imports (importing a.b.c runs a and a.b first).
    memo: dict = {}

    dirs = {a: os.path.dirname(a) for a in parsed}

    def targets(importer: str, name: str) -> list:
        """The project files an import of `name` runs (importing a.b.c runs a and a.b first).
        A name held by several files resolves to the one named from the root, else the one next
        to the importer (its folder is on sys.path when it runs as a script), else all of them."""
        out = []
        if name.startswith("pattern:"):
            import fnmatch

            rx = re.compile(fnmatch.translate(name[len("pattern:"):]).replace(".*", "[^.]*"))
            return [c for n, cands in by_module.items() if rx.match(n) for c, from_root in cands if from_root]
        here = dirs[importer]
        memo_key = (here, name)
        got = memo.get(memo_key)
        if got is not None:
            return got
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            cands = by_module.get(".".join(parts[:i]), [])
            if len(cands) > 1:
                exact = [c for c, from_root in cands if from_root]
                if not exact:
                    exact = [c for c, _ in cands if os.path.dirname(c) == here
                             or (os.path.basename(c) == "__init__.py" and os.path.dirname(os.path.dirname(c)) == here)]
                out += exact or [c for c, _ in cands]
            else:
                out += [c for c, _ in cands]
        memo[memo_key] = out
        return out

    reverse: dict = {}
    for a, f in parsed.items():
        for name in f.imports:
            for t in targets(a, name):
                if t != a:
                    reverse.setdefault(t, set()).add(a)
    # Folders outside any package whose files other files import by a dotted path from the root
    # (`import ldm_patched.contrib.external_freeu`): namespace packages; their other files are
    # modules of that package, not scripts.
    namespace_dirs = set()
    for f in parsed.values():
        for name in f.imports:
            if "." in name and not name.startswith("pattern:"):
                for c, from_root in by_module.get(name, ()):
                    if from_root and parsed.get(c) is not None and parsed[c].top is None:
                        namespace_dirs.add(Path(c).parent)
    namespace_dirs.discard(root)
    # A module another project file imports is a module, even with a `__main__` demo or a shebang
    # (only console-script targets and `__main__.py` stay scripts); a file outside any package
    # that nothing imports is run as a script.
    for a, f in parsed.items():
        if a in reverse and f.script not in (None, "a notebook", "a `__main__.py`", "a console-script target"):
            f.script = None
    reaches = {a for a, f in parsed.items() if f.gpu}
    todo = list(reaches)
    while todo:
        t = todo.pop()
        for importer in reverse.get(t, ()):
            if importer not in reaches:
                reaches.add(importer)
                todo.append(importer)

    entries: dict = {}
    # Conftest trees: the rootmost conftest.py (no conftest.py in a folder above it, up to the root).
    conftests = sorted((Path(a) for a in parsed if Path(a).name == "conftest.py"), key=lambda p: len(p.parts))
    rootmost: list = []
    for c in conftests:
        if not any(r.parent in c.parents for r in rootmost):
            rootmost.append(c)

    rootmost_dirs = [(r, str(r.parent) + os.sep) for r in rootmost]

    def conftest_above(p: Path) -> Optional[Path]:
        """The rootmost conftest.py whose folder holds `p` (at any depth)."""
        where = str(p)
        for r, prefix in rootmost_dirs:
            if where.startswith(prefix):
                return r
        return None

    # Top packages that hold a module reaching a GPU framework.
    gpu_tops: dict = {}
    for a in reaches:
        f = parsed[a]
        if f.top is not None:
            gpu_tops.setdefault(f.top, a)
    internal = _internal_packages(root, parsed, reverse, gpu_tops)
    for a, f in parsed.items():
        p = f.path
        if f.is_init and f.top == p.parent and p.parent in gpu_tops and p.parent not in internal:
            entries[a] = f"the top `__init__.py` of the package `{f.module}` (Python runs it before any of its modules)"
    for c in rootmost:
        prefix = str(c.parent) + os.sep
        tree_reaches = any(a.startswith(prefix) for a in reaches)
        if tree_reaches:
            entries[str(c)] = "the rootmost `conftest.py` of its test tree (pytest imports it before the test modules)"
    for c in list(rootmost):
        # A conftest.py inside a first-party package whose top `__init__.py` holds the header:
        # pytest imports that package first.
        if str(c) in entries and any(top in c.parents for top in gpu_tops if str(top / "__init__.py") in entries):
            del entries[str(c)]
    for a in reaches:
        f = parsed[a]
        if a in entries or f.script is None:
            continue
        p = f.path
        if f.script == "a file outside any package":
            if conftest_above(p) is not None and (_TEST_FILE_RE.match(p.name) or p.name == "conftest.py"):
                continue  # a test module: pytest imports the conftest.py above it first
            if p.parent in namespace_dirs:
                continue  # a module of a namespace package other files import from
            if not f.gpu and all(
                parsed[t].top is not None and str(parsed[t].top / "__init__.py") in entries
                for name in f.imports for t in targets(a, name) if t in reaches
            ):
                continue  # not a script; it reaches the GPU only through packages whose header covers it
        if _TEST_FILE_RE.match(p.name) and f.script != "a console-script target" and (
            (conftest_above(p) is not None and str(conftest_above(p)) in entries)
            or (f.top is not None and str(f.top / "__init__.py") in entries)
        ):
            continue  # a test module: the test runner imports the conftest.py / package above it first
        entries[a] = f.script
    covered: dict = {}
    for a in reaches:
        if a in entries or not parsed[a].gpu:
            continue
        f = parsed[a]
        p = f.path
        init = str(f.top / "__init__.py") if f.top is not None else None
        if init in entries:
            covered[a] = f"the header of `{_rel(init, root)}`"
        elif conftest_above(p) is not None and str(conftest_above(p)) in entries:
            covered[a] = f"the header of `{_rel(str(conftest_above(p)), root)}`"
        else:
            covered[a] = "the header of the scripts that import it"
    return ProjectIndex(str(root), first_party, tuple(sorted(entries.items())), tuple(sorted(covered.items())), True,
                        frozenset(unparsed))


def _distributes_packages(root: Path) -> bool:
    """Whether the project is packaged (pyproject `[project]` or `[tool.poetry]`, setup.py,
    setup.cfg): then its packages may be imported by programs outside it."""
    if (root / "setup.py").is_file() or (root / "setup.cfg").is_file():
        return True
    try:
        with open(root / "pyproject.toml", "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    tool = data.get("tool") if isinstance(data.get("tool"), dict) else {}
    return isinstance(data.get("project"), dict) or isinstance(tool.get("poetry"), dict)


def _internal_packages(root: Path, parsed: dict, reverse: dict, gpu_tops: dict) -> set:
    """Top packages of an application that is not packaged, which its own scripts import: every
    process that runs them starts in one of those scripts, whose header covers them (a header in
    the package's `__init__.py` would be a second one). A package with tests stays an entry
    point: pytest imports it first."""
    if not gpu_tops or _distributes_packages(root):
        return set()
    out = set()
    for top in gpu_tops:
        prefix = str(top) + os.sep
        members = [a for a in parsed if a.startswith(prefix)]
        if any(_TEST_FILE_RE.match(os.path.basename(a)) or os.path.basename(a) == "conftest.py" for a in members):
            continue
        if any(not importer.startswith(prefix) for a in members for importer in reverse.get(a, ())):
            out.add(top)
    return out


def _rel(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).name


def refine_gpu_imports(facts, tree: ast.Module, text: str):
    """Drop from `facts.gpu_imports` the framework imports that never run (`if TYPE_CHECKING:`) or
    whose names are used only in annotations: such a file is not a GPU module."""
    if not facts.gpu_imports:
        return facts
    if _all_run_by_text(facts.gpu_imports, text):
        return facts
    from gpufix.analysis import iter_statements

    by_line: dict = {}
    for node in iter_statements(tree.body):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            by_line.setdefault(node.lineno, []).append(node)
    skip = type_checking_stmt_ids(tree.body) if "TYPE_CHECKING" in text else set()
    bound_of: dict = {}
    for trigger in facts.gpu_imports:
        for node in by_line.get(trigger.pos.line, ()):
            if isinstance(node, ast.Import):
                bound_of[id(trigger)] = {a.asname or a.name.split(".")[0] for a in node.names}
            else:
                bound_of[id(trigger)] = {a.asname or a.name for a in node.names if a.name != "*"}
    annotation_only = annotation_only_names(tree, set().union(*bound_of.values()), text) if bound_of else set()
    kept = []
    for trigger in facts.gpu_imports:
        nodes = by_line.get(trigger.pos.line, ())
        if nodes and all(id(n) in skip for n in nodes):
            continue
        bound = bound_of.get(id(trigger))
        if bound and bound <= annotation_only:
            continue
        kept.append(trigger)
    facts.gpu_imports = kept
    return facts


def _all_run_by_text(triggers, text: str) -> bool:
    """Whether every GPU import of `triggers` surely runs and binds a name used at run time, by the
    text alone (gpufix.importscan; no walk of the tree): then refine_gpu_imports drops none."""
    read = read_imports(text)
    if read is None:
        return False
    by_line: dict = {}
    for st in read.statements:
        by_line.setdefault(st.line, []).append(st)
    spans = sorted((st.start, st.end) for st in read.statements)
    verdict: dict = {}
    for trigger in triggers:
        stmts = by_line.get(trigger.pos.line, ())
        if len(stmts) != 1:
            return False  # under `if TYPE_CHECKING:`, or several statements on the line
        names = [a or (n.split(".")[0] if stmts[0].level < 0 else n) for n, a in stmts[0].names if n != "*"]
        if not names:
            continue
        for name in names:
            if name not in verdict:
                verdict[name] = _used_at_run_time(name, text, spans)
            if verdict[name]:
                break
        else:
            return False
    return True
