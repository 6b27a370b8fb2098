"""What gpufix compiles or imports at first use instead of at import time (a leaf: no gpufix imports).

A pre-commit run (a few named files, a warm cache) imports most of gpufix and uses little of it:
each regex a module compiles at import costs 0.2-1.5 ms, the TOML parser (tomllib and the `string`
module it pulls in) about 5 ms, in every process, whether or not the run needs them. What only some
runs need is built here on first use, once per process.
"""

from __future__ import annotations

import re
import sys


def toml_parser():
    """The TOML parser module: tomllib (tomli before Python 3.11). Imported only by the runs that
    read a TOML file (a pyproject.toml, a gpufix.toml, a TOML input)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on old Pythons only
        import tomli as tomllib
    return tomllib


class LazyPattern:
    """`re.compile(pattern, flags)` deferred to the first use of the pattern (as Bazaar's
    lazy_regex): a module-level pattern that a run never uses is never compiled.

    Any attribute (`match`, `finditer`, `sub`, `pattern`, ...) is the compiled pattern's. The first
    access of a name compiles the pattern and keeps the attribute on this object, so later
    accesses are plain instance lookups: no cost per use beyond a compiled pattern's own. Use it
    only where the pattern's methods are called (`P.match(s)`); an API that needs a real
    `re.Pattern` (`isinstance`, `re.compile(P)`, pickling) gets `P.compiled()`.
    """

    def __init__(self, pattern, flags: int = 0):
        self._source = (pattern, flags)

    def compiled(self) -> re.Pattern:
        pattern = self.__dict__.get("_pattern")
        if pattern is None:
            pattern = self.__dict__["_pattern"] = re.compile(*self._source)
        return pattern

    def __getattr__(self, name):
        # Called only for names not yet on the instance: compile, then keep the attribute here.
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(self.compiled(), name)
        self.__dict__[name] = value
        return value

    def __repr__(self) -> str:
        return f"LazyPattern({self._source[0]!r}, {self._source[1]!r})"
