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


def is_safe_fix(f) -> bool:
    return f.fix is not None and f.fix.applicability == "safe"


def is_unsafe_fix(f) -> bool:
    return f.fix is not None and f.fix.applicability != "safe"


def summary(result) -> dict:
    """The run's counts, the one source of every format's totals. `fixable` counts what `gpufix
    apply` fixes (safe fixes); `unsafe_fixable` what it fixes only with `--unsafe-fixes`."""
    findings = result.findings
    by_rule = collections.Counter(f.rule for f in findings)
    return {
        "files_scanned": result.files_scanned,
        "files_with_findings": len({f.path for f in findings}),
        "findings": len(findings),
        "fixable": sum(1 for f in findings if is_safe_fix(f)),
        "unsafe_fixable": sum(1 for f in findings if is_unsafe_fix(f)),
        "errors": len(result.errors),
        "by_rule": dict(sorted(by_rule.items())),
    }


def summary_lines(result, command: str = "scan", listed: bool = True, unsafe_fixes: bool = False) -> list:
    """The closing lines every human format prints (full text, concise, --statistics), with the
    same counts as the JSON summary: the total, then what `gpufix apply` can fix."""
    s = summary(result)
    if not (s["findings"] or s["errors"]):
        return [f"All checks passed: {s['files_scanned']} file(s) scanned, no findings."]
    rules = ", ".join(f"{k}: {v}" for k, v in s["by_rule"].items())
    head = f"Found {s['findings']} finding(s)" if command == "scan" else f"{s['findings']} finding(s) remaining"
    line = (f"{head} in {s['files_with_findings']} of {s['files_scanned']} file(s)"
            + (f" ({rules})" if rules else "")
            + (f"; {s['errors']} file error(s)" if s["errors"] else "")
            + ("; `gpufix scan` lists them" if not listed else "") + ".")
    lines = [line]
    if command == "scan" and (s["fixable"] or s["unsafe_fixable"]):
        if unsafe_fixes:  # scan --unsafe-fixes: the unsafe ones count as fixable, with the command that fixes them
            fix = f"[*] {s['fixable'] + s['unsafe_fixable']} fixable with `gpufix apply --unsafe-fixes`"
        elif s["fixable"]:
            fix = f"[*] {s['fixable']} fixable with `gpufix apply`"
            if s["unsafe_fixable"]:
                fix += f" ({s['unsafe_fixable']} more with `gpufix apply --unsafe-fixes`)"
        else:
            fix = f"No safe fix; {s['unsafe_fixable']} fixable with `gpufix apply --unsafe-fixes`"
        lines.append(fix + ".")
    return lines


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
