"""The scan pipeline, as plain functions: discover, read, prefilter, parse, run rules, suppress, report.

Read top-down: `scan` (many files: discover, group by policy, lint each file in the shared worker
pool through the result cache, then `gather` adds the project rules' cross-file findings), then
`lint_path` / `lint_bytes` / `lint_source` (one file: read, prefilter, parse, collect facts, run
the rules, suppress), then the helpers of each.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import warnings
from typing import Callable, Optional

from gpufix import registry
from gpufix.analysis import source_facts
from gpufix.catalog import ApiCatalog, catalog_for
from gpufix.config import Policy, SinglePolicy, make_rule_filter
from gpufix.discover import discover_files, path_within
from gpufix.formats import CONFIG_KINDS, TEXT_KINDS, detect_kind, may_have_findings
from gpufix.formats import MAX_BYTES as MAX_TEXT_BYTES
from gpufix.launchers import LAUNCHER_KINDS, launch_args
from gpufix.model import Edit, FileError, Finding, Fix
from gpufix.cache import content_hash
from gpufix.rules import Candidate, RuleContext, run_rules
from gpufix.prefilter import HEADER, SKIP, imports_framework, is_entrypoint_name, may_call_device_api
from gpufix.project import refine_gpu_imports
from gpufix.source import MAX_FILE_BYTES, ReadError, SourceFile, read_source, split_lines
from gpufix.suppress import Suppressions, per_file_ignored
from gpufix.workers import LINT_STATE


# -- the pipeline's entry points: many files ---------------------------------------------------
@dataclasses.dataclass
class Options:
    """How a scan runs: prefilter, cache and worker count (not what it judges: that is the policy)."""

    use_prefilter: bool = True
    use_cache: bool = True
    jobs: Optional[int] = None  # None: all cores when there is enough work


@dataclasses.dataclass
class ScanResult:
    """What a scan found: the per-file results, the findings, errors and warnings, under its policy."""

    policy: Policy
    results: list  # FileResult, sorted by path
    findings: list
    errors: list
    warnings: list
    sources: dict = dataclasses.field(default_factory=dict)  # display path -> bytes of texts not on disk (stdin)

    @property
    def files_scanned(self) -> int:
        return len(self.results)


def scan(paths, policy: Policy, options: Optional[Options] = None, progress_factory=None, resolver=None,
         force_exclude: bool = False) -> ScanResult:
    """Lint `paths`. With a `resolver` (gpufix.config.PolicyResolver) each file gets the policy of
    its nearest config; without one, `policy` is used for every file."""
    # Syntax trees are acyclic and freed by reference counting; the cyclic collector only rescans
    # the millions of nodes a big scan allocates (measured: ast.parse 5x slower with it on).
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _scan(paths, policy, options, progress_factory, resolver, force_exclude)
    finally:
        if was_enabled:
            gc.enable()


def gather(policy: Policy, results, extra_errors=(), warnings=()) -> ScanResult:
    """Per-file results -> one ScanResult: sorted, plus the project rules' cross-file findings
    (GPU103 without a policy). Shared by scan and apply."""
    return gather_pairs(policy, [(policy, r) for r in results], extra_errors, warnings)


def gather_pairs(policy: Policy, pairs, extra_errors=(), warnings=(), resolver=None, paths=None,
                 unsafe: bool = False, sessions=None) -> ScanResult:
    """[(Policy, FileResult)] -> one ScanResult. Project rules (GPU103 without a policy) judge each
    project (the files sharing a policy) over all of that project's files, not only the ones this
    run named, so that pre-commit's subsets and a full scan agree. Fixes that are safe only
    together with another file's (gpufix.project.fix_holds) lose their fix when that file's is
    not made in this run. `sessions`: id(policy) -> gpufix.session.Session of the run's groups,
    whose result cache the project's other files are linted through."""
    pairs = hold_dependent_fixes(pairs, unsafe, sessions)
    ordered = sorted((r for _, r in pairs), key=lambda r: r.path)
    findings = [f for r in ordered for f in r.findings]
    for pol, members in _by_policy(pairs):
        if not any(r.candidates for r in members):
            continue  # nothing to judge across files (a warm run then loads no rule module)
        enabled = make_rule_filter(pol.select, pol.ignore)
        wanted = {code: rule for code, rule in registry.project_rules().items() if enabled(code)}
        if not wanted:
            continue
        universe = members
        if resolver is not None and paths is not None:
            session = (sessions or {}).get(id(pol))
            universe = members + _project_candidates(pol, members, resolver, paths, session)
        named = {r.path for r in members}
        for code, project_rule in wanted.items():
            candidates = [
                Candidate(_finding_from_cache(c["finding"], r.path), c["value"])
                for r in universe for c in r.candidates if c["finding"]["rule"] == code
            ]
            findings.extend(f for f in project_rule.finish(pol, candidates) if f.path in named)
    findings.sort(key=Finding.sort_key)
    errors = [e for r in ordered for e in r.errors] + list(extra_errors)
    return ScanResult(policy, ordered, findings, errors, list(warnings))


def _by_policy(pairs) -> list:
    """[(Policy, [FileResult])] of [(Policy, FileResult)], equal policies together. Grouped by
    identity first: a prepared policy holds its project index, and hashing it once per file
    costs more than a warm run's stats."""
    groups: list = []
    by_id: dict = {}
    for pol, r in pairs:
        group = by_id.get(id(pol))
        if group is None:
            group = next((g for g in groups if g[0] == pol), None)  # one comparison per distinct object
            if group is None:
                group = (pol, [])
                groups.append(group)
            by_id[id(pol)] = group
        group[1].append(r)
    return groups


def dependent_holds(pairs, unsafe: bool = False, sessions=None) -> dict:
    """abs path -> (held rules, note) over the run's [(Policy, FileResult)] (gpufix.project.fix_holds).
    A project file outside the run that a hold decision needs is linted through the run's result
    cache (`sessions`, as gather_pairs takes it) when there is one, and the decisions themselves
    are kept there with the stamps of every file they read: a warm run whose files are all
    unchanged reads none of them again."""
    from gpufix.discover import display_path
    from gpufix.project import fix_holds

    holds: dict = {}
    for pol, members in _by_policy(pairs):
        if pol.project is None or not pol.project.graph_built:
            continue
        # In path order: the notes of the decisions depend on the order they are made in, and the
        # run's results come in another order with a cache (hits first) than without.
        results = dict(sorted(((os.path.abspath(r.path), r) for r in members), key=lambda item: item[0]))
        session = (sessions or {}).get(id(pol))
        if session is not None and session.use_prefilter:
            holds.update(_session_holds(session, results, unsafe, fix_holds))
            continue
        catalog = catalog_for(pol)

        def lint_other(a, pol=pol, catalog=catalog):
            return lint_path(a, display_path(a), pol, True, catalog)

        holds.update(fix_holds(pol.project, results, lint_other, unsafe, _read_text))
    return holds


def _session_holds(session, results: dict, unsafe: bool, fix_holds) -> dict:
    """fix_holds over the session's project, through its cache: the decisions are a function of the
    project index and the policy (both in the cache's name), of the run's files and of the files
    fix_holds reads (results of files outside the run, texts of a helper's callers), each of
    which is recorded with its stat stamp and checked by a stat next time."""
    import hashlib

    from gpufix.discover import display_path

    # Kept only when every run file's result is the cache's (made from a known content hash).
    cache = session.cache if all(a in session.cached for a in results) else None
    digest = None
    family = f"fix-holds:{'unsafe' if unsafe else 'safe'}:"
    if cache is not None:
        run = hashlib.blake2b(digest_size=16)
        for a in sorted(results):
            run.update(f"{a}\0{cache.hash_of(a)}\0".encode("utf-8", "surrogateescape"))
        digest = run.hexdigest()
    saved = cache.get_kept(family, digest) if cache is not None else None
    if saved is not None and _stamps_hold(saved.get("inputs")):
        return {a: [(frozenset(rules), note, match) for rules, note, match in got] for a, got in saved["holds"].items()}
    inputs: dict = {}  # abs path -> [size, mtime_ns] of what fix_holds read; None: not cacheable

    def lint_other(a):
        inputs.setdefault(a, _stat_stamp(a))
        return _session_result(session, a, display_path(a))

    def read_text(a):
        inputs.setdefault(a, _stat_stamp(a))
        return _read_text(a)

    holds = fix_holds(session.policy.project, results, lint_other, unsafe, read_text)
    if cache is not None and all(v is not None for v in inputs.values()) and all(_stat_stamp(a) == v for a, v in inputs.items()):
        cache.put_kept(family, digest, {
            "inputs": [[a, *v] for a, v in sorted(inputs.items())],
            "holds": {a: [[sorted(rules), note, match] for rules, note, match in got] for a, got in holds.items()},
        }, keep=8)  # the full scan's decisions and a few subsets'
    return holds


def _stat_stamp(a) -> Optional[list]:
    """[size, mtime_ns] of a file, None when it cannot be stat'ed (or `a` is no path)."""
    try:
        st = os.stat(a)
    except (OSError, TypeError, ValueError):
        return None
    return [st.st_size, st.st_mtime_ns]


def _stamps_hold(inputs) -> bool:
    """Whether every [path, size, mtime_ns] of `inputs` still has that stat stamp."""
    if not isinstance(inputs, list):
        return False
    return all(isinstance(item, list) and len(item) == 3 and _stat_stamp(item[0]) == item[1:] for item in inputs)


def _read_text(abs_path: str) -> Optional[str]:
    got, _ = _read_file(abs_path)
    if got is None:
        return None
    try:
        return read_source(abs_path, got[1]).text
    except ReadError:
        return None


def hold_dependent_fixes(pairs, unsafe: bool = False, sessions=None) -> list:
    holds = dependent_holds(pairs, unsafe, sessions)
    if not holds:
        return list(pairs)
    from gpufix.project import apply_holds

    out = []
    for pol, r in pairs:
        hold = holds.get(os.path.abspath(r.path))
        if hold is not None:
            r = dataclasses.replace(r, findings=apply_holds(r.findings, hold))
        out.append((pol, r))
    return out


# -- one file --------------------------------------------------------------------------------------
def lint_path(abs_path: str, display: str, policy: Policy, use_prefilter: bool = True, catalog: Optional[ApiCatalog] = None) -> FileResult:
    catalog = catalog or catalog_for(policy)
    got, problem = _read_file(abs_path)
    if got is None:
        return FileResult(display, errors=[_read_problem(display, problem)])
    return lint_bytes(got[1], abs_path, display, policy, use_prefilter, catalog)


def lint_bytes(raw: bytes, abs_path: str, display: str, policy: Policy, use_prefilter: bool, catalog: ApiCatalog) -> FileResult:
    """One file's result. With the prefilter off every file is parsed and walked whole; its result
    differs from the prefilter's in nothing a user sees: a file the prefilter proves free of
    findings is not gpufix's to judge, so its syntax errors are reported by neither path (a
    differential test compares both on every fixture, the oracle's programs and a corpus)."""
    kind = detect_kind(display, raw)
    # Non-Python files: the cheap byte test before any decoding or parsing. Data files (YAML/JSON/
    # TOML) are tested even over the size limit, so a big dataset file without a device setting is
    # skipped, not an error.
    if kind in CONFIG_KINDS and not may_have_findings(raw, kind):
        if use_prefilter or len(raw) > MAX_TEXT_BYTES:
            return FileResult(display)
        return _without_errors(_lint_decoded(raw, abs_path, display, policy, catalog, kind))
    try:
        src = read_source(display, raw)
    except ReadError as exc:
        return FileResult(display, errors=[exc.error])
    if kind in TEXT_KINDS:
        if not may_have_findings(raw, kind):
            return FileResult(display) if use_prefilter else _without_errors(lint_source(src, policy, catalog, abs_path=abs_path))
        return lint_source(src, policy, catalog, abs_path=abs_path)
    tier = python_tier(src, abs_path, display, policy, catalog)
    if not use_prefilter:
        result = lint_source(src, policy, catalog, abs_path=abs_path, focused=False)
        return _without_errors(result) if tier == SKIP else result
    if tier == SKIP:
        return FileResult(display)
    # The focused walk of a big file looks for words: a value spelled with escapes or implicit
    # concatenation (`"cu" "da:1"`) holds none of them, so such a file is walked whole.
    focused = tier == HEADER or not registry.prefilter(catalog).irregular_spelling(src.text)
    return lint_source(src, policy, catalog, abs_path=abs_path, header_only=tier == HEADER, focused=focused)


def python_tier(src: SourceFile, abs_path: str, display: str, policy: Policy, catalog: ApiCatalog) -> int:
    """The prefilter's tier of a Python file (gpufix.prefilter), with what the project index knows."""
    # a notebook's comments may be masked magics (`%env`): its hits count even in comments
    prefilter = registry.prefilter(catalog)
    tier = prefilter.classify(src.text, display, policy.effective_header_scope, confirm=not src.is_notebook)
    project = policy.project
    if tier == HEADER and project is not None and project.graph_built and os.path.abspath(abs_path) not in project.entry_map:
        tier = SKIP  # the header findings are only for the entry points the project index names
    if tier == SKIP and prefilter.parse_anyway(src.text, policy.has_policy):
        tier = HEADER  # a collector's whole-tree facts (an app's GPU option) need no framework import
    if tier == SKIP and project is not None and project.graph_built and (
        os.path.abspath(abs_path) in project.entry_map
        or (os.path.abspath(abs_path) in project.unparsed and imports_framework(src.text, catalog))
    ):
        # an entry point that reaches the GPU only through the project's modules, or a GPU file
        # the index could not read (parsing it here reports why, as under gpu-modules)
        tier = HEADER
    if tier == SKIP and project is None and policy.has_policy and policy.effective_header_scope == "entrypoints" \
            and (imports_framework(src.text, catalog) or may_call_device_api(src.text, catalog)):
        tier = HEADER  # without a project index a GPU file is its own entry point (header_scope_member)
    return tier


def _lint_decoded(raw: bytes, abs_path: str, display: str, policy: Policy, catalog: ApiCatalog, kind: str) -> FileResult:
    try:
        src = read_source(display, raw)
    except ReadError as exc:
        return FileResult(display, errors=[exc.error])
    return lint_source(src, policy, catalog, abs_path=abs_path)


def _without_errors(result: FileResult) -> FileResult:
    # findings are kept: were the prefilter ever wrong, the differential tests would see them
    result.errors = []
    return result


def lint_source(
    src: SourceFile,
    policy: Policy,
    catalog: Optional[ApiCatalog] = None,
    enabled: Optional[Callable[[str], bool]] = None,
    abs_path: Optional[str] = None,
    header_only: bool = False,
    focused: bool = True,
) -> FileResult:
    """Parse, run the rules, apply suppressions. Findings keep edit positions in `src.text`.

    `header_only`: the prefilter's HEADER tier (only imports and the `__main__` guard are looked at);
    `focused`: big files are analysed by the statements that mention a device token."""
    enabled = enabled or make_rule_filter(policy.select, policy.ignore)
    if src.kind in TEXT_KINDS:
        return _lint_text_source(src, policy, enabled, abs_path)
    catalog = catalog or catalog_for(policy)
    result = FileResult(path=src.path, parsed=True)
    # Tokenizing for comments is slow: done only when its answer can matter (see Suppressions).
    sup = Suppressions(per_file_ignored(policy, abs_path), python_text=src.text)
    if sup.whole_file:
        return result
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(src.text, filename=src.path)
        lines = split_lines(src.text)
        collectors = registry.collectors()
        facts = source_facts(src, tree, lines, catalog, collectors, header_only=header_only, focused=focused)
        facts = refine_gpu_imports(facts, tree, src.text)
        collectors.finish(facts, tree, src.text, policy)  # the collectors' whole-tree facts
    except SyntaxError as exc:
        result.errors.append(_syntax_error(src, exc))
        return result
    except (RecursionError, MemoryError):
        result.errors.append(FileError(src.path, "syntax-error", "cannot parse: expressions nested too deeply for the parser"))
        return result
    except ValueError as exc:  # e.g. NUL bytes that survived decoding
        result.errors.append(FileError(src.path, "syntax-error", f"cannot parse: {exc}"))
        return result
    in_scope, scope_reason = header_scope_member(policy.effective_header_scope, facts, src, policy, abs_path)
    ctx = RuleContext(src.path, policy, facts, in_scope, scope_reason)
    ctx.abs_path = abs_path
    ctx.text = src.text
    if src.is_notebook:
        ctx.line_label = lambda line: "{1} of cell {0}".format(*src.cell_of(line))
    # A finding the user silenced is never fixed: a rule that changes the mask must know that the
    # ordinal it would otherwise have rewritten stays as written.
    ctx.suppressed = lambda code, pos: sup.silenced(code, (pos.line, pos.end_line), lines)

    def reported(finding: Finding) -> bool:
        return not sup.silenced(finding.rule, (finding.line, finding.end_line), lines)

    remap_codes, mask_codes = registry.fixed_together()
    together = remap_codes | mask_codes
    for finding in run_rules(registry.rules(), ctx, lambda code: enabled(code) or code in together):
        if reported(finding):  # a silenced one is its owner's: theirs to judge (RuleContext.mask_change_breaks)
            (result.findings if enabled(finding.rule) else result.unselected).append(_to_cell(src, finding))
    result.findings, result.unselected = withhold_split_fixes(result.findings, result.unselected)
    for code, project_rule in registry.project_rules().items():
        if not enabled(code):
            continue
        for cand in project_rule.collect(ctx):
            if reported(cand.finding):
                result.candidates.append({"finding": _finding_to_cache(_to_cell(src, cand.finding)), "value": cand.value})
    return result


@dataclasses.dataclass
class FileResult:
    """One file's result: its findings and errors, and the candidates its project rules judge across files."""

    path: str
    findings: list = dataclasses.field(default_factory=list)
    errors: list = dataclasses.field(default_factory=list)
    # project rules' per-file candidates ({"finding": ..., "value": ...}), judged across files in gather()
    candidates: list = dataclasses.field(default_factory=list)
    parsed: bool = False
    # The findings of the remap and mask rules the run does not select (`--select GPU001`): never
    # reported nor fixed, but the file's mask and ordinals are what they are whichever rules a run
    # selects, and the fixes that go with theirs are held for them (withhold_split_fixes, fix_holds).
    unselected: list = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "findings": [_finding_to_cache(f) for f in self.findings],
            "errors": [dataclasses.asdict(e) for e in self.errors],
            "candidates": self.candidates,
            "parsed": self.parsed,
            "unselected": [_finding_to_cache(f) for f in self.unselected],
        }

    @classmethod
    def from_json(cls, data: dict, path: str) -> "FileResult":
        return cls(
            path=path,
            findings=[_finding_from_cache(f, path) for f in data["findings"]],
            errors=[FileError(**{**e, "path": path}) for e in data["errors"]],
            candidates=data["candidates"],
            parsed=data["parsed"],
            unselected=[_finding_from_cache(f, path) for f in data.get("unselected", ())],
        )


def withhold_split_fixes(findings: list, unselected: list) -> tuple:
    """(findings, unselected): `findings` with the fixes of the remap and mask rules withheld while
    a fix of theirs that goes with them is in `unselected` (a rule the run does not select), and
    `unselected` less the findings whose fix the selected ones make anyway (GPU101's header sets
    the order GPU102's would). A remap is right only under the mask a header or value fix puts in
    force, and that fix keeps an ordinal's meaning only once it is remapped (`apply --select
    GPU001` on a file without the header would move `cuda:1` to physical GPU 0): made together
    or not at all, as fix_holds does across files."""
    if not any(f.fix is not None for f in unselected):
        return findings, unselected
    remap_codes, mask_codes = registry.fixed_together()
    together = remap_codes | mask_codes
    made = [e for f in findings if f.fix is not None and f.rule in together for e in f.fix.edits]
    unselected = [f for f in unselected if f.fix is None or not all(_made_with(e, made) for e in f.fix.edits)]
    missing = [f for f in unselected if f.fix is not None]
    if not missing:
        return findings, unselected
    codes = sorted({f.rule for f in missing})
    told = [f"{f.rule} on line {f.line}" for f in sorted(missing, key=lambda f: (f.line, f.rule))]
    told = told[:3] + ([f"{len(told) - 3} more"] if len(told) > 3 else [])
    note = (f" (not fixed in this run: safe only together with the {'fix' if len(missing) == 1 else 'fixes'} of "
            f"{_and(told)}, which this run does not select; select {_and(codes)} too)")
    return [dataclasses.replace(f, fix=None, message=f.message + note) if f.fix is not None and f.rule in together else f
            for f in findings], unselected


def _made_with(edit: Edit, made: list) -> bool:
    """Whether the selected fixes' edits `made` make `edit` too: the same edit, or a header that
    holds its lines (GPU101's header sets the order that GPU102's would)."""
    if edit.kind == "ensure-header":
        return any(e.kind == "ensure-header" and set(edit.lines) <= set(e.lines) for e in made)
    return edit in made


def _and(items: list) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# -- helpers of the one-file pipeline (rules: config.make_rule_filter; suppression: gpufix.suppress) --
def header_scope_member(scope: str, facts, src: SourceFile, policy: Optional[Policy] = None, abs_path: Optional[str] = None) -> tuple:
    """(whether the file must hold the header, why / what covers it)."""
    if scope == "all":
        return True, "a file in header scope (header-scope = \"all\")"
    project = policy.project if policy is not None else None
    if scope == "entrypoints" and project is not None and project.graph_built and abs_path:
        key = os.path.abspath(abs_path)
        reason = project.entry_map.get(key)
        if reason is not None:
            return True, reason
        return False, project.covered_map.get(key, "")
    if not facts.is_gpu_module:
        return False, ""
    if scope == "gpu-modules":
        return True, ""
    # A file linted without a project index (a single file given to lint_source): with a policy
    # it counts as its own entry point; without one, only what looks like one by its name or text.
    if policy is not None and policy.has_policy:
        return True, ""
    return src.is_notebook or is_entrypoint_name(src.path) or src.text.startswith("#!") or facts.has_main_guard, ""


def prepare_policy(paths, policy: Policy, files, use_cache: bool = True, overrides=None, notice=None,
                   jobs: Optional[int] = None, walked=None) -> Policy:
    """The policy with the project's index (first-party names; the import graph for the
    `entrypoints` scope) that the per-file rules need; its per-file entries go through the cache.
    `jobs`: the run's `-j` (1: no worker process). `walked`: (folder, discover_files' triples) of
    the run's own walk when it was of one folder under this one policy: when that folder is the
    project's root, the project's files are those, not walked again."""
    from gpufix.project import build_index, project_files, run_project_root

    graph = policy.effective_header_scope == "entrypoints"
    catalog = catalog_for(policy)
    # The whole project's files, whichever of them this run names: a file's findings come from
    # its place in the project, never from the command line.
    root = run_project_root(policy, files)
    # The project's one walk (its Python files and notebooks, and its launchers): the run's own
    # walk when it was of the root with the launchers' kinds, else one walk of the root under the
    # policy with those kinds added. Either way the launchers are the project's, whichever paths
    # the run names (a file's findings come from its project, not from the command line).
    from gpufix.kinds import kind_of

    if (walked is not None and walked[0] == os.path.realpath(root)
            and all(k in policy.file_kinds for k in LAUNCHER_KINDS)):
        walk = walked[1]
    else:
        widened = dataclasses.replace(policy, file_kinds=tuple(policy.file_kinds) + tuple(
            k for k in LAUNCHER_KINDS if k not in policy.file_kinds))
        walk = discover_files([str(root)], SinglePolicy(widened))
    launcher_files = [(p, d) for p, d, _ in walk if kind_of(str(p)) in LAUNCHER_KINDS]
    files = project_files(root, policy, files, walked=walk)
    cache_factory = None
    if use_cache:
        from gpufix.cache import ResultCache

        def cache_factory(extra):
            return ResultCache.open(policy, Options(), kind="index", extra=extra, notice=notice)
    index = build_index(paths, files, catalog, policy.known_first_party, policy.known_gpu_frameworks, graph=graph,
                        cache_factory=cache_factory, overrides=overrides, root=root, jobs=jobs)
    from gpufix.project import helper_apis

    helpers = helper_apis(index, policy.extra_apis)  # first-party device helpers are device APIs
    launches = launch_args(index.root, policy.exclude, files=launcher_files)
    return dataclasses.replace(policy, project=index, extra_apis=tuple(policy.extra_apis) + helpers, launch_args=launches)


def _syntax_error(src: SourceFile, exc: SyntaxError) -> FileError:
    msg = exc.msg if hasattr(exc, "msg") else str(exc)
    if "Missing parentheses in call to 'print'" in msg or "Missing parentheses in call to 'exec'" in msg or (
        exc.text and exc.text.lstrip().startswith(("print ", "exec "))
    ):
        msg += " (this looks like Python 2 code, which gpufix does not read)"
    line = exc.lineno
    cell = None
    if src.is_notebook and line:
        cell, line = src.cell_of(line)
        msg = f"cell {cell}: {msg}"
    return FileError(src.path, "syntax-error", f"cannot parse: {msg}", line, cell)


def _lint_text_source(src: SourceFile, policy: Policy, enabled, abs_path: Optional[str]) -> FileResult:
    """Shell scripts, Dockerfiles, .env files and YAML/JSON/TOML configs: read into facts by their
    reader (gpufix.formats), judged here by the rules that check such facts (`Rule.check_text`,
    `ProjectRule.collect_text`), suppressed here like Python's findings."""
    from gpufix.formats import scan_facts
    from gpufix.formats.text import comment_suppressions, hash_comment_suppressions
    from gpufix.formats.tree import ParseError
    from gpufix.rules._text import TextContext

    path, text, kind = src.path, src.text, src.kind
    if kind == "json":
        by_line, file_codes = {}, None
    elif kind == "batch":  # `REM` and `::` comments, not `#`
        from gpufix.formats.batch import comments

        by_line, file_codes = comment_suppressions(text, comments(text))
    else:
        by_line, file_codes = hash_comment_suppressions(text)
    sup = Suppressions(per_file_ignored(policy, abs_path), by_line, file_codes)
    if sup.whole_file:
        return FileResult(path, parsed=True)
    try:
        facts = scan_facts(text, kind)
    except ParseError as exc:
        if kind == "yaml" and ("{{" in text or "{%" in text):
            return FileResult(path, parsed=True)  # a Helm/Jinja template, not YAML until rendered: not followed
        return FileResult(path, errors=[FileError(path, "syntax-error", f"cannot parse: {exc}", exc.line)], parsed=True)
    except (RecursionError, MemoryError):
        return FileResult(path, errors=[FileError(path, "syntax-error", "cannot parse: nested too deeply")], parsed=True)
    tctx = TextContext(path, text, policy, facts)

    def reported(code: str, lines) -> bool:
        return not sup.silenced(code, lines)

    result = FileResult(path, parsed=True)
    remap_codes, mask_codes = registry.fixed_together()
    together = remap_codes | mask_codes
    for code, rule in registry.rules().items():
        if enabled(code) or code in together:
            (result.findings if enabled(code) else result.unselected).extend(
                f for f in rule.check_text(tctx) if reported(f.rule, (f.line, f.end_line)))
    result.findings, result.unselected = withhold_split_fixes(result.findings, result.unselected)
    for code, rule in registry.project_rules().items():
        if enabled(code) and not sup.rule_off(code):
            result.candidates.extend({"finding": c.finding.to_json(), "value": c.value} for c in rule.collect_text(tctx)
                                     if reported(code, (c.finding.line,)))
    return result


def _to_cell(src: SourceFile, f: Finding) -> Finding:
    if not src.is_notebook:
        return f
    cell, line = src.cell_of(f.line)
    related = []
    for r in f.related:
        r_cell, r_line = src.cell_of(r[0])
        related.append((r_line, r[1], r_line + (r[2] - r[0]), r[3], r[4], r_cell))
    return dataclasses.replace(f, line=line, end_line=line + (f.end_line - f.line), cell=cell, related=tuple(related))


def _read_file(abs_path: str):
    """(stat, bytes) of a regular file; else (None, (error kind, message)) for anything else (a FIFO
    named *.py would block a plain open() forever) or a file over the size limit. The size comes
    from `stat`, before reading: a sparse 8 GB file is never read whole. A data file (YAML/JSON/
    TOML) over the limit is tested in chunks: one without a device word reads as empty."""
    import stat as stat_mod

    from gpufix.formats import CONFIG_KINDS, kind_of, may_have_findings

    try:
        st = os.stat(abs_path)
        if stat_mod.S_ISDIR(st.st_mode):
            return None, ("read-error", "is a directory")
        if not stat_mod.S_ISREG(st.st_mode):
            return None, ("read-error", "not a regular file (a pipe, socket or device); skipped")
        with open(abs_path, "rb") as fh:
            if st.st_size <= MAX_FILE_BYTES:
                return (st, fh.read(MAX_FILE_BYTES + 1)), None
            kind = kind_of(abs_path)
            if kind in CONFIG_KINDS and not _chunks_may_have_findings(fh, kind, may_have_findings):
                return (st, b""), None
        return None, ("too-large", f"file is {st.st_size / 2**20:.1f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB limit; skipped")
    except IsADirectoryError:
        return None, ("read-error", "is a directory")
    except OSError as exc:
        return None, ("read-error", f"cannot read: {exc.strerror or exc}")


def _chunks_may_have_findings(fh, kind: str, test, chunk: int = 1 << 20, overlap: int = 256) -> bool:
    """`test` over a file read a chunk at a time (bounded memory), each chunk with the end of the
    one before it, so a device word across two chunks is seen."""
    tail = b""
    while True:
        block = fh.read(chunk)
        if not block:
            return False
        if test(tail + block, kind):
            return True
        tail = block[-overlap:]


def _read_problem(display: str, problem) -> FileError:
    kind, message = problem
    return FileError(display, kind, message)


def _finding_to_cache(f: Finding) -> dict:
    d = f.to_json()
    if f.fix:
        d["fix"] = {**f.fix.to_json(), "edits": [e.to_json() for e in f.fix.edits]}
    return d


def _finding_from_cache(d: dict, path: str) -> Finding:
    fix = None
    if d.get("fix"):
        fx = d["fix"]
        fix = Fix(fx["applicability"], fx["title"], tuple(Edit.from_json(e) for e in fx.get("edits", ())))
    return Finding(
        rule=d["rule"], path=path, line=d["line"], column=d["column"], end_line=d["end_line"],
        end_column=d["end_column"], message=d["message"], severity=d["severity"], fix=fix, cell=d.get("cell"),
        related=tuple((r["line"], r["column"], r["end_line"], r["end_column"], r["message"], r.get("cell"))
                      for r in d.get("related", ())),
    )


# -- helpers of the many-files pipeline: groups, workers, cross-file rules -----------------------
def _scan(paths, policy: Policy, options: Optional[Options] = None, progress_factory=None, resolver=None,
          force_exclude: bool = False) -> ScanResult:
    options = options or Options()
    if options.use_cache:  # compiled regexes from the user's store (gpufix.rxcache), as the caches
        from gpufix import rxcache

        rxcache.enable_for_user()
    warns: list = []
    resolver = resolver or SinglePolicy(policy)
    recording = _RecordingResolver(resolver)
    files = discover_files(paths or ["."], recording, warn=warns.append, force_exclude=force_exclude)
    groups: dict = {}
    for abs_path, display, pol in files:
        groups.setdefault(pol, []).append((abs_path, display))
    pairs = []

    def notice(message: str) -> None:
        from gpufix import snapshot

        snapshot.not_replayable("a cache notice")  # about this run's cache: said once, not replayed
        if message not in warns:
            warns.append(message)

    # A walk of one folder in which every folder had the same policy is the walk the project
    # index would make of that folder (discover_files under that one policy): reused, not redone.
    walked = None
    named = paths or ["."]
    if len(named) == 1 and named[0] != "-" and os.path.isdir(named[0]) and len(recording.dir_policies) == 1:
        walked = (recording.dir_policies[0], (os.path.realpath(named[0]), files))
    sessions: dict = {}
    for pol, members in groups.items():
        session = _open_session(pol, members, options, notice,
                                walked[1] if walked is not None and walked[0] == pol else None)
        sessions[id(session.policy)] = session
        pairs.extend((session.policy, r) for r in _scan_group(members, session, progress_factory))
    try:
        return gather_pairs(policy, pairs, warnings=warns, resolver=resolver, paths=paths or ["."], sessions=sessions)
    finally:
        for session in sessions.values():  # with the results of the project files the holds needed
            session.save()
        if options.use_cache:
            from gpufix import rxcache

            rxcache.save()  # the patterns this run compiled that the store lacked
            rxcache.disable()


class _RecordingResolver:
    """A resolver that remembers the distinct policies its folders got during a walk."""

    def __init__(self, inner):
        self.inner = inner
        self.dir_policies: list = []

    def for_dir(self, directory):
        got = self.inner.for_dir(directory)
        if not any(got is p for p in self.dir_policies) and got not in self.dir_policies:
            self.dir_policies.append(got)
        return got

    def for_path(self, path):
        return self.inner.for_path(path)


def _open_session(policy: Policy, files, options: Options, notice=None, walked=None):
    """The group's gpufix.session.Session: its policy prepared once (the project index), its
    catalogue and rule filter, its result cache opened once. `walked`: as prepare_policy takes it."""
    from gpufix.session import Session

    if policy.project is None and files:
        policy = prepare_policy([os.path.commonpath([a for a, _ in files])], policy, files, options.use_cache,
                                notice=notice, jobs=options.jobs, walked=walked)
    cache = None
    if options.use_cache:
        from gpufix.cache import ResultCache

        cache = ResultCache.open(policy, options, notice=notice)
    return Session.of(policy, options.use_prefilter, options.jobs, cache)


def _scan_group(files, session, progress_factory) -> list:
    """FileResults of `files`, which share the session's policy (through its result cache, in
    parallel). The cache is saved by the caller, once the fix holds have added to it."""
    cache = session.cache
    results: dict = {}
    todo = []
    for abs_path, display in files:
        key = os.path.abspath(abs_path)
        hit = cache.get(key) if cache else None
        if hit is not None:
            results[key] = FileResult.from_json(hit, display)
            session.cached.add(key)
        else:
            todo.append((key, display))
    if len(todo) > 1:
        # Largest files first: the workers then finish together instead of one chewing on a
        # megabyte file at the end while the other idles.
        def size(item):
            try:
                return os.stat(item[0]).st_size
            except OSError:
                return 0

        todo.sort(key=size, reverse=True)
    progress = progress_factory(len(todo)) if (progress_factory and todo) else None
    try:
        if todo:
            done = _run_jobs(todo, session.jobs, progress.advance if progress else None, session.policy,
                             session.use_prefilter)
            for (key, display), data in zip(todo, done):
                if _cache_put(cache, key, data):
                    session.cached.add(key)
                results[key] = FileResult.from_json(data, display)
    finally:
        if progress:
            progress.close()
    return list(results.values())


def _cache_put(cache, key: str, data: dict) -> bool:
    """A job's result into the cache, unless it could not read the file or gpufix failed on it."""
    if cache is not None and "_stamp" in data and not any(e["kind"] in ("read-error", "internal-error") for e in data["errors"]):
        cache.put(key, data)
        return True
    return False


def _session_result(session, abs_path: str, display: str, got=None) -> FileResult:
    """A project file's result under the session's policy, through its result cache (a file
    outside the run that a hold decision or a project rule needs): linted at most once a run and
    only when its cache entry is stale. `got`: its (stat, bytes), when the caller has read it."""
    key = os.path.abspath(abs_path)
    got = session.others.get(key)
    if got is not None:
        return got
    hit = session.cache.get(key) if session.cache is not None else None
    if hit is not None:
        result = FileResult.from_json(hit, display)
    else:
        data = _lint_one(key, display, session.policy, session.use_prefilter, session.catalog, got)
        _cache_put(session.cache, key, data)
        result = FileResult.from_json(data, display)
    session.others[key] = result
    return result


def _project_candidates(policy: Policy, members: list, resolver, paths, session=None) -> list:
    """FileResults (candidates only) of the project's other files, for the project rules. Nothing
    to do when the run already covers the project's folder. Only files that hold one of the
    project rules' `candidate_bytes` are read further (GPU103 judges mask values); with a
    `session` (gpufix.session.Session of `policy`), a file whose cache entry is fresh is not read."""
    if not policy.root:
        return []
    root = os.path.realpath(policy.root)
    if any(path_within(root, os.path.realpath(p)) for p in paths if p != "-" and os.path.isdir(p)):
        return []
    have = {r.path for r in members}
    catalog = session.catalog if session is not None else catalog_for(policy)
    needles = [r.candidate_bytes for r in registry.project_rules().values()]
    needles = None if any(not n for n in needles) else {b for n in needles for b in n}
    if session is not None and not session.use_prefilter:
        session = None  # the project's other files are judged with the prefilter, as without a cache
    out = []
    bare = dataclasses.replace(policy, project=None)  # the discovered files' policy, before its index
    for abs_path, display, pol in discover_files([root], resolver):
        if (pol != policy and pol != bare) or display in have:
            continue
        key = os.path.abspath(abs_path)
        hit = session.cache.get(key) if (session is not None and session.cache is not None) else None
        if hit is not None:
            res = FileResult.from_json(hit, display)
        else:
            got, _ = _read_file(str(abs_path))
            if got is None or (needles is not None and not any(b in got[1] for b in needles)):
                continue
            if session is not None:
                res = _session_result(session, key, display, got)
            else:
                res = lint_bytes(got[1], key, display, policy, True, catalog)
        if res.candidates:
            out.append(FileResult(display, candidates=res.candidates, parsed=True))
    return out


def _run_jobs(jobs_args: list, jobs: Optional[int], progress=None, policy: Optional[Policy] = None, use_prefilter: bool = True) -> list:
    """Lint (abs_path, display) pairs; results in the same order (gpufix.workers' shared pool)."""
    from gpufix.workers import run_in_workers

    out = []
    for data in run_in_workers(_lint_job, jobs_args, jobs, per_worker=24, initializer=_job_init,
                               initargs=(policy, use_prefilter)):
        out.append(data)
        if progress:
            progress(1)
    return out


def _job_init(policy: Policy, use_prefilter: bool) -> None:
    """The pool's initializer (gpufix.workers.LINT_STATE): a job is then only (abs_path, display),
    and the policy is not pickled once per file."""
    import gc

    gc.disable()  # see scan(): a worker lives for one scan
    LINT_STATE.set(policy=policy, use_prefilter=use_prefilter, catalog=catalog_for(policy))


def _lint_job(args) -> dict:
    abs_path, display = args
    return _lint_one(abs_path, display, LINT_STATE["policy"], LINT_STATE["use_prefilter"], LINT_STATE["catalog"])


def _lint_one(abs_path: str, display: str, policy: Policy, use_prefilter: bool, catalog: ApiCatalog,
              got=None) -> dict:
    """Lint one file; the result carries the file's stat stamp and content hash taken when it was
    read (for the cache), so an edit during the scan can never be cached under the new stamp.
    `got`: (stat, bytes) of the file from _read_file, when the caller has read it already."""
    try:
        if got is None:
            got, problem = _read_file(abs_path)
            if got is None:
                return FileResult(display, errors=[_read_problem(display, problem)]).to_json()
        st, raw = got
        data = lint_bytes(raw, abs_path, display, policy, use_prefilter, catalog).to_json()
        data["_stamp"] = [st.st_size, st.st_mtime_ns]
        data["_hash"] = content_hash(raw)
        return data
    except Exception as exc:  # a bug in gpufix must not stop the run; say where it happened
        return FileResult(display, errors=[FileError(display, "internal-error", f"gpufix failed on this file: {type(exc).__name__}: {exc}")]).to_json()
