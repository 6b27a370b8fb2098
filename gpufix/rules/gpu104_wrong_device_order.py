"""GPU104 wrong-device-order: CUDA_DEVICE_ORDER set to another value than the policy's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpufix.analysis import ORDER_VAR
from gpufix.rules import Rule, RuleContext
from gpufix.formats import text as fmt
from gpufix.model import Fix
from gpufix.rules._shared import unique_values, value_fix

if TYPE_CHECKING:  # the text rules' context: imported by the engine for non-Python files only
    from gpufix.rules._text import TextContext


class WrongDeviceOrder(Rule):
    code = "GPU104"
    judges_process_mask = True
    messages = {"default": ("value", "want")}

    def check(self, ctx: RuleContext):
        want = ctx.policy.device_order
        for w in unique_values(ctx.order_writes + [w for w in ctx.child_writes if w.var == ORDER_VAR]):
            if w.value_kind not in ("str", "int") or w.value is None or w.value.strip() == want:
                continue
            fix = value_fix(w, want, f'set CUDA_DEVICE_ORDER="{want}"')
            yield self.finding(ctx, w.value_pos or w.pos, "default", fix, value=w.value, want=want)

    def check_text(self, tctx: TextContext):
        """The same judgement on a non-Python file's facts (gpufix.formats)."""
        from gpufix.rules._text import quoted  # loaded with the text rules' context, not for Python files

        want = tctx.policy.device_order
        for e in tctx.facts.env:
            if e.var != ORDER_VAR or e.value is None or e.value.strip() == want:
                continue
            fix = None
            if e.editable:
                fix = Fix("safe", f'set CUDA_DEVICE_ORDER="{want}"', (fmt.replace_edit(tctx.lines, e.start, e.end, quoted(e.style, want)),))
            yield self.finding(tctx, tctx.pos(e.start, e.end), "default", fix, value=e.value, want=want)
