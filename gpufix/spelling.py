"""How string literals spell a value: the regex that finds a value in source text however a
literal writes it (escapes, implicit concatenation, backslash-newlines). Shared by the collectors'
declarations (gpufix.collectors) and the prefilter, which builds its fallback tests from them.
A leaf module."""

from __future__ import annotations

import re

# The analysis reads a string literal's *value*: `"cuda:\\x31"`, `"cu" "da:1"` and `"cu\\<newline>da:1"`
# are all "cuda:1". A text test that looks for the value as written misses them; `spelled` builds
# the regex that matches any spelling: each character as itself or as one of its escapes, and
# between any two characters the end of one literal and the start of the next (implicit
# concatenation, with blanks, comments and line continuations between) or a backslash-newline
# inside the literal.
BREAK = r"(?:['\"]{1,3}(?:\s|\\(?:\r\n?|\n)|#[^\r\n]*(?=[\r\n]|\Z))*[rRuUbBfF]{0,2}['\"]{1,3}|\\(?:\r\n?|\n))"
NAMED_ESCAPE = r"\\N\{[^}\n]*\}"  # \N{DIGIT ONE}: any name (a superset)


def _hex(n: int, width: int) -> str:
    return "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{n:0{width}x}")


def escapes(c: str) -> str:
    """The escapes a str literal may spell `c` with (regex alternatives)."""
    n = ord(c)
    alts = [r"\\u" + _hex(n, 4), r"\\U" + _hex(n, 8), NAMED_ESCAPE]
    if n < 256:
        alts.append(r"\\x" + _hex(n, 2))
        octal = f"{n:o}"
        alts.append(r"\\0{0,%d}%s" % (3 - len(octal), octal))
    return "|".join(alts)


def _char(c: str, ignore_case: bool) -> str:
    chars = {c, c.lower(), c.upper()} if ignore_case else {c}
    return "|".join(sorted(re.escape(x) for x in chars) + [escapes(x) for x in sorted(chars)])


def spelled(value: str, ignore_case: bool = False) -> str:
    """A regex for any spelling of `value` inside string literals."""
    return f"(?:{BREAK})*".join(f"(?:{_char(c, ignore_case)})" for c in value)
