"""Where an ordinal lands when the policy's mask replaces the file's own: shared by the rule
context (gpufix.rules.RuleContext) and the rules (gpufix.rules._shared)."""

from __future__ import annotations

import dataclasses
from typing import Optional

from gpufix.config import is_index_mask

UNKNOWN = "unknown"  # a mask we cannot read statically (dynamic value, several values)


@dataclasses.dataclass
class Remap:
    """Where an ordinal read under a file's own mask lands under the policy's mask."""

    physical: object  # int or uuid string or None (unknown)
    new_index: Optional[int]  # position under the policy; None: hidden or unknown
    known: bool


def remap(i: int, file_mask, policy_mask: list) -> Remap:
    """Where ordinal `i`, read under the file's own mask, lands under the policy's mask."""
    if file_mask == UNKNOWN:
        return Remap(None, None, False)
    if file_mask is None:
        physical = i
    else:
        physical = file_mask[i] if i < len(file_mask) else i
    if isinstance(physical, int) != is_index_mask(policy_mask):
        return Remap(physical, None, False)
    if physical in policy_mask:
        return Remap(physical, policy_mask.index(physical), True)
    return Remap(physical, None, True)


def collapsed(pairs, policy_mask: list):
    """The first (index, GPU before, GPU after) of `pairs` whose GPU after the fix is also where
    another ordinal lands that names another GPU before it, both GPUs allowed by the policy
    (rewriting the mask would merge two devices of the program into one); None if none does."""
    allowed = set(policy_mask)
    first_at: dict = {}
    for i, before, after in pairs:
        if before not in allowed:
            continue  # a GPU the policy forbids: moving it onto the policy's GPU is the point
        seen = first_at.setdefault(after, (i, before))
        if seen[1] != before:
            # say the one whose GPU changes (the other keeps its GPU through a remap)
            return (i, before, after) if before != after else (seen[0], seen[1], after)
    return None
