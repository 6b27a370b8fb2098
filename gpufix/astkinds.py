"""Tables of Python's own `ast` node classes that the walks share (the analysis's, value flow's
index). A leaf module: it imports nothing of gpufix."""

from __future__ import annotations

import ast


def node_classes() -> list:
    """Every class of `ast` node (ast.AST and all its subclasses)."""
    out, stack = [], [ast.AST]
    while stack:
        cls = stack.pop()
        out.append(cls)
        stack.extend(cls.__subclasses__())
    return out


# Statements that hold no block (ast's grammar): no decorators above them, no statement below.
SIMPLE_STATEMENTS = frozenset(
    getattr(ast, name) for name in (
        "Expr", "Assign", "AugAssign", "AnnAssign", "Return", "Import", "ImportFrom", "Pass", "Break",
        "Continue", "Raise", "Assert", "Delete", "Global", "Nonlocal", "TypeAlias",
    ) if hasattr(ast, name)
)
