"""The human report: `path:line:col: CODE message`, a code frame, and a summary.

Each line is made once, as styled parts. A terminal (or FORCE_COLOR, TTY_COMPATIBLE=1) gets
them through rich, in colour; any other stream (a pipe, a file: pre-commit's and CI's case) gets
their text as rich would print it without colour, without importing rich (a third of a small
run's start-up). Neither parses markup: a repository's `[red]` or `:warning:` is printed as
written.
"""

from __future__ import annotations

import os

from gpufix.discover import native_path
from gpufix.report.document import summary, summary_lines
from gpufix.report.safe import for_terminal

TAB = "\t"  # a code frame keeps its tabs (expanded to the next multiple of 8 columns, as rich does)
TAB_SIZE = 8


def _location(f) -> str:
    if f.cell is not None:
        return f"{native_path(f.path)}:cell {f.cell}:{f.line}:{f.column}"
    return f"{native_path(f.path)}:{f.line}:{f.column}"


def _frame(lines_cache: dict, f):
    if f.cell is not None:
        return None
    lines = lines_cache.get(f.path)
    if lines is None:
        try:
            from gpufix.source import read_source, split_lines

            with open(f.path, "rb") as fh:
                lines = split_lines(read_source(f.path, fh.read()).text)
        except Exception:
            lines = []
        lines_cache[f.path] = lines
    if not (1 <= f.line <= len(lines)):
        return None
    return lines[f.line - 1]


def report_lines(result, extra: dict = None, command: str = "scan", show_source: bool = True,
                 show_fixes: bool = False, list_findings: bool = True, unsafe_fixes: bool = False) -> list:
    """The report as lines, each a tuple of (text, style or None) parts; the text of a
    repository's values is already made safe for a terminal (gpufix.report.safe)."""
    cache: dict = {}
    out: list = []
    for f in (result.findings if list_findings else ()):
        fixable = ((" ", None), ("[*]", "cyan")) if f.fix and f.fix.applicability == "safe" else (
            ((" ", None), ("[unsafe fix]", "cyan")) if f.fix else ())
        out.append(((for_terminal(_location(f)), "bold"), (": ", None), (f.rule, "red"),
                    (" " + for_terminal(f.message), None), *fixable))
        if show_source:
            text = _frame(cache, f)
            if text is not None and text.strip():
                width = len(str(f.line))
                out.append(((f"{f.line:>{width}} |", "dim"), (" " + for_terminal(text.rstrip(), keep=TAB), None)))
                if f.end_line == f.line and f.end_column > f.column:
                    caret = " " * (f.column - 1) + "^" * (f.end_column - f.column)
                else:
                    caret = " " * (f.column - 1) + "^"
                out.append(((f"{'':>{width}} |", "dim"), (" ", None), (caret, "red")))
        if show_fixes and f.fix is not None:
            kind = "" if f.fix.applicability == "safe" else " (unsafe: --unsafe-fixes)"
            out.append((("  ", None), ("help", "cyan"), (": " + for_terminal(f.fix.title) + kind, None)))
    for e in (result.errors if list_findings else ()):
        where = f"{native_path(e.path)}:{e.line}" if e.line else native_path(e.path)
        out.append(((for_terminal(where), "bold"), (": ", None), ("error", "magenta"),
                    (f" ({e.kind}) " + for_terminal(e.message), None)))
    s = summary(result)
    if extra and command == "apply":
        changed = extra.get("changed_files", [])
        out.append(((f"Fixed {sum(c.get('fixed', 0) for c in changed)} finding(s) in {len(changed)} file(s).", None),))
        if show_fixes:
            for c in changed:
                out.append(((f"- {for_terminal(c['path'])}: {', '.join(c.get('rules', []))}", None),))
        if extra.get("backup"):
            out.append(((f"Backup: {for_terminal(extra['backup']['dir'])} (undo with `gpufix restore {extra['backup']['id']}`)", None),))
        if extra.get("git_tag"):
            out.append(((f"Git tag: {extra['git_tag']}", None),))
    for n, line in enumerate(summary_lines(result, command, listed=list_findings, unsafe_fixes=unsafe_fixes)):
        if line.startswith("[*] "):
            out.append((("[*]", "cyan"), (" " + line[4:], None)))
        elif n == 0 and (s["findings"] or s["errors"]):
            out.append(((line, "bold"),))
        else:
            out.append(((line, None),))
    return out


def render_text(result, stream, color=False, extra: dict = None, command: str = "scan", show_source: bool = True,
                show_fixes: bool = False, list_findings: bool = True, unsafe_fixes: bool = False) -> None:
    """`list_findings=False` (apply --remaining count): only the summary, no finding or file error.
    `color`: True/False, or None for rich's own choice (a terminal, NO_COLOR, FORCE_COLOR)."""
    lines = report_lines(result, extra, command, show_source, show_fixes, list_findings, unsafe_fixes)
    if color is False or (color is None and not _is_terminal(stream)):
        write_plain(lines, stream)
    else:
        write_rich(lines, stream, color)


def _is_terminal(stream) -> bool:
    """rich's Console.is_terminal for a console without force_terminal (TTY_COMPATIBLE, then
    FORCE_COLOR, then the stream's isatty), so that the plain writer is used exactly where rich
    would print no colour; Jupyter and IDLE, where rich says no terminal, take rich's path."""
    environ = os.environ
    compatible = environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = environ.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream, as rich reads it
        return False


def write_plain(lines: list, stream) -> None:
    """The lines' text as rich prints it without colour: tabs expanded to the next multiple of 8
    cells (rich's Text.expand_tabs), nothing else changed."""
    parts = []
    for line in lines:
        text = "".join(t for t, _ in line)
        parts.append(_expand_tabs(text) if TAB in text else text)
    stream.write("\n".join(parts) + "\n")
    stream.flush()


def _expand_tabs(text: str) -> str:
    from rich.cells import cell_len  # wide characters take two cells: only a framed tab needs it

    out = []
    position = 0
    pieces = text.split(TAB)
    for i, piece in enumerate(pieces):
        out.append(piece)
        position += cell_len(piece)
        if i < len(pieces) - 1:
            spaces = TAB_SIZE - position % TAB_SIZE
            out.append(" " * spaces)
            position += spaces
    return "".join(out)


def write_rich(lines: list, stream, color) -> None:
    from rich.console import Console
    from rich.text import Text

    # emoji=False: a repository's `:warning:` in a message or a code frame is printed as written.
    if color is None:
        console = Console(file=stream, highlight=False, soft_wrap=True, emoji=False)
    else:
        console = Console(file=stream, force_terminal=color, no_color=not color, highlight=False, soft_wrap=True, emoji=False)
    # One print for all lines: rich's per-call overhead is most of a report of a few hundred.
    text = Text()
    for n, line in enumerate(lines):
        if n:
            text.append("\n")
        for part, style in line:
            text.append(part, style)
    console.print(text)
