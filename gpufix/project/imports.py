"""One file's import record: `index_record(path, text)` is the one function from a file to its
picklable record (module name, package, run-time imports, whether it imports a GPU framework, why
it is a script, the names it is importable by, its device helpers). Imports are read from the text
(gpufix.importscan) where the text settles them, else with `ast`; nothing is imported or run."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import warnings
from pathlib import Path
from typing import Optional

from gpufix.facts import MASK_VAR, ORDER_VAR
from gpufix.importscan import _has_main_guard, read_imports  # noqa: F401 (re-exported)
from gpufix.lexical import lines_naming
from gpufix.project.children import counts_gpus, launched_paths
from gpufix.project.lazy import lazy_framework_names, whole_module_names
from gpufix.project.meta import _HAS_INIT, _TEST_FILE_RE, _import_names, module_name
from gpufix.workers import INDEX_STATE
from gpufix.deferred import LazyPattern

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
    imports, annotated = (ast.Import, ast.ImportFrom), (ast.FunctionDef, ast.AsyncFunctionDef, ast.AnnAssign)
    for stmt in iter_statements(tree.body):
        if isinstance(stmt, imports):
            import_lines.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
        elif isinstance(stmt, annotated):  # the only statements _annotations_of reads
            for ann in _annotations_of(stmt):
                spans.append(((ann.lineno, ann.col_offset), (ann.end_lineno or ann.lineno, ann.end_col_offset or 0)))
    if not spans:
        return set()
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    import bisect
    from itertools import accumulate

    # `any(a <= pos < b for a, b in spans)` by bisection: of the spans that start at or before
    # `pos` (a prefix of the spans sorted by start), whether the farthest end lies after it
    spans.sort()
    begins = [a for a, _ in spans]
    reach = list(accumulate((b for _, b in spans), max))

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
            k = bisect.bisect_right(begins, pos)
            if k and reach[k - 1] > pos:
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


def _walk_lines(tree, lines: list):
    """The nodes of ast.walk(tree) in its order (breadth first), less the subtrees that lie on none
    of `lines` (sorted line numbers): a node's descendants lie within its lines, but for a `def`'s
    or a class' decorators (above its `lineno`) and the parts of an f-string (whose positions are
    not reliable before Python 3.12: an f-string's parts are all visited). Pruning a subtree from a
    breadth-first walk leaves the other nodes in the same order."""
    import bisect
    from collections import deque

    todo = deque([(tree, True)])
    while todo:
        node, prune = todo.popleft()
        yield node
        for child in ast.iter_child_nodes(node):
            if prune:
                end = getattr(child, "end_lineno", None)
                if end is not None:
                    start = child.lineno
                    decorators = getattr(child, "decorator_list", None)
                    if decorators:
                        start = min(start, *(d.lineno for d in decorators))
                    i = bisect.bisect_left(lines, start)
                    if i == len(lines) or lines[i] > end:
                        continue  # no line of it holds the name
            todo.append((child, prune and type(child) is not ast.JoinedStr))


@dataclasses.dataclass
class ModuleImports:
    """The modules a file imports at run time, and which of them are GPU frameworks."""

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
    found += [(name, set()) for name in dynamic_imports(tree, text)]
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


def dynamic_imports(tree: ast.Module, text: Optional[str] = None) -> list:
    """The modules `importlib.import_module("pkg.mod")` / `import_module(f"extensions.{name}.script")`
    / `__import__("x")` import: a constant name, or "pattern:" and the name with "*" for each
    field (every module whose name fits), in the order of a walk of the whole tree. The call's
    name is in the text, so only the subtrees on the lines naming one are walked (when `text` is
    given)."""
    if text is not None and "import_module" not in text and "__import__" not in text:
        return []
    nodes = ast.walk(tree) if text is None else _walk_lines(tree, lines_naming(text, ("import_module", "__import__")))
    out = []
    for node in nodes:
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            last = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if last not in ("import_module", "__import__"):
                continue
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                out.append(arg.value)
            elif isinstance(arg, ast.JoinedStr):
                pattern = "".join(v.value if isinstance(v, ast.Constant) else "*" for v in arg.values)
                if pattern.replace("*", "").strip("."):
                    out.append("pattern:" + pattern)
    return out


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


# -- the whole project -----------------------------------------------------------------------------
@dataclasses.dataclass
class _File:
    """One project file as the graph sees it: module name, package, imports, GPU use, script or not."""

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


# The last text parsed and its tree (or None: it does not parse). A record's readers (the imports,
# the script test, path_loads, device_helpers, _lazy_facts) each want the tree of the same text:
# one parse serves them all (it was parsed up to three times). Keyed on the text object itself, not
# its value: comparing long strings would cost more than the memo saves, and the slot holds a
# reference, so the object cannot be freed and its identity reused. No reader changes the tree (they
# only walk it). index_record empties the slot when its record is made: no tree outlives its file.
_LAST_PARSE: list = [None, None]


def _parse(text: str):
    if text is _LAST_PARSE[0]:
        return _LAST_PARSE[1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        tree = None
    _LAST_PARSE[0], _LAST_PARSE[1] = text, tree
    return tree


def _index_init(root, console, fp_catalog) -> None:
    """The pool's initializer (gpufix.workers.INDEX_STATE): what every file's record needs, set
    in this process and in each worker before its first record."""
    INDEX_STATE.set(root=root, console=console, fp_catalog=fp_catalog)
    _HAS_INIT.clear()


def _index_file(a: str, text: str, use_text: bool = True):
    """(_File, the dotted names the file is importable by) of one .py/.ipynb file; None when it
    does not parse. Its imports are read from the text (gpufix.importscan) when the text settles
    them, else from `ast` (`use_text=False`: always from `ast`, what the tests compare with)."""
    root, console, fp_catalog = INDEX_STATE["root"], INDEX_STATE["console"], INDEX_STATE["fp_catalog"]
    p = Path(a)
    notebook = p.suffix.lower() == ".ipynb"
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
    elif use_text and ("import_module" in text or "__import__" in text):
        # Dynamic imports are read from the tree (a call's argument), which the file must have
        # anyway (one that does not parse has no record); its statements are read from the text
        # (most of them big files: a walk of every statement cost more than their reading).
        statements = read_imports(text, dynamic=True)
        if statements is not None:
            tree = _parse(text)
            if tree is None:
                return None
            imports = runtime_imports_from_text(statements.statements, text, module, is_init, is_framework)
            if imports is not None:
                dynamic = dynamic_imports(tree, text)
                imports = ModuleImports(imports.modules + dynamic, imports.gpu + [n for n in dynamic if is_framework(n)])
                main_guard = _has_main_guard(tree)
    if imports is None:
        tree = _parse(text)
        if tree is None:
            return None
        imports = runtime_imports(tree, module, is_init, is_framework, text)
        main_guard = _has_main_guard(tree)
    INDEX_STATE.put("read", (a, read, tree))  # what _lazy_facts reads next, not read twice
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
    try:
        return _record(a, text)
    finally:
        _LAST_PARSE[0] = _LAST_PARSE[1] = None  # the file's tree, parsed once for its readers
        INDEX_STATE.pop("read")


def _record(a: str, text: str) -> dict:
    got = _index_file(a, text)
    if got is None:
        return {"none": True}
    f, import_names = got
    record = {"module": f.module, "top": str(f.top) if f.top is not None else None, "is_init": f.is_init,
              "imports": f.imports, "gpu": f.gpu, "script": f.script, "names": import_names}
    helpers = device_helpers(text) if not a.endswith(".ipynb") else []
    if helpers:
        record["helpers"] = helpers
    if not a.endswith(".ipynb"):
        record.update(_lazy_facts(a, text, f))
    launches = launched_paths(text) if not a.endswith(".ipynb") else []
    if launches:
        record["launches"] = launches  # the scripts it may start as child processes (gpufix.project.children)
    if counts_gpus(text):
        record["counts_gpus"] = True
    loads = path_loads(text)
    if loads:
        record["loads"] = loads
    started = modules_started(text)
    if started:
        record["runs_m"] = started
    if not a.endswith(".ipynb"):
        rank = _rank_device(text)
        if rank is not None:
            record["rank_device"] = list(rank)  # (line, use, function): gpufix.rankflow
    if not a.endswith(".ipynb") and names_mask_variable(text):
        record["names_mask"] = True  # fix_holds asks it of every file an entry point's process runs
        attrs = mask_value_attrs(text)
        if attrs:
            record["mask_attrs"] = attrs  # GPU108: options of the modules it imports that reach its mask
    return record


def mask_value_attrs(text: str) -> list:
    """The attribute names read in the values a file writes into CUDA_VISIBLE_DEVICES, of its own
    environment or a child's (`os.environ["CUDA_VISIBLE_DEVICES"] = str(args.cuda_device)`,
    `env["CUDA_VISIBLE_DEVICES"] = args.gpus`: ["cuda_device", "gpus"]), sorted: an
    option parsed in a module it imports (ComfyUI's `comfy/cli_args.py`) reaches a mask here. Only
    the statements on the lines naming the variable are walked."""
    if MASK_VAR not in text:
        return []
    tree = _parse(text)
    if tree is None:
        return []

    def is_mask(node) -> bool:
        return isinstance(node, ast.Constant) and node.value == MASK_VAR

    found = set()
    for node in _walk_lines(tree, lines_naming(text, (MASK_VAR,))):
        value = None
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Subscript) and is_mask(t.slice) for t in node.targets):
            value = node.value
        elif isinstance(node, ast.Call) and len(node.args) == 2 and is_mask(node.args[0]):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name in ("setdefault", "putenv", "__setitem__"):
                value = node.args[1]
        if value is not None:
            found.update(n.attr for n in ast.walk(value) if isinstance(n, ast.Attribute))
    return sorted(found)


def _rank_device(text: str):
    """(line, use, function) of the first CUDA device the file picks from its process rank, or
    None: from the file's tree when a reader of the record parsed it, else from the top-level
    statements that name a rank source, parsed alone (gpufix.rankflow)."""
    from gpufix.rankflow import mentions_rank, rank_device

    if not mentions_rank(text):
        return None
    return rank_device(_LAST_PARSE[1] if text is _LAST_PARSE[0] else None, text)


def names_mask_variable(text: str) -> bool:
    """Whether a file's text names CUDA_VISIBLE_DEVICES or CUDA_DEVICE_ORDER (may write a mask)."""
    return MASK_VAR in text or ORDER_VAR in text


# What a record holds, in the index cache's key: a cached record of an older shape is never reused
# (2: the files a file runs by path, `loads`; 3: the modules it starts with `python -m`, `runs_m`;
# 4: whether it names a mask variable, `names_mask`; 5: the attributes read into its mask, `mask_attrs`;
# 6: the device it picks from its process rank, `rank_device`).
RECORD_FORMAT = 6

# `[sys.executable, "-m", "pkg.worker"]`, `"python -m pkg.worker ..."` in a command string
_DASH_M = LazyPattern(r"""['"]-m['"]\s*,\s*(?:\w+\s*=\s*)?['"]([A-Za-z_][\w.]*)['"]|\bpython[\d.]*\s+-m\s+([A-Za-z_][\w.]*)""")


# The test modules_started made first, as one search led by the literal "-m": `'-m'`, `"-m"`, or
# "-m" then white space (the quote before it checked by a lookbehind).
_DASH_M_GATE = re.compile(r"""-m(?:[ \t\n\r\f\v]|(?<='-m)'|(?<="-m)")""")


def modules_started(text: str) -> list:
    """The modules a file starts as processes with `python -m NAME` (an argv list or a command
    string): evidence that a guarded module inside a package runs as `python -m pkg.mod`."""
    # what _DASH_M needs: "-m" (both alternatives hold it; most files have none: one search instead
    # of the pattern below), then a quoted "-m" argument, or "-m" followed by white space
    if "-m" not in text or not _DASH_M_GATE.search(text):
        return []
    return sorted({a or b for a, b in _dash_m_matches(text)})


def _dash_m_matches(text: str) -> list:
    """_DASH_M.findall(text), without trying the pattern at every character: its first alternative
    starts at a quote before "-m", its second at "python" after a word boundary (`\\b`, which the
    pattern checks itself: a match at a position sees the characters before it), so it is matched
    only there, left to right, each match skipping the starts inside it, as findall's
    non-overlapping scan does (no match is empty)."""
    starts = []
    find = text.find
    at = find("-m")
    while at >= 0:
        if at and text[at - 1] in "'\"":
            starts.append(at - 1)
        at = find("-m", at + 1)
    at = find("python")
    while at >= 0:
        starts.append(at)
        at = find("python", at + 6)
    out = []
    done = 0
    match = _DASH_M.match
    for at in sorted(starts):
        if at < done:
            continue
        m = match(text, at)
        if m is not None:
            out.append(m.groups(""))  # findall gives "" for a group that took no part
            done = m.end()
    return out

# Calls that run a file given by its path, and the argument holding the path: a plugin loaded by
# path runs in the loading process as an imported module does.
_PATH_LOADERS = {"spec_from_file_location": (1, "location"), "SourceFileLoader": (1, "path"),
                 "load_source": (1, "pathname"), "run_path": (0, "path_name"), "exec": (0, None),
                 "execfile": (0, "filename")}


# One pattern per name, each starting with its literal (which the regex engine finds fast, where a
# leading `\b(?:a|b)` is tried at every position); the word boundary is checked by hand.
_PATH_LOAD_CALLS = tuple(re.compile(re.escape(n) + r"[\s\\]*\(") for n in _PATH_LOADERS)


def _calls_a_loader(text: str) -> bool:
    """Whether `text` calls one of _PATH_LOADERS by its name: the name, not inside a longer word,
    then white space or line continuations, then an opening parenthesis."""
    for name, pattern in zip(_PATH_LOADERS, _PATH_LOAD_CALLS):
        if name not in text:
            continue  # each pattern starts with its name: a substring search settles most
        for m in pattern.finditer(text):
            before = text[m.start() - 1] if m.start() else " "
            if not (before.isalnum() or before == "_"):
                return True
    return False


# ".py" in text.lower(), without lowering the text: of all characters, only ".", "p"/"P" and
# "y"/"Y" lower to (a string holding) ".", "p" or "y", each to one character (the tests check every
# code point), so the lowered text holds ".py" exactly where the text holds one of these.
_PY_ANY_CASE = re.compile(r"\.[pP][yY]")


def _path_text(node) -> Optional[str]:
    """The project path a path expression names, from its string pieces in order:
    `"plugins/p.py"`, `os.path.join(HERE, "plugins", "p.py")`, `Path(__file__).parent / "p.py"`
    -> "plugins/p.py"; None when its last piece is not a `.py` file name."""
    pieces: list = []

    def walk(n):
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            pieces.append(n.value)
            return
        for child in ast.iter_child_nodes(n):
            walk(child)

    walk(node)
    parts = [x.replace("\\", "/").strip("/") for x in pieces if x.strip("/")]
    parts = [x for x in parts if x not in (".", "./")]
    if not parts or not parts[-1].lower().endswith(".py"):
        return None
    joined = "/".join(parts)
    while joined.startswith("./"):
        joined = joined[2:]
    return joined


def path_loads(text: str) -> list:
    """The files (as written: "plugins/p.py") a file runs by path: `importlib.util.
    spec_from_file_location(name, PATH)`, `SourceFileLoader(name, PATH)`, `imp.load_source`,
    `runpy.run_path(PATH)`, `exec(open(PATH).read())`. The graph resolves them against the
    project's files (gpufix.project.graph), as it resolves imports."""
    # The names alone are not a gate: "exec" is in every "executor" (that gate parsed and walked
    # nearly every file of a project, half of a cold scan's index time on diffusers). A load that
    # this function follows is one of these names called, with a literal piece ending in ".py".
    if not _PY_ANY_CASE.search(text) or not _calls_a_loader(text):
        return []
    tree = _parse(text)
    if tree is None:
        return []
    out = []
    # only the subtrees on the lines naming a loader: its calls, in the order of a whole-tree walk
    for node in _walk_lines(tree, lines_naming(text, _PATH_LOADERS)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if name not in _PATH_LOADERS:
            continue
        at, keyword = _PATH_LOADERS[name]
        arg = node.args[at] if len(node.args) > at else next(
            (k.value for k in node.keywords if keyword and k.arg == keyword), None)
        if arg is None:
            continue
        if name == "exec":  # exec(open(PATH).read()), exec(Path(PATH).read_text())
            if not (isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute)
                    and arg.func.attr in ("read", "read_text")):
                continue
            arg = arg.func.value
        path = _path_text(arg)
        if path is not None and path not in out:
            out.append(path)
    return out


_TOP_IMPORT = re.compile(r"^(?:import|from)[ \t]+([\w.]+)", re.M)


def _lazy_facts(a: str, text: str, f) -> dict:
    """The record's `whole` (the names the file may bind as module objects) and, for a file that
    imports a framework, `lazy_gpu` (its names that import one only when called): see
    gpufix.project.lazy. Left out when unknown, which the graph reads conservatively."""
    package = f.module if f.is_init else f.module.rpartition(".")[0]
    out = {}
    tree = None
    if "import_module" not in text and "__import__" not in text:  # else the names are computed: unknown
        last = INDEX_STATE.get("read")
        read, tree = (last[1], last[2]) if last is not None and last[0] == a else (read_imports(text), None)
        if read is None and tree is None:
            tree = _parse(text)
            if tree is None:
                return {}
        out["whole"] = whole_module_names(text, package, _from_target, tree=tree,
                                          statements=read.statements if read is not None else None)
    fp_catalog = INDEX_STATE["fp_catalog"]

    def is_framework(n: str) -> bool:
        return fp_catalog.framework_of_module(n) is not None

    # a framework import at the start of a line runs at import (the usual case): no parse needed
    if f.gpu and not any(is_framework(m.group(1)) for m in _TOP_IMPORT.finditer(text)):
        tree = tree or _parse(text)
        lazy = lazy_framework_names(tree, text, package, is_framework) if tree is not None else None
        if lazy is not None:
            out["lazy_gpu"] = lazy
    return out


# A parameter used as a CUDA ordinal: `f"cuda:{index}"`, `"cuda:" + str(index)`, `"cuda:%d" % index`,
# `set_device(index)`, `torch.device("cuda", index)`, `.cuda(index)`, `device_index=index`.
_ORDINAL_USE = re.compile(
    r"""cuda:\{\s*(\w+)\s*\}|cuda:['"]\s*\+\s*str\(\s*(\w+)\s*\)|cuda:%d['"]\s*%\s*\(?\s*(\w+)"""
    r"""|set_device\(\s*(\w+)\s*\)|device\(\s*['"]cuda['"]\s*,\s*(?:index\s*=\s*)?(\w+)\s*\)"""
    r"""|\.cuda\(\s*(\w+)\s*\)|device_(?:index|id)\s*=\s*(\w+)\b""")


# Every alternative of _ORDINAL_USE starts with one of these, so a match can start only where one
# does ("device(" also inside "set_device(", as finditer also tries there).
_ORDINAL_STARTS = ("cuda:", "set_device(", "device(", ".cuda(", "device_")


def _ordinal_names(text: str) -> set:
    """The names _ORDINAL_USE.finditer(text) captures, without running the pattern at every
    character: it is matched only where one of _ORDINAL_STARTS begins (found by substring search),
    left to right, each match skipping the starts inside it, as finditer's non-overlapping scan does
    (no match is empty, and the pattern looks at nothing before its start)."""
    starts = set()
    find = text.find
    for literal in _ORDINAL_STARTS:
        at = find(literal)
        while at >= 0:
            starts.add(at)
            at = find(literal, at + 1)
    names = set()
    done = 0  # the end of the last match
    match = _ORDINAL_USE.match
    for at in sorted(starts):
        if at < done:
            continue
        m = match(text, at)
        if m is not None:
            names.update(g for g in m.groups() if g)
            done = m.end()
    return names


# A module-level `def` starts a line (its indentation is 0: nothing before it, or white space that
# ends with a form feed, which resets the column): a compound statement never follows `;`, and a
# backslash-joined line starts where its first line does.
_LINE_START_DEF = LazyPattern(r"^(?:[ \t]*\f)*(async\b|def\b)", re.M)
_AFTER_ASYNC = LazyPattern(r"[ \t]+def\b")
_DEF_HEAD = LazyPattern(r"[ \t]+\w+[ \t]*\(")
_SIGNATURE_STOP = LazyPattern(r"[()'\"#\\]")
_WORD = LazyPattern(r"\w+")


def _module_def_params(text: str) -> Optional[set]:
    """A superset of the parameter names of the module-level functions of `text` (what ast gives as
    `args` of the FunctionDefs in tree.body), read from the text: every word between the
    parentheses of each `def NAME(` that starts a line. None when a signature is not one this reads
    exactly (a line continuation, a prefixed or triple-quoted or escaped string, type parameters,
    `async` not followed by `def`, a character outside ASCII, which a name may hold where `\\w`
    does not match it, or a byte-order mark): then the caller parses. A `def` line inside a string
    only adds words."""
    if text.startswith("\ufeff"):
        return None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    out: set = set()
    for m in _LINE_START_DEF.finditer(text):
        at = m.end()
        if m.group(1) == "async":
            after = _AFTER_ASYNC.match(text, at)
            if after is None:
                return None
            at = after.end()
        head = _DEF_HEAD.match(text, at)
        if head is None:
            return None
        start = pos = head.end()
        depth = 1
        while depth:
            stop = _SIGNATURE_STOP.search(text, pos)
            if stop is None:
                return None
            c = stop.group()
            pos = stop.end()
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            elif c == "#":  # a comment, to the line's end
                nl = text.find("\n", pos)
                if nl < 0:
                    return None
                pos = nl + 1
            elif c in "'\"":
                # a plain one-line string: no prefix (the letter before it would be a word), not
                # triple-quoted, no backslash; it ends at the next same quote on its line
                before = text[stop.start() - 1]
                close = text.find(c, pos)
                line_end = text.find("\n", pos)
                if (before.isalnum() or before == "_" or close < 0 or close == pos
                        or (0 <= line_end < close) or "\\" in text[pos:close]):
                    return None
                pos = close + 1
            else:  # a backslash
                return None
        region = text[start:pos - 1]
        if not region.isascii():
            return None
        out.update(_WORD.findall(region))
    return out


def device_helpers(text: str) -> list:
    """[[function, parameter, position]] of the module-level functions one of whose parameters is
    used as a CUDA ordinal (seed 004's `def device_cuda(index=1): return torch.device(f"cuda:{index}")`):
    for their callers, such a function is a device API like `torch.cuda.set_device`. A regular
    expression finds the candidate names; `ast` confirms each is a parameter of the function
    whose body uses it (and is not rebound there)."""
    if "def " not in text:
        return []
    names = _ordinal_names(text)
    if not names:
        return []
    params = _module_def_params(text)
    if params is not None and not names & params:
        return []  # no module-level function has one of the names as a parameter: nothing to parse
    tree = _parse(text)
    if tree is None:
        return []
    out = []
    lines = None
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
        lines = lines if lines is not None else _LINE.findall(text)
        body = _source_segment(lines, fn)
        used = _ordinal_names(body)
        for p in params:
            if p in wanted and p in used and p not in stored:
                out.append([fn.name, p, positional.index(p) if p in positional else None])
    return out


# A line with its end, as ast splits a source (`\r\n`, `\r`, `\n`; not the other breaks of
# str.splitlines). ast.get_source_segment splits the whole text again, a character at a time, for
# every node it is asked about: quadratic in a file's functions (measured: 8.8 of 29.6 s of a
# cold sequential torch scan). The text is split once here instead.
_LINE = LazyPattern(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _source_segment(lines: list, node) -> str:
    """ast.get_source_segment(text, node) or "" over `lines` (_LINE's split of the text)."""
    end_lineno, end_col = getattr(node, "end_lineno", None), getattr(node, "end_col_offset", None)
    if end_lineno is None or end_col is None:
        return ""
    first, last = node.lineno - 1, end_lineno - 1
    if first == last:
        return lines[first].encode()[node.col_offset:end_col].decode()
    return "".join([lines[first].encode()[node.col_offset:].decode(), *lines[first + 1:last],
                    lines[last].encode()[:end_col].decode()])


def _entry_to_file(a: str, entry: dict, tops: Optional[dict] = None):
    """(_File, importable names) of a record; None for a file that does not parse. `tops`: a
    dict the caller keeps, top package folder -> its Path (a project has few: one Path each)."""
    if entry.get("none"):
        return None
    top = entry["top"]
    if top is not None:
        top = (tops.get(top) or tops.setdefault(top, Path(top))) if tops is not None else Path(top)
    return _File(Path(a), entry["module"], top, entry["is_init"], list(entry["imports"]), entry["gpu"], entry["script"]), entry["names"]


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
