"""Calls of a GPU framework's API (`torch.cuda.is_available()`, ...): after one of them, a mask
write may come too late (GPU105)."""

from __future__ import annotations

from gpufix.collectors import Collector
from gpufix.facts import GpuTrigger


# Framework calls that never start CUDA: process and thread settings (`set_start_method("spawn")`,
# the usual first line before a pool whose workers set their own mask), seeds and defaults.
_NEVER_START_CUDA = ("torch.multiprocessing.", "torch.set_num_threads", "torch.set_num_interop_threads",
                     "torch.set_grad_enabled", "torch.set_default_dtype", "torch.set_printoptions",
                     "torch.autograd.set_detect_anomaly", "torch.set_float32_matmul_precision")


class GpuCalls(Collector):
    name = "gpu-calls"
    priority = 50

    def visit_Call(self, node, walk) -> None:
        qual = walk.call_qual
        if not qual:
            return
        catalog = walk.catalog
        if qual.startswith(_NEVER_START_CUDA):
            return
        if catalog.framework_of_module(qual.rsplit(".", 1)[0]) or catalog.framework_of_module(qual.split(".")[0]):
            walk.order += 1
            walk.facts.gpu_calls.append(GpuTrigger(f"call of {qual}", walk.pos(node), walk.ctx, walk.order))
