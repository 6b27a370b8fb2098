"""PowerShell scripts (`*.ps1`, `*.psm1`): `$env:NAME = "1"` (also `${env:NAME}`, `$env:NAME=1;
python ...` on one line), `Set-Item env:NAME 1` / `Set-Item -Path Env:\\NAME -Value 1` (and
`New-Item`, `si`, `ni`), `[Environment]::SetEnvironmentVariable("NAME", "1"[, "User"])`, `setx NAME 1`,
and `cuda:N` arguments (`python train.py --device cuda:1`).

A small tokenizer, not PowerShell: words with their quotes (`'...'` with `''`, `"..."` with
backtick escapes), statement separators (newline, `;`, `|`, `{`, `}`, `(`, `)`), `#` and `<# #>`
comments, here-strings (skipped), backtick line continuations. Every character is looked at a
bounded number of times (linear time). Variable names are matched case-insensitively, as Windows
does. A value with `$`, a subexpression or more than one word is read as not literal.

Set in the script, `$env:` lasts for the rest of the session: a `cuda:N` argument is judged under
the last mask set before it. `setx` and `SetEnvironmentVariable(..., "User"|"Machine")` change the
user's or machine's environment for later processes, not this one: reported and fixed, but no mask
for the commands after them.

Deliberately not followed: numbers after flags (`--gpu 1`), variables holding values
(`$gpu = 1; $env:CUDA_VISIBLE_DEVICES = $gpu`), dot-sourced scripts, here-string bodies,
`Start-Process -Environment`.
"""

from __future__ import annotations

import re

from gpufix.formats.facts import ENV_VARS, MASK_VAR, NO_MASK, ORDER_VAR, EnvSet, FileFacts, Ordinal
from gpufix.formats.text import newline_of

_SEPS = ";|&{}()\n,"
_VARS = {v.lower(): v for v in ENV_VARS}
_ENV_REF_RE = re.compile(r"\$(?:\{env:([A-Za-z_][A-Za-z0-9_]*)\}|env:([A-Za-z_][A-Za-z0-9_]*))", re.I)
_ENV_PATH_RE = re.compile(r"^env:[\\/]?([A-Za-z_][A-Za-z0-9_]*)$", re.I)
_SETENV_RE = re.compile(r"^\[(?:System\.)?Environment\]::SetEnvironmentVariable$", re.I)
_CUDA_WORD_RE = re.compile(r"^(?:--?[\w.-]+[=:])?cuda:(\d+)$")
_ITEM_CMDS = {"set-item", "si", "new-item", "ni"}
_ITEM_SWITCHES = {"-force", "-whatif", "-confirm", "-passthru"}


class Word:
    __slots__ = ("start", "end", "value", "dynamic", "style")

    def __init__(self, start, end, value, dynamic, style):
        # style: how the word is quoted as a whole: "" bare, "'" or '"', None (mixed: not rewritten)
        self.start, self.end, self.value, self.dynamic, self.style = start, end, value, dynamic, style


def _skip_subexpr(text: str, i: int, end: int) -> int:
    """End of the `(...)` starting at text[i] == "(" (strings inside are not followed: a
    parenthesis in a string inside a subexpression ends it early, which only makes a value
    non-literal sooner)."""
    depth = 0
    while i < end:
        c = text[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        elif c == "\n":
            return i
        i += 1
    return end


def tokens(text: str, i: int = 0, end: int = None):
    """Yield Word objects and separators (one of `_SEPS`, as a one-character string) for text[i:end]."""
    end = len(text) if end is None else end
    while i < end:
        c = text[i]
        if c in " \t\r\f\v\ufeff":
            i += 1
            continue
        if c == "`" and i + 1 < end and text[i + 1] in "\r\n":
            i += 2 if text[i + 1] == "\n" else 3
            continue
        if c == "<" and text.startswith("<#", i):
            close = text.find("#>", i + 2, end)
            i = end if close < 0 else close + 2
            continue
        if c == "#":
            nl = text.find("\n", i, end)
            i = end if nl < 0 else nl
            continue
        if c == "@" and i + 1 < end and text[i + 1] in "\"'":
            j = i + 2
            while j < end and text[j] in " \t\r":
                j += 1
            if j >= end or text[j] == "\n":
                # A here-string: its body runs to a line that starts with the closing quote and @.
                closer = "\n" + text[i + 1] + "@"
                close = text.find(closer, j, end)
                i = end if close < 0 else close + 3
                yield Word(j, i, "", True, None)
                continue
        if c in _SEPS:
            i += 1
            yield c
            continue
        start = i
        value = []
        dynamic = False
        quoted = set()
        bare = False
        while i < end:
            c = text[i]
            if c in " \t\r" or c in _SEPS:
                break
            if c == "`":
                if i + 1 < end and text[i + 1] in "\r\n":
                    break
                if i + 1 < end:
                    value.append(text[i + 1])
                i += 2
                quoted.add(None)
                continue
            if c == "'":
                j = i + 1
                while j < end:
                    k = text.find("'", j, end)
                    if k < 0:
                        value.append(text[j:end])
                        j = end
                        break
                    value.append(text[j:k])
                    if k + 1 < end and text[k + 1] == "'":
                        value.append("'")
                        quoted.add(None)
                        j = k + 2
                        continue
                    j = k + 1
                    break
                i = j
                quoted.add("'")
                continue
            if c == '"':
                j = i + 1
                while j < end and text[j] != '"':
                    ch = text[j]
                    if ch == "`":
                        if j + 1 < end:
                            value.append(text[j + 1])
                        quoted.add(None)
                        j += 2
                        continue
                    if ch == "$":
                        dynamic = True
                        if j + 1 < end and text[j + 1] == "(":
                            j = _skip_subexpr(text, j + 1, end)
                            continue
                    value.append(ch)
                    j += 1
                i = min(j + 1, end)
                quoted.add('"')
                continue
            if c == "$":
                dynamic = True
                if i + 1 < end and text[i + 1] == "(":
                    i = _skip_subexpr(text, i + 1, end)
                    bare = True
                    continue
                if i + 1 < end and text[i + 1] == "{":
                    j = i + 2  # `${name}`: to the brace, never past the line
                    while j < end and text[j] not in "}\n":
                        j += 1
                    j = j + 1 if j < end and text[j] == "}" else j
                    value.append(text[i:j])
                    i = j
                    bare = True
                    continue
            value.append(c)
            bare = True
            i += 1
        if bare and quoted:
            style = None
        elif None in quoted or len(quoted) > 1:
            style = None
        else:
            style = next(iter(quoted)) if quoted else ""
        yield Word(start, i, "".join(value), dynamic, style)


_NUMBER_RE = re.compile(r"^-?\d+$")


def _value_of(text: str, start: int, end: int, expression: bool):
    """(value or None, style, editable, span) of the value text[start:end] of a setting.
    `expression`: after `=` (a bare word there is a command call, only a number is a literal);
    else a command argument (`Set-Item env:X 1`: a bare word is a string). A bare literal is
    rewritten quoted (`1,2` bare would be an array)."""
    words = [w for w in tokens(text, start, end)]
    if len(words) != 1 or isinstance(words[0], str):
        return None, "", False, (start, end)
    w = words[0]
    span = (w.start, w.end)
    if w.dynamic:
        return None, "", False, span
    raw = text[w.start:w.end]
    if w.style is None:
        return w.value, "", False, span
    if w.style:
        if raw[0] != w.style or raw[-1] != w.style or len(raw) < 2:
            return w.value, "", False, span
        return w.value, w.style, True, span
    if expression and not _NUMBER_RE.match(raw):
        return None, "", False, span  # a command call, a cast, an array: not a literal
    if not expression and any(ch in raw for ch in "@[]'\"\\"):
        return None, "", False, span
    return w.value, '"', True, span


def scan(text: str) -> FileFacts:
    facts = FileFacts()
    nl = newline_of(text)
    settings: list = []  # [(EnvSet, persistent)]
    # the mask the session's later commands inherit; the `{ }` blocks around the current statement
    state = {"mask": NO_MASK, "path": ()}

    def insertion(w0: Word, after: str, make) -> tuple:
        """Where and what to insert so that CUDA_DEVICE_ORDER is set just before the statement
        that starts with `w0` (`after`: the separator before it); None where nothing may go
        (in a pipeline, inside parentheses)."""
        if after == "\n":  # the statement starts its line: the indent before it is on this line
            ls = w0.start
            while ls > 0 and text[ls - 1] in " \t":
                ls -= 1
            if ls == 0 or text[ls - 1] == "\n":
                return ls, text[ls:w0.start] + make("{order}") + nl
        if after in (";", "{", "\n"):
            return w0.start, make("{order}") + "; "
        return None

    def add(name: str, vs: int, ve: int, w0: Word, after: str, persistent: bool, expression: bool, make, form: str):
        value, style, editable, (vs, ve) = _value_of(text, vs, ve, expression)
        e = EnvSet(_VARS[name.lower()], value, vs, ve, style, editable, form=form)
        e.order_insert = insertion(w0, after, make)
        settings.append((e, persistent, state["path"]))
        if e.var == MASK_VAR and not persistent:
            state["mask"] = e.value

    def env_make(order):
        return f'$env:{ORDER_VAR} = "{order}"'

    def statement(words: list, after: str) -> None:
        w0 = words[0]
        low = w0.value.lower()
        raw0 = text[w0.start:w0.end]
        m = _ENV_REF_RE.match(raw0)
        if m:  # `$env:NAME = value`, `$env:NAME=value`, `${env:NAME} = value`
            name = m.group(1) or m.group(2)
            rest = raw0[m.end():]
            if name.lower() not in _VARS:
                return
            if rest.startswith("=") and not rest.startswith("=="):
                span = (w0.start + m.end() + 1, words[-1].end)
            elif rest == "" and len(words) > 1 and text[words[1].start] == "=" and not words[1].value.startswith("=="):
                span = (words[1].start + 1, words[-1].end)
            else:
                return
            if span[1] > span[0]:
                add(name, span[0], span[1], w0, after, False, True, env_make, "$env:")
            return
        if low in _ITEM_CMDS:
            _item(words, after)
            return
        if low in ("setx", "setx.exe"):
            flags = [w for w in words[1:] if w.style == "" and w.value[:1] == "/"]
            plain = [w for w in words[1:] if w not in flags]
            if any(f.value.lower() not in ("/m",) for f in flags):
                return  # /K (a registry value), /F (from a file), /S (another machine): not a literal
            if len(plain) != 2 or plain[0].dynamic or plain[0].value.lower() not in _VARS:
                return
            machine = " /M" if flags else ""
            add(plain[0].value, plain[1].start, plain[1].end, w0, after, True, False,
                lambda o: f"setx {ORDER_VAR} {o}{machine}", "setx")

    def _item(words: list, after: str) -> None:
        """`Set-Item [-Path] env:NAME [-Value] VALUE` and `New-Item -Path Env: -Name NAME -Value V`."""
        path = value = name_w = None
        positional = []
        k = 1
        while k < len(words):
            w = words[k]
            lw = w.value.lower()
            if w.style == "" and lw.startswith("-") and not lw[1:2].isdigit():
                if lw in _ITEM_SWITCHES or k + 1 >= len(words):
                    k += 1
                    continue
                arg = words[k + 1]
                if lw in ("-path", "-literalpath", "-pspath"):
                    path = arg
                elif lw == "-value":
                    value = arg
                elif lw == "-name":
                    name_w = arg
                k += 2
                continue
            positional.append(w)
            k += 1
        if path is None and positional:
            path = positional.pop(0)
        if value is None and positional:
            value = positional.pop(0)
        if path is None or value is None or path.dynamic or positional:
            return
        pm = _ENV_PATH_RE.match(path.value)
        name = pm.group(1) if pm else None
        if name is None and name_w is not None and path.value.lower().rstrip("\\/") == "env:" and not name_w.dynamic:
            name = name_w.value
        if name is None or name.lower() not in _VARS:
            return
        add(name, value.start, value.end, words[0], after, False, False, env_make, "Set-Item")

    def call(method: Word, args: list, after: str) -> None:
        """`[Environment]::SetEnvironmentVariable(name, value[, target])`."""
        parts: list = [[]]
        for a in args:
            if a == ",":
                parts.append([])
            elif a != "\n":
                parts[-1].append(a)
        if len(parts) not in (2, 3) or any(len(p) != 1 or isinstance(p[0], str) for p in parts):
            return
        name_w, value_w = parts[0][0], parts[1][0]
        if name_w.dynamic or name_w.value.lower() not in _VARS:
            return
        target = parts[2][0] if len(parts) == 3 else None
        target_raw = text[target.start:target.end] if target is not None else ""
        persistent = target is not None and (target.dynamic or target.value.lower().rsplit(":", 1)[-1].strip("]") != "process")
        method_raw = text[method.start:method.end]

        def make(order):
            tail = f", {target_raw}" if target_raw else ""
            return f'{method_raw}("{ORDER_VAR}", "{order}"{tail})'

        add(name_w.value, value_w.start, value_w.end, method, after, persistent, True, make, "SetEnvironmentVariable")

    words: list = []
    after = "\n"  # the separator before the current statement
    call_args = None  # (method word, [tokens]) while inside SetEnvironmentVariable( ... )
    blocks: list = []  # ids of the open `{ }` blocks
    opened = 0
    for tok in tokens(text):
        if call_args is not None:
            if tok == ")":
                call(call_args[0], call_args[1], after)
                call_args, words = None, []
                continue
            if tok in (";", "|", "&", "{", "}", "("):
                call_args, words = None, []
            else:
                call_args[1].append(tok)
                continue
        if isinstance(tok, str):
            if tok == "(" and words and _SETENV_RE.match(text[words[-1].start:words[-1].end]):
                call_args = (words[-1], [])
                continue
            if tok == ",":
                continue  # an array's items: words of the same statement
            if words:
                statement(words, after)
            words, after = [], tok
            if tok == "{":
                opened += 1
                blocks.append(opened)
            elif tok == "}" and blocks:
                blocks.pop()
            continue
        if not tok.dynamic:
            m = _CUDA_WORD_RE.match(tok.value)
            if m:
                k = text.find("cuda:" + m.group(1), tok.start, tok.end)
                if k >= 0:
                    facts.ordinals.append(Ordinal("cuda:" + m.group(1), int(m.group(1)), k, k + 5 + len(m.group(1)),
                                                  "cuda:{}", mask=state["mask"]))
        if not words:
            state["path"] = tuple(blocks)
        words.append(tok)
    if words:
        statement(words, after)
    finish_settings(facts, settings)
    return facts


def _encloses(outer: tuple, inner: tuple) -> bool:
    return inner[:len(outer)] == outer


def finish_settings(facts: FileFacts, settings: list) -> None:
    """`settings`: (EnvSet, persistent, block path) in file order. A CUDA_DEVICE_ORDER setting of
    the same lifetime (this session, or the user's environment for later processes) is in force
    for a mask setting in the same block or one it encloses (top level: the whole file), wherever
    it is in it: the programs a script starts run after it has set both. One set in another
    branch (`if { } else { }`) is not."""
    for persistent in (False, True):
        group = [(e, path) for e, p, path in settings if p == persistent]
        orders = [path for e, path in group if e.var == ORDER_VAR]
        masks = [(e, path) for e, path in group if e.var == MASK_VAR]
        for e, path in masks:
            e.order_in_force = any(_encloses(o, path) for o in orders)
            # One CUDA_DEVICE_ORDER line serves the masks of a block and those nested in it: the
            # first mask of an enclosing block that has a place for the line gives every later
            # one the same insertion, which apply writes once.
            first = next((f.order_insert for f, fpath in masks if f.order_insert and _encloses(fpath, path)), None)
            if first is not None:
                e.order_insert = first
    facts.env.extend(e for e, _, _ in settings)
