"""The parts of a report every format shares: the formats, the summary and the scan document."""

from __future__ import annotations

import collections

from gpufix import __version__

FORMATS = ("text", "full", "concise", "json", "json-lines", "junit", "github", "gitlab", "pylint", "sarif")
# formats whose stdout is one machine-readable document (nothing else may be printed there)
DOCUMENT_FORMATS = ("json", "json-lines", "junit", "gitlab", "sarif")


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
