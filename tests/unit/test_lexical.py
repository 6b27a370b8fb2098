"""The prefilter confirms each hit in its token context (gpufix.lexical): a call shape in a docstring
or a comment, or a class named like an API, sends no file to the full analysis; the same text in
code, in an f-string's field, or a value that starts a string literal does."""

from __future__ import annotations

import pytest

from gpufix.catalog import load_api_catalog
from gpufix.lexical import ANYWHERE, CODE, NAME_OR_CODE, STRING_START, Lexed, call_with_args, keyword_of
from gpufix.prefilter import FULL, HEADER, SKIP
from gpufix.registry import prefilter

CATALOG = load_api_catalog()


def classify(text: str, path: str, scope: str, catalog=CATALOG, confirm: bool = True) -> int:
    return prefilter(catalog).classify(text, path, scope, confirm=confirm)


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
    assert classify(text, "mod.py", "gpu-modules", CATALOG) == tier
    assert classify(text, "mod.py", "gpu-modules", CATALOG, confirm=False) == FULL


def test_a_value_after_backslash_newlines_and_a_template_string():
    text = 'x = "\\\ncuda:1"\ny = t"{set_device(2)}"\n'
    assert _at(text, "cuda:1", STRING_START)  # the value is "cuda:1"
    assert _at(text, "set_device(2)", CODE)  # a t-string's field is code (Python 3.14)
    assert classify("import torch\nx = y.to('\\\ncuda:1')\n", "mod.py", "gpu-modules", CATALOG) == FULL


SET_DEVICE = keyword_of(["set_device", "cuda"])


@pytest.mark.parametrize("text, counts", [
    ("torch.cuda.set_device(device=1)", True),
    ("x.cuda(device=1)", True),
    ("other(device=1)", False),  # a keyword of a call no API is: `value=`, `stream=` in any call
    ("d = dict(device=1)", False),
    ("set_device(x, (a, b), [c], device=1)", True),  # brackets before it, closed
    ("outer(set_device(0), device=1)", False),  # the keyword is outer()'s
    ("set_device(outer(x), device=1)", True),
    ('set_device(")", device=1)', True),  # a bracket in a string is no bracket
    ("set_device(  # a comment (\n    device=1)", True),  # ... nor in a comment
    ("set_device \\\n(device=1)", True),  # a line continuation before `(`
    ("set_device # comment\n(x,\n device=1)", True),
    ("f()(device=1)", True),  # a callee that is no name: cannot be told, counts
    ("x[0](device=1)", True),
    ("(set_device)(device=1)", True),
    ("\uff53\uff45\uff54_device(device=1)", True),  # Python reads the name NFKC-normalised: set_device
    ("from torch.cuda import set_device as pick\npick(device=1)", True),  # an alias: any call counts
    ("other(" + "x, " * 10_000 + "device=1)", True),  # a call longer than the reach: counts
    ("device=1", False),  # an assignment is no keyword argument
])
def test_a_keyword_counts_only_in_a_call_of_its_apis(text, counts):
    assert _at(text, "device=1", SET_DEVICE) is counts


def test_a_project_helpers_common_keyword_lifts_only_its_own_calls():
    """A first-party device helper's parameter (`value`, `stream`) is a keyword of its calls only:
    a 300-line module passing `value=` to other functions is not analysed in full for it."""
    from gpufix.apispec import ApiSpec, ArgSpec

    catalog = CATALOG.with_extra((ApiSpec(name="guards.get_guard", args=(ArgSpec(position=0, keyword="value"),)),))
    body = "".join(f"r{i} = compute(x, value=({i}, 2))\n" for i in range(300))
    assert classify("import torch\n" + body, "m.py", "entrypoints", catalog) != FULL
    assert classify("import torch\n" + body + "get_guard(value=(1, 2))\n", "m.py", "entrypoints", catalog) == FULL


THIRD = call_with_args(3)  # a device argument third: new_group(ranks, timeout, device)


@pytest.mark.parametrize("text, counts", [
    ("new_group(a, b, c)", True),
    ("new_group(a, b, device=c)", True),  # a keyword counts as one (a superset)
    ("new_group(ranks)", False),
    ("new_group()", False),
    ("new_group(f(a, b, c))", False),  # commas in a nested call are its own
    ("new_group([a, b, c], {d: 1, e: 2})", False),
    ('new_group("a, b, c", x)', False),  # ... and in a string
    ("new_group(a,  # b, c\n x)", False),  # ... and in a comment
    ("new_group(*ranks)", False),  # one starred argument: the analysis reads no third one
    ("new_group(a, *rest)", False),
    ("new_group(lambda x, y: x, z)", True),  # a lambda's parameters count too (a superset)
    ("new_group \\\n(a, b, c)", True),
    ("(new_group)(a, b, c)", True),
    ("new_group(a, b" + ", c" * 3, True),  # no closing parenthesis: cannot tell
    ("new_group(" + "[0] * 9, " * 0 + "x" * 30_000 + ", b, c)", True),  # longer than the reach
    ("def new_group(a, b, c):", False),  # a definition calls nothing
])
def test_an_argument_after_others_counts_only_in_a_call_long_enough(text, counts):
    assert _at(text, "new_group", THIRD) is counts


@pytest.mark.parametrize("text, counts", [
    ('os.environ["CUDA_VISIBLE_DEVICES"] = "1"', True),  # a whole literal: a key
    ("env = dict(os.environ, CUDA_VISIBLE_DEVICES='1')", True),  # code
    ('k = "CUDA_" "VISIBLE_DEVICES"', True),  # the part of a concatenation that holds it
    ("k = r'''CUDA_VISIBLE_DEVICES'''", True),
    ("k = f'{p}CUDA_VISIBLE_DEVICES'", True),  # an f-string: counts
    ('"""CUDA_VISIBLE_DEVICES is adjusted so that each worker sees one GPU."""', False),  # prose
    ('s = "export CUDA_VISIBLE_DEVICES=1"', False),
    ("# CUDA_VISIBLE_DEVICES", False),
    ('k = "CUDA_VISIBLE_DEVICES', False),  # not closed on its line: no value
])
def test_a_variable_name_counts_in_code_or_as_a_whole_literal(text, counts):
    assert _at(text, "VISIBLE_DEVICES", NAME_OR_CODE) is counts
