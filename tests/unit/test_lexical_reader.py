"""gpufix.lexical finds its tokens (comments, string literals) from each `#` or quote, reading a
literal's prefix backwards: the same tokens as its token regex's own search, token for token."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gpufix.lexical import _TOKEN_RE, _token_matches

PIECES = ["'", '"', "'''", '"""', "#", "\n", "\r\n", "\r", "\\", " ", "x", "r", "b", "f", "t", "u", "R", "F", "T", "rb",
          "fr", "elif", "=", "(", "1", "é"]


def _same(text: str) -> None:
    want = [(m.span(), m.groups()) for m in _TOKEN_RE.finditer(text)]
    assert [(m.span(), m.groups()) for m in _token_matches(text)] == want, text


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_tokens_are_the_regex_search_tokens(pieces):
    _same("".join(pieces))


def test_prefixes_glued_to_words_and_tokens():
    for text in ('x = rb"a" + f\'b\' + elif"c"', 'tfr"x"', '"a"b"c"', "'x'f'y'", '# c rb\n"s"', "'open\nrb'x'",
                 'u"""doc\n"""#c', 'Rb"x"', 'br"""x', "ab'", "f", "#", "'", '"""\\"""x"""', "xbr'y'"):
        _same(text)
