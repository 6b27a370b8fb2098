from __future__ import annotations

import json

from gpufix.report import scan_document


def render_json(result, stream, extra: dict = None) -> None:
    from gpufix.textedits import add_fix_edits

    doc = scan_document(result)
    add_fix_edits(doc["findings"], result)  # each fix's text edits, as ruff's JSON has them
    if extra:
        doc.update(extra)
    json.dump(doc, stream, indent=2, ensure_ascii=False)
    stream.write("\n")
