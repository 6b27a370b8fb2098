"""The human report: `path:line:col: CODE message`, a code frame, and a summary (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from gpufix.discover import native_path
from gpufix.report.document import summary, summary_lines
from gpufix.report.safe import for_terminal

TAB = "\t"  # a code frame keeps its tabs


def _e(value, keep: str = "") -> str:
    """A repository's text for the terminal: control characters escaped, then rich markup."""
    return escape(for_terminal(value, keep))


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


def render_text(result, stream, color=False, extra: dict = None, command: str = "scan", show_source: bool = True,
                show_fixes: bool = False, list_findings: bool = True, unsafe_fixes: bool = False) -> None:
    """`list_findings=False` (apply --remaining count): only the summary, no finding or file error."""
    # color None: rich decides, honouring NO_COLOR (set and non-empty) and FORCE_COLOR itself.
    # emoji=False: a repository's `:warning:` in a message or a code frame is printed as written.
    if color is None:
        console = Console(file=stream, highlight=False, soft_wrap=True, emoji=False)
    else:
        console = Console(file=stream, force_terminal=color, no_color=not color, highlight=False, soft_wrap=True, emoji=False)
    cache: dict = {}
    # One print for all findings: rich's per-call overhead is most of a report of a few hundred.
    out: list = []
    for f in (result.findings if list_findings else ()):
        fixable = " [cyan]\\[*][/cyan]" if f.fix and f.fix.applicability == "safe" else (" [cyan]\\[unsafe fix][/cyan]" if f.fix else "")
        out.append(f"[bold]{_e(_location(f))}[/bold]: [red]{f.rule}[/red] {_e(f.message)}{fixable}")
        if show_source:
            text = _frame(cache, f)
            if text is not None and text.strip():
                width = len(str(f.line))
                out.append(f"[dim]{f.line:>{width}} |[/dim] {_e(text.rstrip(), keep=TAB)}")
                if f.end_line == f.line and f.end_column > f.column:
                    caret = " " * (f.column - 1) + "^" * (f.end_column - f.column)
                else:
                    caret = " " * (f.column - 1) + "^"
                out.append(f"[dim]{'':>{width}} |[/dim] [red]{caret}[/red]")
        if show_fixes and f.fix is not None:
            kind = "" if f.fix.applicability == "safe" else " (unsafe: --unsafe-fixes)"
            out.append(f"  [cyan]help[/cyan]: {_e(f.fix.title)}{kind}")
    if out:
        console.print("\n".join(out))
    for e in (result.errors if list_findings else ()):
        where = f"{native_path(e.path)}:{e.line}" if e.line else native_path(e.path)
        console.print(f"[bold]{_e(where)}[/bold]: [magenta]error[/magenta] ({e.kind}) {_e(e.message)}")
    s = summary(result)
    if extra and command == "apply":
        changed = extra.get("changed_files", [])
        console.print(f"Fixed {sum(c.get('fixed', 0) for c in changed)} finding(s) in {len(changed)} file(s).")
        if show_fixes:
            for c in changed:
                console.print(f"- {_e(c['path'])}: {', '.join(c.get('rules', []))}")
        if extra.get("backup"):
            console.print(f"Backup: {_e(extra['backup']['dir'])} (undo with `gpufix restore {extra['backup']['id']}`)")
        if extra.get("git_tag"):
            console.print(f"Git tag: {escape(extra['git_tag'])}")
    for n, line in enumerate(summary_lines(result, command, listed=list_findings, unsafe_fixes=unsafe_fixes)):
        if line.startswith("[*] "):
            console.print("[cyan]\\[*][/cyan] " + escape(line[4:]))
        elif n == 0 and (s["findings"] or s["errors"]):
            console.print(f"[bold]{escape(line)}[/bold]")
        else:
            console.print(escape(line))
