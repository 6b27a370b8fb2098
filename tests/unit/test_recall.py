"""Recall beyond literal call sites (issue 12, items 1-3): the catalogued APIs people use (Lightning,
diffusers/accelerate offload, tf.config), values that reach a device argument through names, and
masks handed to child processes. Each case: the exact findings, the exact rewritten text, no
finding of that rule left after the fix, and a second fix that changes nothing."""

from __future__ import annotations

import textwrap

import pytest

from gpufix.apply import fix_source
from gpufix.config import policy_from_table
from gpufix.engine import lint_source
from gpufix.source import read_source

HEADER = 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'
POLICY = policy_from_table({"visible-devices": "1"}, "<test>", root="/nonexistent")


def _src(body: str) -> str:
    return HEADER + textwrap.dedent(body).lstrip("\n")


def _lint(text: str, policy=POLICY):
    return lint_source(read_source("case.py", text.encode()), policy).findings


def _fix(text: str, policy=POLICY) -> str:
    return fix_source(read_source("case.py", text.encode()), policy)[0].decode()


def _shape(findings):
    # line numbers are given relative to the body (the 3 header lines are not counted)
    return sorted((f.rule, f.line - 3, f.column, f.fix is not None) for f in findings)


# (body, expected findings [(rule, body line, column, fixable)], body after the fix or None: unchanged)
CASES = {
    # -- item 1: catalogue ------------------------------------------------------------------------
    "lightning-devices-list": (
        """
        import lightning as L
        trainer = L.Trainer(accelerator="gpu", devices=[1])
        """,
        [("GPU001", 2, 49, True)],
        """
        import lightning as L
        trainer = L.Trainer(accelerator="gpu", devices=[0])
        """,
    ),
    "lightning-devices-string": (
        """
        from lightning.pytorch import Trainer
        trainer = Trainer(devices="1,")
        """,
        [("GPU001", 2, 27, True)],
        """
        from lightning.pytorch import Trainer
        trainer = Trainer(devices="0,")
        """,
    ),
    "lightning-devices-count-is-not-an-index": (
        """
        import pytorch_lightning as pl
        a = pl.Trainer(devices=2)
        b = pl.Trainer(devices="2")
        c = pl.Trainer(devices=-1, gpus=4)
        """,
        [],
        None,
    ),
    "lightning-several-indices-report-only": (
        """
        import pytorch_lightning as pl
        a = pl.Trainer(gpus=[0, 2])
        b = pl.Trainer(devices="0,2")
        """,
        [("GPU002", 2, 21, False), ("GPU002", 3, 24, False)],
        None,
    ),
    "fabric-devices": (
        """
        from lightning.fabric import Fabric
        fabric = Fabric(accelerator="cuda", devices=[1])
        """,
        [("GPU001", 2, 46, True)],
        """
        from lightning.fabric import Fabric
        fabric = Fabric(accelerator="cuda", devices=[0])
        """,
    ),
    "diffusers-offload-gpu-id": (
        """
        import torch
        from diffusers import DiffusionPipeline
        pipe = DiffusionPipeline.from_pretrained("x", torch_dtype=torch.float16)
        pipe.enable_model_cpu_offload(gpu_id=1)
        pipe.enable_sequential_cpu_offload(1)
        pipe.enable_model_cpu_offload(device="cuda:1")
        """,
        [("GPU001", 4, 38, True), ("GPU001", 5, 36, True), ("GPU001", 6, 38, True)],
        """
        import torch
        from diffusers import DiffusionPipeline
        pipe = DiffusionPipeline.from_pretrained("x", torch_dtype=torch.float16)
        pipe.enable_model_cpu_offload(gpu_id=0)
        pipe.enable_sequential_cpu_offload(0)
        pipe.enable_model_cpu_offload(device="cuda:0")
        """,
    ),
    "accelerate-offload-and-device-map": (
        """
        from accelerate import cpu_offload
        from transformers import AutoModel
        m = AutoModel.from_pretrained("x", device_map={"": 1})
        cpu_offload(m, execution_device=1)
        """,
        [("GPU001", 3, 52, True), ("GPU001", 4, 33, True)],
        """
        from accelerate import cpu_offload
        from transformers import AutoModel
        m = AutoModel.from_pretrained("x", device_map={"": 0})
        cpu_offload(m, execution_device=0)
        """,
    ),
    "tf-config-indexed-device": (
        """
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
        tf.config.set_visible_devices(gpus[1], "GPU")
        tf.config.experimental.set_memory_growth(gpus[1], True)
        tf.config.set_visible_devices([gpus[0], gpus[2]], "GPU")
        """,
        [("GPU001", 3, 36, True), ("GPU001", 4, 47, True), ("GPU002", 5, 31, False)],
        """
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
        tf.config.set_visible_devices(gpus[0], "GPU")
        tf.config.experimental.set_memory_growth(gpus[0], True)
        tf.config.set_visible_devices([gpus[0], gpus[2]], "GPU")
        """,
    ),
    # -- item 2: value flow -----------------------------------------------------------------------
    "module-constant": (
        """
        import torch
        GPU = 1
        torch.cuda.set_device(GPU)
        x = torch.zeros(1).to(f"cuda:{GPU}")
        """,
        [("GPU001", 2, 7, True)],
        """
        import torch
        GPU = 0
        torch.cuda.set_device(GPU)
        x = torch.zeros(1).to(f"cuda:{GPU}")
        """,
    ),
    "argparse-default-through-an-f-string": (
        """
        import argparse
        import torch
        parser = argparse.ArgumentParser()
        parser.add_argument("--gpu-id", type=int, default=1)
        args = parser.parse_args()
        model = torch.nn.Linear(2, 2).to(f"cuda:{args.gpu_id}")
        """,
        [("GPU001", 4, 51, True)],
        """
        import argparse
        import torch
        parser = argparse.ArgumentParser()
        parser.add_argument("--gpu-id", type=int, default=0)
        args = parser.parse_args()
        model = torch.nn.Linear(2, 2).to(f"cuda:{args.gpu_id}")
        """,
    ),
    "format-and-percent": (
        """
        import torch
        A = 1
        B = 1
        x = torch.zeros(1, device="cuda:{}".format(A))
        y = torch.zeros(1, device="cuda:%d" % B)
        """,
        [("GPU001", 2, 5, True), ("GPU001", 3, 5, True)],
        """
        import torch
        A = 0
        B = 0
        x = torch.zeros(1, device="cuda:{}".format(A))
        y = torch.zeros(1, device="cuda:%d" % B)
        """,
    ),
    "dataclass-and-namedtuple-fields": (
        """
        from dataclasses import dataclass, field
        from typing import NamedTuple
        import torch

        @dataclass
        class Config:
            gpu_id: int = field(default=1)

        class Opts(NamedTuple):
            rank: int = 1

        def run(cfg: Config, opts: Opts):
            torch.cuda.set_device(cfg.gpu_id)
            return torch.zeros(1).cuda(opts.rank)
        """,
        [("GPU001", 7, 33, True), ("GPU001", 10, 17, True)],
        """
        from dataclasses import dataclass, field
        from typing import NamedTuple
        import torch

        @dataclass
        class Config:
            gpu_id: int = field(default=0)

        class Opts(NamedTuple):
            rank: int = 0

        def run(cfg: Config, opts: Opts):
            torch.cuda.set_device(cfg.gpu_id)
            return torch.zeros(1).cuda(opts.rank)
        """,
    ),
    "default-parameter": (
        """
        import torch

        def load(path, device_index=1):
            return torch.load(path, map_location=torch.device("cuda", device_index))
        """,
        [("GPU001", 3, 29, True)],
        """
        import torch

        def load(path, device_index=0):
            return torch.load(path, map_location=torch.device("cuda", device_index))
        """,
    ),
    "chain-and-lightning-list-constant": (
        """
        import argparse
        import lightning as L
        p = argparse.ArgumentParser()
        p.add_argument("--gpus", default="1,")
        args = p.parse_args()
        DEVICES = [1]
        chosen = args.gpus
        a = L.Trainer(devices=DEVICES)
        b = L.Trainer(devices=chosen)
        """,
        [("GPU001", 4, 34, True), ("GPU001", 6, 12, True)],
        """
        import argparse
        import lightning as L
        p = argparse.ArgumentParser()
        p.add_argument("--gpus", default="0,")
        args = p.parse_args()
        DEVICES = [0]
        chosen = args.gpus
        a = L.Trainer(devices=DEVICES)
        b = L.Trainer(devices=chosen)
        """,
    ),
    "tf-index-through-a-name": (
        """
        import tensorflow as tf
        WHICH = 1
        gpus = tf.config.list_physical_devices("GPU")
        tf.config.set_visible_devices(gpus[WHICH], "GPU")
        """,
        [("GPU001", 2, 9, True)],
        """
        import tensorflow as tf
        WHICH = 0
        gpus = tf.config.list_physical_devices("GPU")
        tf.config.set_visible_devices(gpus[WHICH], "GPU")
        """,
    ),
    "ambiguous-flows-are-reported-without-a-fix": (
        """
        import torch
        GPU = 1
        if torch.cuda.device_count() > 2:
            GPU = 2
        torch.cuda.set_device(GPU)

        def pick(rank=1):
            print("rank", rank)
            return torch.zeros(1).cuda(rank)
        """,
        [("GPU001", 2, 7, False), ("GPU001", 4, 11, False), ("GPU001", 7, 15, False)],
        None,
    ),
    "not-followed": (
        """
        import torch
        from config import GPU
        GPUS = [0, 1]
        def run(gpu):
            torch.cuda.set_device(gpu)
        run(1)
        torch.cuda.set_device(GPUS[1])
        torch.cuda.set_device(GPU + 1)
        device = torch.device("cuda")
        x = torch.zeros(1).to(device)
        """,
        [],
        None,
    ),
    # -- item 3: child-process masks --------------------------------------------------------------
    "child-process-masks": (
        """
        import subprocess
        import torch
        subprocess.run(["python", "w.py"], env={**os.environ, "CUDA_VISIBLE_DEVICES": "0"})
        subprocess.check_call(["python", "w.py"], env=dict(os.environ, CUDA_VISIBLE_DEVICES="3"))
        env = os.environ.copy()
        env["CUDA_VISIBLE_DEVICES"] = "0"
        subprocess.Popen(["python", "w.py"], env=env)
        os.execve("/usr/bin/python3", ["python3", "w.py"], {"CUDA_VISIBLE_DEVICES": "2"})
        subprocess.run(["python", "w.py"], env={"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"})
        """,
        [("GPU103", 3, 79, True), ("GPU103", 4, 85, True), ("GPU103", 6, 31, True), ("GPU103", 8, 77, True),
         ("GPU104", 9, 91, True)],
        """
        import subprocess
        import torch
        subprocess.run(["python", "w.py"], env={**os.environ, "CUDA_VISIBLE_DEVICES": "1"})
        subprocess.check_call(["python", "w.py"], env=dict(os.environ, CUDA_VISIBLE_DEVICES="1"))
        env = os.environ.copy()
        env["CUDA_VISIBLE_DEVICES"] = "1"
        subprocess.Popen(["python", "w.py"], env=env)
        os.execve("/usr/bin/python3", ["python3", "w.py"], {"CUDA_VISIBLE_DEVICES": "1"})
        subprocess.run(["python", "w.py"], env={"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
        """,
    ),
    "child-int-mask": (
        """
        import subprocess
        subprocess.run(["nvidia-smi"], env={"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": 1})
        """,
        [("GPU106", 2, 81, True)],
        """
        import subprocess
        subprocess.run(["nvidia-smi"], env={"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": "1"})
        """,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_recall_case(name):
    body, expected, fixed_body = CASES[name]
    text = _src(body)
    found = _lint(text)
    assert _shape(found) == expected, [f.message for f in found]
    fixed = _fix(text)
    if fixed_body is None:
        assert fixed == text
        return
    assert fixed == _src(fixed_body)
    codes = {r for r, *_ in expected if _[-1]}
    assert not [f for f in _lint(fixed) if f.rule in codes and f.fix is not None]
    assert not [f for f in _lint(fixed) if f.rule in codes and (f.line - 3, f.column) in {(l, c) for _r, l, c, fx in expected if fx}]
    assert _fix(fixed) == fixed


def test_a_child_mask_of_more_gpus_than_the_policy_gets_only_an_unsafe_fix():
    text = _src("""
        import subprocess
        subprocess.check_call(["python", "w.py"], env=dict(os.environ, CUDA_VISIBLE_DEVICES="0,1"))
    """)
    [f] = [f for f in _lint(text) if f.rule == "GPU103"]
    assert f.fix.applicability == "unsafe"
    assert _fix(text) == text


def test_messages_name_the_use():
    text = _src("""
        import argparse
        import py3nvml.py3nvml as nvml
        parser = argparse.ArgumentParser()
        parser.add_argument("--device-index", type=int, default=0)
        args = parser.parse_args()
        device_idx = args.device_index
        handle = nvml.nvmlDeviceGetHandleByIndex(device_idx)
    """)
    [f] = _lint(text)
    assert (f.rule, f.line, f.fix) == ("GPU003", 7, None)
    assert f.message == (
        "NVML index 0 (option --device-index read as args.device_index through device_idx, passed to "
        "py3nvml.py3nvml.nvmlDeviceGetHandleByIndex() on line 10) is physical GPU 0, but cuda:0 is physical GPU 1 "
        "under CUDA_VISIBLE_DEVICES=\"1\" (NVML ignores the mask); use NVML index 1 or look the GPU up by UUID/PCI bus id"
    )
    text = _src("""
        import torch
        GPU = 1
        torch.cuda.set_device(GPU)
        print(GPU)
    """)
    [f] = _lint(text)
    assert f.message == (
        "device index 1 (GPU, passed to torch.cuda.set_device() on line 6) means physical GPU 1, which is cuda:0 "
        "under CUDA_VISIBLE_DEVICES=\"1\"; not rewritten because GPU is also used on line 7 as something other than "
        "a device: use 0 where it is used as a device"
    )


def test_child_masks_are_not_the_files_header():
    """A mask in a child's env= does not set this process's mask: GPU101/GPU102 still apply, and
    it is never 'too late' (GPU105)."""
    text = 'import torch\nimport subprocess, os\nsubprocess.run(["x"], env=dict(os.environ, CUDA_VISIBLE_DEVICES="1"))\n'
    assert sorted(f.rule for f in _lint(text)) == ["GPU101", "GPU102"]
    no_policy = policy_from_table({}, "<test>", root="/nonexistent")
    text = 'import torch\nx = torch.zeros(1, device="cuda:1")\nimport subprocess, os\nsubprocess.run(["x"], env={"CUDA_VISIBLE_DEVICES": "0"})\n'
    # the child's one-GPU mask does not make cuda:1 invalid in this process (no GPU001 without a file mask)
    assert [f.rule for f in _lint(text, no_policy)] == []


def test_an_api_entry_of_the_users_config_may_use_the_new_value_kinds():
    policy = policy_from_table(
        {"visible-devices": "1", "api": [{"name": "mylib.launch", "args": [{"keyword": "gpus", "value": "count-or-indices"}]}]},
        "<test>", root="/nonexistent")
    text = _src("""
        import torch
        import mylib
        mylib.launch(gpus=[1])
        mylib.launch(gpus=3)
    """)
    assert _shape(_lint(text, policy)) == [("GPU001", 3, 20, True)]


def test_recall_corpus_is_fully_reported_and_nothing_else():
    """fixtures/recall/: every `# expect:` line reported with its codes, nothing unexpected (the
    forms of not_followed.py included), as scripts/recall.py measures it."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("recall_script", root / "scripts" / "recall.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected, _reported, misses, unexpected, rows = module.measure(root / "fixtures" / "recall")
    assert len(expected) == 55 and {name for name, *_ in rows} == {
        "catalogue_forms.py", "child_masks.py", "value_flow.py", "not_followed.py", "write_forms.py"}
    assert (misses, unexpected) == ([], [])


ODD_FLOWS = {
    "cycle": "import torch\na = b\nb = a\ntorch.cuda.set_device(a)\n",
    "self-reference": "import torch\nGPU = GPU\ntorch.cuda.set_device(GPU)\n",
    "augmented": "import torch\nGPU = 1\nGPU += 1\ntorch.cuda.set_device(GPU)\n",
    "walrus-and-del": "import torch\nif (GPU := 1):\n    pass\ndel GPU\ntorch.cuda.set_device(GPU)\n",
    "global-nonlocal": (
        "import torch\nGPU = 1\ndef f():\n    global GPU\n    GPU = 2\n    def g():\n        nonlocal_x = 1\n"
        "        torch.cuda.set_device(GPU)\n    return g\n"
    ),
    "lambda-default": "import torch\npick = lambda i=1: torch.cuda.set_device(i)\n",
    "starred-and-kwargs": "import torch\ndef f(*a, **k):\n    torch.cuda.set_device(a)\n    torch.cuda.set_device(k)\n",
    "class-body-name": "import torch\nclass A:\n    GPU = 1\n    torch.cuda.set_device(GPU)\n",
    "comprehension": "import torch\nx = [torch.zeros(1).cuda(i) for i in range(2)]\n",
    "argparse-odd": (
        "import argparse, torch\np = argparse.ArgumentParser()\np.add_argument(default=1)\np.add_argument(*flags, default=2)\n"
        "p.add_argument('--gpu', dest=name, default=1)\nargs = p.parse_args()\ntorch.cuda.set_device(args.gpu)\n"
    ),
    "field-odd": (
        "import torch\nfrom dataclasses import dataclass, field\n@dataclass\nclass C:\n    gpu: int = field(default_factory=int)\n"
        "    [a, b] = 1, 2\ntorch.cuda.set_device(C().gpu)\n"
    ),
    "match": "import torch\nGPU = 1\nmatch GPU:\n    case 1:\n        torch.cuda.set_device(GPU)\n",
    "deep-chain": "import torch\n" + "".join(f"n{i} = n{i + 1}\n" for i in range(30)) + "n30 = 1\ntorch.cuda.set_device(n0)\n",
}


@pytest.mark.parametrize("name", sorted(ODD_FLOWS))
def test_odd_flows_never_raise_and_fix_consistently(name):
    """Bad or odd input: findings or none, never a traceback; a fix, when there is one, converges."""
    text = ODD_FLOWS[name]
    found = _lint(text)
    fixed = _fix(text)
    assert _fix(fixed) == fixed
    if name in ("cycle", "self-reference", "starred-and-kwargs", "comprehension", "deep-chain", "field-odd"):
        assert not [f for f in found if f.rule == "GPU001"], [f.message for f in found]
    if name == "augmented":  # two definitions: reported, not rewritten
        assert [(f.rule, f.line, f.fix) for f in found if f.rule == "GPU001"] == [("GPU001", 2, None)]
    if name == "lambda-default":
        assert fixed.endswith("import torch\npick = lambda i=0: torch.cuda.set_device(i)\n")
    if name == "global-nonlocal":  # assigned through `global`: both literals reported, neither rewritten
        assert [(f.line, f.fix) for f in found if f.rule == "GPU001"] == [(2, None), (5, None)]
