"""Shell command lines: `CUDA_VISIBLE_DEVICES=0 python train.py`, `export CUDA_VISIBLE_DEVICES=1`,
`env CUDA_DEVICE_ORDER=... cmd`, `docker run -e CUDA_VISIBLE_DEVICES=1 ...`, and `cuda:N` arguments
(`--device cuda:1`).

A small tokenizer, not a shell: words with their quotes, command separators, comments, heredocs
(skipped) and line continuations. An assignment counts only in command position (before the
command word, or as an argument of export/declare/env/`-e`), so `echo CUDA_VISIBLE_DEVICES=1` is
not a setting. Values with expansions (`$GPU`, `$(...)`) are read as not literal.

Deliberately not followed: numbers after flags (`--gpu 1` may be a count or an index, depending on
the program), `docker run --gpus device=1`, heredoc bodies, `source`d files.
"""

from __future__ import annotations

import re

from gpufix.formats.facts import ENV_VARS, MASK_VAR, NO_MASK, ORDER_VAR, EnvSet, FileFacts, Ordinal

_SEP_CHARS = ";&|()\n"
_KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "time", "!", "{", "}", "fi", "done", "sudo", "nohup", "exec"}
_DECLARE = {"export", "declare", "typeset", "readonly", "local"}
_ASSIGN_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=")
_CUDA_WORD_RE = re.compile(r"^(?:--?[\w.-]+=)?cuda:(\d+)$")


class Word:
    __slots__ = ("start", "end", "value", "dynamic")

    def __init__(self, start, end, value, dynamic):
        self.start, self.end, self.value, self.dynamic = start, end, value, dynamic


_HEREDOC_DELIM_RE = re.compile(r"['\"]?([A-Za-z_][\w]*)['\"]?")


def _ends_with_dollar(value: list) -> bool:
    """Whether the pieces of a word joined end with `$`; empty pieces (`''`) are dropped as they
    come, so this looks at one piece."""
    return bool(value) and value[-1].endswith("$")


def _skip_balanced(text: str, i: int, end: int, open_c: str, close_c: str) -> int:
    depth = 0
    while i < end:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == open_c:
            depth += 1
        elif c == close_c:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return end


def tokens(text: str, i: int = 0, end: int = None):
    """Yield Word objects and "sep" strings for text[i:end]."""
    end = len(text) if end is None else end
    heredocs = []
    while i < end:
        c = text[i]
        if c in " \t\r":
            i += 1
            continue
        if c == "\\" and i + 1 < end and text[i + 1] in "\r\n":
            i += 2 if text[i + 1] == "\n" else 3
            continue
        if c == "\n":
            i += 1
            if heredocs:
                # Skip heredoc bodies: up to a line that is exactly the delimiter.
                for delim in heredocs:
                    while i < end:
                        nl = text.find("\n", i, end)
                        line_end = end if nl < 0 else nl
                        line = text[i:line_end].strip()
                        i = line_end + 1 if nl >= 0 else end
                        if line == delim:
                            break
                heredocs = []
            yield "sep"
            continue
        if c in _SEP_CHARS:
            i += 1
            yield "sep"
            continue
        if c == "#":
            nl = text.find("\n", i, end)
            i = end if nl < 0 else nl
            continue
        start = i
        value = []
        dynamic = False
        while i < end:
            c = text[i]
            if c in " \t\r" or c in _SEP_CHARS:
                # `$(` spelled with an escaped `$` (`\$(`) goes on the word; looking at the last
                # piece only (not joining the word so far) keeps a long word linear.
                if not (c == "(" and _ends_with_dollar(value)):
                    break
            if c == "\\":
                if i + 1 < end and text[i + 1] == "\n":
                    i += 2
                    continue
                if i + 1 < end:
                    value.append(text[i + 1])
                i += 2
                continue
            if c == "'":
                close = text.find("'", i + 1, end)
                close = end if close < 0 else close
                if close > i + 1:
                    value.append(text[i + 1:close])
                i = close + 1
                continue
            if c == '"':
                j = i + 1
                while j < end and text[j] != '"':
                    if text[j] == "\\":
                        if j + 1 < end:
                            value.append(text[j + 1])
                        j += 2
                        continue
                    if text[j] in "$`":
                        dynamic = True
                    value.append(text[j])
                    j += 1
                i = min(j + 1, end)
                continue
            if c == "$":
                dynamic = True
                if i + 1 < end and text[i + 1] == "(":
                    i = _skip_balanced(text, i + 1, end, "(", ")")
                    continue
                if i + 1 < end and text[i + 1] == "{":
                    i = _skip_balanced(text, i + 1, end, "{", "}")
                    continue
            if c == "`":
                dynamic = True
                close = text.find("`", i + 1, end)
                i = end if close < 0 else close + 1
                continue
            value.append(c)
            i += 1
        word = Word(start, i, "".join(value), dynamic)
        if word.value.startswith("<<") and not dynamic:
            delim = word.value.lstrip("<-").strip("'\"")
            if not delim:
                # `<< EOF`: the delimiter is the next word; read it now.
                j = i
                while j < end and text[j] in " \t":
                    j += 1
                m = _HEREDOC_DELIM_RE.match(text, j, end)  # in place: a slice would copy the rest
                if m:
                    delim = m.group(1)
                    i = m.end()
            if delim:
                heredocs.append(delim)
        yield word


def _assignment(text: str, w: Word):
    """(name, EnvSet) for a NAME=VALUE word naming a variable gpufix reads; else None."""
    raw = text[w.start:w.end]
    m = _ASSIGN_RE.match(raw)
    if not m or m.group(1) not in ENV_VARS:
        return None
    name = m.group(1)
    vstart = w.start + m.end()
    raw_value = text[vstart:w.end]
    value = None if w.dynamic else w.value[len(name) + 1:]
    style, editable = "", True
    if len(raw_value) >= 2 and raw_value[0] == raw_value[-1] and raw_value[0] in "'\"" and raw_value[0] not in raw_value[1:-1] and "\\" not in raw_value:
        style = raw_value[0]
    elif any(ch in raw_value for ch in "'\"\\"):
        editable = False  # mixed quoting: report, do not rewrite
    return name, EnvSet(name, value, vstart, w.end, style, editable and value is not None)


def scan(text: str, start: int = 0, end: int = None, facts: FileFacts = None, form: str = "shell",
         inherited_mask=NO_MASK) -> FileFacts:
    """Facts of shell code in text[start:end]; `inherited_mask`: the CUDA_VISIBLE_DEVICES value the
    code starts with (a Dockerfile's ENV), NO_MASK for none."""
    facts = facts if facts is not None else FileFacts()
    commands = []  # [(sets: [(EnvSet, insert_at, prefix)], has_command_word)]
    sets: list = []
    cmd_pos = True
    mode = None  # "declare" | "env" after export/declare/env words
    pending_e = None  # the offset of a `-e`/`--env` flag awaiting its NAME=VALUE word
    has_cmd = False
    exported_mask = inherited_mask  # the mask a command inherits: the last export / plain assignment
    ordinals: list = []  # this command's cuda:N words

    def close():
        nonlocal sets, cmd_pos, mode, pending_e, has_cmd, exported_mask, ordinals
        own = [e for e, _, prefix in sets if e.var == MASK_VAR and not prefix]
        if own and not has_cmd:
            exported_mask = own[-1].value
        for o in ordinals:
            o.mask = own[-1].value if (own and has_cmd) else exported_mask
        if sets:
            commands.append((sets, has_cmd))
        sets, cmd_pos, mode, pending_e, has_cmd, ordinals = [], True, None, None, False, []

    for tok in tokens(text, start, end):
        if tok == "sep":
            close()
            continue
        w = tok
        if not w.dynamic:
            m = _CUDA_WORD_RE.match(w.value)
            if m:
                raw = text[w.start:w.end]
                k = raw.find("cuda:" + m.group(1))
                if k >= 0:
                    s = w.start + k
                    o = Ordinal("cuda:" + m.group(1), int(m.group(1)), s, s + 5 + len(m.group(1)), "cuda:{}")
                    facts.ordinals.append(o)
                    ordinals.append(o)
        if pending_e is not None:
            got = _assignment(text, w)
            if got:
                got[1].form = "-e"
                sets.append((got[1], pending_e, text[pending_e:w.start]))
            pending_e = None
            continue
        if w.value in ("-e", "--env") and not cmd_pos:
            pending_e = w.start
            continue
        if cmd_pos:
            got = _assignment(text, w)
            if got:
                got[1].form = "export" if mode == "declare" else form
                sets.append((got[1], w.start, ""))
                continue
            if _ASSIGN_RE.match(w.value) and not w.value.startswith("-"):
                continue  # another variable's assignment: still in command position
            if w.value in _KEYWORDS:
                continue
            if w.value in _DECLARE:
                mode = "declare"
                continue
            if w.value == "env":
                mode = "env"
                continue
            if mode and w.value.startswith("-"):
                continue
            cmd_pos = False
            has_cmd = True
    close()
    # Which CUDA_DEVICE_ORDER settings reach each mask setting: one on the same command, or an
    # export / plain assignment anywhere before (for a command), or anywhere (for an export).
    standalone_order = [i for i, (s, has_cmd) in enumerate(commands) if not has_cmd and any(e.var == ORDER_VAR for e, _, _ in s)]
    for i, (s, has_cmd) in enumerate(commands):
        same = any(e.var == ORDER_VAR for e, _, _ in s)
        for e, at, prefix in s:
            if e.var == MASK_VAR:
                if has_cmd:
                    e.order_in_force = same or any(j < i for j in standalone_order)
                else:
                    e.order_in_force = same or bool(standalone_order)
                e.order_insert = (at, prefix + ORDER_VAR + "={order} ")
            facts.env.append(e)
    return facts
