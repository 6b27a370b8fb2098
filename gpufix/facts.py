"""The facts one file's analysis hands to the rules (gpufix.analysis collects them, the rules read
them): plain dataclasses and the names of the variables they are about. A leaf module: rules,
collectors and fixers import fact types from here, never from the walk."""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

MASK_VAR = "CUDA_VISIBLE_DEVICES"
ORDER_VAR = "CUDA_DEVICE_ORDER"
ENV_VARS = (MASK_VAR, ORDER_VAR)
CUDA_STRING_RE = re.compile(r"^cuda:(\d+)$")
CUDA_ORDINAL_CALLS = ("torch.cuda.current_device", "cupy.cuda.runtime.getDevice", "numba.cuda.get_current_device")
TF_DEVICE_RE = re.compile(r"^(?P<prefix>.*?/?(?:device:)?)(?P<kind>GPU):(?P<index>\d+)$", re.I)


@dataclasses.dataclass
class Pos:
    """A source range: 1-based lines, 0-based columns in characters (ast's are in bytes), the end exclusive."""

    line: int
    col: int
    end_line: int
    end_col: int


@dataclasses.dataclass
class EnvWrite:
    """A write of an environment variable in the code (os.environ[...] = ..., putenv, %env, ...)."""

    var: str
    method: str  # setitem | update | setdefault | putenv | magic
    value_kind: str  # str | int | other-literal | dynamic
    value: Optional[str]
    value_pos: Optional[Pos]
    pos: Pos  # the write itself (target or call)
    stmt: Pos  # the enclosing statement
    ctx: Optional[int]  # None: runs at import time; else the id of the enclosing function
    module_body: bool  # a direct child of the module body
    simple_stmt: bool  # the statement does nothing but this write
    environ_src: str  # source of the environ expression ("os.environ", "environ")
    order: int  # source order
    value_src: Optional[str] = None  # the value's source text
    # the write runs unconditionally at import time (a module-body statement, or the header form
    # that keeps an explicit CPU run: `if os.environ.get(MASK) not in ("", "-1"): ...`)
    header: bool = False
    child: bool = False  # the environment of a child process (subprocess env=...), not this one's


@dataclasses.dataclass
class GpuTrigger:
    """A GPU framework import or a call of a catalogued framework API (GPU105's 'too late')."""

    what: str
    pos: Pos
    ctx: Optional[int]
    order: int
    # a call of the file's own function that imports the framework when it runs (a loader): it is
    # earlier than the writes that follow it in the same scope only, not than every write in a
    # function (the loader's own writes run in its body, in their order)
    via_call: bool = False


@dataclasses.dataclass
class OrdinalUse:
    """A device ordinal the code uses: where, its value, and the API or literal that carries it."""

    kind: str  # cuda-string | int | tf-device | list | dict-keys | nvml-index
    pos: Pos
    value: object  # int, or for lists/dicts a tuple of (int, Pos)
    api: str  # what was called ("torch.cuda.set_device", "'cuda:N' string")
    text: str = ""  # the literal as written (strings)
    string: str = ""  # the string's value (strings; `"cuda:" "1"` is "cuda:1")
    # the callee's name is both imported and defined in this file, and this call may run either
    shadowed: str = ""
    via: str = ""  # value flow: the names the literal went through to its use (gpufix.valueflow)
    fix_blocked: Optional[str] = None  # value flow: why the literal must not be rewritten


@dataclasses.dataclass
class Facts:
    """What the one walk of a Python file collected for the rules: imports, GPU triggers, env writes, ordinals."""

    imports: dict = dataclasses.field(default_factory=dict)
    star_modules: list = dataclasses.field(default_factory=list)
    gpu_imports: list = dataclasses.field(default_factory=list)  # GpuTrigger
    gpu_calls: list = dataclasses.field(default_factory=list)  # GpuTrigger
    uses_device_api: bool = False
    has_main_guard: bool = False
    env_writes: list = dataclasses.field(default_factory=list)
    ordinals: list = dataclasses.field(default_factory=list)
    # module body: (line, col) of the docstring/`from __future__` prefix end, for the header
    first_stmt_line: Optional[int] = None
    # facts of the other collectors, by collector name (rules read them with facts.extra[name])
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def is_gpu_module(self) -> bool:
        return bool(self.gpu_imports) or self.uses_device_api


def imports_module(facts: Facts, module: str) -> bool:
    return any(q == module or q.startswith(module + ".") for q in facts.imports.values()) or module in facts.star_modules
