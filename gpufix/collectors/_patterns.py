"""Regex pieces shared by the collectors' prefilter tests."""

# string values however they are spelled
from gpufix.spelling import BREAK, NAMED_ESCAPE, escapes, spelled  # noqa: F401  (re-exported)

# What may stand between `(` / `=` / `,` / `:` and a literal: blanks, newlines, line continuations,
# comments and opening parentheses (`set_device((1))`).
GAP = r"(?:\s|\\|\(|#[^\r\n]*(?=[\r\n]|\Z))*"  # a comment runs to its line's end: its text is never the literal
NONZERO = r"(?:0*[1-9]|0[xXbBoO_])"  # an int literal that is not 0 (0x1, 0_1, 01 too)
ANYINT = r"\d"

# after a device word: a non-zero index however spelled (`01`, `0" "1"`, an escape, a non-ASCII digit)
# the escapes of 1-9 written as ranges (one per escape form), not nine copies of `escapes`
_DIGIT = r"[1-9]|[^\x00-\x7f]|" + NAMED_ESCAPE + r"|\\(?:x3[1-9]|0?6[1-7]|0?7[01]|u003[1-9]|U0000003[1-9])"
SPELLED_INDEX = rf"(?:(?:{BREAK})*(?:0|{escapes('0')}))*(?:{BREAK})*(?:{_DIGIT})"

# the end of a literal whose whole value is compared (an environment variable, a dict key)
END_OF_LITERAL = "['\"]"
