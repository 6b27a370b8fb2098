"""The pre-commit hooks (.pre-commit-hooks.yaml), run by the real `pre-commit` against a real git
repository: `gpufix` fails on a bad file and shows the finding, `gpufix-fix` rewrites it (and fails,
as formatters do), then both pass.

pre-commit installs hooks from a git commit. `pre-commit try-repo` would pick up only tracked and
staged changes of this checkout (not new files such as the hooks file itself while uncommitted) and
reinstalls its environment on every call, so the test snapshots the working tree as it is (tracked
and untracked, not ignored, files) into a throw-away repository, commits it, and points a
`.pre-commit-config.yaml` at that commit. PRE_COMMIT_HOME is one temporary directory for the module,
so the hook environment is pip-installed once.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, git, init_git_repo, run_gpufix

PRE_COMMIT = shutil.which("pre-commit", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))

BAD = b"import torch\n\ntorch.cuda.set_device(1)\n"
FIXED = (
    b"import os\n"
    b"\n"
    b'os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n'
    b'os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'
    b"\n"
    b"import torch\n"
    b"\n"
    b"torch.cuda.set_device(0)\n"
)
POLICY = '[tool.gpufix]\nvisible-devices = "1"\ncpu-runs = "override"\n'


def test_hooks_file_declares_both_hooks():
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"gpufix", "gpufix-fix"}
    assert hooks["gpufix"]["entry"] == "gpufix scan --force-exclude"
    assert hooks["gpufix-fix"]["entry"].split() == [
        "gpufix", "apply", "--force-exclude", "--no-backup", "--no-tag", "--allow-dirty", "--exit-non-zero-on-fix",
        "--remaining", "count"]
    # one process per hook: one report, one summary (pre-commit otherwise splits the files per core)
    assert hooks["gpufix-fix"]["require_serial"] is True
    assert hooks["gpufix"]["require_serial"] is True
    for hook in hooks.values():
        assert hook["language"] == "python"
        assert hook["types_or"] == ["python", "jupyter", "shell", "dockerfile", "dotenv", "yaml", "json", "toml", "powershell", "batch"]
        assert hook.get("pass_filenames", True) is True


def _snapshot_checkout(dest: Path) -> str:
    """Copy this checkout's working tree (tracked + untracked, not ignored) to `dest`; commit; return the sha."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode("utf-8").split("\0")
    for rel in filter(None, listing):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    init_git_repo(dest)
    return git(dest, "rev-parse", "HEAD").strip()


@pytest.fixture(scope="module")
def precommit(tmp_path_factory):
    """(run, project): `run(*args)` runs pre-commit in `project`, a git repository using both hooks."""
    if PRE_COMMIT is None:
        pytest.skip("pre-commit is not installed (pip install pre-commit)")
    base = tmp_path_factory.mktemp("precommit")
    hooks_repo = base / "gpufix-src"
    hooks_repo.mkdir()
    rev = _snapshot_checkout(hooks_repo)
    project = base / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(POLICY)
    (project / ".pre-commit-config.yaml").write_text(
        "repos:\n"
        f"  - repo: {hooks_repo.as_posix()}\n"
        f"    rev: {rev}\n"
        "    hooks:\n"
        "      - id: gpufix\n"
        "      - id: gpufix-fix\n"
    )
    init_git_repo(project)
    env = dict(os.environ, PRE_COMMIT_HOME=str(base / "pre-commit-home"), NO_COLOR="1", PRE_COMMIT_COLOR="never")
    env.pop("GPUFIX_DEBUG", None)

    def run(*args):
        return subprocess.run([PRE_COMMIT, *args], cwd=project, env=env, capture_output=True, text=True, timeout=900)

    return run, project


def test_precommit_lints_fixes_then_passes(precommit):
    run, project = precommit
    bad = project / "train.py"
    bad.write_bytes(BAD)
    (project / "util.py").write_text("def add(a, b):\n    return a + b\n")
    git(project, "add", "-A")

    lint = run("run", "gpufix", "--all-files")
    out = lint.stdout + lint.stderr
    assert lint.returncode == 1, out
    assert "train.py:3:23: GPU001" in out and "GPU101" in out and "GPU102" in out, out
    assert "util.py:" not in out, out  # the clean file has no finding
    assert bad.read_bytes() == BAD  # the lint hook writes nothing

    fix = run("run", "gpufix-fix", "--all-files")
    out = fix.stdout + fix.stderr
    assert fix.returncode == 1, out  # it changed a file: fail, so that the change is reviewed and staged
    assert "Fixed 3 finding(s) in 1 file(s)." in out, out
    assert bad.read_bytes() == FIXED
    assert not (project / ".gpufix" / "backups").exists()  # --no-backup
    assert git(project, "tag", "--list") == ""  # --no-tag

    git(project, "add", "-A")
    clean = run("run", "--all-files")
    out = clean.stdout + clean.stderr
    assert clean.returncode == 0, out
    assert out.count("Passed") == 2, out
    assert bad.read_bytes() == FIXED


def test_fix_hook_leaves_excluded_files_and_reports_once(precommit):
    """pre-commit names every staged file, excluded ones too: --force-exclude keeps the config's
    `exclude` in force; require_serial makes one process, so one "Fixed ..." line for all files."""
    run, project = precommit
    (project / "pyproject.toml").write_text(POLICY + 'exclude = ["vendored/"]\n')
    (project / "vendored").mkdir()
    (project / "vendored" / "lib.py").write_bytes(BAD)
    for n in range(4):
        (project / f"job{n}.py").write_bytes(BAD)
    git(project, "add", "-A")
    fix = run("run", "gpufix-fix", "--all-files")
    out = fix.stdout + fix.stderr
    assert fix.returncode == 1, out
    assert (project / "vendored" / "lib.py").read_bytes() == BAD
    assert all((project / f"job{n}.py").read_bytes() == FIXED for n in range(4))
    assert out.count("Fixed ") == 1 and "Fixed 12 finding(s) in 4 file(s)." in out, out
    lint = run("run", "gpufix", "--all-files")
    assert lint.returncode == 0, lint.stdout + lint.stderr


UNFIXABLE = (b'import os\n\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n\n'
             b"import pynvml\nimport torch\n\nh = pynvml.nvmlDeviceGetHandleByIndex(0)\ntorch.cuda.set_device(1)\n")


def test_both_hooks_print_each_finding_once_and_one_summary_each(precommit):
    """The recommended pair (gpufix-fix, then gpufix) on many files: the finding no fix removes is
    printed once (by the lint hook), and each hook prints one summary, not one per batch."""
    run, project = precommit
    for n in range(8):
        (project / f"nv{n}.py").write_bytes(UNFIXABLE)
    git(project, "add", "-A")
    both = run("run", "--all-files")
    out = both.stdout + both.stderr
    assert both.returncode == 1, out
    for n in range(8):
        assert out.count(f"nv{n}.py:9:39: GPU003") == 1, out
        assert (project / f"nv{n}.py").read_bytes() == UNFIXABLE.replace(b"set_device(1)", b"set_device(0)")
    assert out.count("Fixed ") == 1 and "Fixed 8 finding(s) in 8 file(s)." in out, out
    assert out.count("finding(s) remaining in") == 1, out
    assert "8 finding(s) remaining in 8 of " in out and "; `gpufix scan` lists them." in out, out
    # the fixture lists gpufix before gpufix-fix: the lint hook saw the fixable GPU001 too
    assert out.count("Found ") == 1 and "Found 16 finding(s) in 8 of " in out, out
    git(project, "rm", "-q", "-f", *[f"nv{n}.py" for n in range(8)])


def test_fix_hook_command_exit_codes(tmp_path):
    """`apply --exit-non-zero-on-fix` exits 1 when it changed a file (even though nothing is left)
    and 0 once the file is clean; without the flag a complete fix exits 0."""
    (tmp_path / "pyproject.toml").write_text(POLICY)
    bad = tmp_path / "train.py"
    bad.write_bytes(BAD)
    args = ("apply", "--no-backup", "--no-tag", "--allow-dirty")
    first = run_gpufix(*args, "--exit-non-zero-on-fix", "train.py", cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert bad.read_bytes() == FIXED
    second = run_gpufix(*args, "--exit-non-zero-on-fix", "train.py", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    bad.write_bytes(BAD)
    plain = run_gpufix(*args, "train.py", cwd=tmp_path)
    assert plain.returncode == 0 and bad.read_bytes() == FIXED
    bad.write_bytes(BAD)
    zero = run_gpufix(*args, "--exit-zero", "--exit-non-zero-on-fix", "train.py", cwd=tmp_path)
    assert zero.returncode == 1  # a change still fails with --exit-zero (as in ruff)


def test_hook_commands_stay_light(tmp_path):
    """What the hooks run on a couple of files scans only those files and imports no torch or NVML."""
    (tmp_path / "pyproject.toml").write_text(POLICY)
    (tmp_path / "train.py").write_bytes(BAD)
    (tmp_path / "other").mkdir()
    for i in range(30):
        (tmp_path / "other" / f"m{i}.py").write_bytes(BAD)
    probe = (
        "import sys\n"
        "from gpufix.cli import cli\n"
        "for args in (['scan', '--format', 'json', 'train.py'], ['apply', '--diff', 'train.py']):\n"
        "    try:\n"
        "        cli.main(args, prog_name='gpufix', standalone_mode=True)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pynvml', 'tensorflow', 'jax'))\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in proc.stderr, proc.stderr
    assert '"files_scanned": 1,' in proc.stdout, proc.stdout
    assert "other/" not in proc.stdout


def test_precommit_reads_shell_scripts(precommit):
    """The hooks' file types include shell scripts: pre-commit passes run.sh, gpufix lints and fixes it."""
    run, project = precommit
    script = project / "run.sh"
    script.write_bytes(b"export CUDA_DEVICE_ORDER=PCI_BUS_ID\nexport CUDA_VISIBLE_DEVICES=0\n")
    git(project, "add", "-A")
    lint = run("run", "gpufix", "--files", "run.sh")
    out = lint.stdout + lint.stderr
    assert lint.returncode == 1, out
    assert "run.sh:2:29: GPU103" in out, out
    fix = run("run", "gpufix-fix", "--files", "run.sh")
    assert fix.returncode == 1, fix.stdout + fix.stderr
    assert script.read_bytes() == b"export CUDA_DEVICE_ORDER=PCI_BUS_ID\nexport CUDA_VISIBLE_DEVICES=1\n"
