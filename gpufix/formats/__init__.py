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

import os
import re
from typing import Callable, Optional

from gpufix.model import FileError

PYTHON_KINDS = ("python", "notebook")
# Windows launchers (powershell, batch) are the last two: their names and variables are
# case-insensitive, so their cheap test is too.
TEXT_KINDS = ("shell", "dockerfile", "dotenv", "yaml", "json", "toml", "powershell", "batch")
CASELESS_KINDS = ("powershell", "batch")
CONFIG_KINDS = ("yaml", "json", "toml")  # data formats: tested before decoding, may be big
ALL_KINDS = PYTHON_KINDS + TEXT_KINDS
MAX_BYTES = 16 * 1024 * 1024

_DOCKERFILE_RE = re.compile(r"^(?:Dockerfile(?:\..+)?|.+\.Dockerfile|Containerfile(?:\..+)?)$", re.I)
_EXT = {
    ".py": "python", ".ipynb": "notebook", ".sh": "shell", ".bash": "shell", ".zsh": "shell",
    ".yml": "yaml", ".yaml": "yaml", ".json": "json", ".toml": "toml", ".env": "dotenv",
    ".ps1": "powershell", ".psm1": "powershell", ".bat": "batch", ".cmd": "batch",
}


def kind_of(path: str) -> Optional[str]:
    """The kind of a file from its name, or None (not read)."""
    name = os.path.basename(path)
    if _DOCKERFILE_RE.match(name):
        return "dockerfile"
    low = name.lower()
    if low == ".env" or low.startswith(".env."):
        return "dotenv"
    return _EXT.get(os.path.splitext(name)[1].lower())


_SHELL_SHEBANG_RE = re.compile(rb"^#![ \t]*\S*/(?:env[ \t]+)?(?:ba|z|k|da)?sh\b")


def detect_kind(path: str, raw: bytes = b"") -> str:
    """kind_of, or for a file without a known name a shell shebang (pre-commit passes such scripts
    as `shell`); else Python, as a named file always was."""
    kind = kind_of(path)
    if kind is None and _SHELL_SHEBANG_RE.match(raw[:128]):
        return "shell"
    return kind or "python"


# The cheap test run on the raw bytes before any decoding or parsing: a file without one of these
# can hold no finding. Env-style files need a variable name or a `cuda:N`; configs may also hold a
# device key (compared in lower case, as the walker does).
_ENV_TOKENS = (b"VISIBLE_DEVICES", b"DEVICE_ORDER", b"cuda:")
# A device key as a key: followed by `:` (YAML, JSON) or `=` (TOML), after an optional quote (a
# tokenizer's vocab.json holds "devices" as a word, not as a key). Matched only where `gpu` or
# `device` occurs (found by bytes.find: a regex scan of a multi-megabyte file is 100x slower).
_GPU_KEY_RE = re.compile(rb"gpu(?:[_-]?(?:ids?|index|idx)|s)[\"']?[ \t]*[:=]")
_DEVICE_KEY_RE = re.compile(rb"device(?:[_-]?(?:ids?|index)|s)?[\"']?[ \t]*[:=]")


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


def lint_text(path: str, text: str, kind: str, policy, enabled: Callable[[str], bool], ignored_codes=()) -> tuple:
    """(findings, errors, project-rule candidates) of one decoded file: read into facts here, judged
    by the rules that check such facts (`Rule.check_text`, `ProjectRule.collect_text`)."""
    from gpufix.formats.text import comment_suppressions, hash_comment_suppressions
    from gpufix.formats.tree import ParseError
    from gpufix.rules import load_rules, project_rules
    from gpufix.rules._text import TextContext
    from gpufix.suppress import is_suppressed

    if kind == "json":
        by_line, file_codes = {}, None
    elif kind == "batch":
        from gpufix.formats.batch import comments

        by_line, file_codes = comment_suppressions(text, comments(text))
    else:
        by_line, file_codes = hash_comment_suppressions(text)
    if file_codes and "*" in file_codes:
        return [], [], []
    try:
        facts = scan_facts(text, kind)
    except ParseError as exc:
        if kind == "yaml" and ("{{" in text or "{%" in text):
            return [], [], []  # a Helm/Jinja template, not YAML until rendered: not followed
        return [], [FileError(path, "syntax-error", f"cannot parse: {exc}", exc.line)], []
    except (RecursionError, MemoryError):
        return [], [FileError(path, "syntax-error", "cannot parse: nested too deeply")], []
    tctx = TextContext(path, text, policy, facts)
    findings = []
    for code, rule in load_rules().items():
        if not enabled(code):
            continue
        for f in rule.check_text(tctx):
            if any(f.rule.startswith(c) for c in ignored_codes):
                continue
            if is_suppressed(f.rule, (f.line, f.end_line), by_line, file_codes):
                continue
            findings.append(f)
    candidates = []
    for code, rule in project_rules().items():
        if not enabled(code) or any(code.startswith(c) for c in ignored_codes):
            continue
        candidates.extend({"finding": c.finding.to_json(), "value": c.value} for c in rule.collect_text(tctx)
                          if not is_suppressed(code, (c.finding.line,), by_line, file_codes))
    return findings, [], candidates


def decode(path: str, raw: bytes, kind: str) -> tuple:
    """(text, bom), or raises text.TextError."""
    from gpufix.formats.text import TextError, decode_text

    if len(raw) > MAX_BYTES:
        raise TextError(FileError(path, "too-large", f"file is {len(raw) / 2**20:.1f} MiB, over the {MAX_BYTES // 2**20} MiB limit; skipped"))
    return decode_text(path, raw)
