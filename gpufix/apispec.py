"""The API catalogue's format: `[[api]]` tables (rules/apis/*.toml, and the user's own in the
policy), read by gpufix.catalog and gpufix.config. A leaf module: it imports nothing of gpufix."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional


class ConfigError(Exception):
    """A bad config file, key or value; the message says where and what is allowed."""


@dataclasses.dataclass(frozen=True)
class ApiSpec:
    """One device-taking API: which arguments carry a device ordinal (see rules/apis/*.toml)."""

    name: str  # qualified name ("torch.cuda.set_device") or a bare name matching any callee with it
    args: tuple = ()  # tuple of ArgSpec
    kind: str = "call"  # "call" | "method" (any receiver: x.cuda(1))
    framework: str = ""

    @property
    def last_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]


def callees_by(pairs) -> dict:
    """key -> the last names of the APIs paired with it (how their calls are written), or None
    when one of them matches any callee (`*`, or a wildcard last part); keys in first-seen order.
    `pairs`: (key, ApiSpec), the key being what a prefilter test is made of (a keyword)."""
    out: dict = {}
    for key, api in pairs:
        names = out.setdefault(key, set())
        if names is None:
            continue
        name = api.last_name
        if api.name == "*" or not name or "*" in name:
            out[key] = None
        else:
            names.add(name)
    return out


@dataclasses.dataclass(frozen=True)
class ArgSpec:
    """Which argument of a catalogued call holds a device index, and what kind of value it holds."""

    position: Optional[int] = None
    keyword: Optional[str] = None
    # what the argument holds: "ordinal" (int), "ordinal-list" (GPU002), "ordinal-dict-values"
    # (device_map={'': 1}), "ordinal-dict-keys" (max_memory={1: ...}), "tf-device" ('/GPU:1'),
    # "nvml-index" (GPU003)
    value: str = "ordinal"
    # only when positional argument `when_position` (or, when not given positionally, keyword
    # argument `when_keyword`) is the string `when_equals` (torch.device('cuda', 1),
    # torch.device(type='cuda', index=1); not torch.device(type='cpu', index=1))
    when_position: Optional[int] = None
    when_equals: Optional[str] = None
    when_keyword: Optional[str] = None


def parse_api_specs(items: Any, where: str, framework: str = "") -> tuple:
    """Parse `[[api]]` tables (the catalogue's format, also accepted from the user's config)."""
    if not isinstance(items, list):
        raise ConfigError(f"{where}: `api` must be an array of tables ([[tool.gpufix.api]])")
    specs = []
    for n, item in enumerate(items, 1):
        w = f"{where}: api #{n}"
        if not isinstance(item, dict):
            raise ConfigError(f"{w} must be a table with `name` and `args`")
        unknown = set(item) - {"name", "args", "kind"}
        if unknown:
            raise ConfigError(f"{w}: unknown key(s) {sorted(unknown)}; allowed: name, args, kind")
        name = item.get("name")
        if not isinstance(name, str) or not re.match(r"^(\*|[A-Za-z_]\w*)(\.(\*|[A-Za-z_]\w*))*$", name):
            raise ConfigError(f"{w}: `name` must be a dotted Python name such as \"utils.gpu.gpu_device_index\"")
        kind = item.get("kind", "call")
        if kind not in ("call", "method"):
            raise ConfigError(f"{w}: `kind` must be \"call\" or \"method\", got {kind!r}")
        args = item.get("args", [{"position": 0}])
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{w}: `args` must be a non-empty list of tables like {{position = 0, keyword = \"device\"}}")
        arg_specs = []
        for a in args:
            if not isinstance(a, dict):
                raise ConfigError(f"{w}: each of `args` must be a table like {{position = 0}}")
            bad = set(a) - {"position", "keyword", "value", "when_position", "when_equals", "when_keyword"}
            if bad:
                raise ConfigError(
                    f"{w}: unknown arg key(s) {sorted(bad)}; allowed: position, keyword, value, when_position, when_equals, when_keyword"
                )
            pos = a.get("position")
            kw = a.get("keyword")
            if pos is None and kw is None:
                raise ConfigError(f"{w}: an arg needs `position` or `keyword`")
            if pos is not None and (not isinstance(pos, int) or pos < 0):
                raise ConfigError(f"{w}: `position` must be an integer >= 0")
            if kw is not None and not isinstance(kw, str):
                raise ConfigError(f"{w}: `keyword` must be a string")
            value = a.get("value", "ordinal")
            if value not in ARG_VALUE_KINDS:
                raise ConfigError(f"{w}: `value` must be one of {', '.join(ARG_VALUE_KINDS)}, got {value!r}")
            arg_specs.append(
                ArgSpec(
                    position=pos,
                    keyword=kw,
                    value=value,
                    when_position=a.get("when_position"),
                    when_equals=a.get("when_equals"),
                    when_keyword=a.get("when_keyword"),
                )
            )
        specs.append(ApiSpec(name=name, args=tuple(arg_specs), kind=kind, framework=framework))
    return tuple(specs)


ARG_VALUE_KINDS = (
    "ordinal",
    "ordinal-list",
    "ordinal-dict-values",
    "ordinal-dict-keys",
    "tf-device",
    "nvml-index",
    "count-or-indices",
    "device-element",
)
