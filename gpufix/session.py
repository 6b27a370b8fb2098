"""What one run's stages share for one policy group, built once per group (`Session.of` a prepared
policy: `engine._open_session` for scan and apply, the LSP's analyser per project file, the stdin
runs).

A scan resolves a group's policy once (the project index, the project's device helpers as APIs,
the launchers' arguments), builds its catalogue and rule filter once, and opens its result cache
once; the per-file stage, the project rules and the fix holds (which may need results of project
files outside the run) all take them from here instead of expanding the policy again, and all go
through the same cache, saved once at the end of the run. A leaf: it holds, it does not lint."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional


@dataclasses.dataclass(eq=False)
class Session:
    """What one run needs once: the prepared policy, its catalogue, rule selection and cache."""

    policy: Any  # gpufix.config.Policy, prepared (its `project` set when the scope needs one)
    catalog: Any  # gpufix.catalog.ApiCatalog of `policy`
    enabled: Callable[[str], bool]  # the policy's rule selection
    use_prefilter: bool = True
    jobs: Optional[int] = None
    cache: Any = None  # gpufix.cache.ResultCache, or None (no cache)
    # abs path -> FileResult of the project files outside the run linted for the fix holds or the
    # project rules (each at most once per run)
    others: dict = dataclasses.field(default_factory=dict)
    # abs paths whose result this run took from the cache or put into it: their cache entry's
    # content hash is what their result was made from
    cached: set = dataclasses.field(default_factory=set)

    @classmethod
    def of(cls, policy, use_prefilter: bool = True, jobs: Optional[int] = None, cache=None) -> "Session":
        """The session of a prepared policy: its catalogue and rule filter built here, once."""
        from gpufix.catalog import catalog_for
        from gpufix.config import make_rule_filter

        return cls(policy, catalog_for(policy), make_rule_filter(policy.select, policy.ignore), use_prefilter, jobs, cache)

    def save(self) -> None:
        if self.cache is not None:
            self.cache.save()
