"""Values that reach a device argument through a name (gpufix.valueflow does the following): the
device-apis collector records each device argument that is a name as a sink; this collector adds
the device strings formatted from a name (f"cuda:{gpu}", "cuda:{}".format(gpu), "cuda:{i}".format(i=gpu), "cuda:%d" % gpu,
"cuda:" + str(gpu), and the TF "/GPU:{gpu}" forms), and after the walk turns every literal that can
reach a sink into an ordinal at the literal, with the use it reaches named."""

from __future__ import annotations

import ast
import re

from gpufix.analysis import const_str, literal_int
from gpufix.collectors import ANYWHERE, STRING_START, Collector
from gpufix.valueflow import Flow, Sink
from gpufix.deferred import LazyPattern

# The part of a format string before the one value: "cuda:", "/GPU:", "/device:GPU:".
_PREFIX_RE = LazyPattern(r"^(?:cuda:|/?(?:device:)?GPU:)$", re.I)
_FORMAT_RE = LazyPattern(r"^(?:cuda:|/?(?:device:)?GPU:)\{0?\}$", re.I)
_FORMAT_FIELD_RE = LazyPattern(r"^(?:cuda:|/?(?:device:)?GPU:)\{([A-Za-z_]\w*)\}$", re.I)  # "cuda:{gpu}".format(gpu=...)
_PERCENT_RE = LazyPattern(r"^(?:cuda:|/?(?:device:)?GPU:)%[dis]$", re.I)
# Substrings one of which each formatted form holds (the prefilter's FULL test for them).
FORMAT_TOKENS = ("cuda:{", "cuda:%", "cuda:'", 'cuda:"', "PU:{", "pu:{", "PU:%", "pu:%", "PU:'", 'PU:"', "pu:'", 'pu:"')


class ValueFlow(Collector):
    name = "value-flow"
    priority = 70  # after device-apis (40), whose sinks it resolves

    def prefilter_tests(self, catalog):
        # Names at catalogued device arguments are tested by gpufix.prefilter itself (they need a
        # literal the name may hold, which is no substring test).
        # the "cuda:" forms are matched from the value's start (_PREFIX_RE, _FORMAT_RE, ...): the
        # token starts a literal's text; "/GPU:" has a prefix before "PU:"
        tests = [(token, None, STRING_START if token.startswith("cuda") else ANYWHERE) for token in FORMAT_TOKENS]
        # the format patterns ignore case ("CUDA:{}", "/Gpu:%d"): every other case of the prefix
        # (its last two characters, then the prefix looked behind; the spellings above excluded)
        for tail in ("a:", "A:"):
            tests.append((tail, rf"{tail}(?<=[cC][uU][dD][aA]:)(?<!cuda:)[{{%'\"]", ANYWHERE))
        for tail in ("u:", "U:"):
            tests.append((tail, rf"{tail}(?<=[pP][uU]:)(?<!PU:)(?<!pu:)[{{%'\"]", ANYWHERE))
        return tuple(tests)

    def focus_words(self, catalog, imports):
        return ("cuda", "GPU", "gpu")

    def _sink(self, walk, node, called, in_place: bool = False) -> None:
        if isinstance(node, (ast.Name, ast.Attribute)):
            walk.flow_sinks.append(Sink("ordinal", node, called, node.lineno))
        elif in_place and literal_int(node) is not None:
            # "cuda:{}".format(1), "cuda:%d" % 1, "cuda:" + str(1): the literal is the ordinal
            # (one in an f-string, f"cuda:{1}", is left alone)
            devices = walk.collector("device-apis")
            start = len(walk.facts.ordinals)
            devices._record("ordinal", node, called, called, walk, flow=True)
            for use in walk.facts.ordinals[start:]:
                use.via = f"in a {called} on line {node.lineno}"

    def visit_JoinedStr(self, node, walk) -> None:
        values = node.values
        if len(values) == 2 and isinstance(values[1], ast.FormattedValue) and values[1].format_spec is None:
            head = const_str(values[0])
            if head is not None and _PREFIX_RE.match(head):
                self._sink(walk, values[1].value, f"f'{head}{{...}}' string")

    def visit_BinOp(self, node, walk) -> None:
        head = const_str(node.left)
        if head is None:
            return
        if isinstance(node.op, ast.Mod) and _PERCENT_RE.match(head):
            right = node.right
            if isinstance(right, ast.Tuple) and len(right.elts) == 1:
                right = right.elts[0]
            self._sink(walk, right, f"'{head}' % ... string", True)
        elif isinstance(node.op, ast.Add) and _PREFIX_RE.match(head):
            r = node.right
            if isinstance(r, ast.Call) and isinstance(r.func, ast.Name) and r.func.id == "str" and len(r.args) == 1:
                self._sink(walk, r.args[0], f"'{head}' + str(...) string", True)

    def visit_Call(self, node, walk) -> None:
        func = node.func
        if not (isinstance(func, ast.Attribute) and func.attr == "format"):
            return
        fmt = const_str(func.value)
        if fmt is None:
            return
        if len(node.args) == 1 and not node.keywords and _FORMAT_RE.match(fmt):
            self._sink(walk, node.args[0], f"'{fmt}'.format() string", True)
        elif not node.args and len(node.keywords) == 1:
            m = _FORMAT_FIELD_RE.match(fmt)
            if m and node.keywords[0].arg == m.group(1):  # "cuda:{gpu}".format(gpu=GPU)
                self._sink(walk, node.keywords[0].value, f"'{fmt}'.format() string", True)

    def after(self, walk) -> None:
        if not walk.flow_sinks:
            return
        devices = walk.collector("device-apis")
        for sink, reached in Flow(walk.tree, walk.text).reach(walk.flow_sinks, walk.src):
            start = len(walk.facts.ordinals)
            devices._record(sink.kind, reached.literal, sink.called, sink.called, walk, flow=True)
            for use in walk.facts.ordinals[start:]:
                use.via, use.fix_blocked = reached.via, reached.blocked
