"""The kinds of input files gpufix reads: one list, used by the policy (`file-kinds`), discovery
(which files a folder scan picks up), the readers (gpufix.source, gpufix.formats) and the engine.
A leaf module: it imports nothing of gpufix. A new kind is added here, with its reader; a test
(tests/unit/test_file_kinds.py) fails when a kind is missing from any of them.

| kind        | files                                                                  |
|-------------|------------------------------------------------------------------------|
| python      | `*.py`                                                                 |
| notebook    | `*.ipynb`                                                              |
| shell       | `*.sh`, `*.bash`, `*.zsh`, a shell shebang                              |
| dockerfile  | `Dockerfile`, `Dockerfile.*`, `*.Dockerfile`, `*.dockerfile`, `Containerfile` |
| dotenv      | `.env`, `.env.*`, `*.env`                                              |
| yaml        | `*.yml`, `*.yaml`                                                      |
| json        | `*.json` (not notebooks)                                               |
| toml        | `*.toml`                                                               |
| powershell  | `*.ps1`, `*.psm1`                                                      |
| batch       | `*.bat`, `*.cmd`                                                       |

Names match without case (`Upper.PY`, `dockerfile`, `RUN.BAT`), as on Windows' file systems.
"""

from __future__ import annotations

import os
import re
from typing import Optional

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
    return kind_of_name(os.path.basename(path))


def kind_of_name(name: str) -> Optional[str]:
    """kind_of of a file's name (its path's last part: a folder walk has it already)."""
    low = name.lower()
    # Every name the Dockerfile regex matches holds "le" in any case ("Dockerfile", "Containerfile";
    # under re.I only `L`/`l` and `E`/`e` match those letters): the regex runs on those names only.
    if "le" in low and _DOCKERFILE_RE.match(name):
        return "dockerfile"
    if low == ".env" or low.startswith(".env."):
        return "dotenv"
    # os.path.splitext(name)[1].lower() of a name without a separator: from the last dot, unless
    # only dots come before it (`.bashrc`, `..py` have none)
    i = low.rfind(".")
    return _EXT.get(low[i:]) if i > 0 and low[:i].lstrip(".") else None


_SHELL_SHEBANG_RE = re.compile(rb"^#![ \t]*\S*/(?:env[ \t]+)?(?:ba|z|k|da)?sh\b")


def detect_kind(path: str, raw: bytes = b"") -> str:
    """kind_of, or for a file without a known name a shell shebang (pre-commit passes such scripts
    as `shell`); else Python, as a named file always was."""
    kind = kind_of(path)
    if kind is None and _SHELL_SHEBANG_RE.match(raw[:128]):
        return "shell"
    return kind or "python"
