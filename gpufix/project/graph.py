"""The project's import graph as a plain function of the files' records (`_build_graph`): where
imports resolve (Python's sys.path rules), which files are entry points, what covers the rest;
the result is a ProjectIndex."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Optional

from gpufix.project.children import child_launches
from gpufix.project.imports import _entry_to_file
from gpufix.project.meta import _TEST_FILE_RE, _rel

@dataclasses.dataclass(frozen=True)
class ProjectIndex:
    """What the per-file rules need from the whole project (passed to the workers in the Policy)."""

    root: str
    first_party: tuple = ()  # top-level names that are the project's own code
    # abs path -> why the file must hold the header ("a script (`__main__` guard)", ...)
    entries: tuple = ()  # tuple of (abs_path, reason)
    # abs path of a GPU module outside `entries` -> what covers it
    covered: tuple = ()  # tuple of (abs_path, covered-by text)
    graph_built: bool = False
    unparsed: frozenset = frozenset()  # files the index could not read: linted anyway, to report why
    # abs path -> the project files importing it runs (tuple of (abs_path, tuple of abs paths)):
    # which processes run a file, for the fixes that are safe only together (see fix_holds)
    edges: tuple = ()
    # first-party device helpers: (function name, parameter, position or None, abs path)
    helpers: tuple = ()
    # scripts other project files start by path: (child, parent, file of the parent's process that
    # counts its GPUs or ""), see gpufix.project.children
    launched: tuple = ()
    # the .py files whose text names a mask variable (fix_holds: which of the files an entry
    # point's process runs may set its mask), read with each file's index record
    names_mask: frozenset = frozenset()
    # (abs path, attribute names read in the values it writes into CUDA_VISIBLE_DEVICES) for the
    # files that write one from an attribute (`str(args.cuda_device)`): GPU108's options
    mask_attrs: tuple = ()
    # the files that pick their CUDA device from the process rank: (abs path, line, use, the
    # function holding it or ""), from each file's index record (gpufix.rankflow): a header in the
    # entry point of a process that runs one is an unsafe fix (RuleContext.rank_launch)
    rank_devices: tuple = ()

    @property
    def entry_map(self) -> dict:
        d = self.__dict__.get("_entry_map")
        if d is None:
            d = dict(self.entries)
            object.__setattr__(self, "_entry_map", d)
        return d

    @property
    def covered_map(self) -> dict:
        d = self.__dict__.get("_covered_map")
        if d is None:
            d = dict(self.covered)
            object.__setattr__(self, "_covered_map", d)
        return d

    def to_json(self) -> dict:
        return {"root": self.root, "first_party": list(self.first_party), "entries": [list(e) for e in self.entries],
                "covered": [list(c) for c in self.covered], "graph_built": self.graph_built,
                "unparsed": sorted(self.unparsed), "edges": [[a, list(t)] for a, t in self.edges],
                "helpers": [list(h) for h in self.helpers], "launched": [list(x) for x in self.launched],
                "names_mask": sorted(self.names_mask), "mask_attrs": [[a, list(t)] for a, t in self.mask_attrs],
                "rank_devices": [list(r) for r in self.rank_devices]}

    @classmethod
    def from_json(cls, data: dict) -> "ProjectIndex":
        return cls(data["root"], tuple(data["first_party"]), tuple(tuple(e) for e in data["entries"]),
                   tuple(tuple(c) for c in data["covered"]), bool(data["graph_built"]), frozenset(data["unparsed"]),
                   tuple((a, tuple(t)) for a, t in data.get("edges", ())),
                   tuple(tuple(h) for h in data.get("helpers", ())), tuple(tuple(x) for x in data.get("launched", ())),
                   frozenset(data.get("names_mask", ())), tuple((a, tuple(t)) for a, t in data.get("mask_attrs", ())),
                   tuple(tuple(r) for r in data.get("rank_devices", ())))

    def launched_by(self, a: str) -> list:
        """(parent, counter) of the project files that start script `a` by path."""
        a = os.path.abspath(a)
        return [(p, c) for child, p, c in self.launched if child == a]

    def mask_attrs_of_importers(self, a: str) -> frozenset:
        """The attribute names that the project files importing `a` write into a mask (their own or
        a child's environment, as GPU108 counts a write in the option's own file): an option `a`
        parses (`args.cuda_device`) that one of them writes into CUDA_VISIBLE_DEVICES."""
        a = os.path.abspath(a)
        attrs = dict(self.mask_attrs)
        return frozenset(x for imp in self.importers_map.get(a, ()) for x in attrs.get(imp, ()))

    @property
    def imports_map(self) -> dict:
        d = self.__dict__.get("_imports_map")
        if d is None:
            d = dict(self.edges)
            object.__setattr__(self, "_imports_map", d)
        return d

    @property
    def importers_map(self) -> dict:
        d = self.__dict__.get("_importers_map")
        if d is None:
            d = {}
            for a, targets in self.edges:
                for t in targets:
                    d.setdefault(t, []).append(a)
            object.__setattr__(self, "_importers_map", d)
        return d

    def _starts_above(self, a: str) -> list:
        """Entry points that run before `a` whenever `a` runs: the `__init__.py` of the packages
        holding it, and (for a test module) the rootmost conftest.py above it."""
        out = []
        entry_map = self.entry_map
        d = os.path.dirname(a)
        root = self.root.rstrip(os.sep)
        while d.startswith(root + os.sep) or d == root:
            init = os.path.join(d, "__init__.py")
            if init != a and init in entry_map:
                out.append(init)
            if d == root:
                break
            d = os.path.dirname(d)
        name = os.path.basename(a)
        if _TEST_FILE_RE.match(name) or name == "conftest.py":
            d = os.path.dirname(a)
            while True:
                c = os.path.join(d, "conftest.py")
                if c != a and c in entry_map:
                    out.append(c)
                if d == root or not d.startswith(root + os.sep):
                    break
                d = os.path.dirname(d)
        return out

    def starting_entries(self, a: str) -> list:
        """The entry points (other than `a`) whose processes run `a`: every entry point among the
        files that import it, directly or not, and those that run before them; sorted."""
        a = os.path.abspath(a)
        entry_map = self.entry_map
        importers = self.importers_map
        seen = {a}
        stack = [a]
        out = set()
        while stack:
            v = stack.pop()
            if v != a and v in entry_map:
                out.add(v)
            for s in self._starts_above(v):
                out.add(s)
            for imp in importers.get(v, ()):
                if imp not in seen:
                    seen.add(imp)
                    stack.append(imp)
        out.discard(a)
        return sorted(out)

    def run_by(self, entry: str) -> list:
        """The files (other than `entry`) a process started at `entry` may run: what it imports,
        directly or not, and for a package's `__init__.py` / a conftest.py the modules under it."""
        entry = os.path.abspath(entry)
        imports = self.imports_map
        start = [entry]
        name = os.path.basename(entry)
        if name in ("__init__.py", "conftest.py") and entry in self.entry_map:
            prefix = os.path.dirname(entry) + os.sep
            for a in imports:
                if a.startswith(prefix) and (name == "__init__.py" or _TEST_FILE_RE.match(os.path.basename(a))):
                    start.append(a)
        seen = set(start)
        stack = list(start)
        while stack:
            v = stack.pop()
            for t in imports.get(v, ()):
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        seen.discard(entry)
        return sorted(seen)

    def rank_device_in(self, entry: str, text: str) -> Optional[tuple]:
        """(abs path, line, use) of the first file (by path) other than `entry` that the process
        started at `entry` (whose source is `text`) runs and that picks its CUDA device from the
        process rank there: at import, or in a function `text` names (`init_distributed_mode(args)`
        in DETR's main.py). A library's rank code that the entry point never calls
        (`ModelMixin.enable_parallelism`) does not count; neither does a call through another
        function (not followed)."""
        if not self.rank_devices:
            return None
        entry = os.path.abspath(entry)
        # the files whose rank code the entry point runs if it runs the file, by path (one record
        # each, sorted): the walk of what the process runs is made only when one is left
        # (diffusers' 154 entry points name none of its rank functions: no walk at all)
        named = [r for r in self.rank_devices
                 if r[0] != entry and (not r[3] or (r[3] in text and re.search(r"\b%s\b" % re.escape(r[3]), text)))]
        if not named:
            return None
        runs = set(self.run_by(entry))
        return next((r[:3] for r in named if r[0] in runs), None)

    def fingerprint(self) -> str:
        blob = repr((self.first_party, self.entries, self.covered, self.graph_built, sorted(self.unparsed),
                     self.helpers, self.launched, sorted(self.names_mask), self.mask_attrs, self.rank_devices)).encode()
        return hashlib.blake2b(blob, digest_size=12).hexdigest()


def _name_base(a: str, name: str) -> str:
    """The folder that must be on sys.path for `a` to be imported as `name`
    (`root/x/pkg/mod.py` as `pkg.mod`: `root/x`)."""
    up = name.count(".") + 1 + (1 if os.path.basename(a) == "__init__.py" else 0)
    base = a
    for _ in range(up):
        base = os.path.dirname(base)
    return base


def _name_bases(a: str, names: list) -> list:
    """[_name_base(a, name) for name in names]: a file's names differ only in their number of dots
    (`pkg.mod`, `mod`), so each folder above it is computed once."""
    folders = [a]  # folders[k]: `a` with k parts cut
    init = 1 if os.path.basename(a) == "__init__.py" else 0
    out = []
    for name in names:
        up = name.count(".") + 1 + init
        while len(folders) <= up:
            folders.append(os.path.dirname(folders[-1]))
        out.append(folders[up])
    return out


_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | frozenset(sys.builtin_module_names)


def resolver_for(root: Path, named: dict):
    """`targets(importer, dotted name)` -> the project files an import runs, as Python's import
    system finds them: the first folder on sys.path that holds the top name wins (the importer's
    own folder, which is sys.path[0] when it runs as a script; the project root; `src/`; then the
    folders above the importer, where `sys.path` edits usually point), and every part of the name
    is looked up under that same folder (`import train.utils` never runs another folder's
    `train.py`). A standard-library name resolves only to a module beside the importer (the one
    place that shadows it). `named`: dotted name -> [(abs path, sys.path folder)]."""
    root_s = str(root)
    src_s = os.path.join(root_s, "src")
    tops_at: dict = {}
    at_base: dict = {}  # (dotted name, sys.path folder) -> the files it names there, in `named`'s order
    for name, cands in named.items():
        top = name.split(".", 1)[0]
        for c, base in cands:
            tops_at.setdefault(base, set()).add(top)
            at_base.setdefault((name, base), []).append(c)
    # the top names of the project's files: an import of any other (`torch`, `os`) names none
    every_top = frozenset(name.split(".", 1)[0] for name in named)
    # A top name held by one sys.path folder only, the root or `src/` (which every importer's
    # folders hold): its imports name the same files from every folder (asked once, not per folder).
    bases_of: dict = {}
    for base, tops in tops_at.items():
        for top in tops:
            bases_of.setdefault(top, set()).add(base)
    anywhere = {top for top, bases in bases_of.items() if len(bases) == 1 and bases & {root_s, src_s}
                and top not in _STDLIB}
    memo: dict = {}  # (importer's folder, dotted name) -> the files it names

    chains: dict = {}  # a folder -> the sys.path folders its files search (one walk up per folder)

    def bases_for(here: str, top: str) -> list:
        if top in _STDLIB:
            return [here]
        out = chains.get(here)
        if out is None:
            out = [here, root_s, src_s]
            d = here
            while d.startswith(root_s + os.sep):
                d = os.path.dirname(d)
                out.append(d)
            chains[here] = out
        return out

    def targets(importer: str, name: str) -> list:
        if name.startswith("pattern:"):
            import fnmatch

            rx = re.compile(fnmatch.translate(name[len("pattern:"):]).replace(".*", "[^.]*"))
            return sorted({c for n, cands in named.items() if rx.match(n) for c, base in cands
                           if base in (root_s, src_s)})
        parts = name.split(".")
        if parts[0] not in every_top:
            return []
        here = os.path.dirname(importer)
        key = ("", name) if parts[0] in anywhere else (here, name)
        got = memo.get(key)
        if got is not None:
            return got
        out: list = []
        for base in bases_for(here, parts[0]):
            if parts[0] in tops_at.get(base, ()):
                for i in range(1, len(parts) + 1):
                    out += at_base.get((".".join(parts[:i]), base), ())
                break
        memo[key] = out
        return out

    def targets_of(importer: str, names) -> set:
        """The set of the files all of `names` run (`targets` of each), the importer's folder found
        once: `from pkg.sub import a, b, c` names pkg/__init__.py and pkg/sub/__init__.py 4 times."""
        here = os.path.dirname(importer)
        out: set = set()
        for name in names:
            top = name.partition(".")[0]
            if top not in every_top and not name.startswith("pattern:"):
                continue  # a module of no project file (what `targets` says without a lookup)
            got = memo.get(("", name) if top in anywhere else (here, name))
            out.update(got if got is not None else targets(importer, name))
        return out

    targets.of = targets_of  # the graph's first walk asks for all of a file's imports at once
    return targets


def _rels(paths, root: Path) -> dict:
    """{_rel(a, root): a for a in paths}, by string where that is the same: a normalised absolute
    POSIX path under the root (pathlib's relative_to costs ~50x a slice; Windows paths compare
    case-blind, so they keep it)."""
    root_s = str(root)
    prefix = root_s + "/"
    fast = os.name == "posix" and root_s.startswith("/") and not root_s.startswith("//") and root_s != "/"
    out = {}
    for a in paths:
        rest = a[len(prefix):] if fast and a.startswith(prefix) else None
        if rest is None or "//" in f"/{rest}/" or "/./" in f"/{rest}/":
            rest = _rel(a, root)  # outside the root, or not normalised: as pathlib says
        out[rest] = a
    return out


def _path_targets(importer: str, written: str, root: Path, by_rel: dict) -> list:
    """The project files a path a file loads by (gpufix.project.imports.path_loads) may name: the
    path from the project root (the usual working folder), from the loader's own folder
    (`os.path.join(os.path.dirname(__file__), ...)`), or, with no better match, any file whose path
    ends with it (the folder it is run from is not known: every candidate counts). A bare
    `__init__.py` under a folder held in a variable (`os.path.join(PATH_TO_PKG, "__init__.py")`)
    names no file: every package has one."""
    out = []
    for base in (str(root), os.path.dirname(importer)):
        rel = _rel(os.path.normpath(os.path.join(base, written)), root)
        if rel in by_rel:
            out.append(by_rel[rel])
    if not out and written != "__init__.py":
        tail = "/" + written
        out = [b for r, b in by_rel.items() if r.endswith(tail)]
    return out


def _build_graph(root: Path, first_party: tuple, abs_files: list, py_files: list, entries: dict,
                 packaged: bool) -> ProjectIndex:
    records = entries
    parsed: dict = {}
    named: dict = {}
    unparsed: set = set()
    tops: dict = {}
    for a in py_files:
        got = _entry_to_file(a, entries[a], tops)
        if got is None:
            unparsed.add(a)
            continue
        f, import_names = got
        parsed[a] = f
        for name, base in zip(import_names, _name_bases(a, import_names)):
            named.setdefault(name, []).append((a, base))
    parsed = {a: parsed[a] for a in abs_files if a in parsed}  # discovery order, as before
    by_module = {name: [(a, base == str(root)) for a, base in cands] for name, cands in named.items()}
    targets = resolver_for(root, named)

    reverse: dict = {}
    forward: dict = {}
    by_rel = None
    for a, f in parsed.items():
        outs = forward.setdefault(a, set())
        found = targets.of(a, f.imports)  # a set: the graph's edges are sets
        loads = records[a].get("loads", ())
        if loads:
            if by_rel is None:
                by_rel = _rels(parsed, root)
            found.update(t for s in loads for t in _path_targets(a, s, root, by_rel))
        for t in found:
            if t != a:
                reverse.setdefault(t, set()).add(a)
                outs.add(t)
    # Folders outside any package whose files other files import by a dotted path from the root
    # (`import ldm_patched.contrib.external_freeu`): namespace packages; their other files are
    # modules of that package, not scripts.
    namespace_dirs = set()
    for f in parsed.values():
        for name in f.imports:
            if "." in name and not name.startswith("pattern:"):
                for c, from_root in by_module.get(name, ()):
                    if from_root and parsed.get(c) is not None and parsed[c].top is None:
                        namespace_dirs.add(Path(c).parent)
    namespace_dirs.discard(root)
    # A file with a `__main__` guard or a shebang is a script whether or not other files import
    # it (bert's run_classifier.py is imported by its siblings and run by its README); a file
    # outside any package is a script only when no project file imports it.
    for a, f in parsed.items():
        if a in reverse and f.script == "a file outside any package":
            f.script = None
    reaches = _reaching(parsed, records, reverse, forward, named, targets)

    entries: dict = {}
    # Conftest trees: the rootmost conftest.py (no conftest.py in a folder above it, up to the root).
    conftests = sorted((Path(a) for a in parsed if Path(a).name == "conftest.py"), key=lambda p: len(p.parts))
    rootmost: list = []
    for c in conftests:
        if not any(r.parent in c.parents for r in rootmost):
            rootmost.append(c)

    rootmost_dirs = [(r, str(r.parent) + os.sep) for r in rootmost]

    def conftest_above(p: Path) -> Optional[Path]:
        """The rootmost conftest.py whose folder holds `p` (at any depth)."""
        where = str(p)
        for r, prefix in rootmost_dirs:
            if where.startswith(prefix):
                return r
        return None

    # Top packages that hold a module reaching a GPU framework.
    gpu_tops: dict = {}
    for a in reaches:
        f = parsed[a]
        if f.top is not None:
            gpu_tops.setdefault(f.top, a)
    internal = _internal_packages(parsed, reverse, gpu_tops, packaged)
    for a, f in parsed.items():
        p = f.path
        if f.is_init and f.top == p.parent and p.parent in gpu_tops and p.parent not in internal:
            entries[a] = f"the top `__init__.py` of the package `{f.module}` (Python runs it before any of its modules)"
    for c in rootmost:
        prefix = str(c.parent) + os.sep
        tree_reaches = any(a.startswith(prefix) for a in reaches)
        if tree_reaches:
            entries[str(c)] = "the rootmost `conftest.py` of its test tree (pytest imports it before the test modules)"
    for init in [a for a in entries if a.endswith("__init__.py")]:
        # A test package under a rootmost conftest.py that holds the header: pytest imports that
        # conftest.py first (fastchat's tests/__init__.py under the root conftest.py).
        pkg_dir = os.path.dirname(init)
        above = conftest_above(Path(pkg_dir))
        if above is not None and str(above) in entries and above.parent != Path(pkg_dir) and any(
                a.startswith(pkg_dir + os.sep) and _TEST_FILE_RE.match(os.path.basename(a)) for a in parsed):
            del entries[init]
    for c in list(rootmost):
        # A conftest.py inside a first-party package whose top `__init__.py` holds the header:
        # pytest imports that package first.
        if str(c) in entries and any(top in c.parents for top in gpu_tops if str(top / "__init__.py") in entries):
            del entries[str(c)]
    dash_m: set = set()  # top `__init__.py` files that hold a header for `python -m pkg.mod` alone
    started_m = {m for a in parsed for m in records[a].get("runs_m", ())}
    for a in sorted(reaches):
        # A project file starts `python -m pkg.mod` (a subprocess argv, a command string), which
        # runs the packages' `__init__.py` first: when one of them reaches the GPU, a header in
        # the module would come after the framework import, so the top `__init__.py` holds one
        # (decided before the loop below, so that no answer depends on the order files are seen).
        # The module keeps its own too: run by its path (`python pkg/tool.py`) it runs no
        # `__init__.py`. Without such a start, the rules below decide (a package whose
        # `__init__.py` holds a header of its own covers its guarded modules).
        f = parsed[a]
        if f.top is None or f.module not in started_m or f.script not in ("a script (`__main__` guard)", "a script (shebang)"):
            continue
        top_init = str(f.top / "__init__.py")
        if top_init in entries or top_init not in parsed:
            continue
        chain = [str(d / "__init__.py") for d in (f.path.parent, *f.path.parent.parents) if d == f.top or f.top in d.parents]
        if any(c in reaches for c in chain):
            entries[top_init] = (f"the top `__init__.py` of the package `{parsed[top_init].module}` "
                                 f"(`python -m` runs it before `{_rel(a, root)}`)")
            dash_m.add(top_init)
    for a in reaches:
        f = parsed[a]
        if a in entries or f.script is None:
            continue
        p = f.path
        if f.script == "a file outside any package":
            if conftest_above(p) is not None and (_TEST_FILE_RE.match(p.name) or p.name == "conftest.py"):
                continue  # a test module: pytest imports the conftest.py above it first
            if p.parent in namespace_dirs:
                continue  # a module of a namespace package other files import from
            if not f.gpu and all(
                parsed[t].top is not None and str(parsed[t].top / "__init__.py") in entries
                for name in f.imports for t in targets(a, name) if t in reaches
            ):
                continue  # not a script; it reaches the GPU only through packages whose header covers it
        if _TEST_FILE_RE.match(p.name) and f.script != "a console-script target" and (
            (conftest_above(p) is not None and str(conftest_above(p)) in entries)
            or (f.top is not None and str(f.top / "__init__.py") in entries)
        ):
            continue  # a test module: the test runner imports the conftest.py / package above it first
        if f.script in ("a script (`__main__` guard)", "a script (shebang)", "a console-script target") and (
                f.top is not None and str(f.top / "__init__.py") in entries) and str(f.top / "__init__.py") not in dash_m:
            # `python -m pkg.mod`, and the installed console script's `from pkg.mod import main`,
            # run pkg/__init__.py, which holds the header, first
            continue
        if f.script == "a `__main__.py`" and f.top is not None:
            if str(p.parent / "__init__.py") in entries:
                continue  # `python -m pkg` runs pkg/__init__.py, which holds the header, first
            chain = [str(d / "__init__.py") for d in (p.parent, *p.parent.parents) if d == f.top or f.top in d.parents]
            top_init = str(f.top / "__init__.py")
            if top_init in parsed and any(c in reaches for c in chain):
                # `python -m pkg` runs the packages' `__init__.py` first, and one of them reaches
                # the GPU: a header in `__main__.py` would come after the framework import
                entries[top_init] = (f"the top `__init__.py` of the package `{parsed[top_init].module}` "
                                     f"(`python -m` runs it before `{_rel(a, root)}`)")
                continue
        entries[a] = f.script
    covered: dict = {}
    rels: dict = {}  # the few headers that cover the GPU modules: each one's path made once

    def rel(a: str) -> str:
        got = rels.get(a)
        if got is None:
            got = rels[a] = _rel(a, root)
        return got

    for a in reaches:
        if a in entries or not parsed[a].gpu:
            continue
        f = parsed[a]
        p = f.path
        init = str(f.top / "__init__.py") if f.top is not None else None
        if init in entries:
            covered[a] = f"the header of `{rel(init)}`"
        elif conftest_above(p) is not None and str(conftest_above(p)) in entries:
            covered[a] = f"the header of `{rel(str(conftest_above(p)))}`"
        else:
            covered[a] = "the header of the scripts that import it"
    edges = tuple(sorted((a, tuple(sorted(t))) for a, t in forward.items()))
    helpers = tuple(sorted((h[0], h[1], h[2], a) for a in parsed for h in records[a].get("helpers", ())))
    launched = child_launches(str(root), {a: records[a] for a in parsed}, forward)
    names_mask = frozenset(a for a in parsed if records[a].get("names_mask"))
    mask_attrs = tuple(sorted((a, tuple(records[a]["mask_attrs"])) for a in parsed if records[a].get("mask_attrs")))
    rank_devices = tuple((a, *records[a]["rank_device"]) for a in sorted(parsed) if records[a].get("rank_device"))
    return ProjectIndex(str(root), first_party, tuple(sorted(entries.items())), tuple(sorted(covered.items())), True,
                        frozenset(unparsed), edges, helpers, launched, names_mask, mask_attrs, rank_devices)


def _reaching(parsed: dict, records: dict, reverse: dict, forward: dict, named: dict, targets) -> set:
    """The files whose process reaches a GPU framework import when they run: those that import
    one, and their importers, except an importer that takes from a module importing a framework
    only inside functions (gpufix.project.lazy) names that do not import it: that process runs
    the module's top level only. Such a module counts as lazy only while none of the project
    files it imports reaches a framework (their imports may run at its import)."""
    lazy = {a: frozenset(records[a]["lazy_gpu"]) for a in parsed if records[a].get("lazy_gpu")}
    memo: dict = {}

    def names_only(importer: str, t: str) -> bool:
        key = (importer, t)
        if key not in memo:
            memo[key] = _takes_names_only(importer, t, parsed, records, named, targets, lazy[t])
        return memo[key]

    exempt = set(lazy)
    while True:
        reaches = {a for a, f in parsed.items() if f.gpu}
        todo = list(reaches)
        while todo:
            t = todo.pop()
            for importer in reverse.get(t, ()):
                if importer not in reaches and not (t in exempt and names_only(importer, t)):
                    reaches.add(importer)
                    todo.append(importer)
        eager = {t for t in exempt if any(x in reaches for x in forward.get(t, ()))}
        if not eager:
            return reaches
        exempt -= eager


def _takes_names_only(importer: str, t: str, parsed: dict, records: dict, named: dict, targets, lazy: frozenset) -> bool:
    """Whether every import of `importer` that runs `t` binds only names of `t` outside `lazy` (or
    runs it as the parent package of another module): never `t` as a module object."""
    whole = records[importer].get("whole")
    if whole is None:
        return False  # unknown: as if it used the module whole
    whole = set(whole)
    own = set(records[t].get("names", ()))
    for name in parsed[importer].imports:
        if name.startswith("pattern:") or t not in targets(importer, name):
            continue
        if name in own:
            if name in whole:
                return False  # `import t` / `from pkg import t`: the module object, any function of it
            continue  # the module of a `from t import ...`: its top level runs
        prefix = max((n for n in own if name.startswith(n + ".")), key=len, default=None)
        if prefix is None:
            return False
        if any(c != t for c, _ in named.get(name, ())):
            continue  # `t` runs as the package of another module: its top level only
        if name[len(prefix) + 1:].split(".")[0] in lazy:
            return False
    return True


def _internal_packages(parsed: dict, reverse: dict, gpu_tops: dict, packaged: bool) -> set:
    """Top packages of an application that is not packaged, which its own scripts import: every
    process that runs them starts in one of those scripts, whose header covers them (a header in
    the package's `__init__.py` would be a second one). A package with tests stays an entry
    point: pytest imports it first."""
    if not gpu_tops or packaged:
        return set()
    out = set()
    for top in gpu_tops:
        prefix = str(top) + os.sep
        members = [a for a in parsed if a.startswith(prefix)]
        if any(_TEST_FILE_RE.match(os.path.basename(a)) or os.path.basename(a) == "conftest.py" for a in members):
            continue
        if any(not importer.startswith(prefix) for a in members for importer in reverse.get(a, ())):
            out.add(top)
    return out
