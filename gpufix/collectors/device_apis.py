"""Device ordinals handed to the catalogued APIs (rules/apis/*.toml and the policy's own): ints,
lists, dict values and keys, TF device strings, NVML indices; and `{'device_id': 1}`-style dicts."""

from __future__ import annotations

import ast
import re

from gpufix.analysis import const_str, literal_int
from gpufix.apispec import callees_by
from gpufix.collectors import CODE, KEYWORD, Collector, StringForm
from gpufix.lexical import call_with_args, keyword_of
from gpufix.collectors._patterns import ANYINT, END_OF_LITERAL, GAP, NONZERO, SPELLED_INDEX
from gpufix.facts import CUDA_ORDINAL_CALLS, TF_DEVICE_RE, OrdinalUse, imports_module
from gpufix.valueflow import Sink
from gpufix.deferred import LazyPattern

# Lightning's devices="1," / "0,2": a string that lists indices (a digit string alone is a count).
INDEX_STRING_RE = LazyPattern(r"^\s*\d+\s*(?:,\s*\d+\s*)*,\s*$|^\s*\d+\s*(?:,\s*\d+\s*)+$")

# Where the argument of each kind starts (after GAP), for each value `_record` below reads: a
# literal, or (nvml-index) a call, which `_record` follows to a CUDA ordinal whatever its local
# name. Names are followed by value flow (gpufix.prefilter.named_sink_tests).
_STRING = r"[rRuUfF]{0,2}['\"]"  # a string literal, prefixes included (`f"1,"` is a constant too)
_VALUE_START = {
    "ordinal": rf"(?:\+?{NONZERO}|[\[(])",  # an int (`+1` too), or a list/tuple of them
    "nvml-index": rf"(?:{ANYINT}|[A-Za-z_][\w.]*(?:\s|\\)*\()",  # index 0 can be wrong too (GPU003); a call
    "ordinal-list": r"[\[(]",
    "ordinal-dict-values": rf"(?:\+?{NONZERO}|\{{)",
    "ordinal-dict-keys": r"\{",
    "count-or-indices": rf"(?:[\[(]|{_STRING})",  # an int is a count: only a list or a "1," string holds indices
    # gpus[1], [gpus[1]], tf.config.list_physical_devices("GPU")[1]: a subscript (or a list of them)
    "device-element": r"(?:[\[(]|[A-Za-z_][\w.]*\s*(?:\[|\([^()]*\)\s*\[))",
}
# A call of `name`: `name(`, `name (`, `name\\\n(`, `(name)(`, a comment between inside brackets.
_CALL = r"(?:[\s\\)]|#[^\r\n]*(?=[\r\n]|\Z))*\("
# Arguments before the one read: anything but a closing parenthesis at depth 0 (one level of nesting).
_ARGS_BEFORE = r"(?:[^()]|\([^()]*\))*"
_TF_FOCUS_RE = re.compile(r"[pP][uU]:")


def _value(kind: str) -> str:
    # `(` is in GAP, so "(" + value covers tuples: `(` then an int.
    return GAP + (_VALUE_START.get(kind) or r"[\[({\d]")


class DeviceApis(Collector):
    name = "device-apis"
    priority = 40

    def prefilter_tests(self, catalog):
        # TF device strings: '/GPU:1', '/device:GPU:2', in any case (TF_DEVICE_RE). "PU:" is no
        # identifier: no word boundary before it (the G is a word character).
        for literal in ("PU:", "pu:", "Pu:", "pU:"):
            yield literal, rf"{literal}{SPELLED_INDEX}"  # "/GPU:1", "/GPU:" "1", "/GPU:\\x31"
        # A keyword argument counts only in a call of an API that takes it (`value=1` in any call
        # is no `get_guard(value=1)`, a project's helper): each keyword test names the callees of
        # the APIs that declare it, or none where one of them matches any callee ("*").
        keyword_apis = []
        for api in catalog.apis:
            name = api.last_name
            for spec in api.args:
                if spec.value == "tf-device":
                    continue  # a string literal: the 'GPU:N' shape above and string_forms below
                value = _value(spec.value)
                if spec.keyword:
                    keyword_apis.append(((spec.keyword, rf"\b{re.escape(spec.keyword)}(?:\s|\\)*={value}"), api))
                if spec.position is not None and name != "*":
                    # `from m import name as alias` calls it by another name: parse the file.
                    yield name, rf"\b{re.escape(name)}\s+as\b", CODE
                    if spec.position == 0:
                        yield name, rf"\b{re.escape(name)}{_CALL}{value}", CODE
                    elif spec.when_position is not None:
                        # torch.device('cuda', 1): the ordinal follows a string literal.
                        yield name, rf"\b{re.escape(name)}{_CALL}{_ARGS_BEFORE},{value}", CODE
                    else:
                        # after arbitrary arguments: any call with enough of them
                        yield name, rf"\b{re.escape(name)}{_CALL}", call_with_args(spec.position + 1)
        for (keyword, pattern), callees in callees_by(keyword_apis).items():
            yield keyword, pattern, KEYWORD if callees is None else keyword_of(callees)
        for key in catalog.dict_keys:
            yield key, rf"{re.escape(key)}['\"]{GAP}:{GAP}\+?{NONZERO}"

    def string_forms(self, catalog):
        # TF_DEVICE_RE ends the value with GPU:N; only the arguments of the tf-device APIs are read
        tf_names = tuple(sorted({api.last_name for api in catalog.apis for spec in api.args if spec.value == "tf-device"}))
        yield StringForm("pu:", SPELLED_INDEX, at_start=False, ignore_case=True, gate=tf_names)
        for key in catalog.dict_keys:
            # compared whole (`const_str(k) in catalog.dict_keys`), then a non-zero int value
            yield StringForm(key, rf"{END_OF_LITERAL}{GAP}:{GAP}\+?{NONZERO}")

    def focus_words(self, catalog, imports):
        words = ["CUDA", "GPU", "gpu", "device", "Device", "DEVICE", "nvml", *catalog.focus_words]
        for local, target in imports.items():
            # `from torch.cuda import set_device as pick`: calls of `pick` hold no catalogued name.
            if any(api.name != "*" for api in catalog.lookup(target, target.rsplit(".", 1)[-1], False)):
                words.append(local)
        return words

    def focus_patterns(self, catalog):
        # TF_DEVICE_RE is case-insensitive: "/Gpu:1" holds none of the words
        return (catalog.method_call_re, _TF_FOCUS_RE)

    # -- calls -----------------------------------------------------------------------------------
    def visit_Call(self, node, walk) -> None:
        func = node.func
        qual, last = walk.call_qual, walk.call_last
        matches = walk.catalog.lookup(qual, last, isinstance(func, ast.Attribute))
        if not matches:
            return
        name = qual or (last or "?")
        for api in matches:
            shown = f".{last}" if api.kind == "method" else name  # `x.cuda(1)` reads as .cuda()
            if api.name != "*" and api.kind != "method" and api.framework != "nvml":
                walk.facts.uses_device_api = True
            for spec in api.args:
                arg = None
                if spec.keyword is not None:
                    for kw in node.keywords:
                        if kw.arg == spec.keyword:
                            arg = kw.value
                if arg is None and spec.position is not None and spec.position < len(node.args):
                    if not any(isinstance(a, ast.Starred) for a in node.args[: spec.position + 1]):
                        arg = node.args[spec.position]
                if arg is None:
                    continue
                if spec.when_position is not None or spec.when_keyword is not None:
                    guard = None
                    if spec.when_position is not None and spec.when_position < len(node.args):
                        guard = node.args[spec.when_position]
                    if guard is None and spec.when_keyword is not None:
                        guard = next((kw.value for kw in node.keywords if kw.arg == spec.when_keyword), None)
                    if guard is None or const_str(guard) != spec.when_equals:
                        continue
                self._record(spec.value, arg, api.name if api.name != "*" else name, shown, walk)

    def _record(self, value_kind, arg, api_name, called, walk, flow=False) -> None:
        ordinals = walk.facts.ordinals
        if not flow and isinstance(arg, (ast.Name, ast.Attribute)):
            # a name: followed to the literal it holds after the walk (collectors/value_flow.py)
            walk.flow_sinks.append(Sink(value_kind, arg, called, arg.lineno))
            return
        if value_kind == "nvml-index" and isinstance(arg, ast.Call) and walk.qualname(arg.func) in CUDA_ORDINAL_CALLS:
            # nvmlDeviceGetHandleByIndex(torch.cuda.current_device()): a CUDA ordinal fed to NVML.
            ordinals.append(OrdinalUse("nvml-cuda-ordinal", walk.pos(arg), None, called, text=walk.src(arg)))
            return
        if value_kind in ("ordinal", "nvml-index"):
            i = literal_int(arg)
            if i is not None:
                ordinals.append(OrdinalUse("int" if value_kind == "ordinal" else "nvml-index", walk.pos(arg), i, called))
            elif isinstance(arg, (ast.List, ast.Tuple)) and value_kind == "ordinal":
                self._record_list(arg, called, walk)
        elif value_kind == "ordinal-list":
            if isinstance(arg, (ast.List, ast.Tuple)):
                self._record_list(arg, called, walk)
        elif value_kind == "count-or-indices":
            # Lightning's `devices`/`gpus`: an int is a count; a list or a "1," / "0,2" string lists indices.
            s = const_str(arg)
            if isinstance(arg, (ast.List, ast.Tuple)):
                if len(arg.elts) == 1:
                    self._record("ordinal", arg.elts[0], api_name, called, walk, flow)
                else:
                    self._record_list(arg, called, walk)
            elif s is not None and INDEX_STRING_RE.match(s):
                indices = [int(p) for p in s.split(",") if p.strip()]
                if len(indices) == 1:
                    ordinals.append(OrdinalUse("index-string", walk.pos(arg), indices[0], called, text=walk.src(arg)))
                else:
                    ordinals.append(OrdinalUse("list", walk.pos(arg), tuple((i, walk.pos(arg)) for i in indices), called))
        elif value_kind == "device-element":
            # tf.config.set_visible_devices(gpus[1]): an element of the visible-device list, by index.
            elts = arg.elts if isinstance(arg, (ast.List, ast.Tuple)) else [arg]
            subs = [e for e in elts if isinstance(e, ast.Subscript) and not isinstance(e.slice, ast.Slice)]
            if not subs or len(subs) != len(elts):
                return
            if len(subs) == 1:
                self._record("ordinal", subs[0].slice, api_name, called, walk, flow)
            else:
                items = tuple((literal_int(e.slice), walk.pos(e.slice)) for e in subs if literal_int(e.slice) is not None)
                if len(items) == len(subs):
                    ordinals.append(OrdinalUse("list", walk.pos(arg), items, called))
        elif value_kind == "ordinal-dict-values":
            i = literal_int(arg)
            if i is not None:
                ordinals.append(OrdinalUse("int", walk.pos(arg), i, called))
            elif isinstance(arg, ast.Dict):
                for v in arg.values:
                    j = literal_int(v)
                    if j is not None:
                        ordinals.append(OrdinalUse("int", walk.pos(v), j, called))
        elif value_kind == "ordinal-dict-keys":
            if isinstance(arg, ast.Dict):
                items = tuple((literal_int(k), walk.pos(k)) for k in arg.keys if k is not None and literal_int(k) is not None)
                if items:
                    ordinals.append(OrdinalUse("dict-keys", walk.pos(arg), items, called))
        elif value_kind == "tf-device":
            s = const_str(arg)
            if s is not None:
                m = TF_DEVICE_RE.match(s)
                if m:
                    ordinals.append(OrdinalUse("tf-device", walk.pos(arg), int(m.group("index")), called, text=walk.src(arg), string=s))

    def _record_list(self, arg, called, walk) -> None:
        items = tuple((literal_int(e), walk.pos(e)) for e in arg.elts if literal_int(e) is not None)
        if items and len(items) == len(arg.elts):
            walk.facts.ordinals.append(OrdinalUse("list", walk.pos(arg), items, called))

    # -- dicts with device keys ({'device_id': 1} for onnxruntime) --------------------------------
    def visit_Dict(self, node, walk) -> None:
        catalog = walk.catalog
        for k, v in zip(node.keys, node.values):
            key = const_str(k) if k is not None else None
            if key and key in catalog.dict_keys:
                modules = catalog.dict_keys[key]
                if any(catalog.framework_of_module(m) and imports_module(walk.facts, m) for m in modules):
                    i = literal_int(v)
                    if i is not None:
                        walk.facts.ordinals.append(OrdinalUse("int", walk.pos(v), i, f"{{'{key}': ...}}"))
