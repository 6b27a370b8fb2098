"""Property tests of the fixer on generated modules (policy visible-devices "1"):
the output compiles, fixing is idempotent, nothing safely fixable is left, and every line the
fixes do not target survives, in order."""

from __future__ import annotations

import difflib
import re
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufix.apply import fix_source
from gpufix.config import Policy
from gpufix.engine import lint_source
from gpufix.source import read_source, split_lines

POLICY = Policy(visible_devices="1")
SETTINGS = settings(max_examples=int(__import__("os").environ.get("GPUFIX_PROP_EXAMPLES", "100")), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# (import line, {role: alias})
IMPORTS = [
    ("import torch", {"torch": "torch"}),
    ("import torch as T", {"torch": "T"}),
    ("import torch as th  # the framework", {"torch": "th"}),
    ("from faster_whisper import WhisperModel", {"wm": "WhisperModel"}),
    ("from faster_whisper import WhisperModel as WM", {"wm": "WM"}),
    ("import tensorflow as tf", {"tf": "tf"}),
    ("import cupy as cp", {"cp": "cp"}),
    ("import numpy as np", {}),
]

MASK_LINES = [
    'os.environ["CUDA_VISIBLE_DEVICES"] = "1"',
    'os.environ["CUDA_VISIBLE_DEVICES"] = "0"',
    'os.environ["CUDA_VISIBLE_DEVICES"] = "0,1"',
    'os.environ["CUDA_VISIBLE_DEVICES"] = 1',
    "os.environ['CUDA_VISIBLE_DEVICES'] = '1'",
]
ORDER_LINES = [
    'os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"',
    'os.environ["CUDA_DEVICE_ORDER"] = "FASTEST_FIRST"',
]

# Lines a fix may replace, move or drop (and blank lines, which header insertion normalises).
TARGET_RE = re.compile(r"cuda|device|environ|^\s*import os\s*$|GPU")


@st.composite
def header(draw):
    """Some of: import os, a mask line, an order line (each possibly missing)."""
    out = []
    if draw(st.booleans()):
        out.append("import os")
    if draw(st.booleans()):
        out.append(draw(st.sampled_from(ORDER_LINES)))
    if draw(st.booleans()):
        out.append(draw(st.sampled_from(MASK_LINES)))
    return out


@st.composite
def statement(draw, aliases, counter):
    counter[0] += 1
    n = counter[0]
    options = [f"value_{n} = compute({n})  # keep {n}", f'print("text mentioning cuda:1 number {n}")']
    if "torch" in aliases:
        t = aliases["torch"]
        options += [
            f"{t}.cuda.set_device(1)",
            f"{t}.cuda.set_device(0)",
            f'dev_{n} = {t}.device("cuda", 1)',
            f'x_{n} = y.to("cuda:1")',
            f'x_{n} = y.to("cuda:2")',
            f'x_{n} = y.to(device="cuda:1")  # move {n}',
            f'x_{n} = {t}.zeros(1, device="cuda")',
        ]
    else:
        options.append(f'x_{n} = y.to("cuda:1")')
    if "wm" in aliases:
        options.append(f'model_{n} = {aliases["wm"]}("small", device="cuda", device_index=1)')
    if "tf" in aliases:
        options.append(f'ctx_{n} = {aliases["tf"]}.device("/GPU:1")')
    if "cp" in aliases:
        options.append(f'dev_{n} = {aliases["cp"]}.cuda.Device(1)')
    body = draw(st.sampled_from(options))
    wrapper = draw(st.sampled_from(["plain", "plain", "def", "class", "if", "for"]))
    if wrapper == "plain":
        return [body]
    if wrapper == "def":
        return [f"def func_{n}(y=None):", f"    {body}", f"    return {n}"]
    if wrapper == "class":
        return [f"class Klass{n}:", f"    def method(self, y=None):", f"        {body}"]
    if wrapper == "if":
        return [f"if flag_{n}:", f"    {body}", "else:", f"    fallback_{n} = None"]
    return [f"for i_{n} in range(2):", f"    {body}"]


@st.composite
def modules(draw):
    lines = []
    if draw(st.booleans()):
        lines.append('"""Module docstring: runs on cuda:1."""')
    if draw(st.booleans()):
        lines += ["# leading comment", "# another one"]
    if draw(st.booleans()):
        lines.append("from __future__ import annotations")
    early = draw(header())
    imports = draw(st.lists(st.sampled_from(IMPORTS), max_size=3, unique_by=lambda i: i[0]))
    late = draw(header()) if draw(st.booleans()) else []
    aliases = {}
    for _, a in imports:
        aliases.update(a)
    counter = [0]
    stmts = draw(st.lists(statement(aliases, counter), max_size=6))
    lines += early
    if early and draw(st.booleans()):
        lines.append("")
    lines += [imp for imp, _ in imports]
    if imports:
        lines.append("")
    lines += late
    for s in stmts:
        lines += s
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(lines) + (newline if draw(st.booleans()) or not lines else "")
    return text.encode("utf-8")


def fix(raw: bytes) -> bytes:
    return fix_source(read_source("mod.py", raw), POLICY)[0]


def _compile(raw: bytes, name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile(raw, name, "exec", dont_inherit=True)


def _newlines(raw: bytes) -> set:
    kinds = set()
    if b"\r\n" in raw:
        kinds.add("crlf")
    if re.search(rb"(?<!\r)\n", raw):
        kinds.add("lf")
    return kinds


@SETTINGS
@given(modules())
def test_fixed_output_compiles(raw):
    _compile(raw, "input.py")  # the generator makes valid modules
    out = fix(raw)
    _compile(out, "output.py")
    if _newlines(raw):
        assert _newlines(out) <= _newlines(raw), "newline style changed"


@SETTINGS
@given(modules())
def test_fix_is_idempotent(raw):
    once = fix(raw)
    assert fix(once) == once


@SETTINGS
@given(modules())
def test_nothing_safely_fixable_left(raw):
    out = fix(raw)
    result = lint_source(read_source("mod.py", out), POLICY)
    assert not result.errors
    left = [f for f in result.findings if f.fix and f.fix.applicability == "safe"]
    assert not left, [(f.rule, f.line, f.message) for f in left]


@SETTINGS
@given(modules())
def test_untargeted_lines_survive_in_order(raw):
    out = fix(raw)
    # Lines the fixes may move or rewrite (and blank lines) are left out on both sides, so that a
    # moved mask line cannot make difflib pair the wrong lines; what is left must only gain lines.
    def kept(text):
        return [ln for ln in split_lines(text) if ln.strip() and not TARGET_RE.search(ln)]

    before = kept(read_source("mod.py", raw).text)
    after = kept(read_source("mod.py", out).text)
    sm = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for tag, i1, i2, _, _ in sm.get_opcodes():
        assert tag in ("equal", "insert"), f"lines {before[i1:i2]!r} lost or moved"


@SETTINGS
@given(modules())
def test_os_is_imported_before_the_header_uses_it(raw):
    out = read_source("mod.py", fix(raw)).text
    lines = split_lines(out)
    src_lines = split_lines(read_source("mod.py", raw).text)

    def first(pattern, ls):
        return next((i for i, ln in enumerate(ls) if re.match(pattern, ln)), None)

    env_in, os_in = first(r"os\.environ", src_lines), first(r"import os\b", src_lines)
    if env_in is not None and (os_in is None or os_in > env_in):
        return  # the input already used os before importing it; not the fixer's doing
    env_out, os_out = first(r"os\.environ", lines), first(r"import os\b", lines)
    if env_out is not None:
        assert os_out is not None and os_out < env_out, out


def test_regression_examples():
    """Shapes the generator found worth keeping as plain examples."""
    cases = [
        b"import torch as T\r\nT.cuda.set_device(1)\r\n",
        b'"""Doc."""\nfrom __future__ import annotations\nimport torch\nimport os\nos.environ["CUDA_VISIBLE_DEVICES"] = 1\n',
        b"",
    ]
    for raw in cases:
        out = fix(raw)
        _compile(out, "out.py")
        assert fix(out) == out


def test_regression_mask_block_without_import_os():
    """A top-of-file mask block that writes os.environ with no `import os` above it: the fix used to
    change nothing (the block looked complete to the fixer, absent to the linter) and GPU101 stayed."""
    raw = b'os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\nimport torch\n'
    out = fix(raw)
    assert out == b"import os\n" + raw
    assert not [f for f in lint_source(read_source("mod.py", out), POLICY).findings if f.fix]


MAGICS = ["%matplotlib inline", "!nvidia-smi", "%env CUDA_DEVICE_ORDER=PCI_BUS_ID", "%load_ext autoreload",
          "files = !ls", "torch.cuda?"]


@st.composite
def notebooks(draw):
    """Code cells cut from a generated module, with magics mixed in (top level and as a block's body)."""
    lines = split_lines(draw(modules()).decode().replace("\r\n", "\n"))
    # cut only between top-level statements, never between a block's header and its body
    ok = [n for n in range(1, len(lines)) if not lines[n].startswith((" ", "else:")) and not lines[n - 1].rstrip().endswith(":")]
    cuts = sorted(set(draw(st.lists(st.sampled_from(ok), max_size=3)))) if ok else []
    chunks = [lines[a:b] for a, b in zip([0] + cuts, cuts + [len(lines)])]
    cells = []
    for chunk in chunks:
        chunk = [ln for ln in chunk if ln != ""] or ["pass"]
        if chunk[0].startswith(" "):  # a cell cannot start inside a block
            chunk = ["if True:"] + chunk
        pos = draw(st.integers(0, len(chunk)))
        while pos < len(chunk) and chunk[pos].startswith(" "):
            pos += 1  # never split a block
        extra = draw(st.lists(st.sampled_from(MAGICS), max_size=2))
        if draw(st.booleans()):
            extra = extra + ["if IN_COLAB:", "    !pip install something"]
        chunk = chunk[:pos] + extra + chunk[pos:]
        text = "\n".join(chunk) + "\n"
        source = [ln for ln in re.split(r"(?<=\n)", text) if ln] if draw(st.booleans()) else text
        cells.append({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source})
        if draw(st.booleans()):
            cells.append({"cell_type": "markdown", "metadata": {}, "source": ["Some *text* with cuda:1\n"]})
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    return (__import__("json").dumps(nb, indent=1) + "\n").encode()


def _cells(raw: bytes) -> list:
    import json

    nb = json.loads(raw)
    return [("".join(c["source"]) if isinstance(c["source"], list) else c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


@settings(max_examples=int(__import__("os").environ.get("GPUFIX_PROP_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(notebooks())
def test_notebook_fix_keeps_magics_and_is_idempotent(raw):
    src = read_source("nb.ipynb", raw)
    assert not lint_source(src, POLICY).errors
    out = fix_source(src, POLICY)[0]
    before, after = _cells(raw), _cells(out)
    assert len(before) == len(after)
    for b, a in zip(before, after):
        magic_b = [ln for ln in b.split("\n") if ln.lstrip()[:1] in ("%", "!") or ln.endswith("?") or "= !" in ln]
        magic_a = [ln for ln in a.split("\n") if ln.lstrip()[:1] in ("%", "!") or ln.endswith("?") or "= !" in ln]
        assert magic_a == magic_b  # every magic line kept, verbatim, in order
        assert "pass  #" not in a and "gpufix-cell-boundary" not in a
    assert fix_source(read_source("nb.ipynb", out), POLICY)[0] == out
    left = [f for f in lint_source(read_source("nb.ipynb", out), POLICY).findings if f.fix and f.fix.applicability == "safe"]
    assert not left, [(f.rule, f.cell, f.line) for f in left]


def test_regression_moved_mask_line_keeps_its_comment():
    """Completing an existing mask block with a moved CUDA_DEVICE_ORDER line dropped the comment
    above that line."""
    raw = b'import os\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\nimport torch\n# order for PCI\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n'
    assert fix(raw) == (b'import os\n# order for PCI\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n'
                        b'os.environ["CUDA_VISIBLE_DEVICES"] = "1"\nimport torch\n')


def test_regression_notebook_magic_stays_in_its_cell():
    """A magic just above a mask line that is moved to the header used to travel with it (to
    another cell, as a comment: the magic was lost)."""
    import json

    nb = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": s}
                    for s in ['os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n', "import torch\n",
                              '%matplotlib inline\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n']],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    out = fix_source(read_source("nb.ipynb", json.dumps(nb, indent=1).encode()), POLICY)[0]
    assert _cells(out) == ['import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n',
                           "import torch\n", "%matplotlib inline\n"]
