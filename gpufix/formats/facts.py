"""What the non-Python readers find, and the rules that judge it.

The readers (shell, Dockerfile, .env, YAML, JSON, TOML) each turn a file into `FileFacts`:
environment settings, device ordinals, device-index lists and container GPU pins, with the exact
character spans a fix may replace. The same rule codes as for Python judge them here, against the
same policy, with the rule catalogue's messages:

* GPU001  a `cuda:N` value, or an int under a device-id key (`gpu_id: 1`), invalid under the mask
          (remapped like in code when the physical GPU is known);
* GPU002  a device-index list (`gpu_ids: [1]`, Lightning `devices: [1]` / "1,") naming GPUs the
          mask hides or renumbers (report only);
* GPU102  an index-form CUDA_VISIBLE_DEVICES with no CUDA_DEVICE_ORDER in force;
* GPU103  CUDA_VISIBLE_DEVICES other than the policy's; a container pin (NVIDIA_VISIBLE_DEVICES,
          compose `device_ids`) under which the policy's indices mean other GPUs (report only);
* GPU104  CUDA_DEVICE_ORDER other than the policy's;
* GPU106  a Kubernetes-style `value: 1` for a mask variable (the API rejects a non-string).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from gpufix.catalog import load_rule_docs
from gpufix.config import Policy, is_index_mask, parse_mask
from gpufix.model import Finding, Fix
from gpufix.formats.text import Lines, insert_edit, replace_edit
from gpufix.rules._shared import mask_fix_applicability, remap_applicability

MASK_VAR = "CUDA_VISIBLE_DEVICES"
ORDER_VAR = "CUDA_DEVICE_ORDER"
CONTAINER_VAR = "NVIDIA_VISIBLE_DEVICES"
ENV_VARS = (MASK_VAR, ORDER_VAR, CONTAINER_VAR)
UNKNOWN = "unknown"
FILE_MASK = "file"
NO_MASK = "no-mask"
# Values that hide every GPU on purpose (a CPU-only run), not a choice of GPU.
_NO_GPU_VALUES = ("", "-1", "none", "void", "nodevfiles")


@dataclasses.dataclass
class EnvSet:
    var: str
    value: Optional[str]  # None: not a literal (`$GPU`, `${{ matrix.gpu }}`)
    start: int  # the value's span (what a fix replaces); the variable's position when value is None
    end: int
    style: str = ""  # how a replacement is written: "" bare, '"' or "'" quoted
    editable: bool = True
    order_in_force: bool = False  # a CUDA_DEVICE_ORDER setting reaches this one
    order_insert: Optional[tuple] = None  # (offset, text) that would set CUDA_DEVICE_ORDER before it
    non_string: bool = False  # a typed non-string value where a string is required (GPU106)
    form: str = ""  # where it was found, for messages ("ENV", "export", ...)
    # YAML/JSON/TOML: the key path of what the setting applies to (the compose service, the CI job
    # or step, the Kubernetes container); None elsewhere
    scope: Optional[tuple] = None


@dataclasses.dataclass
class Ordinal:
    what: str  # as the message shows it ("cuda:1", "gpu_id: 1")
    value: int
    start: int  # span of the replaceable text
    end: int
    template: str  # the replacement with "{}" for the new index ("cuda:{}", "{}", "\"{}\"")
    # The CUDA_VISIBLE_DEVICES value in force where it is used, when the reader knows it (a shell
    # command's own prefix or the last export before it): a string, None (not literal) or NO_MASK;
    # FILE_MASK: judge against the file's single literal mask, as in Python.
    mask: object = "file"


@dataclasses.dataclass
class IndexList:
    where: str  # the key path ("trainer.devices")
    indices: list
    start: int
    end: int


@dataclasses.dataclass
class ContainerPin:
    what: str  # "NVIDIA_VISIBLE_DEVICES" or "device_ids"
    entries: list  # host GPU indices (ints) or UUID strings
    start: int
    end: int


@dataclasses.dataclass
class FileFacts:
    env: list = dataclasses.field(default_factory=list)
    ordinals: list = dataclasses.field(default_factory=list)
    lists: list = dataclasses.field(default_factory=list)
    pins: list = dataclasses.field(default_factory=list)

    def extend(self, other: "FileFacts") -> None:
        self.env.extend(other.env)
        self.ordinals.extend(other.ordinals)
        self.lists.extend(other.lists)
        self.pins.extend(other.pins)


def _normalized(value: str) -> str:
    return ",".join(part.strip() for part in value.strip().split(","))


def hides_all(value: Optional[str]) -> bool:
    return value is not None and value.strip().strip("'\"").lower() in _NO_GPU_VALUES


def quoted(style: str, value: str) -> str:
    return f"{style}{value}{style}" if style else value


class _Judge:
    def __init__(self, path: str, text: str, policy: Policy, facts: FileFacts):
        self.path = path
        self.lines = Lines(text)
        self.policy = policy
        self.facts = facts
        self.docs = load_rule_docs()
        self.mask_sets = [e for e in facts.env if e.var == MASK_VAR]

    def finding(self, code: str, start: int, end: int, variant: str, fix: Optional[Fix] = None, **values) -> Finding:
        doc = self.docs[code]
        line, col = self.lines.pos(start)
        end_line, end_col = self.lines.pos(max(end, start))
        return Finding(code, self.path, line, col + 1, end_line, end_col + 1,
                       doc.messages[variant].format(**values), doc.severity, fix)

    def file_mask(self):
        values = set()
        for e in self.mask_sets:
            if e.value is None:
                return UNKNOWN
            if hides_all(e.value):
                continue
            values.add(_normalized(e.value))
        if not values:
            return None
        if len(values) != 1:
            return UNKNOWN
        return parse_mask(values.pop())

    def remap(self, i: int, file_mask, policy_mask):
        """(physical, new index or None, known) as in code (see the contract's remapping)."""
        if file_mask == UNKNOWN:
            return None, None, False
        physical = file_mask[i] if (file_mask is not None and i < len(file_mask)) else i
        if isinstance(physical, int) != is_index_mask(policy_mask):
            return physical, None, False
        if physical in policy_mask:
            return physical, policy_mask.index(physical), True
        return physical, None, True

    # -- rules ---------------------------------------------------------------------------------
    def mask_of(self, o: Ordinal, file_mask):
        if o.mask == FILE_MASK:
            return file_mask
        if o.mask == NO_MASK:
            return None
        if o.mask is None:
            return UNKNOWN
        return None if hides_all(o.mask) else parse_mask(o.mask)

    def gpu001(self):
        policy_mask = self.policy.mask
        for o in self.facts.ordinals:
            if o.value == 0:
                continue
            file_mask = self.mask_of(o, self.file_mask())
            if policy_mask is None:
                if file_mask is None or file_mask == UNKNOWN or o.value < len(file_mask):
                    continue
                yield self.finding("GPU001", o.start, o.end, "no-policy", what=o.what, index=o.value,
                                   mask=_text(file_mask), count=len(file_mask), visible=_visible(len(file_mask)))
                continue
            physical, new, known = self.remap(o.value, file_mask, policy_mask)
            mask = _text(policy_mask)
            if not known:
                if o.value < len(policy_mask):
                    continue
                reason = ("the file's own mask is not a single literal" if file_mask == UNKNOWN
                          else "an index cannot be matched with the GPU UUIDs the policy names")
                yield self.finding("GPU001", o.start, o.end, "unknown", what=o.what, index=o.value, mask=mask,
                                   count=len(policy_mask), reason=reason)
            elif new is None:
                yield self.finding("GPU001", o.start, o.end, "hidden", what=o.what, physical=physical, mask=mask)
            elif new != o.value:
                code = o.template.format(new)
                fix = Fix(remap_applicability(file_mask, policy_mask), f"use {code}", (replace_edit(self.lines, o.start, o.end, code),))
                yield self.finding("GPU001", o.start, o.end, "remap", fix, what=o.what, physical=physical, mask=mask,
                                   new_index=new, new=code)

    def gpu002(self):
        file_mask = self.file_mask()
        policy_mask = self.policy.mask
        for lst in self.facts.lists:
            if policy_mask is None:
                if file_mask is None or file_mask == UNKNOWN:
                    continue
                bad = [i for i in lst.indices if i >= len(file_mask)]
                if bad:
                    yield self.finding("GPU002", lst.start, lst.end, "no-policy", api=lst.where, indices=lst.indices,
                                       bad=bad, mask=_text(file_mask), count=len(file_mask))
                continue
            bad = []
            for i in lst.indices:
                if i == 0:
                    continue
                _, new, known = self.remap(i, file_mask, policy_mask)
                if (not known and i >= len(policy_mask)) or (known and new != i):
                    bad.append(i)
            if bad:
                yield self.finding("GPU002", lst.start, lst.end, "policy", api=lst.where, indices=lst.indices, bad=bad,
                                   mask=_text(policy_mask), count=len(policy_mask), visible=_visible(len(policy_mask)))

    def gpu102(self):
        order = self.policy.device_order
        for e in self.mask_sets:
            if e.order_in_force or e.value is None or not is_index_mask(parse_mask(e.value)):
                continue
            fix = None
            if e.order_insert is not None:
                at, template = e.order_insert
                fix = Fix("safe", f"set CUDA_DEVICE_ORDER={order} before the mask",
                          (insert_edit(self.lines, at, template.format(order=order)),))
            yield self.finding("GPU102", e.start, e.end, "file", fix, order=order)

    def gpu103(self):
        want = self.policy.visible_devices
        if want is not None:
            for e in self.mask_sets:
                if e.value is None or hides_all(e.value) or _normalized(e.value) == _normalized(want):
                    continue
                fix = None
                if e.editable:
                    how = mask_fix_applicability(e.value, self.policy.mask)
                    fix = Fix(how, f'set CUDA_VISIBLE_DEVICES="{want}"', (replace_edit(self.lines, e.start, e.end, quoted(e.style, want)),))
                if e.form == "accelerate":
                    yield self.finding("GPU103", e.start, e.end, "launcher", value=e.value, want=want)
                else:
                    yield self.finding("GPU103", e.start, e.end, "policy", fix, value=e.value, want=want)
        mask = self.policy.mask
        if mask is None or not is_index_mask(mask):
            return
        for pin in self.facts.pins:
            if not pin.entries or not is_index_mask(pin.entries):
                continue  # "all", UUIDs: the container keeps the host's numbering or cannot be judged
            wrong = [m for m in mask if m >= len(pin.entries) or pin.entries[m] != m]
            if not wrong:
                continue
            inside = ", ".join(f"{i} = host GPU {g}" for i, g in enumerate(pin.entries))
            yield self.finding("GPU103", pin.start, pin.end, "container", what=pin.what, pinned=_text(pin.entries),
                               inside=inside, want=self.policy.visible_devices, need=_text(range(max(mask) + 1)))

    def gpu104(self):
        want = self.policy.device_order
        for e in self.facts.env:
            if e.var != ORDER_VAR or e.value is None or e.value.strip() == want:
                continue
            fix = None
            if e.editable:
                fix = Fix("safe", f'set CUDA_DEVICE_ORDER="{want}"', (replace_edit(self.lines, e.start, e.end, quoted(e.style, want)),))
            yield self.finding("GPU104", e.start, e.end, "default", fix, value=e.value, want=want)

    def gpu106(self):
        for e in self.facts.env:
            if not e.non_string or e.var not in (MASK_VAR, ORDER_VAR):
                continue
            fix = None
            if e.editable and e.value is not None:
                fix = Fix("safe", f'quote it: "{e.value}"', (replace_edit(self.lines, e.start, e.end, f'"{e.value}"'),))
            yield self.finding("GPU106", e.start, e.end, "typed", fix, var=e.var, value=e.value)


RULES = ("GPU001", "GPU002", "GPU102", "GPU103", "GPU104", "GPU106")


def _text(entries) -> str:
    return ",".join(str(e) for e in entries)


def _visible(count: int) -> str:
    return "cuda:0" if count == 1 else f"cuda:0..cuda:{count - 1}"


def judge(path: str, text: str, policy: Policy, facts: FileFacts, enabled: Callable[[str], bool]) -> list:
    j = _Judge(path, text, policy, facts)
    out = []
    for code in RULES:
        if enabled(code):
            out.extend(getattr(j, code.lower())())
    return out


def majority_candidates(path: str, text: str, facts: FileFacts) -> list:
    """Literal CUDA_VISIBLE_DEVICES values as GPU103 candidates (the engine's cached shape), judged
    across all files, Python and others, when there is no policy."""
    lines = Lines(text)
    doc = load_rule_docs()["GPU103"]
    out = []
    for e in facts.env:
        if e.var != MASK_VAR or e.value is None or hides_all(e.value):
            continue
        line, col = lines.pos(e.start)
        end_line, end_col = lines.pos(e.end)
        f = Finding("GPU103", path, line, col + 1, end_line, end_col + 1, "", doc.severity)
        out.append({"finding": f.to_json(), "value": e.value})
    return out
