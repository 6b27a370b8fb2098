"""One pass over Python's `ast` that collects the facts every rule needs: the walk is here, what is
collected is in gpufix/collectors/ (one module per kind of fact). The collectors are handed down
(gpufix.registry.Collectors: the set, its dispatch table and focus words): this module never looks
them up.

Names are resolved through the file's own imports (`import torch as T`, `from torch import cuda`,
`from numba import cuda`, `from pynvml import *`), never by matching source text. Positions are
1-based lines and 0-based *character* columns (ast gives UTF-8 byte offsets; we convert).
"""

from __future__ import annotations

import ast
import functools
from typing import Optional

from gpufix.astkinds import SIMPLE_STATEMENTS, node_classes
from gpufix.catalog import ApiCatalog
from gpufix.importscan import is_main_guard as _is_main_guard

# The fact types live in a leaf module (gpufix.facts); re-exported here for older imports.
from gpufix.facts import (  # noqa: F401
    CUDA_ORDINAL_CALLS, CUDA_STRING_RE, ENV_VARS, MASK_VAR, ORDER_VAR, TF_DEVICE_RE, EnvWrite, Facts, GpuTrigger,
    OrdinalUse, Pos, imports_module,
)


_STMT_LIST_FIELDS = ("body", "orelse", "finalbody")
_BLOCK_FIELDS = frozenset(_STMT_LIST_FIELDS + ("handlers", "cases"))


class _Columns:
    """UTF-8 byte offsets (ast) -> character columns."""

    def __init__(self, lines: list):
        self.lines = lines

    def __call__(self, line: int, byte_col: int) -> int:
        if line - 1 >= len(self.lines) or line < 1:
            return byte_col
        text = self.lines[line - 1]
        if text.isascii():
            return byte_col
        return len(text.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))


def literal_int(node) -> Optional[int]:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
        node = node.operand  # set_device(+1)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return None


def const_str(node) -> Optional[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and all(isinstance(v, ast.Constant) and isinstance(v.value, str) for v in node.values):
        return "".join(v.value for v in node.values)  # an f-string without placeholders
    return None


_literal_int, _const_str = literal_int, const_str  # older names


# What the walk does at a node besides calling its collectors (bits of a plan's kind).
_STMT, _FUNC, _LAMBDA, _JOINED, _CALL, _MARK = 1, 2, 4, 8, 16, 32


class _Restore:
    """A mark on the walk's stack: the end of a function or lambda (the enclosing context again)."""

    __slots__ = ("ctx",)

    def __init__(self, ctx):
        self.ctx = ctx


class _EndStatement:
    """A mark on the walk's stack: the end of a statement (off stmt_stack)."""


_END_STMT = _EndStatement()
# Fields whose values are only expression contexts / operators (ast's grammar: `ctx`
# expr_context, `op` operator / unaryop / boolop, `ops` cmpop*): nothing below them to visit
# when those node types are inert (checked in _walk_plan; tests/unit/test_walk_plan.py checks
# the grammar claim on parsed code).
_CONTEXT_FIELDS = frozenset(("ctx", "op", "ops"))
# Node types whose fields are identifiers and an expression context only (ast's grammar):
# inert when no collector looks at them or at the contexts.
_IDENTIFIER_NODES = ("Name", "alias")
# Fields that hold identifiers, numbers, strings or constants only, never a node (ast's grammar;
# `name` is an expression in TypeAlias, and `value` one everywhere but in Constant).
_SCALAR_FIELDS = frozenset(("id", "attr", "arg", "asname", "module", "level", "is_async", "conversion", "simple",
                            "type_comment", "kind", "name"))
_SCALAR_IN = {"Constant": ("value",), "Global": ("names",), "Nonlocal": ("names",)}
_PLANS: dict = {}


def _walk_plan(table: dict) -> dict:
    """Node class -> (its collectors' visit methods, the fields to go down into, kind bits), for
    every node class that can hold something a collector of `table` (gpufix.registry.Collectors.table)
    looks at; the classes left out are inert: no collector looks at them and nothing under them
    (Name, alias, contexts, operators), so the walk never enters them. Built once per table."""
    cached = _PLANS.get(id(table))
    if cached is not None and cached[0] is table:
        return cached[1]
    classes = node_classes()
    inert = {cls for cls in classes if not cls._fields and cls.__name__ not in table and not issubclass(cls, ast.stmt)}
    contexts = [c for c in classes if c in (ast.expr_context, ast.operator, ast.unaryop, ast.boolop, ast.cmpop)
                or issubclass(c, (ast.expr_context, ast.operator, ast.unaryop, ast.boolop, ast.cmpop))]
    contexts_inert = all(c in inert for c in contexts)
    if contexts_inert:
        inert.update(c for c in classes if c.__name__ in _IDENTIFIER_NODES and c.__name__ not in table)
    plan = {}
    for cls in classes:
        if cls in inert:
            continue
        kind = 0
        if issubclass(cls, ast.stmt):
            kind |= _STMT
        if cls is ast.FunctionDef or cls is ast.AsyncFunctionDef:
            kind |= _FUNC
        elif cls is ast.Lambda:
            kind |= _LAMBDA
        elif cls is ast.JoinedStr:
            kind |= _JOINED
        elif cls is ast.Call:
            kind |= _CALL
        fields = tuple(
            f for f in cls._fields
            if not (contexts_inert and f in _CONTEXT_FIELDS)
            and not (f in _SCALAR_FIELDS and not (f == "name" and cls.__name__ == "TypeAlias"))
            and f not in _SCALAR_IN.get(cls.__name__, ())
        )
        plan[cls] = (table.get(cls.__name__, ()), fields, kind)
    plan[_Restore] = plan[_EndStatement] = ((), (), _MARK)
    if len(_PLANS) > 8:
        _PLANS.clear()  # (tests swap collector sets; a run uses the collectors' table and _NO_HANDLERS)
    _PLANS[id(table)] = (table, plan)
    return plan


_NO_HANDLERS: dict = {}


def walk_tree(tree):
    """The nodes of `tree` as `ast.walk` yields them (breadth first, children in field order), less
    the nodes that hold no other node (names, aliases, contexts, operators: _walk_plan's inert
    types, more than half of a tree), found without ast.walk's generator per node. For the
    whole-tree passes that look for statements, calls or other compound nodes."""
    from collections import deque

    plan = _walk_plan(_NO_HANDLERS)
    get = plan.get
    todo = deque((tree,))
    popleft, append = todo.popleft, todo.append
    while todo:
        node = popleft()
        spec = get(type(node))
        if spec is not None:
            for field in spec[1]:
                value = getattr(node, field, None)
                if type(value) is list:
                    for item in value:
                        if type(item) in plan:
                            append(item)
                elif type(value) in plan:
                    append(value)
        yield node


class Analyzer:
    """The one walk over a module's syntax tree. It keeps what every collector needs (positions,
    source text, names resolved through the imports, the enclosing function, source order, the
    statement stack) and hands each node to the collectors that look at its type
    (gpufix/collectors/), before going down into it. Rules never see the tree: only `facts`.
    `collectors`: the set to run (gpufix.registry.Collectors: `registry.collectors()` for the
    shipped ones)."""

    def __init__(self, tree: ast.Module, lines: list, catalog: ApiCatalog, collectors):
        self.tree = tree
        self.lines = lines
        self.col = _Columns(lines)
        self.catalog = catalog
        self.facts = Facts()
        self.ctx: Optional[int] = None
        self.order = 0
        self.stmt_stack: list = []
        self.map_location_dicts: set = set()
        self.skip_strings: set = set()  # ids of Constant nodes not to treat as 'cuda:N' literals
        self.focus: set = set()
        self.call_qual: Optional[str] = None  # the Call being dispatched: its qualified name
        self.call_last: Optional[str] = None  # ... and the last name of its callee
        self.shadowed: dict = {}  # imported name -> line of the file's own def/class of that name
        self.ambiguous_name = ""  # set by qualname() for a call that may run the import or the def
        self.extra_focus: set = set()  # lines a focused walk must visit too (collectors' before hooks add them)
        self.environ_aliases: set = set()  # names bound only to os.environ itself (`env = os.environ`)
        self.flow_sinks: list = []  # device arguments that are names, followed after the walk (collectors/value_flow.py)
        self._imports_collected = False
        self._statements: Optional[list] = None
        self._text: Optional[str] = None
        self.collectors = collectors
        self._collectors = collectors.all
        self._table = collectors.table
        self._plan = _walk_plan(self._table)

    # -- helpers for collectors ------------------------------------------------------------------
    def collector(self, name: str):
        """The collector named `name` of this walk's set (one collector may record through
        another's method: value flow through the device APIs')."""
        return self.collectors.get(name)

    def statements(self) -> list:
        """Every statement of the module, nested ones too, in source order (iter_statements):
        listed once per file for the walk's pre-passes, which each went through the tree again."""
        if self._statements is None:
            self._statements = list(iter_statements(self.tree.body))
        return self._statements

    @property
    def text(self) -> str:
        """The lines joined: what the pre-passes test for a word (none of which holds a newline)
        in one C search instead of one per line."""
        if self._text is None:
            self._text = "\n".join(self.lines)
        return self._text

    def pos(self, node) -> Pos:
        end_line = getattr(node, "end_lineno", None) or node.lineno
        end_col = getattr(node, "end_col_offset", None)
        if end_col is None:
            end_col = node.col_offset
        return Pos(node.lineno, self.col(node.lineno, node.col_offset), end_line, self.col(end_line, end_col))

    def src(self, node) -> str:
        """The node's source text (ast offsets are UTF-8 byte offsets)."""
        l1, c1 = node.lineno, node.col_offset
        l2, c2 = getattr(node, "end_lineno", None), getattr(node, "end_col_offset", None)
        if l2 is None or c2 is None or l1 > len(self.lines) or l2 > len(self.lines):
            return ""
        if l1 == l2:
            return self.lines[l1 - 1].encode("utf-8")[c1:c2].decode("utf-8", errors="replace")
        first = self.lines[l1 - 1].encode("utf-8")[c1:].decode("utf-8", errors="replace")
        last = self.lines[l2 - 1].encode("utf-8")[:c2].decode("utf-8", errors="replace")
        return "\n".join([first, *self.lines[l1:l2 - 1], last])

    def qualname(self, node) -> Optional[str]:
        """Qualified name of a Name/Attribute chain through the imports (None if not imported)."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        shadow = self.shadowed.get(node.id)
        if shadow is not None and node.lineno >= shadow and self.ctx is None:
            return None  # the file's own function or class of that name, defined above
        if shadow is not None and self.ctx is not None:
            # In a function (run whenever it is called) the name may be either: resolved, but
            # its ordinals are reported without a fix.
            self.ambiguous_name = node.id
        base = self.facts.imports.get(node.id)
        if base is None:
            for module in self.facts.star_modules:
                # `from pynvml import *` binds the module's public names.
                base = f"{module}.{node.id}"
                if any(api.name == ".".join([base, *reversed(parts)]) for api in self.catalog.apis):
                    break
            else:
                return None
        return ".".join([base, *reversed(parts)])

    def is_environ(self, node) -> bool:
        if type(node) is ast.Name and node.id in self.environ_aliases:
            return True  # `env = os.environ` (collectors/env_writes.py finds the aliases)
        return self.qualname(node) == "os.environ"

    def gpu_import(self, node, module, via_call: bool = False) -> None:
        self.order += 1
        self.facts.gpu_imports.append(GpuTrigger(f"import of {module}", self.pos(node), self.ctx, self.order, via_call))

    def env_write(self, var, method, value_node, node, value_str=None, child=False, environ=None) -> None:
        """Record a write of `var`; `environ` is the environ expression written through, where
        `node` does not say it (a loop over a settings dict, `os.environ |= {...}`)."""
        stmt = self.stmt_stack[-1] if self.stmt_stack else node
        if value_node is None:
            kind, value, vpos = "str", value_str, None
        else:
            s = const_str(value_node)
            if s is not None:
                kind, value = "str", s
            elif literal_int(value_node) is not None or (
                isinstance(value_node, ast.UnaryOp) and isinstance(value_node.op, ast.USub) and literal_int(value_node.operand) is not None
            ):
                kind, value = "int", self.src(value_node)
            elif isinstance(value_node, (ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict)) and not isinstance(
                getattr(value_node, "value", None), (bytes,)
            ):
                kind, value = "other-literal", self.src(value_node)
            else:
                kind, value = "dynamic", None
            vpos = self.pos(value_node)
        module_body = len(self.stmt_stack) == 1 and self.ctx is None
        header = module_body or (
            len(self.stmt_stack) == 2 and self.ctx is None and is_cpu_guard(self.stmt_stack[0], self.qualname)
            and len(self.stmt_stack[0].body) == 1 and not self.stmt_stack[0].orelse
        )
        simple = isinstance(stmt, (ast.Assign, ast.Expr))
        if isinstance(stmt, ast.Assign) and len(stmt.targets) != 1:
            simple = False
        environ_src = "os.environ"
        if method == "putenv":
            # `os.putenv(...)` -> `os.environ`; a bare `putenv` (from os import putenv) binds no
            # name through which os.environ can be written.
            func = node.func if isinstance(node, ast.Call) else None
            environ_src = self.src(func.value) + ".environ" if isinstance(func, ast.Attribute) else ""
        elif method in ("setitem",):
            environ_src = self.src(node.value) if isinstance(node, ast.Subscript) else environ_src
        elif method in ("update", "setdefault") and isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            environ_src = self.src(node.func.value)
        if environ is not None:
            environ_src = self.src(environ)
        self.order += 1
        self.facts.env_writes.append(
            EnvWrite(
                var=var,
                method=method,
                value_kind=kind,
                value=value,
                value_pos=vpos,
                pos=self.pos(node),
                stmt=self.pos(stmt),
                ctx=self.ctx,
                module_body=module_body,
                simple_stmt=simple,
                environ_src=environ_src,
                order=self.order,
                value_src=self.src(value_node) if value_node is not None else None,
                header=header,
                child=child,
            )
        )

    def collect_imports(self) -> None:
        # Imports bind names wherever they are; collect first so that order of use does not matter.
        # Walked from the end of the file, so that of two bindings of one name the first one wins.
        if self._imports_collected:
            return
        self._imports_collected = True
        for node in reversed(self.statements()):
            cls = type(node)
            if cls is ast.Import:
                for alias in node.names:
                    if alias.asname:
                        self.facts.imports[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        self.facts.imports.setdefault(top, top)
            elif cls is ast.ImportFrom and node.module and not node.level:
                for alias in node.names:
                    if alias.name == "*":
                        self.facts.star_modules.append(node.module)
                    else:
                        self.facts.imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        # A function or class of the file's own with an imported name shadows the import: calls
        # of that name are the user's code, not the framework's (module-level code before the
        # `def` still calls the import).
        for node in _module_level(self.tree.body):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in self.facts.imports:
                self.shadowed[node.name] = min(node.lineno, self.shadowed.get(node.name, node.lineno))

    # -- the walk --------------------------------------------------------------------------------
    def run(self, focus_lines: Optional[set] = None) -> Facts:
        """Analyse the module. With `focus_lines`, only statements whose lines include one of them
        are visited in full (imports always are): a statement that mentions none of the tokens a
        finding needs cannot produce one, and skipping it is most of the speed on big files."""
        body = self.tree.body
        for collector in self._collectors:
            collector.before(self)
        self.facts.has_main_guard = any(_is_main_guard(s) for s in body)
        self.facts.first_stmt_line = header_line(body)
        if focus_lines is None:
            for stmt in body:
                self.visit(stmt)
        else:
            self.focus = focus_lines | self.extra_focus if self.extra_focus else focus_lines
            self._visit_focused(body)
        for collector in self._collectors:
            collector.after(self)
        seen = set()
        unique = []
        for use in self.facts.ordinals:
            key = (use.kind, use.pos.line, use.pos.col)
            if key not in seen:
                seen.add(key)
                unique.append(use)
        self.facts.ordinals = unique
        return self.facts

    def run_header(self) -> Facts:
        """Only what the header rules need: GPU framework imports and the `__main__` guard (for a
        file whose text holds no ordinal and no mask variable: the prefilter's HEADER tier)."""
        self.facts.has_main_guard = any(_is_main_guard(s) for s in self.tree.body)
        self.facts.first_stmt_line = header_line(self.tree.body)
        table = self._table
        imports = self.collector("imports")
        imports.before(self)
        dynamic = "import_module" in self.text or "__import__" in self.text
        for node in self.statements():
            cls = type(node)
            if cls is ast.Import or cls is ast.ImportFrom:
                for fn in table.get(cls.__name__, ()):
                    fn(node, self)
            elif dynamic and (cls is ast.Assign or cls is ast.Expr) and type(node.value) is ast.Call:
                # `torch = importlib.import_module("torch")`: a framework import too
                self.order += 1
                self.stmt_stack.append(node)
                try:
                    imports.visit_Call(node.value, self)
                finally:
                    self.stmt_stack.pop()
        return self.facts

    def visit(self, node) -> None:
        spec = self._plan.get(type(node))
        if spec is not None:  # (None: a node that can hold nothing any collector looks at)
            self._walk(spec, node)

    def _walk(self, spec, node) -> None:
        """Hand `node` and everything under it to the collectors in source (field) order, each node
        before its children, through the plan of its type (_walk_plan): the nodes the plan proves
        inert (names, contexts, operators: more than half of a tree) are never entered. A loop over
        an explicit stack, not recursion: a file as deep as Python can parse is walked."""
        plan = self._plan
        get = plan.get
        stmt_stack = self.stmt_stack
        stack = [node]
        pop = stack.pop
        while stack:
            node = pop()
            spec = get(type(node))
            if spec is None:
                continue  # an inert node, or a field's None / string
            handlers, fields, kind = spec
            if kind & _STMT:
                self.order += 1
                stmt_stack.append(node)
                stack.append(_END_STMT)
            elif kind & _MARK:  # the end of a statement, lambda or function: undo what it set
                if node is _END_STMT:
                    stmt_stack.pop()
                else:
                    self.ctx = node.ctx
                continue
            if kind & _CALL:
                func = node.func
                self.ambiguous_name = ""
                self.call_qual = self.qualname(func)
                tf = type(func)
                self.call_last = func.attr if tf is ast.Attribute else func.id if tf is ast.Name else None
                shadowed, before = self.ambiguous_name, len(self.facts.ordinals)
                for fn in handlers:
                    fn(node, self)
                if shadowed:
                    for use in self.facts.ordinals[before:]:
                        use.shadowed = shadowed
            else:
                for fn in handlers:
                    fn(node, self)
            if kind & _JOINED:
                continue  # f-string parts are not string literals of their own
            if kind & (_FUNC | _LAMBDA):
                stack.append(_Restore(self.ctx))
                self.ctx = id(node)
            if kind & _FUNC:
                # decorators and defaults (evaluated when the def runs, but 'cuda:N' defaults are
                # still ordinals), then the body; not the annotations
                args = node.args
                items = [*node.decorator_list, *args.defaults, *args.kw_defaults, *node.body]
            else:
                items = []
                for field in fields:
                    value = getattr(node, field, None)
                    if type(value) is list:
                        items += value
                    else:
                        items.append(value)
            items.reverse()
            stack += items

    def _children(self, node, skip=()) -> None:
        """Visit the node's child fields, except the fields named in `skip`."""
        for field in self._plan[type(node)][1]:
            if field in skip:
                continue
            value = getattr(node, field, None)
            for item in value if type(value) is list else (value,):
                self.visit(item)

    def _touches_focus(self, node) -> bool:
        # A decorated def or class starts at its first decorator (ast's lineno is the `def` line).
        start = node.lineno
        for dec in getattr(node, "decorator_list", None) or ():
            start = min(start, dec.lineno)
        end = getattr(node, "end_lineno", None) or node.lineno
        focus = self.focus
        if end - start < 64:
            return any(line in focus for line in range(start, end + 1))
        return any(start <= line <= end for line in focus)

    def _visit_focused(self, stmts):
        for stmt in stmts:
            cls = type(stmt)
            if cls is ast.Import or cls is ast.ImportFrom:
                self.visit(stmt)
                continue
            touches = self._touches_focus(stmt)
            if not any(getattr(stmt, f, None) for f in _STMT_LIST_FIELDS) and not getattr(stmt, "handlers", None):
                if touches:
                    self.visit(stmt)
                continue
            # A compound statement: visit its own expressions when it mentions a token, and always
            # go down its blocks (an `import torch` under `if is_torch_available():` mentions none
            # but still counts), keeping the function context that GPU105 needs.
            self.order += 1
            self.stmt_stack.append(stmt)
            saved = self.ctx
            try:
                # the statement's own handlers, as the full walk calls them (a module-level def is
                # a loader whose calls import a framework, collectors/imports.py, whatever it names)
                for fn in self._plan[cls][0]:
                    fn(stmt, self)
                if cls in (ast.FunctionDef, ast.AsyncFunctionDef):
                    if touches:
                        for dec in stmt.decorator_list:
                            self.visit(dec)
                        args = stmt.args
                        for default in list(args.defaults) + [d for d in args.kw_defaults if d is not None]:
                            self.visit(default)
                    self.ctx = id(stmt)
                elif touches:
                    # its own expressions; the blocks are walked below, focused
                    self._children(stmt, skip=_BLOCK_FIELDS)
                for field in _STMT_LIST_FIELDS:
                    children = getattr(stmt, field, None)
                    if children:
                        self._visit_focused(children)
                for handler in getattr(stmt, "handlers", ()) or ():
                    if handler.type is not None and touches:
                        self.visit(handler.type)
                    self._visit_focused(handler.body)
                for case in getattr(stmt, "cases", ()) or ():
                    self.visit(case.pattern)
                    if case.guard is not None:
                        self.visit(case.guard)
                    self._visit_focused(case.body)
            finally:
                self.ctx = saved
                self.stmt_stack.pop()


def is_cpu_guard(stmt, qualname) -> bool:
    """`if os.environ.get("CUDA_VISIBLE_DEVICES") not in ("", "-1"):`, the header form that keeps a
    caller's explicit CPU run (see gpufix.rules._shared.header_lines)."""
    if not isinstance(stmt, ast.If) or not isinstance(stmt.test, ast.Compare):
        return False
    test = stmt.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.NotIn):
        return False
    call = test.left
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "get"
            and qualname(call.func.value) == "os.environ" and call.args and const_str(call.args[0]) == MASK_VAR):
        return False
    values = test.comparators[0]
    if not isinstance(values, (ast.Tuple, ast.List, ast.Set)):
        return False
    strs = {const_str(e) for e in values.elts}
    return "" in strs and strs <= {"", "-1"}


@functools.lru_cache(maxsize=64)
def _minimal_words(words: frozenset) -> tuple:
    """The words none of which holds another: one that does adds no line ("set_device" holds
    "device"); str.find in C is much faster than one regex alternation over all the words. The
    same set comes back file after file (it depends on the file's imports): worked out once."""
    return tuple(w for w in words if w and not any(o != w and o in w for o in words))


def focus_lines(text: str, imports: dict, catalog: ApiCatalog, collectors) -> Optional[set]:
    """Lines that mention something a collector of `collectors` needs, or None when the whole file
    must be visited (see Collector.whole_file_words). Built from the collectors' declarations."""
    if any(word in text for word in collectors.whole_file_words):
        return None
    minimal = _minimal_words(collectors.focus_words(catalog, imports))
    return lines_holding(text, minimal, collectors.focus_patterns(catalog))


def lines_holding(text: str, words, patterns=()) -> set:
    """The 1-based lines of `text` (lines joined by "\n") that hold one of `words` (none holds a
    newline) or a match of one of `patterns`: found by str.find in C, not by a test of every line
    in Python."""
    hits = []
    for word in words:
        i = text.find(word)
        while i != -1:
            hits.append(i)
            i = text.find(word, i + len(word))
    for rx in patterns:
        hits.extend(m.start() for m in rx.finditer(text))
    hits.sort()
    lines, line, pos = set(), 1, 0
    for hit in hits:
        line += text.count("\n", pos, hit)
        pos = hit
        lines.add(line)
    return lines


_FOCUS_MIN_LINES = 200


def header_line(body: list) -> Optional[int]:
    """The line of the first module statement after the leading strings (docstring) and
    `from __future__` imports: where gpufix.fix.python puts the header (None: nothing there)."""
    k = 0
    while k < len(body) and isinstance(body[k], ast.Expr) and isinstance(body[k].value, ast.Constant) \
            and isinstance(body[k].value.value, (str, bytes)):
        k += 1
    while k < len(body) and isinstance(body[k], ast.ImportFrom) and body[k].module == "__future__":
        k += 1
    return body[k].lineno if k < len(body) else None


def analyze(tree: ast.Module, lines: list, catalog: ApiCatalog, collectors, text: Optional[str] = None) -> Facts:
    """The facts of a module (`collectors`: gpufix.registry.Collectors). Given its `text`, a big
    file is analysed by focused statements only (same facts: the equivalence tests compare both on
    every fixture and a generated corpus)."""
    analyzer = Analyzer(tree, lines, catalog, collectors)
    if text is None or len(lines) < _FOCUS_MIN_LINES:
        return analyzer.run()
    analyzer.collect_imports()
    if not any(catalog.framework_of_module(m) for m in _imported_modules(analyzer.statements())):
        # Scope may hinge on a device-API call anywhere (a file with no GPU import): look at all.
        return analyzer.run()
    return analyzer.run(focus_lines(text, analyzer.facts.imports, catalog, collectors))


def header_facts(tree: ast.Module, lines: list, catalog: ApiCatalog, collectors, text: str) -> Facts:
    """The facts of a HEADER-tier file (see Analyzer.run_header); the full analysis when it imports
    no GPU framework but may call a device API (scope then depends on that call)."""
    from gpufix.prefilter import may_call_device_api

    facts = Analyzer(tree, lines, catalog, collectors).run_header()
    if not facts.gpu_imports and may_call_device_api(text, catalog):
        return analyze(tree, lines, catalog, collectors)
    return facts


def source_facts(src, tree: ast.Module, lines: list, catalog: ApiCatalog, collectors, header_only: bool = False,
                 focused: bool = True) -> Facts:
    """The facts of a read source file (gpufix.source.SourceFile): the walk's (by `collectors`,
    gpufix.registry.Collectors), plus the notebook's `%env` magics, which set the environment
    without being Python."""
    if header_only:
        facts = header_facts(tree, lines, catalog, collectors, src.text)
    else:
        facts = analyze(tree, lines, catalog, collectors, text=src.text if focused else None)
    for name, value, line in src.env_magics:
        if name in ENV_VARS:
            p = Pos(line, 0, line, 0)
            facts.env_writes.append(EnvWrite(name, "magic", "str", value, None, p, p, None, True, False, "os.environ", 0, header=True))
    return facts


def _module_level(body):
    """Statements that run in the module's scope: the body and its branches, loops, `with` and
    `try` blocks, not function or class bodies."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for field in _STMT_LIST_FIELDS:
            yield from _module_level(getattr(stmt, field, None) or ())
        for handler in getattr(stmt, "handlers", None) or ():
            yield from _module_level(handler.body)


def nodes_on_lines(tree: ast.Module, lines: set, keep=None, walk=ast.walk):
    """Every node of the statements that span one of `lines` (sorted or not): a compound statement's
    own fields (test, decorators, ...) are walked, its blocks entered statement by statement, so a
    search for calls on a few lines of a big file does not walk the whole tree. `keep(stmt)`: false
    for a simple statement (one with no block) that cannot hold what the caller looks for. `walk`:
    how a statement's expressions are walked (walk_tree: ast.walk's nodes less the names,
    contexts and operators, for a caller that looks for calls)."""
    import bisect

    wanted = sorted(lines)
    if not wanted:
        return

    def spans(node) -> bool:
        first = node.lineno
        decorators = getattr(node, "decorator_list", None)
        if decorators:
            first = min(first, min(d.lineno for d in decorators))
        k = bisect.bisect_left(wanted, first)
        return k < len(wanted) and wanted[k] <= (node.end_lineno or node.lineno)

    stack = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        if hasattr(node, "lineno") and not spans(node):
            continue
        if keep is not None and type(node) in SIMPLE_STATEMENTS and not keep(node):
            continue
        blocks = []
        for _name, value in ast.iter_fields(node):
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, (ast.stmt, ast.excepthandler, ast.match_case)):
                        blocks.append(item)
                    elif isinstance(item, ast.AST):
                        yield from walk(item)
            elif isinstance(value, ast.AST):
                yield from walk(value)
        if not isinstance(node, ast.match_case):
            yield node
        stack.extend(reversed(blocks))


def _blocks_of(stmt) -> list:
    blocks = [getattr(stmt, "body", None)]
    blocks += [h.body for h in getattr(stmt, "handlers", None) or ()]
    blocks += [c.body for c in getattr(stmt, "cases", None) or ()]
    blocks += [getattr(stmt, "orelse", None), getattr(stmt, "finalbody", None)]
    return [b for b in blocks if b]


def iter_statements(body):
    """Every statement of `body` and of the blocks nested in it, in source order; expressions are
    not entered (imports are statements, so this finds them all, fast). A stack of iterators, not
    nested generators: a deep file's statements each passed up through every level was most of
    the walk."""
    stack = [iter(body)]
    simple = SIMPLE_STATEMENTS
    while stack:
        for stmt in stack[-1]:
            yield stmt
            if type(stmt) in simple:
                continue
            blocks = _blocks_of(stmt)
            if blocks:
                stack.append(iter([s for b in blocks for s in b]))
                break
        else:
            stack.pop()


def _imported_modules(statements):
    for node in statements:
        if type(node) is ast.Import:
            yield from (alias.name for alias in node.names)
        elif type(node) is ast.ImportFrom and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
