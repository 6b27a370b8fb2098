"""'cuda:N' string literals, wherever they are (except map_location keys)."""

from __future__ import annotations

from gpufix.analysis import CUDA_STRING_RE, OrdinalUse
from gpufix.collectors import Collector
from gpufix.collectors._patterns import NONZERO


class CudaStrings(Collector):
    name = "cuda-strings"
    priority = 60

    def prefilter_tests(self, catalog):
        return (("cuda:", rf"cuda:{NONZERO}"),)

    def focus_words(self, catalog, imports):
        return ("cuda",)

    def visit_Constant(self, node, walk) -> None:
        if isinstance(node.value, str) and id(node) not in walk.skip_strings:
            m = CUDA_STRING_RE.match(node.value)
            if m:
                walk.facts.ordinals.append(
                    OrdinalUse("cuda-string", walk.pos(node), int(m.group(1)), "'cuda:N' string", text=walk.src(node))
                )
