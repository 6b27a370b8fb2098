"""Suppression comments: `# gpufix: ignore[GPU001]`, bare `# gpufix: ignore`, `# noqa: GPU001`,
bare `# noqa`, and `# gpufix: ignore-file` (optionally `ignore-file[GPU101]`) on a line of its own."""

from __future__ import annotations

import io
import re
import tokenize

_IGNORE_RE = re.compile(r"gpufix\s*:\s*ignore(?P<file>-file)?(?:\[(?P<codes>[^\]]*)\])?", re.I)
_NOQA_RE = re.compile(r"\bnoqa\b(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*))?", re.I)
ALL = "*"


def _codes(text):
    if not text:
        return {ALL}
    return {c.strip().upper() for c in re.split(r"[,\s]+", text) if c.strip()}


def parse_suppressions(text: str) -> tuple:
    """({line: set(codes) or {'*'}}, file-level set(codes) or None) from the file's comments."""
    if "gpufix" not in text and "noqa" not in text.lower():
        return {}, None
    lines: dict = {}
    file_codes = None
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return {}, None
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        comment = tok.string
        own_line = tok.line[: tok.start[1]].strip() == ""
        for m in _IGNORE_RE.finditer(comment):
            codes = _codes(m.group("codes"))
            if m.group("file"):
                if own_line:
                    file_codes = (file_codes or set()) | codes
            else:
                lines.setdefault(tok.start[0], set()).update(codes)
        m = _NOQA_RE.search(comment)
        if m:
            lines.setdefault(tok.start[0], set()).update(_codes(m.group("codes")))
    return lines, file_codes


def is_suppressed(code: str, lines_to_check, line_map: dict, file_codes) -> bool:
    if file_codes and (ALL in file_codes or any(code.startswith(c) for c in file_codes)):
        return True
    for line in lines_to_check:
        codes = line_map.get(line)
        if codes and (ALL in codes or any(code.startswith(c) for c in codes)):
            return True
    return False
