"""GPU108 app-gpu-choice: a mask computed at run time or a GPU option that conflicts with the policy.

Both conflict with the policy: the policy pins a GPU in the header, the app picks one when it runs.
GPU108 reports where, and which wins after the fix, so that the option is never broken silently.
The options are its own fact: the `GpuOptions` collector below finds them (in files that import no
GPU framework too: its `parse_tests`), only under a policy.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from typing import Optional

from gpufix.analysis import MASK_VAR, Pos, nodes_on_lines, walk_tree
from gpufix.collectors import Collector
from gpufix.lexical import lines_naming
from gpufix.rules import Rule, RuleContext
from gpufix.rules._shared import visible_range
from gpufix.rules._spawn import child_of
from gpufix.rules.gpu105_mask_set_too_late import child_cuda_starters
from gpufix.deferred import LazyPattern

# Option names that choose a GPU by index (`--gpu-device-id`, `--device_index`, `--gpus`), not a
# switch (`--use_cuda`, `--disable_cuda`), a size or a count (`--max-gpu-memory`, `--gpu-split`
# (gigabytes per GPU), `--num-gpus`) or a setting for whatever GPU is used (`--gpu-layers`,
# `--gpu-compute-type`). Matched on the name with dashes as underscores.
_GPU_OPTION_RE = LazyPattern(
    r"^(?:gpus?|devices|device_ids?|cuda_devices?|[a-z_]*(?:gpu|cuda)_devices?"
    r"|[a-z_]*(?:gpu|cuda|device)_?(?:id|ids|index|indices|idx))$"
)
# Text that may hold such an option: files without a GPU import are parsed for it too. Every name
# _GPU_OPTION_RE accepts holds gpu, cuda or device, in any of the call's flags (`"-g", "--gpu_id"`),
# however the flag is spelled (an escape or implicit concatenation: a backslash or two quotes).
_OPTION_WORD_RE = LazyPattern(r"gpu|cuda|device|\\|['\"]\s*['\"]", re.I)
OPTION_TEXT_RE = re.compile(
    r"add_argument(?:[\s\\)]|#[^\r\n]*(?=[\r\n]|\Z))*\((?:[^()]|\([^()]*\))*?(?:gpu|cuda|device|\\|['\"]\s*['\"])", re.I)


@dataclasses.dataclass
class GpuOption:
    """A command-line option of the app that picks a GPU, and what its value reaches."""

    flag: str
    dest: str
    line: int
    col: int
    reaches: str  # "mask" | "index" | "" (only its name says it picks a GPU)


def _dest(call: ast.Call) -> Optional[tuple]:
    flags = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if not flags:
        return None
    for kw in call.keywords:
        if kw.arg == "dest" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            return flags, kw.value.value
    long = next((f for f in flags if f.startswith("--")), flags[0])
    return flags, long.lstrip("-").replace("-", "_")


def gpu_options(tree: ast.Module, facts, lines: Optional[set] = None, text: Optional[str] = None) -> list:
    """argparse options (add_argument calls) whose name picks a GPU, and whether the file feeds
    them into the mask or a device index. `lines`: the lines that may hold such a call (only their
    statements are walked)."""
    out = []
    mask_sources = " ".join(w.value_src or "" for w in facts.env_writes if w.var == MASK_VAR and w.value_kind == "dynamic")
    keep = None
    if lines is not None and text is not None:
        split = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # lines as ast numbers them

        def keep(stmt) -> bool:
            # a GPU option's flags hold one of these words (_GPU_OPTION_RE; its help, when not,
            # says gpu or cuda), or spell them (an escape, two literals): a statement whose text
            # holds none (most of a training script's options) holds no such call
            return _OPTION_WORD_RE.search("\n".join(split[stmt.lineno - 1:stmt.end_lineno or stmt.lineno])) is not None
    for node in (ast.walk(tree) if lines is None else nodes_on_lines(tree, lines, keep, walk_tree)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"):
            continue
        got = _dest(node)
        if got is None:
            continue
        flags, dest = got
        gpu_flags = [f for f in flags if _GPU_OPTION_RE.match(f.lstrip("-").lower().replace("-", "_"))]
        if not gpu_flags:
            continue
        if any(isinstance(kw.value, ast.Constant) and kw.value.value in ("store_true", "store_false")
               for kw in node.keywords if kw.arg == "action"):
            continue  # an on/off switch (`--cpu`, `--no-gpu`): picks no GPU
        if any(kw.arg == "type" and isinstance(kw.value, ast.Name) and kw.value.id == "bool" for kw in node.keywords):
            continue
        if not re.search(r"gpu|cuda", gpu_flags[0], re.I):
            # `--device-index` may be an audio device: only when its help says it is a GPU
            help_text = " ".join(kw.value.value for kw in node.keywords
                                 if kw.arg == "help" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str))
            if not re.search(r"gpu|cuda", help_text, re.I):
                continue
        reaches = "mask" if re.search(rf"\.{re.escape(dest)}\b", mask_sources) else ""
        out.append(GpuOption(gpu_flags[0], dest, node.lineno, node.col_offset, reaches))
    return out


class GpuOptions(Collector):
    """argparse options that pick a GPU: facts.extra["gpu-options"], a list of GpuOption."""

    name = "gpu-options"
    priority = 90
    only_with_policy = True

    def parse_tests(self, catalog):
        return (("add_argument", OPTION_TEXT_RE),)

    def finish(self, facts, tree, text: str) -> None:
        if "add_argument" in text:
            facts.extra[self.name] = gpu_options(tree, facts, set(lines_naming(text, ("add_argument",))), text)


def _counting_parent(ctx: RuleContext) -> Optional[tuple]:
    """(parent, counter), project-relative, when this script is started by a project file whose
    process counts its GPUs, and the indices that parent sees under the policy's mask are not the
    physical GPUs of the same numbers (policy "1": its index 0 is physical GPU 1); else None."""
    import os

    from gpufix.config import is_index_mask

    project = ctx.policy.project
    mask = ctx.policy_mask
    if project is None or not project.launched or not ctx.abs_path or not mask:
        return None
    if is_index_mask(mask) and all(m == i for i, m in enumerate(mask)):
        return None  # index i under the policy's mask is physical GPU i: nothing moves
    def rel(a: str) -> str:
        return os.path.relpath(a, project.root).replace(os.sep, "/")

    for parent, counter in project.launched_by(ctx.abs_path):
        if counter:
            return rel(parent), rel(counter)
    return None


_IN_CHILDREN = "child processes run, before CUDA starts in them"  # GPU108's words for a spawn target's write


class AppGpuChoice(Rule):
    code = "GPU108"
    messages = {"mask": ("var", "expr", "winner"), "option": ("flag", "pinned", "want", "count", "visible"),
                "child-count": ("var", "expr", "parent", "counter", "count", "visible", "want", "first")}

    def keeps_own_mask(self, finding) -> bool:
        # A mask computed at run time (not an option) in the file's own process: a write that only
        # spawn children run (a spawn pool's `run()`) sets theirs, never the mask of a process
        # that imports the file (gpufix.project.index.fix_holds).
        return finding.message.startswith(f"{MASK_VAR} is computed at run time") and _IN_CHILDREN not in finding.message

    def check(self, ctx: RuleContext):
        if not ctx.policy.has_policy:
            return
        want = ctx.policy.visible_devices
        count = len(ctx.policy_mask or ())
        counted = _counting_parent(ctx)
        for w in ctx.mask_writes:
            if w.value_kind != "dynamic" or w.method == "magic":
                continue
            if counted is not None:
                # Started by a project file that counts its GPUs under its own mask: the indices it
                # hands over are relative to that mask, this line makes them physical.
                parent, counter = counted
                yield self.finding(ctx, w.value_pos or w.pos, "child-count", var=w.var, expr=w.value_src or "?",
                                   parent=parent, counter=counter, count=count, visible=visible_range(count),
                                   want=want, first=str(ctx.policy_mask[0]))
                continue
            child = child_of(ctx.facts, w)
            if w.header:
                winner = f'this line replaces the policy\'s mask, so the run-time value wins and the policy ("{want}") is not enforced'
            elif child is not None and not child_cuda_starters(ctx.facts, w):
                winner = (f"it runs in `{child[0]}()`, which only `{child[1]}` {_IN_CHILDREN}: "
                          f'there the run-time value replaces the policy\'s mask ("{want}") that the child inherits, and '
                          "names physical GPUs, not the parent's visible ones")
            else:
                winner = (f'the header sets "{want}" first; this line replaces it when it runs before CUDA starts '
                          "(then the app's value wins), and is ignored after")
            yield self.finding(ctx, w.value_pos or w.pos, "mask", var=w.var, expr=w.value_src or "?", winner=winner)
        pinned = "the header pins" if (ctx.header_mask_writes or ctx.in_header_scope) else "the policy's header pins"
        flows = " ".join(getattr(u, "via", "") or "" for u in ctx.facts.ordinals)
        options = ctx.facts.extra.get(GpuOptions.name, ())
        project = ctx.policy.project
        elsewhere = project.mask_attrs_of_importers(ctx.abs_path) if options and project is not None and ctx.abs_path else ()
        for opt in options:
            if opt.reaches == "mask" or opt.dest in elsewhere:
                continue  # reported at the mask write (in this file, or in one that imports it)
            if opt.flag in flows or f"args.{opt.dest}" in flows:
                continue  # GPU001 follows the option's value to the device it picks
            yield self.finding(ctx, Pos(opt.line, opt.col, opt.line, opt.col), "option", flag=opt.flag, pinned=pinned,
                               want=want, count=count, visible=visible_range(count))
