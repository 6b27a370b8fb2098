"""Plain data that flows through the pipeline: findings, fixes, edits, file errors, results."""

from __future__ import annotations

import dataclasses
import enum
from typing import Optional


class Applicability(str, enum.Enum):
    """How far a fix can be trusted (ruff's definition): `safe` keeps the code's meaning and is
    applied by `gpufix apply`; `unsafe` may change it and needs `--unsafe-fixes`."""

    SAFE = "safe"
    UNSAFE = "unsafe"

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class EditKind:
    """A kind of edit the fixers know.

    `isolation`: None when edits of this kind combine with any other edit in one pass; otherwise
    the name of a group: fixes of two different groups never share a pass (they rebuild the same
    statements), the others wait for the next pass (the file is linted again in between).
    `scheduled`: the edit is a request to a transformation that runs once, at the end of the pass,
    over the whole module (the header, like LibCST's AddImportsVisitor), not a change at a place;
    its group goes first in a pass, because the other edits' positions and the ordinal remaps are
    computed for the file as analysed, under the mask the header puts in force."""

    name: str
    isolation: Optional[str]
    doc: str
    scheduled: bool = False


EDIT_KINDS: dict = {}


def register_edit_kind(kind: EditKind) -> EditKind:
    EDIT_KINDS[kind.name] = kind
    return kind


for _kind in (
    # Python (gpufix.fix.python): three generic edits.
    EditKind("replace", None, "replace the node whose source range is exactly (line, col)-(end_line, end_col) with "
             "`content`: an expression when `content` is one (never a name, attribute or call), else the simple statement "
             "(`\"cuda:\" \"1\"` is one node, its first part another with the same start)"),
    EditKind("insert", "insert", "insert statement `content` before the statement starting at (line, col), or after it "
             "when `after` is set (on the same line, after a `;`, when that statement shares its line)"),
    # The header is one scheduled transformation: edits only ask for lines in it or for statements
    # to move into it; it is built once, at the end of the pass (see gpufix.fix.header.HeaderRequest).
    EditKind("ensure-header", "header", "make sure the module sets the env lines in `lines` ((name, value[, form]) "
             "tuples) at the top, after the docstring and `from __future__` imports, binding `os`", scheduled=True),
    EditKind("move-to-header", "header", "move the statement starting at (line, col) into the header", scheduled=True),
    # Other files (gpufix.fix.spans): exact text spans; also every fix resolved to plain text
    # (gpufix.fix.textedits: what an editor and the JSON report receive).
    EditKind("replace-span", None, "replace the text from (line, col) to (end_line, end_col) with `content`"),
    EditKind("insert-text", None, "(non-Python files) insert `content` at (line, col)"),
):
    register_edit_kind(_kind)


@dataclasses.dataclass(frozen=True)
class Edit:
    """One change (ruff's Edit: a range and its new content), the one edit type of gpufix: what the
    rules produce, what the fixers apply (gpufix.fix.python for Python, gpufix.fix.spans for the
    other files), and what an editor or the JSON report receives (gpufix.fix.textedits resolves
    any fix into plain `replace-span` edits: range + content). Positions are 1-based lines and
    0-based character columns, the end exclusive; `kind` names an EditKind (EDIT_KINDS); `cell`,
    in a notebook's resolved edits, is the 1-based index of the cell the positions are in."""

    kind: str
    line: int = 0
    col: int = 0
    content: str = ""
    lines: tuple = ()
    end_line: int = 0
    end_col: int = 0
    after: bool = False  # `insert`: after the anchor statement instead of before it
    cell: Optional[int] = None

    def __post_init__(self):
        if self.kind not in EDIT_KINDS:
            raise ValueError(f"unknown edit kind {self.kind!r} (known: {', '.join(EDIT_KINDS)})")

    @classmethod
    def span(cls, line: int, col: int, end_line: int, end_col: int, content: str, cell: Optional[int] = None) -> "Edit":
        """The text from (line, col) to (end_line, end_col) replaced by `content` (an insertion
        when the range is empty)."""
        return cls("replace-span", line, col, content, end_line=end_line, end_col=end_col, cell=cell)

    @property
    def isolation(self) -> Optional[str]:
        return EDIT_KINDS[self.kind].isolation

    def to_json(self) -> dict:
        """The cache's form: every field that is not its default (from_json restores them)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in ("", (), 0, None) or k == "kind"}

    @classmethod
    def from_json(cls, data: dict) -> "Edit":
        data = dict(data)
        if "lines" in data:
            data["lines"] = tuple(tuple(x) for x in data["lines"])
        return cls(**data)

    def report_json(self) -> dict:
        """A resolved edit as ruff's JSON reports it: 1-based rows and columns, the end exclusive."""
        out = {
            "content": self.content,
            "location": {"row": self.line, "column": self.col + 1},
            "end_location": {"row": self.end_line, "column": self.end_col + 1},
        }
        if self.cell is not None:
            out["cell"] = self.cell
        return out


@dataclasses.dataclass(frozen=True)
class Fix:
    """A fix of one finding: its applicability, title and edits."""

    applicability: Applicability  # given as the enum or its value ("safe" | "unsafe")
    title: str
    edits: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "applicability", Applicability(self.applicability))

    @property
    def isolation(self) -> frozenset:
        """The isolation groups of its edits (empty: it combines with anything)."""
        return frozenset(e.isolation for e in self.edits if e.isolation is not None)

    def to_json(self) -> dict:
        return {"applicability": self.applicability.value, "title": self.title}


@dataclasses.dataclass(frozen=True)
class Finding:
    """One finding as reported: rule, place (1-based line and column), message, optional fix."""

    rule: str
    path: str
    line: int  # 1-based
    column: int  # 1-based, in characters
    end_line: int
    end_column: int
    message: str
    severity: str = "error"
    fix: Optional[Fix] = None
    cell: Optional[int] = None  # notebooks: 1-based index of the cell; line/column are in that cell
    # Other places the finding refers to (GPU105: the framework import the late mask follows):
    # (line, column, end_line, end_column, message, cell), positions as the finding's own.
    related: tuple = ()

    def sort_key(self):
        return (self.path, self.cell or 0, self.line, self.column, self.rule)

    def to_json(self) -> dict:
        out = {
            "rule": self.rule,
            "severity": self.severity,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "message": self.message,
            "fix": self.fix.to_json() if self.fix else None,
        }
        if self.cell is not None:
            out["cell"] = self.cell
        if self.related:
            out["related"] = [
                {"line": r[0], "column": r[1], "end_line": r[2], "end_column": r[3], "message": r[4],
                 **({"cell": r[5]} if r[5] is not None else {})}
                for r in self.related
            ]
        return out


@dataclasses.dataclass(frozen=True)
class FileError:
    """A file gpufix could not judge (unreadable, undecodable, not parseable, ...), as reported."""

    path: str
    kind: str  # read-error | decode-error | binary-file | syntax-error | notebook-error | too-large | fix-error
    message: str
    line: Optional[int] = None
    cell: Optional[int] = None

    def to_json(self) -> dict:
        out = {"path": self.path, "kind": self.kind, "line": self.line, "message": self.message}
        if self.cell is not None:
            out["cell"] = self.cell
        return out


class ReadError(Exception):
    """A file gpufix cannot read (binary, undecodable, too large): carries the FileError to report.
    One error type for every reader (gpufix.source, gpufix.formats.text)."""

    def __init__(self, error: FileError):
        super().__init__(error.message)
        self.error = error
