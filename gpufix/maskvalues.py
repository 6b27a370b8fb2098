"""What a CUDA_VISIBLE_DEVICES value says as text, for the Python rules and the non-Python readers
alike (a leaf: no gpufix imports). It lives apart from gpufix.formats.facts so that a run judging
only Python files does not build the readers' fact types."""

from __future__ import annotations

from typing import Optional

_NO_GPU_VALUES = ("", "-1", "none", "void", "nodevfiles")


def normalized(value: str) -> str:
    return ",".join(part.strip() for part in value.strip().split(","))


def hides_all(value: Optional[str]) -> bool:
    return value is not None and value.strip().strip("'\"").lower() in _NO_GPU_VALUES
