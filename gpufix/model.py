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
    """A kind of edit the fixers know. `isolation`: None when edits of this kind combine with any
    other edit in one pass; otherwise the name of a group whose edits must not share a pass with
    another group's (they rebuild the same statements), tried in `pass_order`."""

    name: str
    isolation: Optional[str]
    pass_order: int
    doc: str


EDIT_KINDS: dict = {}


def register_edit_kind(kind: EditKind) -> EditKind:
    EDIT_KINDS[kind.name] = kind
    return kind


for _kind in (
    EditKind("replace-expr", None, 0, "replace the expression at (line, col)-(end_line, end_col) with `code` (the "
             "whole range must match: `\"cuda:\" \"1\"` is one node, its first part another)"),
    EditKind("replace-stmt", None, 0, "replace the simple statement starting at (line, col) with statement `code`"),
    # The header is one scheduled transformation (like LibCST's AddImportsVisitor): edits ask for
    # lines in it or for statements to move into it, and it is built once, at the end of the pass.
    EditKind("insert-header", "header", 0, "make sure the module sets the env lines in `lines` ((name, value) pairs) at the top"),
    EditKind("move-to-header", "header", 0, "move the statement starting at (line, col) into the header"),
    EditKind("insert-before", "insert-before", 1, "insert statement `code` just before the statement starting at (line, col)"),
    EditKind("replace-span", None, 0, "(non-Python files) replace the text from (line, col) to (end_line, end_col)"),
    EditKind("insert-text", None, 0, "(non-Python files) insert `code` at (line, col)"),
):
    register_edit_kind(_kind)


@dataclasses.dataclass(frozen=True)
class Edit:
    """One change, applied by a fixer (gpufix.fixer for Python, gpufix.formats.fix for the other
    files). Positions are 1-based lines and 0-based character columns in the analysed source;
    `kind` names an EditKind (EDIT_KINDS)."""

    kind: str
    line: int = 0
    col: int = 0
    code: str = ""
    lines: tuple = ()
    end_line: int = 0
    end_col: int = 0

    def __post_init__(self):
        if self.kind not in EDIT_KINDS:
            raise ValueError(f"unknown edit kind {self.kind!r} (known: {', '.join(EDIT_KINDS)})")

    @property
    def isolation(self) -> Optional[str]:
        return EDIT_KINDS[self.kind].isolation

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in ("", (), 0) or k == "kind"}

    @classmethod
    def from_json(cls, data: dict) -> "Edit":
        data = dict(data)
        if "lines" in data:
            data["lines"] = tuple(tuple(x) for x in data["lines"])
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class Fix:
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
        return out


@dataclasses.dataclass(frozen=True)
class FileError:
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
