"""GPU104 wrong-device-order: CUDA_DEVICE_ORDER set to another value than the policy's."""

from __future__ import annotations

from gpufix.analysis import ORDER_VAR
from gpufix.rules import Rule, RuleContext
from gpufix.rules._shared import value_fix


class WrongDeviceOrder(Rule):
    code = "GPU104"
    messages = {"default": ("value", "want")}

    def check(self, ctx: RuleContext):
        want = ctx.policy.device_order
        for w in ctx.order_writes + [w for w in ctx.child_writes if w.var == ORDER_VAR]:
            if w.value_kind not in ("str", "int") or w.value is None or w.value.strip() == want:
                continue
            fix = value_fix(w, want, f'set CUDA_DEVICE_ORDER="{want}"')
            yield self.finding(ctx, w.value_pos or w.pos, "default", fix, value=w.value, want=want)
