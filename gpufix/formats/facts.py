"""What the non-Python readers find.

The readers (shell, Dockerfile, .env, YAML, JSON, TOML) each turn a file into `FileFacts`:
environment settings, device ordinals, device-index lists and container GPU pins, with the exact
character spans a fix may replace. The rule modules judge them (`Rule.check_text`, with the helpers
of gpufix.rules._text), against the same policy as Python, with the rule catalogue's messages:

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
from typing import Optional

from gpufix.maskvalues import hides_all, normalized  # noqa: F401  (re-exported for the readers)


MASK_VAR = "CUDA_VISIBLE_DEVICES"
ORDER_VAR = "CUDA_DEVICE_ORDER"
CONTAINER_VAR = "NVIDIA_VISIBLE_DEVICES"
ENV_VARS = (MASK_VAR, ORDER_VAR, CONTAINER_VAR)
UNKNOWN = "unknown"
FILE_MASK = "file"
NO_MASK = "no-mask"
# Values that hide every GPU on purpose (a CPU-only run), not a choice of GPU.


@dataclasses.dataclass
class EnvSet:
    """A setting of CUDA_VISIBLE_DEVICES or CUDA_DEVICE_ORDER in a non-Python file, with its value's span."""

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
    """A device ordinal written in a non-Python file, with the span a fix replaces."""

    what: str  # as the message shows it ("cuda:1", "gpu_id: 1")
    value: int
    start: int  # span of the replaceable text
    end: int
    template: str  # the replacement with "{}" for the new index ("cuda:{}", "{}", "\"{}\"")
    # The CUDA_VISIBLE_DEVICES value in force where it is used, when the reader knows it (a shell
    # command's own prefix or the last export before it): a string, None (not literal) or NO_MASK;
    # FILE_MASK: judge against the file's single literal mask, as in Python.
    mask: object = "file"
    scope: Optional[tuple] = None  # YAML/JSON/TOML: the key path it is in (as EnvSet.scope)


@dataclasses.dataclass
class IndexList:
    """A list of device indices under a config key (`trainer.devices: [0, 1]`)."""

    where: str  # the key path ("trainer.devices")
    indices: list
    start: int
    end: int


@dataclasses.dataclass
class ContainerPin:
    """The host GPUs a container is given (NVIDIA_VISIBLE_DEVICES, compose `device_ids`)."""

    what: str  # "NVIDIA_VISIBLE_DEVICES" or "device_ids"
    entries: list  # host GPU indices (ints) or UUID strings
    start: int
    end: int
    scope: Optional[tuple] = None  # the compose service / container it pins (as EnvSet.scope)


@dataclasses.dataclass
class FileFacts:
    """What a non-Python file's reader extracted for the text rules."""

    env: list = dataclasses.field(default_factory=list)
    ordinals: list = dataclasses.field(default_factory=list)
    lists: list = dataclasses.field(default_factory=list)
    pins: list = dataclasses.field(default_factory=list)
    # CI jobs that run on a runner the policy may not describe (a GitHub Actions job whose
    # `runs-on` does not name `self-hosted`): (scope, the `runs-on` text), scope as EnvSet.scope
    runners: list = dataclasses.field(default_factory=list)

    def runner_of(self, scope: Optional[tuple]) -> Optional[str]:
        """The `runs-on` text of the CI job a setting at `scope` is in force for, when that job runs
        on a runner the policy may not describe (a workflow's own `env` is in force in every job)."""
        if scope is None:
            return None
        for job, runs_on in self.runners:
            n = min(len(job), len(scope))
            if job[:n] == scope[:n]:
                return runs_on
        return None

    def extend(self, other: "FileFacts") -> None:
        self.env.extend(other.env)
        self.ordinals.extend(other.ordinals)
        self.lists.extend(other.lists)
        self.pins.extend(other.pins)
        self.runners.extend(other.runners)
