"""GPU003 nvml-index-as-cuda-ordinal: NVML indices ignore the mask; CUDA ordinals do not."""

from __future__ import annotations

from gpufix.config import is_index_mask
from gpufix.rules import UNKNOWN, Rule, RuleContext
from gpufix.rules._shared import mask_text


class NvmlIndexAsCudaOrdinal(Rule):
    code = "GPU003"
    fixes_first_pass_only = True  # remaps read through the mask before the fix
    messages = {
        "default": ("index", "mask", "physical"),
        "flow": ("index", "via", "mask", "physical"),
        "cuda-ordinal": ("expr", "mask"),
    }

    def check(self, ctx: RuleContext):
        mask = ctx.policy_mask if ctx.policy_mask is not None else ctx.file_mask()
        if mask is None or mask == UNKNOWN or not is_index_mask(mask):
            return
        for use in ctx.facts.ordinals:
            if use.kind == "nvml-cuda-ordinal":
                if mask != list(range(len(mask))):
                    yield self.finding(ctx, use.pos, "cuda-ordinal", expr=use.text, mask=mask_text(mask))
                continue
            if use.kind != "nvml-index":
                continue
            i = use.value
            if i < len(mask) and mask[i] != i:
                if use.via:  # value flow: the index is a literal far from the NVML call
                    yield self.finding(ctx, use.pos, "flow", index=i, via=use.via, mask=mask_text(mask), physical=mask[i])
                else:
                    yield self.finding(ctx, use.pos, "default", index=i, mask=mask_text(mask), physical=mask[i])
