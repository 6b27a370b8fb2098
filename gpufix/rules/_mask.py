"""Where an ordinal lands when the policy's mask replaces the file's own: shared by the rule
context (gpufix.rules.RuleContext) and the rules (gpufix.rules._shared)."""

from __future__ import annotations

import dataclasses
from typing import Optional

from gpufix.config import is_index_mask

UNKNOWN = "unknown"  # a mask we cannot read statically (dynamic value, several values)


@dataclasses.dataclass
class Remap:
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
