"""The registry: the rules and fact collectors gpufix finds by looking, found once per process and
handed down.

gpufix grows by adding files (Fixit's way): a rule is its catalogue entry (rules/<CODE>.toml) and
one module of gpufix/rules/; a kind of fact is one module of gpufix/collectors/, or a collector
class in the module of the one rule that reads it. This module finds them, and it sits above
everything it finds: it imports gpufix.rules, gpufix.collectors and the prefilter; none of them,
nor the walk (gpufix.analysis), imports it. What the collectors declare is turned here, once, into
what the stages below use: the walk's dispatch table, the prefilter's tests, the focus words and
patterns of the focused walk, the string forms, the parse tests, the whole-tree `finish` hooks
(`Collectors`). The engine hands `collectors()` to the walk and asks `prefilter(catalog)` for a
file's tier; a test hands down a set of its own (`Collectors(collectors().all + extra)`) instead of
patching a module.

Nothing is found on import: a warm run that replays the cache imports no rule or collector module,
and a run over a few files builds only what its files reach (the prefilter compiles a test the
first time a file holds its substring).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil


def classes_defined_in(package, base: type) -> list:
    """The subclasses of `base` defined (not imported) in the public modules of `package`, in
    module order: how both collectors and rules are found."""
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, base) and obj.__module__ == module.__name__:
                found.append(obj)
    return found


# -- rules ------------------------------------------------------------------------------------------
def discover_rules(package=None) -> dict:
    """code -> Rule instance for every Rule subclass defined in the modules of `package` (default:
    gpufix.rules)."""
    from gpufix.rules import Rule

    package = package or importlib.import_module("gpufix.rules")
    found = {}
    for cls in classes_defined_in(package, Rule):
        if not cls.code:
            continue
        if cls.code in found:
            raise RuntimeError(f"two rules claim {cls.code}: {type(found[cls.code]).__name__} and {cls.__name__}")
        found[cls.code] = cls()
    return found


@functools.lru_cache(maxsize=None)
def rules() -> dict:
    """code -> Rule, in code order, verified against the catalogue (gpufix.rules.verify)."""
    from gpufix.catalog import load_rule_docs
    from gpufix.rules import verify

    found = discover_rules()
    verify(found, load_rule_docs())
    return {code: found[code] for code in sorted(found)}


@functools.lru_cache(maxsize=None)
def project_rules() -> dict:
    """The rules that judge across files (gpufix.rules.ProjectRule), in code order."""
    from gpufix.rules import ProjectRule

    return {code: r for code, r in rules().items() if isinstance(r, ProjectRule)}


@functools.lru_cache(maxsize=None)
def fixed_together() -> tuple:
    """(remap codes, mask codes): the rules whose fixes read an ordinal through the mask the file's
    processes will have (Rule.fixes_first_pass_only), and those about the mask or order a process
    sets (Rule.judges_process_mask). A remap is right only under the mask the mask rules' fixes
    put in force, and a mask fix keeps the meaning of an ordinal only once it is remapped: their
    fixes are made together or not at all, in a file (gpufix.engine) and across the files of a
    process (gpufix.project.index.fix_holds). The rules say so themselves."""
    found = rules()
    return (frozenset(c for c, r in found.items() if r.fixes_first_pass_only),
            frozenset(c for c, r in found.items() if r.judges_process_mask))


# -- collectors -------------------------------------------------------------------------------------
def discover_collectors(*packages) -> tuple:
    """Every Collector subclass defined in the modules of `packages` (default: gpufix.collectors and
    the rule modules, gpufix.rules), instantiated, by priority."""
    from gpufix.collectors import Collector

    if not packages:
        packages = (importlib.import_module("gpufix.collectors"), importlib.import_module("gpufix.rules"))
    found = [cls for package in packages for cls in classes_defined_in(package, Collector) if cls.name]
    names = [c.name for c in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RuntimeError(f"two collectors are named {', '.join(dupes)}")
    return tuple(cls() for cls in sorted(found, key=lambda c: (c.priority, c.name)))


@functools.lru_cache(maxsize=None)
def collectors() -> "Collectors":
    """The collectors gpufix ships (discover_collectors()), with what is built from them."""
    return Collectors(discover_collectors())


def prefilter(catalog):
    """The prefilter (gpufix.prefilter.Prefilter) of the shipped collectors under `catalog`."""
    return collectors().prefilter(catalog)


class Collectors:
    """A set of collectors (instances, in dispatch order: lowest priority first) and what the walk
    and the prefilter build from their declarations (gpufix.collectors.Collector), each built on
    first use and kept with the set."""

    _PREFILTERS_KEPT = 16  # catalogues (one per distinct policy's APIs) whose prefilter is kept

    def __init__(self, found):
        self.all = tuple(found)
        self._by_name = {c.name: c for c in self.all}
        self._prefilters: dict = {}

    def get(self, name: str):
        """The collector named `name` (None: not in this set)."""
        return self._by_name.get(name)

    # -- the walk (gpufix.analysis) --------------------------------------------------------------
    @functools.cached_property
    def table(self) -> dict:
        """AST node class name -> the bound visit methods of the collectors that look at it, in order."""
        table: dict = {}
        for collector in self.all:
            for attr in dir(collector):
                if attr.startswith("visit_"):
                    table.setdefault(attr[len("visit_"):], []).append(getattr(collector, attr))
        return {k: tuple(v) for k, v in table.items()}

    @functools.cached_property
    def whole_file_words(self) -> tuple:
        return tuple(sorted({w for c in self.all for w in c.whole_file_words()}))

    def focus_words(self, catalog, imports: dict) -> frozenset:
        return frozenset(w for c in self.all for w in c.focus_words(catalog, imports))

    def focus_patterns(self, catalog) -> tuple:
        return tuple(rx for c in self.all for rx in c.focus_patterns(catalog))

    @functools.cached_property
    def _finishers(self) -> tuple:
        from gpufix.collectors import Collector

        return tuple(c for c in self.all if type(c).finish is not Collector.finish)

    def finish(self, facts, tree, text: str, policy) -> None:
        """Run every collector's per-file `finish` hook (those that run under `policy`)."""
        for c in self._finishers:
            if c.runs_under(policy):
                c.finish(facts, tree, text)

    # -- the prefilter (gpufix.prefilter) --------------------------------------------------------
    def prefilter_tests(self, catalog) -> tuple:
        """(substring, regex source or None, where) of every collector (where: gpufix.lexical)."""
        from gpufix.lexical import ANYWHERE

        out = []
        for c in self.all:
            for test in c.prefilter_tests(catalog):
                literal, pattern = test[0], test[1]
                out.append((literal, pattern, test[2] if len(test) > 2 else ANYWHERE))
        return tuple(out)

    def string_forms(self, catalog) -> tuple:
        return tuple(form for c in self.all for form in c.string_forms(catalog))

    def parse_tests(self, catalog, has_policy: bool) -> tuple:
        """The collectors' `parse_tests` that apply with (or without) a policy."""
        return tuple(test for c in self.all if has_policy or not c.only_with_policy for test in c.parse_tests(catalog))

    def prefilter(self, catalog):
        """The prefilter of these collectors' declarations under `catalog`, built once per catalogue
        (its tests are built on its first use, each regex compiled on its own first use)."""
        got = self._prefilters.get(catalog)
        if got is None:
            from gpufix.prefilter import Prefilter

            if len(self._prefilters) >= self._PREFILTERS_KEPT:
                self._prefilters.clear()
            got = self._prefilters[catalog] = Prefilter(catalog, self)
        return got
