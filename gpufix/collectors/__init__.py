"""Fact collectors: small units that the one syntax-tree walk (gpufix.analysis.Analyzer) feeds.

A collector declares the node types it looks at (`visit_<NodeType>` methods, called in `priority`
order for each node before the walk goes down into it) and the text it needs: `prefilter_tests`
(substring + optional regex pairs: a file that passes none of any collector's tests cannot hold a
finding that needs facts beyond its imports), `focus_words` (a big file is walked by the statements
that mention one of them) and `whole_file_words` (a file that mentions one of them is walked
whole). The prefilter and the focused walk are built from these declarations, so they cannot
drift from what the collectors read. Adding a fact means adding one module here: every module of
this package is discovered.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import ClassVar, Iterable, Optional


class Collector:
    """One kind of fact. Subclasses set `name` and `priority`, define `visit_<NodeType>(node, walk)`
    methods, and may declare the text they need."""

    name: ClassVar[str] = ""
    priority: ClassVar[int] = 50  # lower runs first on a node (a collector may need another's marks)

    def before(self, walk) -> None:
        """Called once before the walk (module-wide pre-passes)."""

    def after(self, walk) -> None:
        """Called once after the walk."""

    # -- what the collector needs of the text --------------------------------------------------
    def prefilter_tests(self, catalog) -> Iterable[tuple]:
        """(substring, regex source or None): a file can hold this collector's facts only if one
        substring occurs (and its regex, when given, matches at that substring)."""
        return ()

    def focus_words(self, catalog, imports: dict) -> Iterable[str]:
        """Substrings that mark the statements this collector must see in a focused walk."""
        return ()

    def focus_patterns(self, catalog) -> Iterable:
        """Compiled regexes whose matches mark statements, where a substring cannot say it."""
        return ()

    def whole_file_words(self) -> Iterable[str]:
        """Substrings that make the walk visit every statement (facts that depend on order)."""
        return ()


def discover_collectors(package=None) -> tuple:
    """Every Collector subclass defined in this package's modules, instantiated, by priority."""
    package = package or importlib.import_module(__name__)
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Collector) and obj.__module__ == module.__name__ and obj.name:
                found.append(obj)
    names = [c.name for c in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RuntimeError(f"two collectors are named {', '.join(dupes)}")
    return tuple(cls() for cls in sorted(found, key=lambda c: (c.priority, c.name)))


@functools.lru_cache(maxsize=None)
def load_collectors() -> tuple:
    return discover_collectors()


@functools.lru_cache(maxsize=None)
def dispatch_table() -> dict:
    """AST node class name -> the bound visit methods of the collectors that look at it, in order."""
    table: dict = {}
    for collector in load_collectors():
        for attr in dir(collector):
            if attr.startswith("visit_"):
                table.setdefault(attr[len("visit_"):], []).append(getattr(collector, attr))
    return {k: tuple(v) for k, v in table.items()}


def whole_file_words() -> tuple:
    return tuple(sorted({w for c in load_collectors() for w in c.whole_file_words()}))


def focus_words(catalog, imports: dict) -> frozenset:
    return frozenset(w for c in load_collectors() for w in c.focus_words(catalog, imports))


def focus_patterns(catalog) -> tuple:
    return tuple(rx for c in load_collectors() for rx in c.focus_patterns(catalog))


def prefilter_tests(catalog) -> tuple:
    out = []
    for c in load_collectors():
        for literal, pattern in c.prefilter_tests(catalog):
            out.append((literal, pattern))
    return tuple(out)


def collector(name: str) -> Optional[Collector]:
    return next((c for c in load_collectors() if c.name == name), None)
