"""The one-line and CI formats ruff users know: concise, pylint, json-lines, junit, gitlab; and
`--statistics`. Each writes one document (or one object a line) to the stream, nothing else."""

from __future__ import annotations

import collections
import hashlib
import json

from gpufix.discover import native_path
from gpufix.report.safe import for_terminal as _t, for_xml, json_text
from gpufix.report.document import cell_where, is_safe_fix, is_unsafe_fix, summary_lines


def _where(f) -> str:
    # The human one-line formats print native paths (`src\\app.py` on Windows, as ruff does); the
    # machine formats (JSON, SARIF, GitHub, GitLab, JUnit) keep `/` on every platform.
    if f.cell is not None:
        return f"{_t(native_path(f.path))}:cell {f.cell}:{f.line}:{f.column}"
    return f"{_t(native_path(f.path))}:{f.line}:{f.column}"


def _mark(f) -> str:
    if f.fix is None:
        return ""
    return " [*]" if f.fix.applicability == "safe" else " [unsafe fix]"


def render_concise(result, stream, unsafe_fixes: bool = False) -> None:
    """`path:line:col: CODE message [*]`, a line per finding, then one summary line (as ruff)."""
    for f in result.findings:
        stream.write(f"{_where(f)}: {f.rule} {_t(f.message)}{_mark(f)}\n")
    for e in result.errors:
        stream.write(f"{_t(native_path(e.path))}:{e.line or 1}:1: error ({e.kind}) {_t(e.message)}\n")
    for line in summary_lines(result, unsafe_fixes=unsafe_fixes):
        stream.write(line + "\n")


def render_pylint(result, stream) -> None:
    """`path:line: [CODE] message`; a notebook finding's line is its cell's (`path:cell 2:3:`, as
    the concise format writes it)."""
    for f in result.findings:
        where = f"{_t(native_path(f.path))}:cell {f.cell}:{f.line}" if f.cell is not None else f"{_t(native_path(f.path))}:{f.line}"
        stream.write(f"{where}: [{f.rule}] {_t(f.message)}\n")
    for e in result.errors:
        stream.write(f"{_t(native_path(e.path))}:{e.line or 1}: [E] {_t(e.message)}\n")


def render_json_lines(result, stream) -> None:
    from gpufix.fix.textedits import add_fix_edits

    docs = [f.to_json() for f in result.findings]
    add_fix_edits(docs, result)
    for d in docs:
        stream.write(json_text(json.dumps(d, ensure_ascii=False)) + "\n")
    for e in result.errors:
        stream.write(json_text(json.dumps({"error": e.to_json()}, ensure_ascii=False)) + "\n")


def render_junit(result, stream) -> None:
    """JUnit XML as ruff writes it: a testsuite per file, a failing testcase per finding."""
    import xml.etree.ElementTree as ET

    by_file = collections.OrderedDict()
    for f in result.findings:
        by_file.setdefault(f.path, ([], []))[0].append(f)
    for e in result.errors:
        by_file.setdefault(e.path, ([], []))[1].append(e)
    total = len(result.findings) + len(result.errors)
    root = ET.Element("testsuites", name="gpufix", tests=str(max(total, 1)), failures=str(len(result.findings)),
                      errors=str(len(result.errors)))
    if not total:
        suite = ET.SubElement(root, "testsuite", name="gpufix", tests="1", failures="0", errors="0")
        ET.SubElement(suite, "testcase", name="No findings")
    for path, (findings, errors) in by_file.items():
        suite = ET.SubElement(root, "testsuite", name=path, tests=str(len(findings) + len(errors)),
                              failures=str(len(findings)), errors=str(len(errors)))
        for f in findings:
            if f.cell is not None:
                # the line counts from the cell's top, not the file's: no `line` attribute
                case = ET.SubElement(suite, "testcase", name=f"org.gpufix.{f.rule}", classname=path)
                where = cell_where(f)
            else:
                case = ET.SubElement(suite, "testcase", name=f"org.gpufix.{f.rule}", classname=path,
                                     line=str(f.line), column=str(f.column))
                where = f"line {f.line}, col {f.column}"
            fail = ET.SubElement(case, "failure", message=f.message)
            fail.text = f"{where}, {f.message}"
        for e in errors:
            case = ET.SubElement(suite, "testcase", name=f"org.gpufix.{e.kind}", classname=path)
            err = ET.SubElement(case, "error", message=e.message)
            err.text = e.message
    for el in root.iter():  # control characters (which XML 1.0 cannot hold) and non-UTF-8 bytes escaped
        for k, v in el.attrib.items():
            el.set(k, for_xml(_t(v)))
        if el.text:
            el.text = for_xml(_t(el.text))
    stream.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    stream.write(ET.tostring(root, encoding="unicode"))
    stream.write("\n")


def render_gitlab(result, stream) -> None:
    """GitLab Code Quality (a Code Climate JSON array). The fingerprint hashes the rule, path and
    message, and counts repeats, so it stays stable when unrelated lines move."""
    seen = collections.Counter()
    out = []
    for f in result.findings:
        base = f"{f.rule}\0{f.path}\0{f.message}"
        seen[base] += 1
        fingerprint = hashlib.sha256(f"{base}\0{seen[base]}".encode("utf-8", "surrogateescape")).hexdigest()[:32]
        out.append({
            "description": f"{f.rule}: {f.message}",
            "check_name": f.rule,
            "fingerprint": fingerprint,
            "severity": "major" if f.severity == "error" else "minor",
            "location": {"path": f.path, "lines": {"begin": f.line, "end": f.end_line}},
        })
    for e in result.errors:
        fingerprint = hashlib.sha256(f"{e.kind}\0{e.path}\0{e.message}".encode("utf-8", "surrogateescape")).hexdigest()[:32]
        out.append({
            "description": f"{e.kind}: {e.message}",
            "check_name": e.kind,
            "fingerprint": fingerprint,
            "severity": "blocker",
            "location": {"path": e.path, "lines": {"begin": e.line or 1, "end": e.line or 1}},
        })
    stream.write(json_text(json.dumps(out, indent=2, ensure_ascii=False)) + "\n")


def statistics(result) -> list:
    """A row per rule, most frequent first: its count and how many of them `gpufix apply` fixes
    (`fixable` is true when all of them are, as in ruff's JSON)."""
    from gpufix.catalog import load_rule_docs

    docs = load_rule_docs()
    counts = collections.Counter(f.rule for f in result.findings)
    fixable = collections.Counter(f.rule for f in result.findings if is_safe_fix(f))
    unsafe = collections.Counter(f.rule for f in result.findings if is_unsafe_fix(f))
    rows = []
    for code, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        rows.append({"code": code, "name": docs[code].name if code in docs else code, "count": count,
                     "fixable": fixable[code] == count, "fixable_count": fixable[code],
                     "unsafe_fixable_count": unsafe[code]})
    return rows


def _marker(row) -> str:
    """ruff's: `[*]` every finding of the rule has a safe fix, `[-]` some have, `[ ]` none."""
    if row["fixable"]:
        return "[*]"
    return "[-]" if row["fixable_count"] else "[ ]"


def render_statistics(result, stream, fmt: str) -> None:
    """`--statistics`: a count per rule, most frequent first (ruff's layout; JSON in json formats),
    then the totals every other format prints."""
    rows = statistics(result)
    if fmt in ("json", "json-lines", "sarif", "gitlab"):
        json.dump(rows, stream, indent=2)
        stream.write("\n")
        return
    width = max((len(str(r["count"])) for r in rows), default=1)
    for r in rows:
        stream.write(f"{r['count']:>{width}}\t{r['code']}\t{_marker(r)} {r['name']}\n")
    if result.errors:
        stream.write(f"{len(result.errors):>{width}}\terror\t    file error(s)\n")
    for line in summary_lines(result):
        stream.write(line + "\n")
