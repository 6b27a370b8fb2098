"""The inputs gpufix reads besides Python: which files they are, the cheap test that skips most of
them, and the per-file pipeline (decode, parse, judge, suppress) that the engine calls for them.

| kind        | files                                                                  |
|-------------|------------------------------------------------------------------------|
| python      | `*.py`                                                                 |
| notebook    | `*.ipynb`                                                              |
| shell       | `*.sh`, `*.bash`, `*.zsh`                                              |
| dockerfile  | `Dockerfile`, `Dockerfile.*`, `*.Dockerfile`, `*.dockerfile`, `Containerfile` |
| dotenv      | `.env`, `.env.*`, `*.env`                                              |
| yaml        | `*.yml`, `*.yaml` (compose files, CI workflows, Kubernetes, Hydra/Lightning configs) |
| json        | `*.json` (not notebooks)                                               |
| toml        | `*.toml`                                                               |
| powershell  | `*.ps1`, `*.psm1`                                                      |
| batch       | `*.bat`, `*.cmd`                                                       |

Names are compared case-insensitively (`Upper.PY`, `dockerfile`, `RUN.BAT`): Windows and macOS
file systems do not tell them apart, and Docker reads a lowercase `dockerfile` everywhere.

The policy's `file-kinds` chooses which kinds a folder scan picks up (default: all); a file named
on the command line is always read.
"""

from __future__ import annotations

from gpufix.model import FileError

from gpufix.kinds import ALL_KINDS, CASELESS_KINDS, CONFIG_KINDS, MAX_BYTES, PYTHON_KINDS, TEXT_KINDS, detect_kind, kind_of  # noqa: F401
from gpufix.deferred import LazyPattern

# The cheap test run on the raw bytes before any decoding or parsing: a file without one of these
# can hold no finding. Env-style files need a variable name or a `cuda:N`; configs may also hold a
# device key (compared in lower case, as the walker does).
_ENV_TOKENS = (b"VISIBLE_DEVICES", b"DEVICE_ORDER", b"cuda:")
# A device key as a key: followed by `:` (YAML, JSON) or `=` (TOML), after an optional quote (a
# tokenizer's vocab.json holds "devices" as a word, not as a key). Matched only where `gpu` or
# `device` occurs (found by bytes.find: a regex scan of a multi-megabyte file is 100x slower).
_GPU_KEY_RE = LazyPattern(rb"gpu(?:[_-]?(?:ids?|index|idx)|s)[\"']?[ \t]*[:=]")
_DEVICE_KEY_RE = LazyPattern(rb"device(?:[_-]?(?:ids?|index)|s)?[\"']?[ \t]*[:=]")


def _has_device_key(low: bytes) -> bool:
    for word, rx in ((b"gpu", _GPU_KEY_RE), (b"device", _DEVICE_KEY_RE)):
        pos = low.find(word)
        while pos >= 0:
            m = rx.match(low, pos)
            if m and (word == b"gpu" or m.end() - pos > 7 or low[max(0, pos - 5):pos] in (b"cuda_", b"cuda-")
                      or low[pos:pos + 7] == b"devices" or low[pos + 6:pos + 7] in (b"_", b"-")):
                return True
            pos = low.find(word, pos + 1)
    return False


_CASELESS_TOKENS = tuple(t.lower() for t in _ENV_TOKENS)


def may_have_findings(raw: bytes, kind: str) -> bool:
    if kind in CASELESS_KINDS:
        low = raw.lower()
        return any(t in low for t in _CASELESS_TOKENS)
    if any(t in raw for t in _ENV_TOKENS):
        return True
    return kind in CONFIG_KINDS and _has_device_key(raw.lower())


def scan_facts(text: str, kind: str):
    """The kind's reader; raises tree.ParseError for a config that does not parse."""
    from gpufix.formats import batch, dockerfile, dotenv, powershell, shell, tree

    if kind == "powershell":
        return tree.finish(powershell.scan(text))
    if kind == "batch":
        return tree.finish(batch.scan(text))
    if kind == "shell":
        return tree.finish(shell.scan(text))
    if kind == "dockerfile":
        return tree.finish(dockerfile.scan(text))
    if kind == "dotenv":
        return tree.finish(dotenv.scan(text))
    return tree.scan(text, kind)


def decode(path: str, raw: bytes, kind: str) -> tuple:
    """(text, bom), or raises text.TextError."""
    from gpufix.formats.text import TextError, decode_text

    if len(raw) > MAX_BYTES:
        raise TextError(FileError(path, "too-large", f"file is {len(raw) / 2**20:.1f} MiB, over the {MAX_BYTES // 2**20} MiB limit; skipped"))
    return decode_text(path, raw)
