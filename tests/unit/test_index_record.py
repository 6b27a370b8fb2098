"""One file's project-index record (gpufix.project.imports.index_record): what the graph reads of a
file, made with one parse of it, and the text tests that spare most files any parse."""

import ast
import pathlib
import re
import textwrap

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import gpufix.rankflow  # noqa: F401  (imported before any parse is counted: pytest's
# assertion rewriting parses a gpufix module, a pytest plugin's, when it is first imported)
from gpufix.catalog import catalog_for
from gpufix.config import Policy
from gpufix.project import children
from gpufix.project import imports as I

REPO = pathlib.Path(__file__).resolve().parents[2]

# Every reader of the record at work: a lazy framework import (the tree's `lazy_gpu`), a device
# helper, a plugin run by path, a child script and a `python -m` module started by it.
EVERYTHING = textwrap.dedent('''\
    import subprocess

    def helper(index=1):
        import torch
        return torch.device(f"cuda:{index}")

    def run():
        exec(open("plugins/p.py").read())
        subprocess.Popen(["python", "train/train.py"])
        subprocess.Popen(["python", "-m", "pkg.worker"])
''')


@pytest.fixture
def indexed(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    catalog = catalog_for(Policy(visible_devices="1")).for_project(("pkg",), ())
    I._index_init(tmp_path, set(), catalog)
    return tmp_path


def test_record_of_every_reader_parses_the_file_once(indexed, monkeypatch):
    parses = []
    real = ast.parse
    monkeypatch.setattr(ast, "parse", lambda text, *a, **k: parses.append(1) or real(text, *a, **k))
    record = I.index_record(str(indexed / "pkg" / "tool.py"), EVERYTHING)
    assert record["module"] == "pkg.tool" and record["gpu"] is True
    assert record["lazy_gpu"] == ["helper"]
    assert record["helpers"] == [["helper", "index", 0]]
    assert record["loads"] == ["plugins/p.py"]
    assert record["launches"] == ["plugins/p.py", "train/train.py"]
    assert record["runs_m"] == ["pkg.worker"]
    assert len(parses) == 1
    assert I._LAST_PARSE == [None, None]  # no tree outlives its record


# -- the fast text tests give what the plain regular expressions give ----------------------------
# The patterns as they were first written, run over the whole text: the reference.
STARTS_PROCESSES = re.compile(r"\bPopen\b|\bsubprocess\.|\bos\.(?:system|popen|spawn\w*|exec\w*)\s*\(")


def launched_paths_reference(text: str) -> list:
    if ".py" not in text or not STARTS_PROCESSES.search(text):
        return []
    return sorted({m.group(1).replace("\\", "/") for m in children._PY_PATH.finditer(text)})


# Texts made of the pieces the patterns turn on: quotes, line breaks, path characters, the names.
PIECES = st.sampled_from([
    '"', "'", "\n", "\r", "\r\n", " ", "\t", ".py", ".pyc", "py", ".", "/", "\\", "-", "_", "a", "x1", "é",
    "train/train.py", "'a.py'", "Popen", "subprocess.", "os.system(", "os.execvp (", "os.", "x.", "(", ")", ",",
])
TEXTS = st.lists(st.lists(PIECES, max_size=8).map("".join), max_size=6).map("\n".join)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(TEXTS)
def test_starts_processes_is_the_pattern_led_by_a_word_boundary(text):
    assert children._starts_processes(text) == bool(STARTS_PROCESSES.search(text))


@FAST
@given(st.sampled_from(["", "import subprocess\n", "x = 1\n"]), TEXTS)
def test_launched_paths_is_the_whole_text_regex(head, text):
    assert children.launched_paths(head + text) == launched_paths_reference(head + text)


def test_launched_paths_on_the_bundled_files():
    for path in sorted((REPO / "gpufix").rglob("*.py")) + sorted((REPO / "tests").rglob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        assert children.launched_paths(text) == launched_paths_reference(text), path


ORDINAL_PIECES = st.sampled_from([
    "cuda:", "cuda", "{", "}", "x", "i2", " ", "'", '"', "+", "str(", "(", ")", "%d", "%", ",", "=", "\n", "_",
    "é", "set_device(", "device(", "set_", ".cuda(", "device_id", "device_index", "index", "device_",
])


@FAST
@given(st.lists(ORDINAL_PIECES, max_size=40).map("".join))
def test_ordinal_names_are_the_whole_text_regex(text):
    # `device_id=cuda:{y}`: finditer's match `device_id=cuda` hides the `cuda:{y}` inside it
    expected = {g for m in I._ORDINAL_USE.finditer(text) for g in m.groups() if g}
    assert I._ordinal_names(text) == expected


def test_a_match_hides_the_starts_inside_it():
    assert I._ordinal_names("device_id=cuda:{y}") == {"cuda"}
    assert I._ordinal_names("set_device(n) torch.device('cuda', k)") == {"n", "k"}


# Where a call's name sits in a line the parser reads otherwise than a text search: a decorator
# above its `def`, the parts of an f-string, a call split over lines, CR line ends, a fullwidth
# letter (identifiers are NFKC-normalised).
AWKWARD_CALLS = [
    '@register(importlib.import_module("a"))\ndef f():\n    pass\n',
    '@x\n@y(\n    __import__("b"))\nclass C:\n    pass\n',
    'x = f"""\n{\nimportlib.import_module(\n"c")}"""\n',
    'mod = (importlib\n       .import_module(\n    "d"))\n',
    'a = 1\rb = importlib.import_module("e")\r\nc = exec(open("p.py").read())\n',
    'importlib.\uff49mport_module("f")\n',
    'def g():\n    def h():\n        return [__import__(n) for n in ("g",)]\n    return lambda: runpy.run_path("q.py")\n',
]


def _named_calls(nodes, words):
    return [ast.dump(n) for n in nodes if isinstance(n, ast.Call)
            and getattr(n.func, "attr", getattr(n.func, "id", None)) in words]


@pytest.mark.parametrize("text", AWKWARD_CALLS + [p.read_text(encoding="utf-8") for p in sorted((REPO / "gpufix").rglob("*.py"))
                                                  if "import_module" in p.read_text(encoding="utf-8")])
def test_walk_of_the_lines_naming_a_call_finds_what_a_whole_walk_finds(text):
    words = ("import_module", "__import__", "run_path", "exec")
    tree = ast.parse(text)
    whole = _named_calls(ast.walk(tree), words)
    assert _named_calls(I._walk_lines(tree, I.lines_naming(text, words)), words) == whole
    assert whole or text not in AWKWARD_CALLS


@FAST
@given(st.lists(st.lists(st.sampled_from(["if ", "elif ", "if", " ", "\t", "TYPE_CHECKING", "typing.", "not ", ":",
                                          "\r", "x", "_", "#", " or "]), max_size=6).map("".join),
                max_size=6).map("\n".join))
@example("x = 1\nif TYPE_CHECKING or typing.TYPE_CHECKING:\n    import torch\n")
def test_type_checking_lines_are_the_multiline_regex(text):
    from gpufix import importscan

    expected = [m.start() for m in importscan._TYPE_CHECKING_LINE.finditer(text)]
    assert importscan._type_checking_lines(text) == expected


# -- device_helpers: a file none of whose module-level functions takes one of the names is not parsed
def _module_params(tree) -> set:
    return {a.arg for fn in tree.body if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs}


# Signatures the text reader must read as the parser does, or give up on: form feeds before a
# module-level `def` (they reset the column), CR line ends, `async`, strings and comments holding
# parentheses and quotes, defs inside strings and classes, continuation lines at column 0.
SIGNATURES = [
    "\fdef f(rank):\n    return rank\n",
    "  \fdef f(rank):\n    return rank\n",
    "x = 1\rdef f(rank):\r    pass\r",
    "async  def f(rank, *, device_id=None): pass\n",
    'def f(a=")", b="#(", rank=1): pass\n',
    "def f(a=(1, (2)), # a comment )\n      rank=2): pass\n",
    "def f(\nrank,\n): pass\n",
    "def f(a='it''s', rank=1): pass\n",
    'def f(a=f"{x})", rank=1): pass\n',
    'def f(a="""x)""", rank=1): pass\n',
    'def f(a="\\")", rank=1): pass\n',
    "def f(a, \\\n      rank): pass\n",
    "def f[T](rank: T): pass\n",
    'class C:\n    def m(self, rank): pass\n"""\ndef g(index):\n"""\n',
    "def f(\u00e9, rank): pass\n",
    "def f(\uff52ank): pass\n",  # the parser reads the fullwidth letter as `r`: `rank`
    "\ufeffdef f(rank): pass\n",
    "if x:\n    def f(rank): pass\ndef g(a): pass\n",
]
SIGNATURE_PIECES = st.sampled_from([
    "def ", "async ", "f", "g", "(", ")", "rank", "index", "=", ",", " ", "\t", "\f", "\n", "\r\n", "\r", "#", "'",
    '"', '"""', "\\", "x", ":", " pass", "    ", "*", "[T]", "class C:\n", "\u00e9", "lambda: ", "f'",
])


@pytest.mark.parametrize("text", SIGNATURES + [p.read_text(encoding="utf-8") for p in sorted((REPO / "gpufix").rglob("*.py"))])
def test_signature_words_hold_every_module_level_parameter(text):
    try:
        tree = ast.parse(text)
    except SyntaxError:
        tree = None
    got = I._module_def_params(text)
    if tree is not None and got is not None:
        assert _module_params(tree) <= got


@FAST
@given(st.lists(SIGNATURE_PIECES, max_size=30).map("".join))
@example("def f(a, rank): pass\n")
def test_signature_words_of_made_up_texts(text):
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return
    got = I._module_def_params(text)
    if got is not None:
        assert _module_params(tree) <= got


def test_device_helpers_skips_the_parse_only_where_no_function_takes_a_name(monkeypatch):
    uses = "def f(rank):\n    torch.cuda.set_device(rank)\n"
    assert I.device_helpers(uses) == [["f", "rank", 0]]
    assert I.device_helpers("\f" + uses) == [["f", "rank", 0]]
    parses = []
    monkeypatch.setattr(I, "_parse", lambda text: parses.append(1) or ast.parse(text))
    assert I.device_helpers("class C:\n    def m(self, rank):\n        torch.cuda.set_device(rank)\n") == []
    assert parses == []


# -- the whole-text scans of path_loads and modules_started, against what they replace ------------
def test_only_dot_p_and_y_lower_to_dot_p_or_y():
    # what lets _PY_ANY_CASE stand for `".py" in text.lower()`
    import sys

    assert [c for c in map(chr, range(sys.maxunicode + 1)) if not 0xD800 <= ord(c) <= 0xDFFF
            and any(x in c.lower() for x in ".py") and c not in ".pPyY"] == []


LOADER_PIECES = st.sampled_from([
    ".py", ".PY", ".pY", ".Py", ".p", "y", "P", "\u0130", "\u212a", "\u017f", "exec", "execfile", "run_path",
    "load_source", "SourceFileLoader", "spec_from_file_location", "(", " ", "\\", "\n", "_", "x", ".", "é",
])


def _calls_a_loader_reference(text: str) -> bool:
    return any(not (text[m.start() - 1].isalnum() or text[m.start() - 1] == "_") if m.start() else True
               for pattern in I._PATH_LOAD_CALLS for m in pattern.finditer(text))


@FAST
@given(st.lists(LOADER_PIECES, max_size=30).map("".join))
def test_path_load_gates_are_the_lowered_text_and_the_patterns(text):
    assert bool(I._PY_ANY_CASE.search(text)) == (".py" in text.lower())
    assert I._calls_a_loader(text) == _calls_a_loader_reference(text)


DASH_M_PIECES = st.sampled_from([
    "-m", "-", "m", "'", '"', " ", "\t", "\n", "\x0b", "python", "python3.8", "xpython", ",", "=", "x", "pkg.mod",
    "_", "é", "1", "(",
])


@FAST
@given(st.lists(DASH_M_PIECES, max_size=30).map("".join))
@example("'-m', \"pkg.a\" python -m pkg.b python -m 'x'")
@example('["-m", "pkg.a"]')
@example("'-m'")
@example('"-m"')
@example("'-m\"")
@example("python -m python -m x")  # the second "python" is inside the first match: findall skips it
def test_dash_m_scan_is_the_whole_text_findall(text):
    old_gate = "-m" in text and ("'-m'" in text or '"-m"' in text or any(("-m" + c) in text for c in " \t\n\r\f\v"))
    assert bool(I._DASH_M_GATE.search(text)) == old_gate
    assert I._dash_m_matches(text) == I._DASH_M.findall(text)


# -- annotation-only names: the span test by bisection, against the scan of every span -------------
def _annotation_only_reference(tree, names, text):
    from gpufix.analysis import iter_statements

    spans, import_lines = [], set()
    for stmt in iter_statements(tree.body):
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            import_lines.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
        for ann in I._annotations_of(stmt):
            spans.append(((ann.lineno, ann.col_offset), (ann.end_lineno or ann.lineno, ann.end_col_offset or 0)))
    if not spans:
        return set()
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    import bisect

    out = set()
    for name in names:
        inside = 0
        for at in I._word_positions(text, name):
            line_no = bisect.bisect_right(starts, at)
            if line_no in import_lines:
                continue
            line, col = lines[line_no - 1], at - starts[line_no - 1]
            if "#" in line[:col]:
                continue
            if any(a <= (line_no, len(line[:col].encode("utf-8"))) < b for a, b in spans):
                inside += 1
            else:
                break
        else:
            if inside:
                out.add(name)
    return out


ANNOTATED = [
    "import torch\nimport numpy as np\ndef f(x: torch.Tensor, y: 'np.ndarray' = np.zeros(1)) -> torch.Tensor:\n    return x\n",
    "import torch\nclass C:\n    t: torch.dtype\n    def m(self, a: torch.Tensor, *b: torch.Tensor, c: int = torch.cuda.device_count(), **d: torch.Size):\n        v: torch.Tensor = a\n",
    "import torch\ndef f(x: (torch\n       .Tensor)) -> None:\n    pass\nx: torch.Tensor\ny = torch.zeros(1)  # torch\n",
    "import torch\nasync def g(a: torch.Tensor, /, b: 'torch.Tensor') -> 'é torch':\n    return a\n",
]


@pytest.mark.parametrize("text", ANNOTATED + [p.read_text(encoding="utf-8") for p in sorted((REPO / "gpufix").rglob("*.py"))])
def test_annotation_only_names_by_bisection_are_the_scan_of_every_span(text):
    tree = ast.parse(text)
    names = {a.asname or a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
             for a in n.names if a.name != "*"} | {"torch", "np", "Optional", "ast", "x"}
    got = I._annotation_only_by_text(tree, names, text)
    assert got == _annotation_only_reference(tree, names, text)
    if text in ANNOTATED:  # torch only in annotations in the first and the last
        assert ("torch" in got) == (text in (ANNOTATED[0], ANNOTATED[3]))


# -- a file naming import_module / __import__: statements from the text, calls from the tree ------
DYNAMIC_PIECES = st.sampled_from([
    "import torch\n", "import os, importlib\n", "from torch import Tensor\n", "from . import sib\n",
    'm = importlib.import_module("torch.cuda")\n', "m = __import__(name)\n", 'x = __import__("os")\n',
    'p = import_module(f"pkg.{n}.x")\n', 'q = import_module(f"{n}")\n', "def f(x: Tensor) -> Tensor:\n    return x\n",
    "def g():\n    import numpy\n    return importlib.import_module('cupy')\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n    __import__('jax')\n",
    'if __name__ == "__main__":\n    main()\n', "Tensor([1])\n", "s = '''\nimport tensorflow\n'''\n",
    "try: import_module('a.b')\nexcept ImportError: pass\n", "def h(t: 'torch.Tensor'): pass\n",
])


def _file_fields(got):
    if got is None:
        return None
    f, names = got
    return (f.module, f.top, f.is_init, f.imports, f.gpu, f.script, names)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(DYNAMIC_PIECES, min_size=1, max_size=8).map("".join), st.sampled_from(["pkg/mod.py", "tool.py"]))
@example('import torch\nm = importlib.import_module("torch.cuda")\n', "pkg/mod.py")
@example("from torch import Tensor\ndef f(x: Tensor): pass\nm = __import__(n)\n", "tool.py")
@example("import_module('x'\n", "tool.py")  # does not parse: no record, as before
def test_dynamic_import_files_read_as_ast_reads_them(indexed, text, where):
    # (the fixture's project is the same for every example: nothing here writes into it)
    a = str(indexed / where)
    assert _file_fields(I._index_file(a, text)) == _file_fields(I._index_file(a, text, use_text=False))


def test_dynamic_import_files_of_the_repository_read_as_ast_reads_them(indexed):
    a = str(indexed / "pkg" / "mod.py")
    texts = [p.read_text(encoding="utf-8", errors="replace")
             for root in ("gpufix", "tests", "fixtures") for p in sorted((REPO / root).rglob("*.py"))]
    dynamic = [t for t in texts if "import_module" in t or "__import__" in t]
    assert len(dynamic) > 5
    for text in dynamic:
        assert _file_fields(I._index_file(a, text)) == _file_fields(I._index_file(a, text, use_text=False))


def test_dynamic_imports_of_a_constant_or_a_pattern(indexed):
    text = ('import importlib\nm = importlib.import_module("torch.cuda")\n'
            'p = importlib.import_module(f"pkg.{name}.x")\nq = __import__(other)\nr = __import__(f"{n}")\n')
    record = I.index_record(str(indexed / "pkg" / "mod.py"), text)
    assert record["imports"] == ["importlib", "torch.cuda", "pattern:pkg.*.x"]
    assert record["gpu"] is True


def test_a_device_chosen_from_the_rank_is_recorded_with_its_function(indexed):
    text = textwrap.dedent('''\
        import os
        import torch

        class Trainer:
            def __init__(self):
                self.gpu_id = int(os.environ["LOCAL_RANK"])

            def train(self):
                torch.zeros(1).to(f"cuda:{self.gpu_id}")
    ''')
    record = I.index_record(str(indexed / "pkg" / "trainer.py"), text)
    # the use is in another method than the rank's read (followed through `self.gpu_id`)
    assert record["rank_device"] == [9, 'torch.zeros(1).to(f"cuda:{self.gpu_id}")', "train"]
    # a rank used to log only: nothing recorded
    logs = 'import os\nimport torch\nrank = int(os.environ["RANK"])\nprint(f"rank {rank}")\n'
    assert "rank_device" not in I.index_record(str(indexed / "pkg" / "logs.py"), logs)


RANK_TEXTS = [
    # a decorator and the def it decorates are one block; `else:` goes with its `if`
    'import os\nimport torch\n\n@torch.no_grad()\ndef f():\n    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))\n',
    'import os\nimport torch\nif os.environ.get("RANK"):\n    r = int(os.environ["RANK"])\nelse:\n    r = 0\n'
    'torch.cuda.set_device(r)\n',
    # a string whose lines start at column 0: the cut does not parse, the whole text is read
    'import os\nimport torch\nDOC = """\nlocal_rank = int(os.environ["LOCAL_RANK"])\ntorch.cuda.set_device(local_rank)\n"""\n',
    # the rank in one method, its use in another
    'import os\nimport torch\n\n\nclass T:\n    def __init__(self):\n        self.gpu = int(os.environ["LOCAL_RANK"])\n\n'
    '    def go(self, m):\n        return m.to(self.gpu)\n',
    # a bracket whose lines start at column 0
    'import os\nimport torch\nx = dict(\nrank=int(os.environ["RANK"]),\n)\ntorch.cuda.set_device(x["rank"])\n',
]


@pytest.mark.parametrize("text", RANK_TEXTS)
def test_the_index_reads_a_rank_device_as_the_whole_tree_does(text):
    from gpufix import rankflow

    assert rankflow.rank_device(None, text) == rankflow.rank_device(ast.parse(text), text)
