"""Launchers: the shell, PowerShell and batch scripts of a project that run one of its Python
scripts with a GPU option (`python benchmarks\\bench.py --gpu 1` in `run_all.bat`).

A launcher's argument overrides the script's argparse default. When GPU001 would rewrite an
option's default (`default=1` -> `0`) while a launcher passes another value for that option, the
two would disagree after `apply` (the run through the launcher still names the old GPU): the
default's fix is withheld, and the message names the launcher and its line, so that both are
changed together by hand. gpufix does not rewrite the launchers' arguments itself: whether a
number after a flag is an index depends on the program, known here only from the Python side.

Read: `python`/`python3`/`py` (with `.exe`, a path, interpreter flags such as `-u`) followed by a
`.py` path or `-m pkg.mod` (the file `pkg/mod.py`), and a script run directly (`./bench.py`,
`.\\bench.py`); `--option N` and
`--option=N` with N a literal integer. Script paths are resolved from the launcher's folder, then
from the project root.
"""

from __future__ import annotations

import os
import re
from typing import Iterable

from gpufix.deferred import LazyPattern

_PYTHON_RE = LazyPattern(r"^(?:python[\d.]*|py|pythonw)(?:\.exe)?$", re.I)
_OPTION_RE = LazyPattern(r"^(--?[A-Za-z][\w-]*)(?:=(\d+))?$")
LAUNCHER_KINDS = ("shell", "powershell", "batch")


def _commands(text: str, kind: str) -> Iterable[list]:
    """Each command's words as (value, start) pairs."""
    if kind == "batch":
        from gpufix.formats import batch

        for cmd in batch.commands(text):
            yield [(w.value, w.start) for w in batch.words(text, cmd.start, cmd.end) if not w.dynamic]
        return
    if kind == "powershell":
        from gpufix.formats.powershell import tokens
    else:
        from gpufix.formats.shell import tokens
    words: list = []
    for tok in tokens(text):
        if isinstance(tok, str):
            if tok != ",":
                if words:
                    yield words
                words = []
            continue
        words.append((None if tok.dynamic else tok.value, tok.start))
    if words:
        yield words


def _calls(words: list):
    """(script as written, [(option, value, offset)]) when the command runs a Python script."""
    k = 0
    while k < len(words) and words[k][0] in ("&", "call", "start", "exec", "nohup", "sudo", "time"):
        k += 1
    if k >= len(words) or words[k][0] is None:
        return None
    head = words[k][0]
    base = re.split(r"[\\/]", head)[-1]
    if _PYTHON_RE.match(base):
        k += 1
        module = False
        while k < len(words) and words[k][0] and words[k][0].startswith("-"):
            if words[k][0] == "-m":  # `python -m pkg.mod`: the module's file, pkg/mod.py
                module = True
                k += 1
                break
            k += 2 if words[k][0] in ("-X", "-W") else 1
        if k >= len(words) or not words[k][0]:
            return None
        script = words[k][0]
        if module:
            if not re.match(r"^[A-Za-z_][\w.]*$", script):
                return None
            script = script.replace(".", "/") + ".py"
    else:
        script = head
    if not script.lower().endswith(".py"):
        return None
    options = []
    rest = words[k + 1:]
    for i, (value, start) in enumerate(rest):
        if value is None:
            continue
        m = _OPTION_RE.match(value)
        if not m:
            continue
        if m.group(2) is not None:
            options.append((m.group(1), int(m.group(2)), start + len(m.group(1)) + 1))
        elif i + 1 < len(rest) and rest[i + 1][0] is not None and rest[i + 1][0].isdigit():
            options.append((m.group(1), int(rest[i + 1][0]), rest[i + 1][1]))
    return script, options


def launch_args(root, exclude=(), respect_gitignore: bool = True, files=None) -> tuple:
    """((script real path, option, value, launcher path from the root, line), ...) for the project
    under `root`, sorted: what the launchers pass to the project's scripts. `files`: the
    (absolute path, display) pairs a run already discovered under the whole root, to read the
    launchers among them instead of walking the root again."""
    if not root:
        return ()
    from gpufix.discover import discover, native_path
    from gpufix.formats import detect_kind
    from gpufix.formats.text import Lines, TextError, decode_text

    from gpufix.formats import kind_of

    if files is not None:
        found = [(p, d) for p, d in files if kind_of(str(p)) in LAUNCHER_KINDS]
    else:
        found = discover([root], exclude=exclude, root=root, respect_gitignore=respect_gitignore, kinds=LAUNCHER_KINDS)
    out = []
    for path, _ in found:
        try:
            if os.path.getsize(path) > 1024 * 1024:
                continue
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        if b"py" not in raw.lower() or b"-" not in raw:  # `.py`, `python -m`, `py -3`
            continue
        try:
            text, _ = decode_text(str(path), raw)
        except TextError:
            continue
        kind = detect_kind(str(path), raw)
        lines = None
        for words in _commands(text, kind):
            got = _calls(words)
            if not got or not got[1]:
                continue
            script, options = got
            rel = script.replace("\\", "/")
            target = None
            for base in (os.path.dirname(str(path)), str(root)):
                cand = os.path.normpath(os.path.join(base, rel))
                if os.path.isfile(cand):
                    target = cand
                    break
            if target is None:
                continue
            lines = lines or Lines(text)
            for option, value, offset in options:
                shown = native_path(os.path.relpath(str(path), str(root)).replace(os.sep, "/"))
                out.append((os.path.realpath(target), option, value, shown, lines.line_of(offset)))
    return tuple(sorted(set(out)))


def passed_to(launches: tuple, abs_path: str, option: str) -> list:
    """[(launcher, line, value)] of the launchers that pass `option` to the script at abs_path."""
    if not launches or not abs_path:
        return []
    from gpufix.discover import same_path

    real = os.path.realpath(abs_path)
    return [(shown, line, value) for script, opt, value, shown, line in launches
            if opt == option and same_path(script, real)]
