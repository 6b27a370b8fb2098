"""What the language server computes, without any LSP type: a document's findings from its text in
memory (the engine's `scan --stdin-filename` path: the file's own policy and project index, the same
rules, suppressions and project rules), the text edits of its fixes, and the edit that adds a
suppression comment. Positions are gpufix's (gpufix.fix.textedits): 1-based lines, 0-based columns in
code points, notebook cells by their 1-based index in the notebook's cell list.
"""

from __future__ import annotations

import codecs
import dataclasses
import io
import json
import os
import re
import threading
import tokenize
from pathlib import Path
from typing import Optional

from gpufix.model import Edit, Finding
from gpufix.source import SourceFile, read_source, split_lines
from gpufix.fix.textedits import fix_all_raw, fix_edits, raw_edits

CONFIG_NAMES = ("pyproject.toml", "gpufix.toml")


@dataclasses.dataclass
class Analysis:
    """One version of one document, judged."""

    path: str  # absolute
    version: Optional[int]
    src: Optional[SourceFile]
    policy: object
    findings: list
    errors: list
    session: object = None  # gpufix.session.Session of `policy` (its catalogue, rule filter)


def encode_document(text: str) -> bytes:
    """The bytes a file with this text holds: UTF-8, unless a PEP 263 cookie names another encoding
    that can hold it (the engine decodes by the cookie, as Python does)."""
    raw = text.encode("utf-8", "surrogatepass")
    if "coding" not in text[:400]:
        return raw
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    except SyntaxError:
        return raw
    if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig"):
        return raw
    try:
        return text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return raw


def notebook_bytes(cells) -> bytes:
    """An nbformat-4 notebook of `cells` ((kind, text) with kind "code" or "markdown"), in order: the
    engine reads it as it reads an .ipynb file, so cell indexes are the editor's cell positions."""
    nb = {
        "cells": [{"cell_type": kind, "metadata": {}, "source": text, **({"outputs": [], "execution_count": None} if kind == "code" else {})}
                  for kind, text in cells],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


class Analyzer:
    """The engine with the state the server keeps between documents: the policy resolver (rebuilt
    when a config file changes) and each project's index. Not thread-safe: the server calls it from
    its one analysis thread."""

    def __init__(self, overrides: Optional[dict] = None):
        self.overrides = dict(overrides or {})
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        """Forget every policy and project index (a pyproject.toml or gpufix.toml changed)."""
        from gpufix.config import PolicyResolver

        self.resolver = PolicyResolver(None, self.overrides)
        self._prepared: dict = {}

    def forget_projects(self) -> None:
        """A file was saved: the project's import graph may have changed."""
        self._prepared.clear()

    def policy_for(self, abs_path: str):
        """The policy of the nearest config above the file (or above the folders it will be in,
        for a new file in folders not made yet), never the server's working directory's."""
        folder = os.path.dirname(abs_path)
        while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
            folder = os.path.dirname(folder)
        return self.resolver.for_dir(folder)

    def _session(self, policy, abs_path: str):
        """The gpufix.session.Session of the file: the policy with the project index that
        `gpufix scan FILE` would build for it, its catalogue and rule filter, built once per
        project file (again after a save)."""
        from gpufix.engine import prepare_policy
        from gpufix.session import Session

        if not os.path.isfile(abs_path):
            # a new file the editor has not saved: the project index knows nothing of it, so it is
            # judged alone, as `scan --stdin-filename` judges a text
            return Session.of(policy)
        key = (id(policy), abs_path)
        hit = self._prepared.get(key)
        if hit is None or hit[0] is not policy:
            try:
                prepared = prepare_policy([abs_path], policy, [(abs_path, abs_path)], use_cache=True)
            except Exception:  # noqa: BLE001 - a project that cannot be indexed is judged file by file
                prepared = policy
            hit = self._prepared[key] = (policy, Session.of(prepared))
        return hit[1]

    def _project_candidates(self, policy, res, abs_path: str) -> list:
        from gpufix.engine import _project_candidates

        key = ("candidates", id(policy), abs_path)
        hit = self._prepared.get(key)
        if hit is None or hit[0] is not policy:
            # the file itself is judged by its text in the editor, not its copy on disk
            others = [o for o in _project_candidates(policy, [res], self.resolver, [abs_path])
                      if os.path.abspath(o.path) != abs_path]
            hit = self._prepared[key] = (policy, others)
        return hit[1]

    def analyse(self, raw: bytes, abs_path: str, version: Optional[int] = None) -> Analysis:
        """The findings `gpufix scan --stdin-filename PATH` reports for this text (project rules
        included), with the SourceFile they refer to. A bad config is one error, not a crash."""
        from gpufix.config import ConfigError
        from gpufix.engine import gather_pairs, lint_bytes
        from gpufix.model import FileError
        from gpufix.source import ReadError

        with self._lock:
            try:
                policy = self.policy_for(abs_path)
            except ConfigError as exc:
                return Analysis(abs_path, version, None, None, [], [FileError(abs_path, "config-error", str(exc))])
            from gpufix.discover import _force_excluded

            if _force_excluded(Path(abs_path), policy):
                # the config's `exclude` (or a folder gpufix always skips, .venv, build, ...): as
                # the pre-commit hooks (--force-exclude) and `ruff server`, no findings there
                return Analysis(abs_path, version, None, None, [], [])
            session = self._session(policy, abs_path)
            prepared = session.policy
            res = lint_bytes(raw, abs_path, abs_path, prepared, session.use_prefilter, session.catalog)
            # The project rules (GPU103 without a policy) judge this file's candidates with the
            # project's other files', read once per project (again after a save), not per keystroke.
            others = self._project_candidates(policy, res, abs_path) if res.candidates else []
            result = gather_pairs(policy, [(policy, res)] + [(policy, o) for o in others])
            try:
                src = read_source(abs_path, raw)
            except ReadError:
                src = None
            findings = [f for f in result.findings if f.path == abs_path]
            return Analysis(abs_path, version, src, prepared, findings, list(result.errors), session)


# -- actions -------------------------------------------------------------------------------------
def quick_fix_edits(analysis: Analysis, finding: Finding) -> Optional[list]:
    if analysis.src is None:
        return None
    return fix_edits(analysis.src, finding)


def fix_all_edits(analysis: Analysis, unsafe: bool = False) -> list:
    """Every fix `gpufix apply` makes to this text (all passes), as text edits; [] when none or
    when the file cannot be fixed safely."""
    from gpufix.fix import FixError
    from gpufix.fix.textedits import CannotApply

    if analysis.src is None or analysis.policy is None or not any(f.fix for f in analysis.findings):
        return []
    try:
        new_raw = fix_all_raw(analysis.src, analysis.policy, analysis.path, unsafe=unsafe, session=analysis.session)
    except (FixError, CannotApply):
        return []
    return raw_edits(analysis.src, new_raw)


_IGNORE_CODES_RE = re.compile(r"(gpufix\s*:\s*ignore\[)([^\]]*)(\])", re.I)
# The kinds whose comments start with `#` (gpufix.formats.text.hash_comment_suppressions); JSON has
# no comments, so its findings get no suppression action.
HASH_COMMENT_KINDS = ("python", "shell", "dockerfile", "dotenv", "yaml", "toml")


def _python_string_lines(text: str) -> set:
    """Lines whose end lies inside a multi-line string token (a comment cannot go there)."""
    out: set = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                out.update(range(tok.start[0], tok.end[0]))
            elif getattr(tokenize, "FSTRING_MIDDLE", None) == tok.type and tok.end[0] > tok.start[0]:
                out.update(range(tok.start[0], tok.end[0]))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass
    return out


def _cell_text(src: SourceFile, cell: int) -> Optional[str]:
    nb = json.loads(src.raw.decode("utf-8-sig"))
    try:
        source = nb["cells"][cell - 1]["source"]
    except (IndexError, KeyError, TypeError):
        return None
    return "".join(source) if isinstance(source, list) else source


def ignore_edit(analysis: Analysis, finding: Finding) -> Optional[Edit]:
    """The edit that adds `# gpufix: ignore[CODE]` to the finding's line (or adds CODE to the
    line's existing ignore list), in the comment syntax of the file's kind; None where no comment
    can go (JSON, a line that ends inside a string or continues with a backslash)."""
    src = analysis.src
    if src is None:
        return None
    kind = "python" if src.is_notebook else src.kind
    if kind not in HASH_COMMENT_KINDS:
        return None
    text = _cell_text(src, finding.cell) if (src.is_notebook and finding.cell) else src.text
    if text is None:
        return None
    lines = split_lines(text)
    candidates = [finding.line] if finding.end_line == finding.line else [finding.line, finding.end_line]
    blocked = _python_string_lines(text) if kind == "python" else set()
    for line_no in candidates:
        if not 1 <= line_no <= len(lines) or line_no in blocked:
            continue
        line = lines[line_no - 1]
        if kind != "python" and line.rstrip().endswith("\\"):
            continue  # a continued shell / Dockerfile line: a comment would end the command
        m = _IGNORE_CODES_RE.search(line)
        if m and (kind == "python" or "#" in line[:m.start()]):
            codes = [c.strip() for c in m.group(2).split(",") if c.strip()]
            if finding.rule in codes:
                return None
            insert = (", " if codes else "") + finding.rule
            return Edit.span(line_no, m.end(2), line_no, m.end(2), insert, finding.cell)
        stripped = line.rstrip()
        comment = f"{'  ' if stripped else ''}# gpufix: ignore[{finding.rule}]"
        return Edit.span(line_no, len(stripped), line_no, len(line), comment, finding.cell)
    return None
