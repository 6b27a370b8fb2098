"""Masks handed to child processes: the `env=` of subprocess.run/Popen/call/check_call/check_output
and asyncio's create_subprocess_*, the env argument of os.exec*e / os.spawn*e, `dict(os.environ,
CUDA_VISIBLE_DEVICES=...)`, `{**os.environ, "CUDA_VISIBLE_DEVICES": ...}`, and writes into a copy
of os.environ (`env = os.environ.copy(); env["CUDA_VISIBLE_DEVICES"] = "0"`). They are mask writes
(GPU103, GPU104, GPU106 judge them) marked `child`: never the file's own header (GPU101/GPU102
still apply) and never too late (GPU105)."""

from __future__ import annotations

import ast

from gpufix.analysis import const_str
from gpufix.collectors import AssignmentCollector
from gpufix.facts import ENV_VARS

CHILD_ENV_CALLS = frozenset(
    [f"subprocess.{n}" for n in ("run", "Popen", "call", "check_call", "check_output")]
    + ["asyncio.create_subprocess_exec", "asyncio.create_subprocess_shell"]
    + [f"os.{n}" for n in ("execle", "execlpe", "execve", "execvpe", "spawnle", "spawnlpe", "spawnve", "spawnvpe")]
)


class ChildEnv(AssignmentCollector):
    name = "child-env"
    priority = 25

    # The mask variables' names are env-writes' prefilter tests and whole-file words already: a file
    # that holds a child's mask is always walked whole.

    def before(self, walk) -> None:
        walk.env_copies = set()  # names bound to a copy of os.environ
        walk.child_envs = set()  # ids of the mappings already read as a child's environment

    def _is_environ_copy(self, node, walk) -> bool:
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "copy" and walk.is_environ(func.value):
                return True
            name = func.id if isinstance(func, ast.Name) else walk.qualname(func)
            return name in ("dict", "copy.copy", "copy.deepcopy") and bool(node.args) and walk.is_environ(node.args[0])
        if isinstance(node, ast.Dict):
            return any(k is None and walk.is_environ(v) for k, v in zip(node.keys, node.values))
        return False

    def _env(self, node, walk, keywords=None) -> None:
        """The mask writes of a mapping a child process gets."""
        if id(node) in walk.child_envs:
            return
        walk.child_envs.add(id(node))
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                key = const_str(k) if k is not None else None
                if key in ENV_VARS:
                    walk.env_write(key, "child", v, node, child=True)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            for kw in node.keywords:
                if kw.arg in ENV_VARS:
                    walk.env_write(kw.arg, "child", kw.value, node, child=True)
            if node.args and isinstance(node.args[0], ast.Dict):
                self._env(node.args[0], walk)

    def assigned(self, targets, value, walk) -> None:
        for target in targets:
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and target.value.id in walk.env_copies:
                key = const_str(target.slice)
                if key in ENV_VARS:
                    walk.env_write(key, "child", value, target, child=True)
            elif isinstance(target, ast.Name) and self._is_environ_copy(value, walk):
                walk.env_copies.add(target.id)

    def visit_Call(self, node, walk) -> None:
        func, qual = node.func, walk.call_qual
        if isinstance(func, ast.Attribute) and func.attr == "update" and isinstance(func.value, ast.Name) \
                and func.value.id in walk.env_copies:
            for arg in node.args[:1]:
                self._env(arg, walk)
            for kw in node.keywords:
                if kw.arg in ENV_VARS:
                    walk.env_write(kw.arg, "child", kw.value, node, child=True)
        elif qual in CHILD_ENV_CALLS:
            env = next((kw.value for kw in node.keywords if kw.arg == "env"), None)
            if env is None and qual.startswith("os.") and node.args and not any(isinstance(a, ast.Starred) for a in node.args):
                env = node.args[-1]  # os.execve(path, args, env): the environment comes last
            if env is not None:
                self._env(env, walk)
        elif isinstance(func, ast.Name) and func.id == "dict" and node.args and walk.is_environ(node.args[0]):
            self._env(node, walk)  # dict(os.environ, CUDA_VISIBLE_DEVICES="0")

    def visit_Dict(self, node, walk) -> None:
        if self._is_environ_copy(node, walk):
            self._env(node, walk)  # {**os.environ, "CUDA_VISIBLE_DEVICES": "0"}
