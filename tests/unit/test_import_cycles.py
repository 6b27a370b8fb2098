"""Imports inside gpufix/ flow one way: a test that fails on any import cycle between its modules.

Every `import` and `from ... import` of a gpufix module is an edge (at module level or inside a
function: a deferred import that closes a loop is a cycle too, only a hidden one), read with `ast`
over the package's files. `from gpufix.pkg import name` counts as an import of `gpufix.pkg.name`
when that is a module, else of `gpufix.pkg`; a package's `__init__` is a module of its own. A call
that imports a module named by a literal (`importlib.import_module("gpufix.rules")`,
`__import__("gpufix.x")`) is an import too: it was how the collectors once reached up into the
rules unseen."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gpufix"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(package: Path = PACKAGE) -> dict:
    files = {module_name(p, package): p for p in sorted(package.rglob("*.py"))}
    modules = set(files)
    graph = {m: set() for m in modules}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _runtime_nodes(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.Call):
                targets = _imported_by_call(node)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.append(sub if sub in modules else source)
            for target in targets:
                # `import gpufix.a.b` imports gpufix.a too; the edge that matters is the deepest module
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != mod and target.startswith("gpufix"):
                    graph[mod].add(target)
    return graph


def _imported_by_call(call: ast.Call) -> list:
    """[module] of `importlib.import_module("gpufix.x")` / `import_module(...)` / `__import__(...)`
    with a literal gpufix module name (a name computed at run time cannot be read here)."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name not in ("import_module", "__import__") or not call.args:
        return []
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and (arg.value == "gpufix" or arg.value.startswith("gpufix.")):
        return [arg.value]
    return []


def _runtime_nodes(tree):
    """Every node, except the bodies of `if TYPE_CHECKING:` (imports for annotations never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _is_type_checking(test) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def cycles(graph: dict) -> list:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_the_cycle_finder_finds_a_cycle(tmp_path):
    pkg = tmp_path / "gpufix"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from gpufix import b\n")
    (pkg / "b.py").write_text("def f():\n    from gpufix.sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from ..a import x\n")
    (pkg / "d.py").write_text("import gpufix.a\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gpufix import e\n")
    (pkg / "e.py").write_text("import gpufix.d\n")
    assert cycles(import_graph(pkg)) == [["gpufix.a", "gpufix.b", "gpufix.sub.c"]]


def test_an_import_by_a_literal_name_is_an_import(tmp_path):
    """`importlib.import_module("gpufix.x")` closes a cycle as `import gpufix.x` would; a computed
    name or another package's module is no edge."""
    pkg = tmp_path / "gpufix"
    (pkg / "low").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text(
        "import importlib\n\ndef found():\n    return importlib.import_module('gpufix.high')\n")
    (pkg / "high.py").write_text("from gpufix.low import found\n")
    (pkg / "other.py").write_text(
        "from importlib import import_module\nimport_module('json')\nimport_module(f'gpufix.{x}')\n"
        "__import__('gpufix.mid')\n")
    (pkg / "mid.py").write_text("")
    graph = import_graph(pkg)
    assert graph["gpufix.low"] == {"gpufix.high"} and graph["gpufix.other"] == {"gpufix.mid"}
    assert cycles(graph) == [["gpufix.high", "gpufix.low"]]


def reaches(graph: dict, start: str) -> set:
    """The modules `start` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_registry_is_above_what_it_registers():
    """gpufix.registry finds the rules and collectors and builds the walk's dispatch table and the
    prefilter's tests: none of them, nor the walk or the prefilter, imports it (they are handed what
    it builds), and the collectors never import the rules."""
    graph = import_graph()
    below = [m for m in graph if m.startswith(("gpufix.collectors", "gpufix.rules"))]
    below += ["gpufix.analysis", "gpufix.prefilter", "gpufix.facts", "gpufix.catalog"]
    upward = {m: sorted(r for r in reaches(graph, m) if r == "gpufix.registry") for m in below}
    assert {m: r for m, r in upward.items() if r} == {}
    assert {"gpufix.rules", "gpufix.collectors", "gpufix.prefilter"} <= graph["gpufix.registry"]
    for m in graph:
        if m.startswith("gpufix.collectors"):
            assert not any(r.startswith("gpufix.rules") for r in reaches(graph, m)), m


def test_no_import_cycles_inside_gpufix():
    found = cycles(import_graph())
    assert found == [], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_leaf_modules_import_nothing_of_gpufix():
    """The fact types (rules and collectors read them) and the prefilter's lexical reading stay
    leaves: importing them never pulls in the walk, the catalogue or the rules. So does
    gpufix.deferred (what is compiled or imported at first use), which most modules import, and
    gpufix.maskvalues (what a mask value says, for the Python rules and the text readers)."""
    graph = import_graph()
    for leaf in ("gpufix.facts", "gpufix.lexical", "gpufix.spelling", "gpufix.kinds", "gpufix.astkinds", "gpufix.deferred",
                 "gpufix.maskvalues"):
        assert graph[leaf] == set(), (leaf, graph[leaf])
