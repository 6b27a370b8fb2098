"""The analysis walk goes through a per-type plan (gpufix.analysis._walk_plan) that never enters
the node types it proves inert. It must hand the collectors the same nodes, in the same order, with
the same walk state as the generic walk it replaced (every field of every node, in field order):
this file keeps that generic walk as the reference and compares both on real and odd code."""

import ast
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import FIXTURES
from gpufix import analysis, registry
from gpufix.analysis import Analyzer
from gpufix.catalog import load_api_catalog

ROOT = Path(__file__).resolve().parents[2]

ODD = textwrap.dedent('''
    import os, torch as T
    from torch import cuda as C
    GPU = 1
    f = lambda d="cuda:1", *a, k=T.device("cuda:2"), **kw: T.cuda.set_device(d)
    g = (lambda: "cuda:3")()
    x = [T.ones(1).to(i) for i in range(2) if i != "cuda:4"]
    y = {k: "cuda:5" for k in "ab"}
    z = f"cuda:{GPU}" + f"cuda:1" + "cuda:%d" % GPU + "cuda:{}".format(2)
    w = x[1:"cuda:6"], -1, not 1, 1 < 2 <= 3, a if b else "cuda:7"
    os.environ["CUDA_VISIBLE_DEVICES"] = "1"
    os.environ |= {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0"}
    T.load("m.pt", map_location={"cuda:1": "cuda:0"})

    @C.device("cuda:1")
    @staticmethod
    def run(a: "cuda:8" = "cuda:9", *, b=T.device(1), c=None) -> "cuda:10":
        global GPU
        nonlocal_ = 1
        async def inner():
            async with T.cuda.device(1) as d, open("f"):
                await T.cuda.synchronize(2)
            async for q in agen():
                yield "cuda:11"
        del x[0]
        assert T.cuda.current_device() == 1, "cuda:12"
        with T.cuda.device(1):
            pass
        try:
            raise ValueError("cuda:13") from None
        except (ValueError, TypeError) as e:
            T.cuda.set_device(3)
        else:
            pass
        finally:
            C.set_device(0)
        while (n := T.cuda.device_count()) > 1:
            break
        for k, v in {"CUDA_VISIBLE_DEVICES": "1"}.items():
            os.environ[k] = v
        else:
            continue
        return [*x, *"cuda:14"], {**y}

    class Model(T.nn.Module, metaclass=M, device="cuda:15"):
        dev: str = "cuda:16"
        @property
        def d(self):
            return self.to("cuda:17")

    match T.cuda.device_count():
        case 1 | 2 as n if n > "cuda:18":
            T.cuda.set_device(n)
        case [1, *rest]:
            pass
        case {"k": 1, **kw}:
            pass
        case Model(dev="cuda:19", x=[1, 2]):
            pass
        case None:
            pass
''')

TRY_STAR = textwrap.dedent('''
    import torch
    try:
        torch.cuda.set_device(1)
    except* ValueError as e:
        torch.cuda.set_device("cuda:2")
''')


def _sources() -> list:
    """Code with every form of the grammar this Python has: fixtures, rule examples, gpufix's own
    modules, and the odd snippets above."""
    out = [("odd", ODD)]
    if sys.version_info >= (3, 11):
        out.append(("try-star", TRY_STAR))
    if sys.version_info >= (3, 12):
        out.append(("pep695", "type Alias[T] = list[T]\ndef f[T: int](x: T = 'cuda:1') -> T:\n    return x\n"))
    paths = sorted(FIXTURES.rglob("*.py")) + sorted((ROOT / "gpufix").glob("*.py"))
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            ast.parse(text)
        except SyntaxError:
            continue
        out.append((str(path.relative_to(ROOT)), text))
    return out


class _GenericWalk(Analyzer):
    """The walk before the plan: every node is visited, every field entered (ast.iter_fields)."""

    def visit(self, node) -> None:
        if isinstance(node, ast.stmt):
            self.order += 1
            self.stmt_stack.append(node)
            try:
                self._visit(node)
            finally:
                self.stmt_stack.pop()
        else:
            self._visit(node)

    def _visit(self, node) -> None:
        cls = type(node)
        if cls is ast.Call:
            func = node.func
            self.ambiguous_name = ""
            self.call_qual = self.qualname(func)
            self.call_last = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            shadowed, before = self.ambiguous_name, len(self.facts.ordinals)
        for fn in self._table.get(cls.__name__, ()):
            fn(node, self)
        if cls is ast.Call and shadowed:
            for use in self.facts.ordinals[before:]:
                use.shadowed = shadowed
        if cls is ast.FunctionDef or cls is ast.AsyncFunctionDef:
            self._visit_function(node)
        elif cls is ast.Lambda:
            saved = self.ctx
            self.ctx = id(node)
            self._children(node)
            self.ctx = saved
        elif cls is ast.JoinedStr:
            return
        else:
            self._children(node)

    def _visit_function(self, node) -> None:
        saved = self.ctx
        self.ctx = id(node)
        for dec in getattr(node, "decorator_list", []):
            self.visit(dec)
        args = node.args
        for default in list(args.defaults) + [d for d in args.kw_defaults if d is not None]:
            self.visit(default)
        for stmt in node.body:
            self.visit(stmt)
        self.ctx = saved

    def _children(self, node, skip=()) -> None:
        for field, value in ast.iter_fields(node):
            if field in skip:
                continue
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item)
            elif isinstance(value, ast.AST):
                self.visit(value)


def _recorded(cls, tree, lines, catalog, focus=None):
    """Every collector call of a walk: which handler, on which node, in which walk state."""
    log = []
    table = registry.collectors().table

    def spy(name, fn):
        def call(node, walk):
            ctx = walk.ctx
            log.append((name, type(node).__name__, getattr(node, "lineno", None), getattr(node, "col_offset", None),
                        walk.order, ctx is None, len(walk.stmt_stack), walk.call_qual))
            return fn(node, walk)
        return call

    spied = {k: tuple(spy(f"{k}:{fn.__self__.name}", fn) for fn in v) for k, v in table.items()}
    walk = cls(tree, lines, catalog, registry.collectors())
    walk._table = spied
    walk._plan = analysis._walk_plan(spied)
    facts = walk.run(focus)
    return log, facts


@pytest.mark.parametrize("name,text", _sources(), ids=lambda v: v if isinstance(v, str) and len(v) < 80 else None)
def test_the_plan_walk_calls_the_collectors_as_the_generic_walk_did(name, text):
    catalog = load_api_catalog()
    tree = ast.parse(text)
    lines = text.splitlines()
    new_log, new_facts = _recorded(Analyzer, tree, lines, catalog)
    old_log, old_facts = _recorded(_GenericWalk, tree, lines, catalog)
    assert new_log == old_log
    assert repr(new_facts) == repr(old_facts)
    # the focused walk (big files) too: every third line in focus
    focus = set(range(1, len(lines) + 1, 3))
    new_log, new_facts = _recorded(Analyzer, tree, lines, catalog, focus)
    old_log, old_facts = _recorded(_GenericWalk, tree, lines, catalog, focus)
    assert new_log == old_log
    assert repr(new_facts) == repr(old_facts)


def test_the_inert_node_types_hold_nothing_to_visit():
    """The grammar claims the plan relies on, checked on this Python's parser output: an inert
    node's children are inert, and a field the plan does not enter holds only inert nodes."""
    plan = analysis._walk_plan(registry.collectors().table)
    assert ast.Name not in plan and ast.Load not in plan and ast.Add not in plan and ast.alias not in plan
    assert ast.Call in plan and ast.Constant in plan and ast.Pass in plan  # (statements count: source order)
    seen = set()
    for _name, text in _sources():
        for node in ast.walk(ast.parse(text)):
            cls = type(node)
            if cls not in plan:
                assert all(type(child) not in plan for child in ast.iter_child_nodes(node)), cls
                continue
            entered = plan[cls][1]
            for field, value in ast.iter_fields(node):
                if field in entered:
                    continue
                values = value if isinstance(value, list) else [value]
                assert not any(type(v) in plan for v in values if isinstance(v, ast.AST)), (cls, field)
                seen.add((cls.__name__, field))
    assert ("Name", "ctx") not in seen  # (Name is never entered at all)
    assert ("Attribute", "ctx") in seen and ("BinOp", "op") in seen and ("Compare", "ops") in seen
    field_types = getattr(ast.Name, "_field_types", None)
    if field_types is not None:  # Python >= 3.13 says the field types itself
        assert set(field_types) == {"id", "ctx"}


def test_a_collector_of_an_inert_type_makes_it_walked(monkeypatch):
    """The plan is built from the collectors' table: a collector of `Name` gets every name."""
    table = dict(registry.collectors().table)
    names = []

    class Names:
        name = "names"

        def visit_Name(self, node, walk):
            names.append(node.id)

    table["Name"] = (Names().visit_Name,)
    plan = analysis._walk_plan(table)
    assert ast.Name in plan
    tree = ast.parse("import torch\ntorch.cuda.set_device(gpu)\nx = [a, b.c]\n")
    walk = Analyzer(tree, [], load_api_catalog(), registry.collectors())
    walk._table, walk._plan = table, plan
    walk.run()
    assert names == ["torch", "gpu", "x", "a", "b"]
    analysis._walk_plan(registry.collectors().table)  # (the plan of the real table again)


def test_an_expression_deeper_than_the_recursion_limit_is_walked():
    """The walk is a loop: a file Python parses is analysed, however deep its expressions (the
    recursive walk reported 400 terms of `1 + 1 + ...` as a syntax error, 'nested too deeply')."""
    from gpufix.config import policy_from_table
    from gpufix.engine import lint_source
    from gpufix.source import read_source

    terms = sys.getrecursionlimit() + 500
    text = "import torch\nx = " + " + ".join(["1"] * terms) + " + len('cuda:1')\ntorch.cuda.set_device(1)\n"
    result = lint_source(read_source("deep.py", text.encode()), policy_from_table({"visible-devices": "1"}, "<test>", root="/nonexistent"))
    assert result.errors == []
    assert sorted((f.rule, f.line) for f in result.findings) == [("GPU001", 2), ("GPU001", 3), ("GPU101", 1), ("GPU102", 1)]


@pytest.mark.parametrize("name,text", _sources()[:3] + _sources()[-3:], ids=lambda v: v if isinstance(v, str) and len(v) < 80 else None)
def test_walk_tree_is_ast_walk_less_the_inert_nodes(name, text):
    """The whole-tree passes (multi-GPU scopes, map_location names) see the nodes they look for in
    ast.walk's order."""
    tree = ast.parse(text)
    plan = analysis._walk_plan({})
    expected = [n for n in ast.walk(tree) if n is tree or type(n) in plan]
    assert [id(n) for n in analysis.walk_tree(tree)] == [id(n) for n in expected]
    assert len(expected) < 0.6 * sum(1 for _ in ast.walk(tree))
