"""Compare the project index's two readings of every Python file under DIR: imports read from the
text (gpufix.importscan, what scans use) and from `ast` (the reference). Prints how many files the
text settled, how many it left to ast, every disagreement, and the time of each reading.

    python benchmarks/compare_index.py DIR [DIR ...]

Exit status 1 when any file's entry differs (imports, GPU module or not, script or not).
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path

from gpufix import project
from gpufix.catalog import catalog_for
from gpufix.config import Policy
from gpufix.importscan import read_imports
from gpufix.source import ReadError, read_source


def compare(directory: str) -> int:
    root = project.project_root([directory])
    files = sorted(str(p) for pattern in ("*.py", "*.ipynb") for p in Path(directory).rglob(pattern))
    first_party = project.first_party_names(root, files)
    catalog = catalog_for(Policy(visible_devices="1")).for_project(first_party, ())
    project._index_init(root, set(), catalog)
    stats: collections.Counter = collections.Counter()
    t_ast = t_text = 0.0
    for f in files:
        try:
            text = read_source(f, Path(f).read_bytes()).text
        except (ReadError, OSError, ValueError):
            stats["unreadable"] += 1
            continue
        t = time.perf_counter()
        by_ast = project._index_file(f, text, use_text=False)
        t_ast += time.perf_counter() - t
        t = time.perf_counter()
        by_text = project._index_file(f, text, use_text=True)
        t_text += time.perf_counter() - t
        stats["left to ast" if read_imports(text) is None else "read from text"] += 1
        if by_ast is None or by_text is None:
            stats["syntax error (ast)" if by_ast is None else "?"] += 1
            continue
        a, b = by_ast[0], by_text[0]
        for what, x, y in (("imports", sorted(a.imports), sorted(b.imports)), ("gpu", a.gpu, b.gpu), ("script", a.script, b.script)):
            if x != y:
                stats["differ"] += 1
                print(f"DIFFER {what}: {f}: ast {x!r} text {y!r}")
    print(f"{directory}: {len(files)} files, {dict(stats)}; ast reading {t_ast:.2f} s, text reading {t_text:.2f} s")
    return stats["differ"]


if __name__ == "__main__":
    sys.exit(1 if sum(compare(d) for d in sys.argv[1:] or ["."]) else 0)
