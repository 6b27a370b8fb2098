"""Without a config file, a folder's project (where the policy's globs start, which files make up
the import graph) is decided by one function, gpufix.config.project_root, for the policy and the
project index alike. These layouts are where the two definitions it replaced disagreed."""

import json

from conftest import init_git_repo, run_gpufix

TOO_LATE = 'import torch\nx = torch.zeros(1, device="cuda:1")\n'
HEADER = 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'


def _write(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def _findings(root, *args):
    proc = run_gpufix("scan", ".", "--visible-devices", "1", "--format", "json", "--no-cache", *args, cwd=root)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    return [(f["path"], f["line"], f["rule"], f["message"].split(" never ")[0]) for f in json.loads(proc.stdout)["findings"]]


def test_a_repository_whose_top_folder_is_a_package_is_its_own_project(tmp_path):
    """A git repository with an `__init__.py` at its top (google-research/bert): its scripts are
    run from it, each its own process, so each must set the mask; the folders beside the
    repository are no part of it. (The index's root used to skip the package folder and its
    `.git`, so the repository was judged as the package `repo` of the folder above it, with the
    sibling project read into its graph and the diff named `a/repo/...`.)"""
    repo = _write(tmp_path / "repo", {"__init__.py": "import torch\n", "train.py": TOO_LATE})
    init_git_repo(repo)
    _write(tmp_path / "other", {"run.py": 'import os\nos.environ["CUDA_VISIBLE_DEVICES"] = "0"\nimport torch\n'})
    assert _findings(repo) == [
        ("__init__.py", 1, "GPU101", "A file outside any package"),
        ("__init__.py", 1, "GPU102", "CUDA_DEVICE_ORDER is"),
        ("train.py", 1, "GPU101", "A file outside any package"),
        ("train.py", 1, "GPU102", "CUDA_DEVICE_ORDER is"),
        ("train.py", 2, "GPU001", '"cuda:1" means physical GPU 1, which is cuda:0 under CUDA_VISIBLE_DEVICES="1"; use "cuda:0"'),
    ]
    diff = run_gpufix("apply", ".", "--visible-devices", "1", "--diff", "--no-cache", cwd=repo)
    assert diff.returncode == 1, diff.stderr
    assert [ln for ln in diff.stdout.splitlines() if ln.startswith(("--- ", "+++ "))] == [
        "--- a/__init__.py", "+++ b/__init__.py", "--- a/train.py", "+++ b/train.py"]


def test_a_setup_py_inside_a_package_starts_no_project_of_its_own(tmp_path):
    """lightning's `src/lightning/pytorch/trainer/setup.py` is a module of the package, not a
    build file: its folder's files belong to the repository's project, so the command line's
    `--exclude` globs (read from the project root) and `--show-settings` mean the same for them
    as for every other file. (The policy's root used to be the folder with the setup.py: the
    exclude did not match there, and that folder was a policy group of its own.)"""
    root = _write(tmp_path / "tree", {
        "src/pkg/__init__.py": HEADER + "import torch\n",
        "src/pkg/model.py": TOO_LATE,
        "src/pkg/sub/__init__.py": "",
        "src/pkg/sub/setup.py": "from setuptools import setup\n",
        "src/pkg/sub/generated.py": TOO_LATE,
    })
    init_git_repo(root)
    cuda1 = '"cuda:1" means physical GPU 1, which is cuda:0 under CUDA_VISIBLE_DEVICES="1"; use "cuda:0"'
    assert _findings(root) == [("src/pkg/model.py", 2, "GPU001", cuda1), ("src/pkg/sub/generated.py", 2, "GPU001", cuda1)]
    assert _findings(root, "--exclude", "src/pkg/sub/generated.py") == [("src/pkg/model.py", 2, "GPU001", cuda1)]
    shown = run_gpufix("scan", "src/pkg/sub/generated.py", "--show-settings", cwd=root)
    assert "Project root: .\n" in shown.stdout, shown.stdout
