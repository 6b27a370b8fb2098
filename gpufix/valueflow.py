"""Value flow inside one file: the literal behind a name that reaches a device argument.

The analysis (gpufix.analysis) records every device argument that is a name rather than a literal
(a *sink*: `set_device(GPU)`, `nvmlDeviceGetHandleByIndex(args.device_index)`, `f"cuda:{gpu}"`,
`Trainer(devices=DEVICES)`, `gpus[idx]`). This module finds the literals that can reach it:

* a name bound by a simple assignment in the module or in an enclosing function (`GPU = 1`),
* a parameter's default (`def run(gpu=1)`),
* an attribute named after an argparse option (`add_argument("--gpu", default=1)` read as
  `args.gpu`) or after a dataclass / NamedTuple field with a default (`gpu_id: int = 1` read as
  `cfg.gpu_id`),

following names through names up to a few links (`idx = args.device_index`). Each literal becomes
an OrdinalUse at the literal, with `via` naming the use. The literal is rewritable only when the
flow is unambiguous: every link has one definition, is never assigned again, and every read of it
is a device use (else `fix_blocked` says why, and the finding is reported without a fix).

Deliberately not followed (reported by nothing): values through function returns, containers
(`GPUS[0]`, `cfg["gpu"]`), other modules (`from config import GPU`), `self.gpu = 1` attributes,
arithmetic (`GPU + 1`), call arguments passed explicitly (`run(gpu=2)`), `os.environ` reads, and
configuration files read at run time.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
from typing import Optional

from gpufix.astkinds import SIMPLE_STATEMENTS, node_classes

_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
# Node types without fields (expression contexts, operators; `pass`, `break`, `continue`).
_LEAVES = frozenset(
    cls for base in (ast.expr_context, ast.operator, ast.unaryop, ast.boolop, ast.cmpop, ast.stmt)
    for cls in base.__subclasses__() if not cls._fields
)
_MAX_LINKS = 4


@dataclasses.dataclass
class Sink:
    kind: str  # the catalogue's value kind the argument holds ("ordinal", "nvml-index", ...)
    node: ast.AST  # the name/attribute expression at the device argument
    called: str  # what was called, as messages show it ("torch.cuda.set_device", ".cuda")
    line: int


@dataclasses.dataclass
class Definition:
    """One binding of a name: `value` is the bound expression (None: bound some other way)."""

    value: Optional[ast.AST]
    label: str  # how messages name it: "GPU", "args.gpu", "cfg.gpu_id", "gpu (default of run())"
    key: tuple  # which reads belong to it
    blocked: Optional[str] = None  # why its literal must not be rewritten, whatever reads it


@dataclasses.dataclass
class Reached:
    literal: ast.AST
    via: str
    blocked: Optional[str]


def literal_value(node):
    """An int (not bool), str, or list/tuple of ints written as a literal; else None."""
    if isinstance(node, ast.Constant) and (type(node.value) is int or isinstance(node.value, str)):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts and all(
        isinstance(e, ast.Constant) and type(e.value) is int for e in node.elts
    ):
        return [e.value for e in node.elts]
    return None


def _unpacked(target, name, stmt):
    """The element bound to `name` by `a, name = 0, 1` (an assignment of a tuple/list display of
    the same length, no starred item on either side), or None."""
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and stmt.targets[0] is target):
        return None
    value = stmt.value
    if not isinstance(value, (ast.Tuple, ast.List)) or len(value.elts) != len(target.elts):
        return None
    if any(isinstance(e, ast.Starred) for e in value.elts + target.elts):
        return None
    return value.elts[next(i for i, e in enumerate(target.elts) if e is name)]


_STATEMENTS = frozenset(cls for cls in node_classes() if issubclass(cls, ast.stmt))
# Fields whose values are expression contexts / operators only (ast's grammar), all in _LEAVES:
# nothing to index under them.
_LEAF_FIELDS = frozenset(("ctx", "op", "ops"))
# Node class -> the fields that may hold a child node, in field order (what ast.iter_child_nodes
# reads, less the leaf fields).
_CHILD_FIELDS = {cls: tuple(f for f in cls._fields if f not in _LEAF_FIELDS) for cls in node_classes()}
# The node classes the index goes down into: not the leaves, and not the nodes that hold no other
# node and bind or read nothing (constants, the aliases an import statement reads itself).
_INDEXED = frozenset(cls for cls in _CHILD_FIELDS if cls not in _LEAVES and cls not in (ast.Constant, ast.alias, ast.AST))


class _Index:
    """Bindings and reads of the whole module, built once per file (only when a sink needs it)."""

    def __init__(self, tree: ast.Module, lines: Optional[list] = None):
        # `lines`: sorted line numbers; a statement (with its decorators) that spans none of them
        # is left out (None: every statement is indexed). See Flow._restricted_index.
        self._lines = lines
        self.scope_names: dict = {}  # id(function) -> {name: [Definition]}
        self.module_names: dict = {}  # name -> [Definition]
        self.attr_defs: dict = {}  # attribute name -> [Definition] (argparse dests, fields)
        self.attr_stores: dict = {}  # attribute name -> count of `x.attr = ...` / `attr=` keywords
        self.name_reads: dict = {}  # (scope id or None, name) -> [node]
        self.attr_reads: dict = {}  # attribute name -> [node]
        self.positional_class_calls: set = set()  # classes constructed with positional arguments
        self.field_classes: dict = {}  # field name -> class name
        self.globals_in_functions: set = set()
        # The scope of every name node (the innermost function whose body holds it; None: the
        # module), and of every function the scope its `def` is in: a read's scopes, innermost
        # first, without a parent map of every node of the tree.
        self.name_scope: dict = {}  # id(Name) -> function or None
        self.outer_scope: dict = {}  # id(function) -> function or None
        self._chains: dict = {}
        self._walk(tree)

    # -- scopes --------------------------------------------------------------------------------
    def scopes(self, node) -> list:
        """The functions whose scope a read at `node` looks in, innermost first (class bodies and
        a function's own defaults/decorators are not its scope)."""
        if type(node) is not ast.Name:
            return []  # (only names are looked up by scope)
        scope = self.name_scope.get(id(node))
        if scope is None:
            return []
        chain = self._chains.get(id(scope))
        if chain is None:
            chain, cur = [], scope
            while cur is not None:
                chain.append(cur)
                cur = self.outer_scope[id(cur)]
            self._chains[id(scope)] = chain
        return chain

    def _names_of(self, scope) -> dict:
        return self.module_names if scope is None else self.scope_names.setdefault(id(scope), {})

    def _add(self, scope, name, value, label=None, blocked=None):
        self._names_of(scope).setdefault(name, []).append(
            Definition(value, label or name, ("name", id(scope) if scope else None, name), blocked))

    def _walk(self, tree):
        """One pass: bindings per scope (a function's defaults, decorators and annotations belong
        to the enclosing scope, its body to its own; class bodies bind class attributes), reads.
        Nodes are visited in the order of a stack of ast.iter_child_nodes (last child first), each
        with its parent and grandparent (what a name's binding is read from)."""
        name_reads, attr_reads, attr_stores = self.name_reads, self.attr_reads, self.attr_stores
        name_scope, fields_of, indexed = self.name_scope, _CHILD_FIELDS, _INDEXED
        Name, Attribute, Load, Call = ast.Name, ast.Attribute, ast.Load, ast.Call
        funcs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
        stack = [(tree, None, False, None, None)]
        pop, push = stack.pop, stack.append
        wanted, statements = self._lines, _STATEMENTS
        off = None
        if wanted is not None:
            import bisect

            bisect_left, n_wanted, simple = bisect.bisect_left, len(wanted), SIMPLE_STATEMENTS

            def off(stmt) -> bool:
                """Whether `stmt` spans none of the wanted lines: names none of the words
                (Flow._restricted_index)."""
                first = stmt.lineno
                if type(stmt) not in simple and getattr(stmt, "decorator_list", None):
                    first = min(first, *(d.lineno for d in stmt.decorator_list))  # (above the `def`)
                k = bisect_left(wanted, first)
                return k == n_wanted or wanted[k] > (stmt.end_lineno or stmt.lineno)
        while stack:
            node, scope, in_class, par, grand = pop()
            cls = type(node)
            if cls is Name:
                name_scope[id(node)] = scope
                if type(node.ctx) is Load:
                    name_reads.setdefault(node.id, []).append(node)
                elif not in_class:  # a class body binds class attributes (fields: _class_fields)
                    value = None
                    if type(par) is ast.Assign and len(par.targets) == 1 and par.targets[0] is node:
                        value = par.value
                    elif isinstance(par, ast.NamedExpr) and par.target is node:
                        # `(gpu := 1)`: where the expression's own value is used too (`if (gpu := 1):`),
                        # rewriting the literal would change that use
                        if not isinstance(grand, ast.Expr):
                            self._add(scope, node.id, par.value, blocked=f"the value of `{node.id} := ...` is also used where it is assigned")
                            continue
                        value = par.value
                    elif isinstance(par, (ast.Tuple, ast.List)):
                        value = _unpacked(par, node, grand)  # `a, gpu = 0, 1`
                    elif isinstance(par, ast.AnnAssign) and par.target is node:
                        value = par.value
                        if value is None:
                            continue  # `x: int` binds nothing
                    self._add(scope, node.id, value)
                continue
            if cls in funcs:
                a = node.args
                if cls is not ast.Lambda and not in_class:
                    self._add(scope, node.name, None)
                self.outer_scope[id(node)] = scope
                positional = a.posonlyargs + a.args
                defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
                fname = getattr(node, "name", "lambda")
                for arg, default in list(zip(positional, defaults)) + list(zip(a.kwonlyargs, a.kw_defaults)):
                    self._add(node, arg.arg, default, f"{fname}()'s default for {arg.arg}")
                for arg in (a.vararg, a.kwarg):
                    if arg is not None:
                        self._add(node, arg.arg, None, f"*{arg.arg}")
                body = {id(b) for b in node.body} if type(node.body) is list else {id(node.body)}
                for child in ast.iter_child_nodes(node):
                    if off is not None and type(child) in statements and off(child):
                        continue
                    if id(child) in body:
                        push((child, node, False, node, par))
                    else:
                        push((child, scope, in_class, node, par))
                continue
            if cls is ast.ClassDef:
                if not in_class:
                    self._add(scope, node.name, None)
                self._class_fields(node)
                body = {id(b) for b in node.body}
                for child in ast.iter_child_nodes(node):
                    if off is not None and type(child) in statements and off(child):
                        continue
                    push((child, scope, id(child) in body, node, par))
                continue
            if cls is Attribute:
                if type(node.ctx) is Load:
                    attr_reads.setdefault(node.attr, []).append(node)
                else:
                    attr_stores[node.attr] = attr_stores.get(node.attr, 0) + 1
            elif cls is Call:
                self._call(node)
            elif cls is ast.Import or cls is ast.ImportFrom:
                for alias in node.names:
                    if alias.name != "*":
                        self._add(scope, (alias.asname or alias.name).split(".")[0], None)
            elif cls is ast.ExceptHandler and node.name:
                self._add(scope, node.name, None)
            elif cls is ast.Global or cls is ast.Nonlocal:
                self.globals_in_functions.update(node.names)
            for field in fields_of[cls]:
                value = getattr(node, field, None)
                if type(value) is list:
                    for item in value:
                        if type(item) in indexed:
                            if off is not None and type(item) in statements and off(item):
                                continue
                            push((item, scope, in_class, node, par))
                elif type(value) in indexed:
                    push((value, scope, in_class, node, par))
        # `global X` in a function: its assignments bind the module's X.
        for names in self.scope_names.values():
            for name in self.globals_in_functions & set(names):
                stores = [d for d in names[name] if d.label == name]
                if stores:
                    names[name] = [d for d in names[name] if d.label != name]
                    self.module_names.setdefault(name, []).extend(
                        Definition(d.value, d.label, ("name", None, name)) for d in stores)
                    if not names[name]:
                        del names[name]

    def _class_fields(self, node: ast.ClassDef):
        def name_of(e):
            return e.attr if isinstance(e, ast.Attribute) else e.id if isinstance(e, ast.Name) else None

        decorated = any(name_of(d.func if isinstance(d, ast.Call) else d) == "dataclass" for d in node.decorator_list)
        named_tuple = any(name_of(b) == "NamedTuple" for b in node.bases)
        if not (decorated or named_tuple):
            return
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
                value = stmt.value
                if isinstance(value, ast.Call) and name_of(value.func) == "field":
                    value = next((k.value for k in value.keywords if k.arg == "default"), None)
                    if value is None:
                        continue
                name = stmt.target.id
                self.attr_defs.setdefault(name, []).append(Definition(value, f"{node.name}.{name}", ("attr", name)))
                self.field_classes[name] = node.name

    def _call(self, node: ast.Call):
        func = node.func
        last = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if last == "add_argument":
            flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            dest = next((k.value.value for k in node.keywords if k.arg == "dest" and isinstance(k.value, ast.Constant)), None)
            if dest is None and flags:
                longs = [f for f in flags if f.startswith("--")]
                dest = (longs[0] if longs else flags[0]).lstrip("-").replace("-", "_")
            default = next((k.value for k in node.keywords if k.arg == "default"), None)
            if isinstance(dest, str) and default is not None:
                option = next((f for f in flags if f.startswith("--")), flags[0] if flags else dest)
                self.attr_defs.setdefault(dest, []).append(Definition(default, f"option {option}", ("attr", dest)))
            return
        for k in node.keywords:
            if k.arg:
                # `Config(gpu_id=2)`, `parser.set_defaults(gpu=2)`: another value for a field/option.
                self.attr_stores[k.arg] = self.attr_stores.get(k.arg, 0) + 1
        if last and node.args:
            self.positional_class_calls.add(last)

    # -- resolution ----------------------------------------------------------------------------
    def definitions(self, expr) -> tuple:
        """(definitions, label, reads of the same binding) for a name or attribute read."""
        if isinstance(expr, ast.Name):
            for scope in self.scopes(expr):
                names = self.scope_names.get(id(scope), {})
                if expr.id in names:
                    return names[expr.id], [n for n in self.name_reads.get(expr.id, ()) if self._binding_scope(n) is scope]
            defs = self.module_names.get(expr.id)
            if defs:
                return defs, [n for n in self.name_reads.get(expr.id, ()) if self._binding_scope(n) is None]
            return [], []
        if isinstance(expr, ast.Attribute):
            defs = self.attr_defs.get(expr.attr, [])
            return defs, list(self.attr_reads.get(expr.attr, ()))
        return [], []

    def _binding_scope(self, read):
        for scope in self.scopes(read):
            if read.id in self.scope_names.get(id(scope), {}):
                return scope
        return None

    def blocked(self, expr, defs, reads, device_ids) -> Optional[str]:
        name = expr.id if isinstance(expr, ast.Name) else expr.attr
        if len(defs) != 1:
            return f"{name} is assigned more than once"
        if defs[0].blocked:
            return defs[0].blocked
        if isinstance(expr, ast.Name) and expr.id in self.globals_in_functions:
            return f"{name} is assigned through a `global` statement"
        if isinstance(expr, ast.Attribute):
            attr = expr.attr
            if self.attr_stores.get(attr):
                return f"{attr} is also set elsewhere in the file"
            cls = self.field_classes.get(attr)
            if cls and cls in self.positional_class_calls:
                return f"{cls} is also constructed with positional arguments"
        others = sorted((r for r in reads if id(r) not in device_ids), key=lambda r: (r.lineno, r.col_offset))
        if others:
            return f"{name} is also used on line {others[0].lineno} as something other than a device"
        return None


# What a definition that _Index can follow looks like in the text: `name = <literal or name>`
# (assignments, defaults), `name: T = ...` (fields), an argparse option named after the attribute.
_LITERAL_START = r"""(?:\(\s*)*(?:\d|\[\s*\d|[rRuU]?['"](?:\s*\d|[^'"\n]*[Pp][Uu]:\d))"""
# `= <literal>` or `= <dotted name>` (a link to follow) after the name, on the same line.
_BINDING_TAIL = (
    rf"[ \t]*(?::[^=,(\n]*)?=(?!=)[ \t]*(?:(?P<lit>{_LITERAL_START})"
    r"|(?P<link>(?!(?:None|True|False)\b)[A-Za-z_][\w.]*)[ \t]*(?:$|[;#,)\]]))"
)


# The text gate looks for a name followed by a tail (`= 1`, `: int = 1`; an unpack's targets are
# read by _unpack_bindings): the regex
# `NAME(?<![\w.]NAME)TAIL`, the name not after a word character or a dot. Its lookbehind follows the
# name so that the name is the regex's literal prefix, found by the engine's fast search (a
# lookbehind in front would make it try the regex at every position of the text: two thirds of the
# gate's time on torch's files). The same names (`device`, `default`) come back file after file but
# most are new (156 distinct of 316 on torch-801), and a compile costs more than the search it
# serves (0.3-0.4 ms): a name that occurs a few times is matched without compiling anything (the
# tail, compiled once, matched after each occurrence); only a name that occurs often gets its own
# regex, compiled once per process (bounded cache). Both give the matches `re.finditer(NAME(?<![\w.]
# NAME)TAIL, text, re.M)` gives (tests/unit/test_valueflow_gate.py checks it).
_TAIL_RX = {
    "binding": re.compile(_BINDING_TAIL, re.M),
    # a dataclass / NamedTuple field: `name: T = <literal, field(...) or name>`
    "field": re.compile(
        rf"[ \t]*:[^=\n]*=(?!=)[ \t]*(?:(?P<lit>{_LITERAL_START})|[\w.]*field\(|"
        r"(?P<link>(?!(?:None|True|False)\b)[A-Za-z_][\w.]*)[ \t]*(?:$|[;#]))", re.M),
}
_WORD_OR_DOT = re.compile(r"[\w.]")
_FEW = 24  # up to this many occurrences, a loop in Python is cheaper than compiling a regex


@functools.lru_cache(maxsize=4096)
def _name_rx(name: str, tail: str):
    from gpufix import rxcache

    esc = re.escape(name)
    return rxcache.compile(rf"{esc}(?<![\w.]{esc})" + _TAIL_RX[tail].pattern, re.M)


def _name_then(text: str, name: str, tail: str, start: int = 0):
    """The matches of the name followed by `_TAIL_RX[tail]`, in order, as `finditer` finds them
    (each search resumes at the previous match's end); the groups are the tail's. Past `_FEW`
    occurrences the rest is left to the name's own regex from the next occurrence on (its search
    from there finds the leftmost match the loop would have found; its lookbehind still sees the
    character before that position): no count of the occurrences first, which read the whole text
    for every name. `start`: where the first search begins."""
    tail_rx, n, find, word = _TAIL_RX[tail], len(name), text.find, _WORD_OR_DOT.match
    i = find(name, start)
    left = _FEW
    while i >= 0:
        if not left:
            yield from _name_rx(name, tail).finditer(text, i)
            return
        left -= 1
        if i == 0 or word(text, i - 1) is None:
            m = tail_rx.match(text, i + n)
            if m is not None:
                yield m
                i = find(name, m.end())
                continue
        i = find(name, i + 1)


@functools.lru_cache(maxsize=4096)
def _option_rx(name: str):
    """An argparse option whose dest is `name`: `"--gpu-id"`, `"gpu_id"`, `dest="gpu_id"` (looked
    for only in files that call `add_argument`; compiled once per name)."""
    dashed = "[-_]".join(re.escape(p) for p in name.split("_"))
    return re.compile(rf"""['"]-{{0,2}}{dashed}['"]|dest\s*=\s*['"]{re.escape(name)}['"]""")


def _may_name_option(text: str, name: str) -> bool:
    """Whether `_option_rx(name)` may match in `text`: each of its matches ends with the name's last
    `_` part and a closing quote. Two substring searches spare the regex, whose search tries every
    quote of the text (a tenth of the prefilter's time on diffusers' training scripts)."""
    last = name.rpartition("_")[2]
    return last + '"' in text or last + "'" in text


class _TextGate:
    """A cheap text test (a superset of what _Index resolves) that spares building the index in the
    many files whose device arguments are names bound only to calls (`device = torch.device(...)`)."""

    def __init__(self, text: str):
        self.text = text
        self.memo: dict = {}
        self.bindings: dict = {}

    def _bindings(self, name: str) -> tuple:
        """(bound to a literal somewhere, the dotted names it is bound to)."""
        if name not in self.bindings:
            lit, links = False, set()
            if name in self.text:
                for m in _name_then(self.text, name, "binding"):
                    if m.group("lit") is not None:
                        lit = True
                        break
                    links.add(m.group("link"))
                if not lit and "," in self.text:
                    # one of several targets: `name, b = 1, 2`, `b, name = f(x), 1`, `name, b = x, y`
                    lit, more = _unpack_bindings(self.text, name)
                    links |= more
            self.bindings[name] = (lit, links)
        return self.bindings[name]

    def may_resolve(self, node, depth: int = 0) -> bool:
        if isinstance(node, ast.Name):
            key = ("name", node.id)
        elif isinstance(node, ast.Attribute):
            key = ("attr", node.attr)
        else:
            return False
        if "dtype" in key[1]:
            return False  # `.to(dtype)`, `.to(x.dtype)`: a dtype, never a device
        if key not in self.memo:
            self.memo[key] = False  # a cycle of links resolves to nothing
            self.memo[key] = self._check(*key, depth)
        return self.memo[key]

    def _check(self, kind, name, depth) -> bool:
        if depth >= _MAX_LINKS or name in ("None", "True", "False"):
            return False
        if kind == "name":
            lit, links = self._bindings(name)  # `N = 1`, `def f(N=1)`, `N = other.name`
            return lit or any(self.may_resolve(name_node(link), depth + 1) for link in links)
        # An attribute is followed only to a dataclass / NamedTuple field (always annotated) or to
        # an argparse option named after it.
        text = self.text
        if ":" in text and name in text:
            start = 0
            while True:
                m = next(_name_then(text, name, "field", start), None)
                if m is None:
                    break
                # `device: torch.device, base: int = 10000`: a signature's annotation, the `=` a
                # later parameter's; a field's annotation ends at its own `=` (resume after the
                # comma or bracket that ends it: no field starts before that)
                colon = text.index(":", m.start())
                early = _first_top_level(text, colon + 1, text.index("=", colon), commas=True)
                if early >= 0:
                    start = early
                    continue
                if m.group("link") is None or self.may_resolve(name_node(m.group("link")), depth + 1):
                    return True
                start = m.end()
        if "add_argument" in text and _may_name_option(text, name):
            for m in _option_rx(name).finditer(text):
                # The option's own default (what _Index reads: the `default=` of the same call),
                # not any option's: the text from the `add_argument` before the option's name to
                # the next one holds that call's arguments (a keyword follows the flags; a `dest=`
                # may follow `default=`, which still lies after the call's `add_argument`).
                lo = text.rfind("add_argument", 0, m.start())
                hi = text.find("add_argument", m.end())
                lit, links = _TextGate(text[max(lo, 0):hi if hi >= 0 else len(text)])._bindings("default")
                if lit or any(self.may_resolve(name_node(link), depth + 1) for link in links):
                    return True
        return False


# An assignment with several targets, read around each occurrence of a name: the targets after it
# (`name, b =`) or a comma before it and its `=` (`b, name =`), then the value on the rest of the
# line, which holds the name's element somewhere: a literal that may be it, or the names it may be.
_TARGETS_AFTER = re.compile(r"[ \t]*(?:,[ \t]*[A-Za-z_]\w*[ \t]*)+[)\]]?[ \t]*=(?!=)")
_LAST_TARGET = re.compile(r"[ \t]*[)\]]?[ \t]*=(?!=)")
_LITERAL_IN_VALUE = re.compile(rf"(?:[^\n]*?[(\[, \t=])?{_LITERAL_START}")
_VALUE_NAME = re.compile(r"(?<![\w.'\"])(?!(?:None|True|False)\b)([A-Za-z_][\w.]*)(?![\w.(\['\"])")


def _unpack_bindings(text: str, name: str) -> tuple:
    """(a literal may be bound to `name` by an assignment of several targets, the dotted names it
    may be bound to): a superset of what _Index reads (`a, name = 0, 1`, `(a, name) = (x, 1)`).
    The `=` of a keyword argument is no assignment's (`conv2d(x, weight, stride=1)`, `def f(gpu,
    b=1)`): an assignment is a statement, which no bracket holds, so a bracket that the rest of its
    line closes without opening it says the `=` is inside a call or a signature; the search
    resumes at that bracket, before which no statement starts. In linear time: once a value is
    read, the rest of its line is read with it (a later occurrence there would read a part of it)."""
    find, n, word = text.find, len(name), _WORD_OR_DOT.match
    links: set = set()
    i = find(name)
    while i >= 0:
        eq = None
        if i == 0 or word(text, i - 1) is None:
            eq = _TARGETS_AFTER.match(text, i + n)
            if eq is None:
                j = i - 1
                while j >= 0 and text[j] in " \t":
                    j -= 1
                if j >= 0 and text[j] == ",":
                    eq = _LAST_TARGET.match(text, i + n)
        if eq is None:
            i = find(name, i + 1)
            continue
        closed = _first_top_level(text, eq.end(), len(text), commas=False)
        if closed >= 0:
            i = find(name, closed)
            continue
        end = text.find("\n", eq.end())
        end = len(text) if end < 0 else end
        if _LITERAL_IN_VALUE.match(text, eq.end(), end) is not None:
            return True, links
        links.update(_VALUE_NAME.findall(text, eq.end(), end))
        i = find(name, end)
    return False, links


def _first_top_level(text: str, pos: int, end: int, commas: bool) -> int:
    """Reading `text[pos:end]` as code, up to the end of its line: the position of the first
    bracket it closes without opening it (and, with `commas`, of the first comma outside the
    brackets it opens), or -1 when there is none or the reading is unsure. Plain strings on the
    line are passed over; the reading gives up (-1) at a comment, a backslash, an f- or t-string
    (whose fields may hold quotes and brackets of their own), a triple quote, or a string that does
    not end on the line."""
    depth = 0
    while pos < end:
        c = text[pos]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                return pos
            depth -= 1
        elif c == "," and commas and depth == 0:
            return pos
        elif c == "'" or c == '"':
            k = pos
            while k > 0 and text[k - 1].isalpha():
                k -= 1
            if any(p in "fFtT" for p in text[k:pos]) or text.startswith(c * 3, pos):
                return -1
            pos += 1
            while pos < end and text[pos] != c:
                if text[pos] in "\n\r":
                    return -1
                pos += 2 if text[pos] == "\\" else 1
            if pos >= end:
                return -1
        elif c in "\n\r#\\":
            return -1
        pos += 1
    return -1


def name_node(dotted: str):
    """`a.b.c` -> an ast Attribute (c of a.b), `a` -> an ast Name: what _TextGate looks up."""
    head, _, last = dotted.rpartition(".")
    return ast.Attribute(ast.Name(head), last) if head else ast.Name(last)


class Flow:
    def __init__(self, tree: ast.Module, text: str = ""):
        self.tree = tree
        self.text = text
        self._index: Optional[_Index] = None

    @property
    def index(self) -> _Index:
        if self._index is None:
            self._index = _Index(self.tree)
        return self._index

    def _restricted_index(self, sinks: list) -> _Index:
        """An index of the statements that name what `sinks` can reach: answers every question
        reach() asks as the whole module's index does. What reach() looks up is keyed by a name:
        the sinks' names, the names their definitions' values are (links, followed again), the
        class of a dataclass field (its positional constructions). Every binding, read, store or
        `global` of a name lies in a statement whose text holds the name (read NFKC-normalised,
        as lines_naming reads it) or, for an argparse dest spelled from its flags, `add_argument`;
        a statement whose lines (a def's decorators included) hold none of the words holds no such
        node, and no scope of one (the functions around a name's statement span its lines).
        Leaving those statements out removes subtrees from the walk, which leaves the other nodes
        in the same order. So: words := the sinks' names;
        index those statements; add the links and field classes of every definition of a word;
        again until nothing is added. `global X` of a word merges function bindings into the
        module's in an order that depends on statements left out: then the whole index."""
        if not self.text:
            return self.index
        from gpufix.lexical import lines_naming

        words = {s.node.id if isinstance(s.node, ast.Name) else s.node.attr for s in sinks}
        for _ in range(2 * _MAX_LINKS + 2):
            index = _Index(self.tree, lines_naming(self.text, sorted(words | {"add_argument"})))
            if index.globals_in_functions & words:
                break
            more = set()
            for word in words:
                defs = [*index.module_names.get(word, ()), *index.attr_defs.get(word, ())]
                for names in index.scope_names.values():
                    defs += names.get(word, ())
                for d in defs:
                    if type(d.value) is ast.Name:
                        more.add(d.value.id)
                    elif type(d.value) is ast.Attribute:
                        more.add(d.value.attr)
                if word in index.field_classes:
                    more.add(index.field_classes[word])
            if more <= words:
                return index
            words |= more
        return self.index

    def reach(self, sinks: list, src) -> list:
        """[(sink, Reached)] for every literal that can reach a sink; `src(node)` gives source text."""
        gate = _TextGate(self.text)
        live = [s for s in sinks if gate.may_resolve(s.node)]
        if not live:
            return []
        index = self._index if self._index is not None else self._restricted_index(live)
        device_ids = {id(s.node) for s in sinks}
        out = []
        for sink in live:
            for literal, chain, blocked in self._follow(sink.node, index, device_ids, src, 0, frozenset()):
                # chain: (label of the definition, text of the read), outermost (the literal's) first
                label, read = chain[0]
                via = label if read in (label, label.rsplit(" ", 1)[-1]) else f"{label} read as {read}"
                if len(chain) > 1:
                    via += " through " + ", ".join(r for _, r in chain[1:])
                if sink.called.startswith(("f'", "'")):
                    via += f", in a {sink.called} on line {sink.line}"
                else:
                    via += f", passed to {sink.called}() on line {sink.line}"
                out.append((sink, Reached(literal, via, blocked)))
        return out

    def _follow(self, expr, index, device_ids, src, depth, seen):
        if depth >= _MAX_LINKS or id(expr) in seen:
            return
        seen = seen | {id(expr)}
        defs, reads = index.definitions(expr)
        if not defs:
            return
        why = index.blocked(expr, defs, reads, device_ids)
        shown = src(expr) or "?"
        for d in defs:
            if d.value is None:
                continue
            if literal_value(d.value) is not None:
                yield d.value, [(d.label, shown)], why
            elif isinstance(d.value, (ast.Name, ast.Attribute)):
                # One more link: the defining expression is itself a device use of the next name.
                inner_ids = device_ids | {id(d.value)}
                for literal, chain, blocked in self._follow(d.value, index, inner_ids, src, depth + 1, seen):
                    yield literal, chain + [(d.label, shown)], blocked or why
