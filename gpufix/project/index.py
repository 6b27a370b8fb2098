"""The run's project index (`build_index`: records through the cache and the workers, then the
graph) and the fixes that are safe only together (`fix_holds`, `apply_holds`), the project's
device helpers as APIs (`helper_apis`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import NamedTuple, Optional

from gpufix.project.graph import ProjectIndex, _build_graph
from gpufix.project.imports import RECORD_FORMAT, _index_init, _index_job, index_record, names_mask_variable
from gpufix.project.meta import (_HAS_INIT, _console_targets, _distributes_packages, _rel, _setup_console_targets,
                                  _suffix, first_party_names, project_root)

def _index_key(root, first_party, console, known_frameworks) -> str:
    import hashlib
    import json

    blob = json.dumps([RECORD_FORMAT, str(root), sorted(first_party), sorted(console), sorted(known_frameworks)]).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def build_index(paths, files, catalog, known_first_party=(), known_frameworks=(), graph: bool = True,
                cache_factory=None, overrides=None, root: Optional[Path] = None, jobs: Optional[int] = None) -> ProjectIndex:
    """The ProjectIndex of the project's files (`files`: (abs_path, display) pairs from discover).
    `overrides`: abs path -> text read elsewhere (stdin), used instead of the file on disk.
    `jobs`: worker processes, as scan's `-j` (1: none; None: all cores when there is enough work)."""
    _HAS_INIT.clear()
    overrides = {os.path.abspath(a): t for a, t in (overrides or {}).items()}
    root = root or project_root(paths or ["."])
    abs_files = [os.path.abspath(a) for a, _ in files]
    first_party = first_party_names(root, abs_files, known_first_party, known_frameworks)
    if not graph:
        return ProjectIndex(str(root), first_party)
    fp_catalog = catalog.for_project(first_party, known_frameworks)

    console = set(_console_targets(root)) | set(_setup_console_targets(root))
    # Whether the project is packaged decides which package `__init__.py` files are entry points
    # (graph._internal_packages); an edit of setup.cfg or pyproject.toml can change it, so the kept
    # index's digest holds it too.
    packaged = _distributes_packages(root)
    from gpufix.workers import run_in_workers

    for a in overrides:
        if a not in abs_files:
            abs_files.append(a)
    # In discovery order: the graph and its cache key are made in this order, which no edit changes.
    py_files = [a for a in abs_files if _suffix(a).lower() in (".py", ".ipynb")]  # shell, configs: no imports
    # Per-file entries are cached (a warm scan reads none of the unchanged files), keyed on what
    # they depend on besides the file: the root, the first-party names, the console scripts.
    cache = cache_factory(_index_key(root, first_party, console, known_frameworks)) if cache_factory else None
    entries: dict = {}
    todo = []
    for a in py_files:
        if a in overrides:
            _index_init(root, console, fp_catalog)
            entries[a] = index_record(a, overrides[a])
            continue
        hit = cache.get_lazily(a) if cache else None  # decoded only if the graph is built again
        if hit is not None:
            entries[a] = hit
        else:
            todo.append(a)
    # Biggest first, as scan does: the workers then finish together. Only the files to read are
    # sorted (a warm run's cache hits need no second and third stat each).
    todo.sort(key=lambda a: os.path.getsize(a) if os.path.isfile(a) else 0, reverse=True)
    for a, entry in zip(todo, run_in_workers(_index_job, todo, workers=jobs, initializer=_index_init,
                                             initargs=(root, console, fp_catalog))):
        stamp, made = entry.pop("_stamp", None), entry.pop("_hash", None)
        if cache is not None:
            entry[_RECORD_DIGEST] = record_digest(entry)  # made once, kept in the cache with it
            if stamp is not None and made is not None:
                cache.put(a, {**entry, "_stamp": stamp, "_hash": made}, tag=entry[_RECORD_DIGEST])
        entries[a] = entry
    digest = None
    if cache is not None:
        # The index is a function of the per-file entries and the project's names: a warm run whose
        # entries all hit reuses the index built from them (the graph walk is most of a warm scan).
        # Its key is made from each entry's own digest (kept in the cache with the entry, never
        # serialised again): an edit that leaves a file's entry as it was (a function's body, a
        # comment: the pre-commit case) keeps the index, the graph is not built again.
        h = hashlib.blake2b(digest_size=16)
        for part in (str(root), "packaged" if packaged else "application", *first_party, "\0", *sorted(console), "\0", *abs_files, "\0"):
            h.update(part.encode("utf-8", "surrogateescape") + b"\0")
        for a in py_files:  # discovery order: an edit that changes a file's size keeps the key
            entry = entries[a]
            if isinstance(entry, dict):
                made = entry.get(_RECORD_DIGEST) or record_digest(entry)
            else:  # a cache.Hit: its tag is the entry's digest, its fields are not decoded
                made = entry.tag if isinstance(entry.tag, str) else record_digest(entry.value())
            h.update(a.encode("utf-8", "surrogateescape") + b"\0" + made.encode("ascii") + b"\0")
        digest = h.hexdigest()
        saved = cache.get_kept("project-index:", digest)
        if saved is not None:
            cache.save()
            return ProjectIndex.from_json(saved)
    entries = {a: e if isinstance(e, dict) else e.value() for a, e in entries.items()}  # cache.Hits decoded
    index = _build_graph(root, first_party, abs_files, py_files, entries, packaged)
    if cache is not None:
        cache.put_kept("project-index:", digest, index.to_json(), keep=4)  # a full scan's and a subset's
        cache.save()
    return index


_RECORD_DIGEST = "_digest"  # an entry's own digest, beside its fields (no reader asks for it)


def record_digest(entry: dict) -> str:
    """A digest of an index entry's fields (JSON, keys sorted: the same for a fresh entry and for
    its copy read back from the cache)."""
    fields = {k: v for k, v in entry.items() if k != _RECORD_DIGEST}
    body = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=_unordered)
    return hashlib.blake2b(body.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def _unordered(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"an index entry holds a {type(value).__name__}")


class _OwnMask(NamedTuple):
    """Why a fix is held: `path`, which the process started at `entry` runs after that entry's
    header, keeps a mask of its own (paths relative to the root). `by_hand`: no fix of this run
    replaces it (a mask computed at run time, a write inside a function)."""

    path: str
    entry: str
    by_hand: bool


def _usable(f, unsafe: bool) -> bool:
    return f.fix is not None and (f.fix.applicability == "safe" or unsafe)


def fix_holds(index: "ProjectIndex", results: dict, lint_other, unsafe: bool = False, read_text=None) -> dict:
    """Fixes that are safe only together with other files' fixes, and cannot be made together in
    this run: abs path -> [(rules, note, text the message holds or None)], what apply_holds takes.

    A remap in a module (`set_device(1)` -> `set_device(0)`) is right only once every process that
    runs the module has the policy's mask in force: each entry point that starts such a process
    must already set it, or be in this run with safe fixes that set it. The other way round, the
    mask an entry point's fix puts in force moves the ordinals of every module its process runs:
    each of those must be in this run with its remaps fixed too, or hold no ordinal to remap. A
    first-party device helper's default and its callers' literals are remapped together or not
    at all. A group that cannot be fixed whole is not fixed at all.

    `results`: abs path -> FileResult of the run's files; `lint_other(abs_path)`: the FileResult
    of a project file outside the run (or None); `read_text(abs_path)`: a file's text (or None)."""
    if index is None or not index.graph_built:
        return {}
    from gpufix.registry import fixed_together, rules as registered

    REMAP_RULES, MASK_RULES = fixed_together()

    rules = registered()
    entry_map = index.entry_map  # a property: looked up once, not once per file and entry point

    def keeps_own(f) -> bool:
        return f.rule in rules and rules[f.rule].keeps_own_mask(f)
    others: dict = {}

    def result_of(a: str):
        if a in results:
            return results[a]
        if a not in others:
            others[a] = lint_other(a)
        return others[a]

    holds: dict = {}

    def held(a: str, f) -> bool:
        return any(f.rule in rules and (match is None or re.search(match, f.message)) for rules, _, match in holds.get(a, ()))

    def hold(a: str, rules, note: str, match=None) -> bool:
        got = holds.setdefault(a, [])
        if any(r >= rules and m == match for r, _, m in got):
            return False
        got.append((frozenset(rules), note, match))
        return True

    judged: dict = {}  # id(result) -> (its findings for judging processes, ids of the unselected)

    def findings_of(r) -> list:
        """What a file's processes do: its reported findings, and those of the remap and mask
        rules the run does not select (FileResult.unselected), which it never fixes."""
        if r is None:
            return []
        got = judged.get(id(r))
        if got is None:
            extra = [dataclasses.replace(f, fix=None) for f in r.unselected]
            got = judged[id(r)] = (r.findings + extra, {id(f) for f in extra})
        return got[0]

    def unselected(r, f) -> bool:
        findings_of(r)
        return r is not None and id(f) in judged[id(r)][1]

    def remaps(r) -> list:
        return [f for f in findings_of(r) if f.rule in REMAP_RULES]

    def mask_fixes(r) -> list:
        return [f for f in findings_of(r) if f.rule in MASK_RULES]

    def mask_findings(r) -> list:
        """The mask rules' findings and those that say the file sets a mask of its own (GPU108's
        mask computed at run time is no mask rule's: it has no fix)."""
        return [f for f in findings_of(r) if f.rule in MASK_RULES or keeps_own(f)]

    remaps_of: dict = {}  # a file's remap findings: its result does not change while holds are added

    def remaps_found(a: str) -> list:
        found = remaps_of.get(a)
        if found is None:
            found = remaps_of[a] = remaps(result_of(a))
        return found

    def pending_remaps(a: str) -> list:
        """The file's remap findings that this run will not fix."""
        found = remaps_found(a)
        if not found:
            return found
        return [f for f in found if a not in results or held(a, f) or not _usable(f, unsafe)]

    members_memo: dict = {}

    def remapping_members(e: str) -> list:
        """The files `e`'s process runs, other than entry points, that have remap findings at all:
        the only ones whose pending remaps can hold `e`'s mask (their findings do not change while
        holds are added; only which of them are held does)."""
        got = members_memo.get(e)
        if got is None:
            got = members_memo[e] = [a for a in runs_of(e) if a not in entry_map and remaps_found(a)]
        return got

    root = Path(index.root)
    entry_why: dict = {}

    def entry_state(e: str) -> list:
        """[] when every process started at `e` will run under the policy's mask; else why not."""
        if e not in entry_why:
            r = result_of(e)
            mine = mask_findings(r)
            why = None
            off = sorted({f.rule for f in mine if unselected(r, f)})
            if r is None or r.errors:
                why = f"`{_rel(e, root)}` cannot be read"
            elif off:
                why = f"`{_rel(e, root)}` does not set the policy's mask yet: this run does not select {', '.join(off)}"
            elif mine and e not in results:
                why = f"`{_rel(e, root)}` does not set the policy's mask yet and is not part of this run"
            elif any(not _usable(f, unsafe) for f in mine):
                why = f"`{_rel(e, root)}` keeps a mask that its safe fixes do not replace"
            entry_why[e] = why
        if any(f.rule in MASK_RULES for f in (result_of(e).findings if result_of(e) is not None else ()) if held(e, f)):
            return [f"the fix of `{_rel(e, root)}` is held"]
        if entry_why[e] is None:
            return _overridden(e, overriders(e))
        return [entry_why[e]]

    run_by_memo: dict = {}
    runs: dict = {}

    def runs_of(e: str) -> list:
        """index.run_by(e), walked once a run (the graph does not change while holds are added:
        diffusers' 154 entry points each run most of the library, every round of the loop below)."""
        got = runs.get(e)
        if got is None:
            got = runs[e] = index.run_by(e)
        return got

    def overriders(e: str) -> list:
        """Files a process started at `e` runs (imports, loads by path) that write a mask this run
        leaves other than the policy's: run after `e`'s header, their write is the mask the
        process ends with (a script importing another script that keeps `"0,1"`)."""
        if e not in run_by_memo:
            run_by_memo[e] = [a for a in runs_of(e) if writes_mask_word(a)]
        return [a for a in run_by_memo[e]
                if any(a not in results or held(a, f) or not _usable(f, unsafe) for f in mask_findings(result_of(a)))]

    def _overridden(e: str, later: list) -> list:
        return [_OwnMask(_rel(a, root), _rel(e, root), any(not _usable(f, unsafe) for f in mask_findings(result_of(a))))
                for a in later]

    starts_memo: dict = {}

    def starts_of(a: str) -> list:
        if a not in starts_memo:
            starts_memo[a] = index.starting_entries(a)
        return starts_memo[a]

    mask_word: dict = {}

    indexed = {a for a, _ in index.edges}  # the .py files the index read (a record each)

    def writes_mask_word(a: str) -> bool:
        """Whether `a`'s text names a mask variable: the index read it with the file's record;
        another file (a notebook) is read, and only the answer kept (an entry point's process runs
        most of a library: diffusers, every file)."""
        if a not in mask_word:
            if a in indexed and a.endswith(".py"):
                mask_word[a] = a in index.names_mask
            else:
                text = texts[a] if a in texts else _read(a)
                mask_word[a] = names_mask_variable(text)
        return mask_word[a]

    texts: dict = {}  # the texts later tests read again (a device helper's callers)

    def _read(a: str) -> str:
        return (read_text(a) if read_text else None) or ""

    def text_of(a: str) -> str:
        if a not in texts:
            texts[a] = _read(a)
        return texts[a]

    changed = True
    while changed:
        changed = False
        # remaps that need their processes' masks
        for a, r in results.items():
            if a in entry_map or not any(_usable(f, unsafe) and not held(a, f) for f in remaps(r)):
                continue
            bad = [w for e in starts_of(a) for w in entry_state(e)]
            if bad:
                changed |= hold(a, REMAP_RULES, _hold_note(bad, a, root, "the mask its processes start with"))
        # a helper's default and its callers' literals
        for name, param, position, where in index.helpers:
            near = {where, *index.importers_map.get(where, ())}
            if results.keys().isdisjoint(near):
                continue  # its holds would fall on files of this run only: none is near it
            callers = [c for c in sorted(near)
                       if _calls(text_of(c), name)]
            default = re.escape(f"{name}()'s default for {param}")
            call = r" in (?:[\w.]+\.)?%s\(\)" % re.escape(name)
            unfixed = []
            for c in callers:
                literal = _literal_call_lines(text_of(c), name, position, param)
                fixed = {f.line for f in remaps(result_of(c))
                         if re.search(call, f.message) and c in results and not held(c, f) and _usable(f, unsafe)}
                if literal - fixed:
                    unfixed.append(f"`{_rel(c, root)}` calls it with an index this run does not remap"
                                   + ("" if c in results else " (it is not part of this run)"))
            if where in results and any(re.search(default, f.message) and (held(where, f) or not _usable(f, unsafe))
                                        for f in remaps(result_of(where))):
                unfixed.append(f"its default in `{_rel(where, root)}` is not remapped")
            elif where not in results and any(re.search(default, f.message) for f in remaps(result_of(where))):
                unfixed.append(f"its default in `{_rel(where, root)}` is not part of this run")
            if unfixed:
                what = f"the other uses of the device helper `{name}()`"
                for c in callers:
                    if c in results:
                        changed |= hold(c, REMAP_RULES, _hold_note(unfixed, c, root, what), call)
                if where in results:
                    changed |= hold(where, REMAP_RULES, _hold_note(unfixed, where, root, what), default)
        # an entry point's own remaps, when a file its process runs writes another mask after it
        for e, r in results.items():
            if e not in entry_map or not any(_usable(f, unsafe) and not held(e, f) for f in remaps(r)):
                continue
            later = overriders(e)
            if later:
                changed |= hold(e, REMAP_RULES, _hold_note(_overridden(e, later), e, root, "the mask its process ends with"))
        # a header in an entry point that other processes import is a mask write in those processes
        # at that import: harmless where they end this run under the policy's mask set first
        # (their own header), else it replaces the mask they set or moves their ordinals
        for e, r in results.items():
            if e not in entry_map or not any(_usable(f, unsafe) and not held(e, f) for f in mask_fixes(r)):
                continue
            bad = []
            for s in starts_of(e):
                why = entry_state(s)
                rs = result_of(s)
                if not why and rs is not None and any(
                        keeps_own(f) and (s not in results or held(s, f) or not _usable(f, unsafe)) for f in findings_of(rs)):
                    why = [f"`{_rel(s, root)}` sets a mask of its own that this header would replace when it imports it"]
                bad += why
            if bad:
                changed |= hold(e, MASK_RULES | REMAP_RULES, _hold_note(bad, e, root, "the processes that import it"))
        # masks that would move other files' ordinals
        for e, r in results.items():
            if e not in entry_map or not any(_usable(f, unsafe) and not held(e, f) for f in mask_fixes(r)):
                continue
            bad = []
            for a in remapping_members(e):
                pending = pending_remaps(a)
                if not pending:
                    continue  # sets its own mask (or has its own finding), or is fixed with it
                off = sorted({f.rule for f in pending if unselected(result_of(a), f)})
                bad.append(f"`{_rel(a, root)}` has ordinals that this run does not remap"
                           + ("" if a in results else " (it is not part of this run)")
                           + (f" (this run does not select {', '.join(off)})" if off else ""))
            if bad:
                # its own remaps were computed for the mask its fix puts in force: held with it
                changed |= hold(e, MASK_RULES | REMAP_RULES, _hold_note(bad, e, root, "its mask"))
    return {a: h for a, h in holds.items() if h}


def _calls(text: str, name: str) -> bool:
    """Whether `text` calls `name(` (the substring first: most importers of a helper's module never
    name it)."""
    return f"{name}(" in text and re.search(r"\b%s\(" % re.escape(name), text) is not None


def _literal_call_lines(text: str, name: str, position, param: str) -> set:
    """Lines of `text` where `name(...)` is called with a non-zero int literal for the helper's
    parameter (positionally, or as `param=`)."""
    out = set()
    if not text or f"{name}(" not in text:
        return out
    # the lookbehind after the name: a regex that starts with one is tried at every character
    pat = re.compile(r"\b%s\((?<!def %s\()\s*([^()]*)\)" % (re.escape(name), re.escape(name)))
    for m in pat.finditer(text):
        args = [x.strip() for x in m.group(1).split(",")]
        value = None
        for x in args:
            if x.startswith(param) and "=" in x and x.split("=", 1)[0].strip() == param:
                value = x.split("=", 1)[1].strip()
        if value is None and position is not None and position < len(args) and "=" not in args[position]:
            value = args[position]
        if value is not None and value.isdigit() and int(value) != 0:
            out.add(text.count("\n", 0, m.start()) + 1)
    return out


def _hold_note(reasons: list, path: str, root: Path, what: str) -> str:
    """The clause a held fix's message ends with: why, and the command that fixes the group.
    `reasons`: sentences, and _OwnMask records, told once per file that keeps a mask (one module
    of a library is run by most of its entry points: yolov5's `select_device`)."""
    reasons = _own_masks_told(reasons)
    shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
    files = [_rel(path, root)] + [m for r in reasons for m in re.findall(r"`([^`]+\.(?:py|ipynb))`", r)]
    files = list(dict.fromkeys(files))
    command = "gpufix apply " + " ".join(files[:4]) + (" ..." if len(files) > 4 else "")
    return f" (not fixed in this run: safe only together with {what}, and {shown}; fix them together: `{command}`)"


def _own_masks_told(reasons: list) -> list:
    """`reasons` as sentences, the _OwnMask records of one file merged into one, where the first
    of them was."""
    groups: dict = {}
    for r in reasons:
        if isinstance(r, _OwnMask):
            groups.setdefault((r.path, r.by_hand), []).append(r.entry)
    out, told = [], set()
    for r in reasons:
        if not isinstance(r, _OwnMask):
            out.append(r)
            continue
        key = (r.path, r.by_hand)
        if key in told:
            continue
        told.add(key)
        entries = list(dict.fromkeys(groups[key]))
        if len(entries) == 1:
            where = f"`{entries[0]}`'s process"
        else:
            named = [f"`{e}`" for e in entries[:3]] + ([f"{len(entries) - 3} more"] if len(entries) > 3 else [])
            where = "the processes of " + ", ".join(named[:-1]) + " and " + named[-1]
        out.append(f"`{r.path}` keeps a mask of its own in {where}"
                   + (", which no fix of this run replaces: make it keep the policy's mask by hand" if r.by_hand else ""))
    return out


def apply_holds(findings: list, holds) -> list:
    """`findings` of one file with the fixes that `holds` (fix_holds' list for the file) hold
    removed, and the note of the first hold that takes each added to its message."""
    import dataclasses as dc

    out = []
    for f in findings:
        if f.fix is not None:
            for rules, note, match in holds:
                if f.rule in rules and (match is None or re.search(match, f.message)):
                    f = dc.replace(f, fix=None, message=f.message + note)
                    break
        out.append(f)
    return out


def helper_apis(index: "ProjectIndex", existing: tuple = ()) -> tuple:
    """The project's device helpers (ProjectIndex.helpers) as API entries, like the user's own
    `[[tool.gpufix.api]]` ones (which win when they name the same function): their callers'
    literal ordinals are then read, reported and remapped like `set_device(1)`'s."""
    from gpufix.config import ApiSpec, ArgSpec

    if index is None or not index.helpers:
        return ()
    taken = {a.last_name for a in existing}
    by_name: dict = {}
    for name, param, position, _ in index.helpers:
        if name in taken:
            continue
        by_name.setdefault(name, set()).add((position, param))
    out = []
    for name, specs in sorted(by_name.items()):
        if len(specs) != 1:
            continue  # two project functions of that name take the ordinal differently: unsure
        position, param = next(iter(specs))
        out.append(ApiSpec(name=name, args=(ArgSpec(position=position, keyword=param),)))
    return tuple(out)
