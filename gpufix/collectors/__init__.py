"""Fact collectors: small units that the one syntax-tree walk (gpufix.analysis.Analyzer) feeds.

A collector declares the node types it looks at (`visit_<NodeType>` methods, called in `priority`
order for each node before the walk goes down into it) and the text it needs: `prefilter_tests`
(substring + optional regex pairs: a file that passes none of any collector's tests cannot hold a
finding that needs facts beyond its imports), `focus_words` (a big file is walked by the statements
that mention one of them) and `whole_file_words` (a file that mentions one of them is walked
whole). The prefilter and the focused walk are built from these declarations, so they cannot
drift from what the collectors read.

A collector that needs the whole tree rather than the statements the walk visits (multi-GPU scopes,
argparse options) does its work in `finish`, called once per file after the walk, in every tier
the prefilter lets through (the header-only tier too). Its `parse_tests` say which text makes a
file worth parsing even when it imports no GPU framework and holds no ordinal (the prefilter would
skip it); `only_with_policy` says that its facts serve only rules that judge against a policy, so
without one the collector does not run and its `parse_tests` let nothing through.

A collector keeps its facts in `facts.extra[<its name>]`, so that adding one never touches the
`Facts` class. Adding a fact means adding one module here, or defining the collector in the module
of the one rule that reads it (gpufix/rules/gpuNNN_*.py): gpufix.registry finds both, builds the
dispatch table and the prefilter's tests from their declarations (gpufix.registry.Collectors), and
hands them down. This package holds only the base classes and the collector modules: it never
imports the registry or the rules.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Iterable

from gpufix.lexical import ANYWHERE, CODE, KEYWORD, STRING_START  # noqa: F401  (re-exported for collectors)


@dataclasses.dataclass(frozen=True)
class StringForm:
    """A string value the analysis reads from a literal's value (never from its text).

    `value`: what the value holds (`cuda:`); `after`: a regex of what follows it in the source
    (gpufix.collectors._patterns.SPELLED_INDEX), or "" for nothing; `at_start`: the value starts the
    literal (the analysis matches it with `^`); `ignore_case`; `gate`: words one of which the file
    must hold for the form to matter (the API that reads it), or () for none."""

    value: str
    after: str = ""
    at_start: bool = True
    ignore_case: bool = False
    gate: tuple = ()


class Collector:
    """One kind of fact. Subclasses set `name` and `priority`, define `visit_<NodeType>(node, walk)`
    methods, and may declare the text they need."""

    name: ClassVar[str] = ""
    priority: ClassVar[int] = 50  # lower runs first on a node (a collector may need another's marks)
    # its facts serve only rules that judge against a policy (`visible-devices` set): without one,
    # `finish` is not called and `parse_tests` lift no file
    only_with_policy: ClassVar[bool] = False

    def before(self, walk) -> None:
        """Called once before the walk (module-wide pre-passes)."""

    def after(self, walk) -> None:
        """Called once after the walk."""

    # -- what the collector needs of the text --------------------------------------------------
    def prefilter_tests(self, catalog) -> Iterable[tuple]:
        """(substring, regex source or None[, where]): a file can hold this collector's facts only
        if one substring occurs (and its regex, when given, matches at that substring), at a place
        `where` allows (gpufix.lexical): CODE (the match starts at a name or operator in code: a
        call, an import alias), KEYWORD (a call's keyword argument), STRING_START (at the first character of a string literal's
        value), ANYWHERE (code or a string, never a comment; the default)."""
        return ()

    def string_forms(self, catalog) -> Iterable["StringForm"]:
        """The string values this collector reads (StringForm): the prefilter finds them however
        they are spelled (escapes, implicit concatenation), where `prefilter_tests` see only the
        plain spelling."""
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

    def parse_tests(self, catalog) -> Iterable[tuple]:
        """(substring, regex or None): a file the prefilter would skip (no GPU framework import, no
        ordinal shape) is still parsed, in the header-only tier, when a substring occurs and its
        regex (a source string or a compiled pattern) matches anywhere in the text; `finish` then
        sees the whole tree."""
        return ()

    def finish(self, facts, tree, text: str) -> None:
        """Called once per parsed file after the walk, and after imports that never run are dropped
        from `facts.gpu_imports`, with the whole syntax tree (not only the statements a focused walk
        visits) and the file's text: for facts that need all of it. Store them in
        `facts.extra[self.name]`."""

    def runs_under(self, policy) -> bool:
        return not self.only_with_policy or bool(policy is not None and policy.has_policy)


class AssignmentCollector(Collector):
    """A collector that reads every assignment's targets with the assigned value (`x = v`,
    `x: T = v`; an annotation without a value assigns nothing): it implements `assigned`."""

    def assigned(self, targets, value, walk) -> None:
        raise NotImplementedError

    def visit_Assign(self, node, walk) -> None:
        self.assigned(node.targets, node.value, walk)

    def visit_AnnAssign(self, node, walk) -> None:
        if node.value is not None:
            self.assigned([node.target], node.value, walk)
