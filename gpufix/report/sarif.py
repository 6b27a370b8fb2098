"""SARIF 2.1.0 (`--format sarif`), for GitHub code scanning and other SARIF viewers.

One run: `tool.driver` lists every catalogued rule (so `ruleIndex` is stable), each finding is a
result located relative to `%SRCROOT%` (the current directory), file errors are
`toolExecutionNotifications` of the run's invocation. Columns count Unicode code points
(`columnKind: unicodeCodePoints`), end columns are exclusive, as in gpufix's own reports.

Notebook findings (`Finding.cell` set) keep the cell-relative line in the region, as the JSON report
does, and name the cell in the message. A fix becomes a SARIF `fix` with one replacement computed by
applying that finding's edits to the file's text (a libcst parse, about 15 ms, so only for the first
MAX_FIX_REPLACEMENTS fixes of a run). Every fix is also described in the result's properties, which
is all there is for a notebook's fix, one beyond that limit, or one that cannot be computed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from gpufix import __version__

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/gpufix/"
SRCROOT = "%SRCROOT%"
MAX_FIX_REPLACEMENTS = 1000

_LEVELS = {"error": "error", "warning": "warning"}


def _level(severity: str) -> str:
    return _LEVELS.get(severity, "note")


def _artifact(path: str) -> dict:
    if os.path.isabs(path):  # outside the current folder: an absolute file URI, not under %SRCROOT%
        return {"uri": Path(path).as_uri()}
    # quoted from the name's bytes: a name that is not UTF-8 is percent-encoded as it is on disk
    return {"uri": quote(path.replace(os.sep, "/").encode("utf-8", "surrogateescape"), safe="/"), "uriBaseId": SRCROOT}


def _rule(doc) -> dict:
    markdown = doc.markdown()
    return {
        "id": doc.code,
        "name": doc.name,
        "shortDescription": {"text": doc.summary},
        "fullDescription": {"text": " ".join(doc.what_it_does.split())},
        "help": {"text": markdown, "markdown": markdown},
        "defaultConfiguration": {"level": _level(doc.severity), "enabled": bool(doc.default_enabled)},
        "properties": {"fix": doc.fix, "tags": ["gpu", "cuda"]},
    }


class _FixTexts:
    """Each Python file's text, read once, for computing fixes' replacements."""

    def __init__(self):
        self._texts: dict = {}
        self.budget = MAX_FIX_REPLACEMENTS

    def text(self, path: str) -> Optional[str]:
        if path not in self._texts:
            try:
                from gpufix.source import read_source

                self._texts[path] = read_source(path, Path(path).read_bytes()).text
            except Exception:
                self._texts[path] = None
        return self._texts[path]


def _replacement(finding, texts: _FixTexts) -> Optional[dict]:
    """The finding's fix as one SARIF replacement (charOffset/charLength in the file's text), or None."""
    if finding.cell is not None or finding.path.endswith(".ipynb") or not finding.fix.edits or texts.budget <= 0:
        return None
    texts.budget -= 1
    text = texts.text(finding.path)
    if text is None:
        return None
    try:
        if all(e.kind in ("replace-span", "insert-text") for e in finding.fix.edits):
            from gpufix.fix.spans import apply_span_edits  # a non-Python file's exact text edits

            new_text, applied = apply_span_edits(text, finding.fix.edits), True
        else:
            from gpufix.fix.python import apply_edits

            new_text, applied = apply_edits(text, list(finding.fix.edits))
    except Exception:
        return None
    if not applied or new_text == text:
        return None
    prefix = 0
    limit = min(len(text), len(new_text))
    while prefix < limit and text[prefix] == new_text[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and text[-1 - suffix] == new_text[-1 - suffix]:
        suffix += 1
    return {
        "deletedRegion": {"charOffset": prefix, "charLength": len(text) - prefix - suffix},
        "insertedContent": {"text": new_text[prefix:len(new_text) - suffix]},
    }


def _result(f, index: dict, texts: _FixTexts) -> dict:
    physical = {"artifactLocation": _artifact(f.path)}
    if f.cell is None:
        text = f.message
        physical["region"] = {"startLine": f.line, "startColumn": f.column, "endLine": f.end_line, "endColumn": f.end_column}
    else:
        # A notebook's line counts from its cell's top, not the .ipynb file's: no region (it would
        # point at another line of the JSON); the message and properties name the cell.
        from gpufix.report.document import cell_where

        text = f"{cell_where(f)}: {f.message}"
    out = {
        "ruleId": f.rule,
        "level": _level(f.severity),
        "message": {"text": text},
        "locations": [{"physicalLocation": physical}],
    }
    if f.rule in index:
        out["ruleIndex"] = index[f.rule]
    props = {}
    if f.cell is not None:
        props.update(cell=f.cell, line=f.line, column=f.column, endLine=f.end_line, endColumn=f.end_column)
    if f.fix is not None:
        props["fix"] = f.fix.to_json()
        replacement = _replacement(f, texts)
        if replacement is not None:
            out["fixes"] = [{
                "description": {"text": f.fix.title},
                "artifactChanges": [{"artifactLocation": _artifact(f.path), "replacements": [replacement]}],
            }]
    if props:
        out["properties"] = props
    return out


def _notification(e) -> dict:
    location = {"physicalLocation": {"artifactLocation": _artifact(e.path)}}
    if e.line and e.cell is None:
        location["physicalLocation"]["region"] = {"startLine": e.line}
    if e.cell is None:
        text = f"{e.path}: {e.message}"
    else:
        text = f"{e.path}: cell {e.cell}" + (f", line {e.line}" if e.line else "") + f": {e.message}"
    return {
        "level": "error",
        "message": {"text": text},
        "descriptor": {"id": e.kind},
        "locations": [location],
    }


def sarif_document(result) -> dict:
    from gpufix.catalog import load_rule_docs

    docs = load_rule_docs()
    index = {code: i for i, code in enumerate(docs)}
    texts = _FixTexts()
    root = Path.cwd().as_uri()
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "gpufix",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": [_rule(doc) for doc in docs.values()],
            }},
            "invocations": [{
                "executionSuccessful": True,
                "toolExecutionNotifications": [_notification(e) for e in result.errors],
            }],
            "originalUriBaseIds": {SRCROOT: {"uri": root if root.endswith("/") else root + "/"}},
            "columnKind": "unicodeCodePoints",
            "results": [_result(f, index, texts) for f in result.findings],
        }],
    }


def render_sarif(result, stream) -> None:
    from gpufix.report.safe import json_text

    stream.write(json_text(json.dumps(sarif_document(result), indent=2, ensure_ascii=False)) + "\n")
