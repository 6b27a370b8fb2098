"""GPU004 multi-gpu-code: code that needs more GPUs than the policy makes visible (facts: gpufix.collectors.multi_gpu)."""

from __future__ import annotations

from gpufix.analysis import Pos
from gpufix.collectors.multi_gpu import multi_gpu_scopes, multigpu_facts
from gpufix.rules import Rule, RuleContext
from gpufix.rules._shared import mask_text


class MultiGpuCode(Rule):
    code = "GPU004"
    messages = {"default": ("where", "what", "visible", "mask", "need")}

    def check(self, ctx: RuleContext):
        mg = multigpu_facts(ctx.facts)
        if mg is None or ctx.policy_mask is None:
            return
        count = len(ctx.policy_mask)
        for scope in multi_gpu_scopes(mg, count):
            if scope.gate:
                continue  # a test gated to multi-GPU machines is skipped under the policy: nothing to change
            parts = []
            if len(scope.physical) >= 2:
                gpus = ", ".join(f"{i} (line {line})" for i, line in sorted(scope.physical.items()))
                parts.append(f"addresses GPUs {gpus}")
            if scope.device_list_line is not None:
                parts.append(f"builds a list of devices (line {scope.device_list_line})")
            if hasattr(scope.node, "name"):
                pos = Pos(scope.line, scope.col, scope.line, scope.col)
            else:  # the module body: where its first GPU is named
                first = min(scope.physical.values(), default=scope.device_list_line or 1)
                pos = Pos(first, 0, first, 0)
            yield self.finding(ctx, pos, "default", where=scope.name, what=" and ".join(parts),
                               visible="one GPU" if count == 1 else f"{count} GPUs",
                               mask=mask_text(ctx.policy_mask), need=max(len(scope.physical), 2))
