"""The rules' logic: small functions from a file's facts to findings, registered by code.

Each rule's metadata, message templates, docs and examples live in rules/<CODE>.toml; this module
holds only what the rule decides. Adding a rule: a catalogue file plus one `@rule` function.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Optional

from gpufix.analysis import MASK_VAR, ORDER_VAR, EnvWrite, Facts, OrdinalUse, Pos
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

    @property
    def policy_mask(self) -> Optional[list]:
        return self.policy.mask

    @property
    def mask_writes(self) -> list:
        """This process's own mask writes (a child process's `env=` is not the file's header)."""
        return [w for w in self.facts.env_writes if w.var == MASK_VAR and not w.child]

    @property
    def order_writes(self) -> list:
        return [w for w in self.facts.env_writes if w.var == ORDER_VAR and not w.child]

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
    if use.via:  # value flow: the literal is far from its use
        shown = use.text if use.kind in ("tf-device", "index-string") else f"device index {use.value}"
        return f"{shown} ({use.via})"
    if use.kind in ("cuda-string", "tf-device"):
        return use.text
    if use.kind == "index-string":
        return f"device indices {use.text} in {use.api}()"
    return f"device index {use.value} in {use.api}()"


def _replacement(use: OrdinalUse, new: int) -> str:
    if use.kind == "cuda-string":
        return quote_like(use.text, f"cuda:{new}")
    if use.kind == "index-string":  # Lightning "1,": the index inside the string
        return re.sub(r"\d+", str(new), use.text, count=1)
    if use.kind == "tf-device":
        literal = use.text
        head = literal.rstrip("'\"")
        tail = literal[len(head):]
        digits = len(str(use.value))
        return head[:-digits] + str(new) + tail
    return str(new)


@rule("GPU001")
def invalid_ordinal(ctx: RuleContext):
    file_mask = ctx.file_mask()
    policy_mask = ctx.policy_mask
    for use in ctx.facts.ordinals:
        if use.kind not in ("cuda-string", "int", "tf-device", "index-string") or use.value == 0:
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
        elif r.new_index != use.value and use.fix_blocked:
            new = _replacement(use, r.new_index)
            yield _finding(ctx, "GPU001", use.pos, ctx.message(
                "GPU001", "remap-by-hand", what=what, physical=r.physical, mask=mask, new_index=r.new_index, new=new,
                reason=use.fix_blocked))
        elif r.new_index != use.value:
            new = _replacement(use, r.new_index)
            fix = Fix("safe", f"use {new}", (Edit("replace-expr", use.pos.line, use.pos.col, new),))
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
                "GPU003", "flow" if use.via else "default", index=i, mask=_mask_text(mask), physical=mask[i], api=use.api,
                via=use.via))


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
    if code_writes:
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
    return Fix("safe", title, (Edit("replace-expr", w.value_pos.line, w.value_pos.col, quote_like(original, new_value)),))


@rule("GPU103")
def wrong_visible_devices(ctx: RuleContext):
    if not ctx.policy.has_policy:
        return  # judged across files by the engine (the value most files use)
    want = ctx.policy.visible_devices
    for w in ctx.facts.env_writes:
        if w.var != MASK_VAR or w.value_kind not in ("str", "int") or w.value is None:
            continue
        if _normalized(w.value) == _normalized(want):
            continue
        fix = value_fix(w, want, f'set CUDA_VISIBLE_DEVICES="{want}"')
        variant = "magic" if w.method == "magic" else "child" if w.child else "policy"
        yield _finding(ctx, "GPU103", w.value_pos or w.pos, ctx.message("GPU103", variant, value=w.value, want=want), fix)


@rule("GPU104")
def wrong_device_order(ctx: RuleContext):
    want = ctx.policy.device_order
    for w in ctx.facts.env_writes:
        if w.var != ORDER_VAR:
            continue
        if w.value_kind not in ("str", "int") or w.value is None or w.value.strip() == want:
            continue
        fix = value_fix(w, want, f'set CUDA_DEVICE_ORDER="{want}"')
        yield _finding(ctx, "GPU104", w.value_pos or w.pos, ctx.message("GPU104", "default", value=w.value, want=want), fix)


@rule("GPU105")
def mask_set_too_late(ctx: RuleContext):
    triggers = ctx.facts.gpu_imports + ctx.facts.gpu_calls
    for w in ctx.facts.env_writes:
        if w.method == "magic" or w.child:
            continue  # a child process's env= is read when the child starts, not too late
        earlier = [
            t for t in triggers
            if (t.ctx is None and (w.ctx is not None or t.order < w.order)) or (t.ctx is not None and t.ctx == w.ctx and t.order < w.order)
        ]
        if not earlier:
            continue
        first = min(earlier, key=lambda t: (t.pos.line, t.pos.col))
        movable = w.module_body and w.simple_stmt and w.method == "setitem" and w.value_kind in ("str", "int")
        fix = Fix("safe", f"move the {w.var} assignment above the first GPU import",
                  (Edit("move-to-header", w.stmt.line, w.stmt.col),)) if movable else None
        yield _finding(ctx, "GPU105", w.pos, ctx.message("GPU105", "default", var=w.var, trigger=first.what, line=first.pos.line), fix)


@rule("GPU106")
def non_string_mask_value(ctx: RuleContext):
    for w in ctx.facts.env_writes:
        if w.value_kind not in ("int", "other-literal"):
            continue
        fix = None
        if w.value_kind == "int" and w.value_pos is not None:
            fix = Fix("safe", f'quote it: "{w.value}"', (Edit("replace-expr", w.value_pos.line, w.value_pos.col, f'"{w.value}"'),))
        yield _finding(ctx, "GPU106", w.value_pos or w.pos, ctx.message("GPU106", "default", var=w.var, value=w.value), fix)


@rule("GPU107")
def mask_not_enforced(ctx: RuleContext):
    for w in ctx.facts.env_writes:
        if w.method not in ("setdefault", "putenv"):
            continue
        fix = None
        environ = w.environ_src if w.method == "setdefault" else ("os.environ" if ctx.facts.imports.get("os") == "os" else None)
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
