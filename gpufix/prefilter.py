"""The cheap text test that decides whether a file is worth parsing at all.

It must be a superset: a file it rejects can hold no finding. It looks for the mask variables, the
shapes of literal device ordinals in catalogued calls, and (for the header rules) a GPU framework
name plus, in `entrypoints` scope, a sign that the file is an entrypoint.
"""

from __future__ import annotations

import functools
import os
import re

from gpufix.catalog import ApiCatalog

# Callee names too common to parse every file that mentions them; for these the prefilter looks
# for the call shape with a literal non-zero ordinal right after the parenthesis or the comma.
_COMMON_NAMES = {"device", "to", "cuda", "Device", "Stream", "pipeline", "load_model", "synchronize", "current_stream", "default_stream"}
_NONZERO = r"\(?\s*0*[1-9]"
TEST_NAME_RE = re.compile(r"^(test_.*\.py|.*_test\.py|conftest\.py)$")


@functools.lru_cache(maxsize=16)
def _compiled(catalog: ApiCatalog):
    words = set()
    shapes = [r"cuda:0*[1-9]", r"(?i:GPU):0*[1-9]", r"CUDA_VISIBLE_DEVICES", r"CUDA_DEVICE_ORDER"]
    for api in catalog.apis:
        name = api.last_name
        for spec in api.args:
            if spec.keyword:
                if spec.value in ("ordinal", "nvml-index"):
                    shapes.append(rf"\b{re.escape(spec.keyword)}\s*=\s*{_NONZERO}")
                    shapes.append(rf"\b{re.escape(spec.keyword)}\s*=\s*[\[(]")  # a list of ordinals
                else:
                    words.add(spec.keyword)
            if spec.position is not None and name != "*":
                if name in _COMMON_NAMES:
                    if spec.position == 0:
                        shapes.append(rf"\b{re.escape(name)}\s*\(\s*{_NONZERO}")
                    else:
                        shapes.append(rf"\b{re.escape(name)}\s*\([^()]*,\s*{_NONZERO}")
                else:
                    words.add(name)
    for key in catalog.dict_keys:
        shapes.append(rf"['\"]{re.escape(key)}['\"]\s*:\s*{_NONZERO}")
    if words:
        shapes.append(r"\b(?:" + "|".join(sorted(map(re.escape, words))) + r")\b")
    ordinal_rx = re.compile("|".join(shapes))
    roots = sorted({m.split(".")[0] for m in catalog.framework_modules})
    framework_rx = re.compile(r"\b(?:" + "|".join(map(re.escape, roots)) + r")\b")
    return ordinal_rx, framework_rx


def is_entrypoint_name(path: str) -> bool:
    return path.endswith(".ipynb") or bool(TEST_NAME_RE.match(os.path.basename(path)))


def may_have_findings(text: str, path: str, scope: str, catalog: ApiCatalog) -> bool:
    if scope == "all":
        return True
    ordinal_rx, framework_rx = _compiled(catalog)
    if ordinal_rx.search(text):
        return True
    if not framework_rx.search(text):
        return False
    if scope == "gpu-modules":
        return True
    return is_entrypoint_name(path) or text.startswith("#!") or "__main__" in text
