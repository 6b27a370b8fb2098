"""The built wheel installed into a fresh venv (the session's, tests/conftest.py): the catalogue
ships inside it, its metadata asks for no GPU stack, and `gpufix rules` / `gpufix scan` work from
any directory."""

import json
import re
import shutil
import subprocess
import zipfile

from conftest import BIN, FIXTURES


def test_wheel_contains_the_catalogue_and_needs_no_gpu_stack(gpufix_wheel):
    with zipfile.ZipFile(gpufix_wheel) as whl:
        names = whl.namelist()
        metadata = whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "gpufix/_catalog/GPU001.toml" in names
    assert "gpufix/_catalog/apis/torch.toml" in names
    # what `pip install gpufix` installs: the requirements without an `extra ==` marker. torch and
    # nvidia-ml-py are only for `check`, an optional extra
    plain = [req for req in re.findall(r"^Requires-Dist: (.+)$", metadata, re.M) if "extra ==" not in req]
    names_required = {re.match(r"[A-Za-z0-9_.-]+", req).group().lower() for req in plain}
    assert {"libcst", "click", "rich"} <= names_required
    assert not names_required & {"torch", "nvidia-ml-py", "pynvml"}, plain


def test_installed_gpufix_works_from_any_directory(wheel_venv, tmp_path):
    exe = wheel_venv / BIN / "gpufix"
    where = subprocess.run([str(wheel_venv / BIN / "python"), "-c", "import gpufix; print(gpufix.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert str(wheel_venv) in where.stdout, where.stdout + where.stderr  # the wheel's gpufix, not this checkout
    rules = subprocess.run([str(exe), "rules"], cwd=tmp_path, capture_output=True, text=True)
    assert rules.returncode == 0, rules.stderr
    from gpufix.catalog import load_rule_docs

    assert len(rules.stdout.splitlines()) == len(load_rule_docs()) == 12
    sample = tmp_path / "superwhisper"
    shutil.copytree(FIXTURES / "superwhisper", sample)
    scan = subprocess.run([str(exe), "scan", ".", "--format", "json", "--no-cache"], cwd=sample, capture_output=True, text=True)
    assert scan.returncode == 1, scan.stderr
    assert json.loads(scan.stdout)["summary"]["findings"] == 68
    check = subprocess.run([str(exe), "check", "--format", "json"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 3
    assert json.loads(check.stdout)["status"] == "unavailable"
