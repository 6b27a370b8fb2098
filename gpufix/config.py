"""The policy: `[tool.gpufix]` in pyproject.toml or a top-level `gpufix.toml`, validated strictly.

Every error names the file, the key and what is allowed, and is raised as `ConfigError`
(the CLI turns it into exit code 2).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

# The API catalogue's format, read by gpufix.catalog too: a leaf module both import (re-exported).
from gpufix.apispec import ARG_VALUE_KINDS, ApiSpec, ArgSpec, ConfigError, parse_api_specs  # noqa: F401
from gpufix.deferred import LazyPattern, toml_parser
from gpufix.kinds import ALL_KINDS

HEADER_SCOPES = ("gpu-modules", "entrypoints", "all")
FILE_KINDS = ALL_KINDS  # gpufix.kinds: the one list of input kinds
DEVICE_ORDERS = ("PCI_BUS_ID", "FASTEST_FIRST")
RULE_CODE_RE = LazyPattern(r"^GPU\d{0,3}$")


@dataclasses.dataclass(frozen=True)
class Policy:
    """The GPU policy and settings in force for a file: config file, user config and command line merged."""

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
    known_first_party: tuple = ()  # top-level names that are the project's own code (never frameworks)
    known_gpu_frameworks: tuple = ()  # module names that are GPU frameworks even when first-party
    # explicit CPU runs (a caller's CUDA_VISIBLE_DEVICES="" or "-1"): "keep" inserts a header that
    # leaves them alone, "override" pins every run to the policy's GPUs
    cpu_runs: str = "keep"
    # run-time enforcement (gpufix.runtime): how the venv guard and the pytest plugin treat a caller's
    # own mask ("enforce": replace it, "default": only set what is unset), and whether the pytest plugin
    # pins test runs of this project
    guard_mode: str = "enforce"
    pytest_guard: bool = False
    project: Optional[Any] = None  # gpufix.project.ProjectIndex, set by scan/apply (not a config key)
    # what the project's launchers pass to its scripts (gpufix.launchers.launch_args), set by
    # scan/apply beside `project` (not a config key); part of the fingerprint: a changed launcher
    # changes whether a default's fix is withheld
    launch_args: tuple = ()
    file_kinds: tuple = FILE_KINDS  # which kinds of files a folder scan reads (gpufix.formats)
    source: Optional[str] = None  # the file the policy came from
    root: Optional[str] = None  # directory of that file: where relative globs start
    # the config file's own selection, as written (select or None, extend-select, ignore); the
    # effective `select`/`ignore` above are resolved from it and the command line (resolve_selection)
    selection: tuple = ()
    # (key, where its value came from) for the machine keys set by a config file, the user config
    # or the command line (`--show-settings`); not a config key, not part of the fingerprint
    origins: tuple = ()

    @property
    def has_policy(self) -> bool:
        return self.visible_devices is not None

    @property
    def effective_header_scope(self) -> str:
        if self.header_scope:
            return self.header_scope
        return "entrypoints"

    @property
    def mask(self) -> Optional[list]:
        return parse_mask(self.visible_devices) if self.visible_devices is not None else None

    def fingerprint(self) -> str:
        """A stable hash of everything that changes findings (for the result cache)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("source", "root", "project", "selection", "origins")}
        data["extra_apis"] = [dataclasses.asdict(a) for a in self.extra_apis]
        if self.project is not None:
            data["project"] = self.project.fingerprint()
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.blake2b(blob, digest_size=12).hexdigest()

    def to_report(self) -> dict:
        return {
            "visible-devices": self.visible_devices,
            "device-order": self.device_order,
            "header-scope": self.effective_header_scope,
        }


_UUID_RE = LazyPattern(r"^(GPU|MIG)-[0-9A-Za-z-]+(/\d+/\d+)?$")
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
    "known-first-party",
    "known-gpu-frameworks",
    "cpu-runs",
    "file-kinds",
    "guard-mode",
    "pytest-guard",
}
CPU_RUNS = ("keep", "override")
GUARD_MODES = ("enforce", "default")
# Keys whose value is one of a fixed set: (key, Policy field, the allowed values).
_CHOICE_KEYS = (("device-order", "device_order", DEVICE_ORDERS), ("header-scope", "header_scope", HEADER_SCOPES),
                ("cpu-runs", "cpu_runs", CPU_RUNS), ("guard-mode", "guard_mode", GUARD_MODES))


def file_kinds(value: Any, where: str, key: str = "file-kinds") -> tuple:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: `{key}` must be a non-empty list such as [\"python\", \"notebook\", \"shell\"]")
    bad = [v for v in value if v not in FILE_KINDS]
    if bad:
        raise ConfigError(f"{where}: `{key}` has {', '.join(repr(v) for v in bad)}; allowed: {', '.join(FILE_KINDS)}")
    return tuple(k for k in FILE_KINDS if k in value)


def policy_from_table(table: Mapping, where: str, root: Optional[str] = None) -> Policy:
    """Validate one `[tool.gpufix]` table into a Policy."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: [tool.gpufix] must be a table")
    unknown = sorted(set(table) - _KNOWN_KEYS)
    if unknown:
        hints = []
        for k in unknown:
            import difflib

            close = difflib.get_close_matches(str(k).replace("_", "-").lower(), sorted(_KNOWN_KEYS), n=1, cutoff=0.6)
            if close:
                hints.append(f"{k!r}: did you mean {close[0]!r}?")
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)} in [tool.gpufix]"
            + (f" ({'; '.join(hints)})" if hints else "")
            + f"; allowed: {', '.join(sorted(_KNOWN_KEYS))}"
        )
    kw: dict = {"source": where, "root": root}
    if "visible-devices" in table:
        kw["visible_devices"] = validate_mask(table["visible-devices"], where)
    for key, attr, allowed in _CHOICE_KEYS:
        if key in table:
            v = table[key]
            if v not in allowed:
                raise ConfigError(f"{where}: `{key}` = {v!r}; allowed: {', '.join(allowed)}")
            kw[attr] = v
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
    layer_select = _selectors(table["select"], where, "select") if "select" in table else None
    layer_extend = _selectors(table["extend-select"], where, "extend-select") if "extend-select" in table else ()
    layer_ignore = _selectors(table["ignore"], where, "ignore") if "ignore" in table else ()
    kw["selection"] = ((layer_select, layer_extend, layer_ignore),)
    kw["select"], kw["ignore"] = resolve_selection(kw["selection"])
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
    for key, attr in (("known-first-party", "known_first_party"), ("known-gpu-frameworks", "known_gpu_frameworks")):
        if key in table:
            v = table[key]
            if not isinstance(v, list) or not all(isinstance(x, str) and re.match(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$", x) for x in v):
                raise ConfigError(f"{where}: `{key}` must be a list of module names such as [\"mypkg\"]")
            kw[attr] = tuple(v)
    if "pytest-guard" in table:
        v = table["pytest-guard"]
        if not isinstance(v, bool):
            raise ConfigError(f"{where}: `pytest-guard` must be true or false, got {v!r}")
        kw["pytest_guard"] = v
    if "api" in table:
        kw["extra_apis"] = parse_api_specs(table["api"], where)
    if "file-kinds" in table:
        kw["file_kinds"] = file_kinds(table["file-kinds"], where)
    kw["origins"] = tuple((key, where) for key in MACHINE_KEYS if key in table)
    return Policy(**kw)


# -- the user config: what belongs to the machine, not to a project ---------------------------------
# The GPU layout is a fact about one workstation (which card is on which bus, its UUID, its memory);
# a project that runs on several machines need not carry it. `gpufix.toml` in the user config folder
# (platformdirs: ~/.config/gpufix on Linux, %APPDATA%\gpufix on Windows, ~/Library/Application
# Support/gpufix on macOS) gives these keys to every project; a project's own config overrides each.
MACHINE_KEYS = ("visible-devices", "device-order", "expect-name", "expect-uuid", "min-memory-gib")
_MACHINE_ATTRS = {"visible-devices": "visible_devices", "device-order": "device_order", "expect-name": "expect_name",
                  "expect-uuid": "expect_uuid", "min-memory-gib": "min_memory_gib"}
USER_CONFIG_ENV = "GPUFIX_USER_CONFIG"  # a file to use instead (an empty value: no user config)


def user_config_path() -> Optional[Path]:
    """Where the user config is looked for: $GPUFIX_USER_CONFIG, else gpufix.toml in the user
    config folder (gpufix.userdirs: platformdirs' folder)."""
    if USER_CONFIG_ENV in os.environ:
        value = os.environ[USER_CONFIG_ENV]
        return Path(value) if value else None
    from gpufix.userdirs import user_config_dir

    return Path(user_config_dir()) / "gpufix.toml"


_USER_MEMO: dict = {}


def user_machine_settings() -> tuple:
    """((attr, value, key, source), ...) from the user config, validated; () when there is none.
    A key that belongs to a project (select, exclude, ...) is an error that says so."""
    path = user_config_path()
    if path is None or not path.is_file():
        return ()
    try:
        st = path.stat()
        stamp = (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        return ()
    if stamp in _USER_MEMO:
        return _USER_MEMO[stamp]
    data = _load_toml(path)
    if set(data) == {"tool"} and isinstance(data["tool"], dict) and "gpufix" in data["tool"]:
        data = data["tool"]["gpufix"]
    where = f"{path} (user config)"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: must be a table of settings")
    other = sorted(set(data) - set(MACHINE_KEYS))
    if other:
        raise ConfigError(f"{where}: {', '.join(repr(k) for k in other)} belong(s) to a project's config, not the "
                          f"user config, which holds only what belongs to the machine: {', '.join(MACHINE_KEYS)}")
    parsed = policy_from_table(dict(data), where)
    out = tuple((_MACHINE_ATTRS[k], getattr(parsed, _MACHINE_ATTRS[k]), k, where) for k in MACHINE_KEYS if k in data)
    _USER_MEMO[stamp] = out
    return out


def with_user_settings(policy: Policy) -> Policy:
    """The policy with the user config's machine keys where the project's config does not set them."""
    settings = user_machine_settings()
    if not settings:
        return policy
    own = {k for k, _ in policy.origins}
    changes = {attr: value for attr, value, key, _ in settings if key not in own}
    if not changes:
        return policy
    origins = tuple(policy.origins) + tuple((key, where) for _, _, key, where in settings if key not in own)
    return dataclasses.replace(policy, origins=origins, **changes)


def _load_toml(path: Path) -> dict:
    tomllib = toml_parser()  # imported here: a run that finds no TOML config never needs it
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        return tomllib.loads(raw.decode("utf-8-sig"))  # a BOM is not TOML, but editors write one
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
    if path.name != "pyproject.toml" and set(data) == {"tool"} and isinstance(data["tool"], dict) and "gpufix" in data["tool"]:
        # a gpufix.toml written like a pyproject ([tool.gpufix] header) means the same thing
        return policy_from_table(data["tool"]["gpufix"], str(path), root=str(path.parent))
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("gpufix") if isinstance(data.get("tool"), dict) else None
        if table is None:
            return None
        return policy_from_table(table, str(path), root=str(path.parent))
    return policy_from_table(data, str(path), root=str(path.parent))


def _config_in_dir(directory: Path) -> Optional[Path]:
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


def find_config(start: Path, memo: Optional[dict] = None) -> Optional[Path]:
    """The nearest gpufix.toml or pyproject.toml with [tool.gpufix] at or above `start`."""
    start = start.resolve()
    here = start if start.is_dir() else start.parent
    for directory in (here, *here.parents):
        if memo is not None and directory in memo:
            found = memo[directory]
        else:
            found = _config_in_dir(directory)
            if memo is not None:
                memo[directory] = found
        if found is not None:
            return found
    return None


# -- rule selection (ruff's semantics) --------------------------------------------------------------
def _rule_docs() -> dict:
    from gpufix.catalog import load_rule_docs

    return load_rule_docs()


def suggest(word: str, candidates) -> str:
    """' (did you mean X?)' for the closest candidate, or ''."""
    import difflib

    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _selectors(value: Any, where: str, key: str) -> tuple:
    """Validated rule selectors: `ALL`, a code or a prefix that names at least one known rule.
    An unknown one is an error with a did-you-mean, as in ruff (a typo would silently select nothing)."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: `{key}` must be a list of rule codes or prefixes such as [\"GPU1\"]")
    docs = _rule_docs()
    out = []
    for raw in value:
        code = raw.strip().upper()
        if code == "ALL":
            out.append("ALL")
            continue
        if not RULE_CODE_RE.match(code) or not any(c.startswith(code) for c in docs):
            names = {d.name: c for c, d in docs.items()}
            if raw.strip().lower().replace("_", "-") in names:
                hint = f" (did you mean {names[raw.strip().lower().replace('_', '-')]!r}? selectors are codes)"
            else:
                prefixes = {c[:n] for c in docs for n in range(3, len(c) + 1)}
                hint = suggest(code, sorted((prefixes - {"GPU"}) | {"ALL"}))
            raise ConfigError(f"{where}: unknown rule selector {raw.strip()!r} in `{key}`{hint}; "
                              f"known: ALL, GPU, {', '.join(docs)}")
        out.append(code)
    return tuple(out)


def _codes(value: Any, where: str, key: str) -> tuple:
    """per-file-ignores' codes: validated prefixes (ALL = every rule)."""
    return tuple("GPU" if c == "ALL" else c for c in _selectors(value, where, key))


def _specificity(selector: str) -> int:
    return 0 if selector == "ALL" else len(selector)


def _expand(selector: str, docs) -> set:
    return set(docs) if selector == "ALL" else {c for c in docs if c.startswith(selector)}


def resolve_selection(layers) -> tuple:
    """(select, ignore) for make_rule_filter from selection layers (config file, then command line),
    as ruff resolves them: a layer with `select` starts from it, one without carries the previous
    result over; within a layer, selectors apply from least to most specific, and on a tie
    ignore wins; `extend-select` adds to whichever set the layer starts from.

    The result is the exact enabled codes; ("GPU",) as ignore when nothing is enabled."""
    docs = _rule_docs()
    enabled = {c for c, d in docs.items() if d.default_enabled}
    for select, extend, ignore in layers:
        base = set() if select is not None else set(enabled)
        steps = [(_specificity(s), 0, s) for s in (tuple(select or ()) + tuple(extend))]
        steps += [(_specificity(s), 1, s) for s in ignore]
        for _, kind, sel in sorted(steps):
            if kind == 0:
                base |= _expand(sel, docs)
            else:
                base -= _expand(sel, docs)
        enabled = base
    if not enabled:
        return (), ("GPU",)
    return tuple(c for c in docs if c in enabled), ()


def make_rule_filter(select: tuple, ignore: tuple) -> Callable[[str], bool]:
    """The one test of whether a rule runs, from a policy's (select, ignore) (resolve_selection's
    result, or selectors as given): ruff's resolution, the most specific matching prefix wins, on
    a tie ignore wins; with no `select`, a rule's own default."""
    docs = _rule_docs()

    def enabled(code: str) -> bool:
        best_sel = max((len(s) for s in select if code.startswith(s)), default=-1)
        best_ign = max((len(s) for s in ignore if code.startswith(s)), default=-1)
        if not select:
            default = docs[code].default_enabled if code in docs else True
            best_sel = 0 if default else -1
        if best_sel < 0:
            return False
        return best_sel > best_ign

    return enabled


def enabled_codes(policy: "Policy") -> list:
    """The codes a run under `policy` judges (`--show-settings`), in catalogue order."""
    enabled = make_rule_filter(policy.select, policy.ignore)
    return [c for c in _rule_docs() if enabled(c)]


# -- finding the policy: the nearest config to each file (ruff's hierarchical lookup) ---------------
# What marks a project's top folder (without a config: where its cross-file judgements are made).
# `.git` and `gpufix.toml` mark it wherever they are; the build files only outside a package
# (a `setup.py` inside a package folder is one of its modules: lightning's trainer/setup.py).
REPOSITORY_MARKERS = (".git", "gpufix.toml")
BUILD_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg")
PROJECT_MARKERS = REPOSITORY_MARKERS + BUILD_MARKERS


def marks_project(directory: Path) -> bool:
    """Whether `directory` is a project's top folder by its own markers (see PROJECT_MARKERS)."""
    if any((directory / m).exists() for m in REPOSITORY_MARKERS):
        return True
    return not (directory / "__init__.py").is_file() and any((directory / m).exists() for m in BUILD_MARKERS)


def project_root(directory, memo: Optional[dict] = None) -> Path:
    """The one answer to "where does this folder's project start" (the policy's root without a
    config file, the project index's root): the nearest folder at or above it that marks a
    project (marks_project); without any, the folder above the top package holding it (the
    folder itself when it is no package), so a package's files are judged from the same place
    whichever of them a run names, and wherever gpufix is started. `memo`: a dict kept by the
    caller, so that a walk over a big tree looks at each folder's markers once."""
    directory = Path(directory).resolve()
    found = _marked_above(directory, memo if memo is not None else {})
    if found is not None:
        return found
    top = directory
    while (top / "__init__.py").is_file() and top.parent != top:
        top = top.parent
    return top


def _marked_above(directory: Path, memo: dict) -> Optional[Path]:
    chain = []
    d = directory
    while True:
        key = str(d)
        if key in memo:
            found = memo[key]
            break
        chain.append(key)
        if marks_project(d):
            found = d
            break
        if d.parent == d:
            found = None
            break
        d = d.parent
    for key in chain:
        memo[key] = found
    return found


class PolicyResolver:
    """The policy for each file: `--config FILE` for all of them, else the nearest gpufix.toml or
    pyproject.toml with [tool.gpufix] above the file; command-line flags apply on top of each."""

    def __init__(self, config_file: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None):
        self.overrides = dict(overrides or {})
        self._cli_layer = _cli_layer(self.overrides)  # validates the codes now: a usage error up front
        self._by_dir: dict = {}
        self._memo: dict = {}
        self._roots: dict = {}
        self._by_source: dict = {}
        self.fixed: Optional[Policy] = None
        if config_file:
            cfg = Path(config_file)
            if not cfg.is_file():
                raise ConfigError(f"{config_file}: config file not found")
            policy = read_config_file(cfg)
            if policy is None:
                raise ConfigError(f"{config_file}: has no [tool.gpufix] table")
            self.fixed = self._finish(policy)

    def _finish(self, policy: Policy) -> Policy:
        policy = with_user_settings(policy)
        changes: dict = {}
        for key in ("visible_devices", "header_scope", "file_kinds"):
            value = self.overrides.get(key)
            if value is None or value == ():
                continue
            if key == "visible_devices":
                value = validate_mask(value, "--visible-devices", "--visible-devices")
            elif key == "file_kinds":
                value = file_kinds(value, "--file-kinds", "--file-kinds")
            changes[key] = value
            if key == "visible_devices":
                changes["origins"] = tuple(o for o in policy.origins if o[0] != "visible-devices") + (
                    ("visible-devices", "--visible-devices (command line)"),)
        # --exclude replaces the config's `exclude`, --extend-exclude adds to it (ruff's options);
        # the globs are read as the config's are, from the project's root
        if self.overrides.get("exclude"):
            changes["exclude"] = tuple(self.overrides["exclude"])
        if self.overrides.get("extend_exclude"):
            changes["exclude"] = tuple(changes.get("exclude", policy.exclude)) + tuple(self.overrides["extend_exclude"])
        layers = tuple(policy.selection) + ((self._cli_layer,) if self._cli_layer else ())
        if self._cli_layer or not policy.selection:
            changes["select"], changes["ignore"] = resolve_selection(layers)
        return dataclasses.replace(policy, **changes)

    def for_dir(self, directory) -> Policy:
        if self.fixed is not None:
            return self.fixed
        key = os.path.abspath(directory)
        hit = self._by_dir.get(key)
        if hit is not None:
            return hit
        parent = os.path.dirname(key)
        inherited = self._by_dir.get(parent) if parent != key else None
        if inherited is not None and not os.path.islink(key) and not (
            # pyproject.toml besides marks_project: inside a package it marks no project, but it
            # may still hold a [tool.gpufix] table, which find_config must read
            os.path.exists(os.path.join(key, "pyproject.toml")) or marks_project(Path(key))
        ):
            # A folder of a walk below a resolved one, with no config and no project marker of its
            # own, belongs to its parent's project (the walk asks for every folder of a big tree).
            # Without any marker above, the walk's top folder is then the root of the whole tree,
            # as when gpufix runs inside it (not each folder its own project).
            self._by_dir[key] = inherited
            return inherited
        found = find_config(Path(key), self._memo)
        if found is not None:
            src = str(found)
            if src not in self._by_source:
                self._by_source[src] = self._finish(read_config_file(found))
            policy = self._by_source[src]
        else:
            root = str(project_root(key, self._roots))
            if root not in self._by_source:
                self._by_source[root] = self._finish(Policy(root=root))
            policy = self._by_source[root]
        self._by_dir[key] = policy
        return policy

    def for_path(self, path) -> Policy:
        p = Path(path)
        if str(path) == "-" or not p.exists():
            return self.for_dir(Path.cwd() if not p.parent.is_dir() else p.parent)
        return self.for_dir(p if p.is_dir() else p.parent)

    def policies(self) -> list:
        """Every policy handed out so far."""
        return [self.fixed] if self.fixed is not None else list(self._by_source.values())


def _cli_layer(overrides: Mapping[str, Any]):
    def sel(key):
        value = overrides.get(key)
        if not value:
            return None
        return _selectors(list(value), f"--{key.replace('_', '-')}", f"--{key.replace('_', '-')}")

    select, extend, ignore = sel("select"), sel("extend_select"), sel("ignore")
    if select is None and not extend and not ignore:
        return None
    return (select, extend or (), ignore or ())


def load_policy(
    paths: Sequence[str] = (".",),
    config_file: Optional[str] = None,
    overrides: Optional[Mapping[str, Any]] = None,
) -> Policy:
    """The effective policy for the first path: `--config FILE` or the nearest config, then flags."""
    resolver = PolicyResolver(config_file, overrides)
    first = paths[0] if paths else "."
    return resolver.for_path(first if Path(first).exists() else ".")


class SinglePolicy:
    """A resolver that gives one policy for every folder and file (a run under `--config`, a named
    policy, the files of one project): the interface discovery and the engine ask a resolver for."""

    def __init__(self, policy: Policy):
        self.policy = policy

    def for_dir(self, directory):
        return self.policy

    def for_path(self, path):
        return self.policy
