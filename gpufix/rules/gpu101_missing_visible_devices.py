"""GPU101 missing-visible-devices: a file in header scope that never sets CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

from gpufix.model import Edit, Fix
from gpufix.rules import Rule, RuleContext
from gpufix.rules._shared import header_lines


class MissingVisibleDevices(Rule):
    code = "GPU101"
    messages = {"policy": ("value",), "policy-withheld": ("value", "index", "before", "after"), "no-policy": ()}

    def check(self, ctx: RuleContext):
        if not ctx.in_header_scope or ctx.mask_writes:
            return
        anchor = ctx.header_anchor()
        if ctx.policy.has_policy:
            breaks = ctx.mask_change_breaks()
            if breaks:
                i, before, after = breaks
                yield self.finding(ctx, anchor, "policy-withheld", value=ctx.policy.visible_devices, index=i, before=before, after=after)
                return
            fix = Fix("safe", "insert the CUDA_VISIBLE_DEVICES header",
                      (Edit("insert-header", lines=header_lines(ctx, with_mask=True)),))
            yield self.finding(ctx, anchor, "policy", fix, value=ctx.policy.visible_devices)
        else:
            yield self.finding(ctx, anchor, "no-policy")
