"""Calls of a GPU framework's API (`torch.cuda.is_available()`, ...): after one of them, a mask
write may come too late (GPU105)."""

from __future__ import annotations

from gpufix.analysis import GpuTrigger
from gpufix.collectors import Collector


class GpuCalls(Collector):
    name = "gpu-calls"
    priority = 50

    def visit_Call(self, node, walk) -> None:
        qual = walk.call_qual
        if not qual:
            return
        catalog = walk.catalog
        if catalog.framework_of_module(qual.rsplit(".", 1)[0]) or catalog.framework_of_module(qual.split(".")[0]):
            walk.order += 1
            walk.facts.gpu_calls.append(GpuTrigger(f"call of {qual}", walk.pos(node), walk.ctx, walk.order))
