"""A CUDA device chosen from the process rank (`cuda:{local_rank}`, `set_device(local_rank)`): the
file's own fact, `facts.extra["rank-device"]` = (line, source of the use) of the first one. The
reading is gpufix.rankflow's, which the project index's records share (a module the entry point's
process runs counts for its header too)."""

from __future__ import annotations

from gpufix.collectors import Collector
from gpufix.rankflow import rank_device


class RankDevice(Collector):
    name = "rank-device"
    priority = 90
    # it serves the safety of the fixes that put the policy's mask in force (RuleContext.rank_launch)
    only_with_policy = True

    def finish(self, facts, tree, text: str) -> None:
        found = rank_device(tree, text)
        if found is not None:
            facts.extra[self.name] = found[:2]  # (line, use)
