"""'cuda:N' string literals, wherever they are (except map_location keys)."""

from __future__ import annotations

from gpufix.analysis import const_str
from gpufix.collectors import STRING_START, Collector, StringForm
from gpufix.collectors._patterns import SPELLED_INDEX
from gpufix.facts import CUDA_STRING_RE, OrdinalUse


class CudaStrings(Collector):
    name = "cuda-strings"
    priority = 60

    def prefilter_tests(self, catalog):
        # "cuda:1", and `"cuda:" "1"`, `"cuda:\\x31"`, "cuda:01": the index however it is spelled
        # CUDA_STRING_RE reads a whole value: "cuda:" starts it, so it starts the literal's text
        # (`"" "cuda:1"` too: the second literal); "cuda:1" in a docstring's prose is no ordinal
        return (("cuda:", rf"cuda:{SPELLED_INDEX}", STRING_START),)

    def string_forms(self, catalog):
        # CUDA_STRING_RE (`^cuda:(\d+)$`) on the value, however it is spelled
        return (StringForm("cuda:", SPELLED_INDEX, at_start=True),)

    def focus_words(self, catalog, imports):
        return ("cuda",)

    def visit_Constant(self, node, walk) -> None:
        if isinstance(node.value, str) and id(node) not in walk.skip_strings:
            self._string(node, node.value, walk)

    def visit_JoinedStr(self, node, walk) -> None:
        # An f-string without placeholders (`f"cuda:1"`) is a literal like any other.
        value = const_str(node)
        if value is not None and id(node) not in walk.skip_strings:
            self._string(node, value, walk)

    def _string(self, node, value, walk) -> None:
        m = CUDA_STRING_RE.match(value)
        if m:
            walk.facts.ordinals.append(
                OrdinalUse("cuda-string", walk.pos(node), int(m.group(1)), "'cuda:N' string", text=walk.src(node), string=value)
            )
