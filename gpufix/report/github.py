"""GitHub Actions workflow commands: one `::error file=…,line=…,col=…,title=CODE::message` a finding."""

from __future__ import annotations


def _escape_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_prop(s: str) -> str:
    return _escape_data(s).replace(":", "%3A").replace(",", "%2C")


def render_github(result, stream) -> None:
    for f in result.findings:
        level = "warning" if f.severity == "warning" else "error"
        where = f"cell {f.cell}: " if f.cell else ""
        stream.write(
            f"::{level} file={_escape_prop(f.path)},line={f.line},col={f.column},endLine={f.end_line},"
            f"endColumn={f.end_column},title={_escape_prop(f.rule)}::{_escape_data(where + f.rule + ' ' + f.message)}\n"
        )
    for e in result.errors:
        line = f",line={e.line}" if e.line else ""
        stream.write(f"::error file={_escape_prop(e.path)}{line},title=gpufix {_escape_prop(e.kind)}::{_escape_data(e.message)}\n")
