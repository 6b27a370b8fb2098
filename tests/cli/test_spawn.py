"""scan and apply under the `spawn` start method, the one Windows (and macOS) use: workers are fresh
interpreters that import gpufix and unpickle the policy and the project index. The results must be
those of forked workers and of a single process, byte for byte."""

from __future__ import annotations

import json
import shutil

from conftest import init_git_repo, run_gpufix

SPAWN = {"GPUFIX_START_METHOD": "spawn"}
FORK = {"GPUFIX_START_METHOD": "fork"}


def _project(root):
    root.mkdir()
    (root / "pyproject.toml").write_text('[tool.gpufix]\nvisible-devices = "1"\n')
    pkg = root / "app"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for i in range(40):
        (pkg / f"m{i}.py").write_text(f"import torch\n\ndef f{i}():\n    return torch.zeros(1, device='cuda:{i % 3}')\n")
    for i in range(20):
        (root / f"run{i}.py").write_text(
            "import argparse\nimport torch\n"
            f"p = argparse.ArgumentParser()\np.add_argument('--gpu', type=int, default={i % 2})\n"
            "a = p.parse_args()\ntorch.cuda.set_device(a.gpu)\n")
    (root / "run_all.ps1").write_bytes(b'$env:CUDA_VISIBLE_DEVICES = "0"\r\npython run1.py --gpu 1\r\n')
    (root / "run_all.bat").write_bytes(b"set CUDA_VISIBLE_DEVICES=0\r\npython run3.py --gpu 1\r\n")
    init_git_repo(root)
    return root


def _scan(root, env, jobs):
    proc = run_gpufix("scan", ".", "--format", "json", "--no-cache", "--jobs", str(jobs), cwd=root, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.parts and ".gpufix" not in p.parts}


def test_scan_and_apply_under_spawn_equal_fork_and_one_process(tmp_path):
    root = _project(tmp_path / "p")
    spawned = _scan(root, SPAWN, 2)
    assert len(spawned["findings"]) > 60
    assert spawned == _scan(root, FORK, 2) == _scan(root, SPAWN, 1)
    # the launchers are read in the spawned run too: run1's default is withheld, run3's as well
    withheld = sorted(f["path"] for f in spawned["findings"] if "pass it to this script" in f["message"]
                      or "passes it to this script" in f["message"])
    assert withheld == ["run1.py", "run3.py"]

    original = _tree(root)
    copy = tmp_path / "q"
    shutil.copytree(root, copy)
    for where, env in ((root, SPAWN), (copy, FORK)):
        proc = run_gpufix("apply", ".", "--no-backup", "--no-tag", "--no-cache", "--jobs", "2", cwd=where, env=env)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert _tree(root) == _tree(copy)
    changed = sorted(k for k, v in _tree(root).items() if original.get(k) != v)
    assert "run5.py" in changed and "run_all.ps1" in changed and "run_all.bat" in changed
    assert "run1.py" not in changed or b"default=1)" in _tree(root)["run1.py"]  # its default is withheld
