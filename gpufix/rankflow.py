"""A CUDA device chosen from the process rank: `cuda:{local_rank}`, `set_device(local_rank)`.

A launcher (`torchrun --nproc_per_node=8`, `torch.distributed.launch`, `srun`, `mpirun`) starts one
process per GPU and tells each its rank (rules/rank-sources.toml: `LOCAL_RANK`, `dist.get_rank()`,
`args.local_rank`, ...); code that turns the rank into its device needs as many visible GPUs as the
launch has processes. Under a mask that shows fewer, every rank above them fails with "invalid
device ordinal": a header that puts such a mask in force is an unsafe fix
(gpufix.rules.RuleContext.rank_launch).

A rank is read from the environment (`os.environ["LOCAL_RANK"]`, `.get(...)`, `os.getenv(...)`,
any mapping indexed by a launcher's variable), returned by a rank call or held by a rank name.
Values are followed through simple assignments (`local_rank = int(os.environ["LOCAL_RANK"])`,
`device = f"cuda:{local_rank}"`, `self.gpu_id = local_rank`), `int()`/`str()`, `rank % n` and a
conditional expression, in the function that binds them or from the module's top level. A device
use is a device built from a rank (`f"cuda:{r}"`, `"cuda:%d" % r`, `"cuda:" + str(r)`,
`"cuda:{}".format(r)`, `torch.device("cuda", r)`, `torch.device(r)`) or a rank or such a device
handed to `set_device`, `set_device_index`, `torch.cuda.device`, `.cuda()`, `.to()`, `device_ids=`,
`output_device=`, `device_index=`, `device=`. A rank used otherwise (logging, seeding,
`if rank == 0:`, `DistributedSampler(rank=...)`) chooses no device. `mp.spawn(fn, nprocs=N)` hands
`fn`'s first parameter its process index, a rank unless N is 1 or comes from `device_count()` (one
process per visible GPU shrinks with the mask). Not followed: function returns, other modules (the
project index does that part), a device the framework picks itself (`accelerator.device`).

`rank_device(tree, text)` is the reading, for the file's own facts (gpufix.collectors.rank_device:
`facts.extra["rank-device"]`) and for the project index's records, with the function that holds
the use: an entry point's process counts a module's use when it runs the module and names that
function (or the use runs at import), see gpufix.project.graph.ProjectIndex.rank_device_in.
"""

from __future__ import annotations

import ast
import bisect
import functools
from typing import Optional

_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_DEVICE_CALLS = frozenset(("set_device", "set_device_index", "cuda", "to", "device"))
_DEVICE_KEYWORDS = frozenset(("device", "device_ids", "output_device", "device_index"))
_ROUNDS = 4  # assignment chains followed (a name bound from a name bound from the rank, ...)


@functools.lru_cache(maxsize=1)
def rank_sources() -> tuple:
    """(env variables, call names, names/attributes, spawners) from rules/rank-sources.toml."""
    from gpufix.catalog import catalog_dir, read_catalogue_file

    data = read_catalogue_file(catalog_dir() / "rank-sources.toml")
    return tuple(frozenset(data.get(k, ())) for k in ("env", "calls", "names", "spawners"))


def mentions_rank(text: str) -> bool:
    """Whether `text` names a rank source as a word (the cheap test before any walk: a substring
    search first, the pattern only where one occurs)."""
    return any(w in text for w in _needles()) and bool(_word_offsets(text, _source_words(), first=True))


def _last_name(node) -> Optional[str]:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _str(node) -> Optional[str]:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class _Reader:
    """The rank and rank-device bindings of some of a module's statements, then its first device
    use among them."""

    def __init__(self):
        self.env, self.calls, self.names, self.spawners = rank_sources()
        self.units: list = []  # the statements read (module-level ones, and those of class bodies)
        self.scope: dict = {}  # id(node) -> the innermost function holding it (None: module level)
        # id(node) -> the name of the outermost function holding it (a module-level function, or a
        # method of a module-level class; "" at import time): what a caller names to run it
        self.owner: dict = {}
        self.local: dict = {}  # function (or None) -> the names it binds (parameters, assignments)
        self.rank: set = set()  # (function or None, name) / ("attr", name) bound to a rank
        self.device: set = set()  # the same, bound to a device built from a rank
        self.assigns: list = []  # (function, targets, value)
        self.candidates: list = []  # the nodes that may be a device use (calls, f-strings, operators)
        self.functions: dict = {}  # name -> the FunctionDef nodes read with that name
        self.spawns: list = []  # (function or None, call) of `mp.spawn(fn, nprocs=N)`

    def add(self, units) -> None:
        for unit in units:
            self.units.append(unit)
            self._scan(unit, None)

    def _scan(self, node, fn) -> None:
        stack = [(node, fn, "")]
        while stack:
            n, f, owner = stack.pop()
            self.scope[id(n)] = f
            self.owner[id(n)] = owner
            if isinstance(n, (ast.Call, ast.JoinedStr, ast.BinOp)):
                self.candidates.append(n)
                if isinstance(n, ast.Call) and _last_name(n.func) in self.spawners:
                    self.spawns.append((f, n))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions.setdefault(n.name, []).append(n)
            if isinstance(n, _FUNCS):
                inner = id(n)
                bound = self.local.setdefault(inner, set())
                a = n.args
                for arg in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]:
                    bound.add(arg.arg)
                body = {id(n.body)} if isinstance(n, ast.Lambda) else {id(s) for s in n.body}
                runs = owner or getattr(n, "name", "")
                for child in ast.iter_child_nodes(n):
                    # defaults and decorators run in the enclosing scope, the body in the function's
                    inside = id(child) in body
                    stack.append((child, inner if inside else f, runs if inside else owner))
                continue
            if isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and n.value is not None:
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                if not isinstance(n, ast.AugAssign):
                    self.assigns.append((f, targets, n.value))
                for t in targets:
                    for name in ast.walk(t):
                        if isinstance(name, ast.Name):
                            self.local.setdefault(f, set()).add(name.id)
            elif isinstance(n, ast.NamedExpr):
                self.assigns.append((f, [n.target], n.value))
                self.local.setdefault(f, set()).add(n.target.id)
            for child in ast.iter_child_nodes(n):
                stack.append((child, f, owner))

    # -- what a value is ---------------------------------------------------------------------
    def _key(self, node, fn):
        if isinstance(node, ast.Name):
            if (fn, node.id) in self.rank or (fn, node.id) in self.device:
                return (fn, node.id)
            if fn is not None and node.id not in self.local.get(fn, ()):
                return (None, node.id)  # read from the module's top level
            return (fn, node.id)
        if isinstance(node, ast.Attribute):
            return ("attr", node.attr)
        return None

    def _env_read(self, node) -> bool:
        """os.environ["LOCAL_RANK"], os.environ.get("LOCAL_RANK"), os.getenv("LOCAL_RANK"); any
        mapping read at a launcher's variable counts (`env_dict["LOCAL_RANK"]`, a copy of the
        environment)."""
        if isinstance(node, ast.Subscript):
            return _str(node.slice) in self.env
        if isinstance(node, ast.Call) and node.args:
            name = _last_name(node.func)
            if name == "getenv" or (name == "get" and isinstance(node.func, ast.Attribute)):
                return _str(node.args[0]) in self.env
        return False

    def is_rank(self, node, fn) -> bool:
        if node is None:
            return False
        if self._env_read(node):
            return True
        if isinstance(node, ast.Call):
            name = _last_name(node.func)
            if name in self.calls:
                return True
            if name in ("int", "str") and isinstance(node.func, ast.Name) and len(node.args) == 1:
                return self.is_rank(node.args[0], fn)
            return False
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and _str(node.left) is None:
            return self.is_rank(node.left, fn)  # rank % device_count()
        if isinstance(node, ast.IfExp):
            return self.is_rank(node.body, fn) or self.is_rank(node.orelse, fn)
        if isinstance(node, (ast.Name, ast.Attribute)):
            if _last_name(node) in self.names:
                return True
            return self._key(node, fn) in self.rank
        return False

    def built_device(self, node, fn) -> bool:
        """A device formatted or constructed from a rank: f"cuda:{r}", "cuda:%d" % r,
        "cuda:" + str(r), "cuda:{}".format(r), torch.device("cuda", r), torch.device(r)."""
        if isinstance(node, ast.JoinedStr):
            before = ""
            for part in node.values:
                if isinstance(part, ast.Constant):
                    before = str(part.value)
                elif isinstance(part, ast.FormattedValue):
                    if before.endswith("cuda:") and self.is_rank(part.value, fn):
                        return True
                    before = ""
            return False
        if isinstance(node, ast.BinOp):
            left = _str(node.left)
            if left is None:
                return False
            if isinstance(node.op, ast.Mod) and "cuda:%" in left:
                right = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
                return any(self.is_rank(r, fn) for r in right)
            if isinstance(node.op, ast.Add) and left.endswith("cuda:"):
                return self.is_rank(node.right, fn)
            return False
        if isinstance(node, ast.Call):
            name = _last_name(node.func)
            if name == "format" and isinstance(node.func, ast.Attribute) and (_str(node.func.value) or "").startswith("cuda:"):
                return any(self.is_rank(a, fn) for a in node.args) or any(self.is_rank(k.value, fn) for k in node.keywords)
            if name == "device" and isinstance(node.func, ast.Attribute) and _last_name(node.func.value) == "torch":
                args = list(node.args) + [k.value for k in node.keywords if k.arg in ("type", "index")]
                if any(isinstance(a, ast.JoinedStr) and any(
                        isinstance(p, ast.FormattedValue) and self.is_rank(p.value, fn) for p in a.values) for a in args):
                    return True  # torch.device(f"{acc}:{local_rank}")
                return any(self.is_rank(a, fn) or self.is_device(a, fn) for a in args)
        return False

    def is_device(self, node, fn) -> bool:
        if self.built_device(node, fn):
            return True
        if isinstance(node, (ast.Name, ast.Attribute)):
            return self._key(node, fn) in self.device
        return False

    # -- the bindings, then the uses ---------------------------------------------------------
    def _counts_gpus(self, node, fn, depth: int = 0) -> bool:
        """Whether `node` is (or is bound from) a `device_count()`: a process per visible GPU."""
        if node is None or depth > _ROUNDS:
            return False
        if any(isinstance(c, ast.Call) and _last_name(c.func) == "device_count" for c in ast.walk(node)):
            return True
        if isinstance(node, (ast.Name, ast.Attribute)):
            key = self._key(node, fn)
            return any(self._counts_gpus(v, f, depth + 1) for f, targets, v in self.assigns
                       for t in targets if isinstance(t, (ast.Name, ast.Attribute)) and self._key(t, f) == key)
        return False

    def _spawned(self) -> bool:
        """Bind the first parameter of each function `mp.spawn(fn, nprocs=N)` starts to a rank
        (spawn passes each process its index), unless N is 1 or counts the visible GPUs
        (`nprocs=torch.cuda.device_count()`: the launch shrinks with the mask)."""
        grew = False
        for fn, call in self.spawns:
            target = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "fn"), None)
            nprocs = call.args[2] if len(call.args) > 2 else next((k.value for k in call.keywords if k.arg == "nprocs"), None)
            if not isinstance(target, ast.Name) or nprocs is None:
                continue  # one process (spawn's default)
            if isinstance(nprocs, ast.Constant) and nprocs.value == 1:
                continue
            if self._counts_gpus(nprocs, fn):
                continue
            for func in self.functions.get(target.id, ()):
                params = func.args.posonlyargs + func.args.args
                if params and (id(func), params[0].arg) not in self.rank:
                    self.rank.add((id(func), params[0].arg))
                    grew = True
        return grew

    def wanted(self) -> set:
        """The functions the spawn calls read so far start, by name (their `def` must be read)."""
        return {c.args[0].id for _, c in self.spawns if c.args and isinstance(c.args[0], ast.Name)}

    def bind(self) -> None:
        for _ in range(_ROUNDS):
            grew = self._spawned()
            for fn, targets, value in self.assigns:
                pairs = []
                for t in targets:
                    if isinstance(t, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
                            and len(t.elts) == len(value.elts):
                        pairs += list(zip(t.elts, value.elts))
                    else:
                        pairs.append((t, value))
                for t, v in pairs:
                    key = self._key(t, fn) if isinstance(t, (ast.Name, ast.Attribute)) else None
                    if key is None:
                        continue
                    if isinstance(t, ast.Name):
                        key = (fn, t.id)  # an assignment binds in its own scope
                    for kind, test in ((self.rank, self.is_rank), (self.device, self.is_device)):
                        if key not in kind and test(v, fn):
                            kind.add(key)
                            grew = True
            if not grew:
                break

    def bound_words(self) -> set:
        """The names and attributes bound to a rank or a rank-chosen device so far."""
        return {name for _, name in self.rank | self.device}

    def first_use(self) -> Optional[ast.AST]:
        best = None
        for node in self.candidates:
            if best is not None and (node.lineno, node.col_offset) >= (best.lineno, best.col_offset):
                continue
            if self._use(node, self.scope.get(id(node))):
                best = node
        return best

    def _use(self, node, fn) -> bool:
        if isinstance(node, (ast.JoinedStr, ast.BinOp)):
            return self.built_device(node, fn)
        if not isinstance(node, ast.Call):
            return False
        if self.built_device(node, fn):
            return True
        if _last_name(node.func) in _DEVICE_CALLS and isinstance(node.func, ast.Attribute) and node.args:
            first = node.args[0]
            if self.is_rank(first, fn) or self.is_device(first, fn):
                return True
        for k in node.keywords:
            if k.arg in _DEVICE_KEYWORDS:
                values = k.value.elts if isinstance(k.value, (ast.List, ast.Tuple)) else [k.value]
                if any(self.is_rank(v, fn) or self.is_device(v, fn) for v in values):
                    return True
        return False


def _units(tree: ast.Module) -> list:
    """The statements read one by one: the module's, with a class body's in place of the class
    (a method is read when it or the values it reads name a rank, not with the whole class)."""
    out = []
    todo = list(reversed(tree.body))
    while todo:
        stmt = todo.pop()
        if isinstance(stmt, ast.ClassDef):
            todo.extend(reversed(stmt.body))
        else:
            out.append(stmt)
    return out


@functools.lru_cache(maxsize=1)
def _source_words() -> frozenset:
    env, calls, names, spawners = rank_sources()
    return env | calls | names | spawners


@functools.lru_cache(maxsize=1)
def _needles() -> tuple:
    """The source words less those that hold another of them (`LOCAL_RANK` holds `RANK`): one
    substring search for each of these finds every file one of the words is in."""
    words = sorted(_source_words(), key=len)
    kept: list = []
    for w in words:
        if not any(k in w for k in kept):
            kept.append(w)
    return tuple(kept)


def _word_offsets(text: str, words, first: bool = False) -> list:
    """The offsets where one of `words` occurs in `text` as a whole word (no word character on
    either side); `first`: only the first one found."""
    out = []
    find = text.find
    for word in words:
        at = find(word)
        while at >= 0:
            end = at + len(word)
            if not (at and (text[at - 1].isalnum() or text[at - 1] == "_")) and not (
                    end < len(text) and (text[end].isalnum() or text[end] == "_")):
                out.append(at)
                if first:
                    return out
            at = find(word, end)
    return out


class _Unparsed(Exception):
    """A block of lines cut from the text at its column-0 statements does not parse alone."""


_CONTINUES = ("else", "elif", "except", "finally")  # column-0 lines that go on the statement above


def _blocks(text: str, starts: list) -> list:
    """The first lines (1-based) of the text's top-level statements as its column-0 lines say:
    a line that starts with a name or `@` (decorators go with their `def`; `else:`, `except:`
    with the statement above). Lines inside a bracket or a string can look like one: a block cut
    there does not parse, and the caller parses the whole text instead."""
    out = []
    decorated = False
    for i, at in enumerate(starts):
        c = text[at:at + 1]
        if not (c.isalpha() or c == "_" or c == "@"):
            continue
        word = text[at:at + 8].split(":")[0].split(" ")[0].split("(")[0].rstrip()
        if word in _CONTINUES:
            continue
        if not decorated:
            out.append(i + 1)
        decorated = c == "@"
    return out


def rank_device(tree: Optional[ast.Module], text: str) -> Optional[tuple]:
    """(line, source of the use, at most 60 characters, the function that holds it) of the first
    CUDA device the module picks from its process rank, or None. The function is the outermost one
    (a module-level function or a method of a module-level class: what another file calls to run
    it), "" for code that runs at import.

    Only the statements that name a rank source are read, then those that name what was bound
    from one (`self.gpu_id` in another method), a few rounds: a big module with one `get_rank()`
    costs the walk of one function, not of the module. `tree` None (the project index, which
    mostly reads files without parsing them): only the top-level statements read are parsed, each
    cut from the text at its column-0 lines (the whole text when a cut does not parse)."""
    if not mentions_rank(text) or not ("cuda" in text or "device" in text or ".to(" in text):
        return None
    if tree is None:
        try:
            return _rank_device(None, text)
        except _Unparsed:
            try:
                tree = ast.parse(text)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                return None
    return _rank_device(tree, text)


def _rank_device(tree: Optional[ast.Module], text: str) -> Optional[tuple]:
    starts = [0]  # the offset of each line's start
    at = text.find("\n")
    while at >= 0:
        starts.append(at + 1)
        at = text.find("\n", at + 1)
    if tree is not None:
        units = _units(tree)  # in source order, none inside another
    else:
        blocks = _blocks(text, starts)
        parsed: dict = {}  # block index -> its units
        units = []

    def unit_firsts():
        return [min([u.lineno] + [d.lineno for d in getattr(u, "decorator_list", ())]) for u in units]

    firsts = unit_firsts() if tree is not None else []

    def parse_blocks(lines) -> None:
        """Parse the blocks holding `lines` (tree None), adding their units in source order."""
        nonlocal firsts
        grew = False
        for line in lines:
            k = bisect.bisect_right(blocks, line) - 1
            if k < 0:
                raise _Unparsed  # before the first statement: a cut cannot say where it is
            if k in parsed:
                continue
            first = blocks[k]
            end = starts[blocks[k + 1] - 1] if k + 1 < len(blocks) else len(text)
            try:
                # the lines above as blank lines: the block's nodes get the text's line numbers
                block = ast.parse("\n" * (first - 1) + text[starts[first - 1]:end])
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                raise _Unparsed from None
            parsed[k] = _units(block)
            grew = True
        if grew:
            units[:] = [u for k in sorted(parsed) for u in parsed[k]]
            firsts = unit_firsts()

    def naming(words) -> list:
        """The units whose lines hold one of `words` as a word (a substring search of the text for
        each, not a search per unit: an alternation led by `\\b` is tried at every position)."""
        lines = [bisect.bisect_right(starts, at) for at in _word_offsets(text, words)]
        if tree is None:
            parse_blocks(lines)
        out = {}
        for line in lines:
            i = bisect.bisect_right(firsts, line) - 1
            if i >= 0 and line <= (units[i].end_lineno or units[i].lineno):
                out[id(units[i])] = units[i]
        return list(out.values())

    reader = _Reader()
    todo = naming(_source_words())
    seen = {id(u) for u in todo}
    for _ in range(_ROUNDS):
        if not todo:
            break
        reader.add(todo)
        reader.bind()
        words = reader.bound_words() | reader.wanted()
        if not words:
            break
        todo = [u for u in naming(words) if id(u) not in seen]
        seen.update(id(u) for u in todo)
    use = reader.first_use()
    if use is None:
        return None
    line = text[starts[use.lineno - 1]:starts[use.lineno] if use.lineno < len(starts) else len(text)]
    raw = line.encode("utf-8", "surrogatepass")
    end = use.end_col_offset if use.end_lineno == use.lineno else len(raw)
    shown = " ".join(raw[use.col_offset:end].decode("utf-8", "replace").split())
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return (use.lineno, shown, reader.owner.get(id(use), ""))
