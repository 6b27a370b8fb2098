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


def env_write(choose, binding, var: str, value: str) -> str:
    _, environ, putenv = binding
    q = choose(('"', "'"))
    forms = []
    if environ:
        forms += [
            f"{environ}[{q}{var}{q}] = {q}{value}{q}",
            f"{environ}[{q}{var}{q}] = {q}{value}{q}",
            f'{environ}.update({{"{var}": "{value}"}})',
            f'{environ}.update({var}="{value}")',
            f'{environ}.setdefault("{var}", "{value}")',
        ]
        if value.isdigit():
            forms.append(f"{environ}[{q}{var}{q}] = {value}")
    if putenv:
        forms.append(f'{putenv}("{var}", "{value}")')
    return choose(forms)


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
    ),
    "tensorflow": (("import tensorflow as tf", {"tf": "tf"}), ("import tensorflow", {"tf": "tensorflow"})),
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


def program(choose) -> tuple:
    """(source text, is_notebook, policy value)."""
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
        writes.append((env_write(choose, binding, var, value),
                       choose(("early", "early", "late", "late", "func", "main", "branch", "try", "else"))))

    body: list = [["value0 = 0"]]  # units: list of lines
    k = 0
    if binding is not None and binding[0]:
        body.append([binding[0]])
    for line, where in writes:
        if where == "early":
            body.append([line])
    body.extend(fw_imports)
    for line, where in writes:
        if where == "late":
            body.append([line])
        elif where == "branch":
            body.append(["if True:", "    " + line])
        elif where == "try":
            body.append(["try:", "    " + line, "except KeyError:", "    pass"])
        elif where == "else":
            body.append(["if not value0:", "    pass", "else:", "    " + line])
        elif where == "func":
            k += 1
            body.append([f"def setup{k}():", "    " + line, f"setup{k}()"])
    for _ in range(choose((1, 2, 3, 4))):
        k += 1
        unit = choose(device_calls(choose, names, k))
        if len(unit) == 1 and not unit[0].endswith(":") and "#" not in unit[0]:
            # What a user silenced is never rewritten, and must not change meaning under a new mask.
            unit = [unit[0] + choose(("", "", "", "", "  # gpufix: ignore[GPU001]", "  # noqa: GPU001", "  # gpufix: ignore"))]
        shape = choose(("plain", "plain", "plain", "func", "branch"))
        if shape == "func" and not unit[0].startswith("def "):
            unit = [f"def run{k}():"] + indent(unit) + [f"run{k}()"]
        elif shape == "branch" and not unit[0].startswith("def "):
            unit = ["if True:"] + indent(unit)
        body.append(unit)
    main_writes = [line for line, where in writes if where == "main"]
    if main_writes or choose((False, True)):
        k += 1
        tail = main_writes + choose([u for u in device_calls(choose, names, k) if not u[0].startswith("def ")])
        body.append(['if __name__ == "__main__":'] + indent(tail))

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
    if not notebook:
        if choose((False, True)):
            head.append(choose(('"""Train the model on one GPU."""', "'''Docstring.'''", '"""Multi-line\n\ndocstring."""')))
        if choose((False, True)):
            head.append("from __future__ import annotations")
        if choose((False, True)):
            head.append(choose(("# Copyright the authors", "#!/usr/bin/env python\n# -*- coding: utf-8 -*-")))
    lines = head + [ln for unit in joined for ln in unit]
    if not notebook:
        return "\n".join(lines) + "\n", False, policy
    return _notebook(choose, joined), True, policy


def _simple(line: str) -> bool:
    return not line.rstrip().endswith(":") and "#" not in line and not line.startswith(("if ", "def ", "with ", "try"))


def _notebook(choose, units: list) -> str:
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
        extra = choose((None, None, "%matplotlib inline", "!nvidia-smi", "%%time", "%env CUDA_VISIBLE_DEVICES=0"))
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


def random_program(rng: random.Random) -> tuple:
    """(raw bytes, path, Policy) from a seeded random generator (the long run)."""
    text, notebook, policy = program(lambda seq: rng.choice(list(seq)))
    return text.encode(), ("prog.ipynb" if notebook else "prog.py"), Policy(visible_devices=policy)


def hypothesis_program():
    from hypothesis import strategies as st

    @st.composite
    def build(draw):
        text, notebook, policy = program(lambda seq: draw(st.sampled_from(list(seq))))
        return text.encode(), ("prog.ipynb" if notebook else "prog.py"), Policy(visible_devices=policy)

    return build()
