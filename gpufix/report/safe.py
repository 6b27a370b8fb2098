"""What a repository puts in a report (file names, decoded strings, source lines) is untrusted: each
format makes it safe to print and to parse here, in one place.

* Human formats (text, concise, pylint, github): control characters, line and paragraph
  separators and bidirectional overrides are written as escapes (`\\x1b`, `\\n`, `\\u202e`), as git
  and ruff quote file names, so no value can move the cursor, recolour the terminal, set its title
  (OSC), or start a second line that a CI log would read as a workflow command (`::error ...`).
* Names that are not UTF-8 reach gpufix as `surrogateescape` strings: every format writes each
  such byte as the text `\\xNN` (valid UTF-8, valid JSON and XML), never a lone surrogate that
  crashes the encoder.
* XML 1.0 cannot hold most control characters even as references: JUnit writes them escaped too.
"""

from __future__ import annotations

import re

from gpufix.deferred import LazyPattern

# C0 controls (tab and newline included: one line per finding), DEL, C1 controls, the line and
# paragraph separators, bidi embeddings/overrides/isolates (Trojan Source), lone surrogates.
_UNSAFE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SURROGATE_RE = LazyPattern("[\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def for_terminal(value, keep: str = "") -> str:
    """`value` as one printable line: control characters and the like written as escapes; the
    characters in `keep` stay (a code frame's tabs; GitHub's own %0A escaping of line breaks)."""
    s = str(value)
    if not _UNSAFE_RE.search(s):
        return s
    return _UNSAFE_RE.sub(lambda m: m.group() if m.group() in keep else _escape_char(m.group()), s)


def utf8_text(value) -> str:
    """`value` with every byte that was not UTF-8 written as `\\xNN` (JSON formats: control
    characters are escaped by the JSON encoder itself)."""
    s = str(value)
    return _SURROGATE_RE.sub(lambda m: _escape_char(m.group()), s) if _SURROGATE_RE.search(s) else s


# XML 1.0 allows tab, LF, CR and everything from U+0020 but the surrogates and U+FFFE/U+FFFF.
_XML_UNSAFE_RE = LazyPattern("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def for_xml(value) -> str:
    s = str(value)
    return _XML_UNSAFE_RE.sub(lambda m: _escape_char(m.group()), s) if _XML_UNSAFE_RE.search(s) else s


def json_text(text: str) -> str:
    """A JSON document made with `ensure_ascii=False`, its non-UTF-8 bytes (lone surrogates, found
    only inside JSON strings) written as the escaped text `\\\\xNN`: the document stays valid UTF-8
    and valid JSON, and reads back as `\\xNN`."""
    if not _SURROGATE_RE.search(text):
        return text
    return _SURROGATE_RE.sub(lambda m: "\\" + _escape_char(m.group()), text)
