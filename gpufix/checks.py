"""The rules' logic: small functions from a file's facts to findings, registered by code.

Each rule's metadata, message templates, docs and examples live in rules/<CODE>.toml; this module
holds only what the rule decides. Adding a rule: a catalogue file plus one `@rule` function.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from gpufix.analysis import MASK_VAR, ORDER_VAR, TF_DEVICE_RE, EnvWrite, Facts, OrdinalUse, Pos
from gpufix.catalog import load_rule_docs
from gpufix.config import Policy, is_index_mask, parse_mask
from gpufix.model import Edit, Finding, Fix

UNKNOWN = "unknown"  # a mask we cannot read statically (dynamic value, several values)


@dataclasses.dataclass
class RuleContext:
    path: str
    policy: Policy
    facts: Facts
    in_header_scope: bool
    # "12" -> how a message names that line ("12", or "3 of cell 2" in a notebook)
    line_label: Callable = str

    @property
    def policy_mask(self) -> Optional[list]:
        return self.policy.mask

    @property
    def mask_writes(self) -> list:
        return [w for w in self.facts.env_writes if w.var == MASK_VAR]

    @property
    def order_writes(self) -> list:
        return [w for w in self.facts.env_writes if w.var == ORDER_VAR]

    def file_mask(self):
        """The file's own mask before any fix: None (sets none), UNKNOWN, or the parsed entries."""
        writes = self.mask_writes
        if not writes:
            return None
        values = set()
        for w in writes:
            if w.value_kind in ("str", "int") and w.value is not None:
                values.add(w.value.strip())
            else:
                return UNKNOWN
        if len(values) != 1:
            return UNKNOWN
        return parse_mask(values.pop())

    def mask_change_breaks(self):
        """None when putting the policy's mask in place of the file's own (a GPU103 value fix, the
        GPU101 header) keeps the meaning of every literal ordinal no fix rewrites; else
        (ordinal, physical GPU before, after) of the first one whose meaning it would change.

        Such an ordinal (hidden, unknown, or in a GPU002 list) is read through the file's mask
        before the fix and through the policy's after: `cuda:1` under "1,0" is GPU 0, under "1"
        it would name GPU 1 and its finding would change or vanish."""
        policy = self.policy_mask
        if policy is None:
            return None
        file_mask = self.file_mask()
        remaps = not self.remaps_blocked()
        for use in self.facts.ordinals:
            if use.kind in ("cuda-string", "int", "tf-device"):
                indices, rewritten = [use.value], remaps
            elif use.kind in ("list", "dict-keys"):
                indices, rewritten = [i for i, _ in use.value], False  # GPU002 has no fix
            else:
                continue
            for i in indices:
                if i == 0:
                    continue
                before = remap(i, file_mask, policy)
                if rewritten and before.known and before.new_index is not None:
                    continue  # its own fix rewrites it against the same masks
                after = remap(i, policy, policy)
                if before.physical is None or before.physical != after.physical:
                    return (i, before.physical, after.physical)
        return None

    def late_writes(self) -> list:
        """(write, first earlier trigger, movable) for every env write that runs after a GPU
        framework import or call (GPU105)."""
        triggers = self.facts.gpu_imports + self.facts.gpu_calls
        out = []
        for w in self.facts.env_writes:
            if w.method == "magic":
                # A notebook `%env` line after a cell that imported a framework: too late as well
                # (reported without a fix: gpufix does not rewrite magics).
                earlier = [t for t in triggers if t.ctx is None and t.pos.line < w.pos.line]
                if earlier:
                    out.append((w, min(earlier, key=lambda t: (t.pos.line, t.pos.col)), False))
                continue
            earlier = [
                t for t in triggers
                if (t.ctx is None and (w.ctx is not None or t.order < w.order)) or (t.ctx is not None and t.ctx == w.ctx and t.order < w.order)
            ]
            if not earlier:
                continue
            first = min(earlier, key=lambda t: (t.pos.line, t.pos.col))
            # The moved line writes `os.environ` under the header's `import os`: only when no
            # other import binds the name `os`.
            movable = (w.module_body and w.simple_stmt and w.method == "setitem" and w.value_kind in ("str", "int")
                       and self.facts.imports.get("os", "os") == "os")
            out.append((w, first, movable))
        return out

    def remaps_blocked(self) -> bool:
        """Whether which mask an ordinal is read through cannot be known from the text: the
        file's mask is not one literal, is a `%env` magic gpufix does not rewrite, or is set
        after a framework import where the fix cannot move it (in a function, a branch)."""
        file_mask = self.file_mask()
        if file_mask == UNKNOWN:
            return True
        if file_mask != self.policy_mask and any(w.method == "magic" or w.value_pos is None for w in self.mask_writes):
            return True  # a `%env` magic that apply will not rewrite sets another mask
        return any(w.var == MASK_VAR and not movable for w, _, movable in self.late_writes())

    def policy_mask_after_fix(self) -> bool:
        """Whether, after `gpufix apply`, ordinals in this file are read through the policy's mask
        (the contract's reading of a file that sets none and gets no header); the ordinal fixes
        are remaps into that mask and are offered only then."""
        if self.remaps_blocked():
            return False
        file_mask = self.file_mask()
        if file_mask is None:
            return not (self.in_header_scope and self.mask_change_breaks())
        if file_mask == self.policy_mask:
            return True
        return self.mask_change_breaks() is None

    def header_anchor(self) -> Pos:
        """Where file-level findings point: the first GPU import, else the top of the file."""
        imports = sorted(self.facts.gpu_imports, key=lambda t: (t.pos.line, t.pos.col))
        if imports:
            return imports[0].pos
        return Pos(1, 0, 1, 0)

    def message(self, code: str, variant: str, **values) -> str:
        template = load_rule_docs()[code].messages[variant]
        return template.format(**values)


RULES: dict = {}


def rule(code: str) -> Callable:
    def register(fn):
        RULES[code] = fn
        return fn

    return register


def _finding(ctx: RuleContext, code: str, pos: Pos, message: str, fix: Optional[Fix] = None) -> Finding:
    doc = load_rule_docs()[code]
    return Finding(
        rule=code,
        path=ctx.path,
        line=pos.line,
        column=pos.col + 1,
        end_line=pos.end_line,
        end_column=pos.end_col + 1,
        message=message,
        severity=doc.severity,
        fix=fix,
    )


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


# -- ordinals --------------------------------------------------------------------------------------
@dataclasses.dataclass
class Remap:
    physical: object  # int or uuid string or None (unknown)
    new_index: Optional[int]  # position under the policy; None: hidden or unknown
    known: bool


def remap(i: int, file_mask, policy_mask: list) -> Remap:
    if file_mask == UNKNOWN:
        return Remap(None, None, False)
    if file_mask is None:
        physical = i
    else:
        physical = file_mask[i] if i < len(file_mask) else i
    if isinstance(physical, int) != is_index_mask(policy_mask):
        return Remap(physical, None, False)
    if physical in policy_mask:
        return Remap(physical, policy_mask.index(physical), True)
    return Remap(physical, None, True)


def _visible(count: int) -> str:
    return "cuda:0" if count == 1 else f"cuda:0..cuda:{count - 1}"


def _mask_text(entries) -> str:
    return ",".join(str(e) for e in entries)


def _describe_ordinal(use: OrdinalUse) -> str:
    if use.kind in ("cuda-string", "tf-device"):
        return use.text
    return f"device index {use.value} in {use.api}()"


def _replacement(use: OrdinalUse, new: int) -> str:
    # Strings are rewritten from their value, as one literal: `"cuda:" "1"` and `f"cuda:1"` become
    # "cuda:0" (splicing digits into the source would make `"cuda:0" "1"`).
    if use.kind == "cuda-string":
        return quote_like(use.text, f"cuda:{new}")
    if use.kind == "tf-device":
        m = TF_DEVICE_RE.match(use.string)
        return quote_like(use.text, f"{m.group('prefix')}{m.group('kind')}:{new}")
    return str(new)


def replace_edit(pos: Pos, code: str) -> Edit:
    return Edit("replace-expr", pos.line, pos.col, code, end_line=pos.end_line, end_col=pos.end_col)


@rule("GPU001")
def invalid_ordinal(ctx: RuleContext):
    file_mask = ctx.file_mask()
    policy_mask = ctx.policy_mask
    fixable = None
    for use in ctx.facts.ordinals:
        if use.kind not in ("cuda-string", "int", "tf-device") or use.value == 0:
            continue
        what = _describe_ordinal(use)
        if policy_mask is None:
            if file_mask is None or file_mask == UNKNOWN or use.value < len(file_mask):
                continue
            yield _finding(ctx, "GPU001", use.pos, ctx.message(
                "GPU001", "no-policy", what=what, index=use.value, mask=_mask_text(file_mask), count=len(file_mask), visible=_visible(len(file_mask))))
            continue
        r = remap(use.value, file_mask, policy_mask)
        mask = _mask_text(policy_mask)
        if not r.known:
            if use.value < len(policy_mask):
                continue
            reason = ("the file's own mask is not a single literal" if file_mask == UNKNOWN
                      else "an index cannot be matched with the GPU UUIDs the policy names")
            yield _finding(ctx, "GPU001", use.pos, ctx.message(
                "GPU001", "unknown", what=what, index=use.value, mask=mask, count=len(policy_mask), reason=reason))
        elif r.new_index is None:
            yield _finding(ctx, "GPU001", use.pos, ctx.message(
                "GPU001", "hidden", what=what, physical=r.physical, mask=mask))
        elif r.new_index != use.value:
            new = _replacement(use, r.new_index)
            if fixable is None:
                fixable = ctx.policy_mask_after_fix()
            if not fixable:
                # The remap is into the policy's mask, which this file will not set (its own mask
                # stays): rewriting would name another GPU.
                yield _finding(ctx, "GPU001", use.pos, ctx.message(
                    "GPU001", "remap-withheld", what=what, physical=r.physical, mask=mask, new_index=r.new_index, new=new))
                continue
            fix = Fix("safe", f"use {new}", (replace_edit(use.pos, new),))
            yield _finding(ctx, "GPU001", use.pos, ctx.message(
                "GPU001", "remap", what=what, physical=r.physical, mask=mask, new_index=r.new_index, new=new), fix)


@rule("GPU002")
def hidden_device_list(ctx: RuleContext):
    file_mask = ctx.file_mask()
    policy_mask = ctx.policy_mask
    for use in ctx.facts.ordinals:
        if use.kind not in ("list", "dict-keys"):
            continue
        indices = [i for i, _ in use.value]
        if policy_mask is None:
            if file_mask is None or file_mask == UNKNOWN:
                continue
            bad = [i for i in indices if i >= len(file_mask)]
            if bad:
                yield _finding(ctx, "GPU002", use.pos, ctx.message(
                    "GPU002", "no-policy", api=use.api, indices=indices, bad=bad, mask=_mask_text(file_mask), count=len(file_mask)))
            continue
        mask = _mask_text(policy_mask)
        bad = []
        for i in indices:
            if i == 0:
                continue  # like GPU001: index 0 is the first visible GPU, whatever the mask
            r = remap(i, file_mask, policy_mask)
            if (not r.known and i >= len(policy_mask)) or (r.known and r.new_index != i):
                bad.append(i)
        if bad:
            yield _finding(ctx, "GPU002", use.pos, ctx.message(
                "GPU002", "policy", api=use.api, indices=indices, bad=bad, mask=mask, count=len(policy_mask), visible=_visible(len(policy_mask))))


@rule("GPU003")
def nvml_index_as_cuda_ordinal(ctx: RuleContext):
    mask = ctx.policy_mask if ctx.policy_mask is not None else ctx.file_mask()
    if mask is None or mask == UNKNOWN or not is_index_mask(mask):
        return
    for use in ctx.facts.ordinals:
        if use.kind == "nvml-cuda-ordinal":
            if mask != list(range(len(mask))):
                yield _finding(ctx, "GPU003", use.pos, ctx.message(
                    "GPU003", "cuda-ordinal", expr=use.text, mask=_mask_text(mask), api=use.api))
            continue
        if use.kind != "nvml-index":
            continue
        i = use.value
        if i < len(mask) and mask[i] != i:
            yield _finding(ctx, "GPU003", use.pos, ctx.message(
                "GPU003", "default", index=i, mask=_mask_text(mask), physical=mask[i], api=use.api))


# -- the mask header -------------------------------------------------------------------------------
def _header_lines(ctx: RuleContext, with_mask: bool) -> tuple:
    lines = []
    if not ctx.order_writes:
        lines.append((ORDER_VAR, ctx.policy.device_order))
    if with_mask and ctx.policy.has_policy:
        lines.append((MASK_VAR, ctx.policy.visible_devices))
    return tuple(lines)


@rule("GPU101")
def missing_visible_devices(ctx: RuleContext):
    if not ctx.in_header_scope or ctx.mask_writes:
        return
    anchor = ctx.header_anchor()
    if ctx.policy.has_policy:
        breaks = ctx.mask_change_breaks()
        if breaks:
            i, before, after = breaks
            yield _finding(ctx, "GPU101", anchor, ctx.message(
                "GPU101", "policy-withheld", value=ctx.policy.visible_devices, index=i, before=before, after=after))
            return
        fix = Fix("safe", "insert the CUDA_VISIBLE_DEVICES header",
                  (Edit("insert-header", lines=_header_lines(ctx, with_mask=True)),))
        yield _finding(ctx, "GPU101", anchor, ctx.message("GPU101", "policy", value=ctx.policy.visible_devices), fix)
    else:
        yield _finding(ctx, "GPU101", anchor, ctx.message("GPU101", "no-policy"))


@rule("GPU102")
def missing_device_order(ctx: RuleContext):
    if ctx.order_writes:
        return
    mask_writes = ctx.mask_writes
    index_form = any(
        w.value_kind in ("str", "int") and w.value is not None and is_index_mask(parse_mask(w.value)) for w in mask_writes
    )
    if not ctx.in_header_scope and not index_form:
        return
    order = ctx.policy.device_order
    code_writes = [w for w in mask_writes if w.method != "magic"]
    late = {id(w) for w, _, _ in ctx.late_writes()}
    first_write = min(code_writes, key=lambda w: w.order) if code_writes else None
    if first_write is not None and (not first_write.environ_src or id(first_write) in late):
        # The first mask write is a bare `putenv(...)` (from os import putenv: no name here
        # writes os.environ), or runs too late (GPU105): the order goes into the header, which
        # imports os and runs before any framework import.
        fix = Fix("safe", "insert the CUDA_DEVICE_ORDER header", (Edit("insert-header", lines=_header_lines(ctx, with_mask=False)),))
        pos = min(code_writes, key=lambda w: w.order).pos
    elif code_writes:
        first = min(code_writes, key=lambda w: w.order)
        stmt = f'{first.environ_src}["{ORDER_VAR}"] = "{order}"'
        fix = Fix("safe", f"set CUDA_DEVICE_ORDER={order} before the mask",
                  (Edit("insert-before", first.stmt.line, first.stmt.col, stmt),))
        pos = first.pos
    elif mask_writes:  # only a notebook `%env` magic: gpufix does not rewrite magics
        fix, pos = None, Pos(mask_writes[0].pos.line, 0, mask_writes[0].pos.line, 0)
        yield _finding(ctx, "GPU102", pos, ctx.message("GPU102", "magic", order=order))
        return
    else:
        fix = Fix("safe", "insert the CUDA_DEVICE_ORDER header", (Edit("insert-header", lines=_header_lines(ctx, with_mask=False)),))
        pos = ctx.header_anchor()
    yield _finding(ctx, "GPU102", pos, ctx.message("GPU102", "default", order=order), fix)


def _normalized(value: str) -> str:
    return ",".join(part.strip() for part in value.strip().split(","))


def value_fix(w: EnvWrite, new_value: str, title: str) -> Optional[Fix]:
    if w.method == "magic" or w.value_pos is None:
        return None
    original = w.value_src if w.value_kind == "str" and w.value_src else '"'
    return Fix("safe", title, (replace_edit(w.value_pos, quote_like(original, new_value)),))


@rule("GPU103")
def wrong_visible_devices(ctx: RuleContext):
    if not ctx.policy.has_policy:
        return  # judged across files by the engine (the value most files use)
    want = ctx.policy.visible_devices
    breaks = None
    for w in ctx.mask_writes:
        if w.value_kind not in ("str", "int") or w.value is None:
            continue
        if _normalized(w.value) == _normalized(want):
            continue
        fix = value_fix(w, want, f'set CUDA_VISIBLE_DEVICES="{want}"')
        variant = "magic" if w.method == "magic" else "policy"
        if fix is not None:
            breaks = breaks or ctx.mask_change_breaks()
            if breaks:
                fix, variant = None, "policy-withheld"
        i, before, after = breaks or (None, None, None)
        yield _finding(ctx, "GPU103", w.value_pos or w.pos, ctx.message(
            "GPU103", variant, value=w.value, want=want, index=i, before=before, after=after), fix)


@rule("GPU104")
def wrong_device_order(ctx: RuleContext):
    want = ctx.policy.device_order
    for w in ctx.order_writes:
        if w.value_kind not in ("str", "int") or w.value is None or w.value.strip() == want:
            continue
        fix = value_fix(w, want, f'set CUDA_DEVICE_ORDER="{want}"')
        yield _finding(ctx, "GPU104", w.value_pos or w.pos, ctx.message("GPU104", "default", value=w.value, want=want), fix)


@rule("GPU105")
def mask_set_too_late(ctx: RuleContext):
    for w, first, movable in ctx.late_writes():
        fix = Fix("safe", f"move the {w.var} assignment above the first GPU import",
                  (Edit("move-to-header", w.stmt.line, w.stmt.col),)) if movable else None
        yield _finding(ctx, "GPU105", w.pos, ctx.message("GPU105", "default", var=w.var, trigger=first.what, line=ctx.line_label(first.pos.line)), fix)


@rule("GPU106")
def non_string_mask_value(ctx: RuleContext):
    for w in ctx.facts.env_writes:
        if w.value_kind not in ("int", "other-literal"):
            continue
        fix = None
        if w.value_kind == "int" and w.value_pos is not None:
            fix = Fix("safe", f'quote it: "{w.value}"', (replace_edit(w.value_pos, f'"{w.value}"'),))
        yield _finding(ctx, "GPU106", w.value_pos or w.pos, ctx.message("GPU106", "default", var=w.var, value=w.value), fix)


@rule("GPU107")
def mask_not_enforced(ctx: RuleContext):
    for w in ctx.facts.env_writes:
        if w.method not in ("setdefault", "putenv"):
            continue
        fix = None
        environ = w.environ_src or None
        if w.simple_stmt and environ and w.value_pos is not None and w.value_src:
            stmt = f'{environ}["{w.var}"] = {w.value_src}'
            fix = Fix("unsafe", f"assign {environ}[\"{w.var}\"] instead", (Edit("replace-stmt", w.stmt.line, w.stmt.col, stmt),))
        how = "os.putenv()" if w.method == "putenv" else "os.environ.setdefault()"
        yield _finding(ctx, "GPU107", w.pos, ctx.message("GPU107", w.method, var=w.var, how=how), fix)


def run_rules(ctx: RuleContext, enabled) -> list:
    findings = []
    for code, fn in RULES.items():
        if enabled(code):
            findings.extend(fn(ctx))
    return findings


def majority_mask_findings(results) -> list:
    """Without a policy, GPU103 reports files whose literal mask differs from the most common one."""
    from collections import Counter

    per_file = {}
    for res in results:
        values = {_normalized(w["value"]) for w in res.mask_values}
        if values:
            per_file[res.path] = values
    counts = Counter(v for values in per_file.values() for v in values)
    if not counts:
        return []
    ranked = counts.most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return []  # no value most files agree on
    majority = ranked[0][0]
    out = []
    docs = load_rule_docs()
    for res in results:
        for w in res.mask_values:
            if _normalized(w["value"]) == majority:
                continue
            p = w["pos"]
            out.append(
                Finding(
                    rule="GPU103",
                    path=res.path,
                    line=p[0],
                    column=p[1] + 1,
                    end_line=p[2],
                    end_column=p[3] + 1,
                    message=docs["GPU103"].messages["majority"].format(
                        value=w["value"], want=majority, files=counts[majority], total=len(per_file)),
                    severity=docs["GPU103"].severity,
                    fix=None,
                )
            )
    return out
