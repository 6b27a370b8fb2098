"""GPU102 missing-device-order: a mask set (or required) without CUDA_DEVICE_ORDER."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpufix.analysis import ORDER_VAR, Pos
from gpufix.config import is_index_mask, parse_mask
from gpufix.maskvalues import hides_all
from gpufix.model import Edit, Fix
from gpufix.rules import Rule, RuleContext
from gpufix.formats import text as fmt
from gpufix.rules._shared import header_fix

if TYPE_CHECKING:  # the text rules' context: imported by the engine for non-Python files only
    from gpufix.rules._text import TextContext


def _cpu_run_only(ctx: RuleContext, mask_writes: list) -> bool:
    """Whether every mask write of the file is a literal that hides every GPU and none runs too late."""
    late = {id(w) for w, _, _ in ctx.late_writes()}
    return all(w.value_kind == "str" and hides_all(str(w.value)) and id(w) not in late for w in mask_writes)


class MissingDeviceOrder(Rule):
    code = "GPU102"
    judges_process_mask = True
    # "file": the same rule on shell scripts, Dockerfiles, .env and config files (gpufix.formats).
    messages = {"default": ("order",), "magic": ("order",), "file": ("order",)}

    def check(self, ctx: RuleContext):
        if ctx.header_order_writes:
            return
        if ctx.order_writes and not ctx.in_header_scope:
            return  # set where the file's own mask is set; only a header file must set it at the top
        mask_writes = ctx.mask_writes
        if ctx.policy.cpu_runs == "keep" and ctx.header_mask_writes and _cpu_run_only(ctx, mask_writes):
            return  # an explicit CPU run ("" or "-1", kept as the header keeps a caller's): no GPU to order
        index_form = any(
            w.value_kind in ("str", "int") and w.value is not None and is_index_mask(parse_mask(w.value)) for w in mask_writes
        )
        if not ctx.in_header_scope and not index_form:
            return
        order = ctx.policy.device_order
        code_writes = [w for w in mask_writes if w.method != "magic"]
        first = min(code_writes, key=lambda w: w.order) if code_writes else None
        if first is not None and ctx.in_header_scope and not (first.module_body and not ctx.order_writes):
            # The first mask write is inside a function or a branch (or the order is set only
            # there): the order goes into a complete header at the top, never into that block.
            with_mask = not ctx.header_mask_writes
            fix, note = header_fix(ctx, "insert the CUDA_DEVICE_ORDER header", with_mask=with_mask)
            yield self.finding(ctx, first.pos, "default", fix, _note=note, order=order)
            return
        late = {id(w) for w, _, _ in ctx.late_writes()}
        first_write = min(code_writes, key=lambda w: w.order) if code_writes else None
        note = ""
        if first_write is not None and (not first_write.environ_src or id(first_write) in late):
            # The first mask write is a bare `putenv(...)` (from os import putenv: no name here
            # writes os.environ), or runs too late (GPU105): the order goes into the header,
            # which imports os and runs before any framework import.
            fix, note = header_fix(ctx, "insert the CUDA_DEVICE_ORDER header", with_mask=False)
            pos = first_write.pos
        elif code_writes:
            first = min(code_writes, key=lambda w: w.order)
            stmt = f'{first.environ_src}["{ORDER_VAR}"] = "{order}"'
            fix = Fix("safe", f"set CUDA_DEVICE_ORDER={order} before the mask",
                      (Edit("insert", first.stmt.line, first.stmt.col, stmt),))
            pos = first.pos
        elif mask_writes:  # only a notebook `%env` magic: gpufix does not rewrite magics
            line = mask_writes[0].pos.line
            yield self.finding(ctx, Pos(line, 0, line, 0), "magic", order=order)
            return
        else:
            fix, note = header_fix(ctx, "insert the CUDA_DEVICE_ORDER header", with_mask=False)
            pos = ctx.header_anchor()
        yield self.finding(ctx, pos, "default", fix, _note=note, order=order)

    def check_text(self, tctx: TextContext):
        """The same judgement on a non-Python file's facts (gpufix.formats)."""
        order = tctx.policy.device_order
        for e in tctx.mask_sets:
            if e.order_in_force or e.value is None or not is_index_mask(parse_mask(e.value)):
                continue
            fix = None
            if e.order_insert is not None:
                at, template = e.order_insert
                fix = Fix("safe", f"set CUDA_DEVICE_ORDER={order} before the mask",
                          (fmt.insert_edit(tctx.lines, at, template.format(order=order)),))
            yield self.finding(tctx, tctx.pos(e.start, e.end), "file", fix, order=order)
