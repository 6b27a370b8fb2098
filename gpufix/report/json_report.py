from __future__ import annotations

import json

from gpufix.report.document import scan_document
from gpufix.report.safe import json_text


def render_json(result, stream, extra: dict = None) -> None:
    from gpufix.fix.textedits import add_fix_edits

    doc = scan_document(result)
    add_fix_edits(doc["findings"], result)  # each fix's text edits, as ruff's JSON has them
    if extra:
        doc.update(extra)
    stream.write(json_text(json.dumps(doc, indent=2, ensure_ascii=False)) + "\n")
