"""A project's first-party names (gpufix.project.meta.first_party_names): each file's top package
found from its folder's parent (once a folder) is the one the walk up from each file finds
(`_top_package`): the outermost folder with an `__init__.py` strictly below the root, across
folders without one (namespace portions)."""

import os

from gpufix.project import meta

TREE = [
    "__init__.py",  # the root is never a package
    "app.py", "setup.py",
    "a/b/__init__.py", "a/b/c/d/__init__.py", "a/b/c/d/f.py", "a/b/c/g.py", "a/x.py",
    "pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/m.py", "pkg/sub/deep/n.py",
    "ns/inner/__init__.py", "ns/inner/k.py",
    "not-ident/__init__.py", "not-ident/m.py", "plain/q.py", "src/lib/__init__.py", "src/lib/w.py",
    "tests/test_a.py", "ipy/__init__.py", "ipy/nb.ipynb",
]


def test_top_packages_from_the_folders_are_the_walk_up_from_each_file(tmp_path):
    for rel in TREE:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("")
    files = [str(tmp_path / rel) for rel in TREE]
    meta._HAS_INIT.clear()
    names = meta.first_party_names(tmp_path, files)
    under = str(tmp_path) + os.sep
    walked = {os.path.basename(t) for f in files if f.endswith(".py") and len(os.path.basename(f)) > 3
              for t in [meta._top_package(f, under)] if t is not None and os.path.basename(t).isidentifier()}
    assert walked == {"b", "pkg", "inner", "lib", "ipy"}  # `a`, `ns`, `src` hold no __init__.py: b, inner, lib are tops
    # and the root's own packages and modules, src's packages
    assert set(names) == walked | {"app", "setup"}
