"""The pass loop of a fix: lint, choose the edits that combine, apply them (gpufix.fix.python,
or gpufix.fix.spans for the other kinds), check the result parses, lint again, until nothing is
left to fix. The bytes it returns are what `gpufix apply` writes (gpufix.apply: git checks,
backups, atomic writes), `apply -` prints and the editors' fix-all receives; nothing is written.
"""

from __future__ import annotations

import ast
import dataclasses
import warnings
from typing import Optional

from gpufix.catalog import catalog_for
from gpufix.config import Policy, make_rule_filter
from gpufix.engine import FileResult, lint_bytes, lint_source
from gpufix.fix import FixError
from gpufix.fix.python import apply_edits
from gpufix.formats import TEXT_KINDS
from gpufix.source import (
    SourceFile,
    encode_python,
    joined_with_markers,
    marker_line_map,
    notebook_bytes_from_marked,
    read_source,
)

MAX_PASSES = 8


# Ordinal remaps are computed against the file's mask *before* the fix; a later pass would read
# them through the mask this apply has just rewritten (`cuda:1` under "1,0" is GPU 0; once the
# mask is "1", a second pass would call it GPU 1 and "remap" it to cuda:0).
# The rules say so themselves (Rule.fixes_first_pass_only): the remap rules of registry.fixed_together.
def _first_pass_only() -> frozenset:
    from gpufix import registry

    return registry.fixed_together()[0]


def _choose_edits(findings, unsafe: bool, first_pass: bool = True) -> tuple:
    """This pass's edits: every fix whose edits combine with anything, and the fixes of one
    isolation group (EditKind.isolation), so that edits never fight over the statements they
    rebuild; the other groups wait for a later pass. The group of the scheduled transformation
    (the header) goes first: the other edits and the ordinal remaps are computed for the file as
    analysed, and the remaps are only right once the policy's mask is in force (a later pass would
    see remapped ordinals without that mask and refuse the header)."""
    from gpufix.model import EDIT_KINDS

    later = () if first_pass else _first_pass_only()
    usable = [f for f in findings if f.fix and (f.fix.applicability == "safe" or unsafe) and f.rule not in later]
    edits, rules = [], []
    for f in usable:
        if not f.fix.isolation:
            edits.extend(f.fix.edits)
            rules.append(f.rule)
    scheduled = {k.isolation for k in EDIT_KINDS.values() if k.scheduled}
    groups = sorted({g for f in usable for g in f.fix.isolation}, key=lambda g: (g not in scheduled, g))
    if groups:
        first = groups[0]
        for f in usable:
            if first in f.fix.isolation:
                edits.extend(f.fix.edits)
                rules.append(f.rule)
    return edits, rules


def _reread(src: SourceFile, raw: bytes) -> SourceFile:
    return read_source(src.path, raw)


def fix_source(src: SourceFile, policy: Policy, unsafe: bool = False, abs_path: Optional[str] = None,
               first: Optional[FileResult] = None, final: Optional[list] = None, use_prefilter: Optional[bool] = None,
               hold=None, session=None) -> tuple:
    """(new raw bytes, sorted rule codes fixed). Raises FixError when a fix cannot be applied safely.

    `first`: the lint of `src` the caller already has (its findings are this file's as analysed),
    used for the first pass instead of linting again. `final`: a list that receives the lint of
    the returned bytes when the last pass made one (the last pass lints what the fixes wrote, to
    find nothing left to do), so the caller need not lint them again. `use_prefilter` given (with
    `abs_path`): each pass lints as `gpufix scan` does (engine.lint_bytes, with the prefilter's
    tiers or without), so that lint is the one a re-lint of the written file would make."""
    catalog = session.catalog if session is not None else catalog_for(policy)
    enabled = session.enabled if session is not None else make_rule_filter(policy.select, policy.ignore)
    if use_prefilter is not None and abs_path is not None and src.kind not in TEXT_KINDS:
        def lint(s: SourceFile) -> FileResult:
            return lint_bytes(s.raw, abs_path, s.path, policy, use_prefilter, catalog)
    else:
        def lint(s: SourceFile) -> FileResult:
            return lint_source(s, policy, catalog, enabled, abs_path=abs_path)
    if src.kind in TEXT_KINDS:
        from gpufix.fix.spans import fix_text

        return fix_text(src, lint, unsafe)
    fixed: list = []
    raw = src.raw
    result = None
    for n in range(MAX_PASSES):
        result = first if (n == 0 and first is not None) else lint(src)
        if hold is not None and result is not first:
            from gpufix.project import apply_holds

            result = dataclasses.replace(result, findings=apply_holds(result.findings, hold))
        result_raw = raw
        if result.errors:
            break
        edits, rules = _choose_edits(result.findings, unsafe, first_pass=n == 0)
        if not edits:
            break
        if src.is_notebook:
            line_map = marker_line_map(src)
            edits = [dataclasses.replace(e, line=line_map.get(e.line, e.line), end_line=line_map.get(e.end_line, e.end_line) if e.end_line else 0)
                     if e.line else e for e in edits]
            marked = joined_with_markers(src)
            new_marked, applied = apply_edits(marked, edits)
            if not applied or new_marked == marked:
                break
            _must_parse(new_marked, src.path, marked, notebook=True)
            new_raw = notebook_bytes_from_marked(src, new_marked)
        else:
            new_text, applied = apply_edits(src.text, edits)
            if not applied or new_text == src.text:
                break
            _must_parse(new_text, src.path, src.text)
            new_raw = encode_python(src, new_text)
        if new_raw == raw:
            break
        raw = new_raw
        src = _reread(src, raw)
        fixed.extend(r for r in rules if r not in fixed)
    if final is not None and result is not None and result_raw == raw and result is not first:
        final.append(result)
    return raw, sorted(fixed)


def _compiles(text: str, notebook: bool):
    """True when `text` compiles (the checks `ast.parse` skips: `from __future__` placement, ...),
    its SyntaxError when it does not, None when it cannot be compiled here (too deep)."""
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if notebook else 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(text, "<gpufix>", "exec", flags=flags, dont_inherit=True)
    except SyntaxError as exc:
        return exc
    except (RecursionError, MemoryError, ValueError):
        return None
    return True


def _must_parse(text: str, path: str, before: Optional[str] = None, notebook: bool = False) -> None:
    """The fixed text parses, and compiles unless the original did not compile either. Compiling
    parses first, so a text that compiles is not parsed a second time."""
    try:
        got = _compiles(text, notebook)
        if got is True:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(text)
        if isinstance(got, SyntaxError) and (before is None or not isinstance(_compiles(before, notebook), SyntaxError)):
            raise got
    except SyntaxError as exc:
        raise FixError(f"the fixed code would not parse (line {exc.lineno}: {exc.msg}); file left unchanged") from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise FixError(f"the fixed code could not be checked ({type(exc).__name__}); file left unchanged") from None
