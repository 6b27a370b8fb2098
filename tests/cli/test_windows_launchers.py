"""Windows launchers and the Windows platform through the real CLI: PowerShell scripts and cmd
batch files (every form of setting the mask, exact findings, exact rewritten bytes with CRLF kept,
idempotence, suppression comments), `--show-files`, named files read as their kind, launchers that
pass a GPU option to a script whose default GPU001 would rewrite, VS Code JSON `env` objects,
case-insensitive names, and the path helpers that make reports native on Windows."""

from __future__ import annotations

import json

import pytest

from conftest import native, run_gpufix
from project_files import POLICY, apply, found, project, scan


PS1 = (
    '$env:CUDA_VISIBLE_DEVICES = "0"\r\n'
    "$Env:cuda_visible_devices=2; python train.py --device cuda:1\r\n"
    "Set-Item -Path Env:\\CUDA_VISIBLE_DEVICES -Value 0\r\n"
    "New-Item -Path Env: -Name CUDA_VISIBLE_DEVICES -Value '0' -Force\r\n"
    '[Environment]::SetEnvironmentVariable("CUDA_VISIBLE_DEVICES", "0", "User")\r\n'
    "setx CUDA_VISIBLE_DEVICES 0\r\n"
    "$env:CUDA_VISIBLE_DEVICES = $gpu\r\n"
    'Write-Host "CUDA_VISIBLE_DEVICES=3 cuda:1"\r\n'
    '<# $env:CUDA_VISIBLE_DEVICES = "0" #>\r\n'
    '# $env:CUDA_VISIBLE_DEVICES = "0"\r\n'
    '$here = @"\r\n$env:CUDA_VISIBLE_DEVICES = "0"\r\n"@\r\n'
)
PS1_FINDINGS = [
    ("run.ps1", 1, 29, "GPU102", True), ("run.ps1", 1, 29, "GPU103", True),
    ("run.ps1", 2, 27, "GPU102", True), ("run.ps1", 2, 27, "GPU103", True), ("run.ps1", 2, 55, "GPU001", True),
    ("run.ps1", 3, 49, "GPU102", True), ("run.ps1", 3, 49, "GPU103", True),
    ("run.ps1", 4, 55, "GPU102", True), ("run.ps1", 4, 55, "GPU103", True),
    ("run.ps1", 5, 63, "GPU102", True), ("run.ps1", 5, 63, "GPU103", True),
    ("run.ps1", 6, 27, "GPU102", True), ("run.ps1", 6, 27, "GPU103", True),
]
PS1_FIXED = (
    '$env:CUDA_DEVICE_ORDER = "PCI_BUS_ID"\r\n'
    '$env:CUDA_VISIBLE_DEVICES = "1"\r\n'
    '$Env:cuda_visible_devices="1"; python train.py --device cuda:0\r\n'
    'Set-Item -Path Env:\\CUDA_VISIBLE_DEVICES -Value "1"\r\n'
    "New-Item -Path Env: -Name CUDA_VISIBLE_DEVICES -Value '1' -Force\r\n"
    '[Environment]::SetEnvironmentVariable("CUDA_DEVICE_ORDER", "PCI_BUS_ID", "User")\r\n'
    '[Environment]::SetEnvironmentVariable("CUDA_VISIBLE_DEVICES", "1", "User")\r\n'
    'setx CUDA_VISIBLE_DEVICES "1"\r\n'
) + PS1.split("setx CUDA_VISIBLE_DEVICES 0\r\n", 1)[1]

BAT = (
    "@echo off\r\n"
    "setlocal\r\n"
    "set CUDA_VISIBLE_DEVICES=0\r\n"
    'SET "cuda_visible_devices=2" & python serve.py --device=cuda:1\r\n'
    'if "%1"=="x" (set CUDA_VISIBLE_DEVICES=0) else (set CUDA_VISIBLE_DEVICES=1)\r\n'
    "if not defined GPU set CUDA_VISIBLE_DEVICES=0\r\n"
    'set CUDA_VISIBLE_DEVICES="1"\r\n'
    "set /a CUDA_VISIBLE_DEVICES=0\r\n"
    "setx CUDA_VISIBLE_DEVICES 0 /M\r\n"
    "set CUDA_VISIBLE_DEVICES=%GPU%\r\n"
    "echo set CUDA_VISIBLE_DEVICES=0\r\n"
    "REM set CUDA_VISIBLE_DEVICES=0\r\n"
    ":: set CUDA_VISIBLE_DEVICES=0\r\n"
)
BAT_FINDINGS = [
    ("run.bat", 3, 26, "GPU102", True), ("run.bat", 3, 26, "GPU103", True),
    ("run.bat", 4, 27, "GPU102", True), ("run.bat", 4, 27, "GPU103", True), ("run.bat", 4, 57, "GPU001", True),
    ("run.bat", 5, 40, "GPU102", True), ("run.bat", 5, 40, "GPU103", True),
    ("run.bat", 5, 74, "GPU102", True),
    ("run.bat", 6, 45, "GPU102", True), ("run.bat", 6, 45, "GPU103", True),
    # `set NAME="1"` keeps the quotes in the value: CUDA would not read it as GPU 1
    ("run.bat", 7, 26, "GPU103", True),
    # `set /a`: arithmetic (a comma there separates expressions): reported, not rewritten
    ("run.bat", 8, 29, "GPU102", True), ("run.bat", 8, 29, "GPU103", False),
    ("run.bat", 9, 27, "GPU102", True), ("run.bat", 9, 27, "GPU103", True),
]
BAT_FIXED = (
    "@echo off\r\n"
    "setlocal\r\n"
    "set CUDA_DEVICE_ORDER=PCI_BUS_ID\r\n"
    "set CUDA_VISIBLE_DEVICES=1\r\n"
    'SET "cuda_visible_devices=1" & python serve.py --device=cuda:0\r\n'
    'if "%1"=="x" (set CUDA_VISIBLE_DEVICES=1) else (set CUDA_VISIBLE_DEVICES=1)\r\n'
    "if not defined GPU set CUDA_VISIBLE_DEVICES=1\r\n"
    "set CUDA_VISIBLE_DEVICES=1\r\n"
    "set /a CUDA_VISIBLE_DEVICES=0\r\n"
    "setx CUDA_DEVICE_ORDER PCI_BUS_ID /M\r\n"
    "setx CUDA_VISIBLE_DEVICES 1 /M\r\n"
) + BAT.split("setx CUDA_VISIBLE_DEVICES 0 /M\r\n", 1)[1]


@pytest.mark.parametrize("name,text,findings,fixed", [
    ("run.ps1", PS1, PS1_FINDINGS, PS1_FIXED),
    ("run.bat", BAT, BAT_FINDINGS, BAT_FIXED),
], ids=["powershell", "batch"])
def test_every_form_found_fixed_exactly_and_once(tmp_path, name, text, findings, fixed):
    root = project(tmp_path, {name: text.encode()})
    assert found(scan(root)) == findings
    left = [(name, 9, 29, "GPU103", False)] if name == "run.bat" else []  # `set /a` stays (report only)
    proc = apply(root)
    assert proc.returncode == (1 if left else 0)
    assert (root / name).read_bytes() == fixed.encode()  # CRLF and every other byte kept
    assert found(scan(root)) == left
    apply(root)
    assert (root / name).read_bytes() == fixed.encode()  # idempotent


def test_powershell_cuda_argument_is_judged_under_the_session_mask(tmp_path):
    root = project(tmp_path, {"go.ps1": "$env:CUDA_DEVICE_ORDER = 'PCI_BUS_ID'\n"
                                        "python a.py --device cuda:1\n"  # no mask yet: physical 1 -> 0
                                        "$env:CUDA_VISIBLE_DEVICES = '1'\n"
                                        "python b.py --device cuda:0\n"  # cuda:0 under '1': right
                                        "$env:CUDA_VISIBLE_DEVICES = $gpu\n"
                                        "python c.py --device cuda:1\n"})  # under a mask not known
    rep = scan(root)
    assert [(f["line"], f["rule"], bool(f["fix"])) for f in rep["findings"]] == [(2, "GPU001", True), (6, "GPU001", False)]
    assert "the physical GPU it meant is unknown" in rep["findings"][1]["message"]


def test_suppression_comments(tmp_path):
    root = project(tmp_path, {
        "a.ps1": '$env:CUDA_DEVICE_ORDER = "PCI_BUS_ID"\n$env:CUDA_VISIBLE_DEVICES = "0"  # gpufix: ignore[GPU103]\n'
                 '$env:CUDA_VISIBLE_DEVICES = "2"  # noqa: GPU103\n$env:CUDA_VISIBLE_DEVICES = "3"\n',
        "b.ps1": '# gpufix: ignore-file\n$env:CUDA_VISIBLE_DEVICES = "0"\n',
        "c.bat": "set CUDA_DEVICE_ORDER=PCI_BUS_ID\r\nset CUDA_VISIBLE_DEVICES=0 & REM gpufix: ignore[GPU103]\r\n"
                 "set CUDA_VISIBLE_DEVICES=2 & :: noqa: GPU103\r\nset CUDA_VISIBLE_DEVICES=3\r\n",
        "d.cmd": "@echo off\r\n:: gpufix: ignore-file[GPU103]\r\nset CUDA_VISIBLE_DEVICES=0\r\n",
        "e.bat": "REM gpufix: ignore-file\r\nset CUDA_VISIBLE_DEVICES=0\r\n",
    })
    assert found(scan(root)) == [("a.ps1", 4, 29, "GPU103", True), ("c.bat", 4, 26, "GPU103", True),
                                 ("d.cmd", 3, 26, "GPU102", True)]
    apply(root)
    assert (root / "c.bat").read_bytes() == (b"set CUDA_DEVICE_ORDER=PCI_BUS_ID\r\nset CUDA_VISIBLE_DEVICES=0 & REM gpufix: ignore[GPU103]\r\n"
                                             b"set CUDA_VISIBLE_DEVICES=2 & :: noqa: GPU103\r\nset CUDA_VISIBLE_DEVICES=1\r\n")


def test_show_files_lists_launchers_and_named_files_are_read_as_their_kind(tmp_path):
    root = project(tmp_path, {"run_all.ps1": '$env:CUDA_VISIBLE_DEVICES = "0"\r\n',
                              "run_all.bat": "set CUDA_VISIBLE_DEVICES=0\r\n",
                              "tools/Setup.CMD": "echo hi\r\n", "lib.psm1": "function f {}\n"})
    proc = run_gpufix("scan", "--show-files", ".", cwd=root)
    assert proc.stdout.split() == ["lib.psm1", "run_all.bat", "run_all.ps1", native("tools/Setup.CMD")]
    proc = run_gpufix("scan", "run_all.ps1", "run_all.bat", "--format", "json", "--no-cache", cwd=root)
    rep = json.loads(proc.stdout)
    assert rep["errors"] == [] and proc.returncode == 1
    assert sorted({(f["path"], f["rule"]) for f in rep["findings"]}) == [
        ("run_all.bat", "GPU102"), ("run_all.bat", "GPU103"), ("run_all.ps1", "GPU102"), ("run_all.ps1", "GPU103")]


def test_file_kinds_policy_key_takes_the_new_kinds(tmp_path):
    root = project(tmp_path, {"run.ps1": '$env:CUDA_VISIBLE_DEVICES = "0"\n', "run.bat": "set CUDA_VISIBLE_DEVICES=0\n"},
                   policy=POLICY + 'file-kinds = ["python", "batch"]\n')
    assert {f[0] for f in found(scan(root))} == {"run.bat"}


BENCH = ('import argparse\nimport os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n'
         'os.environ["CUDA_VISIBLE_DEVICES"] = "1"\nimport torch\n\n'
         'def main():\n    p = argparse.ArgumentParser()\n    p.add_argument("--gpu", type=int, default=1)\n'
         '    a = p.parse_args()\n    torch.cuda.set_device(a.gpu)\n\n\nif __name__ == "__main__":\n    main()\n')


def test_a_default_is_not_rewritten_alone_when_a_launcher_passes_the_option(tmp_path):
    root = project(tmp_path, {
        "benchmarks/bench.py": BENCH,
        "run_all.bat": "@echo off\r\npython benchmarks\\bench.py --gpu 1\r\n",
        "scripts/run.ps1": "& .venv\\Scripts\\python.exe -u ..\\benchmarks\\bench.py --gpu=1 --steps 10\r\n",
        "other.sh": "python benchmarks/other.py --gpu 1\n",  # another script: no bearing
        "tools/go.sh": "cd .. && python3 -m benchmarks.bench --gpu 1\n",  # the module's file
    })
    rep = scan(root)
    [f] = [f for f in rep["findings"] if f["path"] == "benchmarks/bench.py"]
    assert (f["rule"], f["line"], f["fix"]) == ("GPU001", 9, None)
    assert (f"run_all.bat (line 2: --gpu 1), {native('scripts/run.ps1')} (line 1: --gpu 1), "
            f"{native('tools/go.sh')} (line 1: --gpu 1) pass it to this script") in f["message"]
    assert "change the launcher's --gpu together with the default" in f["message"]
    # the same when only the script is named (pre-commit): the launchers are the project's
    proc = run_gpufix("scan", "benchmarks/bench.py", "--format", "json", "--no-cache", cwd=root)
    assert [g["message"] for g in json.loads(proc.stdout)["findings"]] == [f["message"]]
    before = (root / "benchmarks/bench.py").read_bytes()
    apply(root)
    assert (root / "benchmarks/bench.py").read_bytes() == before

    # once the launchers pass the new index, the default is rewritten like any other
    (root / "run_all.bat").write_bytes(b"@echo off\r\npython benchmarks\\bench.py --gpu 0\r\n")
    (root / "scripts/run.ps1").write_bytes(b"python ..\\benchmarks\\bench.py\r\n")
    (root / "tools/go.sh").write_bytes(b"python3 -m benchmarks.bench --gpu 0\n")
    rep = scan(root)
    [f] = [f for f in rep["findings"] if f["path"] == "benchmarks/bench.py"]
    assert f["fix"] is not None
    apply(root)
    assert b'default=0)' in (root / "benchmarks/bench.py").read_bytes()


def test_vscode_env_objects_get_the_order_member(tmp_path):
    tasks = ('{\n  "tasks": [\n'
             '    {"label": "a", "options": {"env": {"CUDA_VISIBLE_DEVICES": "1"}}},\n'
             '    {"label": "b", "options": {"env": {\n        "CUDA_VISIBLE_DEVICES": 1\n    }}}\n  ]\n}\n')
    launch = ('{\n  // debug\n  "configurations": [\n    {\n      "name": "x",\n      "env": {\n'
              '        "CUDA_VISIBLE_DEVICES": "1"\n      },\n    }\n  ]\n}\n')
    root = project(tmp_path, {".vscode/tasks.json": tasks, ".vscode/launch.json": launch})
    assert [(f[0], f[3], f[4]) for f in found(scan(root))] == [
        (".vscode/launch.json", "GPU102", True), (".vscode/tasks.json", "GPU102", True), (".vscode/tasks.json", "GPU102", True)]
    apply(root)
    assert (root / ".vscode/tasks.json").read_text() == tasks.replace(
        '{"env": {"CUDA', '{"env": {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA').replace(
        '{"env": {\n        "CUDA', '{"env": {\n        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",\n        "CUDA')
    assert (root / ".vscode/launch.json").read_text() == launch.replace(
        '        "CUDA_VISIBLE', '        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",\n        "CUDA_VISIBLE')
    assert found(scan(root)) == []


def test_names_are_matched_without_case(tmp_path):
    root = project(tmp_path, {"dockerfile": "FROM python\nENV CUDA_VISIBLE_DEVICES=0\n",
                              "Upper.PY": "import torch\nx = torch.zeros(1, device='cuda:0')\n"})
    rules = {(f[0], f[3]) for f in found(scan(root))}
    assert ("dockerfile", "GPU103") in rules
    assert ("Upper.PY", "GPU101") in rules  # a script outside any package, as `upper.py` would be


def test_path_helpers_for_windows_and_posix():
    from gpufix.discover import native_path, path_within, same_path

    assert native_path("src/app.py", sep="\\") == "src\\app.py"
    assert native_path("src/app.py", sep="/") == "src/app.py"
    assert native_path("-", sep="\\") == "-"
    assert path_within("C:\\Dev\\SuperWhisper_V6\\STT\\a.py", "c:\\dev\\superwhisper_v6", caseless=True)
    assert not path_within("C:\\Dev\\SuperWhisper_V6b\\a.py", "c:\\dev\\superwhisper_v6", caseless=True)
    assert not path_within("/home/u/Proj/a.py", "/home/u/proj", caseless=False)
    assert path_within("/home/u/proj", "/home/u/proj/", caseless=False)
    assert same_path("C:/Dev/x.py", "c:\\dev\\X.PY", caseless=True) and not same_path("/a/X.py", "/a/x.py", caseless=False)
    from gpufix.discover import skipped_dir

    assert skipped_dir(".VENV", caseless=True) and skipped_dir("Build", caseless=True)
    assert not skipped_dir("Build", caseless=False) and skipped_dir("pkg.egg-info", caseless=False)


def test_check_advice_in_the_users_shell():
    from gpufix.hardware.checks import set_env_command

    assert set_env_command("CUDA_DEVICE_ORDER", "PCI_BUS_ID", windows=False) == "export CUDA_DEVICE_ORDER=PCI_BUS_ID"
    assert set_env_command("CUDA_DEVICE_ORDER", "PCI_BUS_ID", windows=True) == (
        '$env:CUDA_DEVICE_ORDER = "PCI_BUS_ID" (PowerShell) or set CUDA_DEVICE_ORDER=PCI_BUS_ID (cmd)')


def test_an_order_set_in_one_branch_does_not_serve_another(tmp_path):
    """`if { } elseif { }`: a CUDA_DEVICE_ORDER line inserted in one branch would leave the other
    branch's programs in CUDA's default order, so each branch gets its own; a top-level one serves
    every block below it."""
    ps1 = ("if ($Preset -eq 'big') {\n    $env:CUDA_VISIBLE_DEVICES = '1'\n} elseif ($Preset -eq 'low') {\n"
           "    $env:CUDA_VISIBLE_DEVICES = '1'  # the small card\n}\n")
    bat = "set CUDA_VISIBLE_DEVICES=1\r\nif \"%1\"==\"x\" (\r\n  set CUDA_VISIBLE_DEVICES=1\r\n)\r\n"
    root = project(tmp_path, {"a.ps1": ps1, "b.bat": bat})
    assert [(f[0], f[1], f[3]) for f in found(scan(root))] == [
        ("a.ps1", 2, "GPU102"), ("a.ps1", 4, "GPU102"), ("b.bat", 1, "GPU102"), ("b.bat", 3, "GPU102")]
    apply(root)
    assert (root / "a.ps1").read_text() == ps1.replace(
        "{\n    $env:CUDA_VISIBLE", '{\n    $env:CUDA_DEVICE_ORDER = "PCI_BUS_ID"\n    $env:CUDA_VISIBLE')
    assert (root / "b.bat").read_bytes() == b"set CUDA_DEVICE_ORDER=PCI_BUS_ID\r\n" + bat.encode()
    assert found(scan(root)) == []
