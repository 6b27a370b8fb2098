"""The prefilter confirms each hit in its token context (gpufix.lexical): a call shape in a docstring
or a comment, or a class named like an API, sends no file to the full analysis; the same text in
code, in an f-string's field, or a value that starts a string literal does."""

from __future__ import annotations

import pytest

from gpufix.catalog import load_api_catalog
from gpufix.lexical import ANYWHERE, CODE, STRING_START, Lexed
from gpufix.prefilter import FULL, HEADER, SKIP
from gpufix.registry import prefilter

CATALOG = load_api_catalog()
classify = prefilter(CATALOG).classify


def _at(text: str, needle: str, where: str) -> bool:
    return Lexed(text).allows(text.index(needle), where)


def test_places():
    text = ('x = 1  # set_device(1)\n"""doc set_device(2)\n"""\ns = "cuda:1" + \'a cuda:2\'\n'
            "class DistributedDataParallel(M): pass\nprint(f'{set_device(3)}')\nr'\\'set_device(4)'\nset_device(5)\n")
    assert not _at(text, "set_device(1)", CODE) and not _at(text, "set_device(1)", ANYWHERE)  # a comment
    assert not _at(text, "set_device(2)", CODE) and _at(text, "set_device(2)", ANYWHERE)  # a docstring
    assert _at(text, "cuda:1", STRING_START) and not _at(text, "cuda:2", STRING_START) and _at(text, "cuda:2", ANYWHERE)
    assert not _at(text, "DistributedDataParallel", CODE)  # a class statement names it, calls nothing
    assert _at(text, "set_device(3)", CODE)  # an f-string's field is code
    assert not _at(text, "set_device(4)", CODE)  # a raw string's escaped quote does not end it
    assert _at(text, "set_device(5)", CODE) and not _at(text, "set_device(5)", STRING_START)


@pytest.mark.parametrize("text, tier", [
    ('import torch\n"""Example: torch.cuda.set_device(1), x.to("cuda:1"), device_ids=[0, 1]."""\n', HEADER),
    ("import torch\n# torch.cuda.set_device(1)\n", HEADER),
    ("import torch\nclass DistributedDataParallel(torch.nn.Module):\n    pass\n", HEADER),
    ("import torch\ntorch.cuda.set_device(1)\n", FULL),
    ("import torch\nprint(f'{torch.cuda.set_device(1)}')\n", FULL),
    ("import torch\nx = y.to('' 'cuda:1')\n", FULL),
    ("import torch\ndevice_ids = [1]\nindex = (1, 2)\n", HEADER),  # assignments, no keyword arguments
    ("import torch\nm = torch.nn.DataParallel(model, device_ids=[0, 1])\n", FULL),
    ("import torch\nm = torch.nn.DataParallel(model,  # both\n    device_ids=[0, 1])\n", FULL),
    ("import torch\ns = f'{torch.device(index=1)}'\n", FULL),
    ('import torch\n"""Example: f"cuda:{rank}" and "cuda:%d" % rank"""\n', HEADER),
    ("import torch\nx = y.to('cuda:%d' % rank)\n", FULL),
    ("import os\n# os.environ['CUDA_VISIBLE_DEVICES'] = '1'\n", SKIP),
    ("import torch\nGPU = 1\nx = y.to('CUDA:{}'.format(GPU))\n", FULL),  # value flow's formats ignore case
    ("import tensorflow as tf\nGPU = 1\nwith tf.device('/Gpu:%d' % GPU):\n    pass\n", FULL),
    ("import os\ns = '''CUDA_VISIBLE_DEVICES'''\n", FULL),  # a string may be the mask's key: kept
])
def test_tiers(text, tier):
    assert classify(text, "mod.py", "gpu-modules") == tier
    assert classify(text, "mod.py", "gpu-modules", confirm=False) == FULL


def test_a_value_after_backslash_newlines_and_a_template_string():
    text = 'x = "\\\ncuda:1"\ny = t"{set_device(2)}"\n'
    assert _at(text, "cuda:1", STRING_START)  # the value is "cuda:1"
    assert _at(text, "set_device(2)", CODE)  # a t-string's field is code (Python 3.14)
    assert classify("import torch\nx = y.to('\\\ncuda:1')\n", "mod.py", "gpu-modules") == FULL
