"""The project index reads imports from the text (gpufix.importscan) and falls back to `ast` only
where the text cannot settle them; both readings must give the same index entry."""

import ast
import pathlib
import textwrap

import pytest

from gpufix.catalog import load_api_catalog
from gpufix.importscan import read_imports
from gpufix.project import _has_main_guard, runtime_imports, runtime_imports_from_text

REPO = pathlib.Path(__file__).resolve().parents[2]
CATALOG = load_api_catalog()


def is_framework(name: str) -> bool:
    return CATALOG.framework_of_module(name) is not None


def by_ast(text: str, module: str = "pkg.mod", is_package: bool = False):
    tree = ast.parse(text)
    got = runtime_imports(tree, module, is_package, is_framework, text)
    return sorted(got.modules), bool(got.gpu), _has_main_guard(tree)


def by_text(text: str, module: str = "pkg.mod", is_package: bool = False):
    """None when the text reading leaves the file to ast (as _index_file then does)."""
    read = read_imports(text)
    if read is None:
        return None
    got = runtime_imports_from_text(read.statements, text, module, is_package, is_framework)
    if got is None:
        return None
    return sorted(got.modules), bool(got.gpu), read.has_main_guard


CASES = {
    "docstring": ('"""Example:\n\nimport torch\nfrom torch import cuda\n"""\nimport os\n', (["os"], False, False)),
    "comment_and_string": ("# import torch\nx = 'import torch'\ny = \"from torch import cuda\"\n", ([], False, False)),
    "semicolons": ("import os; import torch\nx = 1; from numpy import array\n",
                   (["numpy", "numpy.array", "os", "torch"], True, False)),
    "one_line_try": ("try: import torch\nexcept ImportError: pass\ntorch.cuda.init()\n", (["torch"], True, False)),
    "parenthesised_with_comments": (
        "from .models import (  # the models\n    UNet as U,  # (2d)\n    VAE,\n)\ntorch = 1\n",
        (["pkg.models", "pkg.models.UNet", "pkg.models.VAE"], False, False)),
    "aliases_and_dotted": ("import torch.nn as nn, os.path\nnn.Linear(1, 1)\n",
                           (["os.path", "torch.nn"], True, False)),
    "relative_levels": ("from .. import top\nfrom . import sib\nfrom .a.b import c\n",
                        (["pkg", "pkg.a.b", "pkg.a.b.c", "pkg.sib"], False, False)),
    "lazy_import_in_function": ("def load():\n    import torch\n    return torch.zeros(1)\n", (["torch"], True, False)),
    "type_checking_block": (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n\n    from torch import Tensor\nelse:\n    import numpy\n",
        (["numpy", "typing", "typing.TYPE_CHECKING"], False, False)),
    "type_checking_or_other": ("if TYPE_CHECKING or SLOW:\n    import torch\n", (["torch"], True, False)),
    "main_guard": ('import torch\n\nif __name__ == "__main__":\n    torch.zeros(1)\n', (["torch"], True, True)),
    "main_guard_reversed": ("if '__main__' == __name__:\n    pass\n", ([], False, True)),
    "main_guard_indented_or_in_string": (
        'def f():\n    if __name__ == "__main__":\n        pass\ns = """\nif __name__ == "__main__":\n    pass\n"""\n',
        ([], False, False)),
    "call_is_run_time": ("from torch import Tensor\nx = Tensor([1])\n", (["torch", "torch.Tensor"], True, False)),
    "crlf": ("import os\r\nfrom torch import (\r\n    cuda,\r\n)\r\ncuda.synchronize()\r\n",
             (["os", "torch", "torch.cuda"], True, False)),
    "raw_triple_quotes_with_escapes": ("s = r'''\\'''\nimport torch\n'''\nimport os\n", (["os"], False, False)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_text_reading(name):
    text, expected = CASES[name]
    assert by_text(text) == expected
    assert by_ast(text) == expected


@pytest.mark.parametrize("text", [
    "from torch import Tensor\n\ndef f(x: Tensor) -> Tensor:\n    return x\n",  # annotation-only: ast decides
    "import importlib\nmod = importlib.import_module('torch')\n",  # dynamic import
    "if (TYPE_CHECKING):\n    import torch\n",
    "if TYPE_CHECKING: import torch\n",
    "from torch \\\n    import cuda\n",
])
def test_left_to_ast(text):
    assert by_text(text) is None


def test_annotation_only_import_is_no_gpu_import():
    text = "from torch import Tensor\n\ndef f(x: Tensor) -> Tensor:\n    return x\n"
    assert by_ast(text)[1] is False


def _python_files():
    roots = [REPO / "fixtures", REPO / "tests" / "oracle" / "cases", REPO / "gpufix"]
    return sorted(p for root in roots for p in root.rglob("*.py"))


def test_text_and_ast_agree_on_every_bundled_file():
    """Every Python file of the repository's fixtures, oracle cases and gpufix itself: where the
    text settles a file, it gives what ast gives."""
    settled = 0
    for path in _python_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            expected = by_ast(text)
        except SyntaxError:
            continue
        got = by_text(text)
        if got is not None:
            settled += 1
            assert got == expected, path
    assert settled > 50
