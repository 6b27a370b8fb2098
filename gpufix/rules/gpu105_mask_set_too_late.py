"""GPU105 mask-set-too-late: the mask or order set after a GPU import or CUDA call."""

from __future__ import annotations

from gpufix.model import Edit, Fix
from gpufix.rules import Rule, RuleContext


class MaskSetTooLate(Rule):
    code = "GPU105"
    messages = {"default": ("var", "trigger", "line")}

    def check(self, ctx: RuleContext):
        for w, first, movable in ctx.late_writes():
            fix = Fix("safe", f"move the {w.var} assignment above the first GPU import",
                      (Edit("move-to-header", w.stmt.line, w.stmt.col),)) if movable else None
            yield self.finding(ctx, w.pos, "default", fix, var=w.var, trigger=first.what, line=ctx.line_label(first.pos.line))
