"""Where a place in Python source lies: in code, in a string literal (at its first character or
further in), or in a comment. The prefilter confirms each of its hits here before it sends a file
to the full analysis: a call shape in a docstring or a comment (`device_ids=[i]` in an example,
`DistributedDataParallel(` in prose) is no call, and most files a word lifts hold it only there.
A leaf module.

The reading is Python's own tokenizer's for strings and comments, done by one regex from the start
of the text (a `#` or a quote in code starts a comment or a string; a string runs to its closing
quote, backslash escapes included; a single-quoted one ends at the end of its line), as far as the
places asked about need. Two conservative choices keep it a superset of what `ast` reads:

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
# a literal's value may start after backslash-newlines (`"\\<newline>cuda:1"` is "cuda:1")
_LEADING_BREAKS_RE = re.compile(r"(?:\\(?:\r\n|\r|\n))+")
_DEFINED_RE = re.compile(r"(?<![\w.])(?:def|class)[ \t]+\Z")  # `def name(`, `class Name(`: no call
_PEP701 = sys.version_info >= (3, 12)

COMMENT, STRING, FSTRING = 0, 1, 2


class Lexed:
    """The strings and comments of `text`, read from its start as far as asked."""

    __slots__ = ("text", "starts", "ends", "kinds", "quotes", "done_to", "unknown_from", "_tokens")

    def __init__(self, text: str):
        self.text = text
        self.starts: list = []
        self.ends: list = []
        self.kinds: list = []
        self.quotes: list = []  # where each string's opening quote is (after its prefix)
        self.done_to = 0  # every string or comment that starts before this is read
        self.unknown_from = len(text) + 1  # PEP 701: from the first f-string on, every place counts
        self._tokens = _TOKEN_RE.finditer(text)

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
        if where == CODE:
            text = self.text
            line = max(text.rfind("\n", 0, pos), text.rfind("\r", 0, pos)) + 1
            if _DEFINED_RE.search(text, line, pos):
                return pos + 1
        return -1

    def _before(self, pos: int) -> str:
        """The code character before `pos`, past blanks, line continuations and comments."""
        text = self.text
        i = pos - 1
        while i >= 0:
            c = text[i]
            if c in " \t\r\n\f\\":
                i -= 1
                continue
            k = bisect.bisect_right(self.starts, i) - 1
            if k >= 0 and i < self.ends[k] and self.kinds[k] == COMMENT:
                i = self.starts[k] - 1
                continue
            return c
        return ""


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
