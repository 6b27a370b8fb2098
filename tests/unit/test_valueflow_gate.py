"""The value-flow text gate (gpufix.valueflow._TextGate) finds a name's bindings without compiling a
regex per name (or with one, for a name that occurs often): either way it must see exactly the
matches of the per-name regexes it replaces, or the prefilter could skip a file whose literal
reaches a device argument."""

from __future__ import annotations

import ast
import random
import re

import pytest

from gpufix import valueflow
from gpufix.valueflow import (
    _BINDING_TAIL,
    _LITERAL_START,
    _TextGate,
    name_node,
)

# The patterns as the gate wrote them before (one `re.finditer` / `re.search` per name and call).
_FIELD_TAIL = (rf"[ \t]*:[^=\n]*=(?!=)[ \t]*(?:(?P<lit>{_LITERAL_START})|[\w.]*field\(|"
               r"(?P<link>(?!(?:None|True|False)\b)[A-Za-z_][\w.]*)[ \t]*(?:$|[;#]))")


def _reference(text: str, name: str, tail: str) -> list:
    esc = re.escape(name)
    pattern = {"binding": _BINDING_TAIL, "field": _FIELD_TAIL}[tail]
    return [(m.end(), m.group("lit"), m.group("link"))
            for m in re.finditer(rf"{esc}(?<![\w.]{esc}){pattern}", text, re.M)]


def _fast(text: str, name: str, tail: str) -> list:
    return [(m.end(), m.group("lit"), m.group("link")) for m in valueflow._name_then(text, name, tail)]


_PIECES = ["gpu", "gpu_id", "x.gpu", "_gpu", "gpu2", "gpu", "a", " ", "\t", "\n", "=", "==", ":", ": int",
           ",", "(", ")", "[", "]", "1", "'cuda:1'", '"0"', "None", "other.name", "field(default=1)",
           "#", ";", "é", "gpugpu", " = ", ", b = 0, 1", "gpu = gpu = 1",
           "gpu: gpu = 1", "a: a, gpu = 1, 2"]  # the last two: matches that overlap other occurrences


@pytest.mark.parametrize("few", [0, 2, 10_000])  # the per-name regex, the loop then the regex, the loop alone
def test_matches_equal_the_per_name_regexes(monkeypatch, few):
    monkeypatch.setattr(valueflow, "_FEW", few)
    rng = random.Random(few)
    for _ in range(1500):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 30)))
        for name in ("gpu", "a", "gpu_id"):
            for tail in ("binding", "field"):
                assert _fast(text, name, tail) == _reference(text, name, tail), (text, name, tail)


def test_gate_follows_bindings():
    text = "GPU = 1\nidx = GPU\ndevice = torch.device('cuda')\nx.gpu, y = 0, 1\n@dataclass\nclass C:\n    gpu_id: int = 2\n"
    gate = _TextGate(text)
    assert gate.may_resolve(name_node("idx")) and gate.may_resolve(name_node("cfg.gpu_id"))
    assert not _TextGate(text).may_resolve(name_node("device"))


_OPTION_PIECES = ["'", '"', "-", "--", "_", "gpu", "id", "gpu_id", "gpu-id", "dest", "=", " ", "\n", "device", "x", "add_argument("]


@pytest.mark.parametrize("seed", range(3))
def test_the_option_substring_gate_is_a_necessary_condition(seed):
    # the option regex is run only where its substring gate passes: it may never hide a match
    rnd = random.Random(seed)
    for _ in range(3000):
        text = "".join(rnd.choice(_OPTION_PIECES) for _ in range(rnd.randrange(12)))
        for name in ("gpu_id", "device", "id", "gpu_", "x"):
            if valueflow._option_rx(name).search(text):
                assert valueflow._may_name_option(text, name), (name, text)


def test_an_attribute_bound_through_an_argparse_option_lifts_the_file():
    from gpufix import registry
    from gpufix.catalog import load_api_catalog
    from gpufix.prefilter import FULL

    pf = registry.prefilter(load_api_catalog())
    for option in ('"--gpu-id"', "'--gpu_id'", '"gpu_id"', 'dest="gpu_id"'):
        text = f"import argparse, torch\np = argparse.ArgumentParser()\np.add_argument({option}, default=1)\nargs = p.parse_args()\ntorch.cuda.set_device(args.gpu_id)\n"
        assert pf.classify(text, "m.py", "gpu-modules") == FULL, option


# -- the gate holds every literal _Index resolves, and no keyword argument's ------------------------
_NAMES = ("gpu", "dev", "n")
_VALUES = ("0", "1", "'cuda:1'", "'1'", "[1]", "(1)", "f(x)", "None", "'cpu'", "x", "g(k=1)", "'a)'")
_LINES = (
    "{a} = {v}", "{a}, {b} = {v}, {w}", "({a}, {b}) = ({v}, {w})", "[{a}, {b}] = [{v}, {w}]",
    "{a}, {b}, {c} = {v}, {w}, {v}", "{c}, {a} = {v}, {w}", "if x: {a}, {b} = {v}, {w}",
    "x = 1; {a}, {b} = {v}, {w}", "{a}, {b} = {v}, {w}  # )", "{a}, {b} = {v}, f'{{x}})'",
    "f({a}, {b}={v})", "y = f({a}, {b}={v}, k='s')", "z = h({c}, {a}={v}), {w}",
    "def g({a}, {b}={v}): pass", "def g({a}: int, {b}: int = {v}): pass",
    "def g(self, {a}, {b}='s', c={v}): pass", "q = lambda {a}, {b}={v}: {a}",
    "@dataclass\nclass C:\n    {a}: int = {v}", "@dataclass\nclass D:\n    {a}: Tuple[int, int] = {v}",
    "@dataclass\nclass E:\n    {a}: 'Optional[int]' = {v}", "def k({a}: T, {b}: int = {v}): pass",
    "p.add_argument('--{a}', default={v})", "p.add_argument('--{a}', type=int)\np.add_argument('--{b}', default={v})",
    "p.add_argument('--x', default={v}, dest='{a}')", "p.add_argument('--{a}', default={b})",
    "{a} = {b}", "{a} = {c}.{b}", "{a} = ({v},\n  {w})", "use({a}, {b}, args.{a}, o.{b})",
)


def _reads(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Load):
            yield node


@pytest.mark.parametrize("seed", range(4))
def test_the_gate_holds_every_literal_the_index_resolves(seed):
    """Every read the analysis's index can follow to a literal that may be an ordinal is one the
    text gate lets through: the prefilter and the analysis (Flow.reach) both skip what it denies."""
    rng = random.Random(seed)
    checked = 0
    for _ in range(400):
        names = dict(zip("abc", rng.sample(_NAMES, 3)))
        lines = [rng.choice(_LINES).format(v=rng.choice(_VALUES), w=rng.choice(_VALUES), **names)
                 for _ in range(rng.randint(1, 5))]
        text = "\n".join(lines) + "\nuse(gpu, dev, n, args.gpu, o.dev, cfg.n)\n"
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        index = valueflow._Index(tree)
        flow = valueflow.Flow(tree, text)
        for node in _reads(tree):
            literals = [lit for lit, _, _ in flow._follow(node, index, {id(node)}, lambda e: "?", 0, frozenset())]
            if any(re.match(_LITERAL_START, ast.get_source_segment(text, lit) or "") for lit in literals):
                checked += 1
                assert _TextGate(text).may_resolve(node), (text, ast.dump(node))
    assert checked > 100


@pytest.mark.parametrize("text, name", [
    # diffusers' downsampling.py: a name passed before keyword arguments is no unpack
    ("output = F.conv2d(upfirdn_input, weight, stride=stride_value, padding=0)\n", "weight"),
    ("model.enable_group_offload(torch_device, offload_type='block_level', num_blocks=3)\n", "torch_device"),
    ("def get_inputs(self, device, generator_device='cpu', seed=1, guidance_scale=7.0):\n    pass\n", "device"),
    # a signature's annotation ends at its comma: the `= 10000` is the next parameter's
    ("def forward_impl(self, seq_len: int, device: torch.device, base: int = 10000):\n    pass\n", "x.device"),
    # the option's own default, not another option's
    ("p.add_argument('--device', type=str, default='cuda')\np.add_argument('--steps', type=int, default=50)\n", "args.device"),
])
def test_a_keyword_argument_or_another_options_default_is_no_binding(text, name):
    assert not _TextGate(text).may_resolve(name_node(name))


@pytest.mark.parametrize("text, name", [
    ("b, gpu = f(x), 1\n", "gpu"), ("(b, gpu) = (f(x), 1)\n", "gpu"), ("gpu, b = 1, f(x)\n", "gpu"),
    ("if x: gpu, b = 1, 2\n", "gpu"), ("p.add_argument('--steps', default=50)\np.add_argument('--gpu', default=1)\n", "args.gpu"),
    ("p.add_argument('--g', default=1, dest='gpu')\n", "args.gpu"), ("GPU = 1\np.add_argument('--gpu', default=GPU)\n", "args.gpu"),
    ("@dataclass\nclass C:\n    gpu: Tuple[int, int] = (1, 2)\n", "c.gpu"),
])
def test_the_bindings_a_user_writes_still_lift(text, name):
    assert _TextGate(text).may_resolve(name_node(name))


def test_the_last_target_of_an_unpack_is_followed_to_its_literal(tmp_path):
    from gpufix.config import load_policy
    from gpufix.engine import Options, scan

    path = tmp_path / "t.py"
    path.write_text("import torch\nb, gpu = f(x), 1\ntorch.cuda.set_device(gpu)\n")
    policy = load_policy([str(path)], overrides={"visible_devices": "1", "select": ("GPU001",), "ignore": ()})
    for prefilter in (True, False):
        found = scan([str(path)], policy, Options(use_prefilter=prefilter, use_cache=False, jobs=1)).findings
        assert [(f.rule, f.line, f.column) for f in found] == [("GPU001", 2, 16)], prefilter
