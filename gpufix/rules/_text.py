"""What a rule sees of a non-Python file (shell, Dockerfile, .env, YAML/JSON/TOML): the facts its
reader extracted (gpufix.formats.facts.FileFacts) and the mask reading those share with Python.

A rule that judges such files implements `check_text(tctx)` (and a project rule `collect_text`)
next to its `check(ctx)`; gpufix.formats only reads files into facts and runs the rules that do.
"""

from __future__ import annotations

from typing import Optional

from gpufix.analysis import Pos
from gpufix.config import Policy, is_index_mask, parse_mask
from gpufix.formats.facts import FILE_MASK, MASK_VAR, NO_MASK, UNKNOWN, FileFacts, Ordinal, hides_all, normalized
from gpufix.formats.text import Lines


class TextContext:
    """One decoded non-Python file: its path, text (as `Lines`), the policy and the reader's facts."""

    def __init__(self, path: str, text: str, policy: Policy, facts: FileFacts):
        self.path = path
        self.lines = Lines(text)
        self.policy = policy
        self.facts = facts
        self.mask_sets = [e for e in facts.env if e.var == MASK_VAR]
        self._file_mask = None

    @property
    def policy_mask(self) -> Optional[list]:
        return self.policy.mask

    def pos(self, start: int, end: int) -> Pos:
        """Character offsets -> the Pos a rule's `finding` takes."""
        line, col = self.lines.pos(start)
        end_line, end_col = self.lines.pos(max(end, start))
        return Pos(line, col, end_line, end_col)

    def file_mask(self):
        """The file's own mask: None (sets none, or only hides every GPU), UNKNOWN, or the parsed
        entries of its one literal value."""
        values = set()
        for e in self.mask_sets:
            if e.value is None:
                return UNKNOWN
            if hides_all(e.value):
                continue
            values.add(normalized(e.value))
        if not values:
            return None
        if len(values) != 1:
            return UNKNOWN
        return parse_mask(values.pop())

    def mask_of(self, o: Ordinal, file_mask):
        """The mask an ordinal is read through (its own command's or export's, else the file's)."""
        if o.mask == FILE_MASK:
            return file_mask
        if o.mask == NO_MASK:
            return None
        if o.mask is None:
            return UNKNOWN
        return None if hides_all(o.mask) else parse_mask(o.mask)

    @staticmethod
    def remap(i: int, file_mask, policy_mask):
        """(physical, new index or None, known) as in code (see the contract's remapping)."""
        if file_mask == UNKNOWN:
            return None, None, False
        physical = file_mask[i] if (file_mask is not None and i < len(file_mask)) else i
        if isinstance(physical, int) != is_index_mask(policy_mask):
            return physical, None, False
        if physical in policy_mask:
            return physical, policy_mask.index(physical), True
        return physical, None, True


def quoted(style: str, value: str) -> str:
    return f"{style}{value}{style}" if style else value
