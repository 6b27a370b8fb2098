"""A fix as text edits: the exact ranges and replacement text an editor or another tool applies.

The rules' edits (gpufix.model.Edit) are requests to the fixers (replace this node, insert this
statement, make sure the header sets these lines), applied with libcst or as checked text spans.
Other tools need plain text, the same Edit type of kind `replace-span` (range + content, ruff's
Edit; `Edit.report_json` is ruff's JSON shape): this module runs the real fixer on the text in memory and diffs the
result against it, so the edits it gives are exactly what `gpufix apply` would write, for a single
finding's fix or for every fix of the file (the `apply` passes). Nothing is written to disk.

The common fixes need no libcst, so that `scan --format json` stays light: a value replaced at its
range is that range's text replaced (the fixer keeps the node's parentheses and everything around
it), a header-only fix is placed as text (gpufix.fix.header, which `apply` uses for the same
case), and the other file kinds' fixes are text spans already. Anything else goes through the fixer.

Positions: `line` 1-based, `col` 0-based in characters (code points), `end` exclusive; for a
notebook, `cell` is the 1-based index of the cell in the notebook's cell list and the positions
are in that cell's source.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from typing import Optional

from gpufix.model import Edit
from gpufix.source import SourceFile, joined_with_markers, marker_line_map, read_source

# Larger texts are diffed as one block (difflib's line matching is quadratic in the worst case).
_MAX_DIFF_LINES = 20000


def _line_starts(text: str) -> list:
    starts = [0]
    i = text.find("\n")
    while i >= 0:
        starts.append(i + 1)
        i = text.find("\n", i + 1)
    return starts


def _pos(starts: list, offset: int) -> tuple:
    """(1-based line, 0-based column) of a character offset."""
    import bisect

    line = bisect.bisect_right(starts, offset)
    return line, offset - starts[line - 1]


def _word(ch: str) -> bool:
    return bool(ch) and (ch.isalnum() or ch == "_")


def diff_text(old: str, new: str, cell: Optional[int] = None) -> list:
    """The smallest edits (one per changed block of lines, trimmed to the characters that differ)
    that turn `old` into `new`, in `old`'s positions, in order and never overlapping."""
    if old == new:
        return []
    a = old.splitlines(keepends=True)
    b = new.splitlines(keepends=True)
    if len(a) + len(b) > _MAX_DIFF_LINES:
        blocks = [(0, len(a), 0, len(b))]
    else:
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        blocks = []
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            if tag == "replace" and i2 - i1 == j2 - j1:
                blocks.extend((i1 + k, i1 + k + 1, j1 + k, j1 + k + 1) for k in range(i2 - i1))  # line by line
            else:
                blocks.append((i1, i2, j1, j2))
    line_offsets = [0]
    for ln in a:
        line_offsets.append(line_offsets[-1] + len(ln))
    starts = _line_starts(old)
    edits = []
    for i1, i2, j1, j2 in blocks:
        start, end = line_offsets[i1], line_offsets[i2]
        before, after = old[start:end], "".join(b[j1:j2])
        if before == after:
            continue
        # trim what the two blocks share at both ends: the edit covers only what changes
        p = 0
        limit = min(len(before), len(after))
        while p < limit and before[p] == after[p]:
            p += 1
        s = 0
        while s < limit - p and before[len(before) - 1 - s] == after[len(after) - 1 - s]:
            s += 1
        # widen to whole words, so an edit reads as a change of tokens ("DEVICE_ORDER=..." inserted
        # inside "CUDA_VISIBLE..." becomes "CUDA_DEVICE_ORDER=... " before it)
        while p and _word(before[p - 1]) and (_word(before[p:p + 1]) or _word(after[p:p + 1])):
            p -= 1
        while s and _word(before[len(before) - s]) and (_word(before[len(before) - s - 1:len(before) - s])
                                                         or _word(after[len(after) - s - 1:len(after) - s])):
            s -= 1
        # never split a CRLF pair
        if p and before[p - 1] == "\r" and before[p:p + 1] == "\n":
            p -= 1
        if s and before[len(before) - s:len(before) - s + 1] == "\n" and len(before) - s - 1 >= p and before[len(before) - s - 1] == "\r":
            s -= 1
        lo, hi = start + p, end - s
        content = after[p:len(after) - s]
        line, col = _pos(starts, lo)
        end_line, end_col = _pos(starts, hi)
        edits.append(Edit.span(line, col, end_line, end_col, content, cell))
    return edits


# -- the fixed text ---------------------------------------------------------------------------
class CannotApply(Exception):
    """A fix that cannot be applied on its own (overlapping edits, a result that would not parse)."""


def _fresh(src: SourceFile) -> SourceFile:
    """A notebook's fixer writes into its parsed JSON: each fix starts from its own copy."""
    return read_source(src.path, src.raw) if src.is_notebook else src


def _compiles(text: str) -> bool:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(text, "<gpufix>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _value_replacements(src: SourceFile, edits) -> Optional[list]:
    """The resolved edits of `replace` edits that put an expression in place of a value (not a name, an
    attribute or a call, which the fixer never replaces) at an exact range: the range's text
    replaced, as the fixer writes it. None when any edit is of another kind."""
    import ast
    import warnings

    out = []
    lines = None
    for e in edits:
        if e.kind != "replace" or not e.end_line:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ast.parse(e.content.strip(), mode="eval")
        except (SyntaxError, ValueError):
            return None
        if lines is None:
            lines = src.text.split("\n")
        if not (1 <= e.line <= e.end_line <= len(lines)):
            return None
        if e.line == e.end_line:
            segment = lines[e.line - 1][e.col:e.end_col]
        else:
            segment = "\n".join([lines[e.line - 1][e.col:], *lines[e.line:e.end_line - 1], lines[e.end_line - 1][:e.end_col]])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                node = ast.parse("(\n" + segment + "\n)", mode="eval").body
        except (SyntaxError, ValueError):
            return None
        if isinstance(node, (ast.Name, ast.Attribute, ast.Call)):
            return None
        out.append(Edit.span(e.line, e.col, e.end_line, e.end_col, e.content))
    out.sort(key=lambda t: (t.line, t.col))
    for a, b in zip(out, out[1:]):
        if (b.line, b.col) < (a.end_line, a.end_col):
            return None
    return out


def _is_primary(code: str) -> bool:
    """An expression that binds tighter than any operator and stands anywhere a value does."""
    import ast

    code = code.strip()
    try:
        node = ast.parse(code, mode="eval").body
    except (SyntaxError, ValueError):
        return False
    if isinstance(node, ast.Tuple):  # only a parenthesized one: "(0, 1)", not "0, 1" nor "(0), (1)"
        if not (code.startswith("(") and code.endswith(")")):
            return False
        try:  # the outer parentheses enclose it all when what they hold parses by itself
            ast.parse(code[1:-1], mode="eval")
        except (SyntaxError, ValueError):
            return False
        return True
    return isinstance(node, (ast.Constant, ast.List, ast.Dict, ast.Set, ast.Call, ast.Attribute, ast.Name,
                             ast.Subscript, ast.JoinedStr))


def _apply(text: str, edits) -> str:
    starts = _line_starts(text)
    for e in sorted(edits, key=lambda t: (t.line, t.col), reverse=True):
        a, b = starts[e.line - 1] + e.col, starts[e.end_line - 1] + e.end_col
        text = text[:a] + e.content + text[b:]
    return text


def _text_kind_edits(src: SourceFile, edits) -> list:
    """Other file kinds: their fixes are exact text spans already."""
    from gpufix.formats import scan_facts
    from gpufix.fix.spans import EditConflict, apply_span_edits
    from gpufix.formats.tree import ParseError

    try:
        text = apply_span_edits(src.text, edits)
        scan_facts(text, src.kind)  # the fixed file must still parse
    except (EditConflict, ParseError, RecursionError) as exc:
        raise CannotApply(str(exc)) from None
    out = sorted({Edit.span(e.line, e.col, *((e.end_line, e.end_col) if e.kind == "replace-span" else (e.line, e.col)), e.content)
                  for e in edits}, key=lambda t: (t.line, t.col, t.end_line, t.end_col))
    return out


def fixed_raw(src: SourceFile, fixes) -> bytes:
    """The file's bytes with `fixes` (gpufix.model.Fix) applied in one pass, as `apply`'s first pass
    applies them (through libcst where the fix needs it). Raises CannotApply when they cannot be
    applied exactly (overlap, the result would not parse)."""
    from gpufix.fix import FixError
    from gpufix.fix.python import apply_edits
    from gpufix.fix.passes import _must_parse

    edits = [e for fx in fixes for e in fx.edits]
    if not edits:
        return src.raw
    if src.kind not in ("python", "notebook") and not src.is_notebook:
        from gpufix.fix.spans import apply_span_edits
        from gpufix.formats.text import encode_text

        _text_kind_edits(src, edits)  # raises CannotApply as `apply` would refuse
        return encode_text(apply_span_edits(src.text, edits), src.bom)
    src = _fresh(src)
    try:
        if src.is_notebook:
            from gpufix.source import notebook_bytes_from_marked

            line_map = marker_line_map(src)
            edits = [dataclasses.replace(e, line=line_map.get(e.line, e.line),
                                         end_line=line_map.get(e.end_line, e.end_line) if e.end_line else 0)
                     if e.line else e for e in edits]
            marked = joined_with_markers(src)
            new_marked, _ = apply_edits(marked, edits)
            if new_marked == marked:
                return src.raw
            _must_parse(new_marked, src.path, marked, notebook=True)
            return notebook_bytes_from_marked(src, new_marked)
        from gpufix.source import encode_python

        new_text, _ = apply_edits(src.text, edits)
        if new_text == src.text:
            return src.raw
        _must_parse(new_text, src.path, src.text)
        return encode_python(src, new_text)
    except FixError as exc:
        raise CannotApply(str(exc)) from None


def _cell_sources(raw: bytes) -> dict:
    nb = json.loads(raw.decode("utf-8-sig"))
    out = {}
    for idx, cell in enumerate(nb.get("cells", ()), 1):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            out[idx] = "".join(source) if isinstance(source, list) else source
    return out


def raw_edits(src: SourceFile, new_raw: bytes) -> list:
    """The text edits that turn the file `src` into `new_raw` (a notebook: per cell)."""
    if new_raw == src.raw:
        return []
    if src.is_notebook:
        old, new = _cell_sources(src.raw), _cell_sources(new_raw)
        return [e for idx in sorted(old) for e in diff_text(old[idx], new.get(idx, old[idx]), cell=idx)]
    new = read_source(src.path, new_raw)
    return diff_text(src.text, new.text)


def fix_edits(src: SourceFile, finding) -> Optional[list]:
    """The text edits of one finding's fix alone; None when it has none or it cannot be applied."""
    if finding.fix is None or not finding.fix.edits:
        return None
    edits = finding.fix.edits
    try:
        if src.kind not in ("python", "notebook") and not src.is_notebook:
            return _text_kind_edits(src, edits)
        if not src.is_notebook:
            direct = _value_replacements(src, edits)
            if direct is not None:
                if all(_is_primary(e.content) for e in direct):
                    # a primary (a literal, a display, a call...) in place of a value cannot break
                    # the syntax: no need to compile the whole file once per finding
                    return direct
                return direct if _compiles(_apply(src.text, direct)) or not _compiles(src.text) else None
            if all(e.kind == "ensure-header" for e in edits):
                from gpufix.fix.header import HeaderRequest, header_by_text

                request = HeaderRequest()  # as the fixer's: one line per variable, the first asked
                for e in edits:
                    request.want(e.lines)
                done = header_by_text(src.text, request.lines)
                if done is not None:
                    return diff_text(src.text, done[0])
        return raw_edits(src, fixed_raw(src, [finding.fix]))
    except CannotApply:
        return None


def fix_all_raw(src: SourceFile, policy, abs_path: Optional[str], unsafe: bool = False, session=None) -> bytes:
    """The bytes `gpufix apply` (all passes) would write for this file, from its text in memory.
    `session`: the gpufix.session.Session of `policy`, when the caller has one."""
    from gpufix.fix.passes import fix_source

    new_raw, _ = fix_source(_fresh(src), policy, unsafe, abs_path=abs_path, use_prefilter=True, session=session)
    return new_raw


# -- the JSON report's `fix.edits` -----------------------------------------------------------------
def _read_for_report(result, path: str) -> Optional[SourceFile]:
    raw = getattr(result, "sources", {}).get(path)
    if raw is None:
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError:
            return None
    try:
        return read_source(path, raw)
    except Exception:  # noqa: BLE001 - an unreadable file has no edits; the scan already said why
        return None


def add_fix_edits(finding_docs: list, result) -> None:
    """Give each finding's JSON `fix` its text edits (ruff's shape: `message` and `edits`, each
    `{content, location, end_location}`), computed from the file's text as scanned (read again
    from disk, or the text read from stdin). `edits` is null when the fix cannot be applied on its
    own (only with the file's other fixes, by `gpufix apply`)."""
    sources: dict = {}
    for doc, finding in zip(finding_docs, result.findings):
        if finding.fix is None or not doc.get("fix"):
            continue
        if finding.path not in sources:
            sources[finding.path] = _read_for_report(result, finding.path)
        src = sources[finding.path]
        edits = fix_edits(src, finding) if src is not None else None
        doc["fix"]["message"] = finding.fix.title
        doc["fix"]["edits"] = None if edits is None else [e.report_json() for e in edits]
