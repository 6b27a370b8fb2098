"""Regexes compiled once per user instead of once per process: the output of Python's regex
compiler (its parser and code generator are written in Python, and the prefilter's and value
flow's patterns took 20-30 ms to compile in every run over a few named files, more than parsing
those files) is kept in one signed file in the user cache folder, and a later run that uses the
cache hands it to the C engine (`_sre.compile`) without compiling again.

What is kept is exactly what `re.compile` gives: an entry is stored only once the pattern it makes
compares equal to `re.compile(pattern, flags)` (a Pattern's equality is its pattern, flags and
whole compiled code), on the same Python (the file's name holds the interpreter's cache tag and
`_sre.MAGIC`). The file is signed with this user's key (gpufix.signing): one that was altered or
planted is not read. Anything unexpected (another interpreter, a changed `_sre`) turns the store
off and `re.compile` answers, so a pattern matches the same either way.

A run turns the store on only when it uses the cache (`enable`, from the engine; never with
`--no-cache`), and writes it at its end (`save`) only when it compiled a pattern the store lacked.
Standard library only (the signing module is imported when the store is first read)."""

from __future__ import annotations

import os
import re
import sys

try:  # CPython's compiler: re._compiler and re._parser (3.11+), sre_compile and sre_parse before
    import _sre
    from array import array

    try:
        from re import _compiler, _parser
    except ImportError:  # pragma: no cover (Python < 3.11)
        import sre_compile as _compiler
        import sre_parse as _parser
    _CODE = "I" if array("I").itemsize == _sre.CODESIZE else None
except ImportError:  # pragma: no cover (another interpreter)
    _CODE = None

# Value flow's patterns are made from a file's own names: the store is bounded (the shipped
# patterns a run over torch's files compiles are about 260 kB of code; reading and verifying the
# store costs about 1 ms for each 300 kB).
MAX_ENTRIES = 2000
MAX_CODE_BYTES = 1 << 20
_PROJECT = "gpufix-regexes"  # what the signature binds the file to (gpufix.signing.mac)

_folder = None  # the user cache folder, while a run that uses the cache is on
_key = None
_stored = None  # (pattern, flags) -> (flags, code as bytes, groups, groupindex, indexgroup)
_missed: dict = {}  # (pattern, flags) compiled this run that the store lacked


def enable(folder: str) -> None:
    """Turn the store on for this process (a run that uses the cache), in `folder`."""
    global _folder
    if _CODE is not None and sys.implementation.name == "cpython":
        _folder = folder


def enable_for_user() -> None:
    """enable() in `$GPUFIX_CACHE_DIR`, else the user cache folder (where the caches live)."""
    enable(os.environ.get("GPUFIX_CACHE_DIR") or _user_cache_dir())


def disable() -> None:
    global _folder, _stored, _key
    _folder, _stored, _key = None, None, None
    _missed.clear()


def _path() -> str:
    return os.path.join(_folder, f"regexes-{sys.implementation.cache_tag}-{_sre.MAGIC}.bin")


def _load() -> dict:
    global _stored, _key
    _stored = {}
    try:
        import marshal

        from gpufix import signing

        _key = signing.read_key(os.path.join(_user_cache_dir(), signing.KEY_FILE), create=False)
        _noted()
        got = signing.read_nofollow(_path()) if _key is not None else None
        if got is not None:
            body = signing.verified_body(_key, _PROJECT, _path(), got[0], got[1])
            if body is not None:
                loaded = marshal.loads(body)
                if isinstance(loaded, dict):
                    _stored = loaded
    except Exception:  # unreadable, rejected (a link), not marshal: compiled as without a store
        _stored = {}
    return _stored


def _noted() -> None:
    """Tell a run snapshot (gpufix.snapshot) what the store is signed for: a store that another run
    added to since is still this user's, and does not stop the snapshot's replay."""
    snapshot = sys.modules.get("gpufix.snapshot")
    if snapshot is not None:
        snapshot.note_cache(_path(), _PROJECT)


def _user_cache_dir() -> str:
    from gpufix import userdirs

    return userdirs.user_cache_dir()


def compile(pattern, flags=0):
    """re.compile(pattern, flags), from the store when it holds the pattern."""
    flags = int(flags)
    if _folder is not None:
        stored = _stored if _stored is not None else _load()
        parts = stored.get((pattern, flags))
        if parts is not None:
            try:
                return _sre.compile(pattern, parts[0], array(_CODE, parts[1]).tolist(), parts[2], parts[3], parts[4])
            except Exception:  # not what this _sre takes: compiled below, stored again
                pass
        _missed[(pattern, flags)] = None
    return re.compile(pattern, flags)


def _parts_of(pattern, flags: int):
    """What _sre.compile takes for the pattern (re._compiler.compile's steps), or None when the
    pattern it makes is not the one re.compile makes."""
    parsed = _parser.parse(pattern, flags)
    code = _compiler._code(parsed, flags)
    groupindex = dict(parsed.state.groupdict)
    indexgroup = [None] * parsed.state.groups
    for name, i in groupindex.items():
        indexgroup[i] = name
    parts = (flags | parsed.state.flags, array(_CODE, code).tobytes(), parsed.state.groups - 1, groupindex, tuple(indexgroup))
    made = _sre.compile(pattern, parts[0], code, parts[2], parts[3], parts[4])
    return parts if made == re.compile(pattern, flags) else None


def save() -> None:
    """Add this run's new patterns to the store (signed, replaced whole), when there are any."""
    global _key
    if _folder is None or not _missed:
        _missed.clear()
        return
    try:
        import marshal

        from gpufix import signing

        if _key is None:  # the run's result cache made this user's key after the store was read
            _key = signing.read_key(os.path.join(_user_cache_dir(), signing.KEY_FILE), create=False)
        if _key is None:
            return
        merged = dict(_stored if _stored is not None else _load())
        for key in _missed:
            parts = _parts_of(*key)
            if parts is not None:
                merged[key] = parts
        size = sum(len(parts[1]) for parts in merged.values())
        while len(merged) > MAX_ENTRIES or size > MAX_CODE_BYTES:  # the oldest go first
            size -= len(merged.pop(next(iter(merged)))[1])
        os.makedirs(_folder, exist_ok=True)
        _noted()
        signing.write_signed(_path(), _key, _PROJECT, marshal.dumps(merged))
    except Exception:  # a read-only cache folder, a full disk: the next run compiles again
        pass
    finally:
        _missed.clear()
