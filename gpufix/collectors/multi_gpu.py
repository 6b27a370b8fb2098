"""Multi-GPU code, gated tests and plain-data ordinals: where remapping an ordinal is not safe.

* Multi-GPU code: a function, a class body or the module body that addresses two or more distinct
  GPUs (`"cuda:0"` and `"cuda:1"`, `device_ids=[0, 1]`) or builds a device list
  (`[f"cuda:{i}" for i in range(n)]`). Under a policy with fewer visible GPUs it cannot keep its
  meaning: remapping inside it would make its devices collide. GPU004 reports it once; GPU001/GPU002
  stay silent inside it.
* A test gated to multi-GPU machines (rules/multigpu-gates.toml): its ordinals get no fix.
* Plain data: an ordinal in a `parametrize` table, a mock's return value or the expected side of an
  assert is data, not a device choice; remapping it alone breaks the test (its input stays).

The facts need the whole tree and every ordinal the walk found, so the collector builds them in its
`finish` hook, only under a policy (GPU004 and the remaps they hold back need one), and keeps them
in `facts.extra["multi-gpu"]` (see `multigpu_facts`).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
from typing import Optional

from gpufix.analysis import walk_tree
from gpufix.collectors import Collector


@dataclasses.dataclass(frozen=True)
class Gates:
    """What keeps code to multi-GPU machines (rules/multigpu-gates.toml): decorators, keywords, count calls."""

    decorators: frozenset
    keywords: tuple  # (name, keyword)
    count_calls: frozenset


@functools.lru_cache(maxsize=1)
def load_gates() -> Gates:
    from gpufix.catalog import catalog_dir, read_catalogue_file

    data = read_catalogue_file(catalog_dir() / "multigpu-gates.toml")
    return Gates(
        frozenset(data.get("decorators", ())),
        tuple((k["name"], k["keyword"]) for k in data.get("keywords", ())),
        frozenset(data.get("count-calls", ())),
    )


@dataclasses.dataclass
class Scope:
    """A function, class or module that addresses several GPUs on purpose, and the gate that keeps it there."""

    node: object  # ast.FunctionDef / ClassDef / Module
    name: str
    line: int
    col: int
    end_line: int
    gate: Optional[str] = None  # the gate that keeps it to multi-GPU machines
    physical: dict = dataclasses.field(default_factory=dict)  # index -> first line
    device_list_line: Optional[int] = None


@dataclasses.dataclass
class MultiGpuFacts:
    """A file's multi-GPU scopes and the ordinals in it that are plain data."""

    scopes: list  # Scope, innermost last in source order
    data_lines: dict  # (line, col) of an ordinal -> why it is plain data

    def scope_of(self, line: int) -> Optional[Scope]:
        best = None
        for s in self.scopes:
            if s.line <= line <= s.end_line and (best is None or s.line >= best.line):
                best = s
        return best

    def gated(self, line: int) -> Optional[str]:
        for s in self.scopes:
            if s.gate and s.line <= line <= s.end_line:
                return s.gate
        return None


def _last_name(node) -> Optional[str]:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _calls_count(node, gates: Gates) -> bool:
    return any(isinstance(n, ast.Call) and _last_name(n.func) in gates.count_calls for n in walk_tree(node))


def _gate_of(decorators, gates: Gates) -> Optional[str]:
    for dec in decorators:
        name = _last_name(dec)
        if name in gates.decorators:
            return f"@{name}"
        if isinstance(dec, ast.Call):
            for gname, kw in gates.keywords:
                if name == gname:
                    for k in dec.keywords:
                        if k.arg == kw and isinstance(k.value, ast.Constant) and isinstance(k.value.value, int) and k.value.value >= 2:
                            return f"@{gname}({kw}={k.value.value})"
            if name in ("skipif", "skipIf", "skipUnless") and dec.args and _calls_count(dec.args[0], gates):
                return f"@{name}(... device_count() ...)"
    return None


def _body_gate(body, gates: Gates) -> Optional[str]:
    """`if torch.cuda.device_count() < 2: pytest.skip(...)` as one of the first statements."""
    for stmt in body[:3]:
        if isinstance(stmt, ast.If) and _calls_count(stmt.test, gates):
            if any(isinstance(n, ast.Call) and _last_name(n.func) in ("skip", "skipTest") for n in walk_tree(stmt)):
                return "a skip when device_count() is too small"
            if any(isinstance(n, ast.Raise) and "Skip" in ast.dump(n) for n in walk_tree(stmt)):
                return "a skip when device_count() is too small"
    return None


def _is_device_list(node) -> bool:
    """[f"cuda:{i}" for i in ...], [torch.device("cuda", i) for ...], ["cuda:%d" % i for ...]."""
    if not isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp, ast.DictComp)):
        return False
    elt = node.value if isinstance(node, ast.DictComp) else node.elt
    if isinstance(elt, ast.JoinedStr) and elt.values and isinstance(elt.values[0], ast.Constant) and str(elt.values[0].value).startswith("cuda:"):
        return True
    if isinstance(elt, ast.BinOp) and isinstance(elt.left, ast.Constant) and str(elt.left.value).startswith("cuda:"):
        return True
    if isinstance(elt, ast.Call) and _last_name(elt.func) == "format" and isinstance(elt.func, ast.Attribute) \
            and isinstance(elt.func.value, ast.Constant) and str(elt.func.value.value).startswith("cuda:"):
        return True
    if isinstance(elt, ast.Call) and _last_name(elt.func) == "device" and elt.args:
        first = elt.args[0]
        if isinstance(first, ast.Constant) and first.value == "cuda" and len(elt.args) > 1 and not isinstance(elt.args[1], ast.Constant):
            return True
        if isinstance(first, ast.JoinedStr) and first.values and isinstance(first.values[0], ast.Constant) and str(first.values[0].value).startswith("cuda:"):
            return True
    return False


_PARAMETRIZE = ("parametrize", "expand", "parameterized")
_ASSERT_CALLS = ("assertEqual", "assertEquals", "assertIn", "assertListEqual", "assertDictEqual", "assert_called_with",
                 "assert_called_once_with")
_MOCKS = ("Mock", "MagicMock", "PropertyMock", "patch")


def _mark(out: dict, node, why: str) -> None:
    for n in walk_tree(node):
        if isinstance(n, ast.Constant):
            out.setdefault((n.lineno, n.col_offset), why)


def _one_walk(tree: ast.Module, want_loaded: bool, want_lists: bool) -> tuple:
    """(data positions, checkpoint-load constant positions, device-list lines) in one walk of the
    tree (each was a walk of its own: on a big test file the walks were most of the analysis)."""
    out: dict = {}
    loaded: set = set()
    lists: list = []
    mocked: list = []  # test functions whose GPU calls are mocked: marked after the walk
    for node in walk_tree(tree):  # (ast.walk's order, less the names and contexts it looks at none of)
        cls = type(node)
        if cls is ast.Call:
            for kw in node.keywords:
                if kw.arg in ("return_value", "side_effect"):
                    _mark(out, kw.value, "a mock's return value")
                elif want_loaded and kw.arg == "map_location":
                    loaded |= {(n.lineno, n.col_offset) for n in walk_tree(kw.value) if isinstance(n, ast.Constant)}
            if _last_name(node.func) in _ASSERT_CALLS:
                _mark(out, node, "an expected value in an assert")
        elif cls is ast.FunctionDef or cls is ast.AsyncFunctionDef or cls is ast.ClassDef:
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and _last_name(dec.func) in _PARAMETRIZE:
                    _mark(out, dec, "a parametrize table")
            if cls is not ast.ClassDef and node.name.startswith("test"):
                mocked.append(node)
        elif cls is ast.Assign:
            if any(isinstance(t, ast.Attribute) and t.attr in ("return_value", "side_effect") for t in node.targets):
                _mark(out, node.value, "a mock's return value")
        elif cls is ast.Assert:
            for cmp in walk_tree(node.test):
                if isinstance(cmp, ast.Compare):
                    for comp in cmp.comparators:
                        _mark(out, comp, "an expected value in an assert")
        if want_lists and _is_device_list(node):
            lists.append(node.lineno)
    # A test whose GPU calls are mocked (`@mock.patch(...)`, `Mock()`, `mocker.patch`) runs on the
    # CPU: its ordinals are data that the mocks check, not devices.
    for node in mocked:
        patched = any(_last_name(d) in ("patch", "object", "multiple") for d in node.decorator_list)
        if not patched:
            patched = any(isinstance(n, ast.Call) and _last_name(n.func) in _MOCKS for n in walk_tree(node))
        if patched:
            for stmt in node.body:
                _mark(out, stmt, "a mocked test")
    return out, loaded, lists


def analyze_multigpu(tree: ast.Module, facts, col_of=None) -> MultiGpuFacts:
    """Scopes with their gates and the physical GPUs they address (from `facts.ordinals`)."""
    gates = load_gates()
    module_end = max((getattr(n, "end_lineno", 0) or 0 for n in tree.body), default=0)
    scopes = [Scope(tree, "the module body", 1, 0, module_end)]

    def walk(body, class_gate=None):
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                gate = _gate_of(stmt.decorator_list, gates) or class_gate
                if gate is None and not isinstance(stmt, ast.ClassDef):
                    gate = _body_gate(stmt.body, gates)
                kind = "class" if isinstance(stmt, ast.ClassDef) else "function"
                scopes.append(Scope(stmt, f"{kind} `{stmt.name}`", stmt.lineno, stmt.col_offset, stmt.end_lineno or stmt.lineno, gate))
                walk(stmt.body, gate if isinstance(stmt, ast.ClassDef) else None)
            else:
                for field in ("body", "orelse", "finalbody"):
                    block = getattr(stmt, field, None)
                    if block and isinstance(block, list):
                        walk(block, class_gate)
                for h in getattr(stmt, "handlers", None) or ():
                    walk(h.body, class_gate)

    walk(tree.body)
    del walk  # it refers to itself through its closure: a cycle that would hold every scope's tree
    mg = MultiGpuFacts(scopes, {})
    # Where a checkpoint is loaded (map_location values) is not a device the code runs on: the
    # weights move on (`.cuda(1)`), and GPU002 already reports device lists.
    text_has_cuda = any(u.kind == "cuda-string" for u in facts.ordinals) or facts.gpu_imports
    mg.data_lines, loaded, list_lines = _one_walk(tree, True, bool(text_has_cuda))
    for use in facts.ordinals:
        if use.kind not in ("cuda-string", "int", "tf-device"):
            continue
        if (use.pos.line, use.pos.col) in loaded or (use.pos.line, use.pos.col) in mg.data_lines:
            continue  # plain data (a parametrize table, a mock, an expected value) addresses no GPU
        if getattr(use, "via", ""):
            continue  # reached through value flow: the literal stands elsewhere, its use is not here
        scope = mg.scope_of(use.pos.line)
        if scope.node is tree:
            # The module body of a script runs top to bottom once: two ordinals there are two
            # separate choices, not one function juggling GPUs (a device list still counts).
            continue
        if isinstance(use.value, int):
            scope.physical.setdefault(use.value, use.pos.line)
    for line in list_lines:
        scope = mg.scope_of(line)
        if scope.device_list_line is None:
            scope.device_list_line = line
    return mg


# A device list without a literal index (`[torch.device("cuda", i) for i in range(n)]`): no ordinal
# test of the prefilter sees it, so a module the header scope does not name would be skipped.
_DEVICE_CALL_RE = re.compile(r"""device\(\s*['"]cuda['"]\s*,""")


class MultiGpu(Collector):
    name = "multi-gpu"
    priority = 90
    only_with_policy = True

    def parse_tests(self, catalog):
        # The other device lists are formatted from "cuda:" (FULL-tier tests); this one counts
        # only in a file that holds "cuda:" (see finish).
        return (("cuda:", _DEVICE_CALL_RE),)

    def finish(self, facts, tree, text: str) -> None:
        # Without an ordinal, only a device list can make multi-GPU code, and the lists it knows
        # are formatted from "cuda:".
        if facts.ordinals or (facts.gpu_imports and "cuda:" in text):
            facts.extra[self.name] = analyze_multigpu(tree, facts)


def multigpu_facts(facts) -> Optional[MultiGpuFacts]:
    """The file's multi-GPU facts; None without a policy or when the file holds no ordinal."""
    return facts.extra.get(MultiGpu.name)


def multi_gpu_scopes(mg: MultiGpuFacts, visible: int) -> list:
    """Scopes that need more GPUs than `visible`: two or more distinct GPUs, or a device list."""
    out = []
    for s in mg.scopes:
        if len(s.physical) >= 2 and len(s.physical) > visible:
            out.append(s)
        elif s.device_list_line is not None and visible < 2:
            out.append(s)
    return out


def in_multi_gpu_code(ctx, use) -> bool:
    """Whether ordinal `use` is inside multi-GPU code under the policy (GPU004 reports it once)."""
    mg = multigpu_facts(ctx.facts)
    if mg is None or ctx.policy_mask is None:
        return False
    return mg.scope_of(use.pos.line) in multi_gpu_scopes(mg, len(ctx.policy_mask))


def in_gated_test(ctx, use) -> bool:
    """Whether ordinal `use` is inside a test gated to multi-GPU machines: skipped under the policy,
    right as written on a machine with the GPUs it needs, so nothing its owner would change."""
    mg = multigpu_facts(ctx.facts)
    return mg is not None and mg.gated(use.pos.line) is not None


def unsafe_context(ctx, use):
    """(applicability or None, note) for an ordinal in a gated test (no fix) or in plain data
    (an unsafe fix); None for an ordinal whose remap is safe."""
    mg = multigpu_facts(ctx.facts)
    if mg is None:
        return None
    gate = mg.gated(use.pos.line)
    if gate:
        return None, f"; not remapped: the test is gated to machines with several GPUs ({gate}) and is skipped under the policy"
    why = mg.data_lines.get((use.pos.line, use.pos.col))
    if why:
        return "unsafe", f"; it is plain data ({why}): remapping it alone can break the test, so the fix is unsafe"
    return None
