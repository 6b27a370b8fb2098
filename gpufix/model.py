"""Plain data that flows through the pipeline: findings, fixes, edits, file errors, results."""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Edit:
    """One structural change, applied by the libcst fixer (gpufix.fixer).

    Positions are 1-based lines and 0-based character columns in the analysed source.
    kind:
      replace-expr   replace the expression at (line, col)-(end_line, end_col) with `code` (the whole
                     range must match: `"cuda:" "1"` is one node, its first part another)
      insert-header  make sure the module sets the env lines in `lines` ((name, value) pairs) at the top
      insert-before  insert statement `code` just before the statement starting at (line, col)
      move-to-header move the statement starting at (line, col) to the header position
      replace-stmt   replace the simple statement starting at (line, col) with statement `code`
      replace-span   (non-Python files) replace the text from (line, col) to (end_line, end_col)
      insert-text    (non-Python files) insert `code` at (line, col)
    """

    kind: str
    line: int = 0
    col: int = 0
    code: str = ""
    lines: tuple = ()
    end_line: int = 0
    end_col: int = 0

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
    applicability: str  # "safe" | "unsafe"
    title: str
    edits: tuple = ()

    def to_json(self) -> dict:
        return {"applicability": self.applicability, "title": self.title}


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
