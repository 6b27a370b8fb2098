"""Run one program under recording stand-ins for the GPU frameworks (the oracle's child side).

`run_program(code)` forks: the child drops every real framework module from `sys.modules`, puts an
import hook in front that serves stub `torch`, `tensorflow`, `cupy`, `numba.cuda`, `ctranslate2`,
`faster_whisper`, `whisper`, `pynvml`, ... (every module the API catalogue in rules/apis names),
runs the program as `__main__`, and hands back what the stubs saw:

- `import_env`: CUDA_VISIBLE_DEVICES / CUDA_DEVICE_ORDER when the first framework module was
  imported (the header must be in force by then);
- `frozen_env`: the same at the first framework *call* (CUDA reads the mask once, when the runtime
  initialises; frameworks do that lazily, on first use): the mask that says which physical GPU an
  ordinal names;
- `calls`: every call into a stub, in order, with its arguments; device-carrying values are taken
  out of the arguments (replaced by `<dev>`) into `devices`, each with its kind and raw value;
- `imports`, `stdout`, `exception` (type name, or None).

Test-only: gpufix itself never runs users' code.
"""

from __future__ import annotations

import builtins
import importlib.abc
import importlib.machinery
import io
import json
import os
import re
import select
import signal
import sys
import types

from gpufix.analysis import TF_DEVICE_RE
from gpufix.catalog import load_api_catalog

FILENAME = "<gpufix-oracle>"
CUDA_RE = re.compile(r"^cuda(?::(\d+))?$")
ENV = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")
NVML_MODULES = ("pynvml", "nvidia_smi", "py3nvml")
# Device-type names other than CUDA: an index next to them is not a CUDA ordinal.
_CATALOG = None


def catalog():
    global _CATALOG
    if _CATALOG is None:
        _CATALOG = load_api_catalog()
    return _CATALOG


def stub_tops() -> set:
    tops = {m.split(".")[0] for m in catalog().framework_modules}
    return tops | set(NVML_MODULES) | {"numba", "onnxruntime"}


class _State:
    def __init__(self):
        self.import_env = None
        self.frozen_env = None
        self.calls = []
        self.imports = []


STATE = _State()


def _env_now():
    # What CUDA reads: the process environment (os.putenv changes it without touching os.environ).
    import ctypes

    getenv = ctypes.CDLL(None).getenv
    getenv.restype = ctypes.c_char_p
    return [(lambda b: b.decode() if b is not None else None)(getenv(v.encode())) for v in ENV]


def _caller_line() -> int:
    f = sys._getframe(2)
    while f is not None:
        if f.f_code.co_filename == FILENAME:
            return f.f_lineno
        f = f.f_back
    return 0


class Stub:
    """Any attribute of a stub module: calling it records the call and returns another stub."""

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return Stub(f"{self._name}.{attr}")

    def __setattr__(self, attr, value):
        object.__setattr__(self, attr, value)

    def __call__(self, *args, **kwargs):
        _record(self._name, args, kwargs, _caller_line())
        if self._name.endswith(".device_count"):
            return 8
        if self._name.endswith(".is_available"):
            return True
        return Stub(self._name + "()")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __iter__(self):
        return iter(())

    def __getitem__(self, key):
        return Stub(f"{self._name}[]")

    def __bool__(self):
        return True

    def __repr__(self):
        return f"<stub {self._name}>"


class StubModule(types.ModuleType):
    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return Stub(f"{self.__name__}.{attr}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, tops):
        self.tops = tops

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.tops:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = StubModule(spec.name)
        mod.__path__ = []
        # Star imports take a module's public names: give it the catalogued ones.
        prefix = spec.name + "."
        for api in catalog().apis:
            rest = api.name[len(prefix):] if api.name.startswith(prefix) else ""
            if rest and "." not in rest and "*" not in rest:
                setattr(mod, rest, Stub(api.name))
        if spec.name in NVML_MODULES:
            for extra in ("nvmlInit", "nvmlShutdown", "nvmlDeviceGetCount", "nvmlDeviceGetName"):
                setattr(mod, extra, Stub(f"{spec.name}.{extra}"))
        return mod

    def exec_module(self, module):
        STATE.imports.append(module.__name__)
        if catalog().framework_of_module(module.__name__) and STATE.import_env is None:
            STATE.import_env = _env_now()


# -- classifying arguments ------------------------------------------------------------------------
def _is_framework_call(name: str) -> bool:
    head = name.split("(")[0]
    return bool(catalog().framework_of_module(head.rsplit(".", 1)[0]) or catalog().framework_of_module(head.split(".")[0]))


def _norm(value, devices, path, key_devices=False):
    """JSON-able form of an argument; device strings are taken out into `devices`."""
    if isinstance(value, str):
        if CUDA_RE.match(value):
            m = CUDA_RE.match(value)
            devices.append({"path": path, "kind": "cuda", "index": int(m.group(1)) if m.group(1) else None, "raw": value})
            return "<dev>"
        m = TF_DEVICE_RE.match(value)
        if m:
            devices.append({"path": path, "kind": "tf", "index": int(m.group("index")), "raw": value,
                            "prefix": m.group("prefix")})
            return "<dev>"
        return value
    if isinstance(value, (list, tuple)):
        return [type(value).__name__] + [_norm(v, devices, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            if k == "device_id" and type(v) is int:
                devices.append({"path": f"{path}.device_id", "kind": "int", "index": v, "raw": v})
                out.append([k, "<dev>"])
            else:
                out.append([_norm_key(k, devices, path, key_devices), _norm(v, devices, f"{path}[{k!r}]")])
        return ["dict"] + out
    if isinstance(value, Stub):
        return f"<stub {value._name}>"
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return f"<{type(value).__name__}>"


def _norm_key(k, devices, path, key_devices):
    if key_devices and type(k) is int:
        devices.append({"path": f"{path}.key", "kind": "int", "index": k, "raw": k})
        return "<dev>"
    if isinstance(k, str):
        return "key:" + k  # keys are compared as written (map_location keys name where a checkpoint was saved)
    return _norm(k, devices, path)


def _spec_args(name: str, args, kwargs):
    """{(position or keyword): value kind} of the catalogued device parameters of this call."""
    head = name.split("(")[0] if "()" not in name else None
    last = name.rsplit(".", 1)[-1]
    qualified = name if "()" not in name and "[]" not in name else None
    found = {}
    for api in catalog().lookup(qualified, last, "." in name):
        for spec in api.args:
            if spec.when_position is not None:
                guard = args[spec.when_position] if spec.when_position < len(args) else kwargs.get("type")
                if not (isinstance(guard, str) and guard == spec.when_equals):
                    continue
            if spec.keyword is not None:
                found[spec.keyword] = spec.value
            if spec.position is not None:
                found[spec.position] = spec.value
    if head == "torch.device" or name == "torch.device":
        kind = args[0] if args and isinstance(args[0], str) else kwargs.get("type")
        if isinstance(kind, str) and not kind.startswith("cuda"):
            found = {}  # torch.device("cpu", index=1): a CPU index, not a CUDA ordinal
        elif kind is not None:
            found["index"] = "ordinal"
            found[1] = "ordinal"
    return found


def _record(name, args, kwargs, line):
    if _is_framework_call(name) and STATE.frozen_env is None:
        STATE.frozen_env = _env_now()
    specs = _spec_args(name, args, kwargs)
    devices = []
    out_args = []
    for i, a in enumerate(args):
        out_args.append(_arg(a, specs.get(i), devices, f"arg{i}"))
    out_kw = {}
    for k in sorted(kwargs):
        out_kw[k] = _arg(kwargs[k], specs.get(k), devices, f"kw:{k}")
    STATE.calls.append({"name": name, "line": line, "args": out_args, "kwargs": out_kw, "devices": devices})


def _arg(value, spec, devices, path):
    nvml = spec == "nvml-index"
    if type(value) is int and spec in ("ordinal", "ordinal-dict-values", "nvml-index"):
        devices.append({"path": path, "kind": "nvml" if nvml else "int", "index": value, "raw": value})
        return "<dev>"
    if spec in ("ordinal-list", "ordinal") and isinstance(value, (list, tuple)) and all(type(v) is int for v in value):
        out = [type(value).__name__]
        for i, v in enumerate(value):
            devices.append({"path": f"{path}[{i}]", "kind": "int", "index": v, "raw": v})
            out.append("<dev>")
        return out
    if spec == "ordinal-dict-values" and isinstance(value, dict):
        out = ["dict"]
        for k, v in value.items():
            if type(v) is int:
                devices.append({"path": f"{path}[{k!r}]", "kind": "int", "index": v, "raw": v})
                out.append([_norm_key(k, devices, path, False), "<dev>"])
            else:
                out.append([_norm_key(k, devices, path, False), _norm(v, devices, f"{path}[{k!r}]")])
        return out
    return _norm(value, devices, path, key_devices=spec == "ordinal-dict-keys")


# -- the child ------------------------------------------------------------------------------------
def _child(code: str, w: int) -> None:
    for var in ENV:
        os.environ.pop(var, None)
        os.unsetenv(var)
    tops = stub_tops()
    for name in list(sys.modules):
        if name.split(".")[0] in tops:
            del sys.modules[name]
    sys.meta_path.insert(0, _Finder(tops))
    out = io.StringIO()
    sys.stdout = out
    exc_name = None
    try:
        compiled = compile(code, FILENAME, "exec", dont_inherit=True)
        exec(compiled, {"__name__": "__main__", "__builtins__": builtins, "__file__": FILENAME})
    except SystemExit:
        pass
    except BaseException as exc:  # what the program raised is the result
        exc_name = type(exc).__name__
    result = {
        "import_env": STATE.import_env,
        "frozen_env": STATE.frozen_env,
        "calls": STATE.calls,
        "imports": STATE.imports,
        "stdout": out.getvalue(),
        "exception": exc_name,
    }
    write_record(w, result)


def write_record(w: int, result: dict) -> None:
    """The child's record, as JSON, down the pipe to the parent (all of it, however large)."""
    data = json.dumps(result, default=repr).encode()
    view = memoryview(data)
    while view:
        n = os.write(w, view)
        view = view[n:]


def run_forked(child, timeout: float, what: str) -> dict:
    """Fork; the child runs `child(w)`, which writes its record to the pipe `w`; the parent reads it
    (killing the child after `timeout` seconds of silence) and returns it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            child(w)
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([r], [], [], timeout)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise TimeoutError(f"the {what} did not finish under the stubs")
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    if not chunks:
        raise RuntimeError("the oracle's child died without a result")
    return json.loads(b"".join(chunks))


def run_program(code: str, timeout: float = 20.0) -> dict:
    """Run `code` in a forked child under the stubs; the child's record (see the module doc)."""
    catalog()  # loaded once in the parent, inherited by every child
    return run_forked(lambda w: _child(code, w), timeout, "program")
