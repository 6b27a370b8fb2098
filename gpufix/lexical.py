"""Where a place in Python source lies: in code, in a string literal (at its first character or
further in), or in a comment. The prefilter confirms each of its hits here before it sends a file
to the full analysis: a call shape in a docstring or a comment (`device_ids=[i]` in an example,
`DistributedDataParallel(` in prose) is no call, and most files a word lifts hold it only there.
A leaf module.

The reading is Python's own tokenizer's for strings and comments, done by one regex from the start
of the text (a `#` or a quote in code starts a comment or a string; a string runs to its closing
quote, backslash escapes included; a single-quoted one ends at the end of its line), matched at
each `#` or opening quote (a string's prefix read backwards from its quote), as far as the places
asked about need. Two conservative choices keep it a superset of what `ast` reads:

* an f-string (and a PEP 750 t-string) is code and string at once (its replacement fields hold
  expressions): every test counts there; on Python 3.12 and later, where an f-string may nest
  quotes of its own kind (PEP 701), every place from the first f-string on counts;
* a word glued to a quote is read as a string prefix (`elif"x"` reads as an f-string): at worst a
  hit counts that did not need to.
"""

from __future__ import annotations

import bisect
import re
import sys

# What a prefilter test's match may start in to count (gpufix.collectors: Collector.prefilter_tests).
CODE = "code"  # a name, keyword or operator in code: a call, a keyword argument, an import alias
STRING_START = "string-start"  # the first character of a string literal's body (the value starts there)
ANYWHERE = "anywhere"  # code or anywhere in a string literal; never a comment
OPENING_QUOTE = "opening-quote"  # one of the quotes that open a string literal
KEYWORD = "keyword"  # a keyword argument's name: in code, after `(` or `,` (blanks and comments between)
# in code, or in a string literal whose whole value is a name (`"CUDA_VISIBLE_DEVICES"`, a key the
# analysis compares whole), never in prose (`"""CUDA_VISIBLE_DEVICES is adjusted so that..."""`)
NAME_OR_CODE = "name-or-code"
_NAME_BODY_RE = re.compile(r"\w+")
# ... of a call whose callee is one of the given names (`keyword_of`): `value=1` in any call is no
# `get_guard(value=1)` (a project's device helper whose parameter is `value`).
_KEYWORD_OF = "keyword-of:"


def keyword_of(callees) -> str:
    """The `where` of a keyword argument that counts only in a call of one of `callees` (last
    names: `set_device` for `torch.cuda.set_device(device=1)`, `cuda` for `x.cuda(device=1)`), or
    in a call this reading cannot name (`f()(device=1)`), or in any call when the text imports one
    of them under another name (`from m import set_device as pick`)."""
    return _KEYWORD_OF + ",".join(sorted(set(callees)))


# ... a call (in code, as CODE) with at least so many arguments (`call_with_args`): a device argument
# after others, `new_group(ranks, ..., device_id)`, cannot be in `new_group(ranks)`.
_CALL_ARGS = "call-args:"


def call_with_args(n: int) -> str:
    """The `where` of a call's name that counts only when the call may hold `n` arguments or
    more (every top-level comma counts one more: a keyword's, a lambda's too)."""
    return f"{_CALL_ARGS}{n}"


# How far the callee of a keyword argument, or a call's closing parenthesis, is looked for: past
# it, the test counts.
_CALLEE_REACH = 20_000

# One token per match: a comment, or a string literal (prefix, quotes and body; each loop unrolled,
# `[^'\\]*(?:escape-or-lone-quote[^'\\]*)*`, which the regex engine runs fast on long docstrings).
_TOKEN_RE = re.compile(
    r"#[^\r\n]*"
    r"|([rRbBuUfFtT]{0,2})("
    r"'''[^'\\]*(?:(?:\\.|'(?!''))[^'\\]*)*(?:'''|\Z)"
    r'|"""[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*(?:"""|\Z)'
    r"|'[^'\\\r\n]*(?:\\(?:\r\n|.)[^'\\\r\n]*)*'?"  # a single-quoted one ends at its line's end
    r'|"[^"\\\r\n]*(?:\\(?:\r\n|.)[^"\\\r\n]*)*"?'
    r")",
    re.S,
)
# Where the next token can start: a comment's `#` or a string's opening quote (its prefix, at most two
# letters, is read backwards from there). _TOKEN_RE's own search would try every prefix letter
# (`r`, `t`, `f`, `b`, `u`: a fifth of the characters of code) as the start of a literal.
_OPENER_RE = re.compile(r"[#'\"]")
_PREFIX_LETTERS = frozenset("rRbBuUfFtT")


def _token_matches(text: str):
    """`_TOKEN_RE.finditer(text)`'s matches, found faster: each is the match at the place its search
    from the previous one's end would find. That place is the first `#` or quote from there, or
    the start of the letters of `[rRbBuUfFtT]{0,2}` just before that quote (as many as there are,
    up to two, from the previous end on): the regex matches at no place before it (a literal's
    prefix is followed by its quote), and at each quote and `#` it matches."""
    search, match = _OPENER_RE.search, _TOKEN_RE.match
    pos = 0
    while True:
        opener = search(text, pos)
        if opener is None:
            return
        start = opener.start()
        if text[start] != "#":
            lowest = max(pos, start - 2)
            while start > lowest and text[start - 1] in _PREFIX_LETTERS:
                start -= 1
        m = match(text, start)
        yield m
        pos = m.end()


# a literal's value may start after backslash-newlines (`"\\<newline>cuda:1"` is "cuda:1")
_LEADING_BREAKS_RE = re.compile(r"(?:\\(?:\r\n|\r|\n))+")
_DEFINED_RE = re.compile(r"(?<![\w.])(?:def|class)[ \t]+\Z")  # `def name(`, `class Name(`: no call
_PEP701 = sys.version_info >= (3, 12)

COMMENT, STRING, FSTRING = 0, 1, 2


class Lexed:
    """The strings and comments of `text`, read from its start as far as asked."""

    __slots__ = ("text", "starts", "ends", "kinds", "quotes", "done_to", "unknown_from", "_tokens", "_callees", "_budget", "_last_callee")

    def __init__(self, text: str):
        self.text = text
        self.starts: list = []
        self.ends: list = []
        self.kinds: list = []
        self.quotes: list = []  # where each string's opening quote is (after its prefix)
        self.done_to = 0  # every string or comment that starts before this is read
        self.unknown_from = len(text) + 1  # PEP 701: from the first f-string on, every place counts
        self._tokens = _token_matches(text)
        self._callees: dict = {}  # keyword_of's `where` -> (its callees, whether the text imports one under another name)
        # characters the callee search may still read backwards: linear in the text, however many
        # keywords one long call holds (past it, every keyword counts)
        self._budget = 2 * len(text) + 50_000
        self._last_callee = (-1, None)  # (a keyword's place, its callee): a later keyword of the same call stops there

    def _read_to(self, pos: int) -> None:
        starts, ends, kinds, quotes = self.starts, self.ends, self.kinds, self.quotes
        for m in self._tokens:
            start, end = m.span()
            quote = m.start(2)
            if quote < 0:
                kind = COMMENT
            elif quote == start or not ("f" in m.group(1).lower() or "t" in m.group(1).lower()):
                kind = STRING
            else:
                kind = FSTRING
                if _PEP701 and start < self.unknown_from:
                    self.unknown_from = start
            starts.append(start)
            ends.append(end)
            kinds.append(kind)
            quotes.append(quote)
            if end > pos:
                self.done_to = max(end, start + 1)
                return
        self.done_to = len(self.text) + 1

    def _holds_a_name(self, i: int) -> bool:
        """Whether string token `i`'s body is one name (word characters only, closed on its line)."""
        body = self._body(i)
        end = self.ends[i]
        quote = self.text[self.quotes[i]]
        close = end - (3 if self.text.startswith(quote * 3, self.quotes[i]) else 1)
        return close > body and self.text[close:end] == quote * (end - close) and _NAME_BODY_RE.fullmatch(self.text, body, close) is not None

    def _body(self, i: int) -> int:
        """Where string token `i`'s value starts (after its prefix and opening quotes)."""
        q = self.quotes[i]
        return q + (3 if self.text.startswith(("'''", '"""'), q) else 1)

    def allows(self, pos: int, where: str) -> bool:
        """Whether a test's match that starts at `pos` may stand for what the analysis reads."""
        return self.resume(pos, where) < 0

    def resume(self, pos: int, where: str) -> int:
        """-1 when a match that starts at `pos` may stand for what the analysis reads; else the
        first place after it where one may (past the rest of a string or comment that allows
        none: a docstring's hundred mentions cost one search, not a hundred)."""
        if pos >= self.done_to:
            self._read_to(pos)
        if pos >= self.unknown_from:
            return -1
        i = bisect.bisect_right(self.starts, pos) - 1
        if i >= 0 and pos < self.ends[i]:
            kind = self.kinds[i]
            if kind == FSTRING or (kind == STRING and where == ANYWHERE):
                return -1
            if kind == STRING and where == NAME_OR_CODE:
                return -1 if self._holds_a_name(i) else self.ends[i]
            if kind == STRING:
                body = self._body(i)
                if where == OPENING_QUOTE and pos < body:
                    return -1
                if where == STRING_START:
                    if pos == body or (pos > body and _LEADING_BREAKS_RE.fullmatch(self.text, body, pos)):
                        return -1
                    if pos < body:
                        return body
            return self.ends[i]
        if where == STRING_START or where == OPENING_QUOTE:
            return pos + 1
        if where == KEYWORD:
            # `index = (...)`, `device_ids = [...]` assign a name: no call's keyword
            return -1 if self._before(pos) in ("(", ",") else pos + 1
        if where.startswith(_KEYWORD_OF):
            if self._before(pos) not in ("(", ","):
                return pos + 1
            return -1 if self._callee_may_be(pos, where) else pos + 1
        if where == CODE or where.startswith(_CALL_ARGS):
            text = self.text
            line = max(text.rfind("\n", 0, pos), text.rfind("\r", 0, pos)) + 1
            if _DEFINED_RE.search(text, line, pos):
                return pos + 1
            if where != CODE and not self._args_at_least(pos, int(where[len(_CALL_ARGS):])):
                return pos + 1
        return -1

    def _args_at_least(self, pos: int, n: int) -> bool:
        """Whether the call of the name at `pos` may hold `n` arguments or more: its top-level
        commas, plus one, reach `n` (a superset: a trailing comma, a keyword or a lambda's
        parameters count too); true when its parentheses cannot be followed this far."""
        text = self.text
        size = len(text)
        j = pos
        while j < size and _is_name_char(text[j]):
            j += 1
        limit = min(size, j + _CALLEE_REACH, j + self._budget)
        first = j
        try:
            opened = False
            depth = commas = 0
            held = False  # anything in the parentheses yet
            while j < limit:
                if j >= self.done_to:
                    self._read_to(j)
                t = bisect.bisect_right(self.starts, j) - 1
                if t >= 0 and j < self.ends[t]:
                    if self.kinds[t] != COMMENT:
                        held = True  # a string argument
                    j = self.ends[t]
                    continue
                c = text[j]
                if not opened:
                    if c == "(":
                        opened = True
                    elif c not in " \t\r\n\f\\)":
                        return True  # not the call the test's regex saw: cannot tell
                elif c in "([{":
                    depth += 1
                    held = True
                elif c in ")]}":
                    if depth == 0:
                        return commas + (1 if held else 0) >= n
                    depth -= 1
                elif c == "," and depth == 0:
                    commas += 1
                    if commas + 1 >= n:
                        return True
                elif c not in " \t\r\n\f\\":
                    held = True
                j += 1
            return True
        finally:
            self._budget -= j - first

    def _callee_may_be(self, pos: int, where: str) -> bool:
        """Whether the call whose keyword argument starts at `pos` (in code) may be one of the
        callees `where` names: its callee's last name is one, or cannot be read here, or the text
        binds one under another name (an import's `as`)."""
        got = self._callees.get(where)
        if got is None:
            callees = frozenset(c for c in where[len(_KEYWORD_OF):].split(",") if c)
            got = self._callees[where] = (callees, any(re.search(r"\b%s\s+as\b" % re.escape(c), self.text) for c in callees))
        callees, aliased = got
        if aliased:
            return True
        name = self._callee_name(pos)
        if name is None:
            return True
        if not name.isascii():
            import unicodedata

            name = unicodedata.normalize("NFKC", name)  # Python reads identifiers NFKC-normalised
        return name in callees

    def _callee_name(self, pos: int):
        """The last name of the callee of the call whose argument list holds `pos` (in code), ""
        when `pos` is in no call's parentheses, None when it cannot be told (a callee that is no
        name, such as `f()(...)` or `x[0](...)`, or a call longer than this looks)."""
        stop = max(-1, pos - 1 - _CALLEE_REACH, pos - 1 - self._budget)
        name, i = self._opener_callee(pos, stop)
        self._budget -= pos - 1 - i
        self._last_callee = (pos, name)
        return name

    def _opener_callee(self, pos: int, stop: int) -> tuple:
        """(_callee_name's answer, where the backward search ended)."""
        text = self.text
        starts, ends = self.starts, self.ends
        k = bisect.bisect_right(starts, pos - 1) - 1  # the last string or comment before pos
        depth = 0
        i = pos - 1
        last, last_name = self._last_callee
        while i > stop:
            if i < last and depth == 0 and last < pos:
                # back at an earlier keyword's place with the brackets between balanced: its call
                return last_name, i
            if k >= 0 and i < ends[k]:
                if i >= starts[k]:
                    i = starts[k] - 1  # a string or comment is no bracket
                k -= 1
                continue
            c = text[i]
            if c in ")]}":
                depth += 1
            elif c in "([{":
                if depth == 0:
                    if c != "(":
                        return "", i  # a keyword in a list or a dict display: no call's
                    return self._name_before(i), i
                depth -= 1
            i -= 1
        return (None if i > -1 else ""), i

    def _name_before(self, i: int):
        """The name that ends before the `(` at `i` (blanks, line continuations and comments
        between), or None when something else does (`f()(`, `x[0](`, a string)."""
        text = self.text
        j = self._back(i - 1)
        m = bisect.bisect_right(self.starts, j) - 1
        if j < 0 or (m >= 0 and j < self.ends[m]):
            return None  # the start of the text, or the end of a string
        end = j + 1
        while j >= 0 and _is_name_char(text[j]):
            j -= 1
        name = text[j + 1:end]
        if not name or name[0].isdigit():
            return None
        return name

    def _before(self, pos: int) -> str:
        """The code character before `pos`, past blanks, line continuations and comments."""
        i = self._back(pos - 1)
        return self.text[i] if i >= 0 else ""

    def _back(self, i: int) -> int:
        """The last place at or before `i` that is no blank, line continuation or comment; -1: none."""
        text = self.text
        while i >= 0:
            if text[i] in " \t\r\n\f\\":
                i -= 1
                continue
            k = bisect.bisect_right(self.starts, i) - 1
            if k >= 0 and i < self.ends[k] and self.kinds[k] == COMMENT:
                i = self.starts[k] - 1
                continue
            return i
        return -1


def _is_name_char(c: str) -> bool:
    """A character of a name as this reading takes it: a letter, digit or `_`, or any character
    outside ASCII (Python's own test, after NFKC, is left to the callers)."""
    return c.isalnum() or c == "_" or ord(c) > 127


def lines_naming(text: str, words) -> list:
    """The sorted numbers of the lines (as ast numbers them) on which one of `words` appears: where
    the name of a call by one of these names can be. Lines are broken where ast breaks them (CR LF,
    CR, LF; no other character) and names are read NFKC-normalised, as the parser reads them (a
    fullwidth `i` is an `i`); neither changes the number of lines."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():
        import unicodedata

        text = unicodedata.normalize("NFKC", text)
    at_lines = set()
    for word in words:
        line, last = 1, 0
        at = text.find(word)
        while at >= 0:
            line += text.count("\n", last, at)
            last = at
            at_lines.add(line)
            at = text.find(word, at + 1)
    return sorted(at_lines)


def first_allowed(rx, literal: str, where: str, text: str, lexed: Lexed):
    """The first place a test (`literal`, and `rx` when given) matches where `where` allows, or -1.
    A rejected match is searched past by one character (or past the string or comment that holds
    it), not by its length: it may overlap the match that counts."""
    if rx is None:
        i = text.find(literal)
        while i >= 0:
            nxt = lexed.resume(i, where)
            if nxt < 0:
                return i
            i = text.find(literal, nxt)
        return -1
    m = rx.search(text)
    while m is not None:
        nxt = lexed.resume(m.start(), where)
        if nxt < 0:
            return m.start()
        m = rx.search(text, nxt)
    return -1
