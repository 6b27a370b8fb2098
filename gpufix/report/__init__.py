"""Reporters: turn a scan (or apply) result into text. Only the text reporter imports rich."""

from __future__ import annotations

import collections

from gpufix import __version__

FORMATS = ("text", "full", "concise", "json", "json-lines", "junit", "github", "gitlab", "pylint", "sarif")
# formats whose stdout is one machine-readable document (nothing else may be printed there)
DOCUMENT_FORMATS = ("json", "json-lines", "junit", "gitlab", "sarif")


def cell_where(f) -> str:
    """A notebook finding's place in words ("cell 2, line 3, col 5"): its line counts from the top
    of its cell, not of the `.ipynb` file, so the formats that can only locate a line of the file
    (github, sarif, junit) name the cell in their text instead."""
    return f"cell {f.cell}, line {f.line}, col {f.column}"


def summary(result) -> dict:
    findings = result.findings
    by_rule = collections.Counter(f.rule for f in findings)
    return {
        "files_scanned": result.files_scanned,
        "files_with_findings": len({f.path for f in findings}),
        "findings": len(findings),
        "fixable": sum(1 for f in findings if f.fix is not None),
        "errors": len(result.errors),
        "by_rule": dict(sorted(by_rule.items())),
    }


def scan_document(result) -> dict:
    return {
        "tool": "gpufix",
        "version": __version__,
        "schema": 1,
        "policy": result.policy.to_report(),
        "summary": summary(result),
        "findings": [f.to_json() for f in result.findings],
        "errors": [e.to_json() for e in result.errors],
    }


def render(result, fmt: str, stream, color=False, extra: dict = None, command: str = "scan", show_fixes: bool = False,
           show_source: bool = True) -> None:
    """`color`: True/False, or None to let rich decide (a terminal, NO_COLOR, FORCE_COLOR)."""
    if fmt in ("concise", "pylint", "json-lines", "junit", "gitlab"):
        from gpufix.report import formats

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
                    show_source=show_source)
