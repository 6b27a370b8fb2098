"""Functions that a `spawn` (or `forkserver`) child process runs, and what runs before them there.

A child started with the `spawn` method is a fresh interpreter: it imports the module that defines
its function (the main module under the name `__mp_main__`, so its `if __name__ == "__main__":`
block does not run), then calls the function. The parent's own calls never run in it, and CUDA
has not started in it unless that module's top level started it. A `forkserver` child is forked
from a server that was started the same way (it imported the main module), so the same holds.
A `fork` child (the default of `multiprocessing` on Linux before Python 3.14) inherits the
parent's state instead: nothing here applies to it.

GPU105 judges a mask written in such a function for the child (gpufix.rules.gpu105_*), GPU108
says who wins there (gpufix.rules.gpu108_*). The facts are read from the whole tree by the
collector defined in the GPU105 module."""

from __future__ import annotations

import ast
import dataclasses
from typing import Optional

from gpufix.importscan import is_main_guard

SPAWN_METHODS = ("spawn", "forkserver")
_MP = ("multiprocessing", "torch.multiprocessing")
# the methods of a pool / executor object whose first argument runs in the workers
_POOL_METHODS = frozenset(("map", "imap", "imap_unordered", "starmap", "map_async", "starmap_async", "apply",
                           "apply_async", "submit"))


@dataclasses.dataclass
class SpawnFacts:
    """The functions only spawned child processes run, and the file's `__main__` blocks."""

    # id(FunctionDef) of a module-level function that only spawn children run -> (name, method, line)
    functions: dict
    # (first line, last line) of the module's `if __name__ == "__main__":` blocks
    main_blocks: tuple


def _const(node) -> Optional[str]:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _qualname(node, imports: dict) -> str:
    """`mp.get_context` -> `multiprocessing.get_context` through the file's imports; "" if not a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    parts.append(imports.get(node.id, node.id))
    return ".".join(reversed(parts))


def _is_mp(qual: str, name: str) -> bool:
    return any(qual == f"{m}.{name}" for m in _MP) or qual == f"multiprocessing.context.{name}"


def _arg(call: ast.Call, position: Optional[int], keyword: str):
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    if position is not None and position < len(call.args) and not any(isinstance(a, ast.Starred) for a in call.args[:position + 1]):
        return call.args[position]
    return None


def spawn_facts(tree: ast.Module, imports: dict, text: str) -> Optional[SpawnFacts]:
    """The module-level functions of `tree` that a spawn/forkserver child runs (a pool's
    initializer or mapped function, a Process target, an executor's initializer or submitted
    function, torch.multiprocessing.spawn's function), leaving out any the module also calls
    itself (then it runs in the parent too). None when the text names no spawn method."""
    if not any(m in text for m in SPAWN_METHODS):
        return None
    defs = {s.name: s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]

    def spawn_method(node) -> Optional[str]:
        """The start method of a context expression (`mp.get_context("spawn")`), or None."""
        if isinstance(node, ast.Call) and _is_mp(_qualname(node.func, imports), "get_context"):
            m = _const(_arg(node, 0, "method"))
            return m if m in SPAWN_METHODS else None
        if isinstance(node, ast.Name):
            return contexts.get(node.id)
        return None

    contexts: dict = {}  # a name bound to a spawn context -> its method
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            m = spawn_method(n.value)
            if m:
                contexts[n.targets[0].id] = m
    default = None  # set_start_method("spawn") anywhere: the file's processes start that way
    for c in calls:
        if _is_mp(_qualname(c.func, imports), "set_start_method"):
            m = _const(_arg(c, 0, "method"))
            default = m if m in SPAWN_METHODS else default

    def starter(c: ast.Call) -> Optional[tuple]:
        """(method, kind) of a call that starts child processes: kind pool | process | executor | fn."""
        qual = _qualname(c.func, imports)
        if qual in ("torch.multiprocessing.spawn", "torch.multiprocessing.spawn.spawn"):
            return "spawn", "fn"
        if qual.startswith("torch.multiprocessing.") and qual.endswith("start_processes"):
            m = _const(_arg(c, 5, "start_method")) or "spawn"
            return (m, "fn") if m in SPAWN_METHODS else None
        if qual.endswith("ProcessPoolExecutor") and qual.startswith("concurrent.futures"):
            ctx = _arg(c, 1, "mp_context")
            m = spawn_method(ctx) if ctx is not None else default
            return (m, "executor") if m else None
        for name, kind in (("Pool", "pool"), ("Process", "process")):
            if isinstance(c.func, ast.Attribute) and c.func.attr == name and spawn_method(c.func.value):
                return spawn_method(c.func.value), kind
            if default and (_is_mp(qual, name) or qual == "multiprocessing.pool.Pool" and name == "Pool"):
                return default, kind
        return None

    def functions_of(node) -> list:
        """The module-level function a callable expression names (`f`, `partial(f, ...)`)."""
        if isinstance(node, ast.Name) and node.id in defs:
            return [node.id]
        if isinstance(node, ast.Call) and _qualname(node.func, imports).endswith("partial") and node.args:
            return functions_of(node.args[0])
        return []

    run_in_child: dict = {}  # function name -> (method, line)
    pools: dict = {}  # a name bound to a spawn pool / executor -> method
    passed = set()  # id() of the Name nodes handed to a starter (not calls of the function)
    for c in calls:
        got = starter(c)
        if got is None:
            continue
        method, kind = got
        where = {"pool": (1, "initializer"), "process": (1, "target"), "executor": (2, "initializer"),
                 "fn": (0, "fn")}[kind]
        for arg in (_arg(c, *where),):
            for f in functions_of(arg) if arg is not None else ():
                run_in_child.setdefault(f, (method, c.lineno))
            if arg is not None:
                passed.update(id(n) for n in ast.walk(arg))
    for n in ast.walk(tree):
        value, names = None, []
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            value, names = n.value, [n.targets[0].id]
        elif isinstance(n, (ast.With, ast.AsyncWith)):
            for item in n.items:
                if isinstance(item.optional_vars, ast.Name) and isinstance(item.context_expr, ast.Call):
                    got = starter(item.context_expr)
                    if got and got[1] in ("pool", "executor"):
                        pools[item.optional_vars.id] = got[0]
        if value is not None and isinstance(value, ast.Call):
            got = starter(value)
            if got and got[1] in ("pool", "executor"):
                for name in names:
                    pools[name] = got[0]
    for c in calls:
        if not (isinstance(c.func, ast.Attribute) and c.func.attr in _POOL_METHODS and c.args):
            continue
        on = c.func.value  # `pool.map(f, ...)`, or chained: `ctx.Pool(2).map(f, ...)`
        method = pools.get(on.id) if isinstance(on, ast.Name) else None
        if isinstance(on, ast.Call):
            got = starter(on)
            method = got[0] if got and got[1] in ("pool", "executor") else None
        if method:
            for f in functions_of(c.args[0]):
                run_in_child.setdefault(f, (method, c.lineno))
            passed.update(id(n) for n in ast.walk(c.args[0]))
    # A function the module also calls (or hands elsewhere) runs in the parent too: not only in a child.
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and n.id in run_in_child and isinstance(n.ctx, ast.Load) and id(n) not in passed:
            del run_in_child[n.id]
    functions = {id(defs[name]): (name, method, line) for name, (method, line) in run_in_child.items()}
    blocks = tuple((s.lineno, s.end_lineno or s.lineno) for s in tree.body if _is_main_block(s))
    return SpawnFacts(functions, blocks)


_is_main_block = is_main_guard  # the one test of a `__main__` guard (gpufix.importscan)


def child_of(facts, w) -> Optional[tuple]:
    """(function name, start method, line of the start) when env write `w` is in a function that only
    spawn/forkserver children run; else None."""
    got = facts.extra.get("spawn-targets")
    if got is None or w.ctx is None:
        return None
    return got.functions.get(w.ctx)


def child_earlier(facts, w) -> list:
    """The GPU triggers that run before `w` in the spawn child that runs its function: the module's
    top level outside its `__main__` block (the child imports the module first), and the
    function's own statements above `w`. None of the parent's calls."""
    blocks = facts.extra["spawn-targets"].main_blocks
    out = []
    for t in facts.gpu_imports + facts.gpu_calls:
        if t.ctx is None:
            if not any(a <= t.pos.line <= b for a, b in blocks):
                out.append(t)
        elif t.ctx == w.ctx and t.order < w.order:
            out.append(t)
    return out
