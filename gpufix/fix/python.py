"""Apply a set of `Edit`s to Python source through libcst.

Three generic edits (gpufix.model.EDIT_KINDS): `replace` a node at its exact source range (an
expression or a simple statement), `insert` statements before or after an anchor statement, and
requests to the header (`ensure-header` lines, `move-to-header` statements), a transformation
scheduled once at the end of the module, as LibCST's AddImportsVisitor. Formatting and comments
outside the changed statements are kept: libcst round-trips the rest of the module byte for byte.
The one exception to libcst: a pass that only adds header lines to a plain module top is placed as
text (gpufix.fix.header), tested to write exactly what the transformation writes.
"""

from __future__ import annotations

import dataclasses

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from gpufix.facts import MASK_VAR, ORDER_VAR
from gpufix.fix import FixError
from gpufix.fix.header import (
    CELL_MARKER_PREFIX,
    ENV_ORDER,
    HeaderRequest,
    after_leading,
    binds_os,
    header_code,
    in_order,
    place_header,
)


def _is_docstring(stmt) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )


def _is_future(stmt) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and all(isinstance(s, cst.ImportFrom) and isinstance(s.module, cst.Name) and s.module.value == "__future__" for s in stmt.body)
    )


def _split_future_line(body: list) -> list:
    """`from __future__ import annotations; import torch` on one line: the `__future__` part stays a
    line of its own, so that the header can go between it and the rest (a `__future__` import must
    stay first; the rest must come after the header)."""
    k = after_leading(body, _is_docstring, _is_future)
    if k >= len(body) or not isinstance(body[k], cst.SimpleStatementLine):
        return body
    line = body[k]
    n = 0
    while n < len(line.body) and _is_future(cst.SimpleStatementLine(body=[line.body[n]])):
        n += 1
    if n == 0 or n == len(line.body):
        return body
    future = line.with_changes(body=[*line.body[: n - 1], line.body[n - 1].with_changes(semicolon=cst.MaybeSentinel.DEFAULT)])
    rest = line.with_changes(body=list(line.body[n:]), leading_lines=[])
    return body[:k] + [future, rest] + body[k + 1 :]


def _dotted(node) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    return ""


def _binds_os(stmt) -> bool:
    """gpufix.fix.header.binds_os for a libcst line."""
    if not isinstance(stmt, cst.SimpleStatementLine):
        return False
    return binds_os([(_dotted(a.name), a.asname) for a in small.names] if isinstance(small, cst.Import) else None
                    for small in stmt.body)


def _is_plain_import_os(stmt) -> bool:
    return (
        _binds_os(stmt)
        and len(stmt.body) == 1
        and len(stmt.body[0].names) == 1
        and not any(line.comment for line in stmt.leading_lines)
        and stmt.trailing_whitespace.comment is None
    )


class _TopLine:
    """A module-level libcst line as gpufix.fix.header.place_header reads it."""

    __slots__ = ("stmt",)

    def __init__(self, stmt):
        self.stmt = stmt

    docstring = property(lambda self: _is_docstring(self.stmt))
    future = property(lambda self: _is_future(self.stmt))
    binds_os = property(lambda self: _binds_os(self.stmt))
    movable_os = property(lambda self: _is_plain_import_os(self.stmt))
    comment_above = property(lambda self: any(line.comment for line in self.stmt.leading_lines))


def _header_stmt(line: tuple):
    """The statement for one header line: (var, value) or (var, value, "keep-cpu")."""
    return cst.parse_statement(header_code(line))


def _cpu_guarded(stmt):
    """The mask line inside the header form `if os.environ.get(MASK) not in (...): <mask line>`."""
    if (
        isinstance(stmt, cst.If) and stmt.orelse is None and isinstance(stmt.body, cst.IndentedBlock)
        and len(stmt.body.body) == 1 and isinstance(stmt.test, cst.Comparison)
        and all(t in cst.Module([]).code_for_node(stmt.test) for t in (MASK_VAR, ".get(", "not in"))
    ):
        return stmt.body.body[0]
    return None


def _env_var_of(stmt):
    """'CUDA_VISIBLE_DEVICES' / 'CUDA_DEVICE_ORDER' for `<x>.environ["VAR"] = ...` lines, else None."""
    inner = _cpu_guarded(stmt)
    if inner is not None:
        return _env_var_of(inner)
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return None
    small = stmt.body[0]
    if not isinstance(small, cst.Assign) or len(small.targets) != 1:
        return None
    target = small.targets[0].target
    if not isinstance(target, cst.Subscript) or len(target.slice) != 1:
        return None
    value = target.value
    if not (isinstance(value, cst.Attribute) and value.attr.value == "environ") and not (
        isinstance(value, cst.Name) and value.value == "environ"
    ):
        return None
    index = target.slice[0].slice
    if isinstance(index, cst.Index) and isinstance(index.value, cst.SimpleString):
        key = index.value.evaluated_value
        if key in ENV_ORDER:
            return key
    return None


def _via_os(small):
    """`<x>.environ[...] = v` / `environ[...] = v` as `os.environ[...] = v`."""
    if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Subscript):
        target = small.targets[0].target
        environ = cst.Attribute(value=cst.Name("os"), attr=cst.Name("environ"))
        return small.with_changes(targets=[small.targets[0].with_changes(target=target.with_changes(value=environ))])
    return small


def _stays_in_place(comment: str) -> bool:
    """A notebook cell marker, or an IPython magic masked as a comment by gpufix.source."""
    from gpufix.source import _is_magic

    return CELL_MARKER_PREFIX in comment or _is_magic(comment[1:])


def _uses_os(stmt) -> bool:
    """Whether this `<x>.environ[...] = ...` line writes through the name `os`."""
    inner = _cpu_guarded(stmt)
    if inner is not None:
        return True  # the guard reads os.environ
    target = stmt.body[0].targets[0].target
    return isinstance(target.value, cst.Attribute) and isinstance(target.value.value, cst.Name) and target.value.value.value == "os"


def _blank_first(stmt, blank: bool):
    """`stmt` with exactly one blank line before its comments (blank=True) or none."""
    lines = list(stmt.leading_lines)
    while lines and lines[0].comment is None:
        lines.pop(0)
    if blank:
        lines.insert(0, cst.EmptyLine())
    return stmt.with_changes(leading_lines=lines)


# -- the edits of one pass, collected ------------------------------------------------------------
@dataclasses.dataclass
class _Plan:
    # (line, col, end_line, end_col) -> (code, code is an expression); (line, col, None, None) when
    # an edit gives no end
    replace: dict = dataclasses.field(default_factory=dict)
    insert_before: dict = dataclasses.field(default_factory=dict)  # (line, col) -> [statement code]
    insert_after: dict = dataclasses.field(default_factory=dict)
    header: HeaderRequest = dataclasses.field(default_factory=HeaderRequest)

    @property
    def inserts(self) -> bool:
        return bool(self.insert_before or self.insert_after)


def _is_expression(code: str) -> bool:
    try:
        cst.parse_expression(code)
    except Exception:  # not an expression: a statement (or nothing libcst reads, found when applied)
        return False
    return True


def _plan_replace(plan: _Plan, e) -> None:
    end = (e.end_line, e.end_col) if e.end_line else (None, None)
    plan.replace.setdefault((e.line, e.col, *end), (e.content, _is_expression(e.content)))


def _plan_insert(plan: _Plan, e) -> None:
    codes = (plan.insert_after if e.after else plan.insert_before).setdefault((e.line, e.col), [])
    if e.content not in codes:
        codes.append(e.content)


def _plan_header_lines(plan: _Plan, e) -> None:
    plan.header.want(e.lines)


def _plan_move(plan: _Plan, e) -> None:
    plan.header.moves.add((e.line, e.col))


# Edit kind (gpufix.model.EDIT_KINDS) -> how it enters the pass's plan. Three generic edits: a node
# replaced at its source range, statements inserted at an anchor, requests to the header.
PLANNERS = {
    "replace": _plan_replace,
    "insert": _plan_insert,
    "ensure-header": _plan_header_lines,
    "move-to-header": _plan_move,
}


def plan_edits(edits) -> _Plan:
    plan = _Plan()
    for e in edits:
        planner = PLANNERS.get(e.kind)
        if planner is None:
            raise FixError(f"the Python fixer cannot apply a {e.kind!r} edit")
        planner(plan, e)
    return plan


# Never replaced by an expression edit: a fix rewrites values, and a name, attribute or call that
# starts where a value does is not the value.
_NOT_REPLACED = (cst.Name, cst.Attribute, cst.Call)


class _Transformer(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, plan: _Plan):
        super().__init__()
        self.plan = plan
        self.replace = plan.replace
        self.insert_before = plan.insert_before
        self.insert_after = plan.insert_after
        self.move = plan.header.moves
        self.header_lines = plan.header.lines
        self.moved = []
        self.applied = 0

    def _start(self, node):
        pos = self.get_metadata(PositionProvider, node)
        return pos.start.line, pos.start.column

    # -- a node at a range -----------------------------------------------------------------------
    def on_leave(self, original, updated):
        # Any node whose exact range an edit names: an expression (a string, an implicit
        # concatenation, an f-string, a number) when the new code is an expression, else a simple
        # statement. Matching the end too keeps `"cuda:" "1"` (one value) apart from its first
        # part `"cuda:"` (same start).
        if self.replace and isinstance(original, (cst.BaseExpression, cst.BaseSmallStatement)):
            pos = self.get_metadata(PositionProvider, original, None)
            if pos is not None:
                full = (pos.start.line, pos.start.column, pos.end.line, pos.end.column)
                short = (pos.start.line, pos.start.column, None, None)
                entry = self.replace.get(full) or self.replace.get(short)
                if entry is not None:
                    code, is_expr = entry
                    new = None
                    if is_expr and isinstance(original, cst.BaseExpression) and not isinstance(original, _NOT_REPLACED):
                        new = cst.parse_expression(code)
                        if hasattr(updated, "lpar") and hasattr(new, "lpar"):
                            new = new.with_changes(lpar=updated.lpar, rpar=updated.rpar)
                    elif not is_expr and isinstance(original, cst.BaseSmallStatement):
                        new = cst.parse_statement(code).body[0].with_changes(semicolon=updated.semicolon)
                    if new is not None:
                        self.applied += 1
                        self.replace.pop(full, None)
                        self.replace.pop(short, None)
                        return new
        return super().on_leave(original, updated)

    # -- statements at an anchor -----------------------------------------------------------------
    def _inline(self, code: str):
        return cst.parse_statement(code).body[0].with_changes(semicolon=cst.Semicolon(whitespace_after=cst.SimpleWhitespace(" ")))

    def leave_SimpleStatementLine(self, original, updated):
        if not self.plan.inserts:
            return updated
        body = []
        changed = False
        last = len(original.body) - 1
        for i, (small, new) in enumerate(zip(original.body, updated.body)):
            start = self._start(small)
            if i > 0:
                # An insertion before a statement that is not the first on its line goes on that
                # line, right before it: `from os import environ; environ[...] = ...` must keep
                # the import first.
                for code in self.insert_before.get(start, []):
                    body.append(self._inline(code))
                    changed = True
                    self.applied += 1
            body.append(new)
            if i < last:
                # after a statement that is not the last on its line: on that line, right after it
                for code in self.insert_after.get(start, []):
                    body.append(self._inline(code))
                    changed = True
                    self.applied += 1
        return updated.with_changes(body=body) if changed else updated

    def _after_anchor(self, stmt):
        """The anchor an `after` insertion names for this statement of a body: the last simple
        statement of its line, or the compound statement itself."""
        if isinstance(stmt, cst.SimpleStatementLine):
            return self._start(stmt.body[-1])
        return self._start(stmt)

    def _rebuild(self, original_body, updated_body, module_level: bool):
        out = []
        pending = []  # leading lines that must stay where a moved statement was (notebook cell markers)
        for orig, upd in zip(original_body, updated_body):
            if pending:
                upd = upd.with_changes(leading_lines=pending + list(upd.leading_lines))
                pending = []
            for code in self.insert_before.get(self._start(orig), []):
                new = cst.parse_statement(code)
                out.append(new.with_changes(leading_lines=upd.leading_lines))
                upd = upd.with_changes(leading_lines=[])
                self.applied += 1
            if module_level and isinstance(orig, cst.SimpleStatementLine) and any(
                self._start(small) in self.move for small in orig.body
            ):
                # Only the targeted statements move: `import torch; os.environ[...] = "1"` keeps
                # `import torch` where it is. A moved write goes through `os.environ` (the header
                # binds `os`), whatever name (`o`, `environ`) it used where it was.
                keep = [u for o, u in zip(orig.body, upd.body) if self._start(o) not in self.move]
                moving = [_via_os(u) for o, u in zip(orig.body, upd.body) if self._start(o) in self.move]
                self.applied += len(moving)
                lead = []
                if keep:
                    keep[-1] = keep[-1].with_changes(semicolon=cst.MaybeSentinel.DEFAULT)
                    out.append(upd.with_changes(body=keep))
                else:
                    lines = list(upd.leading_lines)
                    # What stays behind: everything up to the last cell marker or masked notebook
                    # magic (a magic is a statement of its cell, not a comment about the moved line).
                    cut = max((i + 1 for i, ln in enumerate(lines) if ln.comment and _stays_in_place(ln.comment.value)), default=0)
                    pending = lines[:cut]
                    lead = lines[cut:]
                for n, small in enumerate(moving):
                    stmt = cst.SimpleStatementLine(body=[small.with_changes(semicolon=cst.MaybeSentinel.DEFAULT)], leading_lines=lead if n == 0 else [])
                    if not keep and n == len(moving) - 1:
                        stmt = stmt.with_changes(trailing_whitespace=upd.trailing_whitespace)
                    self.moved.append(stmt)
                continue
            out.append(upd)
            for code in self.insert_after.get(self._after_anchor(orig), []):
                out.append(cst.parse_statement(code))
                self.applied += 1
        self.footer_extra = pending
        return out

    def leave_IndentedBlock(self, original, updated):
        if not self.plan.inserts:
            return updated
        return updated.with_changes(body=self._rebuild(original.body, updated.body, False))

    def leave_Module(self, original, updated):
        self.footer_extra = []
        body = self._rebuild(original.body, updated.body, True)
        footer = list(self.footer_extra) + list(updated.footer)
        changes = {}
        if self.moved or self.header_lines:
            body = self._insert_header(_split_future_line(body))
            if not original.body and body:
                # An empty module (or one of comments only) whose last line gpufix writes: that
                # line ends with a newline, as every line gpufix writes does (ruff W292).
                changes["has_trailing_newline"] = True
        return updated.with_changes(body=body, footer=footer, **changes)

    def _insert_header(self, body):
        k = after_leading(body, _is_docstring, _is_future)
        moved_vars = {_env_var_of(s) for s in self.moved}
        present = {_env_var_of(s) for s in body} | moved_vars
        new_lines = in_order(line for line in self.header_lines if line[0] not in present)
        self.applied += len(new_lines)
        env_stmts = [_header_stmt(line) for line in new_lines]
        block = [_blank_first(s, False) for s in self.moved] + env_stmts
        block.sort(key=lambda s: ENV_ORDER.get(_env_var_of(s), 1))

        i = k
        while i < len(body) and _binds_os(body[i]):
            i += 1
        e = next((n for n, stmt in enumerate(body) if _env_var_of(stmt)), None)
        if e is not None and e >= k and _uses_os(body[e]) and not any(_binds_os(stmt) for stmt in body[:e]):
            # A module-level mask line that writes `os.environ` with no `import os` above it (a
            # NameError when run, and no mask setting for the linter): import os right above it.
            os_stmt = cst.parse_statement("import os").with_changes(leading_lines=body[e].leading_lines)
            body = body[:e] + [os_stmt, body[e].with_changes(leading_lines=[])] + body[e + 1 :]
            if e == i:
                i += 1
            self.applied += 1
        if not block:
            return body

        # An existing mask block at the top of the module (before anything but `import os`) is
        # completed in place: the order line goes before it, the mask line after it.
        if i < len(body) and i > k and _env_var_of(body[i]):
            j = i
            while j + 1 < len(body) and _env_var_of(body[j + 1]):
                j += 1
            before = [s for s in block if _env_var_of(s) == ORDER_VAR]
            after = [s for s in block if _env_var_of(s) != ORDER_VAR]
            if before:
                # The block's leading lines go first; the moved line keeps its own comments.
                own = [ln for ln in before[0].leading_lines if ln.comment is not None]
                before[0] = before[0].with_changes(leading_lines=list(body[i].leading_lines) + own)
                body[i] = body[i].with_changes(leading_lines=[])
            return body[:i] + before + body[i : j + 1] + after + body[j + 1 :]

        block[0] = _blank_first(block[0], True)
        place = place_header([_TopLine(stmt) for stmt in body])
        head, rest = body[:place.head], body[place.head:]
        if place.after_os:
            os_stmt, rest = rest[0], rest[1:]
        else:
            if place.moved_os is not None:
                os_stmt = body[place.moved_os]
                rest = body[place.head:place.moved_os] + body[place.moved_os + 1:]
            else:
                os_stmt = cst.parse_statement("import os")
            if place.comments_lead:
                # Comments above the first statement lead the file: the header goes after them.
                os_stmt = os_stmt.with_changes(leading_lines=rest[0].leading_lines)
                rest[0] = rest[0].with_changes(leading_lines=[])
            else:
                os_stmt = _blank_first(os_stmt, bool(head))
        if rest and not (rest[0].leading_lines and rest[0].leading_lines[0].comment is None):
            rest[0] = _blank_first(rest[0], True)
        return head + [os_stmt] + block + rest


def apply_edits(text: str, edits) -> tuple:
    """(new_text, number of edits applied). Raises FixError when libcst cannot parse the source.

    A pass whose only edits are header lines (most files `apply` changes) is placed as text at the
    anchor `ast` gives, when the module's top is plain enough for that to be exactly what the libcst
    transformation writes (gpufix.fix.header); anything else goes through libcst."""
    edits = list(edits)
    plan = plan_edits(edits)  # unknown kinds fail here, before any parse
    if plan.header.lines and not plan.header.moves and not plan.replace and not plan.inserts:
        from gpufix.fix.header import header_by_text

        done = header_by_text(text, plan.header.lines)
        if done is not None:
            return done
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError as exc:
        raise FixError(f"libcst cannot parse the file (line {exc.raw_line}): {exc.message}") from None
    except Exception as exc:  # libcst raises a few other errors on odd input
        raise FixError(f"libcst cannot parse the file: {exc}") from None
    if "\x0c" in text and module.code != text:
        # libcst drops form feeds at the start of a line: writing its output would change lines
        # that no fix targets (and its columns no longer match the analysis').
        raise FixError("the file has form feed characters that libcst does not keep; file left unchanged")
    try:
        return _transform(module, edits)
    except RecursionError:
        pass
    # Deeply nested code (libcst's visitors recurse once per nesting level): retry once on a
    # thread with a large stack and a higher recursion limit, else give up on this file cleanly.
    try:
        return _on_big_stack(_transform, module, edits)
    except RecursionError:
        raise FixError("expressions nested too deeply for libcst; file left unchanged") from None


def apply_edits_cst(text: str, edits) -> tuple:
    """apply_edits, always through libcst (the reference the text placement of the header is
    tested against)."""
    module = cst.parse_module(text)
    return _transform(module, list(edits))


def _transform(module, edits) -> tuple:
    transformer = _Transformer(plan_edits(edits))  # a fresh plan: a retry must not see a used one
    new_module = MetadataWrapper(module, unsafe_skip_copy=True).visit(transformer)
    return new_module.code, transformer.applied


_BIG_STACK = 512 * 1024 * 1024
_BIG_RECURSION = 60_000


def _on_big_stack(fn, *args):
    import sys
    import threading

    box = {}

    def target():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    old_limit = sys.getrecursionlimit()
    try:
        old_size = threading.stack_size(_BIG_STACK)
    except (ValueError, RuntimeError):  # platform without a settable stack size
        raise RecursionError("no large stack available") from None
    try:
        sys.setrecursionlimit(max(old_limit, _BIG_RECURSION))
        t = threading.Thread(target=target, name="gpufix-deep-fix")
        t.start()
        t.join()
    finally:
        threading.stack_size(old_size)
        sys.setrecursionlimit(old_limit)
    if "error" in box:
        raise box["error"]
    return box["value"]
