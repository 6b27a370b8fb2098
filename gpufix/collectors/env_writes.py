"""Writes of CUDA_VISIBLE_DEVICES / CUDA_DEVICE_ORDER into this process's environment, through any
alias of `os`/`environ` (`from os import environ as env`, and a name bound only to it:
`env = os.environ`):

* `os.environ[...] = v`, `os.environ.__setitem__(..., v)`, `os.environ.setdefault(...)`, `os.putenv`;
* mappings merged in: `os.environ.update(<mapping>)` (with keywords too), `os.environ |= <mapping>`,
  where a mapping is a dict literal, `dict(...)` (its keywords and a mapping argument), a `|`
  merge of mappings (the right side wins), a `**` spread of one, or a name bound once to a dict
  literal that nothing else writes (`SETTINGS = {...}; os.environ.update(SETTINGS)`);
* a loop writing a settings mapping's items: `for k, v in SETTINGS.items(): os.environ[k] = v`
  (or `for k in SETTINGS: os.environ[k] = SETTINGS[k]`).

A mapping whose keys cannot be read (a call's result, a parameter) is a value computed at run time:
not followed (a documented limit)."""

from __future__ import annotations

import ast

from gpufix.analysis import const_str
from gpufix.collectors import AssignmentCollector, StringForm
from gpufix.lexical import NAME_OR_CODE
from gpufix.collectors._patterns import END_OF_LITERAL
from gpufix.facts import ENV_VARS

# A substring of each variable's name (a plain spelling; `"CUDA_VISIBLE_" "DEVICES"` is found by the
# string forms below).
ENV_TOKENS = ("VISIBLE_DEVICES", "DEVICE_ORDER")
# Methods of a dict that change it: a settings dict called with one is not a constant.
_MUTATORS = frozenset(("update", "pop", "popitem", "setdefault", "clear", "__setitem__", "__delitem__", "__ior__"))


class EnvWrites(AssignmentCollector):
    name = "env-writes"
    priority = 20

    def prefilter_tests(self, catalog):
        # what the analysis reads holds the name in code (`dict(os.environ, CUDA_VISIBLE_DEVICES=...)`)
        # or as a whole literal (a key, compared whole); a spelled one is a string form (below)
        return tuple((token, None, NAME_OR_CODE) for token in ENV_TOKENS)

    def string_forms(self, catalog):
        # the key is compared whole (`const_str(key) in ENV_VARS`)
        return tuple(StringForm(var, END_OF_LITERAL) for var in ENV_VARS)

    def whole_file_words(self):
        # GPU105 needs every framework call before a write: a file that writes the mask is walked whole.
        return ENV_TOKENS

    def focus_words(self, catalog, imports):
        words = ["environ", "putenv"]
        words += [local for local, target in imports.items() if target in ("os.environ", "os.putenv")]
        return words

    def before(self, walk) -> None:
        walk.settings_dicts = None  # name -> ast.Dict, built on first need (_settings_dict)
        if not any(t == "os" or t.startswith("os.") for t in walk.facts.imports.values()):
            return  # nothing binds os.environ: no alias of it
        if not any(token in walk.text for token in ENV_TOKENS):
            return  # no mask variable is written through an alias the file never names
        # `env = os.environ` (every binding of the name): an alias through which writes count.
        aliases, others = set(), set()
        for stmt in walk.statements():
            if isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    for name in _bound_names(target):
                        is_alias = target is name and type(stmt.value) in (ast.Attribute, ast.Name) and walk.is_environ(stmt.value)
                        (aliases if is_alias else others).add(name.id)
            elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.op, ast.BitOr):
                continue  # `env |= {...}` updates os.environ in place: still the alias
            elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor, ast.With, ast.AsyncWith)):
                targets = [stmt.target] if hasattr(stmt, "target") else [i.optional_vars for i in stmt.items if i.optional_vars]
                for target in targets:
                    others.update(n.id for n in _bound_names(target))
        walk.environ_aliases.update(aliases - others)

    # -- item writes ---------------------------------------------------------------------------
    def assigned(self, targets, value, walk) -> None:
        for target in targets:
            if isinstance(target, ast.Subscript) and walk.is_environ(target.value):
                key = const_str(target.slice)
                if key in ENV_VARS:
                    walk.env_write(key, "setitem", value, target)

    def visit_AugAssign(self, node, walk) -> None:
        # os.environ |= {"CUDA_VISIBLE_DEVICES": "0"}
        if isinstance(node.op, ast.BitOr) and walk.is_environ(node.target):
            self._merge(node.value, node, node.target, walk)

    def visit_Call(self, node, walk) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("update", "setdefault", "__setitem__") and walk.is_environ(func.value):
            if func.attr == "update":
                for arg in node.args[:1]:
                    self._merge(arg, node, func.value, walk)
                self._keywords(node.keywords, node, func.value, walk)
            elif func.attr == "__setitem__":
                if len(node.args) == 2 and const_str(node.args[0]) in ENV_VARS:
                    walk.env_write(const_str(node.args[0]), "update", node.args[1], node)
            elif node.args:
                key = const_str(node.args[0])
                if key in ENV_VARS:
                    walk.env_write(key, "setdefault", node.args[1] if len(node.args) > 1 else None, node)
        elif node.args and walk.qualname(func) == "os.putenv":
            key = const_str(node.args[0])
            if key in ENV_VARS:
                walk.env_write(key, "putenv", node.args[1] if len(node.args) > 1 else None, node)

    def visit_For(self, node, walk) -> None:
        """`for k, v in SETTINGS.items(): os.environ[k] = v` and `for k in SETTINGS: os.environ[k] =
        SETTINGS[k]`: each mask item of the mapping is written (the loop is the statement)."""
        it, target = node.iter, node.target
        if (isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and it.func.attr == "items" and not it.args
                and isinstance(target, ast.Tuple) and len(target.elts) == 2 and all(isinstance(e, ast.Name) for e in target.elts)):
            mapping, (key_name, value_name) = it.func.value, (e.id for e in target.elts)
        elif isinstance(target, ast.Name):
            mapping, key_name, value_name = it, target.id, None
        else:
            return
        # the body is looked at first: reading the mapping may walk the whole tree (_settings_dict),
        # and most loops write no environment
        for stmt in node.body:
            if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
                continue
            sub, value = stmt.targets[0], stmt.value
            if not (isinstance(sub, ast.Subscript) and walk.is_environ(sub.value)
                    and isinstance(sub.slice, ast.Name) and sub.slice.id == key_name):
                continue
            if value_name is not None:
                written = isinstance(value, ast.Name) and value.id == value_name
            else:  # os.environ[k] = SETTINGS[k]
                written = (isinstance(value, ast.Subscript) and isinstance(value.slice, ast.Name) and value.slice.id == key_name
                           and ast.dump(value.value) == ast.dump(mapping))
            if written:
                for key, v in (_mapping(mapping, walk) or {}).items():
                    if key in ENV_VARS:
                        walk.env_write(key, "update", v, sub, environ=sub.value)
                return

    # -- mappings --------------------------------------------------------------------------------
    def _merge(self, mapping, node, environ, walk) -> None:
        for key, value in (_mapping(mapping, walk) or {}).items():
            if key in ENV_VARS:
                walk.env_write(key, "update", value, node, environ=environ)

    def _keywords(self, keywords, node, environ, walk) -> None:
        for kw in keywords:
            if kw.arg in ENV_VARS:
                walk.env_write(kw.arg, "update", kw.value, node, environ=environ)
            elif kw.arg is None:  # os.environ.update(**SETTINGS)
                self._merge(kw.value, node, environ, walk)


def _bound_names(target):
    if isinstance(target, ast.Name):
        yield target
    elif isinstance(target, (ast.Tuple, ast.List)):
        for e in target.elts:
            yield from _bound_names(e.value if isinstance(e, ast.Starred) else e)


def _mapping(node, walk, depth: int = 0):
    """{key: value node} of a mapping whose string keys can be read (later keys win), or None."""
    if depth > 8:
        return None
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values):
            if k is None:  # {**OTHER, ...}
                inner = _mapping(v, walk, depth + 1)
                if inner is None:
                    if walk.is_environ(v):
                        continue  # {**os.environ, ...}: the current values, rewritten unchanged
                    return None
                out.update(inner)
            else:
                key = const_str(k)
                if key is None:
                    return None
                out[key] = v
        return out
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and "dict" not in walk.facts.imports:
        out = {}
        for arg in node.args[:1]:
            if walk.is_environ(arg):
                continue
            inner = _mapping(arg, walk, depth + 1)
            if inner is None:
                return None
            out.update(inner)
        for kw in node.keywords:
            if kw.arg is None:
                inner = _mapping(kw.value, walk, depth + 1)
                if inner is None:
                    return None
                out.update(inner)
            else:
                out[kw.arg] = kw.value
        return out
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _mapping(node.left, walk, depth + 1), _mapping(node.right, walk, depth + 1)
        if right is None or (left is None and not walk.is_environ(node.left)):
            return None
        return {**(left or {}), **right}
    if isinstance(node, ast.Name):
        d = _settings_dict(walk).get(node.id)
        return _mapping(d, walk, depth + 1) if d is not None else None
    return None


def _settings_dict(walk) -> dict:
    """Names bound exactly once in the file, to a dict literal, and never written
    through (no item assignment, no mutating method, no augmented assignment): constants."""
    if walk.settings_dicts is not None:
        return walk.settings_dicts
    bound: dict = {}
    spoiled: set = set()
    for node in ast.walk(walk.tree):
        cls = type(node)
        if cls is ast.Name and type(node.ctx) is not ast.Load:
            bound.setdefault(node.id, []).append(node)
        elif cls is ast.Subscript and type(node.ctx) is not ast.Load and isinstance(node.value, ast.Name):
            spoiled.add(node.value.id)
        elif cls is ast.Attribute and node.attr in _MUTATORS and isinstance(node.value, ast.Name):
            spoiled.add(node.value.id)
        elif cls in (ast.Global, ast.Nonlocal):
            spoiled.update(node.names)
    out = {}
    for stmt in walk.statements():  # (a name bound once in the file: one scope)
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) \
                and isinstance(stmt.value, ast.Dict):
            name = stmt.targets[0].id
            if len(bound.get(name, ())) == 1 and name not in spoiled:
                out[name] = stmt.value
    walk.settings_dicts = out
    return out
