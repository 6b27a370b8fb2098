"""What a user silenced in a file, decided here for every file kind: the policy's
`per-file-ignores` and the suppression comments `# gpufix: ignore[GPU001]`, bare `# gpufix: ignore`,
`# noqa: GPU001`, bare `# noqa`, and `# gpufix: ignore-file` (optionally `ignore-file[GPU101]`) on a
line of its own. Python's comments come from its tokenizer; the other kinds' readers hand their
comments to `directives` (gpufix.formats.text). Codes match by prefix (`GPU1` silences GPU101)."""

from __future__ import annotations

import functools
import io
import re
import tokenize
from pathlib import Path
from typing import Optional

from gpufix.deferred import LazyPattern

_IGNORE_RE = LazyPattern(r"gpufix\s*:\s*ignore(?P<file>-file)?(?:\[(?P<codes>[^\]]*)\])?", re.I)
_NOQA_RE = LazyPattern(r"\bnoqa\b(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*))?", re.I)
ALL = "*"


def _codes(text):
    if not text:
        return {ALL}
    return {c.strip().upper() for c in re.split(r"[,\s]+", text) if c.strip()}


def parse_suppressions(text: str) -> tuple:
    """({line: set(codes) or {'*'}}, file-level set(codes) or None) from the file's comments."""
    if "gpufix" not in text and "noqa" not in text.lower():
        return {}, None
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return {}, None
    return directives((tok.start[0], tok.string, tok.line[: tok.start[1]].strip() == "")
                      for tok in tokens if tok.type == tokenize.COMMENT)


def directives(comments) -> tuple:
    """({line: set(codes) or {'*'}}, file-level set(codes) or None) from (1-based line, comment
    text, whether the comment is on a line of its own) triples, in any comment syntax."""
    lines: dict = {}
    file_codes = None
    for line, comment, own_line in comments:
        if "gpufix" not in comment and "noqa" not in comment.lower():
            continue
        for m in _IGNORE_RE.finditer(comment):
            codes = _codes(m.group("codes"))
            if m.group("file"):
                if own_line:
                    file_codes = (file_codes or set()) | codes
            else:
                lines.setdefault(line, set()).update(codes)
        m = _NOQA_RE.search(comment)
        if m:
            lines.setdefault(line, set()).update(_codes(m.group("codes")))
    return lines, file_codes


def is_suppressed(code: str, lines_to_check, line_map: dict, file_codes) -> bool:
    if file_codes and (ALL in file_codes or any(code.startswith(c) for c in file_codes)):
        return True
    for line in lines_to_check:
        codes = line_map.get(line)
        if codes and (ALL in codes or any(code.startswith(c) for c in codes)):
            return True
    return False


# -- per-file-ignores ----------------------------------------------------------------------------
def per_file_ignored(policy, abs_path: Optional[str]) -> tuple:
    """The codes the policy's `per-file-ignores` turn off for this file (globs from the policy's root)."""
    if not abs_path or not policy.per_file_ignores:
        return ()
    codes = []
    for path_filter, rule_codes in _per_file_filters(policy.per_file_ignores, policy.root):
        if path_filter.matches(Path(abs_path)):
            codes.extend(rule_codes)
    return tuple(codes)


@functools.lru_cache(maxsize=8)
def _per_file_filters(per_file_ignores: tuple, root: Optional[str]) -> tuple:
    from gpufix.discover import PathFilter

    # Compiled once per policy, not once per file.
    return tuple((PathFilter([glob], root), codes) for glob, codes in per_file_ignores)


# -- one file's answer ---------------------------------------------------------------------------
class Suppressions:
    """Whether a finding of one file is silenced: by `per-file-ignores` (`ignored`) or by a comment.

    Python (`python_text` given): the tokenizer runs only when its answer can matter (it is slow):
    up front when a file-level `ignore-file` may be there, else when a line that holds a finding
    mentions `gpufix` or `noqa`. Other kinds give their comments' directives (`by_line`,
    `file_codes`, from `directives`)."""

    def __init__(self, ignored: tuple = (), by_line: Optional[dict] = None, file_codes=None,
                 python_text: Optional[str] = None):
        self.ignored = tuple(ignored)
        self.text = python_text
        self.lower = None
        self.line_map = by_line
        self.file_codes = file_codes
        if python_text is not None:
            self.line_map, self.file_codes = None, None
            if "gpufix" in python_text or "noqa" in python_text.lower():
                self.lower = python_text.lower()
                if "ignore-file" in self.lower:
                    self._parse()

    def _parse(self):
        if self.line_map is None:
            self.line_map, self.file_codes = parse_suppressions(self.text)

    @property
    def whole_file(self) -> bool:
        """`# gpufix: ignore-file` without codes: nothing in the file is judged."""
        return bool(self.file_codes) and ALL in self.file_codes

    def rule_off(self, code: str) -> bool:
        """The rule is turned off for this whole file by `per-file-ignores`."""
        return any(code.startswith(c) for c in self.ignored)

    def silenced(self, code: str, lines_to_check, text_lines: Optional[list] = None) -> bool:
        """A finding of `code` spanning `lines_to_check` (1-based) is not reported (nor fixed).
        `text_lines`: the Python file's lines, for the cheap test before tokenizing."""
        if self.rule_off(code):
            return True
        if self.text is not None:
            if self.lower is None:
                return False
            if self.line_map is None:
                for n in lines_to_check:
                    if 0 < n <= len(text_lines):
                        low = text_lines[n - 1].lower()
                        if "gpufix" in low or "noqa" in low:
                            self._parse()
                            break
                else:
                    return False
        return is_suppressed(code, lines_to_check, self.line_map or {}, self.file_codes)
