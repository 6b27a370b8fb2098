"""`gpufix apply` and `gpufix restore` on real files, in real git repositories."""

import json
import os
import stat

from conftest import POSIX_ONLY, git, init_git_repo, run_gpufix, snapshot

# the plain header form; the CPU-run-keeping default form is tested in test_precision.py
POLICY = '[tool.gpufix]\nvisible-devices = "1"\ncpu-runs = "override"\n'
BAD = "import torch\n\ntorch.cuda.set_device(1)\n"
FIXED = (
    'import os\n\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n\n'
    "import torch\n\ntorch.cuda.set_device(0)\n"
)


def test_apply_fixes_backs_up_and_tags(gitrepo):
    repo = gitrepo({"pyproject.toml": POLICY, "app.py": BAD})
    head = git(repo, "rev-parse", "HEAD").strip()
    proc = run_gpufix("apply", "--format", "json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (repo / "app.py").read_text() == FIXED
    assert out["changed_files"] == [{"path": "app.py", "rules": ["GPU001", "GPU101", "GPU102"], "fixed": 3}]
    assert out["remaining"] == [] and out["summary"]["findings"] == 0
    backup = repo / out["backup"]["dir"]
    assert (backup / "app.py").read_text() == BAD
    manifest = json.loads((backup / "manifest.json").read_text())
    assert set(manifest) >= {"id", "created", "files"} and manifest["id"] == out["backup"]["id"]
    import hashlib
    assert manifest["files"] == [{"path": "app.py", "sha256_before": hashlib.sha256(BAD.encode()).hexdigest(),
                                  "sha256_after": hashlib.sha256(FIXED.encode()).hexdigest()}]
    assert git(repo, "rev-parse", out["git_tag"] + "^{commit}").strip() == head
    # the second run has nothing to do
    again = run_gpufix("apply", "--format", "json", "--allow-dirty", cwd=repo)
    assert again.returncode == 0 and json.loads(again.stdout)["changed_files"] == []


def test_dirty_tree_is_refused_and_nothing_is_written(gitrepo):
    repo = gitrepo({"pyproject.toml": POLICY, "app.py": BAD, "other.py": BAD})
    (repo / "app.py").write_text(BAD + "# local edit\n")
    before = snapshot(repo)
    proc = run_gpufix("apply", cwd=repo)
    assert proc.returncode == 2
    assert "uncommitted changes" in proc.stderr and "app.py" in proc.stderr and "--allow-dirty" in proc.stderr
    assert snapshot(repo) == before
    assert not (repo / ".gpufix").exists() and git(repo, "tag") == ""
    ok = run_gpufix("apply", "--allow-dirty", cwd=repo)
    assert ok.returncode == 0, ok.stderr
    assert (repo / "other.py").read_text() == FIXED


def test_untracked_file_counts_as_dirty(gitrepo):
    repo = gitrepo({"pyproject.toml": POLICY})
    (repo / "new.py").write_text(BAD)
    proc = run_gpufix("apply", cwd=repo)
    assert proc.returncode == 2 and "new.py" in proc.stderr
    assert (repo / "new.py").read_text() == BAD


def test_outside_git_warns_and_still_backs_up(tmp_path):
    (tmp_path / "pyproject.toml").write_text(POLICY)
    (tmp_path / "app.py").write_text(BAD)
    proc = run_gpufix("apply", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0
    assert "not inside a git work tree" in proc.stderr
    out = json.loads(proc.stdout)
    assert out["git_tag"] is None and out["backup"]["id"]
    assert (tmp_path / out["backup"]["dir"] / "app.py").read_text() == BAD
    assert run_gpufix("restore", cwd=tmp_path).returncode == 0
    assert (tmp_path / "app.py").read_text() == BAD
    (tmp_path / "again.py").write_text(BAD)
    quiet = run_gpufix("apply", "--no-tag", cwd=tmp_path)
    assert quiet.returncode == 0 and "git" not in quiet.stderr  # --no-tag: nothing to warn about
    assert "Fixed 6 finding(s) in 2 file(s)." in quiet.stdout


def test_diff_prints_and_writes_nothing(gitrepo):
    repo = gitrepo({"pyproject.toml": POLICY, "app.py": BAD})
    before = snapshot(repo)
    proc = run_gpufix("apply", "--diff", cwd=repo)
    assert proc.returncode == 1
    assert proc.stdout.startswith("--- a/app.py\n+++ b/app.py\n")
    assert "-torch.cuda.set_device(1)\n+torch.cuda.set_device(0)\n" in proc.stdout
    assert snapshot(repo) == before and not (repo / ".gpufix").exists() and git(repo, "tag") == ""


def test_no_backup_no_tag(gitrepo):
    repo = gitrepo({"pyproject.toml": POLICY, "app.py": BAD})
    proc = run_gpufix("apply", "--no-backup", "--no-tag", "--format", "json", cwd=repo)
    out = json.loads(proc.stdout)
    assert (out["backup"], out["git_tag"]) == (None, None)
    assert not (repo / ".gpufix" / "backups").exists() and git(repo, "tag") == ""
    assert (repo / "app.py").read_text() == FIXED


@POSIX_ONLY  # file modes (0o755)
def test_mode_crlf_bom_and_latin1_are_kept(gitrepo):
    latin1 = "# -*- coding: latin-1 -*-\n# caf\xe9\nimport torch\nx = 'cuda:1'\n".encode("latin-1")
    crlf = BAD.replace("\n", "\r\n").encode()
    bom = b"\xef\xbb\xbf" + BAD.encode()
    repo = gitrepo({"pyproject.toml": POLICY, "l.py": latin1, "c.py": crlf, "b.py": bom})
    os.chmod(repo / "c.py", 0o755)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "mode")
    assert run_gpufix("apply", cwd=repo).returncode == 0
    assert (repo / "c.py").read_bytes() == FIXED.replace("\n", "\r\n").encode()
    assert stat.S_IMODE(os.stat(repo / "c.py").st_mode) == 0o755
    assert (repo / "b.py").read_bytes() == b"\xef\xbb\xbf" + FIXED.encode()
    assert (repo / "l.py").read_bytes() == (
        "# -*- coding: latin-1 -*-\n# caf\xe9\nimport os\n\nos.environ[\"CUDA_DEVICE_ORDER\"] = \"PCI_BUS_ID\"\n"
        "os.environ[\"CUDA_VISIBLE_DEVICES\"] = \"1\"\n\nimport torch\nx = 'cuda:0'\n"
    ).encode("latin-1")


@POSIX_ONLY  # chmod 0o444 read-only semantics
def test_read_only_and_unparsable_files_are_left_alone(gitrepo):
    repo = gitrepo({"pyproject.toml": POLICY, "ro.py": BAD, "broken.py": "import torch\nx = 'cuda:1'\ndef f(:\n", "ok.py": BAD})
    os.chmod(repo / "ro.py", 0o444)
    proc = run_gpufix("apply", "--format", "json", cwd=repo)
    out = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert [c["path"] for c in out["changed_files"]] == ["ok.py"]
    kinds = {e["path"]: e for e in out["errors"]}
    assert kinds["broken.py"]["kind"] == "syntax-error" and kinds["broken.py"]["line"] == 3
    assert "read-only" in kinds["ro.py"]["message"]
    assert (repo / "ro.py").read_text() == BAD
    assert (repo / "broken.py").read_text() == "import torch\nx = 'cuda:1'\ndef f(:\n"


def test_notebook_fixed_cell_by_cell_keeping_metadata_and_outputs(gitrepo):
    nb = {
        "cells": [
            {"cell_type": "markdown", "metadata": {"tags": ["intro"]}, "source": ["# Whisper on the 3090\n"]},
            {"cell_type": "code", "execution_count": 1, "metadata": {"id": "c1"},
             "outputs": [{"output_type": "stream", "name": "stdout", "text": ["hello\n"]}],
             "source": ["!nvidia-smi\n", "import torch\n", "print('hello')"]},
            {"cell_type": "code", "execution_count": 2, "metadata": {}, "outputs": [],
             "source": ["model = torch.nn.Linear(2, 2).to('cuda:1')"]},
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    repo = gitrepo({"pyproject.toml": POLICY, "nb.ipynb": json.dumps(nb, indent=1) + "\n"})
    proc = run_gpufix("apply", "--format", "json", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    new = json.loads((repo / "nb.ipynb").read_text())
    assert new["metadata"] == nb["metadata"] and new["cells"][0] == nb["cells"][0]
    assert new["cells"][1]["outputs"] == nb["cells"][1]["outputs"] and new["cells"][1]["metadata"] == {"id": "c1"}
    assert "".join(new["cells"][1]["source"]) == (
        '!nvidia-smi\nimport os\n\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n\n'
        "import torch\nprint('hello')"
    )
    assert new["cells"][2]["source"] == ["model = torch.nn.Linear(2, 2).to('cuda:0')"]


def test_notebook_cells_ending_in_blank_lines_keep_them(gitrepo):
    """A code cell whose source ends with a blank line ("...\\n", "\\n") keeps it byte for byte,
    whether apply rewrites that cell or another one (bark's long_form_generation.ipynb lost the
    blank line of a cell that no fix touched)."""
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
             "source": ["import torch\n", "\n"]},
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
             "source": ["for i in range(2):\n", "    print(i)\n", "\n", "\n"]},
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
             "source": ["x = 'cuda:1'\n", "\n"]},
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }
    repo = gitrepo({"pyproject.toml": POLICY, "nb.ipynb": json.dumps(nb, indent=1) + "\n"})
    proc = run_gpufix("apply", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header = ["import os\n", "\n", 'os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n',
              'os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n', "\n"]
    nb["cells"][0]["source"] = header + nb["cells"][0]["source"]
    nb["cells"][2]["source"] = ["x = 'cuda:0'\n", "\n"]
    assert (repo / "nb.ipynb").read_text() == json.dumps(nb, indent=1) + "\n"


def test_notebook_in_its_own_layout_changes_only_the_fixed_cells_source(gitrepo):
    """A notebook not laid out as json.dumps lays it out (TTS's TestAttention.ipynb: `"cells": [{`,
    4 spaces; here also `\\u` escapes and CRLF) keeps every byte but those of the sources it fixes."""
    raw = (
        '{\r\n    "cells": [{\r\n            "cell_type": "markdown",\r\n            "metadata": {},\r\n'
        '            "source": ["# caf\\u00e9"]\r\n        },\r\n'
        '        {\r\n            "cell_type": "code",\r\n            "execution_count": null,\r\n'
        '            "metadata": {"collapsed": false},\r\n            "outputs": [],\r\n'
        '            "source": [\r\n                "import torch\\n",\r\n                "x = \'cuda:1\'"\r\n'
        '            ]\r\n        },\r\n'
        '        {"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [], "source": "y = \'cuda:1\'"}\r\n'
        '    ],\r\n    "metadata": {},\r\n    "nbformat": 4,\r\n    "nbformat_minor": 2\r\n}'
    )
    repo = gitrepo({"pyproject.toml": POLICY})
    (repo / "nb.ipynb").write_bytes(raw.encode())
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "nb")
    proc = run_gpufix("apply", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header = ('"import os\\n",\r\n                "\\n",\r\n'
              '                "os.environ[\\"CUDA_DEVICE_ORDER\\"] = \\"PCI_BUS_ID\\"\\n",\r\n'
              '                "os.environ[\\"CUDA_VISIBLE_DEVICES\\"] = \\"1\\"\\n",\r\n                "\\n",\r\n'
              '                "import torch\\n",\r\n                "x = \'cuda:0\'"')
    want = (raw.replace('"import torch\\n",\r\n                "x = \'cuda:1\'"', header)
            .replace('"source": "y = \'cuda:1\'"', '"source": "y = \'cuda:0\'"'))
    assert (repo / "nb.ipynb").read_bytes() == want.encode()


def test_restore_refuses_a_file_changed_since_apply_unless_forced(gitrepo):
    repo = gitrepo({"pyproject.toml": POLICY, "a.py": BAD, "b.py": BAD})
    out = json.loads(run_gpufix("apply", "--format", "json", cwd=repo).stdout)
    (repo / "b.py").write_text(FIXED + "# edited after the apply\n")
    proc = run_gpufix("restore", out["backup"]["id"], cwd=repo)
    assert proc.returncode == 2 and "b.py" in proc.stderr and "--force" in proc.stderr
    assert (repo / "a.py").read_text() == FIXED  # nothing restored
    forced = run_gpufix("restore", "--force", cwd=repo)
    assert forced.returncode == 0, forced.stderr
    assert (repo / "a.py").read_text() == BAD and (repo / "b.py").read_text() == BAD
    assert "restored: a.py" in forced.stdout


def test_unsafe_fixes_only_on_request(gitrepo):
    src = 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ.setdefault("CUDA_VISIBLE_DEVICES", "1")\nimport torch\n'
    repo = gitrepo({"pyproject.toml": POLICY, "a.py": src})
    proc = run_gpufix("apply", cwd=repo)
    assert proc.returncode == 1 and (repo / "a.py").read_text() == src
    proc = run_gpufix("apply", "--unsafe-fixes", cwd=repo)
    assert proc.returncode == 0
    assert (repo / "a.py").read_text() == src.replace('os.environ.setdefault("CUDA_VISIBLE_DEVICES", "1")', 'os.environ["CUDA_VISIBLE_DEVICES"] = "1"')


def test_remaining_findings_are_those_of_a_fresh_scan_of_the_written_files(gitrepo):
    """apply reports what is left from the lint its last fixing pass made of the bytes it wrote
    (no second lint): that must be exactly what a scan of the written tree finds."""
    files = {
        "pyproject.toml": POLICY,
        "hidden.py": "import torch\n\nx = torch.device('cuda:5')\n",  # header added, GPU 5 stays reported
        "late.py": "import torch\nimport os\n\nos.environ['CUDA_VISIBLE_DEVICES'] = '1'\ntorch.cuda.set_device(1)\n",
        "clean.py": "print('no gpu')\n",
        "app.py": BAD,
    }
    repo = gitrepo(files)
    proc = run_gpufix("apply", "--format", "json", cwd=repo)
    out = json.loads(proc.stdout)
    scan = json.loads(run_gpufix("scan", "--format", "json", cwd=repo).stdout)
    assert out["remaining"] == scan["findings"] and out["remaining"]
    assert [(f["path"], f["rule"]) for f in out["remaining"]] == [("hidden.py", "GPU001")]
    assert {f["path"]: f["fixed"] for f in out["changed_files"]} == {"app.py": 3, "hidden.py": 2, "late.py": 3}
