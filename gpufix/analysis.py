"""One pass over Python's `ast` that collects the facts every rule needs.

Names are resolved through the file's own imports (`import torch as T`, `from torch import cuda`,
`from numba import cuda`, `from pynvml import *`), never by matching source text. Positions are
1-based lines and 0-based *character* columns (ast gives UTF-8 byte offsets; we convert).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from typing import Optional

from gpufix.catalog import ApiCatalog

MASK_VAR = "CUDA_VISIBLE_DEVICES"
ORDER_VAR = "CUDA_DEVICE_ORDER"
ENV_VARS = (MASK_VAR, ORDER_VAR)
CUDA_STRING_RE = re.compile(r"^cuda:(\d+)$")
CUDA_ORDINAL_CALLS = ("torch.cuda.current_device", "cupy.cuda.runtime.getDevice", "numba.cuda.get_current_device")
TF_DEVICE_RE = re.compile(r"^(?P<prefix>.*?/?(?:device:)?)(?P<kind>GPU):(?P<index>\d+)$", re.I)


@dataclasses.dataclass
class Pos:
    line: int
    col: int
    end_line: int
    end_col: int


@dataclasses.dataclass
class EnvWrite:
    var: str
    method: str  # setitem | update | setdefault | putenv | magic
    value_kind: str  # str | int | other-literal | dynamic
    value: Optional[str]
    value_pos: Optional[Pos]
    pos: Pos  # the write itself (target or call)
    stmt: Pos  # the enclosing statement
    ctx: Optional[int]  # None: runs at import time; else the id of the enclosing function
    module_body: bool  # a direct child of the module body
    simple_stmt: bool  # the statement does nothing but this write
    environ_src: str  # source of the environ expression ("os.environ", "environ")
    order: int  # source order
    value_src: Optional[str] = None  # the value's source text


@dataclasses.dataclass
class GpuTrigger:
    """A GPU framework import or a call of a catalogued framework API (GPU105's 'too late')."""

    what: str
    pos: Pos
    ctx: Optional[int]
    order: int


@dataclasses.dataclass
class OrdinalUse:
    kind: str  # cuda-string | int | tf-device | list | dict-keys | nvml-index
    pos: Pos
    value: object  # int, or for lists/dicts a tuple of (int, Pos)
    api: str  # what was called ("torch.cuda.set_device", "'cuda:N' string")
    text: str = ""  # the literal as written (strings)
    string: str = ""  # the string's value (strings; `"cuda:" "1"` is "cuda:1")
    # the callee's name is both imported and defined in this file, and this call may run either
    shadowed: str = ""


@dataclasses.dataclass
class Facts:
    imports: dict = dataclasses.field(default_factory=dict)
    star_modules: list = dataclasses.field(default_factory=list)
    gpu_imports: list = dataclasses.field(default_factory=list)  # GpuTrigger
    gpu_calls: list = dataclasses.field(default_factory=list)  # GpuTrigger
    uses_device_api: bool = False
    has_main_guard: bool = False
    env_writes: list = dataclasses.field(default_factory=list)
    ordinals: list = dataclasses.field(default_factory=list)
    # module body: (line, col) of the docstring/`from __future__` prefix end, for the header
    first_stmt_line: Optional[int] = None

    @property
    def is_gpu_module(self) -> bool:
        return bool(self.gpu_imports) or self.uses_device_api


_STMT_LIST_FIELDS = ("body", "orelse", "finalbody")


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


def _literal_int(node) -> Optional[int]:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
        node = node.operand  # set_device(+1)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return None


def _const_str(node) -> Optional[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and all(isinstance(v, ast.Constant) and isinstance(v.value, str) for v in node.values):
        return "".join(v.value for v in node.values)  # an f-string without placeholders
    return None


class Analyzer(ast.NodeVisitor):
    def __init__(self, tree: ast.Module, lines: list, catalog: ApiCatalog):
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
        self.onnx_keys: dict = {}
        self.focus: set = set()
        self._imports_collected = False
        self.shadowed: dict = {}  # imported name -> line of the file's own def/class of that name
        self.ambiguous_name = ""  # set by qualname() for a call that may run the import or the def

    # -- helpers -------------------------------------------------------------------------------
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

    # -- structure -----------------------------------------------------------------------------
    def run(self, focus_lines: Optional[set] = None) -> Facts:
        """Analyse the module. With `focus_lines`, only statements whose lines include one of them
        are visited in full (imports always are): a statement that mentions none of the tokens a
        finding needs cannot produce one, and skipping it is most of the speed on big files."""
        body = self.tree.body
        if not self._imports_collected:
            self._collect_imports(body)
        self.facts.has_main_guard = any(_is_main_guard(s) for s in body)
        if focus_lines is None:
            for stmt in body:
                self.visit(stmt)
        else:
            self.focus = focus_lines
            self._visit_focused(body)
        seen = set()
        unique = []
        for use in self.facts.ordinals:
            key = (use.kind, use.pos.line, use.pos.col)
            if key not in seen:
                seen.add(key)
                unique.append(use)
        self.facts.ordinals = unique
        return self.facts

    def _touches_focus(self, node) -> bool:
        end = getattr(node, "end_lineno", None) or node.lineno
        focus = self.focus
        if end - node.lineno < 64:
            return any(line in focus for line in range(node.lineno, end + 1))
        return any(node.lineno <= line <= end for line in focus)

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
                if cls in (ast.FunctionDef, ast.AsyncFunctionDef):
                    if touches:
                        for dec in stmt.decorator_list:
                            self.visit(dec)
                        args = stmt.args
                        for default in list(args.defaults) + [d for d in args.kw_defaults if d is not None]:
                            self.visit(default)
                    self.ctx = id(stmt)
                elif touches:
                    for field, value in ast.iter_fields(stmt):
                        if field in _STMT_LIST_FIELDS or field in ("handlers", "cases"):
                            continue
                        if isinstance(value, list):
                            for item in value:
                                if isinstance(item, ast.AST):
                                    self.visit(item)
                        elif isinstance(value, ast.AST):
                            self.visit(value)
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

    def _collect_imports(self, body):
        # Imports bind names wherever they are; collect first so that order of use does not matter.
        # Walked from the end of the file, so that of two bindings of one name the first one wins.
        self._imports_collected = True
        for node in reversed(list(iter_statements(body))):
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
        # of that name are the user's code, not the framework's.
        # Module-level code before the `def` still calls the import.
        for node in _module_level(body):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in self.facts.imports:
                self.shadowed[node.name] = min(node.lineno, self.shadowed.get(node.name, node.lineno))
        # A dict that reaches `map_location` through a name: its keys name where a checkpoint was
        # saved, like the keys of a dict written in the call.
        if any("map_location" in line for line in self.lines):
            names = set()
            for node in ast.walk(self.tree):
                if isinstance(node, ast.Call):
                    for kw in node.keywords:
                        if kw.arg == "map_location" and isinstance(kw.value, ast.Name):
                            names.add(kw.value.id)
                    if len(node.args) > 1 and isinstance(node.args[1], ast.Name) and self.qualname(node.func) in ("torch.load", "torch.serialization.load"):
                        names.add(node.args[1].id)
            if names:
                for node in ast.walk(self.tree):
                    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict) and any(
                        isinstance(t, ast.Name) and t.id in names for t in node.targets
                    ):
                        self.map_location_dicts.add(id(node.value))

    def run_header(self) -> Facts:
        """Only what the header rules need: GPU framework imports and the `__main__` guard (for a
        file whose text holds no ordinal and no mask variable: the prefilter's HEADER tier)."""
        self.facts.has_main_guard = any(_is_main_guard(s) for s in self.tree.body)
        for node in iter_statements(self.tree.body):
            if type(node) is ast.Import:
                self.visit_Import(node)
            elif type(node) is ast.ImportFrom:
                self.visit_ImportFrom(node)
        return self.facts

    def visit(self, node):
        if isinstance(node, ast.stmt):
            self.order += 1
            self.stmt_stack.append(node)
            try:
                return super().visit(node)
            finally:
                self.stmt_stack.pop()
        return super().visit(node)

    def _visit_function(self, node):
        saved = self.ctx
        self.ctx = id(node)
        for dec in getattr(node, "decorator_list", []):
            self.visit(dec)
        args = node.args
        for default in list(args.defaults) + [d for d in args.kw_defaults if d is not None]:
            # Defaults are evaluated when the def runs, but 'cuda:N' defaults are still ordinals.
            self.visit(default)
        for stmt in node.body:
            self.visit(stmt)
        self.ctx = saved

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_Lambda(self, node):
        saved = self.ctx
        self.ctx = id(node)
        self.generic_visit(node)
        self.ctx = saved

    def visit_Import(self, node):
        for alias in node.names:
            if self.catalog.framework_of_module(alias.name):
                self._gpu_import(node, alias.name)
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        if node.module and not node.level:
            if self.catalog.framework_of_module(node.module):
                self._gpu_import(node, node.module)
            else:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if self.catalog.framework_of_module(full):
                        self._gpu_import(node, full)
                        break
        self.generic_visit(node)

    def _gpu_import(self, node, module):
        self.order += 1
        self.facts.gpu_imports.append(GpuTrigger(f"import of {module}", self.pos(node), self.ctx, self.order))

    # -- env writes ----------------------------------------------------------------------------
    def _is_environ(self, node) -> bool:
        return self.qualname(node) == "os.environ"

    def _env_write(self, var, method, value_node, node, value_str=None):
        stmt = self.stmt_stack[-1] if self.stmt_stack else node
        if value_node is None:
            kind, value, vpos = "str", value_str, None
        else:
            s = _const_str(value_node)
            if s is not None:
                kind, value = "str", s
            elif _literal_int(value_node) is not None or (
                isinstance(value_node, ast.UnaryOp) and isinstance(value_node.op, ast.USub) and _literal_int(value_node.operand) is not None
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
        elif method in ("update", "setdefault") and isinstance(node, ast.Call):
            environ_src = self.src(node.func.value)
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
            )
        )

    def _assign_targets(self, targets, value):
        for target in targets:
            if isinstance(target, ast.Subscript) and self._is_environ(target.value):
                key = _const_str(target.slice)
                if key in ENV_VARS:
                    self._env_write(key, "setitem", value, target)

    def visit_Assign(self, node):
        self._assign_targets(node.targets, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self._assign_targets([node.target], node.value)
        self.generic_visit(node)

    # -- calls -----------------------------------------------------------------------------------
    def visit_Call(self, node):
        func = node.func
        self.ambiguous_name = ""
        qual = self.qualname(func)
        shadowed = self.ambiguous_name
        last = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        # Environment writes through calls.
        if isinstance(func, ast.Attribute) and func.attr in ("update", "setdefault") and self._is_environ(func.value):
            self._env_call(node, func.attr)
        elif qual == "os.putenv" and node.args:
            key = _const_str(node.args[0])
            if key in ENV_VARS:
                self._env_write(key, "putenv", node.args[1] if len(node.args) > 1 else None, node)
        # map_location dict keys name where a checkpoint was saved, not a device to use.
        for kw in node.keywords:
            if kw.arg == "map_location" and isinstance(kw.value, ast.Dict):
                self.map_location_dicts.add(id(kw.value))
        if qual in ("torch.load", "torch.serialization.load") and len(node.args) > 1 and isinstance(node.args[1], ast.Dict):
            self.map_location_dicts.add(id(node.args[1]))
        # Catalogued device APIs.
        matches = self.catalog.lookup(qual, last, isinstance(func, ast.Attribute))
        if matches:
            before = len(self.facts.ordinals)
            self._device_call(node, qual, last, matches)
            if shadowed:
                for use in self.facts.ordinals[before:]:
                    use.shadowed = shadowed
        if qual:
            root = qual.split(".")[0]
            if self.catalog.framework_of_module(qual.rsplit(".", 1)[0]) or self.catalog.framework_of_module(root):
                self.order += 1
                self.facts.gpu_calls.append(GpuTrigger(f"call of {qual}", self.pos(node), self.ctx, self.order))
        self.generic_visit(node)

    def _env_call(self, node, method):
        if method == "update":
            for arg in node.args[:1]:
                if isinstance(arg, ast.Dict):
                    for k, v in zip(arg.keys, arg.values):
                        key = _const_str(k) if k is not None else None
                        if key in ENV_VARS:
                            self._env_write(key, "update", v, node)
            for kw in node.keywords:
                if kw.arg in ENV_VARS:
                    self._env_write(kw.arg, "update", kw.value, node)
        else:
            if node.args:
                key = _const_str(node.args[0])
                if key in ENV_VARS:
                    self._env_write(key, "setdefault", node.args[1] if len(node.args) > 1 else None, node)

    def _device_call(self, node, qual, last, matches):
        name = qual or (last or "?")
        for api in matches:
            shown = f".{last}" if api.kind == "method" else name  # `x.cuda(1)` reads as .cuda()
            if api.name != "*" and api.kind != "method" and api.framework != "nvml":
                self.facts.uses_device_api = True
            for spec in api.args:
                arg = None
                if spec.keyword is not None:
                    for kw in node.keywords:
                        if kw.arg == spec.keyword:
                            arg = kw.value
                if arg is None and spec.position is not None and spec.position < len(node.args):
                    if not any(isinstance(a, ast.Starred) for a in node.args[: spec.position + 1]):
                        arg = node.args[spec.position]
                if arg is None:
                    continue
                if spec.when_position is not None or spec.when_keyword is not None:
                    guard = None
                    if spec.when_position is not None and spec.when_position < len(node.args):
                        guard = node.args[spec.when_position]
                    if guard is None and spec.when_keyword is not None:
                        guard = next((kw.value for kw in node.keywords if kw.arg == spec.when_keyword), None)
                    if guard is None or _const_str(guard) != spec.when_equals:
                        continue
                self._record_ordinal(spec.value, arg, api.name if api.name != "*" else name, shown)

    def _record_ordinal(self, value_kind, arg, api_name, called):
        if value_kind == "nvml-index" and isinstance(arg, ast.Call) and self.qualname(arg.func) in CUDA_ORDINAL_CALLS:
            # nvmlDeviceGetHandleByIndex(torch.cuda.current_device()): a CUDA ordinal fed to NVML.
            self.facts.ordinals.append(OrdinalUse("nvml-cuda-ordinal", self.pos(arg), None, called, text=self.src(arg)))
            return
        if value_kind in ("ordinal", "nvml-index"):
            i = _literal_int(arg)
            if i is not None:
                self.facts.ordinals.append(
                    OrdinalUse("int" if value_kind == "ordinal" else "nvml-index", self.pos(arg), i, called)
                )
            elif isinstance(arg, (ast.List, ast.Tuple)) and value_kind == "ordinal":
                self._record_list(arg, called)
        elif value_kind == "ordinal-list":
            if isinstance(arg, (ast.List, ast.Tuple)):
                self._record_list(arg, called)
        elif value_kind == "ordinal-dict-values":
            i = _literal_int(arg)
            if i is not None:
                self.facts.ordinals.append(OrdinalUse("int", self.pos(arg), i, called))
            elif isinstance(arg, ast.Dict):
                for v in arg.values:
                    j = _literal_int(v)
                    if j is not None:
                        self.facts.ordinals.append(OrdinalUse("int", self.pos(v), j, called))
        elif value_kind == "ordinal-dict-keys":
            if isinstance(arg, ast.Dict):
                items = tuple((_literal_int(k), self.pos(k)) for k in arg.keys if k is not None and _literal_int(k) is not None)
                if items:
                    self.facts.ordinals.append(OrdinalUse("dict-keys", self.pos(arg), items, called))
        elif value_kind == "tf-device":
            s = _const_str(arg)
            if s is not None:
                m = TF_DEVICE_RE.match(s)
                if m:
                    self.facts.ordinals.append(
                        OrdinalUse("tf-device", self.pos(arg), int(m.group("index")), called, text=self.src(arg), string=s)
                    )

    def _record_list(self, arg, called):
        items = tuple((_literal_int(e), self.pos(e)) for e in arg.elts if _literal_int(e) is not None)
        if items and len(items) == len(arg.elts):
            self.facts.ordinals.append(OrdinalUse("list", self.pos(arg), items, called))

    # -- literals ------------------------------------------------------------------------------
    def visit_Dict(self, node):
        if id(node) in self.map_location_dicts:
            for k in node.keys:
                if k is not None:
                    self.skip_strings.add(id(k))
        for k, v in zip(node.keys, node.values):
            key = _const_str(k) if k is not None else None
            if key and key in self.catalog.dict_keys:
                modules = self.catalog.dict_keys[key]
                if any(self.catalog.framework_of_module(m) and _imports_module(self.facts, m) for m in modules):
                    i = _literal_int(v)
                    if i is not None:
                        self.facts.ordinals.append(OrdinalUse("int", self.pos(v), i, f"{{'{key}': ...}}"))
        self.generic_visit(node)

    def visit_JoinedStr(self, node):
        # f-string parts are not string literals of their own; an f-string without placeholders
        # (`f"cuda:1"`) is one.
        value = _const_str(node)
        if value is not None and id(node) not in self.skip_strings:
            self._cuda_string(node, value)

    def visit_Constant(self, node):
        if isinstance(node.value, str) and id(node) not in self.skip_strings:
            self._cuda_string(node, node.value)

    def _cuda_string(self, node, value):
        m = CUDA_STRING_RE.match(value)
        if m:
            self.facts.ordinals.append(
                OrdinalUse("cuda-string", self.pos(node), int(m.group(1)), "'cuda:N' string", text=self.src(node), string=value)
            )


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


def _imports_module(facts: Facts, module: str) -> bool:
    return any(q == module or q.startswith(module + ".") for q in facts.imports.values()) or module in facts.star_modules


def _is_main_guard(stmt) -> bool:
    if not isinstance(stmt, ast.If) or not isinstance(stmt.test, ast.Compare):
        return False
    test = stmt.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    strs = [s for s in sides if _const_str(s) == "__main__"]
    return bool(names and strs)


def focus_lines(text: str, imports: dict, catalog: ApiCatalog) -> Optional[set]:
    """Lines that mention something a finding needs, or None when the whole file must be visited
    (it writes the mask: GPU105 needs every framework call before the write)."""
    if "VISIBLE_DEVICES" in text or "DEVICE_ORDER" in text:
        return None
    words = set(_FOCUS_WORDS) | set(catalog.focus_words)
    for local, target in imports.items():
        # `from torch.cuda import set_device as pick`: calls of `pick` hold no catalogued name.
        if target in ("os.environ", "os.putenv") or any(
            api.name != "*" for api in catalog.lookup(target, target.rsplit(".", 1)[-1], False)
        ):
            words.add(local)
    # A word that contains another adds nothing ("set_device" holds "device"); str.find in C is
    # much faster than one regex alternation over all the words.
    minimal = [w for w in words if not any(o != w and o in w for o in words)]
    hits = []
    for word in minimal:
        i = text.find(word)
        while i != -1:
            hits.append(i)
            i = text.find(word, i + len(word))
    hits.extend(m.start() for m in catalog.method_call_re.finditer(text))
    hits.sort()
    lines = set()
    line, pos = 1, 0
    for hit in hits:
        line += text.count("\n", pos, hit)
        pos = hit
        lines.add(line)
    return lines


# Substrings one of which every finding's statement holds: 'cuda:N' strings, tf '/GPU:N', device
# keywords and calls, environ writes, NVML calls (the catalogue adds its API names and keywords).
_FOCUS_WORDS = ("cuda", "CUDA", "GPU", "gpu", "device", "Device", "DEVICE", "environ", "putenv", "nvml")
_FOCUS_MIN_LINES = 200


def analyze(tree: ast.Module, lines: list, catalog: ApiCatalog, text: Optional[str] = None) -> Facts:
    """The facts of a module. Given its `text`, a big file is analysed by focused statements only
    (same facts: the equivalence tests compare both on every fixture and a generated corpus)."""
    analyzer = Analyzer(tree, lines, catalog)
    if text is None or len(lines) < _FOCUS_MIN_LINES:
        return analyzer.run()
    analyzer._collect_imports(tree.body)
    if not any(catalog.framework_of_module(m) for m in _imported_modules(tree.body)):
        # Scope may hinge on a device-API call anywhere (a file with no GPU import): look at all.
        return analyzer.run()
    return analyzer.run(focus_lines(text, analyzer.facts.imports, catalog))


def header_facts(tree: ast.Module, lines: list, catalog: ApiCatalog, text: str) -> Facts:
    """The facts of a HEADER-tier file (see Analyzer.run_header); the full analysis when it imports
    no GPU framework but may call a device API (scope then depends on that call)."""
    from gpufix.prefilter import may_call_device_api

    facts = Analyzer(tree, lines, catalog).run_header()
    if not facts.gpu_imports and may_call_device_api(text, catalog):
        return analyze(tree, lines, catalog)
    return facts


def iter_statements(body):
    """Every statement of `body` and of the blocks nested in it, in source order; expressions are
    not entered (imports are statements, so this finds them all, fast)."""
    for stmt in body:
        yield stmt
        blocks = [getattr(stmt, "body", None)]
        blocks += [h.body for h in getattr(stmt, "handlers", None) or ()]
        blocks += [c.body for c in getattr(stmt, "cases", None) or ()]
        blocks += [getattr(stmt, "orelse", None), getattr(stmt, "finalbody", None)]
        for block in blocks:
            if block:
                yield from iter_statements(block)


def _imported_modules(body):
    for node in iter_statements(body):
        if type(node) is ast.Import:
            yield from (alias.name for alias in node.names)
        elif type(node) is ast.ImportFrom and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
