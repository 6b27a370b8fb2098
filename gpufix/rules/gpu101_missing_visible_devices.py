"""GPU101 missing-visible-devices: a file in header scope that never sets CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

from gpufix.rules import Rule, RuleContext
from gpufix.rules._shared import header_fix


class MissingVisibleDevices(Rule):
    code = "GPU101"
    judges_process_mask = True
    messages = {"policy": ("value",), "policy-withheld": ("value", "index", "before", "after"), "no-policy": (),
                "policy-entry": ("value", "reason"), "no-policy-entry": ("reason",)}

    def check(self, ctx: RuleContext):
        if not ctx.in_header_scope or ctx.header_mask_writes:
            return
        anchor = ctx.header_anchor()
        note = ""
        if ctx.mask_writes:
            # Set only inside a function or a branch: not the file's header (it may never run, or run
            # after CUDA started); the complete header still goes at the top.
            where = min(ctx.mask_writes, key=lambda w: w.order)
            note = f"; the mask set on line {where.pos.line} is inside a function or a branch, which is not a header"
        entry = "-entry" if ctx.scope_reason else ""
        reason = ctx.scope_reason[:1].upper() + ctx.scope_reason[1:]  # the message's subject: "A notebook never sets ..."
        if ctx.policy.has_policy:
            breaks = ctx.mask_change_breaks()
            if breaks:
                i, before, after = breaks
                yield self.finding(ctx, anchor, "policy-withheld", value=ctx.policy.visible_devices, index=i, before=before, after=after)
                return
            fix, rank_note = header_fix(ctx, "insert the CUDA_VISIBLE_DEVICES header", with_mask=True)
            yield self.finding(ctx, anchor, "policy" + entry, fix, _note=note + rank_note, value=ctx.policy.visible_devices,
                               **({"reason": reason} if entry else {}))
        else:
            yield self.finding(ctx, anchor, "no-policy" + entry, _note=note, **({"reason": reason} if entry else {}))
