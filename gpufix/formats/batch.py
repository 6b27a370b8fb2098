"""cmd batch files (`*.bat`, `*.cmd`): `set NAME=1`, `set "NAME=1"`, `set /a NAME=1` (report
only), `setx NAME 1 [/M]`, the same after `if ...` / `else`, and `cuda:N` arguments of the other
commands (`python train.py --device cuda:1`).

Read the way cmd splits a line: commands end at a newline, `&`, `&&`, `||`, `|` and a block's
parentheses (`if ... (set A=1) else (set A=2)`); `^` escapes the next character (a `^` at the end
of a line continues it); `"` quotes until the next `"`; `REM` and `::` lines are comments. One
pass over the characters (linear time). Names are matched case-insensitively, as cmd does.

`set` lasts for the rest of the session (`setlocal` scopes are not followed): a `cuda:N`
argument is judged under the last mask set before it. `setx` changes the user's (or, with `/M`,
the machine's) environment for later processes, not this one.

The value of `set NAME=1 & ...` is everything up to the `&`, trailing blanks excepted (cmd keeps
them; gpufix judges the value without them). `set NAME="1"` sets the value with its quotes, which
CUDA does not read as a GPU list: reported, and fixed to the bare value.

Deliberately not followed: `%VAR%` / `!VAR!` values, `for ... do set`, `call`ed files, numbers after
flags (`--gpu 1`).
"""

from __future__ import annotations

import re

from gpufix.formats.facts import ENV_VARS, MASK_VAR, NO_MASK, ORDER_VAR, EnvSet, FileFacts, Ordinal
from gpufix.formats.powershell import finish_settings
from gpufix.formats.text import newline_of

_VARS = {v.lower(): v for v in ENV_VARS}
_CUDA_WORD_RE = re.compile(r"^(?:--?[\w.-]+[=:])?cuda:(\d+)$")
_IF_UNARY = {"exist", "defined", "errorlevel", "cmdextversion"}
_IF_OPS = {"equ", "neq", "lss", "leq", "gtr", "geq", "=="}


class Command:
    """One command: text[start:end], the separator before it ("\\n", "&", "&&", "||", "|", "(",
    ")"), and the ids of the `( )` blocks around it."""
    __slots__ = ("start", "end", "before", "path")

    def __init__(self, start, end, before, path=()):
        self.start, self.end, self.before, self.path = start, end, before, path


def commands(text: str):
    """Yield the file's commands, comment lines left out."""
    n = len(text)
    i = 0
    blocks: list = []  # ids of the open blocks
    opened = 0
    before = "\n"
    while i < n:
        # the command's first word decides whether it is a comment (runs to the end of the line)
        j = i
        while j < n and text[j] in " \t\r@;,=":
            j += 1
        if text.startswith("::", j) or (text[j:j + 3].lower() == "rem" and (j + 3 >= n or text[j + 3] in " \t\r\n.:/")):
            nl = text.find("\n", j)
            i = n if nl < 0 else nl + 1
            before = "\n"
            continue
        start = i
        quoted = False
        blank = True  # nothing but blanks and `@` so far in this command (a `(` there opens a block)
        k = i
        while k < n:
            c = text[k]
            if c not in " \t@(":
                blank = False if c != "\r" else blank
            if c == '"':
                quoted = not quoted
            elif c == "\n":
                quoted = False
                if k > 0 and text[k - 1] == "^" or (k > 1 and text[k - 1] == "\r" and text[k - 2] == "^"):
                    k += 1
                    continue  # `^` at the end of a line: the command goes on
                break
            elif quoted:
                pass
            elif c == "^":
                k += 2
                continue
            elif c in "&|":
                break
            elif c == "(" and (blank or text[k - 1] in " \t"):
                break
            elif c == ")" and blocks:
                break
            k += 1
        yield Command(start, k, before, tuple(blocks))
        if k >= n:
            return
        c = text[k]
        if c in "&|" and k + 1 < n and text[k + 1] == c:
            before = c + c
            i = k + 2
        else:
            before = c
            i = k + 1
            if c == "(":
                opened += 1
                blocks.append(opened)
            elif c == ")" and blocks:
                blocks.pop()


class Word:
    __slots__ = ("start", "end", "value", "dynamic", "quoted")

    def __init__(self, start, end, value, dynamic, quoted):
        self.start, self.end, self.value, self.dynamic, self.quoted = start, end, value, dynamic, quoted


def words(text: str, i: int, end: int) -> list:
    out = []
    while i < end:
        c = text[i]
        if c in " \t\r\n":
            i += 1
            continue
        if c == "^" and i + 1 < end and text[i + 1] in "\r\n":
            i += 2
            continue
        start = i
        value = []
        dynamic = quoted = False
        while i < end:
            c = text[i]
            if c in " \t\r\n":
                break
            if c == '"':
                close = text.find('"', i + 1, end)
                close = end if close < 0 else close
                part = text[i + 1:close]
                dynamic = dynamic or "%" in part or "!" in part
                value.append(part)
                quoted = True
                i = close + 1
                continue
            if c == "^":
                if i + 1 < end:
                    value.append(text[i + 1])
                i += 2
                continue
            if c in "%!":
                dynamic = True
            value.append(c)
            i += 1
        out.append(Word(start, min(i, end), "".join(value), dynamic, quoted))
    return out


def _strip_if(ws: list) -> list:
    """The command an `if` runs (`if [/i] [not] COND command`), or [] when the condition cannot
    be read."""
    k = 1
    while k < len(ws) and ws[k].value.lower() in ("/i", "not"):
        k += 1
    if k >= len(ws):
        return []
    v = ws[k].value.lower()
    if v in _IF_UNARY:
        return ws[k + 2:]
    if "==" in ws[k].value and not ws[k].value.endswith("=="):
        return ws[k + 1:]
    if k + 1 < len(ws) and ws[k + 1].value.lower() in _IF_OPS or ws[k].value.endswith("=="):
        return ws[k + 3:] if k + 1 < len(ws) and ws[k + 1].value.lower() in _IF_OPS else ws[k + 2:]
    return []


def scan(text: str) -> FileFacts:
    facts = FileFacts()
    nl = newline_of(text)
    settings: list = []
    mask = NO_MASK

    def insertion(cmd: Command, first: Word, make):
        """Where a `set CUDA_DEVICE_ORDER` may go just before this command: its own line when the
        command starts its line, after `&` or `(` on the same line; None after `if`, `&&`, `|`.
        (Only the command's own text is looked at: linear time on a line of many commands.)"""
        lead = text[cmd.start:first.start]
        if cmd.before == "\n" and lead.strip(" \t@\r\n") == "":
            ls = cmd.start
            while ls < first.start and text[ls] in "\r\n":
                ls += 1
            return ls, text[ls:first.start] + make("{order}") + nl
        if cmd.before in ("&", "(") and text[cmd.start:first.start].strip(" \t@") == "":
            return first.start, f'set "{ORDER_VAR}={{order}}" & '
        return None

    for cmd in commands(text):
        ws = words(text, cmd.start, cmd.end)
        if not ws:
            continue
        head = ws
        via_if = False
        while head and head[0].value.lower() in ("if", "else"):
            head = _strip_if(head) if head[0].value.lower() == "if" else head[1:]
            via_if = True
        # a command run by `if` is a branch of its own: nothing outside it counts as set by it
        path = cmd.path + (-cmd.start - 1,) if via_if else cmd.path
        if not head:
            continue
        w0 = head[0]
        low = w0.value.lower()
        if low == "set" or low.startswith("set/"):
            got = _set(text, w0, cmd.end)
            if got is not None:
                e, quoted_form = got
                if not via_if:
                    if quoted_form:
                        e.order_insert = insertion(cmd, w0, lambda o: f'set "{ORDER_VAR}={o}"')
                    else:
                        e.order_insert = insertion(cmd, w0, lambda o: f"set {ORDER_VAR}={o}")
                settings.append((e, False, path))
                if e.var == MASK_VAR:
                    mask = e.value
            continue
        if low in ("setx", "setx.exe"):
            flags = [w for w in head[1:] if not w.quoted and w.value[:1] == "/"]
            plain = [w for w in head[1:] if w not in flags]
            if any(f.value.lower() != "/m" for f in flags):
                continue
            if len(plain) != 2 or plain[0].dynamic or plain[0].value.lower() not in _VARS:
                continue
            v = plain[1]
            raw = text[v.start:v.end]
            style = '"' if v.quoted else ""
            editable = not v.dynamic and (raw == v.value or raw == f'"{v.value}"')
            e = EnvSet(_VARS[plain[0].value.lower()], None if v.dynamic else v.value, v.start, v.end, style, editable, form="setx")
            machine = " /M" if flags else ""
            if not via_if:
                e.order_insert = insertion(cmd, w0, lambda o: f"setx {ORDER_VAR} {o}{machine}")
            settings.append((e, True, path))
            continue
        for w in head:
            if w.dynamic:
                continue
            m = _CUDA_WORD_RE.match(w.value)
            if m:
                k = text.find("cuda:" + m.group(1), w.start, w.end)
                if k >= 0:
                    facts.ordinals.append(Ordinal("cuda:" + m.group(1), int(m.group(1)), k, k + 5 + len(m.group(1)),
                                                  "cuda:{}", mask=mask))
    finish_settings(facts, settings)
    return facts


def _set(text: str, w0: Word, end: int):
    """(EnvSet, quoted form) of `set NAME=VALUE`, `set "NAME=VALUE"` or `set /a NAME=N` running
    from w0 to `end`; None for another variable, a listing, or `set /p` (a prompt)."""
    i = w0.start + 3
    arith = False
    while True:
        while i < end and text[i] in " \t":
            i += 1
        if text[i:i + 1] == "/" and i + 1 < end and text[i + 1].lower() in "ap":
            if text[i + 1].lower() == "p":
                return None
            arith = True
            i += 2
            continue
        break
    rest_end = end
    while rest_end > i and text[rest_end - 1] in " \t\r\n":
        rest_end -= 1
    quoted_form = text[i:i + 1] == '"'
    if quoted_form:
        close = text.rfind('"', i + 1, rest_end)
        if close < 0:
            return None
        body_start, body_end = i + 1, close
    else:
        body_start, body_end = i, rest_end
    eq = text.find("=", body_start, body_end)
    if eq < 0:
        return None
    name = text[body_start:eq]
    if arith:
        name = name.strip()
    if name.lower() not in _VARS:
        return None
    vs, ve = eq + 1, body_end
    if arith:
        while vs < ve and text[vs] in " \t":
            vs += 1
    raw = text[vs:ve]
    dynamic = "%" in raw or "!" in raw
    value = None if dynamic else raw.replace("^", "") if not quoted_form else raw
    editable = not dynamic and not arith and ("^" not in raw or quoted_form) and "\n" not in raw
    if arith and value is not None and not re.fullmatch(r"\d+", value.strip()):
        value = None
    e = EnvSet(_VARS[name.lower()], value, vs, ve, "", editable, form="set")
    return e, quoted_form


# -- suppression comments ----------------------------------------------------------------------------
_COMMENT_RE = re.compile(r"(?:^[ \t@]*|&[ \t]*)(?:rem(?=[ \t.:/])|::)([^\n]*)", re.I | re.M)


def comments(text: str):
    """(offset, comment text, own line) of each `REM` / `::` comment, also after `&` on a line
    (`set A=1 & REM gpufix: ignore[GPU103]`)."""
    for m in _COMMENT_RE.finditer(text):
        ls = text.rfind("\n", 0, m.start()) + 1
        own = text[ls:m.start()].strip(" \t@") == "" and not m.group(0).lstrip(" \t@").startswith("&")
        yield m.start(), m.group(1), own
