"""What is built at first use (gpufix.deferred) and the catalogue's parsed form: the same results
as building it at import time or parsing the TOML."""

import hashlib
import json
import re

import pytest

from gpufix.catalog import read_catalogue_file
from gpufix.deferred import LazyPattern


def test_a_lazy_pattern_compiles_at_first_use_and_matches_as_the_pattern():
    lazy = LazyPattern(r"(cuda):(\d+)", re.I)
    assert "_pattern" not in lazy.__dict__  # nothing compiled by defining it
    real = re.compile(r"(cuda):(\d+)", re.I)
    text = "x = 'CUDA:1'; y = 'cuda:23'"
    assert [m.groups() for m in lazy.finditer(text)] == [m.groups() for m in real.finditer(text)]
    assert lazy.sub("gpu", text) == real.sub("gpu", text) and lazy.pattern == real.pattern and lazy.flags == real.flags
    assert lazy.compiled() is lazy.compiled() and lazy.compiled().match("cuda:0")


def _catalogue(tmp_path, toml: bytes, parsed: dict):
    (tmp_path / "x.toml").write_bytes(toml)
    entry = {"sha256": hashlib.sha256(toml).hexdigest(), "json": json.dumps(parsed)}
    (tmp_path / "catalogue.json").write_text(json.dumps({"files": {"x.toml": entry}}), encoding="utf-8")


def test_a_catalogue_file_is_read_from_its_parsed_form_only_while_its_bytes_are_the_same(tmp_path):
    # the parsed form here says something else than the TOML, to tell which one was read
    _catalogue(tmp_path, b'a = "toml"\n', {"a": "parsed"})
    assert read_catalogue_file(tmp_path / "x.toml", tmp_path) == {"a": "parsed"}
    (tmp_path / "x.toml").write_bytes(b'a = "edited"\n')  # edited after the JSON was written
    assert read_catalogue_file(tmp_path / "x.toml", tmp_path) == {"a": "edited"}
    (tmp_path / "x.toml").write_bytes(b'a = \n')
    with pytest.raises(RuntimeError, match=r"broken catalogue file .*x\.toml: Invalid value"):
        read_catalogue_file(tmp_path / "x.toml", tmp_path)
