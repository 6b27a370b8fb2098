"""GPU103 wrong-visible-devices: a mask other than the policy's (or, without a policy, masks the
project's files disagree on)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import TYPE_CHECKING

from gpufix.analysis import MASK_VAR
from gpufix.rules import Candidate, ProjectRule, RuleContext
from gpufix.config import is_index_mask, parse_mask
from gpufix.formats import text as fmt
from gpufix.maskvalues import hides_all, normalized
from gpufix.model import Finding, Fix
from gpufix.rules._shared import mask_fix_applicability, mask_text, normalized_mask, unique_values, value_fix

if TYPE_CHECKING:  # the text rules' context: imported by the engine for non-Python files only
    from gpufix.rules._text import TextContext


class WrongVisibleDevices(ProjectRule):
    code = "GPU103"
    judges_process_mask = True
    messages = {
        "policy": ("value", "want"),
        "policy-withheld": ("value", "want", "index", "before", "after"),
        "magic": ("value", "want"),
        "child": ("value", "want"),
        "disagree": ("value", "values"),
        # a container pin (NVIDIA_VISIBLE_DEVICES, compose device_ids), judged in gpufix.formats
        "container": ("what", "pinned", "inside", "want", "need"),
        "launcher": ("value", "want"),  # an accelerate config's gpu_ids (gpufix.formats)
    }
    candidate_bytes = (MASK_VAR.encode(),)  # candidates are literal mask values

    def keeps_own_mask(self, finding) -> bool:
        # the file's own mask set to another value (not a child's env, a container or a launcher)
        return finding.message.startswith(f"{MASK_VAR} is set to ")

    def check(self, ctx: RuleContext):
        if not ctx.policy.has_policy:
            return  # judged across files: collect() / finish()
        want = ctx.policy.visible_devices
        breaks = None
        for w in unique_values(ctx.mask_writes + [w for w in ctx.child_writes if w.var == MASK_VAR]):
            if w.value_kind not in ("str", "int") or w.value is None:
                continue
            if normalized_mask(w.value) == normalized_mask(want):
                continue
            if ctx.policy.cpu_runs == "keep" and hides_all(str(w.value)):
                continue  # an explicit CPU run ("", " ", "-1"), as the header keeps a caller's
            fix = value_fix(w, want, f'set CUDA_VISIBLE_DEVICES="{want}"')
            if fix is not None and mask_fix_applicability(w.value, ctx.policy_mask) == "unsafe":
                fix = dataclasses.replace(fix, applicability="unsafe",
                                          title=f'set CUDA_VISIBLE_DEVICES="{want}" (fewer GPUs than the code was written for)')
            note = ""
            if fix is not None and not w.child:
                # the process picks its GPU from its rank: fewer GPUs than before fail a launch
                note = ctx.rank_launch(parse_mask(str(w.value)))
                if note:
                    fix = dataclasses.replace(fix, applicability="unsafe")
            variant = "magic" if w.method == "magic" else "child" if w.child else "policy"
            if fix is not None and not w.child:
                # Not when a literal ordinal no fix rewrites would name another GPU under the
                # policy's mask than under this one.
                breaks = breaks or ctx.mask_change_breaks()
                if breaks:
                    i, before, after = breaks
                    yield self.finding(ctx, w.value_pos or w.pos, "policy-withheld", value=w.value, want=want,
                                       index=i, before=before, after=after)
                    continue
            yield self.finding(ctx, w.value_pos or w.pos, variant, fix, _note=note, value=w.value, want=want)

    def check_text(self, tctx: TextContext):
        """The same judgement on a non-Python file's facts (gpufix.formats)."""
        from gpufix.rules._text import quoted, runner_note  # loaded with the text rules' context, not for Python files

        want = tctx.policy.visible_devices
        composed = set()  # the pins whose container's own mask already selects the policy's GPUs
        if want is not None:
            breaks = None
            for e in tctx.mask_sets:
                if e.value is None or hides_all(e.value):
                    continue
                pin = _pin_of(tctx.facts.pins, e)
                if pin is not None:
                    # Inside a container its mask indexes the pinned host GPUs: device_ids ["1"]
                    # with CUDA_VISIBLE_DEVICES=0 is host GPU 1.
                    host = _composed(pin.entries, e.value)
                    if host is not None and host == tctx.policy.mask:
                        composed.add(id(pin))
                        continue
                if normalized(e.value) == normalized(want):
                    continue
                fix = None
                if e.editable and e.form != "accelerate":
                    breaks = breaks or tctx.mask_change_breaks()
                    if breaks:
                        i, before, after = breaks
                        yield self.finding(tctx, tctx.pos(e.start, e.end), "policy-withheld", value=e.value, want=want,
                                           index=i, before=before, after=after)
                        continue
                if e.editable:
                    how = mask_fix_applicability(e.value, tctx.policy.mask)
                    fix = Fix(how, f'set CUDA_VISIBLE_DEVICES="{want}"', (fmt.replace_edit(tctx.lines, e.start, e.end, quoted(e.style, want)),))
                if pin is not None and _inside(pin.entries, tctx.policy.mask) != normalized(want):
                    # inside a container the value indexes its pinned GPUs: the policy's value
                    # would name another GPU there (or none)
                    fix = None
                note = runner_note(tctx.facts, e.scope) if fix is not None else ""
                if note:
                    fix = dataclasses.replace(fix, applicability="unsafe")
                if e.form == "accelerate":
                    yield self.finding(tctx, tctx.pos(e.start, e.end), "launcher", value=e.value, want=want)
                else:
                    yield self.finding(tctx, tctx.pos(e.start, e.end), "policy", fix, _note=note, value=e.value, want=want)
        mask = tctx.policy.mask
        if mask is None or not is_index_mask(mask):
            return
        for pin in tctx.facts.pins:
            if id(pin) in composed:
                continue  # its container's own mask picks the policy's GPUs among the pinned ones
            if not pin.entries or not is_index_mask(pin.entries):
                continue  # "all", UUIDs: the container keeps the host's numbering or cannot be judged
            wrong = [m for m in mask if m >= len(pin.entries) or pin.entries[m] != m]
            if not wrong:
                continue
            inside = ", ".join(f"{i} = host GPU {g}" for i, g in enumerate(pin.entries))
            yield self.finding(tctx, tctx.pos(pin.start, pin.end), "container", what=pin.what, pinned=mask_text(pin.entries),
                               inside=inside, want=tctx.policy.visible_devices, need=mask_text(range(max(mask) + 1)))

    def collect(self, ctx: RuleContext):
        """Without a policy: every literal mask of the file, a candidate until the project's values are known."""
        if ctx.policy.has_policy:
            return
        for w in ctx.mask_writes:
            if w.value_kind in ("str", "int") and w.value is not None:
                # The message is rendered in finish(), once every file's value is known.
                yield Candidate(self.finding(ctx, w.value_pos or w.pos, "disagree", value=w.value, values=""),
                                w.value)

    def collect_text(self, tctx: TextContext):
        """`collect` on a non-Python file: its literal CUDA_VISIBLE_DEVICES values."""
        if tctx.policy.has_policy:
            return
        doc = self.doc
        for e in tctx.mask_sets:
            if e.value is None or hides_all(e.value):
                continue
            pos = tctx.pos(e.start, e.end)
            yield Candidate(Finding("GPU103", tctx.path, pos.line, pos.col + 1, pos.end_line, pos.end_col + 1, "", doc.severity),
                            e.value)

    def finish(self, policy, candidates: list):
        """Without a policy: when the files disagree, every mask is reported. None of them is
        "the wrong one": a majority is often the forbidden GPU (the value copied from a tutorial),
        and only the policy knows which GPU is allowed."""
        per_file: dict = {}
        for c in candidates:
            per_file.setdefault(c.finding.path, set()).add(normalized_mask(c.value))
        counts = Counter(v for values in per_file.values() for v in values)
        if len(counts) < 2:
            return
        total = len(per_file)
        values = ", ".join(f'"{v}" in {n} of {total} files' for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        template = self.doc.messages["disagree"]
        for c in candidates:
            yield dataclasses.replace(c.finding, message=template.format(value=c.value, values=values))


def _pin_of(pins: list, e):
    """The container pin of the service or container a mask setting belongs to (compose
    `device_ids` of the same service, NVIDIA_VISIBLE_DEVICES beside it), or None."""
    if e.scope is None:
        return None
    for pin in pins:
        if pin.scope is not None and pin.entries and is_index_mask(pin.entries) and (
                pin.scope[:len(e.scope)] == e.scope or e.scope[:len(pin.scope)] == pin.scope):
            return pin
    return None


def _composed(pinned: list, value: str):
    """The host GPUs a container's mask `value` selects among its `pinned` host GPUs, or None
    when an entry is not an index into them."""
    from gpufix.config import parse_mask

    out = []
    for m in parse_mask(value):
        if not isinstance(m, int) or m >= len(pinned):
            return None
        out.append(pinned[m])
    return out or None


def _inside(pinned: list, policy_mask) -> "str | None":
    """The mask that selects the policy's host GPUs inside a container pinned to `pinned`, or None."""
    if not policy_mask or any(g not in pinned for g in policy_mask):
        return None
    return ",".join(str(pinned.index(g)) for g in policy_mask)
