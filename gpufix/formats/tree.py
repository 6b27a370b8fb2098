"""YAML, JSON and TOML configs: parsed into one small tree with exact source spans, then read
for device settings by one walker.

What the walker reads (keys compared in lower case, `-` taken as `_`):

* `CUDA_VISIBLE_DEVICES` / `CUDA_DEVICE_ORDER` / `NVIDIA_VISIBLE_DEVICES` as a key with a scalar
  value (compose `environment:`, GitHub Actions `env:`, devcontainer `containerEnv`, ...), as a
  `NAME=VALUE` item of a list (compose's list form), and as a Kubernetes `{name: ..., value: ...}`
  entry;
* compose `deploy.resources.reservations.devices[].device_ids` (a mapping that also has
  `capabilities` or `driver`): the host GPUs a container gets;
* device ids: `gpu_id`, `gpu_index`, `gpu_idx`, `device_id`, `device_index`, `cuda_device`,
  `cuda_device_id` with an int (or a string of digits);
* accelerate configs (a mapping with `distributed_type` or `compute_environment`): `gpu_ids` is
  the CUDA_VISIBLE_DEVICES `accelerate launch` exports, judged as a mask (report only);
* device-index lists: `gpu_ids` / `device_ids` (a list, an int or a "0,1" string), and
  `gpus` / `devices` only as a list or a string with a comma (Lightning's `devices: [1]` and
  `devices: "1,"`; an int there is a count, not an index);
* any string value that is exactly `cuda:N`;
* YAML strings under `run`, `script`, `command`, `entrypoint`, `before_script`, `after_script`,
  `cmd` (CI steps, compose commands): read as shell command lines, each under the mask of the
  innermost environment block around it when it sets none itself.

Not followed on purpose: a bare `device: 1` or `gpu: 1` (a count as often as an index), `gpus: 2`
(a count), other keys' numbers, templated YAML (Helm/Jinja `{{ }}` files that do not parse),
TOML multi-line arrays and inline tables.
"""

from __future__ import annotations

import json
import re
from typing import Optional

from gpufix.formats import shell
from gpufix.formats.facts import (CONTAINER_VAR, ENV_VARS, FILE_MASK, MASK_VAR, NO_MASK, ORDER_VAR, ContainerPin, EnvSet,
                                  FileFacts, IndexList, Ordinal, hides_all, normalized)
from gpufix.formats.text import Lines, newline_of
from gpufix.deferred import toml_parser


class ParseError(Exception):
    def __init__(self, message: str, line: Optional[int] = None):
        super().__init__(message)
        self.line = line


class Node:
    __slots__ = ("kind", "value", "start", "end", "style", "items", "typed")

    def __init__(self, kind, value=None, start=0, end=0, style="", items=None, typed=True):
        self.kind = kind  # "map" | "seq" | "scalar"
        self.value = value  # scalars: str, int, float, bool or None
        self.start = start
        self.end = end
        self.style = style  # scalars: "" plain, '"' or "'" quoted, "|" / ">" YAML block
        self.items = items if items is not None else []  # map: [(key, key_start, Node)], seq: [Node]
        self.typed = typed  # the format types values (YAML/JSON/TOML ints are ints)


ORDINAL_KEYS = {"gpu_id", "gpu_index", "gpu_idx", "device_id", "device_index", "cuda_device", "cuda_device_id"}
INDEX_LIST_KEYS = {"gpu_ids", "device_ids"}
COUNT_OR_LIST_KEYS = {"gpus", "devices"}
SHELL_KEYS = {"run", "script", "command", "entrypoint", "before_script", "after_script", "cmd"}
_CUDA_RE = re.compile(r"^cuda:(\d+)$")
_DIGITS_RE = re.compile(r"^\s*\d+\s*$")
_INDEX_STRING_RE = re.compile(r"^\s*\d+\s*(?:,\s*\d+\s*)*,?\s*$")
_ENV_ITEM_RE = re.compile(r"^(" + "|".join(ENV_VARS) + r")=(.*)$", re.S)


def _norm(key) -> str:
    return str(key).lower().replace("-", "_")


def _int_of(node: Node) -> Optional[int]:
    if node.kind != "scalar":
        return None
    v = node.value
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and _DIGITS_RE.match(v):
        return int(v)
    return None


def _indices(node: Node, comma_needed: bool) -> Optional[list]:
    if node.kind == "seq":
        out = [_int_of(n) for n in node.items]
        return out if out and all(i is not None for i in out) else None
    if node.kind != "scalar":
        return None
    v = node.value
    if isinstance(v, str) and _INDEX_STRING_RE.match(v) and ("," in v or not comma_needed):
        return [int(p) for p in v.split(",") if p.strip()]
    if not comma_needed and isinstance(v, int) and not isinstance(v, bool):
        return [v]
    return None


class Walker:
    def __init__(self, text: str, yaml: bool):
        self.text = text
        self.lines = Lines(text)
        self.nl = newline_of(text)
        self.yaml = yaml
        self.json = False  # set by scan() for JSON (TOML is the other non-YAML format)
        self.facts = FileFacts()
        self.seen: set = set()
        # the masks of environment blocks (a CI job's or step's `env:`, a compose service's
        # `environment:`, a Kubernetes container's `env`), in force for the commands under them,
        # and the ordinals of those commands that set no mask of their own (see _inherit_masks)
        self.block_masks: list = []
        self.inheriting: list = []

    def _editable(self, node: Node) -> bool:
        raw = self.text[node.start:node.end]
        return node.style in ("", "'", '"') and "\\" not in raw and "\n" not in raw

    def _line_prefix(self, offset: int) -> str:
        return self.text[self.lines.line_start(offset):offset]

    def env_value(self, var: str, node: Node, key_start: Optional[int], scope: tuple, k8s: bool = False) -> None:
        v = node.value
        value = None if (isinstance(v, str) and "$" in v) else (str(v).lower() if isinstance(v, bool) else (None if v is None else str(v)))
        style = node.style if node.style in ("'", '"') else ""
        if not self.yaml and node.style == "" and value is not None:
            style = '"'  # JSON/TOML: a number becomes a string value
        start, end = node.start, node.end
        e = EnvSet(var, value, start, end, style, self._editable(node) and value is not None,
                   non_string=k8s and node.kind == "scalar" and not isinstance(v, str), form="config", scope=_scope(scope))
        if var == MASK_VAR:
            self.block_masks.append(e)
        if key_start is not None:
            prefix = self._line_prefix(key_start)
            if self.yaml and prefix.strip() == "":
                e.order_insert = (key_start - len(prefix), prefix + ORDER_VAR + ": {order}" + self.nl)
            elif self.json and self.text[key_start] == '"':
                # a JSON object (VS Code's launch.json/tasks.json `env`, devcontainer.json): the
                # new member goes first, on its own line when the key starts one, else inline
                after = self.nl + prefix if prefix.strip() == "" else " "
                e.order_insert = (key_start, '"' + ORDER_VAR + '": "{order}",' + after)
            elif not self.yaml and not self.json and prefix.strip() == "":
                e.order_insert = (key_start - len(prefix), prefix + ORDER_VAR + ' = "{order}"' + self.nl)
        self.facts.env.append(e)

    def env_item(self, node: Node, scope: tuple) -> bool:
        """A `NAME=VALUE` string in a list (compose `environment:` list form)."""
        if node.kind != "scalar" or not isinstance(node.value, str):
            return False
        m = _ENV_ITEM_RE.match(node.value)
        if not m:
            return False
        var, value = m.group(1), m.group(2)
        raw = self.text[node.start:node.end]
        q = 1 if node.style in ("'", '"') else 0
        start = node.start + q + len(var) + 1
        end = node.end - q
        editable = self._editable(node) and self.text[start - 1] == "="
        e = EnvSet(var, None if "$" in value else value, start, end, "", editable and "$" not in value, form="config",
                   scope=_scope(scope))
        if var == MASK_VAR:
            self.block_masks.append(e)
        prefix = self._line_prefix(node.start)
        if self.yaml and re.match(r"^\s*-\s+$", prefix):
            quote = raw[0] if q else ""
            e.order_insert = (node.start - len(prefix), prefix + quote + ORDER_VAR + "={order}" + quote + self.nl)
        self.facts.env.append(e)
        return True

    def scalar(self, node: Node, shell_key: bool, path: tuple = ()) -> None:
        if id(node) in self.seen:
            return
        self.seen.add(id(node))
        if not isinstance(node.value, str):
            return
        if shell_key and self.yaml and node.style in ("", "|", ">"):
            before, ordinals_before = len(self.facts.env), len(self.facts.ordinals)
            shell.scan(self.text, node.start, node.end, self.facts, form="config")
            for e in self.facts.env[before:] + self.facts.ordinals[ordinals_before:]:
                e.scope = _scope(path)
            self.inheriting.extend(o for o in self.facts.ordinals[ordinals_before:] if o.mask == NO_MASK)
            return
        m = _CUDA_RE.match(node.value)
        if m and (node.style or self.text[node.start:node.end] == node.value):
            q = 1 if node.style in ("'", '"') else 0
            self.facts.ordinals.append(Ordinal(node.value, int(m.group(1)), node.start + q, node.end - q, "cuda:{}",
                                               scope=_scope(path + ("",))))

    def walk(self, node: Node, path: tuple = (), shell_key: bool = False) -> None:
        if node.kind == "scalar":
            self.scalar(node, shell_key, path)
            return
        if id(node) in self.seen:
            return  # a YAML alias: read once
        self.seen.add(id(node))
        if node.kind == "seq":
            for i, item in enumerate(node.items):
                # Under a shell key (`script: [CUDA_VISIBLE_DEVICES=0 pytest]`) an item is a
                # command line, not compose's NAME=VALUE list form.
                if shell_key or not self.env_item(item, path):
                    self.walk(item, path + (i,), shell_key)
            return
        keys = {_norm(k): n for k, _, n in node.items}
        name = keys.get("name")
        if name is not None and name.kind == "scalar" and name.value in ENV_VARS and "value" in keys:
            self.seen.add(id(keys["value"]))
            self.env_value(name.value, keys["value"], None, path, k8s=True)
        container = "capabilities" in keys or "driver" in keys
        # An accelerate config: `accelerate launch` exports its `gpu_ids` as CUDA_VISIBLE_DEVICES,
        # so they are physical GPUs (a mask), not indices under one.
        accelerate = "distributed_type" in keys or "compute_environment" in keys
        for key, key_start, child in node.items:
            k = _norm(key)
            where = ".".join([str(p) for p in path + (key,) if isinstance(p, str)][-2:])
            if str(key) in ENV_VARS and child.kind == "scalar":
                self.seen.add(id(child))
                self.env_value(str(key), child, key_start, path)
                continue
            if k == "device_ids" and container:
                entries = []
                for n in (child.items if child.kind == "seq" else [child]):
                    i = _int_of(n)
                    entries.append(i if i is not None else str(n.value))
                service = tuple(path[:2]) if len(path) >= 2 and path[0] == "services" else _scope(path)
                self.facts.pins.append(ContainerPin("device_ids", entries, child.start, child.end, service))
                self.seen.add(id(child))
                continue
            if k == "gpu_ids" and accelerate and child.kind == "scalar":
                self.seen.add(id(child))
                v = child.value
                if isinstance(v, (int, str)) and not isinstance(v, bool) and str(v).strip().lower() != "all":
                    self.facts.env.append(EnvSet(MASK_VAR, str(v), child.start, child.end, editable=False,
                                                 order_in_force=True, form="accelerate", scope=_scope(path + (key,))))
                continue
            if k in ORDINAL_KEYS and child.kind == "scalar":
                i = _int_of(child)
                if i is not None:
                    q = 1 if child.style in ("'", '"') else 0
                    raw = self.text[child.start + q:child.end - q]
                    if raw.strip() == str(i):
                        template = (child.style + "{}" + child.style) if q else "{}"
                        self.facts.ordinals.append(Ordinal(f"{key}: {i}", i, child.start, child.end, template))
                    self.seen.add(id(child))
                    continue
            if k in INDEX_LIST_KEYS or k in COUNT_OR_LIST_KEYS:
                idx = _indices(child, comma_needed=k in COUNT_OR_LIST_KEYS)
                if idx is not None:
                    self.facts.lists.append(IndexList(where, idx, child.start, child.end))
                    self.seen.add(id(child))
                    continue
            self.walk(child, path + (key,), shell_key or (k in SHELL_KEYS))


def _inherit_masks(w: Walker) -> None:
    """A command that sets no mask of its own runs under the innermost environment block around it
    (a step's `env:`, else its job's, else the workflow's; a compose service's `environment:` for
    its `command:`): its ordinals are read through that block's mask (None: computed at run time),
    as CUDA reads them there."""
    for o in w.inheriting:
        best = None
        for e in w.block_masks:
            if e.scope is not None and o.scope[:len(e.scope)] == e.scope and (best is None or len(e.scope) >= len(best.scope)):
                best = e
        if best is not None:
            o.mask = best.value
    w.inheriting.clear()
    w.block_masks.clear()


def _runners(text: str, doc: Node) -> list:
    """A GitHub Actions workflow's jobs whose `runs-on` names no `self-hosted` label (a hosted
    runner, a runner group, a label computed per run): (("jobs", name), the `runs-on` text). Such a
    job runs on a machine the policy may not describe (a cloud runner with one GPU, where the
    policy's "1" hides it)."""
    if doc.kind != "map":
        return []
    jobs = next((n for k, _, n in doc.items if k == "jobs"), None)
    if jobs is None or jobs.kind != "map":
        return []
    out = []
    for name, _, job in jobs.items:
        runs_on = next((n for k, _, n in job.items if k == "runs-on"), None) if job.kind == "map" else None
        if runs_on is None:
            continue
        labels = [runs_on] if runs_on.kind == "scalar" else runs_on.items if runs_on.kind == "seq" else [
            n for k, _, v in runs_on.items if k == "labels" for n in ([v] if v.kind == "scalar" else v.items)]
        if any(n.kind == "scalar" and str(n.value).strip().lower() == "self-hosted" for n in labels):
            continue
        out.append((("jobs", name), " ".join(text[runs_on.start:runs_on.end].split())))
    return out


def _scope(path: tuple) -> tuple:
    """What a setting at `path` applies to: the path without its trailing list indices and the key
    of the environment block (`services.app.environment` -> `services.app`; a Kubernetes env item
    `...containers.0.env.1` -> `...containers.0`)."""
    p = list(path)
    while p and isinstance(p[-1], int):
        p.pop()
    return tuple(p[:-1])


def _related(a: tuple, b: tuple) -> bool:
    """One scope holds the other (a workflow's env and a job's, a job's and its step's)."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def finish(facts: FileFacts) -> FileFacts:
    """Container pins from NVIDIA_VISIBLE_DEVICES settings; a config's CUDA_DEVICE_ORDER is in force
    for the masks of the same service, job, step or container, and of the scopes around or within
    it (not for a sibling service's)."""
    from gpufix.config import parse_mask

    for e in facts.env:
        if e.var == CONTAINER_VAR and e.value is not None:
            entries = parse_mask(e.value)
            if entries and len(entries) == len(e.value.split(",")):
                facts.pins.append(ContainerPin(CONTAINER_VAR, entries, e.start, e.end, e.scope))
    orders = [e.scope for e in facts.env if e.var == ORDER_VAR and e.scope is not None]
    for e in facts.env:
        if e.scope is not None and any(_related(o, e.scope) for o in orders):
            e.order_in_force = True
    return facts


# -- YAML ------------------------------------------------------------------------------------------
def _yaml_node(n, out_of: dict) -> Node:
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    key = id(n)
    if key in out_of:
        return out_of[key]
    start, end = n.start_mark.index, n.end_mark.index
    if isinstance(n, ScalarNode):
        tag = str(getattr(n.tag, "value", n.tag) or "")
        value = n.value
        if tag.endswith(":int"):
            try:
                value = int(value.replace("_", ""), 0)
            except ValueError:
                pass
        elif tag.endswith(":bool"):
            value = value.lower() in ("true", "yes", "on")
        elif tag.endswith(":null"):
            value = None
        elif tag.endswith(":float"):
            try:
                value = float(value)
            except ValueError:
                pass
        node = Node("scalar", value, start, end, n.style or "")
        out_of[key] = node
        return node
    if isinstance(n, SequenceNode):
        node = Node("seq", None, start, end)
        out_of[key] = node
        node.items = [_yaml_node(c, out_of) for c in n.value]
        return node
    if isinstance(n, MappingNode):
        node = Node("map", None, start, end)
        out_of[key] = node
        for k, v in n.value:
            kv = k.value if isinstance(k, ScalarNode) else None
            if kv is None:
                continue
            node.items.append((kv, k.start_mark.index, _yaml_node(v, out_of)))
        return node
    return Node("scalar", None, start, end)


def parse_yaml(text: str) -> list:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        docs = list(YAML(typ="safe", pure=True).compose_all(text))
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParseError(f"invalid YAML: {problem}", mark.line + 1 if mark else None) from None
    memo: dict = {}
    return [_yaml_node(d, memo) for d in docs if d is not None]


# -- JSON ------------------------------------------------------------------------------------------
_JSON_TOKEN = re.compile(
    r'[ \t\r\n]*(?:(?P<str>"(?:[^"\\\n]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<lit>true|false|null)|(?P<p>[{}\[\]:,]))'
)


# What `_blank_jsonc` keeps as it is, in one match: strings, other text, commas not before a
# closing bracket, a `/` that starts no comment.
_JSONC_PLAIN_RE = re.compile(r'(?:"(?:[^"\\\n]|\\.)*"|[^"/,]+|,(?!\s*[}\]])|/(?![/*]))+')


def _blank_jsonc(text: str) -> str:
    """JSON with comments and trailing commas (devcontainer.json, .vscode/*.json): comments and
    those commas become blanks, so every offset stays where it was.

    One pass from left to right, in time linear in the text (a regex `/\\*.*?\\*/` tried at every
    `/*` of a file without `*/` rereads the rest of the file each time)."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        m = _JSONC_PLAIN_RE.match(text, i)
        if m:
            out.append(m.group())
            i = m.end()
            continue
        if text.startswith("/*", i):
            close = text.find("*/", i + 2)
            if close < 0:
                out.append(text[i:])  # unterminated: as it is (a `/` outside a string: invalid JSON)
                break
            out.append(re.sub(r"[^\n]", " ", text[i:close + 2]))
            i = close + 2
            continue
        if text.startswith("//", i):
            end = text.find("\n", i)
        elif text[i] == ",":
            out.append(" ")  # a trailing comma
            i += 1
            continue
        else:  # a string unterminated on its line: the line as it is (invalid JSON)
            nl = text.find("\n", i)
            out.append(text[i:n if nl < 0 else nl])
            i = n if nl < 0 else nl
            continue
        end = n if end < 0 else end
        out.append(" " * (end - i))
        i = end
    return "".join(out)


def _json_may_matter(obj) -> bool:
    """Whether a loaded JSON value can give the walker anything (the C parser's result, read before
    the slower parse with positions; a tokenizer's vocabulary is a big dict that never does)."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            for k, v in o.items():
                nk = _norm(k)
                if k in ENV_VARS or nk in ORDINAL_KEYS or nk in INDEX_LIST_KEYS or (nk == "name" and v in ENV_VARS):
                    return True
                if nk in COUNT_OR_LIST_KEYS and not isinstance(v, (int, float)):
                    return True
                if isinstance(v, (dict, list)):
                    stack.append(v)
                elif isinstance(v, str) and (_CUDA_RE.match(v) or _ENV_ITEM_RE.match(v)):
                    return True
        elif isinstance(o, list):
            for v in o:
                if isinstance(v, (dict, list)):
                    stack.append(v)
                elif isinstance(v, str) and (_CUDA_RE.match(v) or _ENV_ITEM_RE.match(v)):
                    return True
    return False


def parse_json(text: str) -> list:
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        if "//" in text or "/*" in text or "," in text:
            relaxed = _blank_jsonc(text)
            try:
                json.loads(relaxed)
            except (json.JSONDecodeError, RecursionError):
                raise ParseError(f"invalid JSON: {exc.msg}", exc.lineno) from None
            text = relaxed
            loaded = json.loads(relaxed)
        else:
            raise ParseError(f"invalid JSON: {exc.msg}", exc.lineno) from None
    except RecursionError:
        raise ParseError("JSON nested too deeply to read") from None
    if not _json_may_matter(loaded):
        return []
    pos = 0

    def token():
        nonlocal pos
        m = _JSON_TOKEN.match(text, pos)
        if not m:
            raise ParseError("invalid JSON", Lines(text).line_of(pos))
        pos = m.end()
        return m

    def value(m) -> Node:
        if m.group("str") is not None:
            return Node("scalar", json.loads(m.group("str")), m.start("str"), m.end("str"), '"')
        if m.group("num") is not None:
            return Node("scalar", json.loads(m.group("num")), m.start("num"), m.end("num"), "")
        if m.group("lit") is not None:
            return Node("scalar", json.loads(m.group("lit")), m.start("lit"), m.end("lit"), "")
        p = m.group("p")
        start = m.start("p")
        if p == "{":
            node = Node("map", None, start)
            m = token()
            while m.group("p") != "}":
                if m.group("p") == ",":
                    m = token()
                    continue
                key = json.loads(m.group("str"))
                key_start = m.start("str")
                token()  # ':'
                node.items.append((key, key_start, value(token())))
                m = token()
            node.end = m.end()
            return node
        if p == "[":
            node = Node("seq", None, start)
            m = token()
            while m.group("p") != "]":
                if m.group("p") == ",":
                    m = token()
                    continue
                node.items.append(value(m))
                m = token()
            node.end = m.end()
            return node
        raise ParseError("invalid JSON", Lines(text).line_of(start))

    try:
        return [value(token())]
    except RecursionError:
        raise ParseError("JSON nested too deeply to read") from None


# -- TOML ------------------------------------------------------------------------------------------
_TOML_HEADER = re.compile(r"^[ \t]*\[\[?[ \t]*([^\]\n]+?)[ \t]*\]\]?[ \t]*(?:#.*)?$")
_TOML_KV = re.compile(r"^([ \t]*)((?:[A-Za-z0-9_-]+|\"[^\"\n]*\"|'[^'\n]*')(?:[ \t]*\.[ \t]*(?:[A-Za-z0-9_-]+|\"[^\"\n]*\"|'[^'\n]*'))*)[ \t]*=[ \t]*")
_TOML_SCALAR = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'|[^\s#,\]]+")


def _toml_key(raw: str) -> list:
    parts = re.findall(r"\"[^\"\n]*\"|'[^'\n]*'|[A-Za-z0-9_-]+", raw)
    return [p[1:-1] if p[:1] in "'\"" else p for p in parts]


def parse_toml(text: str) -> list:
    tomllib = toml_parser()  # imported here: the YAML and JSON readers of this module do not need it
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ParseError(f"invalid TOML: {exc}", int(m.group(1)) if m else None) from None
    root = Node("map", None, 0, len(text))
    tables = {(): root}

    def table(path: tuple) -> Node:
        if path not in tables:
            parent = table(path[:-1])
            node = Node("map", None, 0, 0)
            parent.items.append((path[-1], 0, node))
            tables[path] = node
        return tables[path]

    current: tuple = ()
    offset = 0
    for line in text.split("\n"):
        line_start = offset
        offset += len(line) + 1
        h = _TOML_HEADER.match(line)
        if h and not line.lstrip().startswith(("#",)) and "=" not in line.split("]")[0]:
            current = tuple(_toml_key(h.group(1)))
            continue
        m = _TOML_KV.match(line)
        if not m:
            continue
        key_path = _toml_key(m.group(2))
        rest = line[m.end():]
        try:
            value = tomllib.loads("v = " + rest)["v"]
        except tomllib.TOMLDecodeError:
            continue  # a multi-line value: not followed
        vstart = line_start + m.end()
        if isinstance(value, list):
            close = rest.find("]")
            node = Node("seq", None, vstart, vstart + close + 1)
            node.items = [Node("scalar", v, vstart, vstart + close + 1, "") for v in value if not isinstance(v, (list, dict))]
        elif isinstance(value, dict):
            continue  # inline tables: not followed
        else:
            tok = _TOML_SCALAR.match(rest)
            if not tok:
                continue
            style = tok.group(0)[0] if tok.group(0)[0] in "'\"" else ""
            node = Node("scalar", value, vstart, vstart + tok.end(), style)
        parent = table(current + tuple(key_path[:-1]))
        parent.items.append((key_path[-1], line_start + len(m.group(1)), node))
    return [root]


def scan(text: str, kind: str) -> FileFacts:
    """Facts of a YAML/JSON/TOML file; ParseError when it does not parse."""
    if kind == "yaml":
        docs = parse_yaml(text)
    elif kind == "json":
        docs = parse_json(text)
    else:
        docs = parse_toml(text)
    w = Walker(text, yaml=kind == "yaml")
    w.json = kind == "json"
    try:
        for n, d in enumerate(docs):
            env_before, ordinals_before = len(w.facts.env), len(w.facts.ordinals)
            w.walk(d)
            _inherit_masks(w)
            if len(docs) > 1:
                _own_document(w.facts, n, env_before, ordinals_before)
            elif kind == "yaml":
                w.facts.runners = _runners(text, d)
    except RecursionError:
        raise ParseError(f"{kind.upper()} nested too deeply to read") from None
    return finish(w.facts)


class _Document(int):
    """The first element of a setting's scope in a YAML stream: its document (`---`). Documents
    are separate objects (Kubernetes manifests, compose overrides): no scope of one holds another's."""

    def __repr__(self):
        return f"document {int(self) + 1}"


def _own_document(facts: FileFacts, n: int, env_from: int, ordinals_from: int) -> None:
    """Scope the settings of document `n` (facts from the given indices on) to it: an order set in
    one document is not in force for another's mask, and an ordinal is read through the mask of its
    own document (its one literal mask; none: no mask; several or not literal: unknown)."""
    doc = _Document(n)
    own = facts.env[env_from:]
    for e in own:
        if e.scope is not None:
            e.scope = (doc,) + e.scope
    values = set()
    for e in own:
        if e.var == MASK_VAR and e.form != "accelerate" and not hides_all(e.value):
            values.add(None if e.value is None else normalized(e.value))
    mask = NO_MASK if not values else (values.pop() if len(values) == 1 else None)
    for o in facts.ordinals[ordinals_from:]:
        if o.mask == FILE_MASK:
            o.mask = mask
