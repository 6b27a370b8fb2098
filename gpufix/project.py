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

_PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git", "gpufix.toml")
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
    # abs path -> the project files importing it runs (tuple of (abs_path, tuple of abs paths)):
    # which processes run a file, for the fixes that are safe only together (see fix_holds)
    edges: tuple = ()
    # first-party device helpers: (function name, parameter, position or None, abs path)
    helpers: tuple = ()

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
                "unparsed": sorted(self.unparsed), "edges": [[a, list(t)] for a, t in self.edges],
                "helpers": [list(h) for h in self.helpers]}

    @classmethod
    def from_json(cls, data: dict) -> "ProjectIndex":
        return cls(data["root"], tuple(data["first_party"]), tuple(tuple(e) for e in data["entries"]),
                   tuple(tuple(c) for c in data["covered"]), bool(data["graph_built"]), frozenset(data["unparsed"]),
                   tuple((a, tuple(t)) for a, t in data.get("edges", ())),
                   tuple(tuple(h) for h in data.get("helpers", ())))

    @property
    def imports_map(self) -> dict:
        d = self.__dict__.get("_imports_map")
        if d is None:
            d = dict(self.edges)
            object.__setattr__(self, "_imports_map", d)
        return d

    @property
    def importers_map(self) -> dict:
        d = self.__dict__.get("_importers_map")
        if d is None:
            d = {}
            for a, targets in self.edges:
                for t in targets:
                    d.setdefault(t, []).append(a)
            object.__setattr__(self, "_importers_map", d)
        return d

    def _starts_above(self, a: str) -> list:
        """Entry points that run before `a` whenever `a` runs: the `__init__.py` of the packages
        holding it, and (for a test module) the rootmost conftest.py above it."""
        out = []
        entry_map = self.entry_map
        d = os.path.dirname(a)
        root = self.root.rstrip(os.sep)
        while d.startswith(root + os.sep) or d == root:
            init = os.path.join(d, "__init__.py")
            if init != a and init in entry_map:
                out.append(init)
            if d == root:
                break
            d = os.path.dirname(d)
        name = os.path.basename(a)
        if _TEST_FILE_RE.match(name) or name == "conftest.py":
            d = os.path.dirname(a)
            while True:
                c = os.path.join(d, "conftest.py")
                if c != a and c in entry_map:
                    out.append(c)
                if d == root or not d.startswith(root + os.sep):
                    break
                d = os.path.dirname(d)
        return out

    def starting_entries(self, a: str) -> list:
        """The entry points (other than `a`) whose processes run `a`: every entry point among the
        files that import it, directly or not, and those that run before them; sorted."""
        a = os.path.abspath(a)
        entry_map = self.entry_map
        importers = self.importers_map
        seen = {a}
        stack = [a]
        out = set()
        while stack:
            v = stack.pop()
            if v != a and v in entry_map:
                out.add(v)
            for s in self._starts_above(v):
                out.add(s)
            for imp in importers.get(v, ()):
                if imp not in seen:
                    seen.add(imp)
                    stack.append(imp)
        out.discard(a)
        return sorted(out)

    def run_by(self, entry: str) -> list:
        """The files (other than `entry`) a process started at `entry` may run: what it imports,
        directly or not, and for a package's `__init__.py` / a conftest.py the modules under it."""
        entry = os.path.abspath(entry)
        imports = self.imports_map
        start = [entry]
        name = os.path.basename(entry)
        if name in ("__init__.py", "conftest.py") and entry in self.entry_map:
            prefix = os.path.dirname(entry) + os.sep
            for a in imports:
                if a.startswith(prefix) and (name == "__init__.py" or _TEST_FILE_RE.match(os.path.basename(a))):
                    start.append(a)
        seen = set(start)
        stack = list(start)
        while stack:
            v = stack.pop()
            for t in imports.get(v, ()):
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        seen.discard(entry)
        return sorted(seen)

    def fingerprint(self) -> str:
        blob = repr((self.first_party, self.entries, self.covered, self.graph_built, sorted(self.unparsed),
                     self.helpers)).encode()
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
    from gpufix.source import ReadError, read_source

    import stat

    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None  # a FIFO named *.py would block a read forever
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
    entry = index_record(a, text) if text is not None else {"none": True}
    entry["_stamp"], entry["_hash"] = stamp, content_hash(raw)
    return entry


def index_record(a: str, text: str) -> dict:
    """The one function from a file (its abs path and text) to its JSON-able, picklable import
    record: its module name, package, run-time imports, whether it imports a GPU framework, why it
    is a script, the dotted names it is importable by. The graph (`_build_graph`) is a plain
    function of these records; `_index_init` must have set the project's root, console scripts
    and catalogue in the process that calls it. {"none": True}: the file does not parse."""
    got = _index_file(a, text)
    if got is None:
        return {"none": True}
    f, import_names = got
    record = {"module": f.module, "top": str(f.top) if f.top is not None else None, "is_init": f.is_init,
              "imports": f.imports, "gpu": f.gpu, "script": f.script, "names": import_names}
    helpers = device_helpers(text) if not a.endswith(".ipynb") else []
    if helpers:
        record["helpers"] = helpers
    return record


# A parameter used as a CUDA ordinal: `f"cuda:{index}"`, `"cuda:" + str(index)`, `"cuda:%d" % index`,
# `set_device(index)`, `torch.device("cuda", index)`, `.cuda(index)`, `device_index=index`.
_ORDINAL_USE = re.compile(
    r"""cuda:\{\s*(\w+)\s*\}|cuda:['"]\s*\+\s*str\(\s*(\w+)\s*\)|cuda:%d['"]\s*%\s*\(?\s*(\w+)"""
    r"""|set_device\(\s*(\w+)\s*\)|device\(\s*['"]cuda['"]\s*,\s*(?:index\s*=\s*)?(\w+)\s*\)"""
    r"""|\.cuda\(\s*(\w+)\s*\)|device_(?:index|id)\s*=\s*(\w+)\b""")


def device_helpers(text: str) -> list:
    """[[function, parameter, position]] of the module-level functions one of whose parameters is
    used as a CUDA ordinal (seed 004's `def device_cuda(index=1): return torch.device(f"cuda:{index}")`):
    for their callers, such a function is a device API like `torch.cuda.set_device`. A regular
    expression finds the candidate names; `ast` confirms each is a parameter of the function
    whose body uses it (and is not rebound there)."""
    if "def " not in text:
        return []
    names = {g for m in _ORDINAL_USE.finditer(text) for g in m.groups() if g}
    if not names:
        return []
    tree = _parse(text)
    if tree is None:
        return []
    out = []
    for fn in tree.body:
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        a = fn.args
        positional = [x.arg for x in a.posonlyargs + a.args]
        params = positional + [x.arg for x in a.kwonlyargs]
        wanted = names & set(params)
        if not wanted:
            continue
        stored = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        body = ast.get_source_segment(text, fn) or ""
        used = {g for m in _ORDINAL_USE.finditer(body) for g in m.groups() if g}
        for p in params:
            if p in wanted and p in used and p not in stored:
                out.append([fn.name, p, positional.index(p) if p in positional else None])
    return out


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
                cache_factory=None, overrides=None, root: Optional[Path] = None) -> ProjectIndex:
    """The ProjectIndex of the project's files (`files`: (abs_path, display) pairs from discover).
    `overrides`: abs path -> text read elsewhere (stdin), used instead of the file on disk."""
    _HAS_INIT.clear()
    overrides = {os.path.abspath(a): t for a, t in (overrides or {}).items()}
    root = root or project_root(paths or ["."])
    abs_files = [os.path.abspath(a) for a, _ in files]
    first_party = first_party_names(root, abs_files, known_first_party, known_frameworks)
    if not graph:
        return ProjectIndex(str(root), first_party)
    fp_catalog = catalog.for_project(first_party, known_frameworks)

    console = set(_console_targets(root)) | set(_setup_console_targets(root))
    from gpufix.workers import run_in_workers

    for a in overrides:
        if a not in abs_files:
            abs_files.append(a)
    py_files = [a for a in abs_files if Path(a).suffix in (".py", ".ipynb")]  # shell, configs: no imports
    # Biggest first, as scan does: the workers then finish together.
    py_files.sort(key=lambda a: os.path.getsize(a) if os.path.isfile(a) else 0, reverse=True)
    # Per-file entries are cached (a warm scan reads none of the unchanged files), keyed on what
    # they depend on besides the file: the root, the first-party names, the console scripts.
    cache = cache_factory(_index_key(root, first_party, console, known_frameworks)) if cache_factory else None
    entries: dict = {}
    todo = []
    for a in py_files:
        if a in overrides:
            _index_init(root, console, fp_catalog)
            entries[a] = index_record(a, overrides[a])
            continue
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


def _name_base(a: str, name: str) -> str:
    """The folder that must be on sys.path for `a` to be imported as `name`
    (`root/x/pkg/mod.py` as `pkg.mod`: `root/x`)."""
    up = name.count(".") + 1 + (1 if os.path.basename(a) == "__init__.py" else 0)
    base = a
    for _ in range(up):
        base = os.path.dirname(base)
    return base


_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | frozenset(sys.builtin_module_names)


def resolver_for(root: Path, named: dict):
    """`targets(importer, dotted name)` -> the project files an import runs, as Python's import
    system finds them: the first folder on sys.path that holds the top name wins (the importer's
    own folder, which is sys.path[0] when it runs as a script; the project root; `src/`; then the
    folders above the importer, where `sys.path` edits usually point), and every part of the name
    is looked up under that same folder (`import train.utils` never runs another folder's
    `train.py`). A standard-library name resolves only to a module beside the importer (the one
    place that shadows it). `named`: dotted name -> [(abs path, sys.path folder)]."""
    root_s = str(root)
    src_s = os.path.join(root_s, "src")
    tops_at: dict = {}
    for name, cands in named.items():
        top = name.split(".", 1)[0]
        for _, base in cands:
            tops_at.setdefault(base, set()).add(top)
    memo: dict = {}

    def bases_for(here: str, top: str) -> list:
        if top in _STDLIB:
            return [here]
        out = [here, root_s, src_s]
        d = here
        while d.startswith(root_s + os.sep):
            d = os.path.dirname(d)
            out.append(d)
        return out

    def targets(importer: str, name: str) -> list:
        if name.startswith("pattern:"):
            import fnmatch

            rx = re.compile(fnmatch.translate(name[len("pattern:"):]).replace(".*", "[^.]*"))
            return sorted({c for n, cands in named.items() if rx.match(n) for c, base in cands
                           if base in (root_s, src_s)})
        here = os.path.dirname(importer)
        key = (here, name)
        got = memo.get(key)
        if got is not None:
            return got
        parts = name.split(".")
        out: list = []
        for base in bases_for(here, parts[0]):
            if parts[0] in tops_at.get(base, ()):
                for i in range(1, len(parts) + 1):
                    out += [c for c, b in named.get(".".join(parts[:i]), ()) if b == base]
                break
        memo[key] = out
        return out

    return targets


def _build_graph(root: Path, first_party: tuple, abs_files: list, py_files: list, entries: dict) -> ProjectIndex:
    records = entries
    parsed: dict = {}
    named: dict = {}
    unparsed: set = set()
    for a in py_files:
        got = _entry_to_file(a, entries[a])
        if got is None:
            unparsed.add(a)
            continue
        f, import_names = got
        parsed[a] = f
        for name in import_names:
            named.setdefault(name, []).append((a, _name_base(a, name)))
    parsed = {a: parsed[a] for a in abs_files if a in parsed}  # discovery order, as before
    by_module = {name: [(a, base == str(root)) for a, base in cands] for name, cands in named.items()}
    targets = resolver_for(root, named)

    reverse: dict = {}
    forward: dict = {}
    for a, f in parsed.items():
        outs = forward.setdefault(a, set())
        for name in f.imports:
            for t in targets(a, name):
                if t != a:
                    reverse.setdefault(t, set()).add(a)
                    outs.add(t)
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
    # A file with a `__main__` guard or a shebang is a script whether or not other files import
    # it (bert's run_classifier.py is imported by its siblings and run by its README); a file
    # outside any package is a script only when no project file imports it.
    for a, f in parsed.items():
        if a in reverse and f.script == "a file outside any package":
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
    for init in [a for a in entries if a.endswith("__init__.py")]:
        # A test package under a rootmost conftest.py that holds the header: pytest imports that
        # conftest.py first (fastchat's tests/__init__.py under the root conftest.py).
        pkg_dir = os.path.dirname(init)
        above = conftest_above(Path(pkg_dir))
        if above is not None and str(above) in entries and above.parent != Path(pkg_dir) and any(
                a.startswith(pkg_dir + os.sep) and _TEST_FILE_RE.match(os.path.basename(a)) for a in parsed):
            del entries[init]
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
        if f.script in ("a script (`__main__` guard)", "a script (shebang)") and f.top is not None and (
                str(f.top / "__init__.py") in entries):
            continue  # `python -m pkg.mod` runs pkg/__init__.py, which holds the header, first
        if f.script == "a `__main__.py`" and f.top is not None:
            if str(p.parent / "__init__.py") in entries:
                continue  # `python -m pkg` runs pkg/__init__.py, which holds the header, first
            chain = [str(d / "__init__.py") for d in (p.parent, *p.parent.parents) if d == f.top or f.top in d.parents]
            top_init = str(f.top / "__init__.py")
            if top_init in parsed and any(c in reaches for c in chain):
                # `python -m pkg` runs the packages' `__init__.py` first, and one of them reaches
                # the GPU: a header in `__main__.py` would come after the framework import
                entries[top_init] = (f"the top `__init__.py` of the package `{parsed[top_init].module}` "
                                     f"(`python -m` runs it before `{_rel(a, root)}`)")
                continue
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
    edges = tuple(sorted((a, tuple(sorted(t))) for a, t in forward.items()))
    helpers = tuple(sorted((h[0], h[1], h[2], a) for a in parsed for h in records[a].get("helpers", ())))
    return ProjectIndex(str(root), first_party, tuple(sorted(entries.items())), tuple(sorted(covered.items())), True,
                        frozenset(unparsed), edges, helpers)


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


# -- the run's project: the same for any subset of its files ---------------------------------------
class _OneResolver:
    def __init__(self, policy):
        self.policy = policy

    def for_dir(self, directory):
        return self.policy

    def for_path(self, path):
        return self.policy


def run_project_root(policy, run_files) -> Path:
    """The project a run's files belong to, from the config's folder (or, without a config file,
    the run's files) and the project markers above it: never from which files were named."""
    if policy.source and policy.root:
        start = [policy.root]
    else:
        abs_files = [os.path.abspath(a) for a, _ in run_files]
        start = [os.path.commonpath(abs_files)] if abs_files else ["."]
    return project_root(start)


def project_files(root: Path, policy, run_files) -> list:
    """(abs_path, display) of the project's Python files and notebooks (discovered under the root
    with the policy's excludes), plus the run's own files."""
    from gpufix.discover import discover_files

    seen = set()
    out = []
    for a, d, _ in discover_files([str(root)], _OneResolver(policy)):
        a = os.path.abspath(a)
        if a.endswith((".py", ".ipynb")) and a not in seen:
            seen.add(a)
            out.append((a, d))
    for a, d in run_files:
        a = os.path.abspath(a)
        if a not in seen:
            seen.add(a)
            out.append((a, d))
    return out


# Findings whose fix reads an ordinal through the mask the file's processes will have: remaps.
REMAP_RULES = frozenset({"GPU001", "GPU002", "GPU003"})
# Findings of an entry point about the mask its process sets.
MASK_RULES = frozenset({"GPU101", "GPU102", "GPU103", "GPU104", "GPU105", "GPU106", "GPU107"})


def _usable(f, unsafe: bool) -> bool:
    return f.fix is not None and (f.fix.applicability == "safe" or unsafe)


def fix_holds(index: "ProjectIndex", results: dict, lint_other, unsafe: bool = False, read_text=None) -> dict:
    """Fixes that are safe only together with other files' fixes, and cannot be made together in
    this run: abs path -> [(rules, note, text the message holds or None)], what apply_holds takes.

    A remap in a module (`set_device(1)` -> `set_device(0)`) is right only once every process that
    runs the module has the policy's mask in force: each entry point that starts such a process
    must already set it, or be in this run with safe fixes that set it. The other way round, the
    mask an entry point's fix puts in force moves the ordinals of every module its process runs:
    each of those must be in this run with its remaps fixed too, or hold no ordinal to remap. A
    first-party device helper's default and its callers' literals are remapped together or not
    at all. A group that cannot be fixed whole is not fixed at all.

    `results`: abs path -> FileResult of the run's files; `lint_other(abs_path)`: the FileResult
    of a project file outside the run (or None); `read_text(abs_path)`: a file's text (or None)."""
    if index is None or not index.graph_built:
        return {}
    others: dict = {}

    def result_of(a: str):
        if a in results:
            return results[a]
        if a not in others:
            others[a] = lint_other(a)
        return others[a]

    holds: dict = {}

    def held(a: str, f) -> bool:
        return any(f.rule in rules and (match is None or re.search(match, f.message)) for rules, _, match in holds.get(a, ()))

    def hold(a: str, rules, note: str, match=None) -> bool:
        got = holds.setdefault(a, [])
        if any(r >= rules and m == match for r, _, m in got):
            return False
        got.append((frozenset(rules), note, match))
        return True

    def remaps(r) -> list:
        return [f for f in r.findings if f.rule in REMAP_RULES] if r is not None else []

    def mask_fixes(r) -> list:
        return [f for f in r.findings if f.rule in MASK_RULES] if r is not None else []

    def pending_remaps(a: str) -> list:
        """The file's remap findings that this run will not fix."""
        return [f for f in remaps(result_of(a)) if a not in results or held(a, f) or not _usable(f, unsafe)]

    root = Path(index.root)
    entry_why: dict = {}

    def entry_state(e: str) -> Optional[str]:
        """None when every process started at `e` will run under the policy's mask; else why not."""
        if e not in entry_why:
            r = result_of(e)
            mine = mask_fixes(r)
            why = None
            if r is None or r.errors:
                why = f"`{_rel(e, root)}` cannot be read"
            elif mine and e not in results:
                why = f"`{_rel(e, root)}` does not set the policy's mask yet and is not part of this run"
            elif any(not _usable(f, unsafe) for f in mine):
                why = f"`{_rel(e, root)}` keeps a mask that its safe fixes do not replace"
            entry_why[e] = why
        if any(f.rule in MASK_RULES for f in (result_of(e).findings if result_of(e) is not None else ()) if held(e, f)):
            return f"the fix of `{_rel(e, root)}` is held"
        return entry_why[e]

    starts = {a: index.starting_entries(a) for a in results if a not in index.entry_map}
    texts: dict = {}

    def text_of(a: str) -> str:
        if a not in texts:
            texts[a] = (read_text(a) if read_text else None) or ""
        return texts[a]

    changed = True
    while changed:
        changed = False
        # remaps that need their processes' masks
        for a, r in results.items():
            if a in index.entry_map or not any(_usable(f, unsafe) and not held(a, f) for f in remaps(r)):
                continue
            bad = [w for w in (entry_state(e) for e in starts[a]) if w]
            if bad:
                changed |= hold(a, REMAP_RULES, _hold_note(bad, a, root, "the mask its processes start with"))
        # a helper's default and its callers' literals
        for name, param, position, where in index.helpers:
            callers = [c for c in sorted({where, *index.importers_map.get(where, ())})
                       if re.search(r"\b%s\(" % re.escape(name), text_of(c))]
            default = re.escape(f"{name}()'s default for {param}")
            call = r" in (?:[\w.]+\.)?%s\(\)" % re.escape(name)
            unfixed = []
            for c in callers:
                literal = _literal_call_lines(text_of(c), name, position, param)
                fixed = {f.line for f in remaps(result_of(c))
                         if re.search(call, f.message) and c in results and not held(c, f) and _usable(f, unsafe)}
                if literal - fixed:
                    unfixed.append(f"`{_rel(c, root)}` calls it with an index this run does not remap"
                                   + ("" if c in results else " (it is not part of this run)"))
            if where in results and any(re.search(default, f.message) and (held(where, f) or not _usable(f, unsafe))
                                        for f in remaps(result_of(where))):
                unfixed.append(f"its default in `{_rel(where, root)}` is not remapped")
            elif where not in results and any(re.search(default, f.message) for f in remaps(result_of(where))):
                unfixed.append(f"its default in `{_rel(where, root)}` is not part of this run")
            if unfixed:
                what = f"the other uses of the device helper `{name}()`"
                for c in callers:
                    if c in results:
                        changed |= hold(c, REMAP_RULES, _hold_note(unfixed, c, root, what), call)
                if where in results:
                    changed |= hold(where, REMAP_RULES, _hold_note(unfixed, where, root, what), default)
        # masks that would move other files' ordinals
        for e, r in results.items():
            if e not in index.entry_map or not any(_usable(f, unsafe) and not held(e, f) for f in mask_fixes(r)):
                continue
            bad = []
            for a in index.run_by(e):
                if a in index.entry_map or not pending_remaps(a):
                    continue  # sets its own mask (or has its own finding), or is fixed with it
                bad.append(f"`{_rel(a, root)}` has ordinals that this run does not remap"
                           + ("" if a in results else " (it is not part of this run)"))
            if bad:
                # its own remaps were computed for the mask its fix puts in force: held with it
                changed |= hold(e, MASK_RULES | REMAP_RULES, _hold_note(bad, e, root, "its mask"))
    return {a: h for a, h in holds.items() if h}


def _literal_call_lines(text: str, name: str, position, param: str) -> set:
    """Lines of `text` where `name(...)` is called with a non-zero int literal for the helper's
    parameter (positionally, or as `param=`)."""
    out = set()
    if not text:
        return out
    pat = re.compile(r"(?<!def )\b%s\(\s*([^()]*)\)" % re.escape(name))
    for m in pat.finditer(text):
        args = [x.strip() for x in m.group(1).split(",")]
        value = None
        for x in args:
            if x.startswith(param) and "=" in x and x.split("=", 1)[0].strip() == param:
                value = x.split("=", 1)[1].strip()
        if value is None and position is not None and position < len(args) and "=" not in args[position]:
            value = args[position]
        if value is not None and value.isdigit() and int(value) != 0:
            out.add(text.count("\n", 0, m.start()) + 1)
    return out


def _hold_note(reasons: list, path: str, root: Path, what: str) -> str:
    """The clause a held fix's message ends with: why, and the command that fixes the group."""
    shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
    files = [_rel(path, root)] + [m for r in reasons for m in re.findall(r"`([^`]+\.(?:py|ipynb))`", r)]
    files = list(dict.fromkeys(files))
    command = "gpufix apply " + " ".join(files[:4]) + (" ..." if len(files) > 4 else "")
    return f" (not fixed in this run: safe only together with {what}, and {shown}; fix them together: `{command}`)"


def apply_holds(findings: list, holds) -> list:
    """`findings` of one file with the fixes that `holds` (fix_holds' list for the file) hold
    removed, and the note of the first hold that takes each added to its message."""
    import dataclasses as dc

    out = []
    for f in findings:
        if f.fix is not None:
            for rules, note, match in holds:
                if f.rule in rules and (match is None or re.search(match, f.message)):
                    f = dc.replace(f, fix=None, message=f.message + note)
                    break
        out.append(f)
    return out


def helper_apis(index: "ProjectIndex", existing: tuple = ()) -> tuple:
    """The project's device helpers (ProjectIndex.helpers) as API entries, like the user's own
    `[[tool.gpufix.api]]` ones (which win when they name the same function): their callers'
    literal ordinals are then read, reported and remapped like `set_device(1)`'s."""
    from gpufix.config import ApiSpec, ArgSpec

    if index is None or not index.helpers:
        return ()
    taken = {a.last_name for a in existing}
    by_name: dict = {}
    for name, param, position, _ in index.helpers:
        if name in taken:
            continue
        by_name.setdefault(name, set()).add((position, param))
    out = []
    for name, specs in sorted(by_name.items()):
        if len(specs) != 1:
            continue  # two project functions of that name take the ordinal differently: unsure
        position, param = next(iter(specs))
        out.append(ApiSpec(name=name, args=(ArgSpec(position=position, keyword=param),)))
    return tuple(out)
