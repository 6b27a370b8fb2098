"""The differential test: the fast path (text prefilter, header-only tier, focused walks) and the
exhaustive path (`--no-prefilter`: parse and analyse every file whole) must give identical findings
and errors: on every fixture (the bundled real-code corpus), on a generated corpus, and on the
semantic oracle's generated programs, with and without a policy, in each header scope."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from gpufix.config import load_policy
from gpufix.engine import Options, _finding_to_cache, scan

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
SCOPES = ("gpu-modules", "entrypoints", "all")
POLICIES = {"no-policy": None, "policy-1": "1", "policy-uuid": "GPU-aaaaaaaa-0000-0000-0000-000000000000,0"}


def findings(paths, visible, scope, prefilter: bool, config=None, errors: bool = False):
    """The findings of a scan as JSON lines (and its errors after them, with `errors`)."""
    policy = load_policy([str(p) for p in paths], config_file=config,
                         overrides={"visible_devices": visible, "select": (), "ignore": (), "header_scope": scope})
    res = scan([str(p) for p in paths], policy, Options(use_prefilter=prefilter, use_cache=False, jobs=1))
    out = [json.dumps(_finding_to_cache(f), sort_keys=True) for f in res.findings]
    if errors:
        out += [json.dumps(dataclasses.asdict(e), sort_keys=True) for e in res.errors]
    return out


def assert_same(paths, visible, scope, config=None):
    """Identical findings and errors with the prefilter on and off."""
    fast = findings(paths, visible, scope, True, config, errors=True)
    full = findings(paths, visible, scope, False, config, errors=True)
    missing = sorted(set(full) - set(fast))
    extra = sorted(set(fast) - set(full))
    assert not missing and not extra, f"prefilter false negatives: {missing[:5]}\nextra: {extra[:5]}"
    assert fast == full


FIXTURE_DIRS = sorted(p for p in FIXTURES.iterdir() if p.is_dir())


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("visible", list(POLICIES.values()), ids=list(POLICIES))
@pytest.mark.parametrize("fixture", FIXTURE_DIRS, ids=lambda p: p.name)
def test_fixtures_fast_equals_exhaustive(fixture, visible, scope, monkeypatch):
    monkeypatch.chdir(fixture)
    assert_same([fixture], visible, scope)


# -- a generated corpus ------------------------------------------------------------------------------
IMPORTS = [
    "import torch", "import torch as T", "import torch as th", "from torch import cuda", "from torch import cuda as C",
    "from torch.cuda import set_device", "from torch.cuda import set_device as pick", "import torch.cuda",
    "from torch.cuda import device as D", "import tensorflow as tf", "from tensorflow import device as tfdev",
    "import cupy as cp", "from cupy.cuda import Device", "from numba import cuda", "import numba",
    "import pycuda.driver as drv", "import onnxruntime as ort", "from transformers import pipeline",
    "from transformers import pipeline as make_pipe", "import whisper", "from faster_whisper import WhisperModel",
    "import pynvml", "from pynvml import *", "from pynvml import nvmlDeviceGetHandleByIndex as by_index",
    "import ctranslate2", "from accelerate import dispatch_model", "import os", "import numpy as np",
    "from sentence_transformers import SentenceTransformer", "import jax", "import keras",
    "try:\n    import torch\nexcept ImportError:\n    torch = None",
    "if True: import torch",
    "import os; import torch",
    "from torch \\\n    import nn",
    "import lightning as L", "from pytorch_lightning import Trainer", "from lightning.fabric import Fabric",
    "from diffusers import DiffusionPipeline", "from accelerate import cpu_offload", "import subprocess",
    "import argparse\nparser = argparse.ArgumentParser()\nparser.add_argument('--gpu-id', type=int, default={n})\nargs = parser.parse_args()",
    "from dataclasses import dataclass\n@dataclass\nclass Cfg:\n    gpu_id: int = {n}",
    "GPU = {n}", "WHICH = {n}\nchosen = WHICH", "DEVICES = [{n}]", "IDX = '{n},'",
]
STATEMENTS = [
    "x = torch.zeros(3).cuda({n})", "x = T.ones(1).to({n})", "x = th.ones(1).to('cuda:{n}')", "torch.cuda.set_device({n})",
    "set_device({n})", "pick({n})", "C.set_device({n})", "dev = torch.device('cuda', {n})", "dev = torch.device('cuda:{n}')",
    "dev = torch.device(index={n})", "with torch.cuda.device({n}):\n    pass", "with D({n}):\n    pass",
    "p = torch.cuda.get_device_properties({n})", "torch.cuda.synchronize({n})", "torch.cuda.synchronize()",
    "m = torch.nn.DataParallel(model, device_ids=[0, {n}])", "m = torch.nn.DataParallel(model, [0, {n}], {n})",
    "m = torch.nn.parallel.DistributedDataParallel(model, device_ids=[{n}])",
    "with tf.device('/GPU:{n}'):\n    pass", "with tfdev('/device:gpu:{n}'):\n    pass",
    "cp.cuda.Device({n}).use()", "Device({n}).use()", "cuda.select_device({n})", "numba.cuda.select_device({n})",
    "drv.Device({n})", "s = ort.InferenceSession('m.onnx', providers=[('CUDAExecutionProvider', {{'device_id': {n}}})])",
    "pipe = pipeline('asr', device={n})", "pipe = make_pipe('asr', device={n})", "model = whisper.load_model('base', device='cuda:{n}')",
    "model = WhisperModel('x', device='cuda', device_index={n})", "model = WhisperModel('x', device_index=[0, {n}])",
    "h = pynvml.nvmlDeviceGetHandleByIndex({n})", "h = nvmlDeviceGetHandleByIndex({n})", "h = by_index({n})",
    "model = dispatch_model(model, device_map={{'': {n}}})", "m = load(max_memory={{0: '10GB', {n}: '10GB'}})",
    "m = from_pretrained('x', device_map={{'': {n}}})", "st = SentenceTransformer('x', device='cuda:{n}')",
    "state = torch.load('x.pt', map_location={{'cuda:{n}': 'cuda:0'}})", "x = y.cuda(  # pick\n    {n})",
    "x = y.to(\n    {n})", "x = (torch.cuda.set_device)({n})", "torch.cuda.set_device(0x{n})", "torch.cuda.set_device(device={n})",
    "torch.cuda.set_per_process_memory_fraction(0.5, {n})", "torch.cuda.memory_allocated({n})",
    "os.environ['CUDA_VISIBLE_DEVICES'] = '{n}'", "os.environ[\"CUDA_VISIBLE_DEVICES\"] = {n}",
    "os.environ['CUDA_DEVICE_ORDER'] = 'FASTEST_FIRST'", "os.environ['CUDA_DEVICE_ORDER'] = 'PCI_BUS_ID'",
    "os.environ.setdefault('CUDA_VISIBLE_DEVICES', '{n}')", "os.putenv('CUDA_VISIBLE_DEVICES', '{n}')",
    "os.environ.update(CUDA_VISIBLE_DEVICES='0,{n}')", "os.environ['CUDA_VISIBLE_DEVICES'] = '1,0'",
    "print(os.environ['CUDA_VISIBLE_DEVICES'])", "cmd = 'CUDA_VISIBLE_DEVICES={n} python train.py'",
    "x = torch.zeros(3).cuda({n})  # noqa: GPU001", "x = torch.zeros(3).cuda({n})  # gpufix: ignore",
    "y = compute(device_ids)", "z = f(index=3)", "note = 'set_device(1) is what we used to call'",
    "t = L.Trainer(devices=[{n}])", "t = Trainer(devices='{n},')", "t = Trainer(gpus={n})", "t = Trainer(devices=[0, {n}])",
    "f = Fabric(devices=DEVICES)", "t = Trainer(devices=IDX)", "pipe.enable_model_cpu_offload(gpu_id={n})",
    "pipe.enable_sequential_cpu_offload({n})", "cpu_offload(model, execution_device={n})",
    "tf.config.set_visible_devices(gpus[{n}], 'GPU')", "tf.config.set_visible_devices([gpus[0], gpus[{n}]], 'GPU')",
    "tf.config.experimental.set_memory_growth(tf.config.list_physical_devices('GPU')[{n}], True)",
    "torch.cuda.set_device(GPU)", "x = y.to(f'cuda:{{GPU}}')", "x = y.to('cuda:{{}}'.format(chosen))", "x = y.cuda(args.gpu_id)",
    "x = y.to('cuda:%d' % cfg.gpu_id)", "h = pynvml.nvmlDeviceGetHandleByIndex(chosen)", "with tf.device(f'/GPU:{{WHICH}}'):\n    pass",
    "def run(rank={n}):\n    return torch.zeros(1).cuda(rank)", "def run(rank={n}):\n    print(rank)\n    return torch.device('cuda', rank)",
    "GPU = {n} + 1", "subprocess.run(['x'], env={{**os.environ, 'CUDA_VISIBLE_DEVICES': '{n}'}})",
    "subprocess.run(['x'], env=dict(os.environ, CUDA_VISIBLE_DEVICES={n}))",
    "env = os.environ.copy()\nenv['CUDA_VISIBLE_DEVICES'] = '{n}'",
    # real ones next to text the confirmation rejects, or where it must not reject
    "x = y.to('' 'cuda:{n}')", 'x = y.to("""cuda:{n}""")', "'''set_device(''' ; torch.cuda.set_device({n})",
    "print(f'{{torch.cuda.set_device({n})}}')", "x = y.to(f'cuda:{n}')", "d = {{'device_id': {n}}}",
]
DECOYS = [
    '"""Example:\n\n    import torch\n    torch.cuda.set_device(1)\n    x.to("cuda:1")\n"""',
    "# torch.cuda.set_device(1); os.environ['CUDA_VISIBLE_DEVICES'] = '1'",
    "s = 'import torch'",
    "s = '''\nimport tensorflow\n'''",
    "def to(n):\n    return n",
    "x = 'cuda:' + str(1)",
    "torchvision_like = 1",
    "class Device:\n    pass",
    "value = thing.pipeline",
    "x = y.to(dtype)", "device = torch.device('cuda')\nz = w.to(device)", "t = Trainer(devices=4)",
    "s = 'up to (H, W) pixels'",
    # hits the prefilter confirms in their token context (gpufix.lexical) and rejects
    '"""Use device_ids=[1] or DataParallel(m, [0, 1], 1); set_device(1) too."""',
    "class DistributedDataParallel(torch.nn.Module):\n    pass", "def set_device(n):\n    return n",
    "msg = 'moved to cuda:1 now'  # torch.cuda.set_device(1)", "x = 1  # device=1, cuda.select_device(1)",
    "s = '''\nos.environ['CUDA_VISIBLE_DEVICES'] = '1'\n'''",
]
TAILS = ["", "if __name__ == '__main__':\n    main()", "# gpufix: ignore-file", "# gpufix: ignore-file[GPU101]"]


def _module(rng: random.Random) -> str:
    parts = []
    if rng.random() < 0.15:
        parts.append("#!/usr/bin/env python")
    if rng.random() < 0.3:
        parts.append('"""A module."""')
    if rng.random() < 0.2:
        parts.append("from __future__ import annotations")
    for _ in range(rng.randint(0, 3)):
        parts.append(rng.choice(IMPORTS))
    for _ in range(rng.randint(0, 2)):
        parts.append(rng.choice(DECOYS))
    body = []
    for _ in range(rng.randint(0, 4)):
        body.append(rng.choice(STATEMENTS).format(n=rng.choice([0, 1, 1, 2, 3])))
    if rng.random() < 0.3:
        parts.append("def main():\n" + "\n".join("    " + ln for s in (body or ["pass"]) for ln in s.split("\n")))
    else:
        parts.extend(body)
    if rng.random() < 0.3:
        parts.append(rng.choice(TAILS))
    if rng.random() < 0.03:
        parts.append("print 'python 2'")
    return "\n".join(parts) + "\n"


def _notebook(rng: random.Random) -> str:
    cells = []
    for _ in range(rng.randint(1, 4)):
        src = _module(rng)
        if rng.random() < 0.3:
            src = rng.choice(["%env CUDA_VISIBLE_DEVICES=1\n", "!nvidia-smi\n", "%matplotlib inline\n"]) + src
        cells.append({"cell_type": rng.choice(["code", "code", "markdown"]), "metadata": {}, "source": src.splitlines(True),
                      "outputs": [], "execution_count": None})
    for c in cells:
        if c["cell_type"] == "markdown":
            del c["outputs"], c["execution_count"]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(20240601)
    root = tmp_path_factory.mktemp("corpus")
    names = ["mod_{}.py", "test_{}.py", "{}_test.py", "script_{}.py", "nb_{}.ipynb"]
    for i in range(320):
        pattern = rng.choice(names)
        sub = root / rng.choice(["pkg", "pkg/sub", "tests", "scripts"])
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / pattern.format(i)
        path.write_text(_notebook(rng) if path.suffix == ".ipynb" else _module(rng), encoding="utf-8")
    (root / "conftest.py").write_text("import torch\n", encoding="utf-8")
    # an NVML index through a name (GPU003 by value flow), whatever the random draw holds
    (root / "pkg").mkdir(exist_ok=True)
    (root / "pkg" / "nvml_flow.py").write_text("import pynvml\nINDEX = 0\nh = pynvml.nvmlDeviceGetHandleByIndex(INDEX)\n", encoding="utf-8")
    (root / "pkg" / "mask_int.py").write_text("import os\nos.environ['CUDA_VISIBLE_DEVICES'] = 1\nimport torch\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("visible", list(POLICIES.values()), ids=list(POLICIES))
def test_generated_corpus_fast_equals_exhaustive(corpus, visible, scope, monkeypatch):
    monkeypatch.chdir(corpus)
    assert_same([corpus], visible, scope)


def test_generated_corpus_has_findings_of_every_kind(corpus, monkeypatch):
    monkeypatch.chdir(corpus)
    rules = {json.loads(f)["rule"] for f in findings([corpus], "1", "gpu-modules", True)}
    assert {"GPU001", "GPU002", "GPU003", "GPU101", "GPU102", "GPU103", "GPU105", "GPU106", "GPU107"} <= rules
    flows = [json.loads(f)["message"] for f in findings([corpus], "1", "gpu-modules", True)]
    assert any("passed to" in m or "string on line" in m for m in flows)  # value flow really exercised


def test_prefilter_skips_most_of_the_corpus_text_only_files(tmp_path, monkeypatch):
    """The fast path really skips: files with no GPU text are never parsed. A broken file that can
    hold no finding is reported by neither path (it is not gpufix's to judge); a broken GPU file by
    both."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain.py").write_text("import os\nprint(os.getcwd())\n", encoding="utf-8")
    (tmp_path / "broken.py").write_text("def f(:\n", encoding="utf-8")
    (tmp_path / "pep695.py").write_text("type Index = int\n\n\ndef pick[T](x: T) -> T:\n    return x\n", encoding="utf-8")
    (tmp_path / "broken_gpu.py").write_text("import torch\ntorch.cuda.set_device(1)\ndef f(:\n", encoding="utf-8")
    policy = load_policy([str(tmp_path)], overrides={"visible_devices": None, "select": (), "ignore": (), "header_scope": None})
    fast = scan([str(tmp_path)], policy, Options(use_prefilter=True, use_cache=False, jobs=1))
    full = scan([str(tmp_path)], policy, Options(use_prefilter=False, use_cache=False, jobs=1))
    assert [(e.path, e.kind, e.line) for e in fast.errors] == [("broken_gpu.py", "syntax-error", 3)]
    assert fast.errors == full.errors
    assert [r.path for r in fast.results if r.parsed] == ["broken_gpu.py"]


def test_a_device_list_in_a_module_the_header_scope_skips(tmp_path, monkeypatch):
    """GPU004's device list with no literal index (`torch.device("cuda", i)`) in a module that is
    no entry point: no ordinal test of the prefilter sees it, the multi-GPU collector's
    parse_tests do (found by comparing both paths on a package)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "eqp"\n', encoding="utf-8")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "pkg" / "mod.py").write_text(
        'import torch\n\n\ndef replicas(n):\n    x = "cuda:0"\n    return [torch.device("cuda", i) for i in range(n)]\n',
        encoding="utf-8")
    for scope in SCOPES:
        assert_same([tmp_path], "1", scope)
    fast = [json.loads(f) for f in findings([tmp_path], "1", "entrypoints", True)]
    assert [(f["path"], f["line"], f["rule"]) for f in fast if f["rule"] == "GPU004"] == [("pkg/mod.py", 4, "GPU004")]


# -- the oracle's generated programs -----------------------------------------------------------------
ORACLE_PROGRAMS = 600


@pytest.fixture(scope="module")
def oracle_tree(tmp_path_factory):
    """The oracle's grammar (tests/oracle/gen.py): every program it generates for a fixed seed, one
    file each, in one tree, with the policy it was generated with."""
    from oracle.gen import random_program

    rng = random.Random(21)
    root = tmp_path_factory.mktemp("oracle")
    policies = {}
    for i in range(ORACLE_PROGRAMS):
        raw, path, policy = random_program(rng)
        name = f"prog_{i}" + (".ipynb" if path.endswith(".ipynb") else ".py")
        (root / name).write_bytes(raw)
        policies[name] = policy
    return root, policies


def test_oracle_programs_fast_equals_exhaustive(oracle_tree):
    """Each program linted alone under its own policy, and the whole tree scanned in each scope."""
    from gpufix.catalog import catalog_for
    from gpufix.engine import lint_bytes

    root, policies = oracle_tree
    checked = 0
    for name, policy in sorted(policies.items()):
        raw = (root / name).read_bytes()
        catalog = catalog_for(policy)
        fast = lint_bytes(raw, str(root / name), name, policy, True, catalog)
        full = lint_bytes(raw, str(root / name), name, policy, False, catalog)
        assert (fast.findings, fast.errors) == (full.findings, full.errors), name
        checked += bool(full.findings)
    assert checked > ORACLE_PROGRAMS // 2  # the grammar's programs do hold findings


@pytest.mark.parametrize("scope", SCOPES)
def test_oracle_tree_fast_equals_exhaustive(oracle_tree, scope, monkeypatch):
    root, _ = oracle_tree
    monkeypatch.chdir(root)
    assert_same([root], "1", scope)
