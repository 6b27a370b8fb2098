"""The header: the lines a pass asks for, where they go, and the header placed as text.

What the header is and where it goes is decided here, once, for both ways of writing it: the
request (`HeaderRequest`: one line per variable, the first asked wins, in `ENV_ORDER`), each line's
code (`header_code`), the anchor (`after_leading`: after the leading strings and `from __future__`
imports), which lines bind `os` for it (`binds_os`: only imports, none of a GPU framework) and the
placement itself (`place_header`: after the line that binds `os`, or with a lone `import os` moved
up, or a new one; after the comments that lead the file). Each writer only describes its lines to
place_header and renders its answer: gpufix.fix.python's libcst transformation for any module
(moves, an existing mask block, notebooks); `header_by_text` below as text for a plain module top, the
common pass of `gpufix apply` (a module that only lacks header lines), without a libcst parse,
transformation and code generation of the whole file.

The anchor comes from `ast`: the module's top-level statements grouped into lines as libcst groups
them (`a; b` is one line), each with the blank and comment lines above it. The text written is what
the libcst header transformation (gpufix.fix.python._Transformer._insert_header) writes for the same
request, in the cases handled here; anything else (a module that already sets a header variable, a
statement to move, `\\r` or form feeds, a backslash continuation at a statement's end, a line that is
neither code, blank nor comment where the header goes, notebooks' cell markers) returns None and
goes through libcst. tests/unit/test_edits.py checks the two agree on every golden file and on a
corpus of real modules.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import re
import tokenize
import warnings
from typing import Callable, Iterable, Optional, Sequence

from gpufix.facts import MASK_VAR, ORDER_VAR

# The order of the header's lines: the device order first, then the mask.
ENV_ORDER = {ORDER_VAR: 0, MASK_VAR: 1}
CELL_MARKER_PREFIX = "\x1fgpufix-cell-boundary"
DEFAULT_INDENT = "    "

_COMPOUND = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try, ast.FunctionDef,
             ast.AsyncFunctionDef, ast.ClassDef) + tuple(
    getattr(ast, n) for n in ("TryStar", "Match") if hasattr(ast, n))
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_,:.\-]*$")


def header_code(line: tuple, indent: str = DEFAULT_INDENT) -> str:
    """The statement for one header line: (var, value) or (var, value, "keep-cpu")."""
    var, value = line[0], line[1]
    if len(line) > 2 and line[2] == "keep-cpu":
        # A caller's explicit CPU run (CUDA_VISIBLE_DEVICES="" or "-1") stays on the CPU.
        return (f'if os.environ.get("{var}") not in ("", "-1"):  # keep an explicit CPU run\n'
                f'{indent}os.environ["{var}"] = "{value}"\n')
    return f'os.environ["{var}"] = "{value}"\n'


@dataclasses.dataclass
class HeaderRequest:
    """What a pass's edits ask of the header (the scheduled transformation, like LibCST's
    AddImportsVisitor): env lines that must be set at the top, and statements to move there. Many
    fixes may ask for the same line; it is placed once, at the end of the pass."""

    lines: list = dataclasses.field(default_factory=list)  # (var, value) or (var, value, "keep-cpu")
    moves: set = dataclasses.field(default_factory=set)  # (line, col) of statements to move

    def want(self, lines) -> None:
        for line in lines:
            if line[0] not in [known[0] for known in self.lines]:
                self.lines.append(tuple(line))

    def __bool__(self) -> bool:
        return bool(self.lines or self.moves)


def in_order(lines) -> list:
    """Header lines in the order they are written (ENV_ORDER)."""
    return sorted(lines, key=lambda item: ENV_ORDER[item[0]])


def after_leading(body: Sequence, is_docstring: Callable, is_future: Callable) -> int:
    """The index of the first module-level line the header may precede: after the docstring and
    any string right after it (the header never goes between two module strings), then after the
    `from __future__` imports (which must stay first)."""
    k = 0
    while k < len(body) and is_docstring(body[k]):
        k += 1
    while k < len(body) and is_future(body[k]):
        k += 1
    return k


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where the header goes in a module's top-level lines (place_header's answer)."""

    head: int  # lines [0, head) stay first: the docstring and the `from __future__` imports
    after_os: bool  # line `head` binds `os` (binds_os): the header goes right after it
    moved_os: Optional[int]  # else: a lone `import os` further down (its index), moved up to bind `os`
    comments_lead: bool  # else: the comments above line `head` stay first, the header after them


def place_header(lines: Sequence) -> Placement:
    """The one placement of the header, for both writers. `lines`: the module's top-level lines,
    each telling (as attributes, read in this order and only as far as needed, so that a writer
    may compute them lazily) `docstring`, `future`, `binds_os` (binds_os above), `movable_os` (a
    lone `import os` with no comment above or after it) and `comment_above` (a comment among the
    lines above it). The header binds `os` with the line after the leading ones when that line
    binds it, else with a lone `import os` moved up from further down, else with a new one."""
    k = after_leading(lines, lambda ln: ln.docstring, lambda ln: ln.future)
    if k < len(lines) and lines[k].binds_os:
        return Placement(k, True, None, False)
    moved = next((n for n in range(k + 1, len(lines)) if lines[n].movable_os), None)
    return Placement(k, False, moved, k < len(lines) and lines[k].comment_above)


def is_framework_module(name: str) -> bool:
    from gpufix.catalog import load_api_catalog

    return bool(load_api_catalog().framework_of_module(name))


def binds_os(imports: Iterable) -> bool:
    """Whether a line whose statements import `imports` (one list of (dotted name, as-name) per
    statement; None for a statement that is not an `import`) binds `os` and does nothing else the
    header must precede: only imports, none of a GPU framework (`import os, torch` and
    `import os; import torch` import torch before a header placed after them)."""
    binds = False
    for aliases in imports:
        if aliases is None:
            return False
        for name, asname in aliases:
            if is_framework_module(name):
                return False
            if name == "os" and asname is None:
                binds = True
    return binds


class _Bail(Exception):
    """The module's top is not plain enough: libcst places the header."""


def _first_indent(text: str) -> str:
    """The module's indentation unit as libcst detects it: the first INDENT token's whitespace."""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.INDENT:
                return tok.string
    except (tokenize.TokenError, SyntaxError):
        raise _Bail from None
    return DEFAULT_INDENT


def _environ_target(node) -> bool:
    return isinstance(node, ast.Subscript) and (
        (isinstance(node.value, ast.Attribute) and node.value.attr == "environ")
        or (isinstance(node.value, ast.Name) and node.value.id == "environ"))


def _writes_environ(stmt) -> bool:
    """A superset of the header lines libcst recognises (`<x>.environ[...] = v`, alone or under the
    keep-cpu `if`): any such module-level statement sends the file to libcst."""
    if isinstance(stmt, ast.Assign):
        return any(_environ_target(t) for t in stmt.targets)
    if isinstance(stmt, ast.If):
        return any(_writes_environ(s) for s in stmt.body)
    return False


class _Line:
    """One module-level line of libcst: ast statements sharing a physical line, or one compound."""

    __slots__ = ("stmts", "start", "end", "compound")

    def __init__(self, stmts):
        self.stmts = stmts
        first = stmts[0]
        decorators = getattr(first, "decorator_list", None) or []
        self.start = min([first.lineno] + [d.lineno for d in decorators])  # 1-based
        self.end = stmts[-1].end_lineno  # 1-based, inclusive
        self.compound = isinstance(first, _COMPOUND)


def _lines_of(tree, lines: list) -> list:
    out: list = []
    for stmt in tree.body:
        if out and not out[-1].compound and not isinstance(stmt, _COMPOUND) and stmt.lineno == out[-1].end:
            out[-1] = _Line(out[-1].stmts + [stmt])
        else:
            out.append(_Line([stmt]))
    for n, ln in enumerate(out):
        first_text = lines[ln.start - 1]
        if first_text[:1] in (" ", "\t") or (isinstance(ln.stmts[0], (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                                            and ln.stmts[0].decorator_list and not first_text.startswith("@")):
            raise _Bail
        if n + 1 < len(out) and lines[ln.end - 1].rstrip("\n").endswith("\\"):
            raise _Bail  # a statement that goes on past its last token's line
    return out


def _is_docstring(ln: _Line) -> bool:
    if len(ln.stmts) != 1 or not isinstance(ln.stmts[0], ast.Expr):
        return False
    value = ln.stmts[0].value
    if isinstance(value, ast.JoinedStr):
        raise _Bail  # libcst calls `"a" f"b"` a docstring and `f"b"` not
    return isinstance(value, ast.Constant) and isinstance(value.value, (str, bytes))


def _is_future(ln: _Line) -> bool:
    return all(isinstance(s, ast.ImportFrom) and s.module == "__future__" and s.level == 0 for s in ln.stmts)


def _binds_os(ln: _Line) -> bool:
    if ln.compound:
        return False
    return binds_os([(a.name, a.asname) for a in s.names] if isinstance(s, ast.Import) else None for s in ln.stmts)


def _blank(text: str) -> bool:
    return text.strip() == ""


class _TextTop:
    """Line `n` of the module's top-level lines (`_Line`s) as place_header reads it; what a line
    too odd to say raises _Bail (libcst places the header)."""

    __slots__ = ("body", "lines", "n")

    def __init__(self, body: list, lines: list, n: int):
        self.body, self.lines, self.n = body, lines, n

    @property
    def docstring(self) -> bool:
        return _is_docstring(self.body[self.n])

    @property
    def future(self) -> bool:
        return _is_future(self.body[self.n])

    @property
    def binds_os(self) -> bool:
        return _binds_os(self.body[self.n])

    @property
    def movable_os(self) -> bool:
        ln = self.body[self.n]
        if not _binds_os(ln) or len(ln.stmts) != 1 or len(ln.stmts[0].names) != 1:
            return False
        pred = self.body[self.n - 1]  # n > 0: the line after the leading ones does not bind os
        if pred.compound and self.lines[pred.end:ln.start - 1]:
            raise _Bail  # which of those lines the block above owns is libcst's call
        if any(not _blank(g) for g in _gap(self.lines, pred.end, ln.start)):
            return False  # a comment above it: it stays where it is
        if ln.start != ln.end:
            raise _Bail
        stmt = ln.stmts[0]
        own = self.lines[ln.start - 1]
        return "#" not in own.encode("utf-8")[stmt.end_col_offset:].decode("utf-8", "replace")  # no comment after it

    @property
    def comment_above(self) -> bool:
        ln = self.body[self.n]
        prev_end = self.body[self.n - 1].end if self.n else ln.start - 1
        return any(not _blank(g) for g in _gap(self.lines, prev_end, ln.start))


def _gap(lines: list, after: int, before: int) -> list:
    """The lines between line `after` and line `before` (1-based, both excluded): a statement's
    leading lines. Only blank and comment lines can be there."""
    gap = lines[after:before - 1]
    if any(not (_blank(g) or g.lstrip().startswith("#")) for g in gap):
        raise _Bail
    return gap


def header_by_text(text: str, request: list) -> Optional[tuple]:
    """(new text, lines added), or None when libcst must place the header."""
    try:
        return _place(text, request)
    except _Bail:
        return None


def _place(text: str, request: list) -> tuple:
    if (not text.endswith("\n") or "\r" in text or "\x0c" in text or CELL_MARKER_PREFIX in text
            or any(not _SAFE_VALUE.match(str(part)) for line in request for part in line)):
        raise _Bail
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise _Bail from None
    if not tree.body or any(_writes_environ(s) for s in tree.body):
        raise _Bail
    lines = [line + "\n" for line in text.split("\n")[:-1]]  # ast's lines: `\n` ends one, nothing else
    body = _lines_of(tree, lines)

    place = place_header([_TextTop(body, lines, n) for n in range(len(body))])
    k = place.head
    if k < len(body) and any(isinstance(s, ast.ImportFrom) and s.module == "__future__" for s in body[k].stmts):
        raise _Bail  # `from __future__ import x; import torch`: libcst splits the line
    head_end = body[k - 1].end if k else body[0].start - 1  # lines [0, head_end) stay first
    rest = body[k:]

    asked = HeaderRequest()
    asked.want(request)
    wanted = in_order(asked.lines)
    indent = _first_indent(text) if any(len(w) > 2 for w in wanted) else DEFAULT_INDENT
    block = ["\n"] + [header_code(w, indent) for w in wanted]

    out = lines[:head_end]
    cut = None  # (first, last) 0-based line indexes removed from the tail: a plain `import os` moved up
    if place.after_os:
        os_line = rest[0]
        _gap(lines, head_end, os_line.start)
        if lines[os_line.end - 1].rstrip("\n").endswith("\\"):
            raise _Bail
        out += lines[head_end:os_line.end]
        out += block
        tail_from = os_line.end
        nxt = rest[1] if len(rest) > 1 else None
        if nxt is not None:
            lead = _gap(lines, os_line.end, nxt.start)
            if not lead or not _blank(lead[0]):
                out.append("\n")
            out += lead
            tail_from = nxt.start - 1
        out += lines[tail_from:]
        return "".join(out), len(wanted)

    os_code = ["import os\n"]
    if place.moved_os is not None:
        moved = body[place.moved_os]
        os_code = [lines[moved.start - 1]]
        cut = (body[place.moved_os - 1].end, moved.end)

    first = rest[0] if rest else None
    lead = _gap(lines, head_end, first.start) if first is not None else []
    if place.comments_lead:
        # Comments above the first statement lead the file: the header goes after them.
        out += lead + os_code + block + ["\n"]
    else:
        out += (["\n"] if k else []) + os_code + block
        if first is not None:
            out += lead if (lead and _blank(lead[0])) else ["\n"] + lead
    tail_from = first.start - 1 if first is not None else head_end
    tail = lines[tail_from:]
    if cut is not None:
        tail = lines[tail_from:cut[0]] + lines[cut[1]:]
    out += tail
    return "".join(out), len(wanted)
