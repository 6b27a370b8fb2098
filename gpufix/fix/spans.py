"""`gpufix apply` for non-Python files: the findings' span edits (`replace-span`, `insert-text`)
applied to the text, checked, and re-encoded with the file's own BOM and line endings."""

from __future__ import annotations

from gpufix.fix import FixError
from gpufix.formats import scan_facts
from gpufix.formats.text import Lines, encode_text
from gpufix.formats.tree import ParseError
from gpufix.source import read_source


class EditConflict(Exception):
    """Two edits of one pass overlap."""


def apply_span_edits(text: str, edits) -> str:
    """Apply replace-span / insert-text edits (positions in `text`) from the end backwards."""
    lines = Lines(text)
    spans = []
    for e in edits:
        start = lines.offset(e.line, e.col)
        end = lines.offset(e.end_line, e.end_col) if e.kind == "replace-span" else start
        spans.append((start, end, e.content))
    spans = sorted(set(spans), key=lambda s: (s[0], s[1]))
    for a, b in zip(spans, spans[1:]):
        if b[0] < a[1]:
            raise EditConflict(f"overlapping edits at line {lines.pos(b[0])[0]}")
    for start, end, code in reversed(spans):
        text = text[:start] + code + text[end:]
    return text


# Every edit of a pass is computed on the same text and they never overlap, so one pass applies
# them all; a second pass only judges again what the new mask changed (an ordinal that named a GPU
# the policy hides is then addressed under the policy's mask), as the Python fixer does, so that a
# second `apply` finds nothing left to fix.
MAX_PASSES = 4


def fix_text(src, lint, unsafe: bool) -> tuple:
    """(new raw bytes, sorted rule codes fixed); FixError when a fix cannot be applied exactly.
    `lint` lints a SourceFile (the engine's lint_source with the policy bound)."""
    raw = src.raw
    fixed: list = []
    for _ in range(MAX_PASSES):
        result = lint(src)
        if result.errors:
            break
        usable = [f for f in result.findings if f.fix and (f.fix.applicability == "safe" or unsafe)]
        if not usable:
            break
        edits = [e for f in usable for e in f.fix.edits]
        try:
            new_text = apply_span_edits(src.text, edits)
        except EditConflict as exc:
            raise FixError(f"fixes overlap ({exc}); file left unchanged") from None
        if new_text == src.text:
            break
        try:
            scan_facts(new_text, src.kind)  # the fixed file must still parse
        except (ParseError, RecursionError) as exc:
            raise FixError(f"the fixed file would not parse ({exc}); file left unchanged") from None
        raw = encode_text(new_text, src.bom)
        src = read_source(src.path, raw)
        fixed.extend(f.rule for f in usable if f.rule not in fixed)
    return raw, sorted(fixed)
