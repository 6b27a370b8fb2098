"""The value-flow text gate (gpufix.valueflow._TextGate) finds a name's bindings without compiling a
regex per name (or with one, for a name that occurs often): either way it must see exactly the
matches of the per-name regexes it replaces, or the prefilter could skip a file whose literal
reaches a device argument."""

from __future__ import annotations

import random
import re

import pytest

from gpufix import valueflow
from gpufix.valueflow import (
    _BINDING_TAIL,
    _LITERAL_START,
    _UNPACK_TAIL,
    _TextGate,
    name_node,
)

# The patterns as the gate wrote them before (one `re.finditer` / `re.search` per name and call).
_FIELD_TAIL = (rf"[ \t]*:[^=\n]*=(?!=)[ \t]*(?:(?P<lit>{_LITERAL_START})|[\w.]*field\(|"
               r"(?P<link>(?!(?:None|True|False)\b)[A-Za-z_][\w.]*)[ \t]*(?:$|[;#]))")


def _reference(text: str, name: str, tail: str) -> list:
    esc = re.escape(name)
    if tail == "unpack":  # searched with the lookbehind in front
        m = re.search(rf"(?<![\w.]){esc}{_UNPACK_TAIL}", text, re.M)
        return [m.end()] if m else []
    pattern = {"binding": _BINDING_TAIL, "field": _FIELD_TAIL}[tail]
    return [(m.end(), m.group("lit"), m.group("link"))
            for m in re.finditer(rf"{esc}(?<![\w.]{esc}){pattern}", text, re.M)]


def _fast(text: str, name: str, tail: str) -> list:
    if tail == "unpack":
        m = next(valueflow._name_then(text, name, tail), None)
        return [m.end()] if m else []
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
            for tail in ("binding", "unpack", "field"):
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
