"""Rules: one module per rule code, each holding one `Rule` subclass bound to its code.

A rule's metadata, docs, message templates and VALID/INVALID examples live in the catalogue
(`rules/<CODE>.toml`); its module holds only what it decides. Adding a rule means adding its
catalogue file and one module here: gpufix.registry finds every module of this package (its
`rules()`), and checks with `verify` when it loads them that every catalogue entry has a rule,
every rule an entry, and that the message variants and placeholders each rule declares are exactly
those of its templates. This package never imports the registry: the engine hands the rules to
`run_rules`.
"""

from __future__ import annotations

import dataclasses
import os
import string
from typing import Callable, ClassVar, Iterable, Optional

from gpufix.analysis import MASK_VAR, ORDER_VAR, Facts, Pos
from gpufix.catalog import RuleDoc, load_rule_docs
from gpufix.config import Policy, parse_mask
from gpufix.model import Finding, Fix
from gpufix.rules._mask import UNKNOWN, remap



@dataclasses.dataclass
class RuleContext:
    """What a rule sees of one file: its path, the policy, the facts analysis found, and whether the
    header scope covers it."""

    path: str
    policy: Policy
    facts: Facts
    in_header_scope: bool
    scope_reason: str = ""  # why the file must hold the header (entrypoints scope), or what covers it
    # 12 -> how a message names that line ("12", or "3 of cell 2" in a notebook)
    line_label: Callable = str
    # (code, Pos) -> whether a finding of that code there is silenced (suppression comment,
    # per-file-ignores): it will not be fixed
    suppressed: Callable = lambda code, pos: False
    abs_path: Optional[str] = None  # the file's absolute path, when it has one (launchers name it)
    text: str = ""  # the file's source (the functions of other modules it names: rank_device)

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

    @property
    def child_writes(self) -> list:
        """Mask/order writes in the environment handed to a child process (subprocess `env=`)."""
        return [w for w in self.facts.env_writes if w.child]

    @property
    def header_mask_writes(self) -> list:
        """Mask writes that run unconditionally at import time: the file's header. A write inside a
        function or one branch of an `if` is not (it may never run, or run after CUDA started)."""
        return [w for w in self.mask_writes if w.header]

    @property
    def header_order_writes(self) -> list:
        return [w for w in self.order_writes if w.header]

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

    def late_writes(self) -> list:
        """(write, first earlier trigger, movable) for every env write that runs after a GPU
        framework import or call (GPU105)."""
        triggers = self.facts.gpu_imports + self.facts.gpu_calls
        out = []
        for w in self.facts.env_writes:
            if w.child:
                continue  # a child's env= is read when the child starts: never too late
            if w.method == "magic":
                # A notebook `%env` line after a cell that imported a framework: too late as well
                # (reported without a fix: gpufix does not rewrite magics).
                earlier = [t for t in triggers if t.ctx is None and t.pos.line < w.pos.line]
                if earlier:
                    out.append((w, min(earlier, key=lambda t: (t.pos.line, t.pos.col)), False))
                continue
            earlier = [t for t in triggers if runs_before(t, w)]
            if not earlier:
                continue
            first = min(earlier, key=lambda t: (t.pos.line, t.pos.col))
            # The moved line writes `os.environ` under the header's `import os`: only when no
            # other import binds the name `os`, and no other write of the variable runs before it
            # (moving it above that one would swap which value wins).
            movable = (w.module_body and w.simple_stmt and w.method == "setitem" and w.value_kind in ("str", "int")
                       and self.facts.imports.get("os", "os") == "os"
                       and not any(o is not w and not o.child and o.var == w.var
                                   and (o.pos.line, o.pos.col) < (w.pos.line, w.pos.col) for o in self.facts.env_writes))
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
        # The file's mask is set only in a branch or after a framework import or call: code that runs
        # before it (module-level code above it, a function called early) reads no mask at all,
        # and the policy's header would move it to another GPU.
        unmasked_too = file_mask is not None and not self.header_mask_writes
        for use in self.facts.ordinals:
            if self.suppressed("GPU001" if use.kind in ("cuda-string", "int", "tf-device", "index-string") else "GPU002", use.pos):
                continue  # silenced by its owner (often not a device at all): theirs to judge
            if use.kind in ("cuda-string", "int", "tf-device", "index-string"):
                # A remap the file cannot take keeps a finding that says so (withheld, shadowed,
                # by hand): it stays reported whatever the mask.
                indices, rewritten = [use.value], remaps and not use.shadowed and not use.fix_blocked
            elif use.kind in ("list", "dict-keys"):
                indices, rewritten = [i for i, _ in use.value], False  # GPU002 has no fix
            else:
                continue
            for i in indices:
                if i == 0:
                    continue
                before = remap(i, file_mask, policy)
                if unmasked_too:
                    final = before.new_index if (rewritten and before.known and before.new_index is not None) else i
                    moved = remap(final, policy, policy).physical
                    if moved != i:
                        return (i, i, moved)
                if before.known and before.new_index is not None:
                    if rewritten or i >= len(policy) or policy[i] == before.physical:
                        continue  # rewritten with the mask, or its finding stays and says what to write
                after = remap(i, policy, policy).physical
                if before.physical is None or before.physical != after:
                    return (i, before.physical, after)
        return self._collapse(file_mask, policy, remaps)

    def rank_device(self) -> Optional[tuple]:
        """(file, line, use) of the first CUDA device this file's process picks from its process
        rank (`cuda:{local_rank}`, `set_device(local_rank)`: gpufix.rankflow): in the
        file itself, else, for an entry point, in a project module its process runs (the project
        index's records; the file named from the project root); None when it picks none."""
        found = self.facts.extra.get("rank-device")
        if found is not None:
            return (self.path, self.line_label(found[0]), found[1])
        project = self.policy.project
        if self.in_header_scope and self.abs_path and project is not None and project.graph_built:
            # a module its process runs (imports, directly or not) picks it
            got = project.rank_device_in(os.path.abspath(self.abs_path), self.text)
            if got is not None:
                a, line, use = got
                return (_project_path(a, project.root), line, use)
        return None

    def rank_launch(self, old_mask=None) -> str:
        """"" or the note that makes a fix putting the policy's mask in force in place of
        `old_mask` (None: the file sets none, every GPU is visible) unsafe: the process picks its
        GPU from its rank, and the policy's mask shows fewer GPUs than `old_mask`, so a launch
        with more processes per node than the policy's GPUs (`torchrun --nproc_per_node=8`),
        which worked before, fails on every rank above them ("invalid device ordinal"). A GPU103
        value that shows no more GPUs than the policy's keeps every launch that worked."""
        policy = self.policy_mask
        if policy is None:
            return ""
        found = self.rank_device()
        if found is None:
            return ""
        if isinstance(old_mask, list) and len(old_mask) <= len(policy):
            return ""
        path, line, use = found
        n = len(policy)
        sees = "one GPU" if n == 1 else f"{n} GPUs"
        launch = "one process per node" if n == 1 else f"at most {n} processes per node"
        who = f"`{path}` picks" if path == self.path else f"its process runs `{path}`, which picks"
        return (f"; {who} its GPU from its process rank (line {line}: `{use}`): under "
                f"CUDA_VISIBLE_DEVICES=\"{self.policy.visible_devices}\" each process sees {sees}, so a launch of more "
                f"processes per node fails on every local rank from {n} on (invalid device ordinal); the fix is "
                f"unsafe: launch {launch} (`torchrun --nproc_per_node={n}`), or apply it with --unsafe-fixes")

    def _collapse(self, file_mask, policy: list, remaps: bool):
        """(ordinal, GPU before, GPU after) of a literal ordinal that, once the policy's mask is in
        force, would name the same GPU as another ordinal of the file that names a different GPU
        the policy allows today (a file mask "0,1" under a policy "1,0": `cuda:1` is remapped to
        `cuda:0`, and `cuda:0`, left as the default device, would then name GPU 1 as well: two
        models collapse onto one GPU). None when every ordinal keeps a GPU of its own."""
        from gpufix.collectors.multi_gpu import in_gated_test, in_multi_gpu_code, unsafe_context
        from gpufix.rules._mask import collapsed, remap

        pairs = []
        for use in self.facts.ordinals:
            if use.kind in ("cuda-string", "int", "tf-device", "index-string"):
                if self.suppressed("GPU001", use.pos):
                    continue
                indices = [use.value]
                # as GPU001 decides whether it rewrites the ordinal
                rewritten = (remaps and not use.shadowed and not use.fix_blocked and not in_multi_gpu_code(self, use)
                             and not in_gated_test(self, use) and unsafe_context(self, use) is None)
            elif use.kind in ("list", "dict-keys"):
                if self.suppressed("GPU002", use.pos):
                    continue
                indices, rewritten = [i for i, _ in use.value], False
            else:
                continue
            for i in indices:
                before = remap(i, file_mask, policy)
                if before.physical is None:
                    continue
                final = before.new_index if (rewritten and i != 0 and before.known and before.new_index is not None) else i
                pairs.append((i, before.physical, policy[final] if final < len(policy) else ("invalid", final)))
        return collapsed(pairs, policy)

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
        """Where file-level findings point: the first GPU import of the module's own statements,
        else (an import inside `if __name__ == "__main__":`, a `try:`, a function) the line where
        the header goes, else the top of the file."""
        imports = sorted(self.facts.gpu_imports, key=lambda t: (t.pos.line, t.pos.col))
        if imports and imports[0].pos.col == 0:
            return imports[0].pos
        line = self.facts.first_stmt_line
        if line is not None and (not imports or line <= imports[0].pos.line):
            return Pos(line, 0, line, 0)
        if imports:
            return imports[0].pos
        return Pos(1, 0, 1, 0)


def _project_path(a: str, root: str) -> str:
    try:
        return os.path.relpath(a, root).replace(os.sep, "/")
    except ValueError:  # another drive (Windows)
        return a


def runs_before(t, w) -> bool:
    """Whether GPU trigger `t` runs before env write `w`: a module-level import before every write in
    a function (functions run later) and before the module-level writes below it; one in a function
    before the writes below it in that function. A loader call (`torch = load_backend()`) only
    before the writes below it in its own scope: a write in a function may be the loader's own."""
    if t.via_call:
        return t.ctx == w.ctx and t.order < w.order
    return (t.ctx is None and (w.ctx is not None or t.order < w.order)) or (
        t.ctx is not None and t.ctx == w.ctx and t.order < w.order)


class Rule:
    """One rule. Subclasses set `code` and `messages` (each message variant of the catalogue entry
    with the placeholders its template uses) and implement `check`."""

    code: ClassVar[str] = ""
    messages: ClassVar[dict] = {}
    # Its fixes are computed against the file's mask before `apply` rewrites it (ordinal remaps):
    # apply takes them in its first pass only (a later pass would read them through the new mask).
    fixes_first_pass_only: ClassVar[bool] = False
    # Its findings are about the mask or order the file's process sets (the header): a module's
    # remaps are safe only once its entry points have none left (gpufix.project.index.fix_holds).
    judges_process_mask: ClassVar[bool] = False

    def keeps_own_mask(self, finding: Finding) -> bool:
        """Whether `finding`, left unfixed, means the file's process sets a mask of its own other
        than the policy's (another value, one computed at run time): a header that a module it
        imports gets would replace it at that import (gpufix.project.index.fix_holds)."""
        return False

    @property
    def doc(self) -> RuleDoc:
        return load_rule_docs()[self.code]

    def check(self, ctx: RuleContext) -> Iterable[Finding]:
        raise NotImplementedError

    def check_text(self, tctx) -> Iterable[Finding]:
        """The rule on a non-Python file (shell, Dockerfile, .env, YAML/JSON/TOML): `tctx` is a
        gpufix.rules._text.TextContext holding the facts its reader extracted. Rules that do not
        judge such files keep this default."""
        return ()

    def finding(self, ctx: RuleContext, pos: Pos, variant: str, fix: Optional[Fix] = None, *, _note: str = "",
                _severity: Optional[str] = None, _related: tuple = (), **values) -> Finding:
        """A finding of this rule at `pos`, its message rendered from the catalogue's template (plus
        `_note`, a clause that says why a fix is missing or unsafe); `_severity` overrides the rule's;
        `_related`: (Pos, message) pairs of the other places the finding refers to."""
        return Finding(
            rule=self.code,
            path=ctx.path,
            line=pos.line,
            column=pos.col + 1,
            end_line=pos.end_line,
            end_column=pos.end_col + 1,
            message=self.doc.messages[variant].format(**values) + _note,
            severity=_severity or self.doc.severity,
            fix=fix,
            related=tuple((p.line, p.col + 1, p.end_line, p.end_col + 1, msg, None) for p, msg in _related),
        )


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A project rule's per-file observation: a finding it may report once every file is known,
    and the value it judges by (JSON-serialisable, it goes through the result cache)."""

    finding: Finding
    value: object


class ProjectRule(Rule):
    """A rule judged across files: `collect` runs per file (its candidates are suppressed, mapped to
    notebook cells and cached like findings), `finish` decides on all files' candidates at once
    (findings only among the candidates' files: without candidates it is not called)."""

    # Bytes one of which a file must hold to yield a candidate: a run over part of a project reads
    # the project's other files only when they hold one (empty: every file is read).
    candidate_bytes: ClassVar[tuple] = ()

    def collect(self, ctx: RuleContext) -> Iterable[Candidate]:
        return ()

    def collect_text(self, tctx) -> Iterable[Candidate]:
        """`collect` on a non-Python file (see Rule.check_text)."""
        return ()

    def finish(self, policy: Policy, candidates: list) -> Iterable[Finding]:
        return ()


def _placeholders(template: str) -> frozenset:
    return frozenset(field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(template) if field)


def verify(rules: dict, docs: dict) -> None:
    """Raise RuntimeError when the rules and the catalogue disagree (a missing rule or entry, a
    message variant or placeholder one side has and the other lacks)."""
    problems = []
    for code in sorted(set(docs) - set(rules)):
        problems.append(f"{code}: catalogue entry rules/{code}.toml has no rule module")
    for code in sorted(set(rules) - set(docs)):
        problems.append(f"{code}: rule {type(rules[code]).__name__} has no catalogue entry rules/{code}.toml")
    for code in sorted(set(rules) & set(docs)):
        declared = {k: frozenset(v) for k, v in rules[code].messages.items()}
        templates = {k: _placeholders(v) for k, v in docs[code].messages.items()}
        for variant in sorted(set(declared) | set(templates)):
            if variant not in templates:
                problems.append(f"{code}: the rule uses message '{variant}', which rules/{code}.toml lacks")
            elif variant not in declared:
                problems.append(f"{code}: rules/{code}.toml has message '{variant}', which the rule never uses")
            elif declared[variant] != templates[variant]:
                problems.append(
                    f"{code}: message '{variant}' has placeholders {sorted(templates[variant])} in rules/{code}.toml, "
                    f"but the rule fills {sorted(declared[variant])}"
                )
    if problems:
        raise RuntimeError("the rules do not match the catalogue:\n  " + "\n  ".join(problems))


def run_rules(rules: dict, ctx: RuleContext, enabled: Callable[[str], bool]) -> list:
    """The findings of the `enabled` rules of `rules` (code -> Rule: gpufix.registry.rules())."""
    findings = []
    for code, r in rules.items():
        if enabled(code):
            findings.extend(r.check(ctx))
    return findings
