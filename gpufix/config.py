"""The policy: `[tool.gpufix]` in pyproject.toml or a top-level `gpufix.toml`, validated strictly.

Every error names the file, the key and what is allowed, and is raised as `ConfigError`
(the CLI turns it into exit code 2).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on old Pythons only
    import tomli as tomllib

HEADER_SCOPES = ("gpu-modules", "entrypoints", "all")
DEVICE_ORDERS = ("PCI_BUS_ID", "FASTEST_FIRST")
RULE_CODE_RE = re.compile(r"^GPU\d{0,3}$")


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


@dataclasses.dataclass(frozen=True)
class ArgSpec:
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


@dataclasses.dataclass(frozen=True)
class Policy:
    visible_devices: Optional[str] = None  # None: no policy
    device_order: str = "PCI_BUS_ID"
    min_memory_gib: float = 20.0
    expect_name: Optional[str] = None
    expect_uuid: Optional[str] = None
    header_scope: Optional[str] = None  # None: default (gpu-modules with a policy, else entrypoints)
    select: tuple = ()
    ignore: tuple = ()
    exclude: tuple = ()
    per_file_ignores: tuple = ()  # tuple of (glob, tuple(codes))
    extra_apis: tuple = ()  # tuple of ApiSpec from the user's config
    source: Optional[str] = None  # the file the policy came from
    root: Optional[str] = None  # directory of that file: where relative globs start

    @property
    def has_policy(self) -> bool:
        return self.visible_devices is not None

    @property
    def effective_header_scope(self) -> str:
        if self.header_scope:
            return self.header_scope
        return "gpu-modules" if self.has_policy else "entrypoints"

    @property
    def mask(self) -> Optional[list]:
        return parse_mask(self.visible_devices) if self.visible_devices is not None else None

    def fingerprint(self) -> str:
        """A stable hash of everything that changes findings (for the result cache)."""
        data = dataclasses.asdict(self)
        data.pop("source", None)
        data.pop("root", None)
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.blake2b(blob, digest_size=12).hexdigest()

    def to_report(self) -> dict:
        return {
            "visible-devices": self.visible_devices,
            "device-order": self.device_order,
            "header-scope": self.effective_header_scope,
        }


_UUID_RE = re.compile(r"^(GPU|MIG)-[0-9A-Za-z-]+(/\d+/\d+)?$")
_INDEX_RE = re.compile(r"^\d+$")


def parse_mask(value: str) -> list:
    """Entries of a CUDA_VISIBLE_DEVICES value, as CUDA reads it: the first invalid entry ends it.

    Index entries become ints, GPU-/MIG- UUID entries stay strings.
    """
    entries: list = []
    for raw in value.split(","):
        item = raw.strip()
        if _INDEX_RE.match(item):
            entries.append(int(item))
        elif _UUID_RE.match(item):
            entries.append(item)
        else:
            break
    return entries


def is_index_mask(entries: Sequence) -> bool:
    return bool(entries) and all(isinstance(e, int) for e in entries)


def validate_mask(value: Any, where: str, key: str = "visible-devices") -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ConfigError(
            f"{where}: `{key}` must be a string such as \"1\" or \"0,1\" or \"GPU-<uuid>\", "
            f"got {type(value).__name__} {value!r}"
        )
    entries = parse_mask(value)
    count = len([v for v in value.split(",")])
    if not entries or len(entries) != count:
        raise ConfigError(
            f"{where}: `{key}` = {value!r} is not a valid CUDA_VISIBLE_DEVICES value; allowed: "
            "comma-separated GPU indices (\"1\", \"0,2\") or GPU-/MIG- UUIDs"
        )
    if len(set(map(str, entries))) != len(entries):
        raise ConfigError(f"{where}: `{key}` = {value!r} names the same GPU twice")
    return ",".join(str(e) for e in entries)


_KNOWN_KEYS = {
    "visible-devices",
    "device-order",
    "min-memory-gib",
    "expect-name",
    "expect-uuid",
    "header-scope",
    "select",
    "ignore",
    "exclude",
    "per-file-ignores",
    "api",
    "extend-select",
}


def _codes(value: Any, where: str, key: str) -> tuple:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: `{key}` must be a list of rule codes or prefixes such as [\"GPU1\"]")
    out = []
    for code in value:
        code = code.strip().upper()
        if not RULE_CODE_RE.match(code):
            raise ConfigError(
                f"{where}: `{key}` has {code!r}, which is not a rule code or prefix (GPU, GPU1, GPU001, ...)"
            )
        out.append(code)
    return tuple(out)


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
)


def policy_from_table(table: Mapping, where: str, root: Optional[str] = None) -> Policy:
    """Validate one `[tool.gpufix]` table into a Policy."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: [tool.gpufix] must be a table")
    unknown = sorted(set(table) - _KNOWN_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)} in [tool.gpufix]; "
            f"allowed: {', '.join(sorted(_KNOWN_KEYS))}"
        )
    kw: dict = {"source": where, "root": root}
    if "visible-devices" in table:
        kw["visible_devices"] = validate_mask(table["visible-devices"], where)
    if "device-order" in table:
        v = table["device-order"]
        if v not in DEVICE_ORDERS:
            raise ConfigError(f"{where}: `device-order` = {v!r}; allowed: {', '.join(DEVICE_ORDERS)}")
        kw["device_order"] = v
    if "min-memory-gib" in table:
        v = table["min-memory-gib"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(f"{where}: `min-memory-gib` must be a number >= 0, got {v!r}")
        kw["min_memory_gib"] = float(v)
    for key, attr in (("expect-name", "expect_name"), ("expect-uuid", "expect_uuid")):
        if key in table:
            v = table[key]
            if not isinstance(v, str) or not v.strip():
                raise ConfigError(f"{where}: `{key}` must be a non-empty string, got {v!r}")
            kw[attr] = v
    if "header-scope" in table:
        v = table["header-scope"]
        if v not in HEADER_SCOPES:
            raise ConfigError(f"{where}: `header-scope` = {v!r}; allowed: {', '.join(HEADER_SCOPES)}")
        kw["header_scope"] = v
    if "select" in table:
        kw["select"] = _codes(table["select"], where, "select")
    if "extend-select" in table:
        kw["select"] = tuple(kw.get("select", ())) + _codes(table["extend-select"], where, "extend-select")
    if "ignore" in table:
        kw["ignore"] = _codes(table["ignore"], where, "ignore")
    if "exclude" in table:
        v = table["exclude"]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ConfigError(f"{where}: `exclude` must be a list of glob strings such as [\"build/\"]")
        kw["exclude"] = tuple(v)
    if "per-file-ignores" in table:
        v = table["per-file-ignores"]
        if not isinstance(v, Mapping):
            raise ConfigError(
                f"{where}: `per-file-ignores` must be a table of glob = [codes], e.g. {{ \"tests/**\" = [\"GPU101\"] }}"
            )
        kw["per_file_ignores"] = tuple(
            (glob, _codes(codes, where, f"per-file-ignores.{glob}")) for glob, codes in v.items()
        )
    if "api" in table:
        kw["extra_apis"] = parse_api_specs(table["api"], where)
    return Policy(**kw)


def _load_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: config is not UTF-8: {exc}") from None


def read_config_file(path: Path) -> Optional[Policy]:
    """The policy in one file: `gpufix.toml` (top level) or pyproject.toml ([tool.gpufix]).

    Returns None for a pyproject.toml without a [tool.gpufix] table.
    """
    data = _load_toml(path)
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("gpufix") if isinstance(data.get("tool"), dict) else None
        if table is None:
            return None
        return policy_from_table(table, str(path), root=str(path.parent))
    return policy_from_table(data, str(path), root=str(path.parent))


def find_config(start: Path) -> Optional[Path]:
    """The nearest gpufix.toml or pyproject.toml with [tool.gpufix] at or above `start`."""
    start = start.resolve()
    here = start if start.is_dir() else start.parent
    for directory in (here, *here.parents):
        candidate = directory / "gpufix.toml"
        if candidate.is_file():
            return candidate
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            # A broken pyproject.toml that might hold our table is an error (raised), not "no config".
            data = _load_toml(candidate)
            tool = data.get("tool")
            if isinstance(tool, dict) and "gpufix" in tool:
                return candidate
    return None


def load_policy(
    paths: Sequence[str] = (".",),
    config_file: Optional[str] = None,
    overrides: Optional[Mapping[str, Any]] = None,
) -> Policy:
    """The effective policy: `--config FILE` or the nearest config above the first path, then flags."""
    policy: Optional[Policy] = None
    if config_file:
        cfg = Path(config_file)
        if not cfg.is_file():
            raise ConfigError(f"{config_file}: config file not found")
        policy = read_config_file(cfg)
        if policy is None:
            raise ConfigError(f"{config_file}: has no [tool.gpufix] table")
    else:
        first = Path(paths[0]) if paths else Path(".")
        found = find_config(first if first.exists() else Path("."))
        if found is not None:
            policy = read_config_file(found)
    if policy is None:
        policy = Policy(root=str(Path(".").resolve()))
    if overrides:
        changes = {}
        for key, value in overrides.items():
            if value is None or value == ():
                continue
            if key == "visible_devices":
                value = validate_mask(value, "--visible-devices", "--visible-devices")
            elif key in ("select", "ignore"):
                value = _codes(list(value), f"--{key}", key)
            changes[key] = value
        policy = dataclasses.replace(policy, **changes)
    return policy
