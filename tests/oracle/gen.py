"""A grammar of small GPU-configuration programs, as people write them.

`program(choose)` builds one program; `choose(options)` picks one of a sequence. Hypothesis drives
it in the test-suite (`hypothesis_program`, shrinkable); the long run drives it with a seeded
`random.Random` (`random_program`), which is faster and counts counterexamples by family.

The grammar: every way to bind `os`/`environ` and to write the environment (item assignment, int
values, `update` with a dict or keywords, `setdefault`, `putenv`); where the write is (before or
after the framework import, in a function, a branch, a `__main__` guard, on a line with other
statements); import shapes (plain, alias, multi-name, from-imports, star, try/except); every
ordinal form the catalogue knows, in every string form (quotes, prefixes, f-strings, implicit
concatenation, triple quotes); docstrings, `from __future__`, comments; notebooks (with `%env`,
line magics, shell escapes, `%%time` cells); and the policies "1", "0", "1,0", "2,3", a GPU UUID.

Grown by the families an adversarial review found (issue 20), with their neighbours: mask writes
through `update` with a dict literal / a named settings dict / `dict(...)` / `|` merges / `**`
spreads, `os.environ |= {...}`, `__setitem__`, an alias (`env = os.environ`, `setdefault` through
it), a loop over a settings dict's items, a nested helper; frameworks reached without an import
statement (`importlib.import_module`, `__import__`, a loader function called at module level);
value flow through a walrus, tuple unpacking and `str.format` keyword fields; two ordinals in one
unit (a reordered mask must not merge them); `%set_env` in notebooks; `from __future__ import
annotations; import torch` on one line.

`program(choose, tags)` adds to `tags` the families a program uses (the long run counts
counterexamples by them); families listed in PENDING are fixed by work not merged yet and are left
out of the in-suite run (`program(choose, skip=PENDING)`), never out of the long run.
"""

from __future__ import annotations

import json
import random

from gpufix.config import Policy

UUID = "GPU-8f2c1d3e-1a2b-4c5d-9e8f-0123456789ab"
POLICIES = ("1", "0", "1,0", "2,3", UUID, "0,1")
MASKS = ("0", "1", "1,0", "0,1", "2,3", "3", "2")
ORDINALS = (0, 1, 1, 2, 3)

OS_BINDINGS = (
    # (statement, environ expression or None, putenv expression or None)
    ("import os", "os.environ", "os.putenv"),
    ("import os as o", "o.environ", "o.putenv"),
    ("import os, sys", "os.environ", "os.putenv"),
    ("import sys, os", "os.environ", "os.putenv"),
    ("from os import environ", "environ", None),
    ("from os import environ as env", "env", None),
    ("from os import putenv", None, "putenv"),
    ("from os import environ, putenv", "environ", "putenv"),
    ("import os.path", "os.environ", "os.putenv"),
    ("import os  # for the GPU mask", "os.environ", "os.putenv"),
    ("import os as _os", "_os.environ", "_os.putenv"),
    ("from os import environ as ENV, putenv as put", "ENV", "put"),
)


def cuda_string(choose, n: int) -> str:
    return choose((
        f'"cuda:{n}"', f"'cuda:{n}'", f'f"cuda:{n}"', f'r"cuda:{n}"', f'u"cuda:{n}"', f'"cuda:" "{n}"',
        f'"""cuda:{n}"""', f'"cu" f"da:{n}"', f'R"cuda:{n}"', f'"cuda:{n}"',
    ))


# Families fixed by another issue's branch, not merged yet: the in-suite run skips them (none now:
# `from __future__ ...; import torch` on one line is placed since issue 23).
PENDING: tuple = ()


def env_write(choose, binding, var: str, value: str, tags=None) -> str:
    """One write of `var` (possibly several lines, joined with newlines)."""
    _, environ, putenv = binding
    q = choose(('"', "'"))
    forms = []
    short = "MASK" if var == "CUDA_VISIBLE_DEVICES" else "ORDER"
    if environ:
        forms += [
            ("setitem", f"{environ}[{q}{var}{q}] = {q}{value}{q}"),
            ("setitem", f"{environ}[{q}{var}{q}] = {q}{value}{q}"),
            ("update-dict", f'{environ}.update({{"{var}": "{value}"}})'),
            ("update-keywords", f'{environ}.update({var}="{value}")'),
            ("setdefault", f'{environ}.setdefault("{var}", "{value}")'),
            ("update-dict-call", f'{environ}.update(dict({var}="{value}"))'),
            ("update-named", f'{short}_SETTINGS = {{"{var}": "{value}"}}\n{environ}.update({short}_SETTINGS)'),
            ("update-merge", f'{environ}.update({{"OMP_NUM_THREADS": "1"}} | {{"{var}": "{value}"}})'),
            ("update-spread", f'{short}_SETTINGS = {{"{var}": "{value}"}}\n{environ}.update(**{short}_SETTINGS)'),
            # `name |= ...` in a function would bind a local `name`: only through an attribute or
            # an alias bound next to it
            ("ior", f'{environ} |= {{"{var}": "{value}"}}' if "." in environ else f'env_ = {environ}\nenv_ |= {{"{var}": "{value}"}}'),
            ("setitem-dunder", f'{environ}.__setitem__("{var}", "{value}")'),
            ("alias", f"env_ = {environ}\nenv_[{q}{var}{q}] = {q}{value}{q}"),
            ("alias-setdefault", f'env_ = {environ}\nenv_.setdefault("{var}", "{value}")'),
            ("alias-update", f'env_ = {environ}\nenv_.update({var}="{value}")'),
            ("loop-items", f'{short}_SETTINGS = {{"{var}": "{value}"}}\nfor key_, val_ in {short}_SETTINGS.items():\n    {environ}[key_] = val_'),
            ("loop-keys", f'{short}_SETTINGS = {{"{var}": "{value}"}}\nfor key_ in {short}_SETTINGS:\n    {environ}[key_] = {short}_SETTINGS[key_]'),
        ]
        if value.isdigit():
            forms.append(("setitem-int", f"{environ}[{q}{var}{q}] = {value}"))
    if putenv:
        forms.append(("putenv", f'{putenv}("{var}", "{value}")'))
    family, text = choose(forms)
    if tags is not None:
        tags.add("write:" + family)
    return text


# Framework imports: (statement, {role: name}); `import torch, os` binds os too.
FRAMEWORKS = {
    "torch": (
        ("import torch", {"torch": "torch"}),
        ("import torch as T", {"torch": "T"}),
        ("import torch, os", {"torch": "torch", "os": "os"}),
        ("import os, torch", {"torch": "torch", "os": "os"}),
        ("from torch import cuda", {"tcuda": "cuda"}),
        ("from torch.cuda import set_device", {"set_device": "set_device"}),
        ("from torch.cuda import set_device as pick", {"set_device": "pick"}),
        ("try:\n    import torch\nexcept ImportError:\n    torch = None", {"torch": "torch"}),
        ("import torch.nn as nn\nimport torch", {"torch": "torch"}),
        # reached without an import statement
        ('import importlib\ntorch = importlib.import_module("torch")', {"torch": "torch"}),
        ('from importlib import import_module\nT = import_module("torch")', {"torch": "T"}),
        ('torch = __import__("torch")', {"torch": "torch"}),
        ("def load_backend():\n    import torch\n    return torch\ntorch = load_backend()", {"torch": "torch"}),
        ("def _load():\n    import torch\n    return torch\ndef load_backend():\n    return _load()\ntorch = load_backend()",
         {"torch": "torch"}),
    ),
    "tensorflow": (("import tensorflow as tf", {"tf": "tf"}), ("import tensorflow", {"tf": "tensorflow"}),
                   ('import importlib\ntf = importlib.import_module("tensorflow")', {"tf": "tf"})),
    "cupy": (("import cupy as cp", {"cp": "cp"}), ("import cupy", {"cp": "cupy"})),
    "numba": (("from numba import cuda as ncuda", {"ncuda": "ncuda"}), ("import numba.cuda", {"ncuda": "numba.cuda"})),
    "ctranslate2": (("import ctranslate2", {"ct2": "ctranslate2"}),),
    "faster_whisper": (("from faster_whisper import WhisperModel", {"wm": "WhisperModel"}),
                       ("from faster_whisper import WhisperModel as WM", {"wm": "WM"})),
    "whisper": (("import whisper", {"whisper": "whisper"}),),
    "pynvml": (("import pynvml", {"nvml": "pynvml.nvmlDeviceGetHandleByIndex"}),
               ("from pynvml import *", {"nvml": "nvmlDeviceGetHandleByIndex"})),
    "onnxruntime": (("import onnxruntime as ort", {"ort": "ort"}),),
    "transformers": (("from transformers import pipeline, AutoModel", {"hf": "pipeline", "automodel": "AutoModel"}),
                     ("import transformers", {"hf": "transformers.pipeline", "automodel": "transformers.AutoModel"})),
    "sentence_transformers": (("from sentence_transformers import SentenceTransformer", {"st": "SentenceTransformer"}),),
}


def device_calls(choose, names: dict, k: int) -> list:
    """Statements (each a list of lines) that use the imported names with literal ordinals."""
    n = choose(ORDINALS)
    s = cuda_string(choose, n)
    out = []
    if "torch" in names:
        t = names["torch"]
        out += [
            [f"{t}.cuda.set_device({n})"], [f"{t}.cuda.set_device(+{n})"], [f"{t}.cuda.set_device(device={n})"],
            [f'd{k} = {t}.device("cuda", {n})'], [f'd{k} = {t}.device(type="cuda", index={n})'],
            [f'd{k} = {t}.device(type="cpu", index={n})'], [f'd{k} = {t}.device("cpu", {n})'],
            [f"d{k} = {t}.device({s})"], [f"x{k} = {t}.zeros(2, device={s})"], [f"x{k} = {t}.zeros(2).cuda({n})"],
            [f"x{k} = {t}.zeros(2).to({s})"], [f"x{k} = {t}.zeros(2).to(device={s})  # move it"],
            [f"with {t}.cuda.device({n}):", f"    y{k} = {t}.ones(1)"], [f"name{k} = {t}.cuda.get_device_name({n})"],
            [f'm{k} = {t}.load("m.pt", map_location={{{s}: "cpu"}})'],
            [f'loc{k} = {{{s}: "cuda:0"}}', f'm{k} = {t}.load("m.pt", map_location=loc{k})'],
            [f"net{k} = {t}.nn.DataParallel({t}.nn.Linear(1, 1), device_ids=[0, {n}])"],
            [f"DEVICE{k} = {s}", f"x{k} = {t}.zeros(1).to(DEVICE{k})"],
            [f"p{k} = {t}.cuda.get_device_properties({n})"], [f"free{k} = {t}.cuda.mem_get_info(device={n})"],
            [f"st{k} = {t}.cuda.Stream(device={n})"],
            [f"ddp{k} = {t}.nn.parallel.DistributedDataParallel({t}.nn.Linear(1, 1), device_ids=[{n}], output_device={n})"],
            # value flow: a walrus, tuple unpacking of constants, str.format with a keyword field
            [f"if (g{k} := {n}) is not None:", f'    x{k} = {t}.zeros(1).to(f"cuda:{{g{k}}}")'],
            [f"(g{k} := {n})", f"{t}.cuda.set_device(g{k})"],
            [f"a{k}, g{k} = 0, {n}", f'x{k} = {t}.zeros(1).to(f"cuda:{{g{k}}}")'],
            [f"g{k}, h{k} = {n}, 0", f"{t}.cuda.set_device(g{k})"],
            [f"g{k} = {n}", f'x{k} = {t}.zeros(1).to("cuda:{{i}}".format(i=g{k}))'],
            [f'd{k} = {t}.device("cuda:{{gpu}}".format(gpu={n}))'],
            # two GPUs in one unit: a reordered mask must keep them apart
            [f'a{k} = {t}.zeros(1).to("cuda:0")', f"b{k} = {t}.zeros(1).to({s})"],
        ]
    if "tcuda" in names:
        out += [[f"{names['tcuda']}.set_device({n})"], [f"{names['tcuda']}.get_device_name({n})"]]
    if "set_device" in names:
        sd = names["set_device"]
        out += [[f"{sd}({n})"], [f"def {sd}(i):", f'    print("own set_device", i)', f"{sd}({n})"]]
    if "tf" in names:
        tf = names["tf"]
        out += [[f'with {tf}.device("/GPU:{n}"):', f"    a{k} = {tf}.constant(1)"], [f'c{k} = {tf}.device("/device:GPU:{n}")'],
                [f'c{k} = {tf}.device("/GPU:" "{n}")'], [f"c{k} = {tf}.device('/gpu:{n}')"]]
    if "cp" in names:
        cp = names["cp"]
        out += [[f"{cp}.cuda.Device({n}).use()"], [f"{cp}.cuda.runtime.setDevice({n})"]]
    if "ncuda" in names:
        out += [[f"{names['ncuda']}.select_device({n})"]]
    if "ct2" in names:
        out += [[f'g{k} = {names["ct2"]}.Generator("m", device="cuda", device_index={n})'],
                [f'g{k} = {names["ct2"]}.Translator("m", device="cuda", device_index=[0, {n}])']]
    if "wm" in names:
        out += [[f'w{k} = {names["wm"]}("small", device="cuda", device_index={n})']]
    if "whisper" in names:
        out += [[f'w{k} = {names["whisper"]}.load_model("base", device={s})']]
    if "nvml" in names:
        out += [[f"h{k} = {names['nvml']}({n})"]]
    if "ort" in names:
        out += [[f'sess{k} = {names["ort"]}.InferenceSession("m.onnx", providers=[("CUDAExecutionProvider", {{"device_id": {n}}})])']]
    if "hf" in names:
        out += [[f'pipe{k} = {names["hf"]}("asr", model="m", device={n})'], [f'pipe{k} = {names["hf"]}("asr", device={s})'],
                [f'model{k} = {names["automodel"]}.from_pretrained("m", device_map={{"": {n}}})'],
                [f'model{k} = {names["automodel"]}.from_pretrained("m", device_map="auto", max_memory={{0: "10GiB", {n}: "10GiB"}})']]
    if "st" in names:
        out += [[f'enc{k} = {names["st"]}("all-MiniLM-L6-v2", device={s})']]
    out += [[f'print("step {k}")'], [f"value{k} = {k} * 2  # plain code"]]
    return out


def indent(lines: list, by: str = "    ") -> list:
    return [by + ln if ln else ln for ln in lines]


def program(choose, tags=None, skip=()) -> tuple:
    """(source text, is_notebook, policy value). `tags`, a set, receives the families the program
    uses; families in `skip` are not generated."""
    tags = set() if tags is None else tags
    policy = choose(POLICIES)
    binding = choose(OS_BINDINGS + (None,))
    frameworks = [choose(tuple(FRAMEWORKS))]
    if choose((False, False, True)):
        frameworks.append(choose(tuple(FRAMEWORKS)))
    fw_imports = []
    names: dict = {}
    for fw in frameworks:
        stmt, roles = choose(FRAMEWORKS[fw])
        if any(r in names for r in roles if r != "os"):
            continue
        if "import_module" in stmt or "__import__" in stmt:
            tags.add("import:dynamic")
        elif "load_backend" in stmt:
            tags.add("import:loader")
        fw_imports.append(stmt.split("\n"))
        names.update(roles)
    if binding is None and "os" in names:
        binding = ("", "os.environ", "os.putenv")

    # Env writes: which variables, values, and where.
    writes = []
    for var in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        if binding is None or not choose((True, True, False)):
            continue
        value = choose(MASKS) if var == "CUDA_VISIBLE_DEVICES" else choose(("PCI_BUS_ID", "PCI_BUS_ID", "FASTEST_FIRST"))
        writes.append((env_write(choose, binding, var, value, tags),
                       choose(("early", "early", "late", "late", "func", "main", "branch", "try", "else", "nested"))))

    body: list = [["value0 = 0"]]  # units: list of lines
    k = 0
    if binding is not None and binding[0]:
        body.append([binding[0]])
    writes = [(line.split("\n"), where) for line, where in writes]
    for lines, where in writes:
        if where == "early":
            body.append(lines)
    body.extend(fw_imports)
    for lines, where in writes:
        if where == "late":
            body.append(lines)
        elif where == "branch":
            body.append(["if True:"] + indent(lines))
        elif where == "try":
            body.append(["try:"] + indent(lines) + ["except KeyError:", "    pass"])
        elif where == "else":
            body.append(["if not value0:", "    pass", "else:"] + indent(lines))
        elif where in ("func", "nested"):
            k += 1
            if where == "nested":  # a helper defined in a helper, both called at once
                tags.add("write:nested-helper")
                lines = ["def inner():"] + indent(lines) + ["inner()"]
            if any(ln.startswith(("env_ =", "MASK_SETTINGS", "ORDER_SETTINGS")) for ln in lines):
                pass  # the alias / settings dict is local to the helper: still its own write
            body.append([f"def setup{k}():"] + indent(lines) + [f"setup{k}()"])
    for _ in range(choose((1, 2, 3, 4))):
        k += 1
        unit = choose(device_calls(choose, names, k))
        _tag_unit(unit, tags)
        if len(unit) == 1 and not unit[0].endswith(":") and "#" not in unit[0]:
            # What a user silenced is never rewritten, and must not change meaning under a new mask.
            unit = [unit[0] + choose(("", "", "", "", "  # gpufix: ignore[GPU001]", "  # noqa: GPU001", "  # gpufix: ignore"))]
        shape = choose(("plain", "plain", "plain", "func", "branch"))
        if shape == "func" and not unit[0].startswith("def "):
            unit = [f"def run{k}():"] + indent(unit) + [f"run{k}()"]
        elif shape == "branch" and not unit[0].startswith("def "):
            unit = ["if True:"] + indent(unit)
        body.append(unit)
    main_writes = [ln for lines, where in writes if where == "main" for ln in lines]
    if main_writes or choose((False, True)):
        k += 1
        unit = choose([u for u in device_calls(choose, names, k) if not u[0].startswith("def ")])
        _tag_unit(unit, tags)
        body.append(['if __name__ == "__main__":'] + indent(main_writes + unit))

    # Semicolons: join some single-line simple units with the next one.
    joined: list = []
    for unit in body:
        if (joined and len(unit) == 1 and len(joined[-1]) == 1 and _simple(unit[0]) and _simple(joined[-1][0])
                and choose((False, False, True))):
            joined[-1] = [joined[-1][0] + "; " + unit[0]]
        else:
            joined.append(unit)

    notebook = choose((False, False, False, True))
    head = []
    future_joined = False
    if not notebook:
        if choose((False, True)):
            head.append(choose(('"""Train the model on one GPU."""', "'''Docstring.'''", '"""Multi-line\n\ndocstring."""')))
        if choose((False, True)):
            head.append("from __future__ import annotations")
            # `from __future__ import annotations; import torch`: the future import shares its line
            future_joined = "future-one-line" not in skip and choose((False, False, True))
        if choose((False, True)):
            head.append(choose(("# Copyright the authors", "#!/usr/bin/env python\n# -*- coding: utf-8 -*-")))
    if future_joined:
        tags.add("future-one-line")
        head.remove("from __future__ import annotations")
        first = joined[0]
        joined = [["from __future__ import annotations; " + first[0]] + first[1:]] + joined[1:]
    lines = head + [ln for unit in joined for ln in unit]
    if not notebook:
        return "\n".join(lines) + "\n", False, policy
    return _notebook(choose, joined, tags), True, policy


def _tag_unit(unit: list, tags: set) -> None:
    text = "\n".join(unit)
    if ":=" in text:
        tags.add("flow:walrus")
    elif ".format(i=" in text or ".format(gpu=" in text:
        tags.add("flow:format-keyword")
    elif ", g" in text.split("=")[0] or ", h" in text.split("=")[0]:
        tags.add("flow:tuple")
    elif '"cuda:0")' in text and len(unit) == 2 and unit[0].startswith("a"):
        tags.add("two-gpus")


def _simple(line: str) -> bool:
    return not line.rstrip().endswith(":") and "#" not in line and not line.startswith(("if ", "def ", "with ", "try"))


def _notebook(choose, units: list, tags=None) -> str:
    cells = []
    current: list = []
    for unit in units:
        current.extend(unit)
        if choose((False, True)):
            cells.append(current)
            current = []
    if current:
        cells.append(current)
    out = []
    for lines in cells:
        extra = choose((None, None, "%matplotlib inline", "!nvidia-smi", "%%time", "%env CUDA_VISIBLE_DEVICES=0",
                        "%set_env CUDA_VISIBLE_DEVICES=0", "%set_env CUDA_VISIBLE_DEVICES 1,0"))
        if extra and extra.startswith("%set_env") and tags is not None:
            tags.add("notebook:set_env")
        if extra == "%%time":
            lines = ["%%time"] + lines
        elif extra:
            lines = [extra] + lines
        src = [ln + "\n" for ln in lines]
        src[-1] = src[-1][:-1]
        out.append({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": src})
        if choose((False, True)):
            out.append({"cell_type": "markdown", "metadata": {}, "source": ["# notes"]})
    nb = {"cells": out, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(nb, indent=1) + "\n"


def random_program(rng: random.Random, tags=None) -> tuple:
    """(raw bytes, path, Policy) from a seeded random generator (the long run); `tags`, a set,
    receives the program's families."""
    text, notebook, policy = program(lambda seq: rng.choice(list(seq)), tags)
    return text.encode(), ("prog.ipynb" if notebook else "prog.py"), Policy(visible_devices=policy)


def hypothesis_program(skip=PENDING):
    from hypothesis import strategies as st

    @st.composite
    def build(draw):
        text, notebook, policy = program(lambda seq: draw(st.sampled_from(list(seq))), skip=skip)
        return text.encode(), ("prog.ipynb" if notebook else "prog.py"), Policy(visible_devices=policy)

    return build()
