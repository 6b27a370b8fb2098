"""`gpufix guard` in a freshly made venv, seen by real interpreters: a new `python`, a subprocess it
starts, a `python -m pytest` run; then uninstalled, leaving the venv byte for byte as it was.
And the pytest plugin from a real wheel install: its mask is in force when the conftest is imported."""

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from conftest import NESTED_PYTEST as OTHER_PLUGINS_OFF
from conftest import ROOT, run_gpufix

SHOW = "import json, os; print(json.dumps([os.environ.get('CUDA_VISIBLE_DEVICES'), os.environ.get('CUDA_DEVICE_ORDER')]))"
SHOW_CHILD = ("import subprocess, sys; subprocess.run([sys.executable, '-c', " + repr(SHOW) + "], check=True)")


def make_venv(path: Path) -> Path:
    venv.create(path, with_pip=False, symlinks=os.name != "nt")
    return path


def venv_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_site(env: Path) -> Path:
    out = subprocess.run([str(venv_python(env)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def py(env: Path, code: str, cwd=None, **shell):
    full = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
                                                             "PYTHONPATH", "VIRTUAL_ENV", "GPUFIX_GUARD")}
    full.update(shell)
    return subprocess.run([str(venv_python(env)), "-c", code], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def policy_dir(tmp_path):
    d = tmp_path / "project"
    d.mkdir()
    (d / "pyproject.toml").write_text('[tool.gpufix]\nvisible-devices = "1"\n', encoding="utf-8")
    return d


def test_guard_install_is_seen_by_every_interpreter_start_and_uninstall_leaves_nothing(tmp_path, policy_dir):
    env = make_venv(tmp_path / "venv")
    site = venv_site(env)
    # the test tools (pytest) from the test runner's environment, visible to the fresh venv
    (site / "zz-test-tools.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    before = snapshot(env)

    res = run_gpufix("guard", "install", "--venv", env, cwd=policy_dir)
    assert res.returncode == 0, res.stderr
    assert res.stdout == (f"gpufix guard: installed in {site} (enforce: CUDA_VISIBLE_DEVICES='1', "
                          f"CUDA_DEVICE_ORDER=PCI_BUS_ID, cpu-runs keep; from {policy_dir / 'pyproject.toml'})\n")
    # the hook, the module, its bytecode (compiled at install: no start has to) and the record
    written = ("00-gpufix-guard.pth", "_gpufix_guard.json", "_gpufix_guard.py", "__pycache__",
               f"__pycache__/_gpufix_guard.{sys.implementation.cache_tag}.pyc")
    assert sorted(set(snapshot(env)) - set(before)) == sorted(str((site / n).relative_to(env)) for n in written)

    # a new interpreter: unset variables are set
    res = py(env, SHOW)
    assert (json.loads(res.stdout), res.stderr) == (["1", "PCI_BUS_ID"], "")
    # a caller's other mask is replaced, said once on stderr; its subprocess inherits the pinned value silently
    res = py(env, SHOW + "; " + SHOW_CHILD, CUDA_VISIBLE_DEVICES="0")
    assert [json.loads(line) for line in res.stdout.splitlines()] == [["1", "PCI_BUS_ID"], ["1", "PCI_BUS_ID"]]
    assert res.stderr == ("gpufix guard: replaced CUDA_VISIBLE_DEVICES='0' with '1' (this environment's policy; "
                          "GPUFIX_GUARD=off keeps yours)\n")
    # an explicit CPU run is kept (cpu-runs = "keep"); GPUFIX_GUARD=off turns it off for one process
    assert json.loads(py(env, SHOW, CUDA_VISIBLE_DEVICES="").stdout) == ["", "PCI_BUS_ID"]
    assert json.loads(py(env, SHOW, CUDA_VISIBLE_DEVICES="0", GPUFIX_GUARD="off").stdout) == ["0", None]
    # isolated mode still runs site-packages' start-up hooks
    iso = subprocess.run([str(venv_python(env)), "-I", "-c", SHOW], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if not k.startswith("CUDA_")})
    assert json.loads(iso.stdout) == ["1", "PCI_BUS_ID"]

    # a python -m pytest run: the conftest and the tests see the mask, with no header anywhere
    tests = tmp_path / "suite"
    tests.mkdir()
    (tests / "conftest.py").write_text("import os\nAT_IMPORT = os.environ.get('CUDA_VISIBLE_DEVICES')\n",
                                       encoding="utf-8")
    (tests / "test_mask.py").write_text(
        "import os\nfrom conftest import AT_IMPORT\n\n\ndef test_mask():\n"
        "    assert (AT_IMPORT, os.environ['CUDA_VISIBLE_DEVICES'], os.environ['CUDA_DEVICE_ORDER']) == "
        "('1', '1', 'PCI_BUS_ID')\n", encoding="utf-8")
    # (-p no:gpufix: where the runner's environment has gpufix installed, its plugin's entry point would be
    # visible here without its package: this run tests the guard alone)
    res = subprocess.run([str(venv_python(env)), "-m", "pytest", "-q", *OTHER_PLUGINS_OFF, "-p", "no:gpufix", str(tests)], cwd=tests, capture_output=True, text=True, timeout=300,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("CUDA_")},
                              "CUDA_VISIBLE_DEVICES": "0"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout

    st = run_gpufix("guard", "status", "--venv", env, cwd=policy_dir)
    assert st.returncode == 0, st.stderr
    assert st.stdout.splitlines()[:2] == [f"gpufix guard: installed in {site}",
                                          "  mode enforce: CUDA_VISIBLE_DEVICES='1', CUDA_DEVICE_ORDER=PCI_BUS_ID, "
                                          "cpu-runs keep"]
    assert "  _gpufix_guard.py: ok" in st.stdout and "  00-gpufix-guard.pth: ok" in st.stdout

    # the interpreter wrote the module's bytecode; uninstall removes it with everything else
    assert list((site / "__pycache__").glob("_gpufix_guard.*.pyc"))
    res = run_gpufix("guard", "uninstall", "--venv", env, cwd=policy_dir)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == f"removed {site / '00-gpufix-guard.pth'}"
    assert snapshot(env) == before
    assert json.loads(py(env, SHOW).stdout) == [None, None]
    st = run_gpufix("guard", "status", "--venv", env, cwd=policy_dir)
    assert (st.returncode, st.stdout) == (1, f"gpufix guard: not installed in {site}\n")


def test_mode_default_only_sets_what_is_unset_and_reinstall_replaces_values(tmp_path, policy_dir):
    env = make_venv(tmp_path / "venv")
    assert run_gpufix("guard", "install", "--venv", env, cwd=policy_dir).returncode == 0
    (policy_dir / "pyproject.toml").write_text('[tool.gpufix]\nvisible-devices = "0"\nguard-mode = "default"\n',
                                               encoding="utf-8")
    st = run_gpufix("guard", "status", "--venv", env, cwd=policy_dir)
    assert "note: this folder's policy" in st.stdout and "CUDA_VISIBLE_DEVICES='0'" in st.stdout
    res = run_gpufix("guard", "install", "--venv", env, cwd=policy_dir)
    assert res.returncode == 0 and "(default: CUDA_VISIBLE_DEVICES='0'" in res.stdout
    assert json.loads(py(env, SHOW).stdout) == ["0", "PCI_BUS_ID"]
    res = py(env, SHOW, CUDA_VISIBLE_DEVICES="1", CUDA_DEVICE_ORDER="FASTEST_FIRST")
    assert (json.loads(res.stdout), res.stderr) == (["1", "FASTEST_FIRST"], "")
    res = run_gpufix("guard", "install", "--venv", env, "--mode", "enforce", cwd=policy_dir)
    assert json.loads(py(env, SHOW, CUDA_VISIBLE_DEVICES="1").stdout) == ["0", "PCI_BUS_ID"]


def test_a_broken_guard_never_breaks_python(tmp_path, policy_dir):
    env = make_venv(tmp_path / "venv")
    assert run_gpufix("guard", "install", "--venv", env, cwd=policy_dir).returncode == 0
    site = venv_site(env)
    module = site / "_gpufix_guard.py"
    for broken in ("raise RuntimeError('boom')\n", "def (:\n"):
        module.write_text(broken, encoding="utf-8")
        for cache in (site / "__pycache__").glob("_gpufix_guard.*"):
            cache.unlink()
        res = py(env, "print('alive')")
        assert (res.returncode, res.stdout, res.stderr) == (0, "alive\n", "")
    st = run_gpufix("guard", "status", "--venv", env, cwd=policy_dir)
    assert st.returncode == 1 and "  _gpufix_guard.py: modified" in st.stdout
    module.unlink()
    res = py(env, "print('alive')")
    assert (res.returncode, res.stdout, res.stderr) == (0, "alive\n", "")
    assert run_gpufix("guard", "uninstall", "--venv", env, cwd=policy_dir).returncode == 0
    assert not [p.name for p in site.iterdir()]


def test_guard_refuses_what_is_not_a_venv_and_files_it_did_not_write(tmp_path, policy_dir):
    plain = tmp_path / "plain"
    plain.mkdir()
    res = run_gpufix("guard", "install", "--venv", plain, cwd=policy_dir)
    assert res.returncode == 2 and "not a virtual environment (no pyvenv.cfg)" in res.stderr
    env = make_venv(tmp_path / "venv")
    site = venv_site(env)
    (site / "_gpufix_guard.py").write_text("# mine\n", encoding="utf-8")
    res = run_gpufix("guard", "install", "--venv", env, cwd=policy_dir)
    assert res.returncode == 2 and "exists and was not written by gpufix guard" in res.stderr
    assert (site / "_gpufix_guard.py").read_text(encoding="utf-8") == "# mine\n"
    assert not (site / "00-gpufix-guard.pth").exists()
    # a planted record cannot make uninstall delete anything but the guard's own names
    (site / "_gpufix_guard.py").unlink()
    (site / "victim.py").write_text("keep\n", encoding="utf-8")
    (tmp_path / "outside.txt").write_text("keep\n", encoding="utf-8")
    (site / "_gpufix_guard.json").write_text(json.dumps({"tool": "gpufix-guard", "files": [
        {"path": "victim.py"}, {"path": "../../../../outside.txt"}, {"path": str(tmp_path / "outside.txt")},
        {"path": "__pycache__/../victim.py"}]}), encoding="utf-8")
    res = run_gpufix("guard", "uninstall", "--venv", env, cwd=policy_dir)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"removed {site / '_gpufix_guard.json'}\ngpufix guard: uninstalled from {site}\n"
    assert (site / "victim.py").is_file() and (tmp_path / "outside.txt").is_file()
    no_policy = tmp_path / "nopolicy"
    no_policy.mkdir()
    (no_policy / ".git").mkdir()
    res = run_gpufix("guard", "install", "--venv", env, cwd=no_policy)
    assert res.returncode == 2 and "no visible-devices policy" in res.stderr


def test_check_reports_the_guard_of_the_environment_it_runs_in(tmp_path, policy_dir):
    env = make_venv(tmp_path / "venv")
    site = venv_site(env)
    (site / "zz-gpufix.pth").write_text(str(ROOT) + "\n" + sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    probe = {"GPUFIX_PROBE": "gpufix.hardware.testing:user_machine"}
    cmd = [str(venv_python(env)), "-m", "gpufix", "check", "--format", "json", "-q"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CUDA_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    res = subprocess.run(cmd, cwd=policy_dir, env={**clean, **probe}, capture_output=True, text=True, timeout=120)
    assert json.loads(res.stdout)["guard"]["installed"] is False
    assert run_gpufix("guard", "install", "--venv", env, cwd=policy_dir).returncode == 0
    res = subprocess.run(cmd, cwd=policy_dir, env={**clean, **probe}, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    guard = json.loads(res.stdout)["guard"]
    assert guard == {"installed": True, "site_packages": str(site), "mode": "enforce", "visible_devices": "1",
                     "device_order": "PCI_BUS_ID", "cpu_runs": "keep", "source": str(policy_dir / "pyproject.toml"),
                     "hook_present": True, "in_force": True}
    text = subprocess.run(cmd[:-3], cwd=policy_dir, env={**clean, **probe}, capture_output=True, text=True, timeout=120)
    assert (f"guard: enforce: CUDA_VISIBLE_DEVICES='1', CUDA_DEVICE_ORDER=PCI_BUS_ID, cpu-runs keep in {site} "
            "(in force in this process)") in text.stdout
    other = subprocess.run(cmd + ["--visible-devices", "0"], cwd=policy_dir, env={**clean, **probe},
                           capture_output=True, text=True, timeout=120)
    assert any("the guard of this environment sets CUDA_VISIBLE_DEVICES='1'" in n
               for n in json.loads(other.stdout)["notes"])


# ---- the pytest plugin, from a real wheel --------------------------------------------------------
@pytest.fixture(scope="module")
def plugin_venv(wheel_venv):
    """The session's venv with the real wheel installed (tests/conftest.py): the plugin comes from
    the wheel's entry points."""
    return wheel_venv


def suite(root: Path, config: str) -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "pyproject.toml").write_text(config, encoding="utf-8")
    (root / "tests" / "conftest.py").write_text(
        "import os\nAT_IMPORT = (os.environ.get('CUDA_VISIBLE_DEVICES'), os.environ.get('CUDA_DEVICE_ORDER'))\n",
        encoding="utf-8")
    (root / "tests" / "test_seen.py").write_text(
        "import json\nfrom conftest import AT_IMPORT\n\n\ndef test_seen():\n    print('SEEN', json.dumps(AT_IMPORT))\n",
        encoding="utf-8")
    return root


def pytest_in(env: Path, root: Path, *args, **shell):
    full = {k: v for k, v in os.environ.items() if not k.startswith("CUDA_") and k != "PYTHONPATH"}
    full.update(shell)
    return subprocess.run([str(venv_python(env)), "-m", "pytest", "-s", *OTHER_PLUGINS_OFF, *args], cwd=root, env=full, capture_output=True, text=True, timeout=300)


def seen_by_conftest(res):
    line = next(line for line in res.stdout.splitlines() if "SEEN " in line)
    return json.loads(line.split("SEEN ", 1)[1])


def test_the_plugin_pins_the_session_before_the_conftest_is_imported(plugin_venv, tmp_path):
    root = suite(tmp_path / "proj", '[tool.gpufix]\nvisible-devices = "1"\npytest-guard = true\n')
    res = pytest_in(plugin_venv, root, "tests", CUDA_VISIBLE_DEVICES="0")
    assert res.returncode == 0, res.stdout + res.stderr
    assert seen_by_conftest(res) == ["1", "PCI_BUS_ID"]
    assert (f"gpufix pytest guard: CUDA_VISIBLE_DEVICES='1' CUDA_DEVICE_ORDER=PCI_BUS_ID (enforce, from "
            f"{root / 'pyproject.toml'})") in res.stdout
    assert "gpufix pytest guard: replaced CUDA_VISIBLE_DEVICES='0' with '1'" in res.stdout
    # started from inside the test folder (as an IDE does), the project's policy still applies
    res = pytest_in(plugin_venv, root / "tests", "test_seen.py")
    assert seen_by_conftest(res) == ["1", "PCI_BUS_ID"]
    # -p no:gpufix turns it off for one run
    res = pytest_in(plugin_venv, root, "-p", "no:gpufix", "tests", CUDA_VISIBLE_DEVICES="0")
    assert seen_by_conftest(res) == ["0", None]


def test_the_plugin_does_nothing_unless_the_policy_asks(plugin_venv, tmp_path):
    root = suite(tmp_path / "proj", '[tool.gpufix]\nvisible-devices = "1"\n')
    res = pytest_in(plugin_venv, root, "tests")
    assert res.returncode == 0, res.stdout + res.stderr
    assert seen_by_conftest(res) == [None, None]
    assert "gpufix pytest guard" not in res.stdout + res.stderr
    # a broken policy elsewhere in the file is not the plugin's business when it is not asked for
    (root / "pyproject.toml").write_text('[tool.gpufix]\nvisible-devices = "x"\n', encoding="utf-8")
    assert pytest_in(plugin_venv, root, "tests").returncode == 0
    # a policy file that is not even TOML: a warning, the session runs (unpinned)
    (root / "gpufix.toml").write_text("visible-devices = [\n", encoding="utf-8")
    res = pytest_in(plugin_venv, root, "tests", "-W", "default")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "gpufix pytest guard: not pinned:" in res.stdout and "invalid TOML" in res.stdout
    (root / "gpufix.toml").unlink()
    # asked for, a bad policy is a usage error, not a silently unpinned run
    (root / "pyproject.toml").write_text('[tool.gpufix]\nvisible-devices = "x"\npytest-guard = true\n',
                                         encoding="utf-8")
    res = pytest_in(plugin_venv, root, "tests")
    assert res.returncode == 4
    assert "gpufix pytest guard:" in res.stderr and "is not a valid CUDA_VISIBLE_DEVICES value" in res.stderr


def test_the_plugin_keeps_a_cpu_run_and_follows_guard_mode(plugin_venv, tmp_path):
    root = suite(tmp_path / "proj", '[tool.gpufix]\nvisible-devices = "1"\npytest-guard = true\nguard-mode = "default"\n')
    assert seen_by_conftest(pytest_in(plugin_venv, root, "tests", CUDA_VISIBLE_DEVICES="0")) == ["0", "PCI_BUS_ID"]
    assert seen_by_conftest(pytest_in(plugin_venv, root, "tests", CUDA_VISIBLE_DEVICES="")) == ["", "PCI_BUS_ID"]
    assert seen_by_conftest(pytest_in(plugin_venv, root, "tests")) == ["1", "PCI_BUS_ID"]


def test_the_start_up_hook_does_what_pin_does_for_every_caller_environment(tmp_path, policy_dir):
    """The hook's import-free path and the module's full rule together equal gpufix.runtime.pin, for
    every caller's mask and order, in both modes and both cpu-runs settings, in real interpreters."""
    from gpufix.runtime.pin import pin

    env = make_venv(tmp_path / "venv")
    masks = [None, "", "-1", "0", "1", "1,0"]
    orders = [None, "PCI_BUS_ID", "FASTEST_FIRST"]
    probe = ("import json, os, sys; print(json.dumps([os.environ.get('CUDA_VISIBLE_DEVICES'), "
             "os.environ.get('CUDA_DEVICE_ORDER'), '_gpufix_guard' in sys.modules]))")
    # one interpreter per caller environment would be 36 starts per setting: a launcher starts them
    launcher = ("import json, os, subprocess, sys\nout = []\nfor mask, order in json.loads(sys.argv[1]):\n"
                "    env = {k: v for k, v in os.environ.items() if not k.startswith('CUDA_')}\n"
                "    env.update({k: v for k, v in (('CUDA_VISIBLE_DEVICES', mask), ('CUDA_DEVICE_ORDER', order)) "
                "if v is not None})\n"
                "    r = subprocess.run([sys.executable, '-c', sys.argv[2]], env=env, capture_output=True, text=True)\n"
                "    out.append([json.loads(r.stdout), r.stderr])\nprint(json.dumps(out))\n")
    cases = [[m, o] for m in masks for o in orders]
    for mode in ("enforce", "default"):
        for cpu_runs in ("keep", "override"):
            (policy_dir / "pyproject.toml").write_text(
                f'[tool.gpufix]\nvisible-devices = "1"\ncpu-runs = "{cpu_runs}"\nguard-mode = "{mode}"\n',
                encoding="utf-8")
            assert run_gpufix("guard", "install", "--venv", env, cwd=policy_dir).returncode == 0
            res = py(env, launcher.replace("sys.argv[1]", repr(json.dumps(cases))).replace("sys.argv[2]", repr(probe)))
            assert res.returncode == 0, res.stderr
            for (mask, order), ((got_mask, got_order, imported), stderr) in zip(cases, json.loads(res.stdout)):
                want = {k: v for k, v in (("CUDA_VISIBLE_DEVICES", mask), ("CUDA_DEVICE_ORDER", order)) if v is not None}
                replaced = pin(want, "1", "PCI_BUS_ID", cpu_runs, mode)
                where = (mode, cpu_runs, mask, order)
                assert [got_mask, got_order] == [want.get("CUDA_VISIBLE_DEVICES"), want.get("CUDA_DEVICE_ORDER")], where
                assert bool(stderr) == bool(replaced), (where, stderr)
                if mask in (None, "1") and order in (None, "PCI_BUS_ID"):
                    assert not imported, where  # the common cases import nothing
