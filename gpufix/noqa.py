"""`gpufix scan --add-noqa`: a `# gpufix: ignore[CODE]` comment at the end of each finding's line
(ruff's `--add-noqa`), so that a codebase adopts gpufix with today's findings silenced.

Only Python files are written. The comment goes where Python reads it as a comment and nothing
else: on the finding's first line, else its last, never on a line that ends inside a string (a
triple-quoted literal, an f-string) or with a backslash continuation. A line that already has a
`# gpufix: ignore[...]` gets the new codes in it. Notebooks (the line is inside a JSON string) and
the other kinds (a `#` at the end of a Dockerfile `ENV`, a `.env` value or a YAML block scalar is
part of the value) are listed, not changed. Each file is written atomically, with its encoding,
BOM and line endings kept.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections import OrderedDict
from pathlib import Path

_IGNORE_RE = re.compile(r"gpufix\s*:\s*ignore\[(?P<codes>[^\]]*)\]", re.I)


def _unsafe_lines(text: str) -> set:
    """1-based lines whose end is not a place for a comment: inside a multi-line token (a string),
    or a backslash continuation. None of them when the file does not tokenize: then None."""
    bad = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.end[0] > tok.start[0] and tok.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.DEDENT,
                                                                  tokenize.INDENT):
                bad.update(range(tok.start[0], tok.end[0]))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return None
    for n, line in enumerate(text.split("\n"), 1):
        if line.rstrip("\r").endswith("\\"):
            bad.add(n)
    return bad


def _comment_start(line: str):
    """Where the line's comment starts (tokenize's view), or None."""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line + "\n").readline):
            if tok.type == tokenize.COMMENT:
                return tok.start[1]
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return None
    return None


def _with_codes(line: str, codes: list) -> str:
    body, cr = (line[:-1], "\r") if line.endswith("\r") else (line, "")
    start = _comment_start(body)
    if start is not None:
        m = _IGNORE_RE.search(body, start)
        if m:
            have = [c.strip() for c in m.group("codes").split(",") if c.strip()]
            merged = have + [c for c in codes if c not in have]
            return body[:m.start("codes")] + ",".join(merged) + body[m.end("codes"):] + cr
    return body.rstrip(" \t") + f"  # gpufix: ignore[{','.join(codes)}]" + cr


def add_noqa(result) -> tuple:
    """Write the comments for `result`'s findings. Returns (comments added, files changed, lines
    saying what was left unchanged and why)."""
    from gpufix.fsutil import atomic_write
    from gpufix.source import ReadError, encode_python, read_source

    by_file: "OrderedDict[str, list]" = OrderedDict()
    skipped: list = []
    for f in result.findings:
        by_file.setdefault(f.path, []).append(f)
    added = changed = 0
    for path, findings in by_file.items():
        if path.endswith(".ipynb") or any(f.cell is not None for f in findings):
            skipped.append(f"{path}: {len(findings)} finding(s) not marked: --add-noqa does not write notebooks "
                           "(add `# gpufix: ignore[CODE]` to the cell's line by hand)")
            continue
        try:
            raw = Path(path).read_bytes()
            src = read_source(path, raw)
        except (OSError, ReadError) as exc:
            skipped.append(f"{path}: not marked: cannot read it ({exc})")
            continue
        if src.kind != "python":
            skipped.append(f"{path}: {len(findings)} finding(s) not marked: --add-noqa writes only Python files "
                           "(a `#` at the end of this kind's line can be part of its value)")
            continue
        text = src.text
        unsafe = _unsafe_lines(text)
        if unsafe is None:
            skipped.append(f"{path}: not marked: the file does not tokenize")
            continue
        lines = text.split("\n")
        wanted: "OrderedDict[int, list]" = OrderedDict()
        for f in findings:
            line = next((n for n in (f.line, f.end_line) if n not in unsafe and 1 <= n <= len(lines)), None)
            if line is None:
                skipped.append(f"{path}:{f.line}: {f.rule} not marked: its lines end inside a string or a "
                               "continuation, where a comment would change the code")
                continue
            codes = wanted.setdefault(line, [])
            if f.rule not in codes:
                codes.append(f.rule)
        if not wanted:
            continue
        for line, codes in wanted.items():
            lines[line - 1] = _with_codes(lines[line - 1], codes)
            added += 1
        new_text = "\n".join(lines)
        if new_text != text:
            atomic_write(Path(path), encode_python(src, new_text))
            changed += 1
    return added, changed, skipped
