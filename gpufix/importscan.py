"""A file's import statements and `__main__` guard read from its text, without parsing it.

The project index (gpufix.project) needs the imports of every Python file of the project, most of
which hold no GPU code at all; `ast.parse` of diffusers' 2,089 files alone takes four times as long
as ruff's whole run. Import statements have a shape plain text settles: the keyword `import` on a
line, after `from X`, at the start of a statement. What text cannot settle, this module does not
guess: `read_imports` returns None (the caller parses the file with `ast`) for

* a file that mentions `import_module` / `__import__` (dynamic imports, read from call arguments:
  with `dynamic=True` its statements are read all the same, and the caller reads the calls from
  the file's tree), or tests `TYPE_CHECKING` (imports that never run) other than as
  `if TYPE_CHECKING:` with an indented block;
* a statement whose shape it does not know (a continuation line it cannot follow, a name list it
  cannot split).

The results are checked against the `ast` reading over real projects by the tests
(tests/unit/test_importscan.py).
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple, Optional

# Strings and comments, in the order the tokenizer meets them: a match starting at a quote is the
# whole string (triple-quoted ones across lines), so an `import` inside a docstring is never read.
# Written as unrolled loops ([^"\\]*(?:\\.[^"\\]*)*) that the regex engine runs without backtracking.
_STRINGS_AND_COMMENTS = re.compile(
    r"#[^\n]*"
    r'|"""[^"\\]*(?:(?:\\[\s\S]|"(?!""))[^"\\]*)*(?:"""|\Z)'
    r"|'''[^'\\]*(?:(?:\\[\s\S]|'(?!''))[^'\\]*)*(?:'''|\Z)"
    r'|"[^"\\\n]*(?:\\[\s\S][^"\\\n]*)*(?:"|$)'
    r"|'[^'\\\n]*(?:\\[\s\S][^'\\\n]*)*(?:'|$)",
    re.M,
)
_FROM_PREFIX = re.compile(r"(?:^|[;:])[ \t]*from[ \t]+([.\w \t]*?)[ \t]*$")
_AFTER_COLON_OR_SEMI = re.compile(r"[;:][ \t]*$")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:[ \t]*\.[ \t]*[A-Za-z_]\w*)*")
_ALIAS = re.compile(r"^([A-Za-z_][\w.]*)(?:[ \t]+as[ \t]+([A-Za-z_]\w*))?$")
_MAIN_GUARD_LINE = re.compile(r"^if\b[^\n]*__main__[^\n]*", re.M)
_UNSETTLED_WORDS = ("import_module", "__import__")
_TYPE_CHECKING_LINE = re.compile(r"^[ \t]*(?:el)?if\b[^\n]*\bTYPE_CHECKING\b[^\n]*", re.M)
_TYPE_CHECKING_BLOCK = re.compile(r"([ \t]*)(?:el)?if[ \t]+(?:[A-Za-z_]\w*[ \t]*\.[ \t]*)*TYPE_CHECKING[ \t]*:[ \t]*(?:#.*)?\r?")


class ImportStmt(NamedTuple):
    level: int  # leading dots of a from-import (0: absolute); -1 for `import a.b`
    module: str  # the from-import's module ("" for `from . import x`); "" for `import`
    names: tuple  # ((name, asname or None), ...); ("*", None) for a star import
    line: int  # first line (1-based)
    end_line: int  # last line
    start: int  # offset of the first line's start in the text
    end: int  # offset of the end of the last line


class TextImports(NamedTuple):
    statements: list  # ImportStmt, in text order
    has_main_guard: bool


def _outside_strings(text: str, positions: list) -> list:
    """For sorted `positions`, whether each lies outside every string and comment. Lexes only up
    to the last position (imports sit near the top of most files)."""
    out = []
    i = 0
    n = len(positions)
    if not n:
        return out
    for m in _STRINGS_AND_COMMENTS.finditer(text):
        start, end = m.span()
        while i < n and positions[i] < start:
            out.append(True)
            i += 1
        while i < n and positions[i] < end:
            out.append(False)
            i += 1
        if i == n:
            return out
    out.extend([True] * (n - i))
    return out


def _logical_end(text: str, pos: int, parens: bool) -> Optional[int]:
    """End of the statement that starts before `pos`: the end of its line, following backslash
    continuations and (for `from x import (...)`) the closing parenthesis; None when unclear."""
    n = len(text)
    if parens:
        pos = text.find("(", pos) + 1
        close = text.find(")", pos)
        if close < 0:
            return None
        chunk = text[pos:close]
        if "#" in chunk or "(" in chunk or '"' in chunk or "'" in chunk:
            # comments inside the parentheses: strip them line by line, then look again
            depth_text = "\n".join(line.split("#", 1)[0] for line in text[pos:].split("\n"))
            close_rel = depth_text.find(")")
            if close_rel < 0 or "(" in depth_text[:close_rel] or '"' in depth_text[:close_rel] or "'" in depth_text[:close_rel]:
                return None
            # map back: the stripped text keeps line breaks, so count lines
            line_no = depth_text.count("\n", 0, close_rel)
            at = pos
            for _ in range(line_no):
                at = text.find("\n", at) + 1
            close = text.find(")", at)
            if close < 0:
                return None
        pos = close
    end = text.find("\n", pos)
    while end > 0 and (text[end - 1] == "\\" or (text[end - 1] == "\r" and end > 1 and text[end - 2] == "\\")):
        end = text.find("\n", end + 1)
    return n if end < 0 else end


@functools.lru_cache(maxsize=4096)
def _split_names(chunk: str) -> Optional[tuple]:
    """The names of an import statement's text after `import` (a tuple, or None when unclear); a
    function of the text alone, kept for the next files (` torch`, ` Optional, Union` recur)."""
    chunk = chunk.replace("\\\r\n", " ").replace("\\\n", " ")
    if "#" in chunk:
        chunk = "\n".join(line.split("#", 1)[0] for line in chunk.split("\n"))
    chunk = chunk.strip()
    if chunk.startswith("("):
        if not chunk.endswith(")"):
            return None
        chunk = chunk[1:-1]
    names = []
    for part in chunk.split(","):
        part = " ".join(part.split())
        if not part:
            continue
        if part == "*":
            names.append(("*", None))
            continue
        m = _ALIAS.match(part)
        if m is None:
            return None
        names.append((m.group(1), m.group(2)))
    return tuple(names) if names else None


def read_imports(text: str, dynamic: bool = False) -> Optional[TextImports]:
    """The import statements and `__main__` guard of `text`, or None when the text cannot settle
    them (see the module docstring). `dynamic`: read the statements of a file that names
    `import_module` / `__import__` too (its dynamic imports are then the caller's to read: the
    words are never part of a statement this reads, `__import__` and `import_module` being other
    names than the keyword)."""
    if not dynamic and ("import_module" in text or "__import__" in text):  # _UNSETTLED_WORDS
        return None
    cands = []  # (statement start, `import` keyword position, kind, from-prefix match)
    find = text.find
    kw = find("import")
    while kw >= 0:
        at, kw = kw, find("import", kw + 6)
        if (at and (text[at - 1].isalnum() or text[at - 1] in "_.")) or text[at + 6: at + 7].isalnum() or text[at + 6: at + 7] == "_":
            continue  # part of a longer name (`importlib`, `__import__`, `x.import_`)
        line_start = text.rfind("\n", 0, at) + 1
        prefix = text[line_start:at]
        if not prefix.strip():
            j = line_start - 2
            if j >= 0 and text[j] == "\r":
                j -= 1
            if j >= 0 and text[j] == "\\":
                return None  # `from x \` then `import y` on the next line: rare, left to ast
            cands.append((at, at, "import", None))
            continue
        if _AFTER_COLON_OR_SEMI.search(prefix):
            cands.append((at, at, "import", None))  # `import os; import torch`, `try: import x`
            continue
        fm = _FROM_PREFIX.search(prefix)
        if fm is not None:
            cands.append((line_start + fm.start() + (1 if prefix[fm.start()] in ";:" else 0), at, "from", fm))
        # else `import` inside a line: a string, a comment or an expression, never a statement
    guards = _main_guard_lines(text)
    checks = _type_checking_lines(text)
    positions = sorted({c[0] for c in cands} | set(guards) | set(checks))
    outside = dict(zip(positions, _outside_strings(text, positions)))
    never_run = []  # (start, end) of `if TYPE_CHECKING:` blocks
    for at in checks:
        if outside[at]:
            block = _type_checking_block(text, at)
            if block is None:
                return None
            never_run.append(block)
    statements = []
    counted = [0, 1]  # (position, its line): line numbers counted forward from the last one

    def line_at(pos: int) -> int:
        last, line = counted
        line += text.count("\n", last, pos) if pos >= last else -text.count("\n", pos, last)
        counted[0], counted[1] = pos, line
        return line

    for start, kw, kind, fm in cands:
        if not outside[start] or any(a <= start < b for a, b in never_run):
            continue
        after = kw + len("import")
        rest_line_end = text.find("\n", after)
        rest = text[after: rest_line_end if rest_line_end >= 0 else len(text)]
        parens = kind == "from" and rest.lstrip().startswith("(")
        end = _logical_end(text, after, parens)
        if end is None:
            return None
        body = text[after:end]
        semi = body.find(";")
        if semi >= 0 and not parens:
            body = body[:semi]
        if ":" in body.split("#", 1)[0]:
            return None  # `import x: ...` is no statement; leave the oddity to ast
        names = _split_names(body)
        if names is None:
            return None
        line = line_at(start)
        line_start = text.rfind("\n", 0, start) + 1
        end_line = line + text.count("\n", start, max(start, end - 1))
        if kind == "import":
            if any(n == "*" for n, _ in names):
                return None
            statements.append(ImportStmt(-1, "", tuple((" ".join(n.split()).replace(" ", ""), a) for n, a in names), line, end_line, line_start, end))
        else:
            spec = fm.group(1).replace(" ", "").replace("\t", "")
            dots = len(spec) - len(spec.lstrip("."))
            module = spec[dots:]
            if module and not _DOTTED.fullmatch(module):
                return None
            statements.append(ImportStmt(dots, module, names, line, end_line, line_start, end))
    has_guard = False
    for g in guards:
        if outside[g] and _is_main_guard(text, g):
            has_guard = True
            break
    return TextImports(statements, has_guard)


def _indent(line: str) -> int:
    return len(line[: len(line) - len(line.lstrip(" \t"))].expandtabs(8))


def _type_checking_block(text: str, at: int) -> Optional[tuple]:
    """(start, end) offsets of the indented block of the `if TYPE_CHECKING:` line at `at`; None
    when the line is another test of it (`if not TYPE_CHECKING:`, a one-line body, ...)."""
    end = text.find("\n", at)
    if end < 0:
        return None
    m = _TYPE_CHECKING_BLOCK.fullmatch(text, at, end)
    if m is None:
        test = text[at:end].split("#", 1)[0].split(":", 1)[0].strip()
        test = test[2:] if test.startswith("if") else test[4:]
        if test.replace("(", "").replace(")", "").replace(" ", "").split(".")[-1] == "TYPE_CHECKING":
            return None  # `if (TYPE_CHECKING):`, a one-line body: left to ast
        return at, at  # another test (`if TYPE_CHECKING or SLOW_IMPORT:`): its imports run
    own = _indent(m.group(1))
    pos = end + 1
    n = len(text)
    body = False
    while pos < n:
        nxt = text.find("\n", pos)
        if nxt < 0:
            nxt = n
        line = text[pos:nxt]
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            if _indent(line) <= own:
                if stripped[0] in ")]}" or not body or not _outside_strings(text, [pos])[0]:
                    return None  # a continuation or a string's line: not settled by indentation
                return end + 1, pos
            body = True
        pos = nxt + 1
    return (end + 1, n) if body else None


def _type_checking_lines(text: str) -> list:
    """The starts of _TYPE_CHECKING_LINE.finditer(text)'s matches (see _lines_starting)."""
    return _lines_starting(text, "TYPE_CHECKING", _TYPE_CHECKING_LINE)


def _main_guard_lines(text: str) -> list:
    """Offsets of the lines that start with `if` and mention `__main__` (see _lines_starting)."""
    return _lines_starting(text, "__main__", _MAIN_GUARD_LINE)


def _lines_starting(text: str, word: str, line_rx) -> list:
    """The starts of `line_rx`'s matches, from the lines that hold `word`: each match starts at a
    line's start (`^`), ends in that line (no part of it matches "\n") and holds `word`, so each
    line holds at most one, and only a line with the word can (a multi-line pattern would be tried
    at every line of the file)."""
    out = []
    at = text.find(word)
    while at >= 0:
        line_start = text.rfind("\n", 0, at) + 1
        if line_rx.match(text, line_start):
            out.append(line_start)
        nxt = text.find("\n", at)
        at = text.find(word, nxt) if nxt >= 0 else -1
    return out


def is_main_guard(stmt) -> bool:
    """`if __name__ == "__main__":` (either side of the `==`): the one test of a `__main__` guard
    (the project graph's entry points and the analysis' facts both use it). `!=`, `in`, chained or
    other comparisons are not guards: `if __name__ != "__main__":` runs its body on import."""
    import ast

    if not isinstance(stmt, ast.If) or not isinstance(stmt.test, ast.Compare):
        return False
    test = stmt.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = (test.left, test.comparators[0])
    return (any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
            and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides))


def has_main_guard(tree) -> bool:
    """Whether a module body holds a `__main__` guard (is_main_guard)."""
    return any(is_main_guard(stmt) for stmt in tree.body)


_has_main_guard = has_main_guard  # the name gpufix.project re-exports


def _is_main_guard(text: str, pos: int) -> bool:
    import ast

    end = text.find("\n", pos)
    line = text[pos: end if end >= 0 else len(text)].rstrip()
    for snippet in (line, line + "\n    pass"):
        try:
            return has_main_guard(ast.parse(snippet))
        except (SyntaxError, ValueError):
            continue
    return False
