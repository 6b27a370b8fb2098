"""Regex pieces shared by the collectors' prefilter tests."""

# What may stand between `(` / `=` / `,` / `:` and a literal: blanks, newlines, line continuations,
# comments and opening parentheses (`set_device((1))`).
GAP = r"(?:\s|\\|\(|#[^\n]*)*"
NONZERO = r"(?:0*[1-9]|0[xXbBoO_])"  # an int literal that is not 0 (0x1, 0_1, 01 too)
ANYINT = r"\d"
