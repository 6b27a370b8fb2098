from __future__ import annotations

import json

from gpufix.report import scan_document
from gpufix.report.safe import json_text


def render_json(result, stream, extra: dict = None) -> None:
    doc = scan_document(result)
    if extra:
        doc.update(extra)
    stream.write(json_text(json.dumps(doc, indent=2, ensure_ascii=False)) + "\n")
