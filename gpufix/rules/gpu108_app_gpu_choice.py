"""GPU108 app-gpu-choice: a mask computed at run time or a GPU option that conflicts with the policy."""

from __future__ import annotations

from gpufix.analysis import Pos
from gpufix.rules import Rule, RuleContext
from gpufix.rules._shared import visible_range


class AppGpuChoice(Rule):
    code = "GPU108"
    messages = {"mask": ("var", "expr", "winner"), "option": ("flag", "pinned", "want", "count", "visible")}

    def check(self, ctx: RuleContext):
        if not ctx.policy.has_policy:
            return
        want = ctx.policy.visible_devices
        count = len(ctx.policy_mask or ())
        for w in ctx.mask_writes:
            if w.value_kind != "dynamic" or w.method == "magic":
                continue
            if w.header:
                winner = f'this line replaces the policy\'s mask, so the run-time value wins and the policy ("{want}") is not enforced'
            else:
                winner = (f'the header sets "{want}" first; this line replaces it when it runs before CUDA starts '
                          "(then the app's value wins), and is ignored after")
            yield self.finding(ctx, w.value_pos or w.pos, "mask", var=w.var, expr=w.value_src or "?", winner=winner)
        pinned = "the header pins" if (ctx.header_mask_writes or ctx.in_header_scope) else "the policy's header pins"
        flows = " ".join(getattr(u, "via", "") or "" for u in ctx.facts.ordinals)
        for opt in ctx.facts.gpu_options:
            if opt.reaches == "mask":
                continue  # reported at the mask write
            if opt.flag in flows or f"args.{opt.dest}" in flows:
                continue  # GPU001 follows the option's value to the device it picks
            yield self.finding(ctx, Pos(opt.line, opt.col, opt.line, opt.col), "option", flag=opt.flag, pinned=pinned,
                               want=want, count=count, visible=visible_range(count))
