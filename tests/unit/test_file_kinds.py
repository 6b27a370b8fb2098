"""File kinds are one list (gpufix.kinds.ALL_KINDS): every kind there is accepted by the policy's
`file-kinds`, picked up by a folder scan restricted to it, and read by its reader (a mask that
conflicts with the policy is reported in it); every kind a file name maps to is in the list. A kind
added to one place and forgotten in another fails here instead of being silently unread."""

from __future__ import annotations

import json

import pytest

from gpufix import kinds
from gpufix.config import FILE_KINDS, ConfigError, file_kinds, load_policy
from gpufix.engine import Options, scan

# One file of each kind that sets the mask to "0" (the policy below says "1": GPU103).
EXAMPLES = {
    "python": ("app.py", 'import os\nos.environ["CUDA_VISIBLE_DEVICES"] = "0"\nimport torch\n'),
    "notebook": ("nb.ipynb", json.dumps({"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                                                    "source": ['import os\n', 'os.environ["CUDA_VISIBLE_DEVICES"] = "0"\n', "import torch\n"]}],
                                         "metadata": {}, "nbformat": 4, "nbformat_minor": 5})),
    "shell": ("run.sh", "export CUDA_VISIBLE_DEVICES=0\npython train.py\n"),
    "dockerfile": ("Dockerfile", "FROM python:3.11\nENV CUDA_VISIBLE_DEVICES=0\n"),
    "dotenv": (".env", "CUDA_VISIBLE_DEVICES=0\n"),
    "yaml": ("compose.yaml", "services:\n  app:\n    environment:\n      CUDA_VISIBLE_DEVICES: \"0\"\n"),
    "json": ("launch.json", '{"configurations": [{"env": {"CUDA_VISIBLE_DEVICES": "0"}}]}\n'),
    "toml": ("run.toml", '[env]\nCUDA_VISIBLE_DEVICES = "0"\n'),
    "powershell": ("run_all.ps1", '$env:CUDA_VISIBLE_DEVICES = "0"\r\npython train.py\r\n'),
    "batch": ("run_all.bat", "@echo off\r\nset CUDA_VISIBLE_DEVICES=0\r\npython train.py\r\n"),
}


def test_every_kind_has_an_example_here():
    assert set(EXAMPLES) == set(kinds.ALL_KINDS)
    assert FILE_KINDS == kinds.ALL_KINDS  # the policy's list is the one list
    assert set(kinds.PYTHON_KINDS) | set(kinds.TEXT_KINDS) == set(kinds.ALL_KINDS)
    assert set(kinds.CONFIG_KINDS) <= set(kinds.TEXT_KINDS)


def test_every_kind_a_name_maps_to_is_in_the_list():
    names = [name for name, _ in EXAMPLES.values()] + ["x.bash", "x.zsh", "x.yml", "Dockerfile.gpu", "x.Dockerfile",
                                                        "Containerfile", ".env.local", "prod.env",
                                                        "dockerfile", "Upper.PY", "x.psm1", "RUN.CMD"]
    for name in names:
        assert kinds.kind_of(name) in kinds.ALL_KINDS, name
    assert set(kinds._EXT.values()) <= set(kinds.ALL_KINDS)


@pytest.mark.parametrize("kind", kinds.ALL_KINDS)
def test_a_kind_is_accepted_discovered_and_read(kind, tmp_path, monkeypatch):
    assert file_kinds([kind], "test") == (kind,)
    with pytest.raises(ConfigError):
        file_kinds([kind + "-not-a-kind"], "test")
    (tmp_path / "gpufix.toml").write_text(f'visible-devices = "1"\nfile-kinds = ["{kind}"]\n', encoding="utf-8")
    for other, (name, text) in EXAMPLES.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    policy = load_policy(["."])
    res = scan(["."], policy, Options(use_cache=False, jobs=1))
    assert [r.path for r in res.results] == [EXAMPLES[kind][0]]  # discovered: this kind only
    assert not res.errors
    assert [f.rule for f in res.findings if f.rule == "GPU103"] == ["GPU103"]  # read by its reader


def _kind_regex_first(name: str):
    """The name test as it was written first: the Dockerfile regex on every name."""
    import os

    if kinds._DOCKERFILE_RE.match(name):
        return "dockerfile"
    low = name.lower()
    if low == ".env" or low.startswith(".env."):
        return "dotenv"
    return kinds._EXT.get(os.path.splitext(name)[1].lower())


TRICKY_NAMES = [
    "Dockerfile", "dockerfile", "DOCKERFILE", "Dockerfile.dev", "Dockerfile.", "Dockerfile.py", "app.Dockerfile",
    ".Dockerfile", "x.DOCKERFILE", "Containerfile", "containerfile.gpu", "Dockerfile\n", "Dockerfile.\n", "a\n.Dockerfile",
    "DOCKERFİLE", "dockerfıle", "Doc\u212aerfile", "Dockerfile2", "notDockerfile", "file", "LE.py", "run.PY", ".env",
    ".ENV.local", "a.env", "..py", ".py", "x.", "Makefile", "compose.YML", "setup.cfg", "RUN.BAT", "x.Psm1",
    ".a.py", "...", "a..py", "..a.sh", ".bashrc", "x.tar.json", "İ.PY", "a.py.", "a. py", "noext",
]


def test_the_name_test_is_the_regex_first_one():
    # kind_of_name runs the Dockerfile regex only on names holding "le" (re.I matches only L/l and
    # E/e there; İ and ı match i, the Kelvin sign k), and finds the suffix without splitext: the
    # same kinds as the regex on every name and splitext
    for name in TRICKY_NAMES:
        assert kinds.kind_of_name(name) == _kind_regex_first(name) == kinds.kind_of("some/dir/" + name), name
    assert kinds.kind_of_name("DOCKERFİLE") == kinds.kind_of_name("Doc\u212aerfile") == "dockerfile"
