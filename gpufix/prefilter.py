"""The cheap text tests that decide how much work a file needs.

`classify` sorts a file into one of three tiers; each must be a superset of what the full analysis
can find:

* SKIP:   the file can hold no finding (no ordinal shape, no mask variable, no GPU framework name,
          or in `entrypoints` scope no sign of an entrypoint).
* HEADER: the file can hold only the file-level header findings (GPU101/GPU102): it names a GPU
          framework but holds no literal device ordinal in a catalogued form and no mask variable.
          It is parsed with `ast` (so syntax errors are still reported), but only its import
          statements are looked at.
* FULL:   everything else: parse and run the whole analysis.

Every pattern is derived from the catalogue (rules/apis/*.toml plus the policy's own APIs): for an
API that takes an ordinal, a call of its last name with a literal at the ordinal's position (or a
mention of the name when the position is not the first, or when the name is re-bound with `as`),
and for a keyword, `keyword=` followed by a literal. Tests are a plain substring search first (fast
in C), then a regex only when the substring is there.
"""

from __future__ import annotations

import functools
import os
import re

from gpufix.catalog import ApiCatalog

SKIP, HEADER, FULL = 0, 1, 2

TEST_NAME_RE = re.compile(r"^(test_.*\.py|.*_test\.py|conftest\.py)$")

# What may stand between `(` / `=` / `,` / `:` and a literal: blanks, newlines, line continuations,
# comments and opening parentheses (`set_device((1))`).
_GAP = r"(?:\s|\\|\(|#[^\n]*)*"
_NONZERO = r"(?:0*[1-9]|0[xXbBoO_])"  # an int literal that is not 0 (0x1, 0_1, 01 too)
_ANYINT = r"\d"
# Where a literal value of each kind starts (after _GAP).
_VALUE_START = {
    "ordinal": rf"(?:{_NONZERO}|[\[(])",  # an int, or a list/tuple of them
    "nvml-index": _ANYINT,  # NVML index 0 can be wrong too (GPU003)
    "ordinal-list": r"[\[(]",
    "ordinal-dict-values": rf"(?:{_NONZERO}|\{{)",
    "ordinal-dict-keys": r"\{",
    "count-or-indices": r"[\[('\"]",  # an int is a count: only a list or a "1," string holds indices
    # gpus[1], [gpus[1]], tf.config.list_physical_devices("GPU")[1]: a subscript (or a list of them)
    "device-element": r"(?:[\[(]|[A-Za-z_][\w.]*\s*(?:\[|\([^()]*\)\s*\[))",
}
# Value flow (gpufix.valueflow): a device argument that is a name matters only when some literal
# is bound with `=` somewhere in the file (an assignment, a default, argparse's `default=`).
_NAME_START = r"([A-Za-z_][\w.]*)"  # captured: the name the flow gate looks up
_FLOW_SOURCE_RX = re.compile(
    r"=" + r"(?:\s|\\|\(|#[^\n]*)*" + r"(?:\d|\[(?:\s|\(|#[^\n]*)*\d|[rRuU]?['\"](?:\s*\d|[^'\"\n]*[Pp][Uu]:\d))"
)
# Device strings formatted from a value: f"cuda:{x}", "cuda:{}".format(x), "cuda:%d" % x, "cuda:" + str(x).
_FORMAT_TOKENS = ("cuda:{", "cuda:%", "cuda:'", 'cuda:"', "PU:{", "pu:{", "PU:%", "pu:%", "PU:'", 'PU:"', "pu:'", 'pu:"')
# Environment variables whose writes the rules judge (a substring of each name, so that
# `"CUDA_" "VISIBLE_DEVICES"` still counts).
_ENV_TOKENS = ("VISIBLE_DEVICES", "DEVICE_ORDER")


def _value(kind: str, named: bool = False) -> str:
    # `(` is in _GAP, so "(" + value covers tuples: `(` then an int.
    if named:
        return _GAP + _NAME_START
    return _GAP + (_VALUE_START.get(kind) or r"[\[({\d]")


# Substrings that gate groups of tests: a test whose substring contains a gate runs only when the
# gate occurs (one search instead of one per test in the many files that have none of them).
_GATES = ("device", "Device", "DEVICE", "memory", "cuda", "stream", "DataParallel", "u:", "U:")


class _Tests:
    """(substring, regex or None) pairs: a file passes if the substring occurs and the regex matches."""

    def __init__(self):
        self.items: dict = {}

    def add(self, literal: str, pattern) -> None:
        entry = self.items.setdefault(literal, [])
        if pattern is None:
            entry.insert(0, None)
        elif pattern not in entry:
            entry.append(pattern)

    def compile(self) -> tuple:
        """((gate or None, ((substring, regex or None), ...)), ...)"""
        # Every pattern starts with its substring: factor it out so that the regex engine can use
        # its fast literal-prefix search (a leading \\b or an alternation would defeat it); the word
        # boundary before an identifier is a lookbehind placed after the literal.
        groups: dict = {}
        for literal, patterns in sorted(self.items.items()):
            if None in patterns:
                rx = None
            else:
                esc = re.escape(literal)
                tails = []
                for p in patterns:
                    assert p.startswith(esc), (literal, p)
                    tails.append(p[len(esc):])
                boundary = rf"(?<!\w{esc})" if re.match(r"\w", literal) else ""
                rx = re.compile(esc + boundary + "(?:" + "|".join(tails) + ")")
            gate = next((g for g in _GATES if g in literal and g != literal), None)
            groups.setdefault(gate, []).append((literal, rx))
        return tuple((g, tuple(tests)) for g, tests in groups.items())


@functools.lru_cache(maxsize=16)
def _compiled(catalog: ApiCatalog):
    ordinal = _Tests()
    named = _Tests()
    for token in _FORMAT_TOKENS:
        ordinal.add(token, None)
    # 'cuda:N' strings anywhere (GPU001), TF device strings ('/GPU:1', '/device:gpu:2').
    ordinal.add("cuda:", rf"cuda:{_NONZERO}")
    ordinal.add("PU:", rf"PU:{_NONZERO}")  # TF device strings: '/GPU:1', '/device:GPU:2'
    ordinal.add("pu:", rf"pu:{_NONZERO}")  # ... in any case ('/gpu:1')
    ordinal.add("Pu:", rf"Pu:{_NONZERO}")
    ordinal.add("pU:", rf"pU:{_NONZERO}")
    # A call of `name`: `name(`, `name (`, `name\\\n(`, `(name)(`.
    call = r"[\s\\)]*\("
    for api in catalog.apis:
        name = api.last_name
        for spec in api.args:
            for tests, is_named in ((ordinal, False), (named, True)):
                if spec.value == "tf-device" and not is_named:
                    continue  # a string literal: the 'GPU:N' shape above
                value = _value(spec.value, is_named)
                if spec.keyword:
                    tests.add(spec.keyword, rf"{re.escape(spec.keyword)}\s*={value}")
                if spec.position is not None and name != "*":
                    # `from m import name as alias` calls it by another name: parse the file.
                    ordinal.add(name, rf"{re.escape(name)}\s+as\b")
                    if spec.position == 0:
                        tests.add(name, rf"{re.escape(name)}{call}{value}")
                    elif spec.when_position is not None:
                        # torch.device('cuda', 1): the ordinal follows a string literal (no parentheses).
                        tests.add(name, rf"{re.escape(name)}{call}[^()]*,{value}")
                    else:
                        tests.add(name, rf"{re.escape(name)}{call}")  # after arbitrary arguments: any call
    for key in catalog.dict_keys:
        ordinal.add(key, rf"{re.escape(key)}['\"]{_GAP}:{_GAP}{_NONZERO}")
    for token in _ENV_TOKENS:
        ordinal.add(token, None)
    roots = sorted({m.split(".")[0] for m in catalog.framework_modules})
    framework_rx = re.compile(r"\b(?:" + "|".join(map(re.escape, roots)) + r")\b")
    # APIs whose call makes a file a GPU module without a GPU framework import (a bare name, or a
    # module outside the frameworks such as `import numba` then `numba.cuda.select_device()`).
    risky = set()
    for api in catalog.apis:
        if api.kind == "method" or api.name == "*" or api.framework == "nvml":
            continue
        root = api.name.split(".")[0]
        if "." not in api.name or catalog.framework_of_module(root) is None:
            risky.add(api.last_name)
    risky_tests = ((None, tuple((w, re.compile(rf"{re.escape(w)}(?<!\w{re.escape(w)})\b")) for w in sorted(risky))),)
    return ordinal.compile(), framework_rx, risky_tests, named.compile()


def _any(groups, text: str) -> bool:
    for gate, tests in groups:
        if gate is not None and gate not in text:
            continue
        for literal, rx in tests:
            if literal in text and (rx is None or rx.search(text)):
                return True
    return False


def _import_lines(text: str) -> str:
    """The physical lines that hold the word `import` (with their backslash continuations): an
    import statement names its module's top package on the line of its keyword."""
    out = []
    find = text.find
    pos = find("import")
    n = len(text)
    while pos >= 0:
        start = text.rfind("\n", 0, pos) + 1
        while start >= 2 and (text[start - 2] == "\\" or (text[start - 2] == "\r" and start >= 3 and text[start - 3] == "\\")):
            start = text.rfind("\n", 0, start - 1) + 1  # `from torch \\<newline> import x`
        end = find("\n", pos)
        if end < 0:
            end = n
        while end < n and text[end - 1] == "\\" or (end < n and text[end - 1] == "\r" and text[end - 2] == "\\"):
            nxt = find("\n", end + 1)
            end = n if nxt < 0 else nxt
        out.append(text[start:end])
        pos = find("import", end)
    return "\n".join(out)


def imports_framework(text: str, catalog: ApiCatalog) -> bool:
    """Whether the text may import a GPU framework (a superset: comments and strings count too)."""
    if "import" not in text:
        return False
    return bool(_compiled(catalog)[1].search(_import_lines(text)))


def is_entrypoint_name(path: str) -> bool:
    return path.endswith(".ipynb") or bool(TEST_NAME_RE.match(os.path.basename(path)))


def classify(text: str, path: str, scope: str, catalog: ApiCatalog) -> int:
    ordinal, _, risky, named = _compiled(catalog)
    if _any(ordinal, text):
        return FULL
    if _FLOW_SOURCE_RX.search(text) and _named_sink_may_resolve(named, text):
        return FULL  # a name at a device argument, and a literal it may hold
    if scope == "all":
        return HEADER
    if not imports_framework(text, catalog) and not _any(risky, text):
        return SKIP
    if scope == "gpu-modules":
        return HEADER
    if is_entrypoint_name(path) or text.startswith("#!") or "__main__" in text:
        return HEADER
    return SKIP


def _named_sink_may_resolve(groups, text: str) -> bool:
    """Whether a name at a device argument may be bound to a literal (gpufix.valueflow's own text
    gate, on the names the catalogue's patterns capture)."""
    from gpufix.valueflow import _TextGate, name_node

    names = set()
    for gate, tests in groups:
        if gate is not None and gate not in text:
            continue
        for literal, rx in tests:
            if literal not in text or rx is None:
                continue
            found = rx.findall(text)
            if not found:
                continue
            if rx.groups == 0:
                return True  # an argument after others (any call): no name to look up
            for groups in found:
                if isinstance(groups, str):
                    groups = (groups,)
                captured = [g for g in groups if g]
                if not captured:
                    return True  # matched an alternative without a name (any call)
                names.update(captured)
    if not names:
        return False
    flow_gate = _TextGate(text)
    return any(flow_gate.may_resolve(name_node(n)) for n in names)


def may_call_device_api(text: str, catalog: ApiCatalog) -> bool:
    """Whether a file without a GPU framework import may still call a catalogued device API."""
    return _any(_compiled(catalog)[2], text)
