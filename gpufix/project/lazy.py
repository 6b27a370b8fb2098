"""Modules that import a GPU framework only inside functions, and importers that take only names.

A process reaches a CUDA framework when an import it runs imports one. A module whose framework
imports are all inside the bodies of its functions (FastChat's `fastchat/utils.py`: `import torch`
in `get_gpu_memory()`) imports the framework only when one of those functions runs; a file that
takes other names from it (`from fastchat.utils import run_cmd`) runs its top level only, which
imports no framework. Such a process touches no CUDA GPU through that import, so it needs no header
for it (gpufix.project.graph).

Two facts per file, for its index record (None: unknown, the conservative reading):
- `lazy_framework_names`: the module's top-level names (functions, classes) whose bodies import a
  framework, directly or by referring to another such name; None unless every framework import is
  in a function body and no code that runs at import refers to those names.
- `whole_module_names`: the dotted names a file may bind as a module object (`import a.b`,
  `from a import b`, `from a import *`); None when it imports by a computed name."""

from __future__ import annotations

import ast
from typing import Callable, Optional

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def lazy_framework_names(tree: ast.Module, text: str, package: str, is_framework: Callable) -> Optional[list]:
    if "import_module" in text or "__import__" in text:
        return None  # a framework imported by a computed or string name: not read here
    direct: set = set()
    refs: dict = {}  # top-level name (or "" for code that runs at import) -> names it refers to
    eager = False

    def visit(node, owner: str, in_func: bool) -> None:
        nonlocal eager
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                names = [node.module or ""] if not node.level else []  # relative: first-party
            if any(n and is_framework(n) for n in names):
                if in_func:
                    direct.add(owner)
                else:
                    eager = True
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            refs.setdefault(owner if in_func else "", set()).add(node.id)
            return
        if isinstance(node, _FUNCTIONS):
            # decorators, defaults and annotations run when the `def` runs; the body when called
            for sub in node.decorator_list + node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
                visit(sub, owner, in_func)
            for stmt in node.body:
                visit(stmt, owner if (in_func or owner) else node.name, True)
            return
        if isinstance(node, ast.ClassDef) and not in_func and not owner:
            for sub in node.decorator_list + node.bases + [k.value for k in node.keywords]:
                visit(sub, "", False)
            for stmt in node.body:
                visit(stmt, node.name, False)  # a class body runs at import; its methods when called
            return
        if isinstance(node, ast.Lambda):
            visit(node.body, owner, in_func)  # conservatively as the code around it
            return
        for child in ast.iter_child_nodes(node):
            visit(child, owner, in_func)

    for stmt in tree.body:
        visit(stmt, "", False)
    if eager or not direct or "" in direct:
        return None
    lazy = set(direct)
    changed = True
    while changed:
        changed = False
        for name, used in refs.items():
            if name and name not in lazy and used & lazy:
                lazy.add(name)
                changed = True
    if refs.get("", set()) & lazy:
        return None  # code that runs at import refers to a function that imports a framework
    return sorted(lazy)


def whole_module_names(text: str, package: str, from_target: Callable, statements=None, tree=None) -> Optional[list]:
    """From gpufix.importscan's `statements` of the text when given, else from `tree`."""
    if "import_module" in text or "__import__" in text:
        return None
    out = set()
    if statements is not None:
        for st in statements:
            if st.level < 0:
                out.update(name for name, _ in st.names)
                continue
            target = from_target(package, st.level, st.module)
            out.update(target if n == "*" else f"{target}.{n}" for n, _ in st.names)
        return sorted(out)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = from_target(package, node.level, node.module or "")
            out.update(target if a.name == "*" else f"{target}.{a.name}" for a in node.names)
    return sorted(out)
