"""The rule catalogue (rules/*.toml) and the device-API catalogue (rules/apis/*.toml), as data.

In a wheel the catalogue is shipped inside the package as `gpufix/_catalog`; in a checkout it is the
top-level `rules/` directory. Its TOML files are read through their parsed form, `catalogue.json`
beside them (see read_catalogue_file), so that a run does not parse TOML.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Optional

from gpufix.apispec import ConfigError, parse_api_specs
from gpufix.deferred import toml_parser


def catalog_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "_catalog", here.parent / "rules"):
        if (candidate / "apis").is_dir():
            return candidate
    raise RuntimeError(f"gpufix rule catalogue not found next to {here}: the installation is broken")


@dataclasses.dataclass(frozen=True)
class RuleDoc:
    """One rule's catalogue entry (rules/<CODE>.toml): its docs, messages and examples."""

    code: str
    name: str
    severity: str
    summary: str
    fix: str  # "safe" | "unsafe" | "sometimes" | "none"
    what_it_does: str
    why_bad: str
    example: str
    fix_safety: str
    default_enabled: bool = True
    messages: dict = dataclasses.field(default_factory=dict, hash=False, compare=False)
    valid: tuple = ()  # tuple of dict(code=..., policy=..., path=...)
    invalid: tuple = ()  # tuple of dict(code=..., policy=..., path=..., expect=[...], output=...)

    def markdown(self) -> str:
        parts = [
            f"# {self.code} {self.name}",
            "",
            f"{self.summary}",
            "",
            f"Severity: {self.severity}. Fix: {self.fix}.",
            "",
            "## What it does",
            "",
            self.what_it_does.strip(),
            "",
            "## Why is this bad?",
            "",
            self.why_bad.strip(),
            "",
            "## Example",
            "",
            "```python",
            self.example.strip("\n"),
            "```",
            "",
            "## Fix safety",
            "",
            self.fix_safety.strip(),
            "",
        ]
        return "\n".join(parts)


@dataclasses.dataclass(frozen=True)
class Framework:
    """A GPU framework of the API catalogue: its module names and the dict keys that hold devices."""

    name: str
    modules: tuple
    dict_keys: tuple = ()


@dataclasses.dataclass(frozen=True)
class ApiCatalog:
    """The device-API catalogue (rules/apis/*.toml) in force for a project: frameworks and API specs."""

    frameworks: tuple
    apis: tuple  # ApiSpec

    def __getstate__(self) -> dict:
        # Sent to worker processes: without the per-process caches (a str hash differs between
        # processes that do not share a hash seed).
        return {k: v for k, v in self.__dict__.items() if k not in ("_hash", "_framework_memo")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __hash__(self) -> int:
        # The catalogue keys the caches of every per-file step (prefilter tests, collectors): hash
        # its deep tuples once, not on every lookup.
        got = self.__dict__.get("_hash")
        if got is None:
            got = hash((self.frameworks, self.apis))
            object.__setattr__(self, "_hash", got)
        return got

    @functools.cached_property
    def framework_modules(self) -> frozenset:
        return frozenset(m for f in self.frameworks for m in f.modules)

    def framework_of_module(self, module: str) -> Optional[str]:
        """The catalogued GPU framework a module belongs to (`numba.cuda` -> numba), or None."""
        memo = self._framework_memo
        if module in memo:
            return memo[module]
        mods = self.framework_modules
        parts = module.split(".")
        found = None
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in mods:
                found = ".".join(parts[:i])
                break
        if len(memo) < 100_000:
            memo[module] = found
        return found

    @functools.cached_property
    def _framework_memo(self) -> dict:
        return {}

    @functools.cached_property
    def dict_keys(self) -> dict:
        """dict-literal keys that carry an ordinal -> the modules whose import enables them."""
        out: dict = {}
        for f in self.frameworks:
            for key in f.dict_keys:
                out.setdefault(key, set()).update(f.modules)
        return out

    @functools.cached_property
    def _index(self):
        exact: dict = {}
        patterns = []
        bare: dict = {}
        methods: dict = {}
        universal = []
        for api in self.apis:
            if api.kind == "method":
                methods.setdefault(api.name, []).append(api)
            elif api.name == "*":
                universal.append(api)
            elif "*" in api.name:
                rx = re.compile("^" + r"\.".join("[^.]+(?:\\.[^.]+)*" if p == "*" else re.escape(p) for p in api.name.split(".")) + "$")
                patterns.append((rx, api))
            elif "." not in api.name:
                bare.setdefault(api.name, []).append(api)
            else:
                exact.setdefault(api.name, []).append(api)
        return exact, patterns, bare, methods, universal

    def lookup(self, qualified: Optional[str], last_name: Optional[str], is_attribute_call: bool) -> list:
        """Catalogue entries that match a call (qualified name from imports, callee's last name)."""
        exact, patterns, bare, methods, universal = self._index
        found = list(universal)
        if qualified:
            found += exact.get(qualified, [])
            found += [api for rx, api in patterns if rx.match(qualified)]
        if last_name:
            found += bare.get(last_name, [])
            if is_attribute_call:
                found += methods.get(last_name, [])
        return found

    @functools.cached_property
    def focus_words(self) -> frozenset:
        """API last names, keywords and dict keys: text one of which a finding's statement holds."""
        # A named API's calls hold its name (or an import alias, added per file); keywords matter
        # only for the entries that match every call ("*").
        words = {api.last_name for api in self.apis if api.name != "*" and api.kind != "method"}
        words |= {spec.keyword for api in self.apis if api.name == "*" for spec in api.args if spec.keyword}
        words |= set(self.dict_keys)
        return frozenset(w for w in words if w)

    @functools.cached_property
    def method_call_re(self):
        names = "|".join(sorted(re.escape(n) for n in self.method_names))
        return re.compile(rf"\.\s*(?:{names})\s*\(") if names else re.compile(r"(?!x)x")

    @functools.cached_property
    def method_names(self) -> frozenset:
        return frozenset(api.last_name for api in self.apis if api.kind == "method")

    def with_extra(self, extra: tuple) -> "ApiCatalog":
        if not extra:
            return self
        return ApiCatalog(self.frameworks, self.apis + tuple(extra))

    def for_project(self, first_party: tuple, known_frameworks: tuple = ()) -> "ApiCatalog":
        """This catalogue with the project's own top-level names removed from the frameworks (the
        project's code is never a GPU framework), plus the policy's `known-gpu-frameworks`."""
        own = {name.split(".")[0] for name in first_party} - {m.split(".")[0] for m in known_frameworks}
        if not own and not known_frameworks:
            return self
        frameworks = tuple(
            dataclasses.replace(f, modules=tuple(m for m in f.modules if m.split(".")[0] not in own))
            for f in self.frameworks
        )
        if known_frameworks:
            frameworks += (Framework("known-gpu-frameworks", tuple(known_frameworks)),)
        return ApiCatalog(frameworks, self.apis)


def catalog_for(policy) -> ApiCatalog:
    """The one place the catalogue a policy scans with is built: the bundled APIs plus the user's
    own `[[tool.gpufix.api]]` entries, the project's first-party names removed from the frameworks
    and `known-gpu-frameworks` added (cached per combination)."""
    project = getattr(policy, "project", None)
    first_party = tuple(policy.known_first_party) + (tuple(project.first_party) if project is not None else ())
    return _catalog_for(tuple(policy.extra_apis), first_party, tuple(policy.known_gpu_frameworks))


@functools.lru_cache(maxsize=16)
def _catalog_for(extra: tuple, first_party: tuple, known_frameworks: tuple) -> ApiCatalog:
    return load_api_catalog().with_extra(extra).for_project(first_party, known_frameworks)


# The catalogue's TOML files as parsed, each with the sha256 of the bytes it was parsed from
# (scripts/gen_catalogue.py writes it; tests/cli/test_docs_sync.py fails when it is stale). Every
# scan reads the whole catalogue: parsing its TOML took about 20 ms per process, importing the
# parser 5 ms more, against about 1 ms for this file. A file added or edited since the JSON was
# written does not hash the same and is parsed from its TOML: the same data, only slower.
PARSED_CATALOGUE = "catalogue.json"


@functools.lru_cache(maxsize=None)
def _parsed_catalogue(top: str) -> dict:
    """{relative posix path: {"sha256": hex digest of its bytes, "json": its table as JSON text}}."""
    try:
        with open(os.path.join(top, PARSED_CATALOGUE), "rb") as fh:
            files = json.loads(fh.read()).get("files")
    except (OSError, ValueError, AttributeError):
        return {}
    return files if isinstance(files, dict) else {}


def read_catalogue_file(path: Path, top: Optional[Path] = None) -> dict:
    """The table of one catalogue file below `top` (default: catalog_dir()): its parsed form from
    catalogue.json when the file's bytes still have the digest recorded there, else tomllib's."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise RuntimeError(f"broken catalogue file {path}: {exc}") from None
    top = catalog_dir() if top is None else top
    try:
        entry = _parsed_catalogue(str(top)).get(Path(path).relative_to(top).as_posix())
    except ValueError:  # not below the catalogue's folder
        entry = None
    if isinstance(entry, dict) and entry.get("sha256") == hashlib.sha256(raw).hexdigest():
        return json.loads(entry["json"])  # a new object each call, as the parser gives
    tomllib = toml_parser()  # imported only for a file catalogue.json does not hold as it is now
    try:
        return tomllib.loads(raw.decode())  # what tomllib.load(fh) does with the bytes
    except tomllib.TOMLDecodeError as exc:
        raise RuntimeError(f"broken catalogue file {path}: {exc}") from None


@functools.lru_cache(maxsize=None)
def load_api_catalog() -> ApiCatalog:
    frameworks = []
    apis: list = []
    top = catalog_dir()
    for path in sorted((top / "apis").glob("*.toml")):
        data = read_catalogue_file(path, top)
        name = data.get("framework", path.stem)
        frameworks.append(Framework(name, tuple(data.get("modules", ())), tuple(data.get("dict-keys", ()))))
        try:
            apis.extend(parse_api_specs(data.get("api", []), str(path), framework=name))
        except ConfigError as exc:
            raise RuntimeError(str(exc)) from None
    return ApiCatalog(tuple(frameworks), tuple(apis))


def _rule_from_toml(path: Path, top: Optional[Path] = None) -> RuleDoc:
    d = read_catalogue_file(path, top)
    return RuleDoc(
        code=d["code"],
        name=d["name"],
        severity=d.get("severity", "error"),
        summary=d["summary"],
        fix=d.get("fix", "none"),
        what_it_does=d["what-it-does"],
        why_bad=d["why-bad"],
        example=d["example"],
        fix_safety=d["fix-safety"],
        default_enabled=d.get("default-enabled", True),
        messages=dict(d.get("messages", {})),
        valid=tuple(d.get("valid", ())),
        invalid=tuple(d.get("invalid", ())),
    )


@functools.lru_cache(maxsize=None)
def load_rule_docs() -> dict:
    docs = {}
    top = catalog_dir()
    for path in sorted(top.glob("GPU*.toml")):
        doc = _rule_from_toml(path, top)
        if doc.code != path.stem:
            raise RuntimeError(f"catalogue file {path} declares code {doc.code}")
        docs[doc.code] = doc
    return docs
