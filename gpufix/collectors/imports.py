"""Imports: the names each import binds (for resolving calls), and GPU framework imports.

A framework is imported by more than an import statement, and each way counts like one (GPU101's
scope, GPU105's "too late"):

* `importlib.import_module("torch")` / `__import__("torch")` with a literal name (the name it is
  assigned to is bound like `import torch`);
* a call of a function of this file that imports a framework when it runs (`torch = load_backend()`,
  a loader called at module level), followed through helpers that call such a function.
"""

from __future__ import annotations

import ast

from gpufix.analysis import const_str, lines_holding
from gpufix.collectors import Collector

_IMPORT_FUNCS = ("importlib.import_module", "importlib.__import__")


class Imports(Collector):
    name = "imports"
    priority = 10

    def whole_file_words(self):
        # a dynamic import is a statement like any other: the focused walk would not see it
        return ("import_module", "__import__")

    def before(self, walk) -> None:
        walk.collect_imports()
        walk.local_functions = {}  # name -> id of the file's own module-level def of that name
        imports = walk.facts.imports
        if any(walk.catalog.framework_of_module(t) for t in imports.values()):
            # A focused walk must still visit the calls of a loader (the statements that name it).
            loaders = _loader_names(walk)
            calls = [f"{name}(" for name in loaders if f"{name}(" in walk.text]
            if calls:
                walk.extra_focus.update(lines_holding(walk.text, calls))
        if not any(t.split(".")[0] == "importlib" for t in imports.values()) and not _mentions(walk, "__import__"):
            return
        # `torch = importlib.import_module("torch")`: binds the name as `import torch` would.
        for stmt in walk.statements():
            if type(stmt) is ast.Assign and len(stmt.targets) == 1 and type(stmt.targets[0]) is ast.Name:
                module = bound_module(stmt.value, walk)
                if module and walk.catalog.framework_of_module(module):
                    imports.setdefault(stmt.targets[0].id, module)

    def visit_Import(self, node, walk) -> None:
        for alias in node.names:
            if walk.catalog.framework_of_module(alias.name):
                walk.gpu_import(node, alias.name)

    def visit_ImportFrom(self, node, walk) -> None:
        if not node.module or node.level:
            return
        if walk.catalog.framework_of_module(node.module):
            walk.gpu_import(node, node.module)
            return
        for alias in node.names:
            full = f"{node.module}.{alias.name}"
            if walk.catalog.framework_of_module(full):
                walk.gpu_import(node, full)
                return

    def visit_FunctionDef(self, node, walk) -> None:
        if walk.ctx is None and len(walk.stmt_stack) == 1:
            walk.local_functions[node.name] = id(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node, walk) -> None:
        module = dynamic_import(node, walk)
        if module is not None:
            if walk.catalog.framework_of_module(module):
                walk.gpu_import(node, module)
            return
        func = node.func
        if type(func) is ast.Name and func.id in walk.local_functions and func.id not in walk.facts.imports:
            # A loader of the file's own: what it imports when it runs is imported here.
            fid = walk.local_functions[func.id]
            inner = next((t for t in walk.facts.gpu_imports if t.ctx == fid), None)
            if inner is not None:
                walk.gpu_import(node, inner.what[len("import of "):], via_call=True)


def _loader_names(walk) -> set:
    """Module-level functions of this file that import a framework when they run, directly or
    through another such function (a cheap reading: its statements and the names it calls)."""
    defs = {s.name: s for s in walk.tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if not defs:
        return set()
    catalog = walk.catalog
    loaders = set()
    # The file's statements in source order: a module-level def's own statements follow it, up to
    # the next module-level statement (one pass over the list, not one walk per def).
    top = {id(s) for s in walk.tree.body}
    owner = None
    for stmt in walk.statements():
        if id(stmt) in top:
            owner = stmt if defs.get(getattr(stmt, "name", None)) is stmt else None
            continue
        if owner is None or owner.name in loaders:
            continue
        if (type(stmt) is ast.Import and any(catalog.framework_of_module(a.name) for a in stmt.names)) or (
                type(stmt) is ast.ImportFrom and stmt.module and not stmt.level and catalog.framework_of_module(stmt.module)):
            loaders.add(owner.name)
    grown = bool(loaders)
    lines = walk.lines
    while grown:  # a function whose text calls a loader is one (`def setup(): return load_backend()`)
        grown = False
        calls = [f"{loader}(" for loader in loaders]
        for name, d in defs.items():
            if name not in loaders:
                body = "\n".join(lines[d.body[0].lineno - 1:d.end_lineno])
                if any(call in body for call in calls):
                    loaders.add(name)
                    grown = True
    return loaders


def dynamic_import(node, walk):
    """The module a call `importlib.import_module("m")` / `__import__("m")` imports, or None. For
    `__import__("a.b")` the module imported is `a.b` (it binds `a`)."""
    if type(node) is not ast.Call or not node.args:
        return None
    func = node.func
    last = func.attr if type(func) is ast.Attribute else func.id if type(func) is ast.Name else None
    if last != "import_module" and last != "__import__":
        return None  # (most calls: settled without resolving the name)
    builtin = type(func) is ast.Name and func.id == "__import__" and "__import__" not in walk.facts.imports
    if not builtin and walk.qualname(func) not in _IMPORT_FUNCS:
        return None
    name = const_str(node.args[0])
    if not name or name.startswith("."):
        return None
    return name


def bound_module(node, walk):
    """What the value of such a call is: `import_module("a.b")` gives `a.b`, `__import__("a.b")`
    the top package `a`."""
    name = dynamic_import(node, walk)
    if name is None or walk.qualname(node.func) in _IMPORT_FUNCS:
        return name
    return name.split(".")[0]


def _mentions(walk, word: str) -> bool:
    return word in walk.text


def import_statement(node) -> bool:
    return type(node) is ast.Import or type(node) is ast.ImportFrom
