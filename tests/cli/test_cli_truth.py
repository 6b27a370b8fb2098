"""What the command line says is exactly true (issue 23): the diff `git apply` takes, the bytes of
the header in edge-case modules, what ruff says about applied trees, one set of counts in every
format, scan's --fix/--unsafe-fixes/--add-noqa/--watch/--exclude, the user config, NO_COLOR."""

import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import FIXTURES, git, init_git_repo, run_gpufix

POLICY = '[tool.gpufix]\nvisible-devices = "1"\ncpu-runs = "override"\n'
ALL_SCOPE = POLICY + 'header-scope = "all"\n'
HEADER_LINES = (
    "import os\n"
    "\n"
    'os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n'
    'os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'
)
RUFF = shutil.which("ruff", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))


def write(root: Path, files: dict) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


# -- apply --diff: a patch git applies ---------------------------------------------------------------
DIFF_FILES = {
    "pyproject.toml": ALL_SCOPE,
    "a_last.py": 'import torch\nx = torch.device("cuda:1")',  # no newline at the end
    "b_next.py": "import torch\ny = 1\n",
    "pkg/__init__.py": "",
    "crlf.py": 'import torch\r\nz = torch.device("cuda:1")\r\n',
    "ff.py": 'import torch\n# a form feed \x0c inside a comment\nw = torch.device("cuda:1")\n',
}


def test_apply_diff_is_a_patch_git_applies(tmp_path):
    src = init_git_repo(write(tmp_path / "src", DIFF_FILES))
    # bytes, not text: universal newlines would turn crlf.py's \r\n into \n
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), NO_COLOR="1")
    proc = subprocess.run([sys.executable, "-m", "gpufix", "apply", "--diff", "."], cwd=src, env=env, capture_output=True)
    assert proc.returncode == 1, proc.stderr
    assert b'-z = torch.device("cuda:1")\r\n+z = torch.device("cuda:0")\r\n' in proc.stdout
    diff = proc.stdout.decode("utf-8")
    assert '-x = torch.device("cuda:1")\n\\ No newline at end of file\n+x = torch.device("cuda:0")\n' \
           '\\ No newline at end of file\n--- a/b_next.py\n' in diff
    # the real apply in one copy, the diff applied by git in a clean copy: the same bytes
    fixed = init_git_repo(write(tmp_path / "fixed", DIFF_FILES))
    assert run_gpufix("apply", "--no-backup", "--no-tag", ".", cwd=fixed).returncode == 0
    clean = init_git_repo(write(tmp_path / "clean", DIFF_FILES))
    (tmp_path / "fix.diff").write_bytes(proc.stdout)
    check = subprocess.run(["git", "apply", "--check", str(tmp_path / "fix.diff")], cwd=clean, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    git(clean, "apply", str(tmp_path / "fix.diff"))
    for rel in DIFF_FILES:
        assert (clean / rel).read_bytes() == (fixed / rel).read_bytes(), rel
    assert (fixed / "pkg/__init__.py").read_bytes().endswith(b"\n")


def test_stdin_diff_has_the_marker_too(tmp_path):
    write(tmp_path, {"pyproject.toml": POLICY})
    code = 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n' \
           'import torch\nx = torch.device("cuda:1")'
    proc = run_gpufix("apply", "-", "--stdin-filename", "m.py", "--diff", cwd=tmp_path, input=code)
    assert proc.returncode == 1
    assert proc.stdout.endswith('-x = torch.device("cuda:1")\n\\ No newline at end of file\n'
                                '+x = torch.device("cuda:0")\n\\ No newline at end of file\n')


# -- where the header goes ---------------------------------------------------------------------------
@pytest.mark.parametrize("before, after", [
    # an empty __init__.py: the header's last line ends with a newline (ruff W292)
    ("", HEADER_LINES),
    # a module of comments only, no newline at the end
    ("# just a comment", "# just a comment\n" + HEADER_LINES),
    # two module strings (a docstring and a second string): the header goes after both
    ('"""Doc."""\n"""Second string."""\nimport torch\n',
     '"""Doc."""\n"""Second string."""\n\n' + HEADER_LINES + "\nimport torch\n"),
    # `from __future__ import ...; import torch` on one line: split, the header between
    ("from __future__ import annotations; import torch\nz = 1\n",
     "from __future__ import annotations\n\n" + HEADER_LINES + "\nimport torch\nz = 1\n"),
])
def test_header_bytes(tmp_path, before, after):
    write(tmp_path, {"pyproject.toml": ALL_SCOPE, "m.py": before})
    proc = run_gpufix("apply", "--no-backup", "--no-tag", "m.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fix-error" not in proc.stdout + proc.stderr
    assert (tmp_path / "m.py").read_text() == after
    again = run_gpufix("apply", "--no-backup", "--no-tag", "m.py", cwd=tmp_path)
    assert again.returncode == 0 and (tmp_path / "m.py").read_text() == after  # fix(fix(x)) == fix(x)


def test_header_finding_points_where_the_header_goes(tmp_path):
    """The first GPU import is inside `if __name__ == "__main__":`: GPU101 points at line 2 (where
    the header goes), not at the nested import."""
    write(tmp_path, {"pyproject.toml": POLICY,
                     "run.py": '"""Run."""\nimport sys\n\nif __name__ == "__main__":\n    import torch\n'})
    out = run_gpufix("scan", "--format", "concise", "--no-cache", "run.py", cwd=tmp_path).stdout
    assert out.splitlines()[0].startswith("run.py:2:1: GPU101 A script (`__main__` guard) never sets "
                                          "CUDA_VISIBLE_DEVICES before its process reaches a GPU framework;")


@pytest.mark.skipif(RUFF is None, reason="ruff is not installed (pip install ruff)")
def test_ruff_finds_nothing_gpufix_introduced(tmp_path):
    """ruff on the seed-004 fixture and the edge cases above, before and after `gpufix apply`: no
    (file, code) has more diagnostics after, except E402 in a file that already had one (a module
    whose imports already follow other statements: the header's `import os` follows them too)."""
    root = tmp_path / "tree"
    shutil.copytree(FIXTURES / "superwhisper", root)
    write(root / "edge", {k: v for k, v in DIFF_FILES.items() if k != "pyproject.toml"})
    write(root / "edge", {"strings.py": '"""Doc."""\n"""Second."""\nimport torch\n',
                          "future.py": "from __future__ import annotations; import torch\n"})
    (root / "edge" / "gpufix.toml").write_text(ALL_SCOPE.replace("[tool.gpufix]\n", ""))

    def ruff() -> dict:
        proc = subprocess.run([RUFF, "check", "--isolated", "--select", "E,W,F", "--output-format", "json", "--exit-zero", "."],
                              cwd=root, capture_output=True, text=True)
        counts: dict = {}
        for d in json.loads(proc.stdout):
            key = (os.path.relpath(d["filename"], root), d["code"])
            counts[key] = counts.get(key, 0) + 1
        return counts

    before = ruff()
    proc = run_gpufix("apply", "--no-backup", "--no-tag", ".", cwd=root)
    assert proc.returncode in (0, 1), proc.stderr
    assert "fix-error" not in proc.stdout + proc.stderr
    after = ruff()
    new = {k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)}
    new = {k: v for k, v in new.items() if not (k[1] == "E402" and before.get(k, 0))}
    assert new == {}


# -- one run, every format: the same findings, counts and locations ----------------------------------
NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# t"]},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["import torch\n", 'x = torch.device("cuda:1")\n']},
    ],
    "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
}


def _formats_project(tmp_path) -> Path:
    root = write(tmp_path / "p", {
        "pyproject.toml": POLICY,
        "train.py": "import torch\ntorch.cuda.set_device(1)\nmodel = torch.nn.DataParallel(m, device_ids=[0, 1])\n",
        "mon.py": HEADER_LINES + "import pynvml\nh = pynvml.nvmlDeviceGetHandleByIndex(0)\n",
        "late.py": 'import os\nos.environ.setdefault("CUDA_VISIBLE_DEVICES", "1")\nimport torch\n',
        "run.sh": "export CUDA_DEVICE_ORDER=PCI_BUS_ID\nexport CUDA_VISIBLE_DEVICES=0\n",
        "broken.py": "import torch\ndef f(:\n",
    })
    (root / "nb.ipynb").write_text(json.dumps(NOTEBOOK))
    return root


def test_every_format_tells_the_same_run(tmp_path):
    root = _formats_project(tmp_path)

    def out(fmt, *extra):
        proc = run_gpufix("scan", "--no-cache", "--format", fmt, *extra, ".", cwd=root)
        assert proc.returncode == 1, proc.stderr
        return proc.stdout

    doc = json.loads(out("json"))
    s = doc["summary"]
    findings = doc["findings"]
    assert s["findings"] == len(findings) and s["errors"] == len(doc["errors"]) == 1
    safe = [f for f in findings if f["fix"] and f["fix"]["applicability"] == "safe"]
    unsafe = [f for f in findings if f["fix"] and f["fix"]["applicability"] != "safe"]
    assert (s["fixable"], s["unsafe_fixable"]) == (len(safe), len(unsafe))
    assert unsafe and safe and any(f["fix"] is None for f in findings)
    assert any(f.get("cell") is not None for f in findings)

    def key(f):  # where a finding is, as every format must be able to say it
        return (f["path"], f.get("cell"), f["line"], f["column"], f["rule"])

    expected = sorted(key(f) for f in findings)
    by_rule = s["by_rule"]
    rules = ", ".join(f"{k}: {v}" for k, v in by_rule.items())
    total_line = f"Found {s['findings']} finding(s) in {s['files_with_findings']} of {s['files_scanned']} file(s) ({rules}); 1 file error(s)."
    fix_line = f"[*] {s['fixable']} fixable with `gpufix apply` ({s['unsafe_fixable']} more with `gpufix apply --unsafe-fixes`)."

    def parse_where(where):
        parts = where.split(":")
        if len(parts) == 4:  # path:cell N:line:col
            return parts[0], int(parts[1].split()[1]), int(parts[2]), int(parts[3])
        return parts[0], None, int(parts[1]), int(parts[2])

    # text (full) and concise: one line per finding, the same closing lines
    for fmt in ("text", "concise"):
        text = out(fmt)
        got = []
        for line in text.splitlines():
            head, _, rest = line.partition(": ")
            if rest[:3] == "GPU" and ":" in head and not line.startswith(" "):
                got.append((*parse_where(head), rest.split()[0]))
        assert sorted(got) == expected, fmt
        assert text.splitlines()[-2:] == [total_line, fix_line], fmt
    # json-lines
    lines = [json.loads(ln) for ln in out("json-lines").splitlines()]
    assert sorted(key(f) for f in lines if "error" not in f) == expected
    assert sum(1 for f in lines if "error" in f) == 1
    # pylint: path:line: or path:cell N:line: (no column)
    got = []
    for line in out("pylint").splitlines():
        head, _, rest = line.partition(": [")
        if rest.startswith("GPU"):
            parts = head.split(":")
            cell = int(parts[1].split()[1]) if len(parts) == 3 else None
            got.append((parts[0], cell, int(parts[-1]), rest.split("]")[0]))
    assert sorted(got) == sorted((p, c, ln, r) for p, c, ln, _, r in expected)
    # junit: a failing testcase per finding, the cell named where there is one
    junit = ET.fromstring(out("junit").split("\n", 1)[1])
    assert junit.get("failures") == str(s["findings"]) and junit.get("errors") == "1"
    got = []
    for suite in junit.findall("testsuite"):
        for case in suite.findall("testcase"):
            fail = case.find("failure")
            if fail is None:
                continue
            if case.get("line") is None:
                where = fail.text.split(", ")  # cell N, line L, col C, message
                got.append((suite.get("name"), int(where[0].split()[1]), int(where[1].split()[1]),
                            int(where[2].split()[1]), case.get("name").rsplit(".", 1)[1]))
            else:
                got.append((suite.get("name"), None, int(case.get("line")), int(case.get("column")),
                            case.get("name").rsplit(".", 1)[1]))
    assert sorted(got) == expected
    # github: line/col properties, or the cell named in the message
    got = []
    for line in out("github").splitlines():
        props, _, message = line[2:].partition("::")
        level, _, props = props.partition(" ")
        p = dict(kv.split("=", 1) for kv in props.split(","))
        if not p["title"].startswith("GPU"):
            continue
        if "line" in p:
            got.append((p["file"], None, int(p["line"]), int(p["col"]), p["title"]))
        else:
            words = message.split(": ", 1)[0].replace(",", "").split()  # CODE cell N line L col C
            got.append((p["file"], int(words[2]), int(words[4]), int(words[6]), p["title"]))
    assert sorted(got) == expected
    # gitlab: begin line per finding (no column in the format), the cell in the description
    gl = json.loads(out("gitlab"))
    got = sorted((g["location"]["path"], g["location"]["lines"]["begin"], g["check_name"]) for g in gl
                 if g["check_name"].startswith("GPU"))
    assert got == sorted((p, ln, r) for p, _, ln, _, r in expected)
    # sarif: region for files, the cell in properties for notebooks
    run = json.loads(out("sarif"))["runs"][0]
    got = []
    for r in run["results"]:
        loc = r["locations"][0]["physicalLocation"]
        path = loc["artifactLocation"]["uri"]
        if "region" in loc:
            got.append((path, None, loc["region"]["startLine"], loc["region"]["startColumn"], r["ruleId"]))
        else:
            pr = r["properties"]
            assert r["message"]["text"].startswith(f"cell {pr['cell']}, line {pr['line']}, col {pr['column']}: ")
            got.append((path, pr["cell"], pr["line"], pr["column"], r["ruleId"]))
    assert sorted(got) == expected
    assert len(run["invocations"][0]["toolExecutionNotifications"]) == 1
    # --statistics: per-rule counts sum to the total, the same closing lines; JSON rows agree
    stats = out("text", "--statistics").splitlines()
    assert stats[-2:] == [total_line, fix_line]
    rows = json.loads(out("json", "--statistics"))
    assert {r["code"]: r["count"] for r in rows} == by_rule
    assert sum(r["fixable_count"] for r in rows) == s["fixable"]
    assert sum(r["unsafe_fixable_count"] for r in rows) == s["unsafe_fixable"]
    marks = {line.split("\t")[1]: line.split("\t")[2][:3] for line in stats if line.count("\t") == 2 and "GPU" in line}
    for r in rows:
        want = "[*]" if r["fixable_count"] == r["count"] else "[-]" if r["fixable_count"] else "[ ]"
        assert marks[r["code"]] == want


def test_statistics_marks_some_fixable_with_a_dash(tmp_path):
    write(tmp_path, {"pyproject.toml": POLICY,
                     "a.py": HEADER_LINES + "import torch\nimport pynvml\n"
                             "torch.cuda.set_device(1)\nx = pynvml.nvmlDeviceGetHandleByIndex(1)\nd = torch.device(dev_str)\n"
                             "y = torch.device('cuda:1')\nz = 'cuda:2'\n"})
    rows = json.loads(run_gpufix("scan", "--statistics", "--format", "json", "--no-cache", cwd=tmp_path).stdout)
    gpu001 = [r for r in rows if r["code"] == "GPU001"][0]
    assert 0 < gpu001["fixable_count"] < gpu001["count"], rows
    text = run_gpufix("scan", "--statistics", "--no-cache", cwd=tmp_path).stdout
    assert f"{gpu001['count']}\tGPU001\t[-] invalid-device-ordinal" in text.splitlines()


# -- scan --fix, --unsafe-fixes, --add-noqa, --watch, --exclude ---------------------------------------
LATE = 'import os\nos.environ.setdefault("CUDA_VISIBLE_DEVICES", "1")\nimport torch\ntorch.cuda.set_device(1)\n'


def test_scan_fix_is_apply(tmp_path):
    root = init_git_repo(write(tmp_path / "r", {"pyproject.toml": POLICY, "m.py": LATE}))
    proc = run_gpufix("scan", "--fix", cwd=root)
    assert proc.returncode == 1, proc.stderr  # the unsafe GPU107 fix is left
    assert "Did you mean" not in proc.stderr
    text = (root / "m.py").read_text()
    assert "set_device(0)" in text and "setdefault" in text
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("m.py:3:1: GPU107 ")
    assert lines[-1] == "1 finding(s) remaining in 1 of 1 file(s) (GPU107: 1)."
    assert any(ln.startswith("Fixed 2 finding(s) in 1 file(s).") for ln in lines)
    assert any(ln.startswith("Git tag: gpufix/before-") for ln in lines)  # apply's safety: tag and backup
    assert (root / ".gpufix" / "backups").is_dir()
    unsafe = run_gpufix("scan", "--fix", "--unsafe-fixes", cwd=root)
    assert unsafe.returncode == 0, unsafe.stdout + unsafe.stderr
    assert "setdefault" not in (root / "m.py").read_text()
    assert unsafe.stdout.splitlines()[-1] == "All checks passed: 2 file(s) scanned, no findings." or \
        unsafe.stdout.splitlines()[-1].startswith("All checks passed:")


def test_scan_fix_refuses_on_uncommitted_changes_like_apply(tmp_path):
    root = init_git_repo(write(tmp_path / "r", {"pyproject.toml": POLICY, "m.py": LATE}))
    (root / "m.py").write_text(LATE + "# my edit\n")
    proc = run_gpufix("scan", "--fix", cwd=root)
    assert proc.returncode == 2
    assert "uncommitted changes: m.py (commit or stash them, or pass --allow-dirty); nothing was written" in proc.stderr
    assert (root / "m.py").read_text() == LATE + "# my edit\n"
    assert run_gpufix("scan", "--fix", "--allow-dirty", cwd=root).returncode == 1


def test_scan_unsafe_fixes_counts_them_as_fixable(tmp_path):
    write(tmp_path, {"pyproject.toml": POLICY, "m.py": LATE})
    plain = run_gpufix("scan", "--no-cache", "--format", "concise", cwd=tmp_path).stdout.splitlines()
    assert plain[-1] == "[*] 2 fixable with `gpufix apply` (1 more with `gpufix apply --unsafe-fixes`)."
    unsafe = run_gpufix("scan", "--no-cache", "--format", "concise", "--unsafe-fixes", cwd=tmp_path).stdout.splitlines()
    assert unsafe[-1] == "[*] 3 fixable with `gpufix apply --unsafe-fixes`."


def test_add_noqa_silences_each_finding_on_its_line(tmp_path):
    files = {
        "pyproject.toml": POLICY,
        "m.py": (HEADER_LINES + "import torch\n"
                 'x = """\ncuda:1\n"""\n'
                 'y = torch.device("cuda:1")  # gpufix: ignore[GPU002]\r\n'
                 "z = 1 + \\\n    torch.cuda.set_device(1)\n"
                 "w = torch.device('cuda:1')  # keep\n"),
        "run.sh": "export CUDA_DEVICE_ORDER=PCI_BUS_ID\nexport CUDA_VISIBLE_DEVICES=0\n",
    }
    write(tmp_path, files)
    (tmp_path / "nb.ipynb").write_text(json.dumps(NOTEBOOK))
    proc = run_gpufix("scan", "--add-noqa", "--no-cache", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Added 3 `# gpufix: ignore` comment(s) in 1 file(s).\n"
    assert "run.sh: 1 finding(s) not marked: --add-noqa writes only Python files" in proc.stderr
    assert "nb.ipynb: 3 finding(s) not marked: --add-noqa does not write notebooks" in proc.stderr
    assert (tmp_path / "m.py").read_bytes() == (
        HEADER_LINES + "import torch\n"
        'x = """\ncuda:1\n"""\n'
        'y = torch.device("cuda:1")  # gpufix: ignore[GPU002,GPU001]\r\n'
        "z = 1 + \\\n    torch.cuda.set_device(1)  # gpufix: ignore[GPU001]\n"
        "w = torch.device('cuda:1')  # keep  # gpufix: ignore[GPU001]\n").encode()
    after = json.loads(run_gpufix("scan", "--no-cache", "--format", "json", cwd=tmp_path).stdout)
    assert sorted({f["path"] for f in after["findings"]}) == ["nb.ipynb", "run.sh"]


def test_exclude_and_extend_exclude_on_the_command_line(tmp_path):
    write(tmp_path, {"pyproject.toml": POLICY + 'exclude = ["vendored/"]\n', "a.py": "import torch\n",
                     "vendored/v.py": "import torch\n", "legacy/l.py": "import torch\n"})

    def files(*args):
        return run_gpufix("scan", "--show-files", *args, cwd=tmp_path).stdout.split()

    assert files() == ["a.py", "legacy/l.py"]
    assert files("--extend-exclude", "legacy/") == ["a.py"]
    assert files("--exclude", "legacy/") == ["a.py", "vendored/v.py"]  # replaces the config's
    assert files("--exclude", "a.py,legacy/") == ["vendored/v.py"]


def test_watch_scans_again_when_a_file_changes(tmp_path):
    write(tmp_path, {"pyproject.toml": POLICY, "m.py": HEADER_LINES + "import torch\nx = 'cuda:0'\n"})
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), NO_COLOR="1")
    proc = subprocess.Popen([sys.executable, "-m", "gpufix", "scan", "--watch", "--no-cache", "--format", "concise"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = []

        def until(pred, timeout=60):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                line = proc.stdout.readline()
                if line:
                    lines.append(line.rstrip("\n"))
                    if pred(lines[-1]):
                        return
                elif proc.poll() is not None:
                    break
            raise AssertionError(lines)

        until(lambda ln: ln.startswith("All checks passed"))
        time.sleep(1.1)  # a new mtime even on file systems with 1 s stamps
        (tmp_path / "m.py").write_text(HEADER_LINES + "import torch\nx = 'cuda:1'\n")
        until(lambda ln: ln.startswith("[*] 1 fixable"))
        assert "m.py:6:5: GPU001 'cuda:1' means physical GPU 1" in "\n".join(lines)
        assert proc.poll() is None  # still watching
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- the user config ---------------------------------------------------------------------------------
def test_user_config_gives_the_machine_settings_a_project_overrides(tmp_path):
    user = tmp_path / "user" / "gpufix.toml"
    user.parent.mkdir()
    user.write_text('visible-devices = "1"\nexpect-uuid = "GPU-0f1e"\nmin-memory-gib = 22\n')
    env = {"GPUFIX_USER_CONFIG": str(user)}
    bare = write(tmp_path / "bare", {"t.py": "import torch\nx = 'cuda:1'\n"})
    lines = run_gpufix("scan", "--show-settings", cwd=bare, env=env).stdout.splitlines()
    assert f'visible-devices = "1"   # {user} (user config)' in lines
    assert f'expect-uuid = "GPU-0f1e"   # {user} (user config)' in lines
    assert f"min-memory-gib = 22   # {user} (user config)" in lines
    assert 'device-order = "PCI_BUS_ID"   # default' in lines
    report = json.loads(run_gpufix("scan", "--format", "json", "--no-cache", cwd=bare, env=env).stdout)
    assert report["policy"]["visible-devices"] == "1"
    assert [f["rule"] for f in report["findings"]] == ["GPU101", "GPU102", "GPU001"]
    # a project's own value wins, key by key; the command line wins over both
    proj = write(tmp_path / "proj", {"pyproject.toml": '[tool.gpufix]\nvisible-devices = "0"\n'})
    lines = run_gpufix("scan", "--show-settings", cwd=proj, env=env).stdout.splitlines()
    assert 'visible-devices = "0"   # pyproject.toml' in lines
    assert f'expect-uuid = "GPU-0f1e"   # {user} (user config)' in lines
    lines = run_gpufix("scan", "--show-settings", "--visible-devices", "1", cwd=proj, env=env).stdout.splitlines()
    assert 'visible-devices = "1"   # --visible-devices (command line)' in lines
    # project keys do not belong there
    user.write_text('visible-devices = "1"\nexclude = ["x/"]\n')
    bad = run_gpufix("scan", cwd=bare, env=env)
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"gpufix: error: {user} (user config): 'exclude' belong(s) to a project's config")


def test_init_user_writes_the_user_config_every_project_reads(tmp_path):
    user = tmp_path / "cfg" / "gpufix" / "gpufix.toml"  # its folder does not exist yet
    env = {"GPUFIX_USER_CONFIG": str(user), "GPUFIX_PROBE": "gpufix.hardware.testing:user_machine"}
    bare = write(tmp_path / "bare", {"t.py": "import torch\n"})
    proc = run_gpufix("init", "--user", "--gpu", "3090", "-q", cwd=bare, env=env)
    assert proc.returncode == 0, proc.stderr
    assert list(bare.iterdir()) == [bare / "t.py"]  # nothing written in the project
    text = user.read_text()
    assert 'visible-devices = "1"\n' in text and 'expect-uuid = "GPU-3b9e2d4f-8a6c-4d2f-8e11-222222222222"\n' in text
    lines = run_gpufix("scan", "--show-settings", cwd=bare, env=env).stdout.splitlines()
    assert f'visible-devices = "1"   # {user} (user config)' in lines


# -- NO_COLOR ----------------------------------------------------------------------------------------
def test_no_color_writes_no_escape_on_a_terminal(tmp_path):
    """On a pseudo-terminal, with NO_COLOR set: not one escape byte (rich alone keeps bold and dim)."""
    pty = pytest.importorskip("pty")
    write(tmp_path, {"pyproject.toml": POLICY, "m.py": "import torch\nx = 'cuda:1'\n"})
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), NO_COLOR="1", TERM="xterm-256color")
    env.pop("FORCE_COLOR", None)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "gpufix", "scan", "--no-cache", "m.py"], cwd=tmp_path, env=env,
                            stdout=slave, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    data = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    proc.wait(timeout=60)
    os.close(master)
    assert b"GPU001" in data
    assert b"\x1b" not in data
