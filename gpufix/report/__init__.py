"""Reporters: turn a scan (or apply) result into text. Only the text reporter imports rich."""

from __future__ import annotations

from gpufix.report.document import DOCUMENT_FORMATS, FORMATS, cell_where, is_safe_fix, is_unsafe_fix, scan_document, summary, summary_lines  # noqa: F401  (re-exported)


def render(result, fmt: str, stream, color=False, extra: dict = None, command: str = "scan", show_fixes: bool = False,
           show_source: bool = True, list_findings: bool = True, unsafe_fixes: bool = False) -> None:
    """`color`: True/False, or None to let rich decide (a terminal, NO_COLOR, FORCE_COLOR)."""
    if fmt in ("concise", "pylint", "json-lines", "junit", "gitlab"):
        from gpufix.report import formats

        if fmt == "concise":
            formats.render_concise(result, stream, unsafe_fixes=unsafe_fixes)
        else:
            getattr(formats, "render_" + fmt.replace("-", "_"))(result, stream)
    elif fmt == "json":
        from gpufix.report.json_report import render_json

        render_json(result, stream, extra)
    elif fmt == "sarif":
        from gpufix.report.sarif import render_sarif

        render_sarif(result, stream)
    elif fmt == "github":
        from gpufix.report.github import render_github

        render_github(result, stream)
    else:
        from gpufix.report.text import render_text

        render_text(result, stream, color=color, extra=extra, command=command, show_fixes=show_fixes,
                    show_source=show_source, list_findings=list_findings, unsafe_fixes=unsafe_fixes)
