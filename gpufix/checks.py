"""The rules' logic: small functions from a file's facts to findings, registered by code.

Each rule's metadata, message templates, docs and examples live in rules/<CODE>.toml; this module
holds only what the rule decides. Adding a rule: a catalogue file plus one `@rule` function.
"""

from __future__ import annotations

import dataclasses
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
    scope_reason: str = ""  # why the file must hold the header, or what covers it

    @property
    def header_mask_writes(self) -> list:
        """Mask writes that run unconditionally at import time: the file's header. A write inside a
        function or one branch of an `if` is not (it may never run, or run after CUDA started)."""
        return [w for w in self.mask_writes if w.header]

    @property
    def header_order_writes(self) -> list:
        return [w for w in self.order_writes if w.header]

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


def _finding(ctx: RuleContext, code: str, pos: Pos, message: str, fix: Optional[Fix] = None, severity: Optional[str] = None) -> Finding:
    doc = load_rule_docs()[code]
    return Finding(
        rule=code,
        path=ctx.path,
        line=pos.line,
        column=pos.col + 1,
        end_line=pos.end_line,
        end_column=pos.end_col + 1,
        message=message,
        severity=severity or doc.severity,
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
    if use.kind == "cuda-string":
        return quote_like(use.text, f"cuda:{new}")
    if use.kind == "tf-device":
        literal = use.text
        head = literal.rstrip("'\"")
        tail = literal[len(head):]
        digits = len(str(use.value))
        return head[:-digits] + str(new) + tail
    return str(new)


def _in_multi_gpu_code(ctx: RuleContext, use: OrdinalUse) -> bool:
    """Inside multi-GPU code (gpufix.multigpu): GPU004 reports it once, nothing inside is remapped."""
    mg = ctx.facts.multigpu
    if mg is None or ctx.policy_mask is None:
        return False
    from gpufix.multigpu import multi_gpu_scopes

    return mg.scope_of(use.pos.line) in multi_gpu_scopes(mg, len(ctx.policy_mask))


def _unsafe_context(ctx: RuleContext, use: OrdinalUse):
    """(applicability, note) for an ordinal in a gated test or in plain data; None otherwise."""
    mg = ctx.facts.multigpu
    if mg is None:
        return None
    gate = mg.gated(use.pos.line)
    if gate:
        return None, f"; not remapped: the test is gated to machines with several GPUs ({gate}) and is skipped under the policy"
    why = mg.data_lines.get((use.pos.line, use.pos.col))
    if why:
        return "unsafe", f"; it is plain data ({why}): remapping it alone can break the test, so the fix is unsafe"
    return None


@rule("GPU001")
def invalid_ordinal(ctx: RuleContext):
    file_mask = ctx.file_mask()
    policy_mask = ctx.policy_mask
    for use in ctx.facts.ordinals:
        if use.kind not in ("cuda-string", "int", "tf-device") or use.value == 0:
            continue
        if _in_multi_gpu_code(ctx, use):
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
            fix = Fix("safe", f"use {new}", (Edit("replace-expr", use.pos.line, use.pos.col, new),))
            note = ""
            special = _unsafe_context(ctx, use)
            if special is not None:
                applicability, note = special
                fix = dataclasses.replace(fix, applicability=applicability) if applicability else None
            yield _finding(ctx, "GPU001", use.pos, ctx.message(
                "GPU001", "remap", what=what, physical=r.physical, mask=mask, new_index=r.new_index, new=new) + note, fix)


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
    if not ctx.header_order_writes:
        lines.append((ORDER_VAR, ctx.policy.device_order))
    if with_mask and ctx.policy.has_policy:
        if ctx.policy.cpu_runs == "keep":
            # `if os.environ.get("CUDA_VISIBLE_DEVICES") not in ("", "-1"):` around the mask line:
            # a caller's explicit CPU run stays on the CPU (see fixer._header_stmt)
            lines.append((MASK_VAR, ctx.policy.visible_devices, "keep-cpu"))
        else:
            lines.append((MASK_VAR, ctx.policy.visible_devices))
    return tuple(lines)


@rule("GPU101")
def missing_visible_devices(ctx: RuleContext):
    if not ctx.in_header_scope or ctx.header_mask_writes:
        return
    anchor = ctx.header_anchor()
    elsewhere = ctx.mask_writes
    if elsewhere:
        # Set only inside a function or a branch: not the file's header (item: it may never run,
        # or run after CUDA started); the header still goes at the top.
        where = min(elsewhere, key=lambda w: w.order)
        note = f"; the mask set on line {where.pos.line} is inside a function or a branch, which is not a header"
    else:
        note = ""
    if ctx.policy.has_policy:
        fix = Fix("safe", "insert the CUDA_VISIBLE_DEVICES header",
                  (Edit("insert-header", lines=_header_lines(ctx, with_mask=True)),))
        variant = "policy-entry" if ctx.scope_reason else "policy"
        yield _finding(ctx, "GPU101", anchor, ctx.message("GPU101", variant, value=ctx.policy.visible_devices, reason=ctx.scope_reason) + note, fix)
    else:
        variant = "no-policy-entry" if ctx.scope_reason else "no-policy"
        yield _finding(ctx, "GPU101", anchor, ctx.message("GPU101", variant, reason=ctx.scope_reason) + note)


@rule("GPU102")
def missing_device_order(ctx: RuleContext):
    if ctx.header_order_writes:
        return
    if ctx.order_writes and not ctx.in_header_scope:
        return  # set where the file's own mask is set; only a header file must set it at the top
    mask_writes = ctx.mask_writes
    index_form = any(
        w.value_kind in ("str", "int") and w.value is not None and is_index_mask(parse_mask(w.value)) for w in mask_writes
    )
    if not ctx.in_header_scope and not index_form:
        return
    order = ctx.policy.device_order
    code_writes = [w for w in mask_writes if w.method != "magic"]
    first = min(code_writes, key=lambda w: w.order) if code_writes else None
    if first is not None and ctx.in_header_scope and not (first.module_body and not ctx.order_writes):
        # The first mask write is inside a function or a branch (or the order is set only there):
        # the order goes into a complete header at the top, never into that block.
        fix = Fix("safe", "insert the CUDA_DEVICE_ORDER header",
                  (Edit("insert-header", lines=_header_lines(ctx, with_mask=ctx.in_header_scope and not ctx.header_mask_writes)),))
        yield _finding(ctx, "GPU102", first.pos, ctx.message("GPU102", "default", order=order), fix)
        return
    if code_writes:
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
    for w in ctx.mask_writes:
        if w.value_kind not in ("str", "int") or w.value is None:
            continue
        if _normalized(w.value) == _normalized(want):
            continue
        fix = value_fix(w, want, f'set CUDA_VISIBLE_DEVICES="{want}"')
        variant = "magic" if w.method == "magic" else "policy"
        yield _finding(ctx, "GPU103", w.value_pos or w.pos, ctx.message("GPU103", variant, value=w.value, want=want), fix)


@rule("GPU104")
def wrong_device_order(ctx: RuleContext):
    want = ctx.policy.device_order
    for w in ctx.order_writes:
        if w.value_kind not in ("str", "int") or w.value is None or w.value.strip() == want:
            continue
        fix = value_fix(w, want, f'set CUDA_DEVICE_ORDER="{want}"')
        yield _finding(ctx, "GPU104", w.value_pos or w.pos, ctx.message("GPU104", "default", value=w.value, want=want), fix)


# Frameworks that initialise CUDA on the first CUDA call, not on import: a mask set after their
# import but before any CUDA call still takes effect (torch's lazy init; cupy and the Hugging Face
# libraries build on torch or initialise on first use).
LAZY_INIT = ("torch", "torchvision", "torchaudio", "lightning", "pytorch_lightning", "transformers",
             "diffusers", "accelerate", "cupy")


def _lazy(trigger) -> bool:
    what = trigger.what
    if not what.startswith("import of "):
        return False
    return what[len("import of "):].split(".")[0] in LAZY_INIT


@rule("GPU105")
def mask_set_too_late(ctx: RuleContext):
    triggers = ctx.facts.gpu_imports + ctx.facts.gpu_calls
    for w in ctx.facts.env_writes:
        if w.method == "magic":
            continue
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
        if all(_lazy(t) for t in earlier):
            # Only imports of lazily-initialising frameworks come before: CUDA has not started yet
            # unless another import or call started it; fragile, not certainly too late.
            yield _finding(ctx, "GPU105", w.pos, ctx.message(
                "GPU105", "lazy", var=w.var, trigger=first.what, line=first.pos.line), fix, severity="warning")
        else:
            certain = min((t for t in earlier if not _lazy(t)), key=lambda t: (t.pos.line, t.pos.col))
            yield _finding(ctx, "GPU105", w.pos, ctx.message(
                "GPU105", "default", var=w.var, trigger=certain.what, line=certain.pos.line), fix)


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


@rule("GPU004")
def multi_gpu_code(ctx: RuleContext):
    mg = ctx.facts.multigpu
    if mg is None or ctx.policy_mask is None:
        return
    from gpufix.multigpu import multi_gpu_scopes

    count = len(ctx.policy_mask)
    for scope in multi_gpu_scopes(mg, count):
        parts = []
        if len(scope.physical) >= 2:
            gpus = ", ".join(f"{i} (line {line})" for i, line in sorted(scope.physical.items()))
            parts.append(f"addresses GPUs {gpus}")
        if scope.device_list_line is not None:
            parts.append(f"builds a list of devices (line {scope.device_list_line})")
        need = max(len(scope.physical), 2)
        gated = f"; it is gated to such machines ({scope.gate}) and is skipped under the policy" if scope.gate else ""
        if scope.node is not None and hasattr(scope.node, "name"):
            pos = Pos(scope.line, scope.col, scope.line, scope.col)
        else:
            first = min(scope.physical.values(), default=scope.device_list_line or 1)
            pos = Pos(first, 0, first, 0)
        yield _finding(ctx, "GPU004", pos, ctx.message(
            "GPU004", "default", where=scope.name, what=" and ".join(parts), count=count,
            mask=_mask_text(ctx.policy_mask), need=need, gated=gated))


@rule("GPU108")
def app_gpu_choice(ctx: RuleContext):
    """A mask computed at run time, or an argparse option that picks a GPU: the app's choice
    conflicts with the policy; say which wins after the fix."""
    if not ctx.policy.has_policy:
        return
    want = ctx.policy.visible_devices
    count = len(ctx.policy_mask or ())
    header = bool(ctx.header_mask_writes) or ctx.in_header_scope
    for w in ctx.mask_writes:
        if w.value_kind != "dynamic" or w.method == "magic":
            continue
        if w.header:
            winner = (f"this line replaces the policy's mask, so the run-time value wins and the policy "
                      f"(\"{want}\") is not enforced")
        else:
            winner = (f"the header sets \"{want}\" first; this line replaces it when it runs before CUDA starts "
                      f"(then the app's value wins), and is ignored after")
        yield _finding(ctx, "GPU108", w.value_pos or w.pos, ctx.message(
            "GPU108", "mask", var=w.var, expr=w.value_src or "?", winner=winner, want=want))
    for opt in getattr(ctx.facts, "gpu_options", None) or ():
        if opt.reaches == "mask":
            continue  # reported at the mask write above
        pos = Pos(opt.line, opt.col, opt.line, opt.col)
        yield _finding(ctx, "GPU108", pos, ctx.message(
            "GPU108", "option", flag=opt.flag, want=want, count=count,
            visible=_visible(count), pinned="the header pins" if header else "the policy's header pins"))


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
