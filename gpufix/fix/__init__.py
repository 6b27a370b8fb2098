"""Fixes: a finding's `Fix` (gpufix.model: an applicability and its `Edit`s) applied to a file.

Small modules, each one job, and nothing here writes to disk (gpufix.apply does, after its git
checks and backup):

| module     | what it does                                                                      |
|------------|-----------------------------------------------------------------------------------|
| `passes`   | the driver: lint, apply the edits that combine, check it parses, lint again      |
| `python`   | Python and notebooks: `replace`/`insert` edits and the header request, through libcst |
| `header`   | the header: its lines, where it goes, and placing it as text without libcst       |
| `spans`    | the other file kinds: exact text spans (`replace-span`, `insert-text`)            |
| `textedits`| a fix as plain text edits (ranges and content) for editors and the JSON report    |

Importing this package loads nothing else: libcst is imported only by `python`.
"""

from __future__ import annotations


class FixError(Exception):
    """A fix that cannot be applied safely; the file is left unchanged."""
