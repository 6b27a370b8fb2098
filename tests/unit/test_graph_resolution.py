"""The project graph's import resolution (gpufix.project.graph): the shortcuts `_build_graph`
takes give what the plain definitions give: a file's imports resolved at once (`targets.of`)
against each import resolved alone as Python's sys.path rules say (the reference below is the
resolver as it was written first), the folders a file's names need on sys.path, and the paths
relative to the root."""

import os
import re
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gpufix.project import graph as G
from gpufix.project.meta import _rel, _stem, _suffix

ROOT = "/r"


def reference_targets(root: Path, named: dict):
    """graph.resolver_for's `targets` as first written: every name looked up in every folder."""
    root_s = str(root)
    src_s = os.path.join(root_s, "src")
    tops_at: dict = {}
    at_base: dict = {}
    for name, cands in named.items():
        top = name.split(".", 1)[0]
        for c, base in cands:
            tops_at.setdefault(base, set()).add(top)
            at_base.setdefault((name, base), []).append(c)

    def targets(importer: str, name: str) -> list:
        if name.startswith("pattern:"):
            import fnmatch

            rx = re.compile(fnmatch.translate(name[len("pattern:"):]).replace(".*", "[^.]*"))
            return sorted({c for n, cands in named.items() if rx.match(n) for c, base in cands
                           if base in (root_s, src_s)})
        here = os.path.dirname(importer)
        parts = name.split(".")
        bases = [here] if parts[0] in G._STDLIB else [here, root_s, src_s]
        if parts[0] not in G._STDLIB:
            d = here
            while d.startswith(root_s + os.sep):
                d = os.path.dirname(d)
                bases.append(d)
        out: list = []
        for base in bases:
            if parts[0] in tops_at.get(base, ()):
                for i in range(1, len(parts) + 1):
                    out += at_base.get((".".join(parts[:i]), base), ())
                break
        return out

    return targets


_WORDS = st.sampled_from(["pkg", "sub", "mod", "os", "json", "torch", "utils", "src", "x"])
_FOLDERS = st.lists(_WORDS, max_size=3).map(lambda parts: "/".join([ROOT, *parts]))
_FILES = st.tuples(_FOLDERS, st.sampled_from(["__init__.py", "mod.py", "os.py", "utils.py", "a.py"])).map(
    lambda t: f"{t[0]}/{t[1]}")
_NAMES = st.lists(_WORDS, min_size=1, max_size=3).map(".".join)
_ASKED = st.one_of(_NAMES, st.sampled_from(["pattern:pkg.*", "pattern:*.mod", "pattern:sub.*.x"]))


def _names_of(a: str) -> list:
    """The dotted names a file is importable by, from each folder above it (as meta does, roughly:
    what matters here is that the resolver sees names at several sys.path folders)."""
    rel = a[len(ROOT) + 1:-3].split("/")
    if rel[-1] == "__init__":
        rel = rel[:-1]
    return [".".join(rel[i:]) for i in range(len(rel)) if rel[i:]]


@settings(max_examples=300, deadline=None)
@given(st.lists(_FILES, min_size=1, max_size=12, unique=True), st.lists(_FILES, min_size=1, max_size=4),
       st.lists(_ASKED, max_size=8))
@example(["/r/pkg/__init__.py", "/r/pkg/mod.py"], ["/r/x/a.py"], ["pkg.mod", "torch", "os", "pkg"])
@example(["/r/x/os.py", "/r/os.py"], ["/r/x/a.py", "/r/a.py"], ["os", "os.path", "x.os"])
@example(["/r/x/mod.py"], ["/r/x/a.py", "/r/a.py"], ["mod", "x.mod"])  # `mod` beside one importer only
def test_a_files_imports_resolved_at_once_are_each_resolved_alone(files, importers, asked):
    named: dict = {}
    for a in files:
        names = _names_of(a)
        for name, base in zip(names, G._name_bases(a, names)):
            named.setdefault(name, []).append((a, base))
    targets = G.resolver_for(Path(ROOT), named)
    reference = reference_targets(Path(ROOT), named)
    for importer in importers:
        for name in asked:  # one at a time, then again (the memo's answers), then all at once
            assert targets(importer, name) == reference(importer, name)
            assert targets(importer, name) == reference(importer, name)
        assert targets.of(importer, asked) == {t for name in asked for t in reference(importer, name)}


@given(st.lists(st.sampled_from(["pkg", "pkg.mod", "a.b.c", "x", "q.r"]), max_size=5),
       st.sampled_from(["/r/pkg/__init__.py", "/r/pkg/mod.py", "/r/a/b/c.py", "/r/x.py", "/x.py"]))
def test_name_bases_are_each_names_folder(names, a):
    assert G._name_bases(a, names) == [G._name_base(a, n) for n in names]


_PATHS = st.lists(st.sampled_from(["r", "r2", "a", ".git", ".", "..", "", "b.py", "__init__.py"]), max_size=4).map(
    lambda parts: "/" + "/".join(parts))


@settings(max_examples=300, deadline=None)
@given(st.lists(_PATHS, max_size=8), st.sampled_from(["/r", "/r/a", "/", "//r", "/r2"]))
@example(["/r/a.py", "/r", "/r2/a.py", "/r//a.py", "/r/./a.py", "/r/a/", "/r/.git/x.py", "/x.py"], "/r")
def test_relative_paths_by_string_are_pathlibs(paths, root):
    assert G._rels(paths, Path(root)) == {_rel(a, Path(root)): a for a in paths}


@given(st.lists(st.sampled_from(["a", ".", "py", "ipynb", "PY", "x.y"]), min_size=1, max_size=4).map("".join)
       .filter(lambda name: name not in (".", "..")),  # a file's name (pathlib reads these as folders)
       st.sampled_from(["", "/r/", "/r/.d/"]))
@example("..py", "/r/")
@example(".py", "")
def test_stem_and_suffix_by_string_are_pathlibs(name, folder):
    """The warm runs' string forms of `Path.stem` / `Path.suffix` (project.meta)."""
    path = folder + name
    assert (_stem(path), _suffix(path)) == (Path(path).stem, Path(path).suffix)
