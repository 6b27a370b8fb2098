"""Where a place in Python source lies: in code, in a string literal (at its first character or
further in), or in a comment. The prefilter confirms each of its hits here before it sends a file
to the full analysis: a call shape in a docstring or a comment (`device_ids=[i]` in an example,
`DistributedDataParallel(` in prose) is no call, and most files a word lifts hold it only there.
A leaf module.

The reading is Python's own tokenizer's for strings and comments, done by one regex from the start
of the text (a `#` or a quote in code starts a comment or a string; a string runs to its closing
quote, backslash escapes included; a single-quoted one ends at the end of its line), as far as the
places asked about need. Two conservative choices keep it a superset of what `ast` reads:

* an f-string is code and string at once (its replacement fields hold expressions): every test
  counts there; on Python 3.12 and later, where an f-string may nest quotes of its own kind (PEP
  701), every place from the first f-string on counts;
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

_BODIES = {
    "'''": re.compile(r"(?:[^'\\]|\\.|'(?!''))*(?:'''|\Z)", re.S),
    '"""': re.compile(r'(?:[^"\\]|\\.|"(?!""))*(?:"""|\Z)', re.S),
    "'": re.compile(r"(?:[^'\\\r\n]|\\(?:\r\n|.))*(?:'|(?=[\r\n])|\Z)", re.S),
    '"': re.compile(r'(?:[^"\\\r\n]|\\(?:\r\n|.))*(?:"|(?=[\r\n])|\Z)', re.S),
}
_START_RE = re.compile(r"#[^\r\n]*|(?P<prefix>[rRbBuUfF]{0,2})(?P<quote>'''|\"\"\"|'|\")")
_DEFINED_RE = re.compile(r"(?<![\w.])(?:def|class)[ \t]+\Z")  # `def name(`, `class Name(`: no call
_PEP701 = sys.version_info >= (3, 12)

COMMENT, STRING, FSTRING = 0, 1, 2


class Lexed:
    """The strings and comments of `text`, read from its start as far as asked."""

    __slots__ = ("text", "starts", "ends", "kinds", "bodies", "done_to", "unknown_from")

    def __init__(self, text: str):
        self.text = text
        self.starts: list = []
        self.ends: list = []
        self.kinds: list = []
        self.bodies: list = []  # where each string's value starts (after prefix and quotes)
        self.done_to = 0  # every string or comment that starts before this is read
        self.unknown_from = len(text) + 1  # PEP 701: from the first f-string on, every place counts

    def _read_to(self, pos: int) -> None:
        text, find = self.text, _START_RE.search
        at = self.done_to
        while at <= pos:
            m = find(text, at)
            if m is None:
                self.done_to = len(text) + 1
                return
            start = m.start()
            if m.group("quote") is None:
                end, kind, body = m.end(), COMMENT, start
            else:
                body = m.end()
                end = _BODIES[m.group("quote")].match(text, body).end()
                kind = FSTRING if "f" in m.group("prefix").lower() else STRING
                if kind == FSTRING and _PEP701 and start < self.unknown_from:
                    self.unknown_from = start
            self.starts.append(start)
            self.ends.append(end)
            self.kinds.append(kind)
            self.bodies.append(body)
            at = self.done_to = max(end, start + 1)

    def allows(self, pos: int, where: str) -> bool:
        """Whether a test's match that starts at `pos` may stand for what the analysis reads."""
        if pos >= self.done_to:
            self._read_to(pos)
        if pos >= self.unknown_from:
            return True
        i = bisect.bisect_right(self.starts, pos) - 1
        if i >= 0 and pos < self.ends[i]:
            kind = self.kinds[i]
            if kind == COMMENT:
                return False
            if kind == FSTRING:
                return True
            if where == ANYWHERE:
                return True
            if where == OPENING_QUOTE:
                return pos < self.bodies[i]
            return where == STRING_START and pos == self.bodies[i]
        if where == STRING_START or where == OPENING_QUOTE:
            return False
        if where == KEYWORD:
            # `index = (...)`, `device_ids = [...]` assign a name: no call's keyword
            return self._before(pos) in ("(", ",")
        if where == CODE:
            text = self.text
            line = max(text.rfind("\n", 0, pos), text.rfind("\r", 0, pos)) + 1
            if _DEFINED_RE.search(text, line, pos):
                return False
        return True


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
    A rejected match is searched past by one character, not by its length: it may overlap the
    match that counts."""
    if rx is None:
        i = text.find(literal)
        while i >= 0:
            if lexed.allows(i, where):
                return i
            i = text.find(literal, i + 1)
        return -1
    m = rx.search(text)
    while m is not None:
        if lexed.allows(m.start(), where):
            return m.start()
        m = rx.search(text, m.start() + 1)
    return -1
