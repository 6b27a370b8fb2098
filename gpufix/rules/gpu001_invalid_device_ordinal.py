"""GPU001 invalid-device-ordinal: a CUDA ordinal that is invalid (or another GPU) under the mask."""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from gpufix.analysis import TF_DEVICE_RE, OrdinalUse
from gpufix.model import Fix
from gpufix.rules import UNKNOWN, Rule, RuleContext
from gpufix.collectors.multi_gpu import in_gated_test, in_multi_gpu_code, unsafe_context
from gpufix.formats import text as fmt
from gpufix.launchers import passed_to
from gpufix.rules._shared import describe_ordinal, mask_text, quote_like, remap, remap_applicability, replace_edit, visible_range

if TYPE_CHECKING:  # the text rules' context: imported by the engine for non-Python files only
    from gpufix.rules._text import TextContext


def _replacement(use: OrdinalUse, new: int) -> str:
    # Strings are rewritten from their value, as one literal: `"cuda:" "1"` and `f"cuda:1"` become
    # "cuda:0" (splicing digits into the source would make `"cuda:0" "1"`).
    if use.kind == "cuda-string":
        return quote_like(use.text, f"cuda:{new}")
    if use.kind == "index-string":  # Lightning's "1,": the index inside the string
        return re.sub(r"\d+", str(new), use.text, count=1)
    if use.kind == "tf-device":
        m = TF_DEVICE_RE.match(use.string)
        return quote_like(use.text, f"{m.group('prefix')}{m.group('kind')}:{new}")
    return str(new)


def _launcher_block(ctx: RuleContext, use: OrdinalUse, new_index: int):
    """Why an argparse option's default must not be rewritten alone: a launcher of the project
    (gpufix.launchers) passes that option to this script with a value other than the new one."""
    via = use.via or ""
    if not via.startswith("option ") or not ctx.policy.launch_args:
        return None
    option = via.split()[1].rstrip(",")
    passing = [p for p in passed_to(ctx.policy.launch_args, ctx.abs_path, option) if p[2] != new_index]
    if not passing:
        return None
    where = [f"{shown} (line {line}: {option} {value})" for shown, line, value in passing[:3]]
    more = f" and {len(passing) - 3} more" if len(passing) > 3 else ""
    return (f"{', '.join(where)}{more} pass{'es' if len(passing) == 1 else ''} it to this script, which a new "
            f"default would not change; change the launcher's {option} together with the default")


def _in_force(mask_scope, scope) -> bool:
    """A config's mask set at `mask_scope` is in force at `scope` (one holds the other: a
    workflow's env and a step of its job)."""
    if mask_scope is None or scope is None:
        return False
    n = min(len(mask_scope), len(scope))
    return mask_scope[:n] == scope[:n]

class InvalidDeviceOrdinal(Rule):
    code = "GPU001"
    fixes_first_pass_only = True  # remaps read through the mask before the fix
    messages = {
        "remap": ("what", "physical", "mask", "new_index", "new"),
        "remap-withheld": ("what", "physical", "mask", "new_index", "new"),
        "shadowed": ("what", "name"),
        "remap-by-hand": ("what", "physical", "mask", "new_index", "new", "reason"),
        "hidden": ("what", "physical", "mask"),
        "unknown": ("what", "mask", "count", "reason"),
        "no-policy": ("what", "mask", "count", "visible"),
    }

    def check(self, ctx: RuleContext):
        file_mask = ctx.file_mask()
        policy_mask = ctx.policy_mask
        fixable = None
        for use in ctx.facts.ordinals:
            if use.kind not in ("cuda-string", "int", "tf-device", "index-string") or use.value == 0:
                continue
            if in_multi_gpu_code(ctx, use):
                continue  # GPU004 reports the function once; nothing inside is remapped
            if in_gated_test(ctx, use):
                continue  # a test gated to multi-GPU machines: skipped under the policy
            what = describe_ordinal(use)
            if policy_mask is None:
                if file_mask is None or file_mask == UNKNOWN or use.value < len(file_mask):
                    continue
                yield self.finding(ctx, use.pos, "no-policy", what=what, mask=mask_text(file_mask),
                                   count=len(file_mask), visible=visible_range(len(file_mask)))
                continue
            r = remap(use.value, file_mask, policy_mask)
            mask = mask_text(policy_mask)
            if use.shadowed:
                if not (r.known and r.new_index == use.value):
                    yield self.finding(ctx, use.pos, "shadowed", what=what, name=use.shadowed)
                continue
            if not r.known:
                if use.value < len(policy_mask):
                    continue
                reason = ("the file's own mask is not a single literal" if file_mask == UNKNOWN
                          else "an index cannot be matched with the GPU UUIDs the policy names")
                yield self.finding(ctx, use.pos, "unknown", what=what, mask=mask, count=len(policy_mask), reason=reason)
            elif r.new_index is None:
                if unsafe_context(ctx, use) is not None:
                    continue  # plain data or a gated test naming a hidden GPU: nothing its owner would change
                yield self.finding(ctx, use.pos, "hidden", what=what, physical=r.physical, mask=mask)
            elif r.new_index != use.value and (use.fix_blocked or _launcher_block(ctx, use, r.new_index)):
                # value flow that is not unambiguous, or an option a launcher passes another value
                # for: say what to write, rewrite nothing
                reason = use.fix_blocked or _launcher_block(ctx, use, r.new_index)
                yield self.finding(ctx, use.pos, "remap-by-hand", what=what, physical=r.physical, mask=mask,
                                   new_index=r.new_index, new=_replacement(use, r.new_index), reason=reason)
            elif r.new_index != use.value:
                new = _replacement(use, r.new_index)
                if fixable is None:
                    fixable = ctx.policy_mask_after_fix()
                if not fixable:
                    # The remap is into the policy's mask, which this file will not set (its own
                    # mask stays): rewriting would name another GPU.
                    yield self.finding(ctx, use.pos, "remap-withheld", what=what, physical=r.physical, mask=mask,
                                       new_index=r.new_index, new=new)
                    continue
                how = remap_applicability(file_mask, policy_mask)
                note = ""
                if (file_mask is not None or ctx.in_header_scope) and ctx.rank_launch(file_mask):
                    # right only with the mask fix, which the process's rank makes unsafe
                    how = "unsafe"
                    path, line, _ = ctx.rank_device()
                    note = (f"; the fix is unsafe, as the mask fix it holds under is: `{path}` picks its GPU from "
                            f"its process rank (line {line})")
                fix = Fix(how, f"use {new}", (replace_edit(use.pos, new),))
                special = unsafe_context(ctx, use)
                if special is not None:
                    applicability = special[0]  # plain data: an unsafe fix; a gated test: none
                    note = special[1] + (note if applicability else "")
                    fix = dataclasses.replace(fix, applicability=applicability) if applicability else None
                yield self.finding(ctx, use.pos, "remap", fix, _note=note, what=what, physical=r.physical, mask=mask,
                                   new_index=r.new_index, new=new)

    def check_text(self, tctx: TextContext):
        """The same judgement on a non-Python file's facts (gpufix.formats)."""
        from gpufix.formats.facts import FILE_MASK  # loaded with the text rules' context, not for Python files
        from gpufix.rules._text import runner_note

        policy_mask = tctx.policy.mask
        breaks = None
        for o in tctx.facts.ordinals:
            if o.value == 0:
                continue
            file_mask = tctx.mask_of(o, tctx.file_mask())
            if policy_mask is None:
                if file_mask is None or file_mask == UNKNOWN or o.value < len(file_mask):
                    continue
                yield self.finding(tctx, tctx.pos(o.start, o.end), "no-policy", what=o.what, index=o.value,
                                   mask=mask_text(file_mask), count=len(file_mask), visible=visible_range(len(file_mask)))
                continue
            physical, new, known = tctx.remap(o.value, file_mask, policy_mask)
            mask = mask_text(policy_mask)
            if not known:
                if o.value < len(policy_mask):
                    continue
                reason = ("an index cannot be matched with the GPU UUIDs the policy names" if file_mask != UNKNOWN
                          else "the file's own mask is not a single literal" if o.mask == FILE_MASK
                          else "the mask it runs under is computed at run time")
                yield self.finding(tctx, tctx.pos(o.start, o.end), "unknown", what=o.what, index=o.value, mask=mask,
                                   count=len(policy_mask), reason=reason)
            elif new is None:
                yield self.finding(tctx, tctx.pos(o.start, o.end), "hidden", what=o.what, physical=physical, mask=mask)
            elif new != o.value:
                code = o.template.format(new)
                if breaks is None:
                    breaks = bool(tctx.mask_change_breaks())
                if breaks:
                    # GPU103 keeps the file's mask (another ordinal would collapse onto this GPU):
                    # remapped into the policy's mask, this one would name another GPU
                    yield self.finding(tctx, tctx.pos(o.start, o.end), "remap-withheld", what=o.what, physical=physical,
                                       mask=mask, new_index=new, new=code)
                    continue
                fix = Fix(remap_applicability(file_mask, policy_mask), f"use {code}", (fmt.replace_edit(tctx.lines, o.start, o.end, code),))
                note = runner_note(tctx.facts, o.scope)
                if not note:
                    # a mask in force where it is used (the file's, its job's or the workflow's env)
                    # whose GPU103 fix is unsafe for that reason: the remap goes with it or not at all
                    note = next((n for n in (runner_note(tctx.facts, e.scope, "the mask it is read through")
                                             for e in tctx.mask_sets if o.mask == FILE_MASK or _in_force(e.scope, o.scope))
                                 if n), "")
                if note:
                    fix = dataclasses.replace(fix, applicability="unsafe")
                yield self.finding(tctx, tctx.pos(o.start, o.end), "remap", fix, _note=note, what=o.what, physical=physical,
                                   mask=mask, new_index=new, new=code)
