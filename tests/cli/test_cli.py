"""The command line as a ruff user expects it (issue 13): one test (or more) per problem seen, each
running the real `python -m gpufix` on real files and asserting what the user notices: bytes on
disk, stdout, stderr and exit codes."""

import json
import os
import re
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from conftest import POSIX_ONLY, ROOT, git, init_git_repo, native, run_gpufix

POLICY = '[tool.gpufix]\nvisible-devices = "1"\n'
HEADER = 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'
BAD = "import torch\ntorch.cuda.set_device(1)\n"
SIM = {"GPUFIX_PROBE": "gpufix.hardware.testing:user_machine"}


def write(root, rel, text):
    p = Path(root) / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text).lstrip("\n") if text.startswith("\n") else text, encoding="utf-8")
    return p


def findings(proc):
    assert proc.returncode in (0, 1), proc.stderr
    return [(f["path"], f["line"], f["rule"]) for f in json.loads(proc.stdout)["findings"]]


# -- init never loses a user's settings ---------------------------------------------------------------
RICH_PYPROJECT = '''\
[project]
name = "demo"

[tool.gpufix]
visible-devices = "0"   # the old GPU
expect-name = "RTX 3090"
exclude = ["vendored/"]
per-file-ignores = { "tests/**" = ["GPU101"] }

# my own helper
[[tool.gpufix.api]]
name = "pick_gpu"
args = [{position = 0}]
'''


def test_init_force_changes_only_the_keys_it_sets(tmp_path):
    write(tmp_path, "pyproject.toml", RICH_PYPROJECT)
    proc = run_gpufix("init", "--force", "--visible-devices", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pyproject.toml").read_text() == RICH_PYPROJECT.replace(
        'visible-devices = "0"   # the old GPU', 'visible-devices = "1"   # the old GPU').replace(
        'per-file-ignores = { "tests/**" = ["GPU101"] }\n',
        'per-file-ignores = { "tests/**" = ["GPU101"] }\ndevice-order = "PCI_BUS_ID"\n')
    assert "gpufix init: set visible-devices, device-order in [tool.gpufix] of pyproject.toml" in proc.stderr
    assert "other keys kept" in proc.stderr
    shown = run_gpufix("scan", "--show-settings", cwd=tmp_path).stdout
    assert 'exclude = ["vendored/"]' in shown and 'api = ["pick_gpu"]' in shown and 'expect-name = "RTX 3090"' in shown


def test_init_without_force_refuses_to_change_a_value_and_writes_nothing(tmp_path):
    write(tmp_path, "pyproject.toml", RICH_PYPROJECT)
    proc = run_gpufix("init", "--visible-devices", "1", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("gpufix: error: ")
    assert "already sets visible-devices = '0'; pass --force" in proc.stderr
    assert (tmp_path / "pyproject.toml").read_text() == RICH_PYPROJECT


def test_init_in_a_sub_folder_writes_the_root_policy_and_says_where(tmp_path):
    write(tmp_path, "pyproject.toml", '[project]\nname = "mono"\n\n' + POLICY)
    sub = tmp_path / "pkg" / "inner"
    sub.mkdir(parents=True)
    proc = run_gpufix("init", "--force", "--visible-devices", "0", "--expect-name", "3090", cwd=sub)
    assert proc.returncode == 0, proc.stderr
    assert not (sub / "pyproject.toml").exists()
    assert f"of {(tmp_path / 'pyproject.toml').as_posix()}" in proc.stderr
    assert (tmp_path / "pyproject.toml").read_text() == (
        '[project]\nname = "mono"\n\n[tool.gpufix]\nvisible-devices = "0"\ndevice-order = "PCI_BUS_ID"\n'
        'expect-name = "3090"\n')


def test_init_options_have_help():
    out = run_gpufix("init", "--help").stdout
    for option in ("--visible-devices", "--min-memory-gib", "--expect-name", "--expect-uuid", "--device-order", "--force", "--quiet"):
        line = next(ln for ln in out.splitlines() if option in ln)
        rest = out[out.index(line):].split("\n  -", 1)[0]
        assert len(rest.split()) > 3, f"{option} has no help: {rest!r}"


# -- one JSON document on stdout ------------------------------------------------------------------------
def test_apply_check_json_is_one_document_with_the_check_nested(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "train.py", BAD)
    proc = run_gpufix("apply", "--no-tag", "--check", "--format", "json", cwd=tmp_path, env=SIM)
    doc = json.loads(proc.stdout)  # the whole of stdout is one document
    assert doc["check"]["status"] == "pass" and doc["check"]["simulated"] == SIM["GPUFIX_PROBE"]
    assert doc["changed_files"][0]["path"] == "train.py"
    assert proc.returncode == 0, proc.stderr


def test_apply_diff_json_gives_each_files_diff(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "a.py", BAD)
    write(tmp_path, "b.py", HEADER + "x = 'cuda:0'\n")
    proc = run_gpufix("apply", "--diff", "--format", "json", cwd=tmp_path)
    doc = json.loads(proc.stdout)
    assert [d["path"] for d in doc["diffs"]] == ["a.py"]
    assert "-torch.cuda.set_device(1)\n+torch.cuda.set_device(0)\n" in doc["diffs"][0]["diff"]
    assert proc.returncode == 1
    assert (tmp_path / "a.py").read_text() == BAD


# -- pre-commit: excluded files, one process -----------------------------------------------------------
def test_force_exclude_keeps_named_excluded_files_untouched(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY + 'exclude = ["vendored/", "[ab].py"]\n')
    write(tmp_path, "vendored/lib.py", BAD)
    write(tmp_path, "a.py", BAD)
    write(tmp_path, "c.py", BAD)
    proc = run_gpufix("apply", "--force-exclude", "--no-backup", "--no-tag", "vendored/lib.py", "a.py", "c.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "vendored/lib.py").read_text() == BAD and (tmp_path / "a.py").read_text() == BAD
    assert (tmp_path / "c.py").read_text() != BAD
    scan = run_gpufix("scan", "--force-exclude", "--format", "json", "vendored/lib.py", cwd=tmp_path)
    assert scan.returncode == 0 and json.loads(scan.stdout)["summary"]["files_scanned"] == 0
    # without --force-exclude a named file is checked, as in ruff
    assert run_gpufix("scan", "vendored/lib.py", cwd=tmp_path).returncode == 1


def test_hooks_use_force_exclude_and_the_fix_hook_is_serial():
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert "--force-exclude" in hooks["gpufix"]["entry"].split()
    assert "--force-exclude" in hooks["gpufix-fix"]["entry"].split()
    assert hooks["gpufix-fix"]["require_serial"] is True


# -- the nearest config per file -------------------------------------------------------------------------
def test_each_path_is_judged_by_its_own_config(tmp_path):
    write(tmp_path, "p1/pyproject.toml", POLICY)
    write(tmp_path, "p2/pyproject.toml", '[tool.gpufix]\nvisible-devices = "0"\n')
    write(tmp_path, "p1/m.py", HEADER + "import torch\n")
    write(tmp_path, "p2/m.py", HEADER.replace('"1"', '"0"') + "import torch\n")
    assert findings(run_gpufix("scan", "p1", "p2", "--format", "json", cwd=tmp_path)) == []
    # the same two files, judged by p1's policy only when it is given for all of them
    got = findings(run_gpufix("scan", "p1", "p2", "--format", "json", "--config", "p1/pyproject.toml", cwd=tmp_path))
    assert got == [("p2/m.py", 3, "GPU103")]


def test_from_a_monorepo_root_each_sub_project_config_is_read(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "services/a/pyproject.toml", '[tool.gpufix]\nvisible-devices = "0"\nexclude = ["gen/"]\n')
    write(tmp_path, "services/a/run.py", HEADER.replace('"1"', '"0"') + "import torch\n")
    write(tmp_path, "services/a/gen/x.py", BAD)
    write(tmp_path, "top.py", HEADER + "import torch\n")
    assert findings(run_gpufix("scan", "--format", "json", cwd=tmp_path)) == []
    files = run_gpufix("scan", "--show-files", cwd=tmp_path).stdout.split()
    assert files == [native("services/a/run.py"), "top.py"]


def test_gpu103_without_a_policy_does_not_depend_on_the_files_passed(tmp_path):
    for name, value in (("a", "0"), ("b", "0"), ("c", "1")):
        write(tmp_path, f"{name}.py", f'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n'
                                      f'os.environ["CUDA_VISIBLE_DEVICES"] = "{value}"\n')
    # no vote: every file of the disagreement is reported (the majority may be the forbidden GPU)
    full = findings(run_gpufix("scan", "--format", "json", "--no-cache", cwd=tmp_path))
    assert full == [("a.py", 3, "GPU103"), ("b.py", 3, "GPU103"), ("c.py", 3, "GPU103")]
    # pre-commit passes only the changed files: the disagreement is still the project's
    assert findings(run_gpufix("scan", "--format", "json", "--no-cache", "c.py", "b.py", cwd=tmp_path)) == [
        ("b.py", 3, "GPU103"), ("c.py", 3, "GPU103")]
    assert findings(run_gpufix("scan", "--format", "json", "--no-cache", "c.py", cwd=tmp_path)) == [("c.py", 3, "GPU103")]
    assert findings(run_gpufix("scan", "--format", "json", "--no-cache", "a.py", cwd=tmp_path)) == [("a.py", 3, "GPU103")]


def test_gpu103_without_a_policy_asks_for_one_instead_of_voting(tmp_path):
    for name, value in (("a", "0"), ("b", "0"), ("c", "1")):
        write(tmp_path, f"{name}.py", f'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n'
                                      f'os.environ["CUDA_VISIBLE_DEVICES"] = "{value}"\n')
    out = run_gpufix("scan", "--format", "concise", "--no-cache", "c.py", cwd=tmp_path).stdout
    assert out.splitlines()[0] == (
        'c.py:3:38: GPU103 CUDA_VISIBLE_DEVICES is set to "1" here, but the project\'s files disagree '
        '("0" in 2 of 3 files, "1" in 1 of 3 files); without a policy gpufix cannot tell which GPU is allowed '
        '(a vote can pick the forbidden one): pin the allowed GPU with `gpufix init --gpu NAME|UUID` (from the '
        'GPUs NVML sees) or `gpufix init --visible-devices N`, then `gpufix apply` sets every file to it')
    assert "--visible-devices 0" not in out


def test_no_policy_is_a_one_line_notice_on_stderr(tmp_path):
    write(tmp_path, "m.py", "x = 1\n")
    proc = run_gpufix("scan", cwd=tmp_path)
    assert proc.returncode == 0
    notes = [ln for ln in proc.stderr.splitlines() if ln]
    assert len(notes) == 1 and notes[0].startswith("gpufix: note: no policy (visible-devices) found")
    assert "gpufix init" in notes[0]
    assert run_gpufix("scan", "-q", cwd=tmp_path).stderr == ""
    write(tmp_path, "pyproject.toml", POLICY)
    assert run_gpufix("scan", cwd=tmp_path).stderr == ""


def test_no_policy_scan_of_another_folder_writes_nothing_in_the_current_folder(tmp_path):
    other = tmp_path / "other"
    write(other, "test_m.py", BAD)
    here = tmp_path / "here"
    here.mkdir()
    proc = run_gpufix("scan", str(other), cwd=here)
    assert proc.returncode == 1
    assert list(here.iterdir()) == []


# -- rule selection ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,word", [
    (("--select", "GPU999"), "GPU999"),
    (("--ignore", "GPU9"), "GPU9"),
    (("--extend-select", "GPU01"), "GPU01"),
])
def test_unknown_rule_selector_is_a_usage_error_with_did_you_mean(tmp_path, args, word):
    write(tmp_path, "m.py", BAD)
    proc = run_gpufix("scan", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"gpufix: error: {args[0]}: unknown rule selector {word!r}")
    assert "did you mean" in proc.stderr
    assert proc.stdout == ""


def test_unknown_selector_in_the_config_is_an_error_too(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY + 'ignore = ["GPU1O1"]\n')
    write(tmp_path, "m.py", BAD)
    proc = run_gpufix("scan", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown rule selector 'GPU1O1'" in proc.stderr


def test_repeated_select_adds_up_and_all_is_accepted(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "m.py", BAD)
    got = findings(run_gpufix("scan", "--format", "json", "--select", "GPU001", "--select", "GPU101", cwd=tmp_path))
    assert sorted(r for _, _, r in got) == ["GPU001", "GPU101"]
    got = findings(run_gpufix("scan", "--format", "json", "--select", "ALL", "--ignore", "GPU1", cwd=tmp_path))
    assert [r for _, _, r in got] == ["GPU001"]


def test_command_line_ignore_adds_to_the_configs(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY + 'ignore = ["GPU102"]\n')
    write(tmp_path, "m.py", BAD)
    got = findings(run_gpufix("scan", "--format", "json", "--ignore", "GPU001", cwd=tmp_path))
    assert [r for _, _, r in got] == ["GPU101"]  # GPU102 stays ignored by the config
    got = findings(run_gpufix("scan", "--format", "json", "--extend-select", "GPU102", cwd=tmp_path))
    assert sorted(r for _, _, r in got) == ["GPU001", "GPU101", "GPU102"]


def test_explain_takes_a_code_or_a_name(tmp_path):
    by_code = run_gpufix("explain", "GPU001")
    by_name = run_gpufix("explain", "invalid-device-ordinal")
    assert by_code.returncode == by_name.returncode == 0
    assert by_code.stdout == by_name.stdout and "GPU001" in by_code.stdout
    bad = run_gpufix("explain", "invalid-ordinal")
    assert bad.returncode == 2
    assert bad.stderr == "gpufix: error: unknown rule 'invalid-ordinal' (did you mean 'invalid-device-ordinal'?); `gpufix rules` lists them\n"


def test_statistics_show_fixes_show_settings(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "m.py", BAD + "torch.zeros(1, device='cuda:1')\n")
    stats = run_gpufix("scan", "--statistics", cwd=tmp_path)
    assert stats.returncode == 1
    assert stats.stdout.splitlines() == [
        "2\tGPU001\t[*] invalid-device-ordinal",
        "1\tGPU101\t[*] missing-visible-devices",
        "1\tGPU102\t[*] missing-device-order",
        "Found 4 finding(s) in 1 of 1 file(s) (GPU001: 2, GPU101: 1, GPU102: 1).",
        "[*] 4 fixable with `gpufix apply`.",
    ]
    stats_json = json.loads(run_gpufix("scan", "--statistics", "--format", "json", cwd=tmp_path).stdout)
    assert stats_json[0] == {"code": "GPU001", "name": "invalid-device-ordinal", "count": 2, "fixable": True,
                             "fixable_count": 2, "unsafe_fixable_count": 0}
    fixes = run_gpufix("scan", "--show-fixes", cwd=tmp_path).stdout
    assert "  help: use 0" in fixes
    settings = run_gpufix("scan", "--show-settings", "--ignore", "GPU1", cwd=tmp_path)
    assert settings.returncode == 0
    assert "Config file: pyproject.toml" in settings.stdout
    from gpufix.catalog import load_rule_docs

    ordinal_rules = [c for c, doc in sorted(load_rule_docs().items()) if not c.startswith("GPU1") and doc.default_enabled]
    assert ordinal_rules[:4] == ["GPU001", "GPU002", "GPU003", "GPU004"]
    assert "enabled rules = [" + ", ".join(f'"{c}"' for c in ordinal_rules) + "]" in settings.stdout


@pytest.mark.parametrize("fmt", ["concise", "json-lines", "junit", "gitlab", "pylint"])
def test_output_formats(tmp_path, fmt):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "m.py", HEADER + BAD)
    proc = run_gpufix("scan", "--output-format", fmt, cwd=tmp_path)
    assert proc.returncode == 1
    out = proc.stdout
    if fmt == "concise":
        assert out.splitlines()[0].startswith("m.py:5:23: GPU001 device index 1 in torch.cuda.set_device()")
        assert out.splitlines()[0].endswith("use 0 [*]")
        assert out.splitlines()[1:] == ["Found 1 finding(s) in 1 of 1 file(s) (GPU001: 1).",
                                        "[*] 1 fixable with `gpufix apply`."]
    elif fmt == "json-lines":
        lines = [json.loads(ln) for ln in out.splitlines()]
        assert [(d["path"], d["line"], d["rule"]) for d in lines] == [("m.py", 5, "GPU001")]
    elif fmt == "junit":
        root = ET.fromstring(out.split("\n", 1)[1])
        case = root.find("testsuite/testcase")
        assert (root.get("failures"), case.get("name"), case.get("classname"), case.get("line")) == ("1", "org.gpufix.GPU001", "m.py", "5")
    elif fmt == "gitlab":
        doc = json.loads(out)
        assert doc[0]["check_name"] == "GPU001" and doc[0]["location"] == {"path": "m.py", "lines": {"begin": 5, "end": 5}}
        assert len(doc[0]["fingerprint"]) == 32
    else:
        assert out.startswith("m.py:5: [GPU001] device index 1")


def test_stdin_with_a_filename_uses_that_files_config(tmp_path):
    write(tmp_path, "pyproject.toml", '[tool.gpufix]\nvisible-devices = "0"\n')
    write(tmp_path, "sub/pyproject.toml", POLICY)
    code = HEADER + "import torch\nx = 'cuda:1'\n"
    proc = run_gpufix("scan", "-", "--stdin-filename", "sub/train.py", "--format", "concise", cwd=tmp_path, input=code)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0].startswith(native("sub/train.py") + ":5:5: GPU001")
    assert proc.stdout.splitlines()[1] == "Found 1 finding(s) in 1 of 1 file(s) (GPU001: 1)."  # no GPU103: sub/'s policy, not the root's
    fixed = run_gpufix("apply", "-", "--stdin-filename", "sub/train.py", cwd=tmp_path, input=code)
    assert fixed.returncode == 0 and fixed.stdout == code.replace("cuda:1", "cuda:0")


# -- apply's workflow ------------------------------------------------------------------------------------------
def test_apply_diff_with_nothing_fixable_prints_nothing_and_exits_0(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "m.py", HEADER + "import torch\nnvml.nvmlDeviceGetHandleByIndex(1)\n")
    write(tmp_path, "ok.py", HEADER + "import torch\n")
    proc = run_gpufix("apply", "--diff", "ok.py", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (0, "")


def test_unsafe_fixes_right_after_safe_ones(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "m.py", 'import os\nos.environ.setdefault("CUDA_VISIBLE_DEVICES", "1")\nimport torch\ntorch.cuda.set_device(1)\n')
    init_git_repo(tmp_path)
    first = run_gpufix("apply", cwd=tmp_path)
    assert first.returncode == 1, first.stderr  # the unsafe GPU107 remains
    second = run_gpufix("apply", "--unsafe-fixes", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "setdefault" not in (tmp_path / "m.py").read_text()
    # the user's own edit still counts as uncommitted work
    (tmp_path / "m.py").write_text(BAD)
    third = run_gpufix("apply", cwd=tmp_path)
    assert third.returncode == 2 and "uncommitted changes: m.py" in third.stderr


def test_missing_git_identity_refuses_before_writing(tmp_path):
    """As `git commit` does: without an identity the undo tag cannot be made, so apply stops
    before writing anything (exit 2, one line saying how to set one, or --no-tag)."""
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "m.py", BAD)
    init_git_repo(tmp_path)
    git(tmp_path, "config", "--unset", "user.email")
    git(tmp_path, "config", "--unset", "user.name")
    git(tmp_path, "config", "user.useConfigOnly", "true")
    env = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path / "home")}
    proc = run_gpufix("apply", cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("gpufix: error: refusing to apply: cannot create the git tag gpufix/before-")
    assert "git has no user identity; set one with `git config --global user.name" in line
    assert line.endswith("; or pass --no-tag to apply without it; nothing was written")
    assert (tmp_path / "m.py").read_text() == BAD
    assert not (tmp_path / ".gpufix" / "backups").exists()
    assert git(tmp_path, "tag") == ""
    # the explicit opt-out: no tag, the backup is the undo point
    ok = run_gpufix("apply", "--no-tag", cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "m.py").read_text() != BAD and (tmp_path / ".gpufix" / "backups").is_dir()


def test_backups_lists_and_prunes_backups_and_tags(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    init_git_repo(tmp_path)
    for n in range(3):
        write(tmp_path, "m.py", BAD.replace("(1)", f"({n + 1})") if n else BAD)
        git(tmp_path, "add", "-A")
        git(tmp_path, "commit", "-qm", f"c{n}")
        assert run_gpufix("apply", cwd=tmp_path).returncode in (0, 1)
        git(tmp_path, "commit", "-qam", f"fixed {n}")
    listing = run_gpufix("backups", cwd=tmp_path)
    rows = listing.stdout.splitlines()
    assert len(rows) == 3 and all("1 file(s)" in r and "gpufix/before-" in r for r in rows)
    ids = [r.split()[0] for r in rows]
    pruned = run_gpufix("backups", "prune", "--keep", "1", cwd=tmp_path)
    assert pruned.returncode == 0
    assert pruned.stdout.splitlines()[-1] == "kept 1 of 3"
    assert sorted(p.name for p in (tmp_path / ".gpufix" / "backups").iterdir()) == [ids[-1]]
    assert git(tmp_path, "tag", "--list").split() == [f"gpufix/before-{ids[-1]}"]


# -- smaller ---------------------------------------------------------------------------------------------------------
def test_errors_share_one_prefix(tmp_path):
    write(tmp_path, "pyproject.toml", '[tool.gpufix]\nvisible_devices = "1"\n')
    outs = [
        run_gpufix("scan", cwd=tmp_path).stderr,
        run_gpufix("apply", cwd=tmp_path).stderr,
        run_gpufix("check", cwd=tmp_path, env=SIM).stderr,
        run_gpufix("scan", "--bogus", cwd=tmp_path).stderr,
    ]
    for err in outs:
        assert err.startswith("gpufix: error: "), err
    # and the config error has a did-you-mean
    assert "'visible_devices': did you mean 'visible-devices'?" in outs[0]


def test_no_color_empty_keeps_colour_and_force_color_forces_it(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "m.py", HEADER + BAD)
    coloured = run_gpufix("scan", cwd=tmp_path, env={"NO_COLOR": "", "FORCE_COLOR": "1"}).stdout
    plain = run_gpufix("scan", cwd=tmp_path, env={"NO_COLOR": "1", "FORCE_COLOR": "1"}).stdout
    piped = run_gpufix("scan", cwd=tmp_path, env={"NO_COLOR": ""}).stdout
    assert "\x1b[31m" in coloured
    assert "\x1b[31m" not in plain and "\x1b[" not in piped


def test_exclude_globs_are_gitignore_style(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY + 'exclude = ["[ab].py", "gen/**/*.py"]\n')
    for name in ("a.py", "b.py", "c.py", "gen/x/y.py", "sub/a.py"):
        write(tmp_path, name, BAD)
    files = run_gpufix("scan", "--show-files", cwd=tmp_path).stdout.split()
    assert files == ["c.py"]


def test_gpufix_toml_with_a_tool_gpufix_header(tmp_path):
    write(tmp_path, "gpufix.toml", POLICY)
    write(tmp_path, "m.py", HEADER + BAD)
    assert findings(run_gpufix("scan", "--format", "json", cwd=tmp_path)) == [("m.py", 5, "GPU001")]


def test_check_takes_min_memory_and_expect_name(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    ok = run_gpufix("check", "--min-memory-gib", "20", "--expect-name", "3090", "--format", "json", cwd=tmp_path, env=SIM)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["policy"]["min-memory-gib"] == 20
    low = run_gpufix("check", "--expect-name", "A100", cwd=tmp_path, env=SIM)
    assert low.returncode == 1


def test_simulated_probe_is_marked(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    out = run_gpufix("check", cwd=tmp_path, env=SIM).stdout
    assert out.startswith("SIMULATED: the GPUs below come from GPUFIX_PROBE=gpufix.hardware.testing:user_machine")


@POSIX_ONLY  # /dev/null
def test_dev_null_is_shown_as_dev_null(tmp_path):
    proc = run_gpufix("scan", "/dev/null", "--format", "json", "-q", cwd=tmp_path)
    doc = json.loads(proc.stdout)
    assert [e["path"] for e in doc["errors"]] == ["/dev/null"]
    assert "../" not in proc.stdout


# -- README and docs -----------------------------------------------------------------------------------------------------
def _readme_blocks():
    return re.findall(r"```(\w*)\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_first_command_installs_no_torch_and_scans_the_fixture():
    first = _readme_blocks()[0][1]
    assert "torch" not in first and "gpufix scan fixtures/superwhisper" in first
    second = _readme_blocks()[1][1]
    assert second.split("#")[0].strip() == "bash .ci/run"
    assert "python -m pytest" in (ROOT / ".ci" / "run").read_text()


def test_readme_links_stay_inside_the_repository():
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)]+)\)", text):
        assert not target.startswith(("http:", "https:", "..", "/")), target
        assert (ROOT / target.split("#")[0]).exists(), target
    assert "../shared" not in text
    assert (ROOT / "docs" / "CONTRACT.md").is_file()


def test_readme_install_lines_name_no_package_index_and_no_missing_tag():
    text = (ROOT / "README.md").read_text()
    assert 'pip install "gpufix[check]"' not in text and "pip install gpufix" not in text
    assert "rev: v0.1.0" not in text
    assert "@v0.1.0" not in text
    # the check's extra is installed from the clone, with a CPU or CUDA torch named explicitly
    assert 'pip install -e ".[check]"' in text
    assert "download.pytorch.org/whl/cpu" in text
    assert re.search(r"rev: \$\(git -C .* rev-parse HEAD\)", text)  # a commit: there is no tag


def test_contract_copy_is_the_shared_contract_plus_what_gpufix_adds():
    ours = (ROOT / "docs" / "CONTRACT.md").read_text()
    assert ours.startswith("# gpufix — the user-facing contract")
    assert "## What gpufix adds to this contract" in ours
    for option in ("--extend-select", "--statistics", "--show-fixes", "--show-settings", "--show-files",
                   "--force-exclude", "--stdin-filename", "gitlab", "junit", "json-lines", "gpufix backups"):
        assert option in ours, option


def test_files_outside_the_current_folder_are_absolute_in_text_and_sarif(tmp_path):
    other = tmp_path / "other"
    write(other, "pyproject.toml", POLICY)
    write(other, "m.py", HEADER + BAD)
    here = tmp_path / "here"
    here.mkdir()
    text = run_gpufix("scan", "--format", "concise", str(other), cwd=here).stdout
    assert text.startswith(f"{(other / 'm.py').as_posix()}:5:23: GPU001")
    sarif = json.loads(run_gpufix("scan", "--format", "sarif", str(other), cwd=here).stdout)
    location = sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location == {"uri": (other / "m.py").as_uri()}
