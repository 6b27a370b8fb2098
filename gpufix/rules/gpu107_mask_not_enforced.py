"""GPU107 mask-not-enforced: `os.putenv` / `os.environ.setdefault` do not pin the GPU."""

from __future__ import annotations

from gpufix.model import Fix
from gpufix.rules import Rule, RuleContext
from gpufix.rules._shared import replace_edit


class MaskNotEnforced(Rule):
    code = "GPU107"
    judges_process_mask = True
    messages = {"setdefault": ("var", "how"), "putenv": ("var", "how")}

    def check(self, ctx: RuleContext):
        for w in ctx.facts.env_writes:
            if w.method not in ("setdefault", "putenv"):
                continue
            fix = None
            environ = w.environ_src or None  # a bare `putenv` (from os import putenv) has none
            if w.simple_stmt and environ and w.value_pos is not None and w.value_src:
                stmt = f'{environ}["{w.var}"] = {w.value_src}'
                fix = Fix("unsafe", f"assign {environ}[\"{w.var}\"] instead", (replace_edit(w.stmt, stmt),))
            how = "os.putenv()" if w.method == "putenv" else "os.environ.setdefault()"
            yield self.finding(ctx, w.pos, w.method, fix, var=w.var, how=how)
