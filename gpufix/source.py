"""Reading files: bytes in, text out, with everything needed to write them back byte for byte.

Python files: encoding from the BOM or the PEP 263 coding cookie (default UTF-8), newline style
kept. Notebooks: code cells joined into one module; IPython magics are masked as comments so the
module parses, and a line map sends positions back to (cell, line).
"""

from __future__ import annotations

import ast
import codecs
import dataclasses
import io
import json
import re
import tokenize
import warnings
from typing import Optional

from gpufix.model import FileError, ReadError  # noqa: F401  (ReadError: re-exported)
from gpufix.deferred import LazyPattern

MAX_FILE_BYTES = 16 * 1024 * 1024
_NEWLINE_RE = re.compile(r"\r\n|\r|\n")
# `%env NAME=VALUE` / `%env NAME VALUE` (and IPython's `%set_env`, the same magic) sets an
# environment variable in a notebook kernel.
_ENV_MAGIC_RE = LazyPattern(r"^\s*%(?:set_)?env\s+([A-Za-z_][A-Za-z0-9_]*)(?:\s*=\s*|\s+)(.*?)\s*$")


@dataclasses.dataclass
class Cell:
    """A notebook code cell's place in the joined module analysed for it."""

    index: int  # 1-based position in the notebook's cell list
    first_line: int  # 1-based line of the joined module where this cell starts
    n_lines: int
    source_was_list: bool
    masked: tuple  # 0-based line numbers (in the cell) that were magics masked as comments


@dataclasses.dataclass
class SourceFile:
    """A Python file or notebook as read: its bytes, the text analysed and how to write it back."""

    path: str  # as shown to the user (relative, "/" separators)
    raw: bytes
    text: str  # the Python source analysed (for notebooks: the joined, magic-masked code cells)
    encoding: str = "utf-8"
    bom: bool = False
    newline: str = "\n"
    notebook: Optional[dict] = None
    cells: tuple = ()
    env_magics: tuple = ()  # (name, value, line) from `%env` in notebooks
    kind: str = "python"  # see gpufix.formats: python, notebook, shell, dockerfile, dotenv, yaml, json, toml

    @property
    def is_notebook(self) -> bool:
        return self.notebook is not None

    def cell_of(self, line: int):
        """(cell index, line in cell) for a line of the joined notebook module."""
        for cell in self.cells:
            if cell.first_line <= line < cell.first_line + max(cell.n_lines, 1):
                return cell.index, line - cell.first_line + 1
        return None, line


def split_lines(text: str) -> list:
    if "\r" not in text:
        return text.split("\n")  # the common case, without the regex
    return _NEWLINE_RE.split(text)


def detect_newline(text: str) -> str:
    m = _NEWLINE_RE.search(text)
    return m.group(0) if m else "\n"


def decode_python(path: str, raw: bytes) -> tuple:
    """(text, encoding, bom) or ReadError."""
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise ReadError(FileError(path, "binary-file", "contains NUL bytes: not a Python source file", line))
    bom = raw.startswith(codecs.BOM_UTF8)
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    except SyntaxError as exc:
        raise ReadError(FileError(path, "decode-error", f"bad encoding declaration: {exc.msg if hasattr(exc, 'msg') else exc}", 1)) from None
    try:
        text = raw.decode(encoding)
    except LookupError:
        raise ReadError(FileError(path, "decode-error", f"unknown encoding {encoding!r} in the coding cookie", 1)) from None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ReadError(
            FileError(path, "decode-error", f"cannot decode byte {raw[exc.start:exc.start + 1]!r} as {encoding} (declare the file's encoding with a coding cookie or save it as UTF-8)", line)
        ) from None
    if bom and text.startswith("\ufeff"):
        text = text[1:]
    if encoding == "utf-8-sig":
        encoding = "utf-8"
    return text, encoding, bom


def encode_python(src: SourceFile, text: str) -> bytes:
    data = text.encode(src.encoding)
    return (codecs.BOM_UTF8 + data) if src.bom else data


# `obj?`, `obj.attr??`: IPython help.
_HELP_RE = LazyPattern(r"^[A-Za-z_][\w.]*(?:\(\))?\?{1,2}\s*$")
# Automagics (a line magic without its `%`), masked only where the line is not Python anyway.
_AUTOMAGIC_RE = LazyPattern(
    r"^(?:pip|conda|mamba|micromamba|ls|cd|pwd|cat|mkdir|rm|cp|mv|env|matplotlib|load_ext|reload_ext|autoreload|time|timeit|run)\s+\S"
)
# `files = !ls`, `out = %sx cmd`: a shell escape or magic whose output is assigned.
_ASSIGN_MAGIC_RE = LazyPattern(r"^[A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*\s*=\s*[!%]")


def _not_python(line: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(line)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return True
    return False


def _is_magic(s: str) -> bool:
    if s.startswith(("%", "!", "?")) or _HELP_RE.match(s) or _ASSIGN_MAGIC_RE.match(s):
        return True
    return bool(_AUTOMAGIC_RE.match(s)) and _not_python(s)


# Cell magics whose body is Python run in the kernel (IPython's own, and memory_profiler's).
PYTHON_CELL_MAGICS = ("time", "timeit", "capture", "prun", "memit")


def runs_python(first_line: str) -> bool:
    """Whether a cell starting with this `%%magic` line is Python code under the magic."""
    words = first_line.strip()[2:].split()
    return bool(words) and words[0] in PYTHON_CELL_MAGICS


def _opens_block(line: str) -> bool:
    """Whether a code line ends with `:` (crudely: text after a `#` is taken as a comment)."""
    return line.split("#", 1)[0].rstrip().endswith(":")


def _mask_magics(lines: list) -> tuple:
    """Comment out IPython magics and shell escapes; return (lines, masked indices, env magics)."""
    out = list(lines)
    masked = []
    env = []
    stripped0 = lines[0].lstrip() if lines else ""
    if stripped0.startswith("%%"):
        if not runs_python(stripped0):
            # A cell magic makes the whole cell something other than Python.
            return ["#" + ln for ln in lines], tuple(range(len(lines))), ()
        # `%%time`, `%%capture`, ...: the magic line is IPython, the rest of the cell is Python.
        rest, masked, env = _mask_magics(lines[1:])
        return ["#" + lines[0]] + rest, (0,) + tuple(i + 1 for i in masked), tuple((n, v, i + 1) for n, v, i in env)
    continued = False  # the previous line was a magic ending in a backslash
    python_continued = False  # the previous line was Python code ending in a backslash
    last_code = ""  # the last line of Python code (not blank, not a comment, not a magic)
    for i, ln in enumerate(lines):
        s = ln.lstrip()
        if continued:
            # A magic or shell escape ending in a backslash goes on on the next line.
            out[i] = ln[: len(ln) - len(s)] + "#" + s
            masked.append(i)
            continued = ln.endswith("\\")
            continue
        if not python_continued and _is_magic(s):
            m = _ENV_MAGIC_RE.match(ln)
            if m:
                value = m.group(2).strip().strip("'\"")
                env.append((m.group(1), value, i))
            indent = ln[: len(ln) - len(s)]
            # A magic that is the body of a block (`if IN_COLAB:` / `    !pip install ...`) becomes
            # `pass` plus the comment: a bare comment would leave the block empty.
            body_of_block = bool(indent) and _opens_block(last_code)
            out[i] = indent + ("pass  #" if body_of_block else "#") + s
            masked.append(i)
            continued = ln.endswith("\\")
            last_code = ""
            continue
        python_continued = ln.endswith("\\") and not s.startswith("#")
        if s and not s.startswith("#"):
            last_code = ln
    return out, tuple(masked), tuple(env)


def read_notebook(path: str, raw: bytes) -> SourceFile:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReadError(FileError(path, "notebook-error", f"notebook is not UTF-8 JSON: {exc.reason} at byte {exc.start}")) from None
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReadError(FileError(path, "notebook-error", f"notebook is not valid JSON: {exc.msg}", exc.lineno)) from None
    except RecursionError:  # the C decoder recurses once per nesting level
        raise ReadError(FileError(path, "notebook-error", "notebook JSON is nested too deeply to read")) from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ReadError(FileError(path, "notebook-error", "notebook has no `cells` list (nbformat 4 expected)"))
    lines: list = []
    cells = []
    env_magics = []
    for idx, cell in enumerate(nb["cells"], 1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        was_list = isinstance(source, list)
        if was_list:
            if not all(isinstance(s, str) for s in source):
                raise ReadError(FileError(path, "notebook-error", f"cell {idx}: `source` is not a list of strings", cell=idx))
            source = "".join(source)
        elif not isinstance(source, str):
            raise ReadError(FileError(path, "notebook-error", f"cell {idx}: `source` is not text", cell=idx))
        cell_lines = split_lines(source)
        if cell_lines and cell_lines[-1] == "" and len(cell_lines) > 1:
            cell_lines = cell_lines[:-1]
        cell_lines, masked, env = _mask_magics(cell_lines)
        first = len(lines) + 1
        for name, value, i in env:
            env_magics.append((name, value, first + i))
        cells.append(Cell(idx, first, len(cell_lines), was_list, masked))
        lines.extend(cell_lines)
    joined = "\n".join(lines) + ("\n" if lines else "")
    return SourceFile(path=path, raw=raw, text=joined, notebook=nb, cells=tuple(cells), env_magics=tuple(env_magics))


def read_source(path: str, raw: bytes) -> SourceFile:
    if len(raw) > MAX_FILE_BYTES:
        raise ReadError(FileError(path, "too-large", f"file is {len(raw) / 2**20:.1f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB limit; skipped"))
    if path.endswith(".ipynb"):
        return read_notebook(path, raw)
    from gpufix.formats import decode
    from gpufix.kinds import TEXT_KINDS, detect_kind

    kind = detect_kind(path, raw)
    if kind in TEXT_KINDS:
        text, bom = decode(path, raw, kind)
        return SourceFile(path=path, raw=raw, text=text, bom=bom, newline=detect_newline(text), kind=kind)
    text, encoding, bom = decode_python(path, raw)
    return SourceFile(path=path, raw=raw, text=text, encoding=encoding, bom=bom, newline=detect_newline(text))


CELL_MARKER = "# \x1fgpufix-cell-boundary {index}"
_CELL_MARKER_RE = LazyPattern(r"^# \x1fgpufix-cell-boundary (\d+)$", re.M)


def joined_with_markers(src: SourceFile) -> str:
    """The code cells joined with a marker comment line before each cell (for the fixer)."""
    lines = split_lines(src.text)
    out = []
    for cell in src.cells:
        out.append(CELL_MARKER.format(index=cell.index))
        out.extend(lines[cell.first_line - 1 : cell.first_line - 1 + cell.n_lines])
    return "\n".join(out) + "\n"


def marker_line_map(src: SourceFile) -> dict:
    """Joined-module line -> line in the marker text (each cell is shifted by its marker lines)."""
    mapping = {}
    shift = 0
    for cell in src.cells:
        shift += 1
        for i in range(cell.n_lines):
            mapping[cell.first_line + i] = cell.first_line + i + shift
    return mapping


def notebook_bytes_from_marked(src: SourceFile, marked_text: str) -> bytes:
    parts = _CELL_MARKER_RE.split(marked_text)
    # parts: [before-first-marker, idx1, body1, idx2, body2, ...]
    bodies = {}
    for i in range(1, len(parts) - 1, 2):
        bodies[int(parts[i])] = parts[i + 1]
    nb = src.notebook
    by_index = {c.index: c for c in src.cells}
    changed = {}  # cell index -> its new source
    for idx, cell in enumerate(nb["cells"], 1):
        if idx not in by_index:
            continue
        info = by_index[idx]
        body = bodies.get(idx, "")
        if body.startswith("\n"):
            body = body[1:]
        cell_lines = split_lines(body)
        if cell_lines and cell_lines[-1] == "":
            cell_lines = cell_lines[:-1]
        masked = set(info.masked)
        original_lines = split_lines("".join(cell["source"]) if info.source_was_list else cell["source"])
        # Unmask magics: a masked line that survived unchanged goes back to its original text.
        restored = []
        orig_masked = {}
        cell_lines0 = original_lines[:-1] if (len(original_lines) > 1 and original_lines[-1] == "") else original_lines
        masked_text = _mask_magics(cell_lines0)[0]  # exactly the masking read_notebook did
        for i in masked:
            if i < len(cell_lines0):
                orig_masked[masked_text[i]] = cell_lines0[i]
        for ln in cell_lines:
            restored.append(orig_masked.get(ln, ln))
        if info.masked and original_lines and original_lines[0].lstrip().startswith("%%") and not runs_python(original_lines[0]):
            restored = [ln[1:] if ln.startswith("#") else ln for ln in cell_lines]
        old_source = "".join(cell["source"]) if info.source_was_list else cell["source"]
        nl = detect_newline(old_source)  # a cell written with "\r\n" keeps them
        new_source = nl.join(restored)
        if old_source.endswith(("\n", "\r")):
            # read_notebook dropped the empty line after the cell's last newline: put it back
            # (a cell ending in a blank line, "x\n\n", reads as ["x", ""] and ends in two).
            new_source += nl
        if new_source == old_source:
            continue
        if info.source_was_list:
            cell["source"] = [ln for ln in re.split(r"(?<=\n)", new_source) if ln]
        else:
            cell["source"] = new_source
        changed[idx] = cell["source"]
    return _splice_sources(src.raw, nb, changed) or dump_notebook(nb, src.raw)


def _json_value_end(text: str, i: int) -> int:
    """The end of the JSON value that starts at text[i] (the text is valid JSON: json.loads read it)."""
    depth = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c in "{[":
            depth += 1
        elif c in "}]":
            if depth == 0:
                return i  # the end of the object or list a number or literal is the last value of
            depth -= 1
            if depth == 0:
                return i + 1
        elif depth == 0 and c in ", \t\r\n":
            return i
        i += 1
        if depth == 0 and c == '"':
            return i
    return i


def _members(text: str, i: int):
    """(key, value start, value end) of the members of the JSON object at text[i] == "{"."""
    i += 1
    while True:
        i = _skip_ws(text, i)
        if text[i] == "}":
            return
        end = _json_value_end(text, i)
        key = json.loads(text[i:end])
        i = _skip_ws(text, _skip_ws(text, end) + 1)  # past the ":"
        end = _json_value_end(text, i)
        yield key, i, end
        i = _skip_ws(text, end)
        if text[i] == ",":
            i += 1


def _skip_ws(text: str, i: int) -> int:
    while text[i] in " \t\r\n":
        i += 1
    return i


def _source_spans(text: str) -> Optional[dict]:
    """{cell index (1-based): (start, end) of its "source" value} in a notebook's JSON text."""
    i = _skip_ws(text, 0)
    if text[i] != "{":
        return None
    cells = next(((s, e) for k, s, e in _members(text, i) if k == "cells"), None)
    if cells is None or text[cells[0]] != "[":
        return None
    spans = {}
    i, idx = cells[0] + 1, 0
    while True:
        i = _skip_ws(text, i)
        if text[i] == "]":
            return spans
        idx += 1
        end = _json_value_end(text, i)
        if text[i] == "{":
            for k, s, e in _members(text, i):
                if k == "source":
                    spans[idx] = (s, e)
        i = _skip_ws(text, end)
        if text[i] == ",":
            i += 1


def _splice_sources(original: bytes, nb: dict, changed: dict) -> Optional[bytes]:
    """The notebook's original bytes with only the "source" values of the `changed` cells rewritten,
    each in the layout the file gives it (one string per line at the list's indentation, `\\u`
    escapes in an ASCII file, its newlines), so that a notebook apply fixes keeps every other byte;
    None when the text cannot be spliced (dump_notebook writes it whole then)."""
    text = original.decode("utf-8-sig", errors="replace")
    try:
        spans = _source_spans(text)
    except (IndexError, ValueError):
        return None
    if not spans or any(idx not in spans for idx in changed):
        return None
    ascii_only = text.isascii() and "\\u" in text
    out, at = [], 0
    for idx in sorted(changed, key=lambda k: spans[k][0]):
        start, end = spans[idx]
        old, new = text[start:end], changed[idx]
        if isinstance(new, list) and old.startswith("["):
            m = re.match(r"\[(\r?\n)([ \t]*)", old)
            if new and m:  # one string per line, closed on a line of its own
                close = re.search(r"(\r?\n[ \t]*)\]$", old)
                sep = "," + m.group(1) + m.group(2)
                value = ("[" + m.group(1) + m.group(2) + sep.join(json.dumps(x, ensure_ascii=ascii_only) for x in new)
                         + (close.group(1) if close else m.group(1)) + "]")
            elif new and old != "[]":  # on one line
                value = "[" + ", ".join(json.dumps(x, ensure_ascii=ascii_only) for x in new) + "]"
            elif not new:
                value = "[]"
            else:
                return None  # an empty list gives no layout to follow
        elif isinstance(new, str) and old.startswith('"'):
            value = json.dumps(new, ensure_ascii=ascii_only)
        else:
            return None
        out += [text[at:start], value]
        at = end
    out.append(text[at:])
    spliced = "".join(out)
    if json.loads(spliced) != nb:
        return None
    data = spliced.encode("utf-8")
    return codecs.BOM_UTF8 + data if original.startswith(codecs.BOM_UTF8) else data


def dump_notebook(nb: dict, original: bytes) -> bytes:
    text = original.decode("utf-8-sig", errors="replace")
    m = re.match(r"\{\s*\n( +)\"", text)
    indent = len(m.group(1)) if m else 1
    out = json.dumps(nb, indent=indent, ensure_ascii=False)
    if text.endswith("\n"):
        out += "\n"
    if "\r\n" in text[:4096]:
        out = out.replace("\n", "\r\n")  # json.dumps escapes newlines inside strings: only layout changes
    data = out.encode("utf-8")
    return codecs.BOM_UTF8 + data if original.startswith(codecs.BOM_UTF8) else data
