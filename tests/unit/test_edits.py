"""The generic edits of the Python fixer (gpufix.fix.python): a node replaced at its range, statements
inserted at an anchor, the header requested and placed once; exact text out. And the header placed
as text (gpufix.fix.header) against the libcst transformation it stands in for."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gpufix.fix import FixError
from gpufix.fix.python import apply_edits, apply_edits_cst
from gpufix.fix.header import header_by_text
from gpufix.model import EDIT_KINDS, Edit

ROOT = Path(__file__).resolve().parents[2]
ORDER = ("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
MASK = ("CUDA_VISIBLE_DEVICES", "1")
MASK_KEEP = ("CUDA_VISIBLE_DEVICES", "1", "keep-cpu")
HEADER = 'os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'


def fix(text: str, *edits) -> str:
    new, applied = apply_edits(text, list(edits))
    # the same through libcst alone (the text placement of the header must agree)
    assert apply_edits_cst(text, list(edits)) == (new, applied)
    return new


# -- replace a node at a range ------------------------------------------------------------------
def test_replace_an_expression_at_its_exact_range():
    src = 'x = torch.device("cuda:1")\ny = ("cuda:1")\nz = "cuda:" "1"\n'
    assert fix(src, Edit("replace", 1, 17, '"cuda:0"', end_line=1, end_col=25)) == 'x = torch.device("cuda:0")\ny = ("cuda:1")\nz = "cuda:" "1"\n'
    # the parentheses around the value stay; the range is the value's own (as ast gives it)
    assert fix(src, Edit("replace", 2, 5, '"cuda:0"', end_line=2, end_col=13)) == 'x = torch.device("cuda:1")\ny = ("cuda:0")\nz = "cuda:" "1"\n'
    # `"cuda:" "1"` is one value; its first part starts at the same place but ends earlier
    assert fix(src, Edit("replace", 3, 4, '"cuda:0"', end_line=3, end_col=15)) == 'x = torch.device("cuda:1")\ny = ("cuda:1")\nz = "cuda:0"\n'
    assert fix(src, Edit("replace", 3, 4, '"gpu:"', end_line=3, end_col=11)) == 'x = torch.device("cuda:1")\ny = ("cuda:1")\nz = "gpu:" "1"\n'


def test_replace_never_rewrites_a_name_attribute_or_call_at_the_range():
    src = "torch.cuda.set_device(dev)\n"
    new, applied = apply_edits(src, [Edit("replace", 1, 22, "0", end_line=1, end_col=25)])
    assert (new, applied) == (src, 0)
    new, applied = apply_edits(src, [Edit("replace", 1, 0, "f(0)", end_line=1, end_col=26)])
    assert (new, applied) == (src, 0)


def test_replace_a_statement_keeps_its_line():
    src = 'import os\nos.putenv("CUDA_VISIBLE_DEVICES", "1");  x = 1  # keep\n'
    code = 'os.environ["CUDA_VISIBLE_DEVICES"] = "1"'
    assert fix(src, Edit("replace", 2, 0, code, end_line=2, end_col=38)) == (
        'import os\nos.environ["CUDA_VISIBLE_DEVICES"] = "1";  x = 1  # keep\n')
    src = 'def f():\n    # why\n    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")\n'
    code = 'os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"'
    assert fix(src, Edit("replace", 3, 4, code, end_line=3, end_col=60)) == (
        'def f():\n    # why\n    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n')


# -- insert statements at an anchor --------------------------------------------------------------
def test_insert_before_a_statement():
    src = 'import os\n\n# the mask\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'
    code = 'os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"'
    # the anchor's comments stay above what goes before it
    assert fix(src, Edit("insert", 4, 0, code)) == (
        'import os\n\n# the mask\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n')
    src = 'from os import environ; environ["CUDA_VISIBLE_DEVICES"] = "1"\n'
    assert fix(src, Edit("insert", 1, 24, 'environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"')) == (
        'from os import environ; environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"; environ["CUDA_VISIBLE_DEVICES"] = "1"\n')
    src = 'def main():\n    x = 1\n    os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'
    assert fix(src, Edit("insert", 3, 4, code), Edit("insert", 3, 4, code)) == (  # asked twice, inserted once
        'def main():\n    x = 1\n    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n    os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n')


def test_insert_after_a_statement():
    src = 'import os\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"  # mask\nimport torch\n'
    assert fix(src, Edit("insert", 2, 0, "x = 1", after=True)) == (
        'import os\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"  # mask\nx = 1\nimport torch\n')
    src = "a = 1; b = 2\n"
    assert fix(src, Edit("insert", 1, 0, "x = 1", after=True)) == "a = 1; x = 1; b = 2\n"
    assert fix(src, Edit("insert", 1, 7, "x = 1", after=True)) == "a = 1; b = 2\nx = 1\n"
    src = "if a:\n    b = 1\nc = 2\n"
    assert fix(src, Edit("insert", 1, 0, "x = 1", after=True)) == "if a:\n    b = 1\nx = 1\nc = 2\n"
    assert fix(src, Edit("insert", 2, 4, "x = 1", after=True)) == "if a:\n    b = 1\n    x = 1\nc = 2\n"


# -- the header, requested -----------------------------------------------------------------------
def test_header_goes_after_docstring_future_and_leading_comments_once():
    src = '#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n"""Doc."""\nfrom __future__ import annotations\n\nimport torch\n'
    want = ('#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n"""Doc."""\nfrom __future__ import annotations\n\nimport os\n\n'
            + HEADER + '\nimport torch\n')
    # two fixes asking for overlapping lines: each line once, the order variable first
    assert fix(src, Edit("ensure-header", lines=(MASK,)), Edit("ensure-header", lines=(ORDER, MASK))) == want
    assert header_by_text(src, [MASK, ORDER]) == (want, 2)
    src = "# Copyright\n# License\nimport torch\n"
    assert fix(src, Edit("ensure-header", lines=(ORDER, MASK))) == "# Copyright\n# License\nimport os\n\n" + HEADER + "\nimport torch\n"
    src = '"""Doc."""\n\n# about torch\nimport torch\n'
    assert fix(src, Edit("ensure-header", lines=(ORDER, MASK))) == '"""Doc."""\n\n# about torch\nimport os\n\n' + HEADER + "\nimport torch\n"


def test_header_binds_os_once_and_never_after_a_framework():
    # an `import os` first is the header's own
    src = "import os\nimport torch\n"
    assert fix(src, Edit("ensure-header", lines=(ORDER, MASK))) == "import os\n\n" + HEADER + "\nimport torch\n"
    # a plain `import os` further down moves up; `import os, torch` would import torch before the mask
    src = "import sys\nimport torch\nimport os\nx = 1\n"
    assert fix(src, Edit("ensure-header", lines=(ORDER, MASK))) == "import os\n\n" + HEADER + "\nimport sys\nimport torch\nx = 1\n"
    src = "import os, torch\n"
    assert fix(src, Edit("ensure-header", lines=(ORDER, MASK))) == "import os\n\n" + HEADER + "\nimport os, torch\n"
    # an `import os` with a comment stays where it is (the comment is about it)
    src = "import sys\nimport os  # for paths\n"
    assert fix(src, Edit("ensure-header", lines=(ORDER,))) == (
        'import os\n\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n\nimport sys\nimport os  # for paths\n')


def test_header_keeps_an_explicit_cpu_run_with_the_module_indent():
    src = "import torch\n\n\ndef f():\n\treturn 1\n"
    want = ('import os\n\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n'
            'if os.environ.get("CUDA_VISIBLE_DEVICES") not in ("", "-1"):  # keep an explicit CPU run\n'
            '\tos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n\nimport torch\n\n\ndef f():\n\treturn 1\n')
    assert fix(src, Edit("ensure-header", lines=(ORDER, MASK_KEEP))) == want
    assert header_by_text(src, [ORDER, MASK_KEEP]) == (want, 2)


def test_header_completes_what_the_module_sets_and_moves_a_late_line():
    src = 'import os\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\nimport torch\n'
    assert header_by_text(src, [ORDER]) is None  # the module sets a header variable: libcst's case
    assert fix(src, Edit("ensure-header", lines=(ORDER, MASK))) == (
        'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\nimport torch\n')
    src = 'import torch\nimport os\n# pin\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'
    assert fix(src, Edit("move-to-header", 4, 0), Edit("ensure-header", lines=(ORDER,))) == (
        'import os\n\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n# pin\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n\nimport torch\n')


# -- kinds, serialisation ------------------------------------------------------------------------
def test_edits_cross_processes_as_json():
    edits = [Edit("replace", 1, 2, "x", end_line=1, end_col=5), Edit("insert", 3, 4, "y = 1", after=True),
             Edit("ensure-header", lines=(ORDER, MASK_KEEP)), Edit("move-to-header", 7, 0),
             Edit.span(2, 0, 2, 3, "z", cell=4)]
    for e in edits:
        assert Edit.from_json(json.loads(json.dumps(e.to_json()))) == e
    assert Edit("insert", 3, 4, "y").to_json() == {"kind": "insert", "line": 3, "col": 4, "content": "y"}
    assert {k.name for k in EDIT_KINDS.values() if k.scheduled} == {"ensure-header", "move-to-header"}
    with pytest.raises(FixError, match="cannot apply a 'replace-span' edit"):
        apply_edits("x = 1\n", [Edit("replace-span", 1, 0, "y", end_line=1, end_col=1)])


# -- the header as text agrees with libcst -------------------------------------------------------
def _corpus() -> list:
    files = sorted(ROOT.glob("fixtures/**/*.py")) + sorted((ROOT / "tests" / "oracle" / "cases").glob("*.py"))
    stdlib = Path(os.__file__).parent
    files += [p for p in sorted(stdlib.glob("*.py")) if p.stat().st_size < 12_000][:60]
    return files


def test_header_as_text_is_what_libcst_writes():
    fast = 0
    checked = 0
    for n, path in enumerate(_corpus()):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for request in ([ORDER, MASK_KEEP], [MASK, ORDER] if n % 2 else [ORDER]):
            got = header_by_text(text, request)
            if got is None:
                continue
            fast += 1
            want = apply_edits_cst(text, [Edit("ensure-header", lines=tuple(request))])
            assert got == want, f"{path.name} {request}"
        checked += 1
    assert checked > 100 and fast > 100  # the text placement does take the common case


# Pieces of module tops people write; random files made of them (a fixed seed) exercise the order of
# docstrings, futures, every way to import os, comments and blank lines the header goes among.
_PIECES = [
    '"""Doc."""\n', '"""Multi\nline doc.\n"""\n', "'doc'\n", 'b"bytes doc"\n', '("paren doc")\n',
    "from __future__ import annotations\n", "from __future__ import division, print_function\n",
    "import os\n", "import os  \n", "import os;\n", "import os  # why\n", "import os, sys\n", "import os as o\n",
    "import sys\n", "import torch\n", "import os, torch\n", "import os; import sys\n", "import os.path\n",
    "from os import path\n", "x = 1\n", "x = 1; y = 2\n", "\n", "\n\n", "   \n", "# comment\n", "    # indented comment\n",
    "# é ü comment\n", "def f():\n    return 1\n", "def f():\n\treturn 1\n", "class A:\n  x = 1\n\n  # inner\n",
    "@dec\ndef g():\n    pass\n", "if __name__ == '__main__':\n    main()\n", "#!/usr/bin/env python\n",
    "# -*- coding: utf-8 -*-\n", "try:\n    import torch\nexcept ImportError:\n    pass\n", "print('é')  # c\n",
    "s = '''\nimport os\n'''\n", "x = (\n    1,\n)\n", "import numpy as np\n", "import tensorflow as tf\n",
]


def test_header_as_text_on_generated_module_tops():
    import random

    import libcst as cst

    rng = random.Random(14)
    fast = 0
    for _ in range(1500):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 7)))
        try:
            compile(text, "<t>", "exec")
        except SyntaxError:
            continue
        if cst.parse_module(text).code != text:
            continue  # libcst itself does not keep this text (see the next test)
        request = rng.choice(([ORDER, MASK_KEEP], [MASK, ORDER], [ORDER]))
        got = header_by_text(text, request)
        if got is not None:
            fast += 1
            assert got == apply_edits_cst(text, [Edit("ensure-header", lines=tuple(request))]), repr(text)
    assert fast > 1000


def test_header_as_text_keeps_lines_libcst_would_drop():
    # libcst loses a whitespace-only line before a last, indented comment; the text placement
    # changes nothing outside the header
    src = "import torch\n   \n    # the end\n"
    new, applied = apply_edits(src, [Edit("ensure-header", lines=(ORDER,))])
    assert (new, applied) == ('import os\n\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n\nimport torch\n   \n    # the end\n', 1)
