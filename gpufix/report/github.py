"""GitHub Actions workflow commands: one `::error file=…,line=…,col=…,title=CODE::message` a finding.

Syntax and escaping follow GitHub's workflow commands (as actions/toolkit writes them): in the
message `%`, CR and LF are escaped; in property values also `:` and `,`. `col`/`endColumn` may only be
sent when the annotation starts and ends on the same line. A notebook finding's line is relative to
its cell, not a line of the `.ipynb` file, so it is annotated on the file and the message names the
cell and line. Paths are relative to the current directory: run gpufix from the repository root.
"""

from __future__ import annotations

from gpufix.report.safe import for_terminal


def _escape_data(s: str) -> str:
    # A value from the repository stays on its command's line: line breaks are GitHub's %0D/%0A
    # (part of the annotation's text, never a new command), other control characters escapes.
    return for_terminal(s, keep="\r\n").replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_prop(s: str) -> str:
    return _escape_data(s).replace(":", "%3A").replace(",", "%2C")


def _command(level: str, props: list, message: str) -> str:
    joined = ",".join(f"{k}={_escape_prop(str(v))}" for k, v in props)
    return f"::{level} {joined}::{_escape_data(message)}\n"


def render_github(result, stream) -> None:
    for f in result.findings:
        level = "warning" if f.severity == "warning" else "error"
        props = [("file", f.path)]
        if f.cell is not None:
            message = f"{f.rule} cell {f.cell}, line {f.line}: {f.message}"
        else:
            message = f"{f.rule} {f.message}"
            if f.end_line == f.line:
                props += [("line", f.line), ("col", f.column), ("endLine", f.end_line), ("endColumn", max(f.end_column, f.column))]
            else:
                props += [("line", f.line), ("endLine", f.end_line)]
        props.append(("title", f.rule))
        stream.write(_command(level, props, message))
    for e in result.errors:
        props = [("file", e.path)]
        if e.cell is not None:
            message = f"cell {e.cell}" + (f", line {e.line}" if e.line else "") + f": {e.message}"
        else:
            message = e.message
            if e.line:
                props.append(("line", e.line))
        props.append(("title", f"gpufix {e.kind}"))
        stream.write(_command("error", props, message))
