"""Helpers several rules share: reading ordinals through masks, quoting, value fixes, the header."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from gpufix.analysis import MASK_VAR, ORDER_VAR, EnvWrite, OrdinalUse, Pos
from gpufix.model import Edit, Fix
from gpufix.rules._mask import UNKNOWN, Remap, collapsed, remap  # noqa: F401  (the rules import them from here)

if TYPE_CHECKING:
    from gpufix.rules import RuleContext


def quote_like(original: str, value: str) -> str:
    """`value` as a string literal, quoted the way `original` (a literal's source) was."""
    quote = "'" if original[-1:] == "'" and '"' not in value else '"'
    prefix = ""
    i = 0
    while i < len(original) and original[i] in "rRuU":
        prefix += original[i]
        i += 1
    if "r" in prefix.lower():
        prefix = ""
    return f"{prefix}{quote}{value}{quote}"


def visible_range(count: int) -> str:
    return "cuda:0" if count == 1 else f"cuda:0..cuda:{count - 1}"


def mask_text(entries) -> str:
    return ",".join(str(e) for e in entries)


def describe_ordinal(use: OrdinalUse) -> str:
    if use.via:  # value flow: the literal is far from its use, so say where it goes
        shown = use.text if use.kind in ("tf-device", "index-string") else f"device index {use.value}"
        return f"{shown} ({use.via})"
    if use.kind in ("cuda-string", "tf-device"):
        return use.text
    if use.kind == "index-string":
        return f"device indices {use.text} in {use.api}()"
    return f"device index {use.value} in {use.api}()"


def normalized_mask(value: str) -> str:
    return ",".join(part.strip() for part in value.strip().split(","))


def unique_values(writes: list) -> list:
    """The writes, one per literal value: a settings dict written into os.environ twice
    (`update(S)`, then `update(**S)`) is one value to judge and fix."""
    seen, out = set(), []
    for w in writes:
        key = (w.var, w.value_pos.line, w.value_pos.col) if w.value_pos is not None else None
        if key is not None and key in seen:
            continue
        seen.add(key)
        out.append(w)
    return out


def value_fix(w: EnvWrite, new_value: str, title: str) -> Optional[Fix]:
    """Replace the literal value of an environment write; None where it is no literal (or a magic)."""
    if w.method == "magic" or w.value_pos is None:
        return None
    original = w.value_src if w.value_kind == "str" and w.value_src else '"'
    return Fix("safe", title, (replace_edit(w.value_pos, quote_like(original, new_value)),))


def replace_edit(pos: Pos, code: str) -> Edit:
    """Replace the node (an expression, or a statement when `code` is one) at exactly `pos` (start and end: `"cuda:" "1"` is one expression,
    its first part `"cuda:"` another with the same start)."""
    return Edit("replace", pos.line, pos.col, code, end_line=pos.end_line, end_col=pos.end_col)


def mask_fix_applicability(old_value: str, policy_mask) -> str:
    """"safe", or "unsafe" when the new mask shows fewer GPUs than the old one: code written for
    `"0,1"` (two processes, a device list, `cuda:1`) may then fail or share one GPU."""
    from gpufix.config import parse_mask

    try:
        before = len(parse_mask(old_value))
    except Exception:  # a value CUDA reads in its own way: not ours to judge
        return "unsafe"
    return "unsafe" if policy_mask is not None and before > len(policy_mask) else "safe"


def remap_applicability(file_mask, policy_mask) -> str:
    """A remap is computed for the mask the file will have after the fix (the policy's). When the
    GPU103 fix of the file's own mask is unsafe (it shrinks the mask), the remap must be applied
    with it or not at all: it is unsafe too."""
    if isinstance(file_mask, list) and policy_mask is not None and len(file_mask) > len(policy_mask):
        return "unsafe"
    return "safe"


def header_fix(ctx: RuleContext, title: str, with_mask: bool) -> tuple:
    """(Fix, note): the `ensure-header` fix of header_lines(ctx, with_mask), and the note its
    finding's message ends with. It is unsafe when it puts the policy's mask in force in a
    process that picks its GPU from its rank (RuleContext.rank_launch): the note says why."""
    lines = header_lines(ctx, with_mask)
    note = ctx.rank_launch() if any(line[0] == MASK_VAR for line in lines) else _order_alone(ctx)
    return Fix("unsafe" if note else "safe", title, (Edit("ensure-header", lines=lines),)), note


def _order_alone(ctx: RuleContext) -> str:
    """"" or the note that makes a header holding the device order but no mask unsafe: in a file
    that sets no mask, whose complete header (GPU101's) is unsafe because its process picks its GPU
    from its rank. The order alone leaves every GPU visible and renumbers them: `cuda:0` was the
    GPU CUDA ranks fastest and becomes the one on PCI bus 0, which need not be the policy's (on the
    workstation the policy is for, the allowed RTX 3090 ranks first and bus 0 holds the forbidden
    GPU): applied alone it can move the process onto a GPU the policy forbids."""
    if ctx.mask_writes or not ctx.policy.has_policy:
        return ""
    if not any(line[0] == MASK_VAR for line in header_lines(ctx, True)):
        return ""
    launch = ctx.rank_launch()
    if not launch:
        return ""
    return ("; the device order alone renumbers every GPU without hiding any (`cuda:0` becomes the GPU on PCI "
            "bus 0, which need not be the policy's), so it is set with the mask or not at all" + launch)


def header_lines(ctx: RuleContext, with_mask: bool) -> tuple:
    """The (variable, value[, form]) lines a header inserted into this file must set. The mask is
    left out, whoever asks, when putting the policy's mask in force would change what an ordinal
    of the file names (RuleContext.mask_change_breaks; GPU101 reports that)."""
    lines = []
    if not ctx.header_order_writes:
        lines.append((ORDER_VAR, ctx.policy.device_order))
    if with_mask and ctx.policy.has_policy and ctx.mask_change_breaks() is None:
        if ctx.policy.cpu_runs == "keep":
            # `if os.environ.get("CUDA_VISIBLE_DEVICES") not in ("", "-1"):` around the mask line:
            # a caller's explicit CPU run stays on the CPU (gpufix.fix.header.header_code)
            lines.append((MASK_VAR, ctx.policy.visible_devices, "keep-cpu"))
        else:
            lines.append((MASK_VAR, ctx.policy.visible_devices))
    return tuple(lines)
