"""The user's store of compiled regexes (gpufix.rxcache): a pattern from the store is the pattern
re.compile makes (equal, same matches); a store that was altered or signed by another key is not
read; a run with `--no-cache` neither reads nor writes it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from gpufix import rxcache, signing, userdirs

PATTERNS = [
    (r"cuda(?:(?<!\wcuda)\s*\(\s*(?P<ordinal>\d+)|:(\d+))", 0),
    (r"^\s*(?:export\s+)?CUDA_VISIBLE_DEVICES\s*=\s*(\S*)$", re.M),
    (r"device  # a comment in verbose mode\n  _index \s* = \s* \d", re.X),
    (r"(?i)GPU:[0-9]+", 0),
]
TEXTS = ["x.cuda( 1 )", "cuda:12", "export CUDA_VISIBLE_DEVICES=1\nrun", "device_index = 3", "/gpu:1"]


@pytest.fixture
def store(tmp_path):
    signing.read_key(os.path.join(userdirs.user_cache_dir(), signing.KEY_FILE))  # this user's key
    folder = str(tmp_path / "cache")
    yield folder
    rxcache.disable()


def _compiled(folder):
    rxcache.enable(folder)
    got = [rxcache.compile(p, f) for p, f in PATTERNS]
    missed = set(rxcache._missed)
    rxcache.save()
    rxcache.disable()
    return got, missed


def _same_as_re(got):
    for rx, (pattern, flags) in zip(got, PATTERNS):
        expected = re.compile(pattern, flags)
        assert rx == expected and rx.groupindex == expected.groupindex and rx.groups == expected.groups
        for text in TEXTS:
            assert [m.span() + m.groups() for m in rx.finditer(text)] == [m.span() + m.groups() for m in expected.finditer(text)]


def test_a_stored_pattern_is_the_one_re_compile_makes(store):
    got, missed = _compiled(store)
    assert len(missed) == len(PATTERNS)  # an empty store: every pattern compiled, then stored
    _same_as_re(got)
    again, missed = _compiled(store)
    assert not missed  # every one from the store
    _same_as_re(again)


@pytest.mark.parametrize("tamper", ["altered", "other key"])
def test_a_store_that_was_altered_or_planted_is_not_read(store, tamper):
    _compiled(store)
    path = [os.path.join(store, n) for n in os.listdir(store) if n.startswith("regexes-")][0]
    raw = open(path, "rb").read()
    if tamper == "altered":
        raw = raw[:-1] + bytes([raw[-1] ^ 1])
        with open(path, "wb") as fh:
            fh.write(raw)
    else:
        signing.write_signed(path, b"k" * 32, rxcache._PROJECT, raw.partition(b"\n")[2])
    got, missed = _compiled(store)
    assert len(missed) == len(PATTERNS)  # nothing read from it
    _same_as_re(got)


def _scan(root, env, *args):
    return subprocess.run([sys.executable, "-m", "gpufix", "scan", "--visible-devices", "1", "--exit-zero", *args, "train.py"],
                          cwd=root, env=env, capture_output=True, text=True, check=True).stdout


def test_a_scan_with_the_cache_stores_its_regexes_and_one_without_writes_none(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "train.py").write_text('import torch\n\nmodel.to("cuda:1")\ntorch.cuda.set_device(1)\n')
    cache = tmp_path / "cache"
    env = {**os.environ, "GPUFIX_CACHE_DIR": str(cache), "PYTHONPATH": os.path.dirname(os.path.dirname(rxcache.__file__))}
    cold = _scan(root, env, "--no-cache")
    assert "GPU001" in cold and not (cache.is_dir() and any(n.startswith("regexes-") for n in os.listdir(cache)))
    assert _scan(root, env) == cold  # makes the key and the result cache: the store is written
    assert any(n.startswith("regexes-") for n in os.listdir(cache))
    (root / "train.py").write_text('import torch\n\nmodel.to("cuda:1")\ntorch.cuda.set_device(1)\n# edited\n')
    assert _scan(root, env) == cold  # the edited file judged with the stored regexes

