"""A real `pip install` of the built wheel into a fresh venv: the catalogue ships inside it and
`gpufix rules` / `gpufix scan` work from any directory."""

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, WINDOWS

BIN = "Scripts" if WINDOWS else "bin"  # where a venv keeps its programs


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if os.environ.get("GPUFIX_SKIP_WHEEL_TEST"):
        pytest.skip("GPUFIX_SKIP_WHEEL_TEST is set")
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)],
                           capture_output=True, text=True, timeout=600)
    if build.returncode != 0:  # no hatchling in this environment: build in isolation
        build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(ROOT)],
                               capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    wheel = next(dist.glob("gpufix-*.whl"))
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / BIN / "python"
    inst = subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True, timeout=900)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    return env_dir, wheel


def test_wheel_contains_the_catalogue(installed):
    import zipfile

    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "gpufix/_catalog/GPU001.toml" in names
    assert "gpufix/_catalog/apis/torch.toml" in names


def test_installed_gpufix_works_from_any_directory(installed, tmp_path):
    env_dir, _ = installed
    exe = env_dir / BIN / "gpufix"
    rules = subprocess.run([str(exe), "rules"], cwd=tmp_path, capture_output=True, text=True)
    assert rules.returncode == 0, rules.stderr
    from gpufix.catalog import load_rule_docs

    assert len(rules.stdout.splitlines()) == len(load_rule_docs()) == 12
    sample = tmp_path / "superwhisper"
    shutil.copytree(FIXTURES / "superwhisper", sample)
    scan = subprocess.run([str(exe), "scan", ".", "--format", "json", "--no-cache"], cwd=sample, capture_output=True, text=True)
    assert scan.returncode == 1, scan.stderr
    assert json.loads(scan.stdout)["summary"]["findings"] == 68
    # torch and nvidia-ml-py are an optional extra: the plain install has neither
    probe = subprocess.run([str(env_dir / BIN / "python"), "-c", "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('pynvml'))"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "None None"
    check = subprocess.run([str(exe), "check", "--format", "json"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 3
    assert json.loads(check.stdout)["status"] == "unavailable"
