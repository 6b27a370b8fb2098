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

    def mask_change_breaks(self):
        """As RuleContext.mask_change_breaks for two ordinals that collapse: (index, GPU before,
        GPU after) of an ordinal that would name the same GPU as another ordinal naming a different
        GPU the policy allows today, once the policy's mask replaces the file's and the ordinals
        are remapped (`CUDA_VISIBLE_DEVICES=0,1 ... cuda:0 ... cuda:1` under a policy "1,0"); None
        when every ordinal keeps a GPU of its own."""
        from gpufix.rules._shared import collapsed

        policy = self.policy.mask
        if policy is None or not is_index_mask(policy):
            return None
        file_mask = self.file_mask()
        pairs = []
        for o in self.facts.ordinals:
            mask = self.mask_of(o, file_mask)
            if mask == UNKNOWN:
                continue
            physical, new, known = self.remap(o.value, mask, policy)
            if not isinstance(physical, int):
                continue
            final = new if (known and new is not None and o.value != 0) else o.value
            pairs.append((o.value, physical, policy[final] if final < len(policy) else ("invalid", final)))
        if file_mask != UNKNOWN:
            for lst in self.facts.lists:  # GPU002 has no fix: each index is read through the new mask
                for i in lst.indices:
                    physical = self.remap(i, file_mask, policy)[0]
                    if isinstance(physical, int):
                        pairs.append((i, physical, policy[i] if i < len(policy) else ("invalid", i)))
        return collapsed(pairs, policy)

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


def runner_note(facts, scope, what: str = "it") -> str:
    """The clause that makes a fix of a CI job's setting unsafe when the job runs on a runner the
    policy may not describe (FileFacts.runner_of), else ""."""
    runner = facts.runner_of(scope)
    if runner is None:
        return ""
    return (f"; unsafe fix: {what} is in force in a job that runs on `runs-on: {runner}`, which names no "
            "`self-hosted` runner: its GPUs need not be this machine's, and the policy's mask may hide them there")


def quoted(style: str, value: str) -> str:
    return f"{style}{value}{style}" if style else value
