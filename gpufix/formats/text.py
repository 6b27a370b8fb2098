"""Shared plumbing for the non-Python inputs: decoding, offsets <-> (line, column), `#` comment
suppressions, and the span edits their fixes are made of.

Non-Python files are edited as text, never re-serialised: a fix replaces or inserts exact
character spans found by the parsers, so every other byte of the file stays as it was.
"""

from __future__ import annotations

import bisect
import codecs
import re
from typing import Optional

from gpufix.model import Edit, FileError
from gpufix.model import ReadError as TextError  # one error type for every reader
from gpufix.suppress import directives
from gpufix.deferred import LazyPattern


def decode_text(path: str, raw: bytes) -> tuple:
    """(text, bom) of a UTF-8 text file, or TextError (binary content, bad UTF-8)."""
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise TextError(FileError(path, "binary-file", "contains NUL bytes: not a text file", line))
    bom = raw.startswith(codecs.BOM_UTF8)
    body = raw[3:] if bom else raw
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        raise TextError(FileError(path, "decode-error", f"cannot decode byte {body[exc.start:exc.start + 1]!r} as UTF-8 (save the file as UTF-8)", line)) from None
    return text, bom


def encode_text(text: str, bom: bool) -> bytes:
    data = text.encode("utf-8")
    return codecs.BOM_UTF8 + data if bom else data


class Lines:
    """Character offset <-> (1-based line, 0-based column). Lines end at "\\n" only, so a CRLF
    file's "\\r" stays the last character of its line and columns are unaffected."""

    def __init__(self, text: str):
        self.text = text
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def pos(self, offset: int) -> tuple:
        i = bisect.bisect_right(self.starts, offset) - 1
        return i + 1, offset - self.starts[i]

    def offset(self, line: int, col: int) -> int:
        return self.starts[line - 1] + col

    def line_of(self, offset: int) -> int:
        return self.pos(offset)[0]

    def line_start(self, offset: int) -> int:
        return self.starts[self.line_of(offset) - 1]

    def line_text(self, line: int) -> str:
        start = self.starts[line - 1]
        end = self.starts[line] - 1 if line < len(self.starts) else len(self.text)
        return self.text[start:end].rstrip("\r")


def newline_of(text: str) -> str:
    i = text.find("\n")
    return "\r\n" if i > 0 and text[i - 1] == "\r" else "\n"


def replace_edit(lines: Lines, start: int, end: int, code: str) -> Edit:
    line, col = lines.pos(start)
    end_line, end_col = lines.pos(end)
    return Edit("replace-span", line, col, code, end_line=end_line, end_col=end_col)


def insert_edit(lines: Lines, at: int, code: str) -> Edit:
    line, col = lines.pos(at)
    return Edit("insert-text", line, col, code, end_line=line, end_col=col)


# A `#` starts a comment at the start of a line or after a blank (shell, Dockerfile, .env, YAML
# and TOML all agree on that much; a `#` inside a word or a quoted string is not one).
_HASH_COMMENT_RE = LazyPattern(r"(?:^|(?<=[ \t]))#[^\n]*", re.M)


def hash_comment_suppressions(text: str) -> tuple:
    """({line: codes}, file codes or None) from `#` comments, with Python's syntax:
    `# gpufix: ignore[GPU103]`, `# noqa: GPU103`, `# gpufix: ignore-file` on a line of its own."""
    if "gpufix" not in text and "noqa" not in text.lower():
        return {}, None
    starts = Lines(text).starts

    def found():
        for m in _HASH_COMMENT_RE.finditer(text):
            ls = starts[bisect.bisect_right(starts, m.start()) - 1]
            yield m.start(), m.group(0), text[ls:m.start()].strip() == ""

    return comment_suppressions(text, found())


def comment_suppressions(text: str, comments) -> tuple:
    """({line: codes}, file codes or None) from (offset, comment text, on a line of its own)
    triples: the directives of Python's `#` comments (gpufix.suppress.directives), in whatever
    comment syntax the format has (batch files' `REM` and `::`)."""
    if "gpufix" not in text and "noqa" not in text.lower():
        return {}, None
    lines = Lines(text)
    return directives((lines.line_of(offset), comment, own_line) for offset, comment, own_line in comments
                      if "gpufix" in comment or "noqa" in comment.lower())


def first_error_line(message: str) -> Optional[int]:
    m = re.search(r"line (\d+)", message)
    return int(m.group(1)) if m else None
