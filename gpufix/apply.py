"""`gpufix apply`: lint, compute every file's fixed bytes in memory, refuse or back up and tag,
write atomically, re-lint what changed.

Nothing is written until every fixed file has been computed and verified to parse, the git checks
have passed, and the backup (with its manifest) is on disk.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Callable, Optional

from gpufix.backup import TAG_PREFIX, new_backup_id, sha256, write_backup
from gpufix.config import Policy, SinglePolicy
from gpufix.discover import discover_files
from gpufix.engine import (
    FileResult,
    Options,
    ScanResult,
    _open_session,
    _read_file,
    _read_problem,
    gather_pairs,
    lint_bytes,
    lint_path,
)
from gpufix.fix import FixError
from gpufix.fix.passes import _choose_edits, _must_parse, fix_source  # noqa: F401 (re-exported: gpufix.apply.fix_source)
from gpufix.fsutil import PlanChanged, plan_file, replace_planned
from gpufix.model import FileError
from gpufix.source import (
    ReadError,
    read_source,
)
from gpufix.workers import PLAN_STATE



class ApplyRefused(Exception):
    pass


@dataclasses.dataclass
class ApplyOptions:
    backup: bool = True
    tag: bool = True
    diff: bool = False
    unsafe_fixes: bool = False
    allow_dirty: bool = False
    use_prefilter: bool = True
    jobs: Optional[int] = None
    quiet: bool = False
    force_exclude: bool = False


@dataclasses.dataclass
class FileFix:
    abs_path: str
    path: str
    before: bytes
    after: bytes
    rules: list
    before_count: int = 0  # findings before the fix
    fixed: int = 0  # findings the fix removed (known after the re-lint)
    after_result: Optional[FileResult] = None  # the lint of `after`, when the fixer made one


@dataclasses.dataclass
class ApplyOutcome:
    fixes: list
    remaining: ScanResult
    backup_id: Optional[str] = None
    backup_dir: Optional[str] = None
    git_tag: Optional[str] = None
    diff_text: str = ""
    diffs: list = dataclasses.field(default_factory=list)  # [(path, unified diff)] with --diff
    diff_mode: bool = False

    def extra(self) -> dict:
        return {
            "changed_files": [{"path": f.path, "rules": f.rules, "fixed": f.fixed} for f in self.fixes],
            "remaining": [f.to_json() for f in self.remaining.findings],
            "backup": {"id": self.backup_id, "dir": self.backup_dir} if self.backup_id else None,
            "git_tag": self.git_tag,
        }

    @property
    def exit_code(self) -> int:
        if self.diff_mode:
            # as ruff's --diff: 1 when there is something to change (or a file could not be
            # read), 0 when nothing would change, whatever unfixable findings remain
            return 1 if (self.diffs or self.remaining.errors) else 0
        return 1 if (self.remaining.findings or self.remaining.errors) else 0


class _GitFailed(Exception):
    def __init__(self, stderr: str):
        super().__init__(stderr)
        self.stderr = stderr


def _git(top: str, *args: str) -> str:
    """Run git in `top` (GIT_DIR / GIT_WORK_TREE in the environment are honoured, as git does)."""
    import subprocess

    proc = subprocess.run(["git", *args], cwd=top, capture_output=True)
    if proc.returncode != 0:
        raise _GitFailed(proc.stderr.decode("utf-8", "replace"))
    return proc.stdout.decode("utf-8", "surrogateescape")


def _work_tree_of(directory: str, memo: dict) -> Optional[str]:
    """The real top folder of the git work tree holding `directory`, or None (not in git, or a
    bare repository). Asked of git itself, so `GIT_DIR`/`GIT_WORK_TREE` layouts, worktrees and
    submodules are what git says they are."""
    if directory not in memo:
        try:
            out = _git(directory, "rev-parse", "--is-inside-work-tree", "--show-toplevel")
            lines = out.splitlines()
            memo[directory] = os.path.realpath(lines[1]) if len(lines) > 1 and lines[0] == "true" else None
        except (_GitFailed, OSError, IndexError):
            memo[directory] = None
    return memo[directory]


def _named_tree(abs_path: str) -> Optional[str]:
    """The work tree a path belongs to by its name (before any symlink in it is followed): the
    nearest folder above it with a `.git` entry, else `GIT_WORK_TREE`."""
    d = os.path.dirname(os.path.abspath(abs_path))
    while True:
        if os.path.lexists(os.path.join(d, ".git")):
            return d
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    wt = os.environ.get("GIT_WORK_TREE")
    return os.path.abspath(wt) if wt else None


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def _where_to_write(abs_path: str, memo: dict):
    """(real path, real work tree or None) of a file apply may write; ApplySkip when the file is
    reached through a symlink whose target lies outside the work tree its name is in (outside git:
    outside the current folder)."""
    real = os.path.realpath(abs_path)
    top = _work_tree_of(os.path.dirname(real), memo)
    if real != os.path.normpath(os.path.abspath(abs_path)):
        named = _named_tree(abs_path)
        bound = os.path.realpath(named) if named else os.path.realpath(os.getcwd())
        if not _inside(real, bound):
            raise _Skip(f"is a symlink to {real}, outside {'the git work tree' if named else 'the current folder'} "
                        f"{bound}; not changed (gpufix never writes outside the tree)")
    return real, top


class _Skip(Exception):
    pass


def _dirty_files(top: str, abs_paths) -> list:
    """Files among `abs_paths` (real paths inside the work tree `top`) with uncommitted changes,
    except changes gpufix itself made: a file whose bytes are what a backup's manifest recorded
    after an apply (`sha256_after`) holds apply's own edits, not the user's work, so
    `apply --unsafe-fixes` may follow a plain `apply`."""
    from gpufix.backup import list_backups

    rels = [os.path.relpath(p, top).replace(os.sep, "/") for p in abs_paths]
    try:
        out = _git(top, "status", "--porcelain", "-z", "--untracked-files=all", "--", *rels)
    except (_GitFailed, OSError) as exc:
        raise ApplyRefused(f"refusing to apply: `git status` failed in {top}: {git_error_line(exc)}; nothing was written") from None
    dirty = [item[3:] for item in out.split("\0") if len(item) > 3]
    if not dirty:
        return dirty
    ours: dict = {}
    for manifest in list_backups(Path(top)):
        for entry in manifest["files"]:
            ours.setdefault(entry["path"], set()).add(entry["sha256_after"])
    mine = []
    for rel in dirty:
        if rel in ours:
            try:
                if sha256((Path(top) / rel).read_bytes()) in ours[rel]:
                    continue
            except OSError:
                pass
        mine.append(rel)
    return mine


def git_error_line(exc) -> str:
    """One line for a git failure, with what to do when the cause is a common one."""
    text = str(getattr(exc, "stderr", "") or exc)
    if any(k in text for k in ("Please tell me who you are", "user.email", "empty ident", "no email was given",
                                "unable to auto-detect email")):
        return ("git has no user identity; set one with `git config --global user.name \"Your Name\"` and "
                "`git config --global user.email you@example.com`")
    if "dubious ownership" in text:
        return "git refuses this repository (dubious ownership); run `git config --global --add safe.directory <repo>`"
    lines = [ln.strip() for ln in text.replace("stderr:", "").splitlines() if ln.strip()]
    detail = next((ln for ln in lines if ln.lower().startswith(("fatal:", "error:"))), lines[-1] if lines else "")
    return detail.strip("'\" ")


def _with_progress(items, progress_factory, total: int):
    """Yield `items`, advancing the bar `progress_factory(total)` makes (if any); close it at the end."""
    bar = progress_factory(total) if (progress_factory and total) else None
    try:
        for item in items:
            yield item
            if bar:
                bar.advance(1)
    finally:
        if bar:
            bar.close()


def _plan_file(args) -> tuple:
    """Lint one file and compute its fixed bytes (no write). Runs in a worker process on big trees.

    Returns (FileResult as JSON, outcome): outcome is None (nothing to fix), ("error", kind,
    message) or ("fix", raw, new_raw, rules, lint of new_raw as JSON or None). The file is read
    once: the bytes linted are the bytes fixed. `group`: the index of the file's session in
    gpufix.workers.PLAN_STATE (set by _plan_init, in this process and in every worker)."""
    key, display, group, unsafe, *rest = args
    hold = rest[0] if rest else None  # (rules, note): fixes safe only with files outside this run
    session = PLAN_STATE["groups"][group]
    policy = session.policy
    got, problem = _read_file(key)
    if got is None:
        return FileResult(display, errors=[_read_problem(display, problem)]).to_json(), None
    raw = got[1]
    res = lint_bytes(raw, key, display, policy, session.use_prefilter, session.catalog)
    if hold is not None:
        from gpufix.project import apply_holds

        # The first pass is the only one that takes remaps; the header's group, once held here,
        # is held in every pass (fix_source's `hold`).
        res = dataclasses.replace(res, findings=apply_holds(res.findings, hold))
    if not any(f.fix and (f.fix.applicability == "safe" or unsafe) for f in res.findings):
        return res.to_json(), None
    final: list = []
    try:
        src = read_source(display, raw)
        new_raw, rules = fix_source(src, policy, unsafe, abs_path=key, first=res, final=final,
                                    use_prefilter=session.use_prefilter, hold=hold, session=session)
    except (ReadError, OSError) as exc:
        return res.to_json(), ("error", "fix-error", f"cannot fix: {exc}")
    except FixError as exc:
        return res.to_json(), ("error", "fix-error", str(exc))
    except Exception as exc:  # a bug in gpufix must not stop the run: this file stays unchanged
        return res.to_json(), ("error", "internal-error", f"gpufix failed to fix this file (left unchanged): {type(exc).__name__}: {exc}")
    return res.to_json(), ("fix", raw, new_raw, rules, final[0].to_json() if final else None)


def _plan_init(policies: list, use_prefilter: bool) -> None:
    """The pool's initializer (gpufix.workers.PLAN_STATE): each group's gpufix.session.Session
    (prepared policy, catalogue, rule filter), so that a job is a few small values and the policy
    (which holds the project's index) is not pickled once per file."""
    from gpufix.session import Session

    PLAN_STATE.set(groups=[Session.of(pol, use_prefilter) for pol in policies])


def _plan_all(jobs: list, workers: int, policies: list, use_prefilter: bool):
    """Yield _plan_file results in order, in the pool scan uses too (libcst is ~50 ms a file: a
    second core halves a big apply)."""
    from gpufix.workers import run_in_workers

    yield from run_in_workers(_plan_file, jobs, workers, per_worker=16, initializer=_plan_init,
                              initargs=(policies, use_prefilter))


def _planned(jobs: list, workers: int, progress_factory, policies: list, use_prefilter: bool) -> list:
    """_plan_file's results in the order of `jobs`, computed largest file first (as scan does: the
    workers then finish together instead of one chewing on a big file at the end)."""

    def size(i: int) -> int:
        try:
            return os.stat(jobs[i][0]).st_size
        except OSError:
            return 0

    order = sorted(range(len(jobs)), key=size, reverse=True) if len(jobs) > 1 else list(range(len(jobs)))
    out: list = [None] * len(jobs)
    planned = _plan_all([jobs[i] for i in order], workers, policies, use_prefilter)
    for i, got in zip(order, _with_progress(planned, progress_factory, len(jobs))):
        out[i] = got
    return out


def run_apply(paths, policy: Policy, opts: ApplyOptions, warn: Callable = lambda m: None, progress_factory=None,
              resolver=None) -> ApplyOutcome:
    """With a `resolver` (gpufix.config.PolicyResolver) each file is fixed under the policy of its
    nearest config; without one, under `policy`."""
    resolver = resolver or SinglePolicy(policy)
    files = discover_files(paths or ["."], resolver, warn=warn, force_exclude=opts.force_exclude)
    # Each policy's files with that policy's session (gpufix.session.Session, built as scan builds
    # it: the policy prepared once with the project's index, its catalogue); no result cache, the
    # project index built afresh: apply judges the files as they are now.
    groups: dict = {}
    for abs_path, display, pol in files:
        groups.setdefault(pol, []).append((abs_path, display))
    options = Options(use_prefilter=opts.use_prefilter, use_cache=False, jobs=opts.jobs)
    sessions = [_open_session(pol, members, options) for pol, members in groups.items()]
    group_of = {pol: n for n, pol in enumerate(groups)}
    group_policies = [session.policy for session in sessions]
    results: dict = {}
    policies: dict = {}
    fixes: list = []
    fix_errors: dict = {}
    jobs = [(os.path.abspath(abs_path), display, group_of[pol], opts.unsafe_fixes) for abs_path, display, pol in files]
    for job in jobs:
        policies[job[0]] = group_policies[job[2]]

    def remaining_result():
        pairs = [(policies[k], r) for k, r in results.items()]
        return gather_pairs(policy, pairs, fix_errors.values(), resolver=resolver, paths=paths or ["."],
                            unsafe=opts.unsafe_fixes)

    workers = opts.jobs if opts.jobs is not None else (os.cpu_count() or 1)
    planned = _planned(jobs, workers, progress_factory, group_policies, opts.use_prefilter)
    # Fixes safe only together with another file's (a module's remap and its entry point's
    # header): when that file's fix is not made in this run, this one is planned again without it.
    from gpufix.engine import dependent_holds

    first = [(policies[job[0]], FileResult.from_json(res_json, job[1])) for job, (res_json, _) in zip(jobs, planned)]
    holds = dependent_holds(first, opts.unsafe_fixes)
    for i, job in enumerate(jobs):
        if job[0] in holds and planned[i][1] is not None:
            planned[i] = _plan_file(job + (holds[job[0]],))
    PLAN_STATE.clear()  # the policies hold the project indexes: not kept past the planning
    for (key, display, *_), (res_json, outcome) in zip(jobs, planned):
        res = FileResult.from_json(res_json, display)
        results[key] = res
        if outcome is None:
            continue
        if outcome[0] == "error":
            fix_errors[key] = FileError(display, outcome[1], outcome[2])
            continue
        _, raw, new_raw, rules, after_json = outcome
        if new_raw != raw:
            # The mode bits, not os.access: root may write anything, but a 0444 file says "leave me".
            if not os.stat(key).st_mode & 0o222 or not os.access(key, os.W_OK):
                fix_errors[key] = FileError(display, "fix-error", "file is read-only; not changed (make it writable to fix it)")
                continue
            fixes.append(FileFix(key, display, raw, new_raw, rules, before_count=len(res.findings),
                                 after_result=FileResult.from_json(after_json, display) if after_json else None))

    if opts.diff:
        diffs = [(f.path, _unified_diff(f, project_root(policies[f.abs_path]))) for f in fixes]
        diffs = [(p, d) for p, d in diffs if d]
        return ApplyOutcome([], remaining_result(), diff_text="".join(d for _, d in diffs), diffs=diffs, diff_mode=True)

    backup_id = backup_dir = tag_name = None
    if fixes:
        # Where each file really is, and in which work tree: the checks, the backup and the tag
        # are per repository (several in one run, in any order of the paths).
        memo: dict = {}
        planned: dict = {}
        by_tree: dict = {}
        for f in fixes:
            try:
                real, top = _where_to_write(f.abs_path, memo)
                plan = plan_file(real)
                if plan.nlink > 1:
                    raise _Skip(f"has {plan.nlink} hard links; not changed (replacing it would split them: the other "
                                "names would keep the old bytes)")
            except _Skip as exc:
                fix_errors[f.abs_path] = FileError(f.path, "fix-error", str(exc))
                continue
            except (PlanChanged, OSError) as exc:
                fix_errors[f.abs_path] = FileError(f.path, "fix-error", f"cannot write: {exc}; not changed")
                continue
            planned[f.abs_path] = plan
            by_tree.setdefault(top, []).append(f)
        fixes = [f for f in fixes if f.abs_path in planned]
        if None in by_tree and opts.tag:
            warn("not inside a git work tree: no git tag is made" + (" (the backup still is)" if opts.backup else "")
                 + (f" for {len(by_tree[None])} file(s)" if len(by_tree) > 1 else ""))
        if not opts.allow_dirty:
            dirty = [os.path.join(top, rel) if len(by_tree) > 1 else rel
                     for top, members in by_tree.items() if top is not None
                     for rel in _dirty_files(top, [planned[f.abs_path].path for f in members])]
            if dirty:
                raise ApplyRefused(
                    f"refusing to apply: {len(dirty)} file(s) to change have uncommitted changes: "
                    + ", ".join(dirty[:10]) + (" ..." if len(dirty) > 10 else "")
                    + " (commit or stash them, or pass --allow-dirty); nothing was written"
                )
        backup_id = new_backup_id() if fixes else None
        # The tags come first, in every repository of the run: when git cannot make one (no user
        # identity, a locked ref), the run stops before a byte is written, as `git commit` does,
        # instead of writing the files and exiting 0 without the undo point the user asked for.
        for top in (by_tree if fixes and opts.tag else ()):
            if top is not None:
                got = _tag(top, backup_id, warn)
                tag_name = tag_name or got
        for top, members in by_tree.items() if fixes else ():
            root = Path(top) if top is not None else Path.cwd().resolve()
            if opts.backup:
                try:
                    folder = write_backup(root, backup_id, [(planned[f.abs_path].path, f.before, f.after) for f in members])
                except OSError as exc:
                    raise ApplyRefused(f"refusing to apply: cannot write the backup under {root}: {exc.strerror or exc}; "
                                       "no file was changed") from None
                rel = os.path.relpath(folder).replace(os.sep, "/")
                if backup_dir is None:
                    backup_dir = rel
                else:
                    warn(f"files of another repository are backed up in {rel}")
        for f in fixes:
            try:
                replace_planned(planned[f.abs_path], f.after, expect_before=f.before)
            except PlanChanged as exc:
                # Changed under our feet since we read it: leave it, report it.
                fix_errors[f.abs_path] = FileError(f.path, "fix-error", f"{exc}; not changed")
            except OSError as exc:
                # One file that cannot be replaced (read-only folder, full disk, vanished) must not
                # stop the others; it keeps its old bytes (atomic write) and the backup covers the rest.
                fix_errors[f.abs_path] = FileError(f.path, "fix-error", f"cannot write: {exc.strerror or exc}; not changed")
        fixes = [f for f in fixes if f.abs_path not in fix_errors]
        for f in fixes:
            # What is left in a written file: the last fixing pass linted exactly these bytes
            # (atomic_write put them there), else lint it now.
            results[f.abs_path] = f.after_result or lint_path(f.abs_path, f.path, policies[f.abs_path], opts.use_prefilter)
            f.fixed = max(0, f.before_count - len(results[f.abs_path].findings))
    remaining = remaining_result()
    return ApplyOutcome(fixes, remaining, backup_id if opts.backup else None, backup_dir, tag_name)


def _tag(top: str, backup_id: str, warn) -> Optional[str]:
    name = f"{TAG_PREFIX}{backup_id}"
    try:
        _git(top, "rev-parse", "--verify", "-q", "HEAD^{commit}")
    except (_GitFailed, OSError):
        warn("the repository has no commit yet: no git tag is made")
        return None
    try:
        _git(top, "tag", "-a", "-m", f"gpufix apply: state before backup {backup_id}", name, "HEAD")
    except (_GitFailed, OSError) as exc:
        raise ApplyRefused(f"refusing to apply: cannot create the git tag {name}: {git_error_line(exc)}; "
                           "or pass --no-tag to apply without it; nothing was written") from None
    return name


def project_root(policy: Policy) -> Optional[str]:
    """The folder a file's project starts at: its index's root, else its config's folder."""
    project = getattr(policy, "project", None)
    return getattr(project, "root", None) or policy.root


def diff_path(given: str, root: Optional[str]) -> str:
    """A file's name in a diff header (after `a/` and `b/`), as git writes it: relative to the
    project root when the file lies inside it, however the path was given (absolute, `../x`, from
    a subfolder), so that `git apply` takes the patch anywhere in the work tree; else the path as
    given, never with a leading `/` (git's `--no-index` diff of `/tmp/x` says `a/tmp/x`)."""
    if root and given != "-":  # "-": stdin without a name
        full, top = os.path.abspath(given), os.path.abspath(root)
        if _inside(full, top) and full != top:
            return os.path.relpath(full, top).replace(os.sep, "/")
    return given.lstrip("/" + os.sep)


def _unified_diff(f: FileFix, root: Optional[str] = None) -> str:
    def text(data: bytes) -> list:
        try:
            return diff_lines(read_source(f.path, data).text if not f.path.endswith(".ipynb") else data.decode("utf-8"))
        except ReadError:
            return diff_lines(data.decode("utf-8", "replace"))

    from gpufix.report.safe import for_terminal

    # The header is one line whatever the name holds.
    return unified_diff(text(f.before), text(f.after), for_terminal(diff_path(f.path, root)))


NO_NEWLINE = "\\ No newline at end of file\n"


def diff_lines(text: str) -> list:
    """The text's lines as diff tools count them: only `\\n` ends one (str.splitlines would also
    split at form feeds, `\\x1c` or U+2028, which `git apply` sees inside a line)."""
    lines = text.split("\n")
    out = [ln + "\n" for ln in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def unified_diff(before: list, after: list, path: str) -> str:
    """A unified diff `git apply` and `patch` accept: a last line without a newline is followed by
    the `\\ No newline at end of file` marker (difflib leaves it out, gluing the next file's
    `--- a/...` onto that line)."""
    out = []
    for line in difflib.unified_diff(before, after, fromfile=f"a/{path}", tofile=f"b/{path}"):
        out.append(line)
        if not line.endswith("\n"):
            out.append("\n" + NO_NEWLINE)
    return "".join(out)
