"""The project oracle: is `apply` of a whole project, of any subset of its files, or of one file
through stdin, still the same set of programs, each pinned to the policy GPU?

`judge_project(files, starts)` writes the project to a temporary folder, runs every process start
(tests/oracle/project_gen.py) under the recording stubs of tests/oracle/runner.py before any fix,
then for each way of applying (the whole tree; random subsets; each file alone through the stdin
path editors use) fixes a fresh copy and runs every start again. A start runs as it would for
real: a script with its folder on sys.path, `python -m`, pytest (conftest first), the installed
console script (`from mod import func; func()`), a notebook's code cells in order in its folder
(`%env` sets the variable). Plugins run by path (`spec_from_file_location`, `runpy.run_path`,
`exec(open(p).read())`) count as files the process ran. `subprocess.Popen` (so `run`,
`check_call`, ...) of `[sys.executable, "x.py"]` or `[sys.executable, "-m", "mod"]` runs that child
in its own fork with exactly the env it is given (or its parent's), recorded under its parent and
judged like any process, its parent's findings counting for it (the parent hands it its env). It
returns the problems found, each tagged with a family:

- header   at the first framework import of a process the mask is not the policy's or the order
           not PCI_BUS_ID, and no file the process ran still has a finding that says so
- device   a device call addresses another physical GPU than before (index 0 and a bare "cuda"
           are the default device, which the header deliberately makes the policy's first GPU),
           and no finding is left on its line
- exception  a process raises what it did not raise before
- equal    `scan FILE`, `scan .` and `scan - --stdin-filename FILE` disagree on FILE's findings
           (rule, place, message without the note of a held fix)
- internal the pipeline failed

Test-only: gpufix itself never runs users' code.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path

from . import runner
from .oracle import HEADER_RULES, ORDINAL_RULES, _is_default, _physical, notebook_to_python

_NOTE = re.compile(r" \(not fixed in this run: .*\)$")


# -- running one process start of a project ---------------------------------------------------------
_SYS_PATH: list = []  # sys.path as the oracle found it: each process (a child too) starts from it


class _Popen:
    """subprocess.Popen in a process under the oracle: `[sys.executable, "x.py", ...]` runs x.py as
    a child process (forked again, under the stubs, with the env it is given: `env=` or this
    process's own environment) and records it; any other command does nothing and succeeds."""

    children: list = []
    root = ""

    def __init__(self, args, *rest, env=None, cwd=None, **kwargs):
        self.args, self.returncode = args, 0
        self.stdout = self.stderr = self.stdin = None
        self.pid = 0
        argv = [str(a) for a in args] if isinstance(args, (list, tuple)) else []
        start = None
        if len(argv) >= 2 and argv[0] == sys.executable and argv[1].endswith(".py"):
            path = os.path.abspath(os.path.join(cwd or os.getcwd(), argv[1]))
            start = ("script", os.path.relpath(path, self.root).replace(os.sep, "/"))
        elif len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m":
            start = ("module", argv[2])
        if start is not None:
            child_env = dict(os.environ if env is None else env)
            root = self.root
            record = runner.run_forked(lambda w: _start_child(root, start, w, env=child_env), 20.0, "child process")
            _Popen.children.append({"start": " ".join(start), "env": [child_env.get(v) for v in runner.ENV],
                                    "record": record})
            self.returncode = 1 if record["exception"] else 0

    def wait(self, timeout=None):
        return self.returncode

    def poll(self):
        return self.returncode

    def communicate(self, input=None, timeout=None):
        return (None, None)

    def kill(self):
        pass

    terminate = kill

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _start_child(root: str, start: tuple, w: int, env: dict = None) -> None:
    """Run one process start (or, with `env`, a subprocess child started as `python PATH` with
    exactly that environment) and write its record to `w`."""
    import builtins
    import runpy
    import subprocess

    if not _SYS_PATH:
        _SYS_PATH[:] = sys.path
    sys.path[:] = _SYS_PATH
    # No bytecode of the project's modules: Python trusts a .pyc whose source has the same size and
    # the same whole second of mtime, so a start after `apply` changed `cuda:1` to `cuda:0` within
    # that second would run the code from before (the case passed only where
    # PYTHONDONTWRITEBYTECODE was set).
    sys.dont_write_bytecode = True
    if env is None:
        for var in runner.ENV:
            os.environ.pop(var, None)
            os.unsetenv(var)
    else:  # a child: the environment its parent gave it, nothing else
        os.environ.clear()
        os.environ.update(env)
    runner.STATE.__init__()
    _Popen.children = []
    _Popen.root = root
    subprocess.Popen = _Popen
    tops = runner.stub_tops()
    for name in list(sys.modules):
        if name.split(".")[0] in tops:
            del sys.modules[name]
    sys.meta_path.insert(0, runner._Finder(tops))
    prefix = root.rstrip(os.sep) + os.sep
    # The project's own names, as the process would find them: never a module the parent (pytest,
    # with its own conftest) already holds under the same name.
    own = set()
    texts = {}  # text of a project .py file -> its path: `exec(open(p).read())` runs that file
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            own.add(name[:-3] if name.endswith(".py") else name)
            if name.endswith(".py"):
                with open(os.path.join(dirpath, name), encoding="utf-8") as fh:
                    texts.setdefault(fh.read(), os.path.join(dirpath, name))
    for name in list(sys.modules):
        if name.split(".")[0] in own:
            del sys.modules[name]
    importlib.invalidate_caches()
    notebooks = {}  # abs path of a notebook run here -> {program line: (cell, line in cell)}

    def where(filename: str, line: int) -> str:
        rel = os.path.relpath(filename, root).replace(os.sep, "/")
        if filename in notebooks:
            cell, n = notebooks[filename].get(line, (0, line))
            return f"{rel}#{cell}:{n}"
        return f"{rel}:{line}"

    def caller_line():
        f = sys._getframe(2)
        while f is not None:
            filename = os.path.abspath(f.f_code.co_filename)  # `runpy.run_path("plugins/p.py")`: relative
            if filename.startswith(prefix):
                return where(filename, f.f_lineno)
            f = f.f_back
        return "?"

    runner._caller_line = caller_line
    executed = set()  # every project file whose code ran (imported, by path, exec'd)

    def audit(event, args):
        if event == "exec" and args and hasattr(args[0], "co_filename"):
            filename = os.path.abspath(args[0].co_filename)
            if filename.startswith(prefix):
                executed.add(filename)

    if not getattr(runner, "_audit_installed", False):
        sys.addaudithook(lambda e, a: runner._audit(e, a))
        runner._audit_installed = True
    runner._audit = audit
    real_exec = builtins.exec

    def exec_(code, *args, **kwargs):
        if isinstance(code, str) and code in texts:  # exec(open(p).read()): the code of p
            code = compile(code, texts[code], "exec")
        return real_exec(code, *args, **kwargs)

    builtins.exec = exec_
    os.chdir(root)
    out = io.StringIO()
    sys.stdout = out
    exc_name = None
    kind, what = start
    try:
        if kind == "script":
            path = os.path.join(root, what)
            sys.path.insert(0, os.path.dirname(path))
            sys.argv = [path]
            runpy.run_path(path, run_name="__main__")
        elif kind == "module":  # `python -m NAME` in the project root
            sys.path.insert(0, root)
            runpy.run_module(what, run_name="__main__", alter_sys=True)
        elif kind == "console":  # the installed script: `from mod import func; sys.exit(func())`
            sys.path.insert(0, root)
            sys.argv = ["demo-run"]
            mod, _, func = what.partition(":")
            sys.exit(getattr(importlib.import_module(mod), func)())
        elif kind == "notebook":  # a kernel started in the notebook's folder runs the cells in order
            path = os.path.join(root, what)
            with open(path, "rb") as fh:
                code, notebooks[path] = notebook_to_python(fh.read())
            os.chdir(os.path.dirname(path))
            sys.path.insert(0, os.path.dirname(path))
            real_exec(compile(code, path, "exec"), {"__name__": "__main__", "__builtins__": builtins})
        else:  # pytest: rootdir on sys.path (`python -m pytest`), the test folder prepended
            path = os.path.join(root, what)
            sys.path[:0] = [os.path.dirname(path), root]
            if os.path.exists(os.path.join(os.path.dirname(path), "conftest.py")):
                __import__("conftest")
            mod = __import__(Path(path).stem)
            for name in sorted(vars(mod)):
                if name.startswith("test_") and callable(getattr(mod, name)):
                    getattr(mod, name)()
    except SystemExit:
        pass
    except BaseException as exc:  # what the process raised is the result
        exc_name = f"{type(exc).__name__}: {exc}"
    builtins.exec = real_exec
    ran = {m.__file__ for m in list(sys.modules.values())
           if getattr(m, "__file__", None) and str(m.__file__).startswith(prefix)}
    ran = sorted({os.path.relpath(a, root).replace(os.sep, "/") for a in ran | executed})
    if kind in ("script", "notebook"):
        ran.append(what)
    elif kind == "module":
        as_file = what.replace(".", "/") + ".py"
        ran.append(as_file if os.path.isfile(os.path.join(root, as_file)) else what.replace(".", "/") + "/__main__.py")
    result = {"import_env": runner.STATE.import_env, "frozen_env": runner.STATE.frozen_env,
              "calls": runner.STATE.calls, "exception": exc_name, "ran": sorted(set(ran)),
              "stdout": out.getvalue(), "children": _Popen.children}
    runner.write_record(w, result)


def run_start(root: str, start: tuple, timeout: float = 20.0) -> dict:
    runner.catalog()
    return runner.run_forked(lambda w: _start_child(root, start, w), timeout, "process")


# -- gpufix on a project -------------------------------------------------------------------------
def _write(root: Path, files: dict) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def _resolver():
    from gpufix.config import PolicyResolver

    return PolicyResolver()


def scan_findings(root: Path, paths: list) -> dict:
    """rel path -> [Finding] of `gpufix scan PATHS` run in `root` (no cache)."""
    from gpufix.engine import Options, scan

    cwd = os.getcwd()
    os.chdir(root)
    try:
        resolver = _resolver()
        res = scan(paths, resolver.for_path(paths[0]), Options(use_cache=False, jobs=1), resolver=resolver)
    finally:
        os.chdir(cwd)
    out: dict = {}
    for f in res.findings:
        out.setdefault(f.path, []).append(f)
    return out


def stdin_findings(root: Path, rel: str) -> list:
    """What `gpufix scan - --stdin-filename REL` reports (the CLI's own stdin path)."""
    from gpufix.catalog import catalog_for
    from gpufix.cli import _stdin_project
    from gpufix.engine import gather_pairs, lint_bytes

    cwd = os.getcwd()
    os.chdir(root)
    try:
        resolver = _resolver()
        raw = (root / rel).read_bytes()
        policy = _stdin_project(resolver.for_path(rel), rel, raw, use_cache=False)
        res = lint_bytes(raw, os.path.abspath(rel), rel, policy, True, catalog_for(policy))
        return gather_pairs(policy, [(policy, res)]).findings
    finally:
        os.chdir(cwd)


def apply_paths(root: Path, paths: list) -> None:
    from gpufix.apply import ApplyOptions, run_apply

    cwd = os.getcwd()
    os.chdir(root)
    try:
        resolver = _resolver()
        run_apply(paths, resolver.for_path(paths[0]), ApplyOptions(backup=False, tag=False, allow_dirty=True, jobs=1),
                  resolver=resolver)
    finally:
        os.chdir(cwd)


def apply_stdin(root: Path, rel: str) -> None:
    """`gpufix apply - --stdin-filename REL < REL > REL` (an editor's fix-on-save)."""
    from gpufix.cli import stdin_fixed_bytes

    cwd = os.getcwd()
    os.chdir(root)
    try:
        resolver = _resolver()
        raw = (root / rel).read_bytes()
        new = stdin_fixed_bytes(resolver.for_path(rel), rel, raw, False)
        (root / rel).write_bytes(new)
    finally:
        os.chdir(cwd)


def _key(f) -> tuple:
    return (f.rule, getattr(f, "cell", None), f.line, f.column, f.end_line, f.end_column, _NOTE.sub("", f.message))


# -- the judgement ----------------------------------------------------------------------------------
def _left_at(where: str, findings_after: dict) -> bool:
    """Whether a finding that keeps a device call as it was is left at `where` ("rel:line", or
    "rel#cell:line" in a notebook)."""
    rel, _, line = str(where).rpartition(":")
    rel, _, cell = rel.partition("#")
    if not line.isdigit():
        return False
    n = int(line)
    for f in findings_after.get(rel, ()):
        if cell and str(getattr(f, "cell", None)) != cell:
            continue
        if f.rule in ORDINAL_RULES and f.line <= n <= f.end_line:
            return True
        if f.rule in ORDINAL_RULES and re.search(rf"\bon line {n}\)", f.message):
            return True  # a helper's default, used on line n: "(f()'s default for index, ... on line n)"
        if f.rule == "GPU004" and f"(line {line})" in f.message:  # multi-GPU code, left alone
            return True
    return False


def _cpu_run(env) -> bool:
    """Whether a recorded (mask, order) is an explicit CPU run (`""`, `" "`, `"-1"`): under
    `cpu-runs = "keep"` (the default) the header leaves it, and no CUDA ordinal names a GPU."""
    return bool(env) and env[0] is not None and env[0].strip() in ("", "-1")


def compare(before: dict, after: dict, findings_after: dict, policy: str, also_ran=()) -> list:
    """Problems of one process start after apply; `also_ran`: files whose findings also speak for
    this process (a child's parent, which hands it its env)."""
    problems = []
    if after["exception"] and after["exception"] != before["exception"]:
        problems.append(("exception", f"raises {after['exception']} (before: {before['exception']})"))
        return problems
    ran = set(after["ran"]) | set(before["ran"]) | set(also_ran)
    kept_cpu = _cpu_run(after["import_env"]) and (before["import_env"] or [None])[0] == after["import_env"][0]
    if after["import_env"] is not None and after["import_env"] != [policy, "PCI_BUS_ID"] and not kept_cpu:
        if not any(f.rule in HEADER_RULES for rel in ran for f in findings_after.get(rel, ())):
            problems.append(("header", f"first framework import under {after['import_env']}, no finding left in {sorted(ran)}"))
    ca, cb = before["calls"], after["calls"]
    if len(ca) != len(cb):
        problems.append(("calls", f"{len(ca)} framework calls before, {len(cb)} after"))
        return problems
    for x, y in zip(ca, cb):
        if x["name"] != y["name"] or len(x["devices"]) != len(y["devices"]):
            problems.append(("calls", f"call {x['name']} became {y['name']}"))
            continue
        for d1, d2 in zip(x["devices"], y["devices"]):
            if _is_default(d1) and _is_default(d2):
                continue
            if d1["kind"] != "nvml" and _cpu_run(before["frozen_env"]) and _cpu_run(after["frozen_env"]):
                continue  # a CPU run before and after: no ordinal names a GPU
            p1 = _physical(d1, before["frozen_env"], True)
            p2 = _physical(d2, after["frozen_env"], False)
            if p1 == p2:
                continue
            if d1["raw"] == d2["raw"] and (before["frozen_env"] or [None])[0] == (after["frozen_env"] or [None])[0]:
                continue  # the same literal under the same mask: whatever it names, it still does
            if _left_at(y["line"], findings_after):
                continue
            problems.append(("device", f"{x['name']} at {y['line']}: {d1['raw']!r} = {p1} under "
                             f"{(before['frozen_env'] or [None])[0]!r} became {d2['raw']!r} = {p2} under "
                             f"{(after['frozen_env'] or [None])[0]!r}, no finding left"))
    kb, ka = before.get("children", []), after.get("children", [])
    if [c["start"] for c in kb] != [c["start"] for c in ka]:
        problems.append(("calls", f"children {[c['start'] for c in kb]} became {[c['start'] for c in ka]}"))
        return problems
    for c1, c2 in zip(kb, ka):
        for fam, text in compare(c1["record"], c2["record"], findings_after, policy, ran):
            problems.append((fam, f"child {c2['start']} (env {c1['env']} -> {c2['env']}): {text}"))
    return problems


def _all_ran(record: dict) -> set:
    """The files a process and its children ran."""
    out = set(record["ran"])
    for c in record.get("children", ()):
        out |= _all_ran(c["record"])
    return out


def _changed(orig: Path, work: Path, rels) -> bool:
    for rel in rels:
        a, b = orig / rel, work / rel
        if not b.is_file() or a.read_bytes() != b.read_bytes():
            return True
    return False


def judge_project(files: dict, starts: list, rng: random.Random, subsets: int = 2, stdin: bool = True,
                  equality=True, extra_ways=()) -> list:
    """Problems (family, how applied, start, text) of one generated project. `extra_ways`: more
    (how, paths) to apply by, how being "subset" or "stdin" (a named case's own). `equality`: True
    (every file), False, or how many files (drawn by `rng`) to compare scan FILE, scan . and stdin
    on. A start none of whose files (its children's included) changed is not run again: the
    program is the same, so is its record."""
    from .project_gen import POLICY

    problems = []
    base = Path(tempfile.mkdtemp(prefix="gpufix-project-oracle-"))
    try:
        orig = base / "orig"
        _write(orig, files)
        before = {s: run_start(str(orig), s) for s in starts}
        py = sorted(rel for rel in files if rel.endswith((".py", ".ipynb")))
        if equality:
            whole = scan_findings(orig, ["."])
            compared = py if equality is True else sorted(rng.sample(py, min(int(equality), len(py))))
            for rel in compared:
                alone = scan_findings(orig, [rel]).get(rel, [])
                via_stdin = stdin_findings(orig, rel)
                a = sorted(map(_key, whole.get(rel, [])))
                if sorted(map(_key, alone)) != a:
                    problems.append(("equal", "scan FILE", rel, f"{sorted(map(_key, alone))} != {a}"))
                if sorted(map(_key, via_stdin)) != a:
                    problems.append(("equal", "stdin", rel, f"{sorted(map(_key, via_stdin))} != {a}"))
        ways = [("whole", ["."])]
        for _ in range(subsets):
            k = rng.randint(1, max(1, len(py)))
            ways.append(("subset", sorted(rng.sample(py, k))))
        if stdin:
            ways.append(("stdin", [rng.choice(py)]))
        ways += [(how, list(paths)) for how, paths in extra_ways]
        for n, (how, paths) in enumerate(ways):
            work = base / f"w{n}"
            shutil.copytree(orig, work)
            try:
                if how == "stdin":
                    apply_stdin(work, paths[0])
                else:
                    apply_paths(work, paths)
                left = scan_findings(work, ["."])
            except Exception as exc:  # the pipeline itself failed
                problems.append(("internal", how, paths, f"{type(exc).__name__}: {exc}"))
                continue
            for s in starts:
                after = run_start(str(work), s) if _changed(orig, work, _all_ran(before[s])) else before[s]
                for fam, text in compare(before[s], after, left, POLICY):
                    problems.append((fam, f"{how} {' '.join(paths)}", f"{s[0]} {s[1]}", text))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return problems


def main(argv) -> int:
    """`python -m oracle.project_oracle N [SEED] [OUTDIR]` from tests/: the long run."""
    import time
    from collections import Counter

    from .project_gen import random_project

    n = int(argv[0]) if argv else 100
    seed = int(argv[1]) if len(argv) > 1 else 0
    outdir = Path(argv[2]) if len(argv) > 2 else None
    rng = random.Random(seed)
    families: Counter = Counter()
    bad = 0
    t0 = time.time()
    for i in range(n):
        files, starts = random_project(rng)
        try:
            problems = judge_project(files, starts, rng)
        except Exception as exc:
            problems = [("internal", "", "", f"{type(exc).__name__}: {exc}")]
        if problems:
            bad += 1
            for fam in sorted({p[0] for p in problems}):
                families[fam] += 1
            if outdir is not None:
                outdir.mkdir(parents=True, exist_ok=True)
                (outdir / f"project_{seed}_{i}.json").write_text(
                    json.dumps({"files": files, "starts": starts, "problems": problems}, indent=1))
    print(f"projects: {n} (seed {seed}) in {time.time() - t0:.0f} s; with counterexamples: {bad}")
    for fam, count in families.most_common():
        print(f"  {fam}: {count}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
