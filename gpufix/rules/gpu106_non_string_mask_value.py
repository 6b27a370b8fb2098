"""GPU106 non-string-mask-value: `os.environ[...] = 1` raises TypeError."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpufix.model import Fix
from gpufix.rules import Rule, RuleContext
from gpufix.analysis import MASK_VAR, ORDER_VAR
from gpufix.formats import text as fmt
from gpufix.rules._shared import replace_edit, unique_values

if TYPE_CHECKING:  # the text rules' context: imported by the engine for non-Python files only
    from gpufix.rules._text import TextContext


class NonStringMaskValue(Rule):
    code = "GPU106"
    judges_process_mask = True
    # "typed": a Kubernetes-style `value: 1` in a YAML/JSON config (gpufix.formats)
    messages = {"default": ("var", "value"), "typed": ("var", "value")}

    def check(self, ctx: RuleContext):
        for w in unique_values(ctx.facts.env_writes):
            if w.value_kind not in ("int", "other-literal"):
                continue
            fix = None
            if w.value_kind == "int" and w.value_pos is not None:
                fix = Fix("safe", f'quote it: "{w.value}"', (replace_edit(w.value_pos, f'"{w.value}"'),))
            yield self.finding(ctx, w.value_pos or w.pos, "default", fix, var=w.var, value=w.value)

    def check_text(self, tctx: TextContext):
        """The same judgement on a non-Python file's facts (gpufix.formats)."""
        for e in tctx.facts.env:
            if not e.non_string or e.var not in (MASK_VAR, ORDER_VAR):
                continue
            fix = None
            if e.editable and e.value is not None:
                fix = Fix("safe", f'quote it: "{e.value}"', (fmt.replace_edit(tctx.lines, e.start, e.end, f'"{e.value}"'),))
            yield self.finding(tctx, tctx.pos(e.start, e.end), "typed", fix, var=e.var, value=e.value)
