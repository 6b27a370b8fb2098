"""The prefilter cannot drop a finding: examples generated from the declarations the analysis reads
(every catalogued API argument of rules/apis/*.toml, every value kind the device-APIs collector
records, every string form a collector declares), each written in many spellings, give the same
findings and errors with the prefilter on as with it off (`--no-prefilter`: every file parsed and
walked whole). Every example is checked; the ones the analysis reports are counted, so that a
generator that stops producing findings fails too."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gpufix.catalog import catalog_for
from gpufix import registry
from gpufix.config import Policy
from gpufix.engine import _finding_to_cache, lint_bytes

POLICIES = (Policy(visible_devices="1"), Policy(visible_devices="2,3"), Policy())

# Values of each kind that the collector records (gpufix/collectors/device_apis.py, _record).
VALUES = {
    "ordinal": ("1", "+1", "(1)", "0x1", "[0, 1]", "(1, 0)", "2"),
    "nvml-index": ("1", "0", "torch.cuda.current_device()", "cd()"),
    "ordinal-list": ("[0, 1]", "(1,)", "[1]"),
    "ordinal-dict-values": ("1", "{'': 1}", "{'a': 0, 'b': 1}"),
    "ordinal-dict-keys": ("{0: '10GB', 1: '10GB'}", "{1: 'x'}"),
    "count-or-indices": ("[1]", "'1,'", "f'1,'", "[0, 1]", "'0,2'", "r'1,'"),
    "device-element": ("gpus[1]", "[gpus[0], gpus[1]]", "tf.config.list_physical_devices('GPU')[1]"),
    "tf-device": ('"/GPU:1"', '"/gpu:1"', '"/device:GPU:1"', '"/Gpu:1"', '"/GP" "U:1"', '"/GPU:\\x31"',
                  '"/G\\x50U:1"', '"GPU:01"', '"/job:w/replica:0/task:0/device:GPU:1"'),
}
# How a call is written around its arguments.
CALL_SHAPES = (
    "{f}({a})", "{f} ({a})", "{f}(\n    {a})", "({f})({a})", "{f}(  # pick\n    {a})", "y = [{f}({a})]",
    "{f}(\\\n{a})",
)


def _import_for(api) -> str:
    root = api.name.split(".")[0]
    lines = ["import torch", "from torch.cuda import current_device as cd"]
    if api.name != "*" and "." in api.name:
        lines.append(f"import {root}")
    return "\n".join(lines)


def _call(api, spec, value: str, shape: str, catalog) -> list:
    """Source texts that hand `value` to `spec` of `api`."""
    modules = next((f.modules for f in catalog.frameworks if f.name == api.framework), ())
    head = _import_for(api)
    if modules:
        head += f"\nimport {modules[0].split('.')[0]}"
    if api.kind == "method":
        callees = [f"x.{api.last_name}"]
    elif api.name == "*":
        callees = ["Anything"]
        if modules:
            head += f"\nfrom {modules[0]} import Anything"
    else:
        callees = [api.name]
        if "." in api.name:
            mod, _, last = api.name.rpartition(".")
            callees.append("alias_of_it")
            head_alias = f"\nfrom {mod} import {last} as alias_of_it"
        else:
            head_alias = ""
    out = []
    for callee in callees:
        args = []
        if spec.keyword and (spec.position is None or callee == "Anything"):
            guard = f", {spec.when_keyword}={spec.when_equals!r}" if spec.when_keyword else ""
            args = [f"{spec.keyword}={value}{guard}"]
        elif spec.position is not None:
            before = []
            for i in range(spec.position):
                before.append(repr(spec.when_equals) if spec.when_position == i else "None")
            args = before + [value]
        else:
            continue
        text = head + (head_alias if callee == "alias_of_it" else "") + "\n" + shape.format(f=callee, a=", ".join(args)) + "\n"
        out.append(text)
        if spec.keyword and spec.position is not None and callee != "Anything":
            guard = f", {spec.when_keyword}={spec.when_equals!r}" if spec.when_keyword else ""
            out.append(head + "\n" + shape.format(f=callee, a=f"{spec.keyword}={value}{guard}") + "\n")
    return out


def _api_examples():
    catalog = catalog_for(Policy(visible_devices="1"))
    seen = set()
    for api in catalog.apis:
        for spec in api.args:
            kind = spec.value or "ordinal"
            for i, value in enumerate(VALUES.get(kind, VALUES["ordinal"])):
                # every value in the plain shape and one other; every shape over the values
                for shape in {CALL_SHAPES[0], CALL_SHAPES[1 + i % (len(CALL_SHAPES) - 1)]}:
                    for text in _call(api, spec, value, shape, catalog):
                        if text not in seen:
                            seen.add(text)
                            yield text


# String forms (gpufix.collectors.StringForm) spelled every way a literal can spell a value.
SPELLED = (
    'x = "cuda:\\x31"', 'x = "cu" "da:1"', 'x = ("cu"\n     "da:1")', 'x = "cu\\\nda:1"', 'x = "cuda:0" "1"',
    'x = "\\x63uda:1"', 'x = "cuda:\\N{DIGIT ONE}"', 'x = f"cu" "da:1"', "x = 'cuda:' '1'", 'x = "cuda:\\061"',
    'x = "cuda:\\u0031"', 'x = u"cuda:" r"2"', 'x = """cu""" "da:3"', 'x = "cuda:01"', 'x = "cuda:0"',
    'import torch\nimport os\nos.environ["CUDA_VISIBLE_" "DEVICES"] = "0"', 'import torch\nimport os\nos.environ["CUDA_\\x56ISIBLE_DEVICES"] = "1"',
    'import os\nos.environ["CUDA_DEVICE_" "ORDER"] = "FASTEST_FIRST"', 'import os\nos.environ.setdefault("CUDA_VISIBLE_DEV" "ICES", "1")',
    'import onnxruntime as ort\ns = ort.InferenceSession("m", providers=[("CUDAExecutionProvider", {"device_" "id": 1})])',
    'import onnxruntime as ort\ns = ort.InferenceSession("m", providers=[("CUDAExecutionProvider", {"device\\x5fid": 1})])',
    'import tensorflow as tf\nwith tf.device("/GP" "U:1"):\n    pass',
    'import tensorflow as tf\nwith tf.device("/\\x47PU:1"):\n    pass',
    'import tensorflow as tf\nwith tf.device("/g\\x70u:2"):\n    pass',
    'import tensorflow as tf\nwith tf.device("/GPU:" "1"):\n    pass',
    'import tensorflow as tf\nwith tf.device("/GPU:\\N{DIGIT ONE}"):\n    pass',
)
# Forms whose text the focus of a big file or the tiers once missed.
SHAPES = (
    "import pynvml\nimport torch\nh = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())",
    "from pynvml import nvmlDeviceGetHandleByIndex as by_index\nfrom torch.cuda import current_device as cur\nh = by_index(cur())",
    "import argparse\np = argparse.ArgumentParser()\np.add_argument(\"-g\", \"--gpu_id\", type=int, default=1)\na = p.parse_args()",
    "import argparse\np = argparse.ArgumentParser()\np.add_argument(\n    '-d',\n    '--device-ids', default='1', help='the GPU to use')",
    "import argparse\np = argparse.ArgumentParser()\np.add_argument('-g', '--g' 'pu', type=int, default=1)",
)


def _big(body: str) -> str:
    """`body` in the middle of a file long enough to be walked by focused statements."""
    filler = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(120))
    return "import torch\n\n" + filler + body + "\n\n" + filler


DECORATED = (
    "@torch.cuda.device(1)\ndef g():\n    pass",
    "@torch.cuda.device(\n    1)\nasync def g():\n    pass",
    "@torch.no_grad()\n@torch.cuda.device(1)\nclass C:\n    pass",
)


def _outcome(text: str, path: str, policy: Policy, prefilter: bool) -> tuple:
    raw = text.encode()
    res = lint_bytes(raw, "/nonexistent/" + path, path, policy, prefilter, catalog_for(policy))
    findings = [json.dumps(_finding_to_cache(f), sort_keys=True) for f in res.findings]
    errors = [json.dumps(dataclasses.asdict(e), sort_keys=True) for e in res.errors]
    return findings, errors


def _check_all(examples, path="prog.py", want='"rule": "GPU0') -> int:
    """Assert on == off for every example under every policy; return how many had a finding whose
    JSON holds `want` (default: a device-ordinal finding, GPU0xx)."""
    reported = 0
    for text in examples:
        for policy in POLICIES:
            full = _outcome(text, path, policy, False)
            fast = _outcome(text, path, policy, True)
            assert fast == full, f"prefilter changed the outcome under {policy.visible_devices!r}:\n{text}\n" \
                                 f"missing: {sorted(set(full[0]) - set(fast[0]))[:3]}\nerrors: {fast[1]} vs {full[1]}"
            if any(want in f for f in full[0]):
                reported += 1
    return reported


def test_every_catalogued_argument_in_every_call_shape():
    examples = list(_api_examples())
    assert len(examples) > 500
    reported = _check_all(examples)
    # most examples are findings under one policy at least: the generator exercises the analysis
    assert reported > len(examples) // 2, (reported, len(examples))


@pytest.mark.parametrize("text", SPELLED + SHAPES, ids=range(len(SPELLED + SHAPES)))
def test_every_spelling_of_a_string_form(text):
    reported = _check_all([text], want='"rule": "GPU1' if "environ" in text or "add_argument" in text else '"rule": "GPU0')
    zero = text.endswith('"cuda:0"')
    assert reported == 0 if zero else reported > 0, "the example no longer makes a finding: fix the example"


@pytest.mark.parametrize("text", SPELLED + DECORATED, ids=range(len(SPELLED + DECORATED)))
def test_the_same_in_a_big_file(text):
    body = text if text.startswith("@") else "\n".join(ln for ln in text.split("\n") if not ln.startswith("import "))
    head = "\n".join(ln for ln in text.split("\n") if ln.startswith("import ")) + "\nimport functools\n"
    big = head + _big(body)
    assert big.count("\n") > 250
    zero = text.endswith('"cuda:0"')
    reported = _check_all([big], want='"rule": "GPU1' if "environ" in text else '"rule": "GPU0')
    assert reported == 0 if zero else reported > 0


def test_every_declared_string_form_is_exercised():
    """A collector that declares a new string form needs its spellings above."""
    catalog = catalog_for(Policy(visible_devices="1"))
    values = {form.value.lower() for form in registry.collectors().string_forms(catalog)}
    keys = set(catalog.dict_keys)
    covered = {"cuda:", "pu:", "cuda_visible_devices", "cuda_device_order", "device_id"}
    assert values - {k.lower() for k in keys} <= covered, values
    assert [c.name for c in registry.collectors().all if list(c.string_forms(catalog))]


def test_a_pep695_file_is_judged_alike_with_and_without_the_prefilter():
    text = "import torch\ntype Index = int\n\n\ndef pick[T](x: T) -> T:\n    return x\n\n\ntorch.cuda.set_device(1)\n"
    for policy in POLICIES:
        assert _outcome(text, "prog.py", policy, True) == _outcome(text, "prog.py", policy, False)
