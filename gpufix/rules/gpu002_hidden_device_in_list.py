"""GPU002 hidden-device-in-list: a multi-GPU list naming devices the mask hides."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpufix.rules import UNKNOWN, Rule, RuleContext
from gpufix.rules._shared import mask_text, remap, visible_range
from gpufix.collectors.multi_gpu import in_gated_test

if TYPE_CHECKING:  # the text rules' context: imported by the engine for non-Python files only
    from gpufix.rules._text import TextContext


class HiddenDeviceInList(Rule):
    code = "GPU002"
    fixes_first_pass_only = True  # remaps read through the mask before the fix
    messages = {
        "policy": ("api", "indices", "bad", "mask", "count", "visible"),
        "no-policy": ("api", "indices", "bad", "mask", "count"),
    }

    def check(self, ctx: RuleContext):
        file_mask = ctx.file_mask()
        policy_mask = ctx.policy_mask
        for use in ctx.facts.ordinals:
            if use.kind not in ("list", "dict-keys"):
                continue
            indices = [i for i, _ in use.value]
            if policy_mask is None:
                if file_mask is None or file_mask == UNKNOWN:
                    continue
                bad = [i for i in indices if i >= len(file_mask)]
                if bad:
                    yield self.finding(ctx, use.pos, "no-policy", api=use.api, indices=indices, bad=bad,
                                       mask=mask_text(file_mask), count=len(file_mask))
                continue
            if in_gated_test(ctx, use):
                continue  # a test gated to multi-GPU machines: skipped under the policy
            bad = []
            for i in indices:
                if i == 0:
                    continue  # like GPU001: index 0 is the first visible GPU, whatever the mask
                r = remap(i, file_mask, policy_mask)
                if (not r.known and i >= len(policy_mask)) or (r.known and r.new_index != i):
                    bad.append(i)
            if bad:
                yield self.finding(ctx, use.pos, "policy", api=use.api, indices=indices, bad=bad,
                                   mask=mask_text(policy_mask), count=len(policy_mask),
                                   visible=visible_range(len(policy_mask)))

    def check_text(self, tctx: TextContext):
        """The same judgement on a non-Python file's facts (gpufix.formats)."""
        file_mask = tctx.file_mask()
        policy_mask = tctx.policy.mask
        for lst in tctx.facts.lists:
            if policy_mask is None:
                if file_mask is None or file_mask == UNKNOWN:
                    continue
                bad = [i for i in lst.indices if i >= len(file_mask)]
                if bad:
                    yield self.finding(tctx, tctx.pos(lst.start, lst.end), "no-policy", api=lst.where, indices=lst.indices,
                                       bad=bad, mask=mask_text(file_mask), count=len(file_mask))
                continue
            bad = []
            for i in lst.indices:
                if i == 0:
                    continue
                _, new, known = tctx.remap(i, file_mask, policy_mask)
                if (not known and i >= len(policy_mask)) or (known and new != i):
                    bad.append(i)
            if bad:
                yield self.finding(tctx, tctx.pos(lst.start, lst.end), "policy", api=lst.where, indices=lst.indices, bad=bad,
                                   mask=mask_text(policy_mask), count=len(policy_mask), visible=visible_range(len(policy_mask)))
