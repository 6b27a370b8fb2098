"""Writes of CUDA_VISIBLE_DEVICES / CUDA_DEVICE_ORDER: `os.environ[...] = v`, `os.environ.update`,
`os.environ.setdefault`, `os.putenv`, through any alias of `os`/`environ`."""

from __future__ import annotations

import ast

from gpufix.analysis import ENV_VARS, const_str
from gpufix.collectors import AssignmentCollector, StringForm
from gpufix.collectors._patterns import END_OF_LITERAL

# A substring of each variable's name (a plain spelling; `"CUDA_VISIBLE_" "DEVICES"` is found by the
# string forms below).
ENV_TOKENS = ("VISIBLE_DEVICES", "DEVICE_ORDER")


class EnvWrites(AssignmentCollector):
    name = "env-writes"
    priority = 20

    def prefilter_tests(self, catalog):
        return tuple((token, None) for token in ENV_TOKENS)

    def string_forms(self, catalog):
        # the key is compared whole (`const_str(key) in ENV_VARS`)
        return tuple(StringForm(var, END_OF_LITERAL) for var in ENV_VARS)

    def whole_file_words(self):
        # GPU105 needs every framework call before a write: a file that writes the mask is walked whole.
        return ENV_TOKENS

    def focus_words(self, catalog, imports):
        words = ["environ", "putenv"]
        words += [local for local, target in imports.items() if target in ("os.environ", "os.putenv")]
        return words

    def assigned(self, targets, value, walk) -> None:
        for target in targets:
            if isinstance(target, ast.Subscript) and walk.is_environ(target.value):
                key = const_str(target.slice)
                if key in ENV_VARS:
                    walk.env_write(key, "setitem", value, target)

    def visit_Call(self, node, walk) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("update", "setdefault") and walk.is_environ(func.value):
            if func.attr == "update":
                for arg in node.args[:1]:
                    if isinstance(arg, ast.Dict):
                        for k, v in zip(arg.keys, arg.values):
                            key = const_str(k) if k is not None else None
                            if key in ENV_VARS:
                                walk.env_write(key, "update", v, node)
                for kw in node.keywords:
                    if kw.arg in ENV_VARS:
                        walk.env_write(kw.arg, "update", kw.value, node)
            elif node.args:
                key = const_str(node.args[0])
                if key in ENV_VARS:
                    walk.env_write(key, "setdefault", node.args[1] if len(node.args) > 1 else None, node)
        elif node.args and walk.qualname(func) == "os.putenv":
            key = const_str(node.args[0])
            if key in ENV_VARS:
                walk.env_write(key, "putenv", node.args[1] if len(node.args) > 1 else None, node)
