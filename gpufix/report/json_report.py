from __future__ import annotations

import json

from gpufix.report.document import scan_document


def render_json(result, stream, extra: dict = None) -> None:
    doc = scan_document(result)
    if extra:
        doc.update(extra)
    json.dump(doc, stream, indent=2, ensure_ascii=False)
    stream.write("\n")
