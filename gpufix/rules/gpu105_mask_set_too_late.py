"""GPU105 mask-set-too-late: the mask or order set after a GPU import or CUDA call."""

from __future__ import annotations

from gpufix.collectors import Collector
from gpufix.facts import MASK_VAR
from gpufix.maskvalues import hides_all
from gpufix.model import Edit, Fix
from gpufix.rules import Rule, RuleContext, runs_before
from gpufix.rules._spawn import child_earlier, child_of, spawn_facts

# Frameworks that initialise CUDA on the first CUDA call, not on import: a mask set after their
# import but before any CUDA call still takes effect (torch's lazy init; the libraries built on
# torch, and cupy, initialise on first use too).
LAZY_INIT = ("torch", "torchvision", "torchaudio", "lightning", "pytorch_lightning", "transformers",
             "diffusers", "accelerate", "cupy")


def _lazy(trigger) -> bool:
    what = trigger.what
    return what.startswith("import of ") and what[len("import of "):].split(".")[0] in LAZY_INIT


def _earlier(ctx: RuleContext, w) -> list:
    """The GPU triggers that run before write `w` (the same test as RuleContext.late_writes)."""
    triggers = ctx.facts.gpu_imports + ctx.facts.gpu_calls
    if w.method == "magic":
        return [t for t in triggers if t.ctx is None and t.pos.line < w.pos.line]
    return [t for t in triggers if runs_before(t, w)]


def child_cuda_starters(facts, w) -> list:
    """The triggers that may start CUDA before write `w` in the spawn child that runs its function
    (see gpufix.rules._spawn.child_earlier): imports of lazily-initialising frameworks do not."""
    return [t for t in child_earlier(facts, w) if not _lazy(t)]


def _explicit_cpu_run(ctx: RuleContext, w) -> bool:
    """Whether write `w` is a literal mask that hides every GPU (`""`, `"-1"`) kept as an explicit
    CPU run (`cpu-runs = "keep"`, as GPU103 keeps it)."""
    return (w.var == MASK_VAR and w.value_kind == "str" and ctx.policy.cpu_runs == "keep"
            and hides_all(str(w.value)))


def _first(triggers: list):
    return min(triggers, key=lambda t: (t.pos.line, t.pos.col))


class SpawnTargets(Collector):
    """The functions that only `spawn`/`forkserver` child processes run, and the module's
    `__main__` blocks: facts.extra["spawn-targets"], a gpufix.rules._spawn.SpawnFacts (or None)."""

    name = "spawn-targets"
    priority = 90

    def finish(self, facts, tree, text: str) -> None:
        if any(w.ctx is not None and not w.child for w in facts.env_writes):
            facts.extra[self.name] = spawn_facts(tree, facts.imports, text)


class MaskSetTooLate(Rule):
    code = "GPU105"
    judges_process_mask = True
    messages = {"default": ("var", "trigger", "line"), "lazy": ("var", "trigger", "line"),
                "spawn": ("var", "func", "method", "trigger", "line")}

    def check(self, ctx: RuleContext):
        for w, first, movable in ctx.late_writes():
            child = child_of(ctx.facts, w)
            if child is not None:
                # Only a spawn child runs this function: a fresh interpreter that imports this
                # module and calls it. What runs before the write there is the module's top level
                # and the function's own lines above it, never the parent's calls.
                starting = child_cuda_starters(ctx.facts, w)
                if not starting:
                    continue  # nothing has started CUDA in the child yet: the mask takes effect
                certain = _first(starting)
                yield self.finding(ctx, w.pos, "spawn", var=w.var, func=child[0], method=child[1], trigger=certain.what,
                                   line=ctx.line_label(certain.pos.line),
                                   _related=((certain.pos, f"{certain.what}: runs in the child before the mask"),))
                continue
            fix = Fix("safe", f"move the {w.var} assignment above the first GPU import",
                      (Edit("move-to-header", w.stmt.line, w.stmt.col),)) if movable else None
            earlier = _earlier(ctx, w)
            if all(_lazy(t) for t in earlier) and _explicit_cpu_run(ctx, w):
                # A CPU run chosen before CUDA starts (yolov5's `--device cpu`): should CUDA have
                # started after all, the process keeps the mask it had, never a forbidden GPU.
                continue
            if all(_lazy(t) for t in earlier):
                # Only imports of lazily-initialising frameworks come first: CUDA has not started
                # unless something else started it. Fragile, not certainly too late: a warning.
                yield self.finding(ctx, w.pos, "lazy", fix, _severity="warning", var=w.var, trigger=first.what,
                                   line=ctx.line_label(first.pos.line), _related=((first.pos, f"{first.what}: before the mask"),))
            else:
                certain = min((t for t in earlier if not _lazy(t)), key=lambda t: (t.pos.line, t.pos.col), default=first)
                yield self.finding(ctx, w.pos, "default", fix, var=w.var, trigger=certain.what, line=ctx.line_label(certain.pos.line),
                                   _related=((certain.pos, f"{certain.what}: before the mask"),))
