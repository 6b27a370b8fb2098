"""One project, one answer (issue 19): a file's findings and fixes come from its place in its
project, whichever files the command names; fixes that are safe only together are made together
or not at all; Python's own import rules decide what a file runs.

Each test runs the real `python -m gpufix` on a real project in a temp dir and asserts what the
user sees: the bytes on disk, the findings, the exit code."""

import json
import textwrap
from pathlib import Path

import pytest
from conftest import FIXTURES, gpufix_in_process, init_git_repo, run_gpufix
from seed004_project import HEADER, MAIN, POLICY, VAD

INSERTED = 'import os\n\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n\n'


def make(root: Path, files: dict, git: bool = True) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    if git:
        init_git_repo(root)
    return root


def found(proc) -> list:
    assert proc.returncode in (0, 1), proc.stderr
    return [(f["path"], f["line"], f["rule"], f["fix"] is not None) for f in json.loads(proc.stdout)["findings"]]


def seed004(tmp_path) -> Path:
    return make(tmp_path, {"pyproject.toml": POLICY, "STT/vad_manager.py": VAD, "main.py": MAIN})


def notebook(*cells) -> str:
    """An .ipynb whose code cells hold `cells` (a markdown cell first), as Jupyter writes it."""
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# run"]}] + [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
         "source": [ln + "\n" for ln in c.split("\n")[:-1]] + [c.split("\n")[-1]]} for c in cells],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(nb, indent=1) + "\n"


def code_cells(path: Path) -> list:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


# Every way a process starts that the project oracle generates (tests/oracle/project_gen.py): a
# console script whose target sits in a package, plugins loaded by path, a child started with its
# own env, a notebook.
LIB = "import torch\n\n\ndef work():\n    torch.cuda.set_device(1)\n"
PLUGIN = 'import torch\n\n\ndef register():\n    return torch.zeros(1, device="cuda:1")\n'
LOADER = ('import runpy\n\n\ndef main():\n    runpy.run_path("plugins/plug.py")["register"]()\n\n\n'
          'if __name__ == "__main__":\n    main()\n')
SHAPES = {
    "pyproject.toml": '[project]\nname = "demo"\nversion = "0.1"\n\n[project.scripts]\ndemo-run = "app.cli:main"\n\n' + POLICY,
    "app/__init__.py": "",
    "app/cli.py": "import torch\n\n\ndef main():\n    torch.cuda.set_device(1)\n",
    "plugins/plug.py": PLUGIN,
    "load_plugins.py": LOADER,
    "launch.py": ('import os\nimport subprocess\nimport sys\n\n\ndef main():\n    env = os.environ.copy()\n'
                  '    env["CUDA_VISIBLE_DEVICES"] = "0"\n    subprocess.run([sys.executable, "worker.py"], env=env, check=True)\n\n\n'
                  'if __name__ == "__main__":\n    main()\n'),
    "worker.py": 'import torch\n\nif __name__ == "__main__":\n    torch.zeros(1, device="cuda:0")\n',
    "lib.py": LIB,
    "nb.ipynb": notebook("import torch\nfrom lib import work", "work()"),
}


# -- item 1: the safety bug and its mirror --------------------------------------------------------
def test_apply_of_a_module_alone_rewrites_nothing_and_names_the_entry_point(tmp_path):
    root = seed004(tmp_path)
    proc = run_gpufix("apply", "STT/vad_manager.py", "--no-backup", "--no-tag", cwd=root)
    assert (root / "STT/vad_manager.py").read_text() == VAD  # set_device(1) is still physical GPU 1
    assert proc.returncode == 1
    assert "All checks passed" not in proc.stdout
    assert "`main.py` does not set the policy's mask yet and is not part of this run" in proc.stdout
    assert "gpufix apply STT/vad_manager.py main.py" in proc.stdout


def test_apply_of_the_entry_point_alone_leaves_the_module_ordinals_valid(tmp_path):
    # The header alone would make the module's set_device(1) an invalid ordinal under "1".
    root = seed004(tmp_path)
    proc = run_gpufix("apply", "main.py", "--no-backup", "--no-tag", cwd=root)
    assert (root / "main.py").read_text() == MAIN
    assert proc.returncode == 1
    assert "`STT/vad_manager.py` has ordinals that this run does not remap (it is not part of this run)" in proc.stdout


def test_apply_of_both_files_fixes_them_together(tmp_path):
    root = seed004(tmp_path)
    proc = run_gpufix("apply", "main.py", "STT/vad_manager.py", "--no-backup", "--no-tag", cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (root / "main.py").read_text() == INSERTED + MAIN
    assert (root / "STT/vad_manager.py").read_text() == VAD.replace("set_device(1)", "set_device(0)").replace("cuda:1", "cuda:0")


def test_stdin_apply_of_the_module_prints_it_unchanged(tmp_path):
    root = seed004(tmp_path)
    proc = run_gpufix("apply", "-", "--stdin-filename", "STT/vad_manager.py", cwd=root, input=VAD)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == VAD


def test_an_entry_point_that_already_sets_the_mask_lets_the_module_be_fixed_alone(tmp_path):
    root = make(tmp_path, {"pyproject.toml": POLICY, "STT/vad_manager.py": VAD, "main.py": HEADER + MAIN})
    proc = run_gpufix("apply", "STT/vad_manager.py", "--no-backup", "--no-tag", cwd=root)
    assert proc.returncode == 0, proc.stdout
    assert "set_device(0)" in (root / "STT/vad_manager.py").read_text()


def test_a_module_under_an_entry_point_keeping_another_mask_is_not_remapped(tmp_path):
    # main.py keeps "0,1" (GPU103's fix is unsafe): under it cuda:1 is physical GPU 1 already.
    other = HEADER.replace('"1"\n', '"0,1"\n')
    root = make(tmp_path, {"pyproject.toml": POLICY, "STT/vad_manager.py": VAD, "main.py": other + MAIN})
    proc = run_gpufix("apply", ".", "--no-backup", "--no-tag", cwd=root)
    assert (root / "STT/vad_manager.py").read_text() == VAD
    assert "`main.py` keeps a mask that its safe fixes do not replace" in proc.stdout


# -- item 1: folder, subset and stdin give one answer ---------------------------------------------
def _by_file(proc) -> dict:
    assert proc.returncode in (0, 1), proc.stderr
    out: dict = {}
    for f in json.loads(proc.stdout)["findings"]:
        msg = f["message"].split(" (not fixed in this run:")[0]
        out.setdefault(f["path"], []).append((f["rule"], f["line"], f["column"], msg))
    return out


@pytest.mark.parametrize("files", ["superwhisper", "seed004", "shapes"])
def test_folder_subset_and_stdin_findings_are_equal(tmp_path, files):
    if files == "superwhisper":
        import shutil

        root = tmp_path / "p"
        shutil.copytree(FIXTURES / "superwhisper", root)
        text = (root / "pyproject.toml").read_text().replace('header-scope = "gpu-modules"', 'header-scope = "entrypoints"')
        (root / "pyproject.toml").write_text(text)
    elif files == "shapes":
        root = make(tmp_path / "p", SHAPES, git=False)
    else:
        root = seed004(tmp_path / "p")
    whole = _by_file(run_gpufix("scan", ".", "--format", "json", "--no-cache", cwd=root))
    assert whole
    names = sorted(p.relative_to(root).as_posix() for p in [*root.rglob("*.py"), *root.rglob("*.ipynb")])
    # every file with findings, and a few without
    sample = [n for n in names if n in whole] + [n for n in names if n not in whole][:3]
    # the whole scan above ran as a user runs it; the many single-file runs run in this process
    for rel in sample:
        alone = _by_file(gpufix_in_process("scan", rel, "--format", "json", "--no-cache", cwd=root))
        assert alone.get(rel, []) == whole.get(rel, []), rel
        text = (root / rel).read_text(encoding="utf-8")
        piped = _by_file(gpufix_in_process("scan", "-", "--stdin-filename", rel, "--format", "json", "--no-cache",
                                           cwd=root, input=text))
        assert piped.get(rel, []) == whole.get(rel, []), rel


def test_without_any_marker_a_packages_files_are_judged_from_the_folder_above_it(tmp_path):
    """No config, no pyproject/setup/.git (a vendored tree, an installed package): a few of a
    package's files named from elsewhere get the findings of a scan of the folder holding it."""
    root = make(tmp_path / "tree", {
        "pkg/__init__.py": "import torch\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/mod.py": "import torch\nx = torch.zeros(1, device='cuda:1')\n",
        "other/run.py": "import torch\n",
    }, git=False)
    policy = ("--visible-devices", "1", "--format", "json", "--no-cache")
    whole = _by_file(run_gpufix("scan", str(root), *policy, cwd=tmp_path))
    assert "tree/pkg/__init__.py" in whole
    named = _by_file(run_gpufix("scan", str(root / "pkg" / "__init__.py"), str(root / "pkg" / "sub" / "mod.py"),
                                *policy, cwd=tmp_path))
    assert named == {k: v for k, v in whole.items() if k.startswith("tree/pkg/")}
    assert "package `pkg`" in named["tree/pkg/__init__.py"][0][3]


# -- the ways a process starts: console scripts, plugins by path, children with an env, notebooks ------
def test_a_plugin_loaded_by_path_runs_in_its_loaders_process(tmp_path):
    # runpy.run_path("plugins/plug.py") runs the plugin in load_plugins.py's process: the plugin's
    # cuda:1 is remapped only with the header of its loader, which reaches torch through it
    root = make(tmp_path, {"pyproject.toml": POLICY, "plugins/plug.py": PLUGIN, "load_plugins.py": LOADER})
    got = found(run_gpufix("scan", ".", "--format", "json", "--no-cache", "--select", "GPU101,GPU001", cwd=root))
    assert got == [("load_plugins.py", 1, "GPU101", True), ("plugins/plug.py", 5, "GPU001", True)]
    proc = run_gpufix("apply", "plugins/plug.py", "--no-backup", "--no-tag", cwd=root)
    assert (root / "plugins/plug.py").read_text() == PLUGIN
    assert proc.returncode == 1
    assert "`load_plugins.py` does not set the policy's mask yet and is not part of this run" in proc.stdout
    proc = run_gpufix("apply", ".", "--no-backup", "--no-tag", cwd=root)
    assert proc.returncode == 0, proc.stdout
    assert (root / "plugins/plug.py").read_text() == PLUGIN.replace("cuda:1", "cuda:0")
    assert (root / "load_plugins.py").read_text() == INSERTED + LOADER


@pytest.mark.parametrize("load", [
    'importlib.util.spec_from_file_location("plug", os.path.join(os.path.dirname(__file__), "plugins", "plug.py"))',
    'exec(open("plugins/plug.py").read(), {})',
    'exec(Path(__file__).parent.joinpath("plugins/plug.py").read_text())',
])
def test_every_load_by_path_is_followed(tmp_path, load):
    loader = f"import importlib.util\nimport os\nfrom pathlib import Path\n\nif __name__ == \"__main__\":\n    {load}\n"
    root = make(tmp_path, {"pyproject.toml": POLICY, "plugins/plug.py": PLUGIN, "load.py": loader}, git=False)
    got = found(run_gpufix("scan", ".", "--format", "json", "--no-cache", "--select", "GPU101", cwd=root))
    # not fixable in a run that does not select GPU001: the header would move the plugin's cuda:1
    assert got == [("load.py", 1, "GPU101", False)]
    got = found(run_gpufix("scan", ".", "--format", "json", "--no-cache", "--select", "GPU101,GPU001", cwd=root))
    assert got == [("load.py", 1, "GPU101", True), ("plugins/plug.py", 5, "GPU001", True)]


def test_a_bare_init_under_a_folder_in_a_variable_names_no_file(tmp_path):
    # diffusers' utils/check_*.py: spec_from_file_location("x", os.path.join(PATH_TO_X, "__init__.py"))
    loader = ('import importlib.util\nimport os\n\nPATH = "src/other"\n\nif __name__ == "__main__":\n'
              '    importlib.util.spec_from_file_location("x", os.path.join(PATH, "__init__.py"))\n')
    root = make(tmp_path, {"pyproject.toml": POLICY, "gpu/__init__.py": "import torch\n", "check.py": loader}, git=False)
    got = found(run_gpufix("scan", ".", "--format", "json", "--no-cache", "--select", "GPU101", cwd=root))
    assert got == [("gpu/__init__.py", 1, "GPU101", True)]


def test_a_notebook_is_a_process_start_with_its_header_in_the_first_code_cell(tmp_path):
    root = make(tmp_path, {"pyproject.toml": POLICY, "lib.py": LIB,
                           "nb.ipynb": notebook("import torch\nfrom lib import work", "work()")})
    proc = run_gpufix("apply", "lib.py", "--no-backup", "--no-tag", cwd=root)
    assert (root / "lib.py").read_text() == LIB
    assert "`nb.ipynb` does not set the policy's mask yet and is not part of this run" in proc.stdout
    proc = run_gpufix("apply", ".", "--no-backup", "--no-tag", cwd=root)
    assert proc.returncode == 0, proc.stdout
    assert code_cells(root / "nb.ipynb") == [INSERTED + "import torch\nfrom lib import work", "work()"]
    assert (root / "lib.py").read_text() == LIB.replace("set_device(1)", "set_device(0)")


def test_a_child_started_with_its_own_env_gets_the_policys_mask(tmp_path):
    # the env the parent hands the child is fixed, and the child itself, a script, gets the header
    root = make(tmp_path, {k: SHAPES[k] for k in ("launch.py", "worker.py")} | {"pyproject.toml": POLICY})
    proc = run_gpufix("apply", ".", "--no-backup", "--no-tag", cwd=root)
    assert proc.returncode == 0, proc.stdout
    assert 'env["CUDA_VISIBLE_DEVICES"] = "1"\n' in (root / "launch.py").read_text()
    assert (root / "worker.py").read_text() == INSERTED + SHAPES["worker.py"]


def test_a_module_started_with_python_m_gets_its_header_before_its_packages_framework_import(tmp_path):
    # `python -m pkg.worker` runs pkg/__init__.py (which imports torch) before pkg/worker.py
    launch = ('import subprocess\nimport sys\n\nif __name__ == "__main__":\n'
              '    subprocess.run([sys.executable, "-m", "pkg.worker"], check=True)\n')
    root = make(tmp_path, {
        "pyproject.toml": POLICY,
        "pkg/__init__.py": "from .mod import work\n",
        "pkg/mod.py": "import torch\n\n\ndef work():\n    torch.zeros(1)\n",
        "pkg/worker.py": 'from pkg.mod import work\n\nif __name__ == "__main__":\n    work()\n',
        "run.py": 'from pkg.mod import work\n\nif __name__ == "__main__":\n    work()\n',
        "launch.py": launch,
    }, git=False)
    got = found(run_gpufix("scan", ".", "--format", "json", "--no-cache", "--select", "GPU101", cwd=root))
    assert got == [("pkg/__init__.py", 1, "GPU101", True), ("pkg/worker.py", 1, "GPU101", True),
                   ("run.py", 1, "GPU101", True)]


@pytest.mark.parametrize("declared", ["pyproject", "setup.cfg"])
def test_a_console_script_target_gets_one_header(tmp_path, declared):
    # `demo-run` runs `from app.cli import main`: app/__init__.py runs first and holds the header;
    # a target outside any package holds its own
    files = {"app/__init__.py": "", "app/cli.py": SHAPES["app/cli.py"], "tool.py": SHAPES["app/cli.py"]}
    if declared == "pyproject":
        files["pyproject.toml"] = ('[project]\nname = "demo"\nversion = "0.1"\n\n[project.scripts]\n'
                                   'demo-run = "app.cli:main"\ndemo-tool = "tool:main"\n\n' + POLICY)
    else:
        files["pyproject.toml"] = POLICY
        files["setup.cfg"] = ("[metadata]\nname = demo\n\n[options.entry_points]\nconsole_scripts =\n"
                              "    demo-run = app.cli:main\n    demo-tool = tool:main\n")
    root = make(tmp_path, files, git=False)
    # GPU001 too: the headers go with the remap of cli.py's set_device(1) (without it they are held)
    got = found(run_gpufix("scan", ".", "--format", "json", "--no-cache", "--select", "GPU101,GPU001", cwd=root))
    assert [g for g in got if g[2] == "GPU101"] == [("app/__init__.py", 1, "GPU101", True), ("tool.py", 1, "GPU101", True)]


# text-generation-webui's shape: an application whose script imports a package of its own
WEBUI_APP = {
    "modules/api/__init__.py": "",
    "modules/api/embeddings.py": "import torch\n\n\ndef embed():\n    return torch.zeros(1)\n",
    "server.py": "from modules.api.embeddings import embed\n\nif __name__ == \"__main__\":\n    embed()\n",
}


@pytest.mark.parametrize("setup_cfg, packaged", [
    ("[pycodestyle]\nmax-line-length = 120\n", False),
    ("[flake8]\nmax-line-length = 120\n\n[tool:pytest]\naddopts = -q\n", False),
    ("[metadata]\nname = demo\n", True),
    ("[options]\npackages = find:\n", True),
    ("[flake8]\nignore = E501\n\n[options.packages.find]\nwhere = .\n", True),
])
def test_a_setup_cfg_makes_a_package_only_when_it_declares_one(tmp_path, setup_cfg, packaged):
    # text-generation-webui: server.py imports modules/api/*.py, and setup.cfg only configures
    # pycodestyle. No other program imports `modules.api`: server.py's header covers it, and an
    # empty modules/api/__init__.py needs none. A distribution's package may be imported by any
    # program: its top `__init__.py` holds the header.
    root = make(tmp_path, {"pyproject.toml": POLICY, "setup.cfg": setup_cfg, **WEBUI_APP}, git=False)
    got = found(run_gpufix("scan", ".", "--format", "json", "--no-cache", "--select", "GPU101", cwd=root))
    assert got == ([("modules/api/__init__.py", 1, "GPU101", True)] if packaged else []) + [("server.py", 1, "GPU101", True)]


def test_an_edit_of_setup_cfg_is_seen_by_a_warm_run(tmp_path):
    # the cached project index was made while setup.cfg configured pycodestyle only; a [metadata]
    # section makes the project a distribution, whose package __init__.py holds the header
    root = make(tmp_path / "p", {"pyproject.toml": POLICY, "setup.cfg": "[pycodestyle]\nmax-line-length = 120\n",
                                 **WEBUI_APP}, git=False)
    env = {"GPUFIX_CACHE_DIR": str(tmp_path / "cache")}
    for _ in range(2):
        got = found(run_gpufix("scan", ".", "--format", "json", "--select", "GPU101", cwd=root, env=env))
        assert got == [("server.py", 1, "GPU101", True)]
    with open(root / "setup.cfg", "a", encoding="utf-8") as fh:
        fh.write("\n[metadata]\nname = demo\n")
    got = found(run_gpufix("scan", ".", "--format", "json", "--select", "GPU101", cwd=root, env=env))
    assert got == [("modules/api/__init__.py", 1, "GPU101", True), ("server.py", 1, "GPU101", True)]


# -- item 2: Python's import semantics --------------------------------------------------------------
def test_a_script_imported_by_another_stays_an_entry_point(tmp_path):
    # bert: run_classifier.py is imported by its siblings and run by the README
    root = make(tmp_path, {
        "pyproject.toml": POLICY,
        "run_classifier.py": "import tensorflow as tf\n\n\ndef main():\n    tf.constant(1)\n\n\n"
                             "if __name__ == \"__main__\":\n    main()\n",
        "run_classifier_with_tfhub.py": "import run_classifier\n\nif __name__ == \"__main__\":\n    run_classifier.main()\n",
    }, git=False)
    got = found(run_gpufix("scan", ".", "--format", "json", "--no-cache", cwd=root))
    assert ("run_classifier.py", 1, "GPU101", True) in got
    assert ("run_classifier_with_tfhub.py", 1, "GPU101", True) in got


def test_a_project_folder_named_like_a_stdlib_module_does_not_shadow_it(tmp_path):
    # cupy: `from typing import Any` in a tool is the standard library, not cupy/typing/
    root = make(tmp_path, {
        "pyproject.toml": POLICY,
        "cupy/__init__.py": "",
        "cupy/typing/__init__.py": "import cupy_backends.cuda\n",
        "tools/gen.py": "from typing import Any\n\nif __name__ == \"__main__\":\n    print(Any)\n",
    }, git=False)
    got = found(run_gpufix("scan", ".", "--format", "json", "--no-cache", "--select", "GPU101", cwd=root))
    assert not [g for g in got if g[0] == "tools/gen.py"]


def test_a_dotted_import_never_runs_another_folders_module_of_the_first_name(tmp_path):
    # RVC: `from train.utils import f` (a namespace folder at the root) is not train/train.py
    root = make(tmp_path, {
        "pyproject.toml": POLICY,
        "train/train.py": "import torch\n\n\nif __name__ == \"__main__\":\n    torch.zeros(1)\n",
        "train/utils.py": "def f():\n    return 1\n",
        "launch.py": "from train.utils import f\n\nif __name__ == \"__main__\":\n    f()\n",
    }, git=False)
    got = found(run_gpufix("scan", ".", "--format", "json", "--no-cache", cwd=root))
    assert not [g for g in got if g[0] == "launch.py"]
    assert ("train/train.py", 1, "GPU101", True) in got


def test_src_layout_and_relative_imports_reach_the_framework(tmp_path):
    root = make(tmp_path, {
        "pyproject.toml": '[project]\nname = "demo"\n\n' + POLICY,
        "src/demo/__init__.py": "",
        "src/demo/core.py": "from .gpu import run\n",
        "src/demo/gpu.py": "import torch\n\n\ndef run():\n    torch.zeros(1)\n",
        "scripts/go.py": "from demo.core import run\n\nif __name__ == \"__main__\":\n    run()\n",
    }, git=False)
    got = found(run_gpufix("scan", ".", "--format", "json", "--no-cache", "--select", "GPU101", cwd=root))
    assert ("src/demo/__init__.py", 1, "GPU101", True) in got  # a packaged package: Python runs it first


# -- item 4: one header per process start -------------------------------------------------------
def test_no_second_header_in_main_when_the_package_init_has_one(tmp_path):
    root = make(tmp_path, {
        "pyproject.toml": '[project]\nname = "app"\n\n' + POLICY,
        "app/__init__.py": "import torch\n",
        "app/__main__.py": "from app import torch\n\ntorch.zeros(1)\n",
    }, git=False)
    got = found(run_gpufix("scan", ".", "--format", "json", "--no-cache", "--select", "GPU101", cwd=root))
    assert got == [("app/__init__.py", 1, "GPU101", True)]


def test_python_m_pkg_gets_its_header_in_the_init_that_imports_the_framework(tmp_path):
    # an application (not packaged): its own scripts import pkg, yet `python -m pkg` runs
    # pkg/__init__.py (which imports torch) before pkg/__main__.py
    root = make(tmp_path, {
        "pyproject.toml": POLICY,
        "pkg/__init__.py": "from .mod import work\n",
        "pkg/mod.py": "import torch\n\n\ndef work():\n    torch.zeros(1)\n",
        "pkg/__main__.py": "from pkg.mod import work\n\nwork()\n",
        "run.py": "from pkg.mod import work\n\nif __name__ == \"__main__\":\n    work()\n",
    }, git=False)
    got = found(run_gpufix("scan", ".", "--format", "json", "--no-cache", "--select", "GPU101", cwd=root))
    assert ("pkg/__init__.py", 1, "GPU101", True) in got
    assert not [g for g in got if g[0] == "pkg/__main__.py"]


# -- item 5: first-party device helpers -----------------------------------------------------------
HELPER = 'import torch\n\n\ndef device_cuda(index=1):\n    return torch.device(f"cuda:{index}")\n'


def test_a_helper_is_a_device_api_for_its_callers_in_other_files(tmp_path):
    root = make(tmp_path, {
        "pyproject.toml": POLICY,
        "utils/devices.py": HELPER,
        "stt.py": "from utils.devices import device_cuda\n\n\ndef load():\n    return device_cuda(1)\n",
        "main.py": "import torch\nfrom stt import load\n\nif __name__ == \"__main__\":\n    load()\n",
    })
    proc = run_gpufix("apply", ".", "--no-backup", "--no-tag", cwd=root)
    assert proc.returncode == 0, proc.stdout
    assert (root / "stt.py").read_text().endswith("return device_cuda(0)\n")
    assert "def device_cuda(index=0):" in (root / "utils/devices.py").read_text()
    assert (root / "main.py").read_text().startswith(INSERTED)


def test_a_helper_default_is_not_remapped_without_its_callers(tmp_path):
    root = make(tmp_path, {
        "pyproject.toml": POLICY,
        "utils/devices.py": HELPER,
        "stt.py": "from utils.devices import device_cuda\n\n\ndef load():\n    return device_cuda(1)\n",
        "main.py": HEADER + "import torch\nfrom stt import load\n\nif __name__ == \"__main__\":\n    load()\n",
    })
    proc = run_gpufix("apply", "utils/devices.py", "--no-backup", "--no-tag", cwd=root)
    assert (root / "utils/devices.py").read_text() == HELPER
    assert "the other uses of the device helper `device_cuda()`" in proc.stdout
    assert "`stt.py` calls it with an index this run does not remap (it is not part of this run)" in proc.stdout


# -- children whose mask is computed from GPU indices the parent counted (RVC-WebUI's training) ----
RVC_LIKE = {
    "configs/__init__.py": "",
    "configs/config.py": "import torch\nGPU_COUNT = torch.cuda.device_count()\n",
    "webui.py": textwrap.dedent("""\
        import subprocess
        from configs.config import GPU_COUNT

        gpus = "-".join(str(i) for i in range(GPU_COUNT))

        if __name__ == "__main__":
            subprocess.Popen('python train/train.py -g %s' % gpus, shell=True)
    """),
    "train/train.py": textwrap.dedent("""\
        import os
        import sys

        os.environ["CUDA_VISIBLE_DEVICES"] = sys.argv[2].replace("-", ",")
        import torch

        if __name__ == "__main__":
            torch.zeros(1).cuda()
    """),
}


def test_a_childs_mask_from_indices_its_parent_counted_says_where_the_child_lands(tmp_path):
    root = make(tmp_path, {"pyproject.toml": POLICY, **RVC_LIKE})
    proc = run_gpufix("scan", ".", "--format", "json", "--no-cache", "--select", "GPU108", cwd=root)
    got = [(f["path"], f["line"], f["fix"], f["message"]) for f in json.loads(proc.stdout)["findings"]]
    assert got == [("train/train.py", 4, None,
                    'CUDA_VISIBLE_DEVICES is computed at run time (sys.argv[2].replace("-", ",")) in a script that '
                    "`webui.py` starts as a child process with GPU indices that its process counts under its own mask "
                    "(in `configs/config.py`): with the policy's header in force there, it sees only the policy's 1 "
                    "GPU(s) (cuda:0) and hands over indices into them, but this line replaces the mask \"1\" that the "
                    "child inherits with those indices, which CUDA reads as physical GPUs (index 0 becomes physical GPU "
                    "0, not GPU 1): the child runs on another GPU than its parent counted; compose the indices with the "
                    'inherited mask (take entry i of os.environ["CUDA_VISIBLE_DEVICES"].split(",") for index i), or drop '
                    "this line so that the inherited mask decides")]
    assert proc.returncode == 1
    # report-only: apply leaves the child's line as it is
    run_gpufix("apply", ".", "--no-backup", "--no-tag", cwd=root)
    assert 'os.environ["CUDA_VISIBLE_DEVICES"] = sys.argv[2].replace("-", ",")\n' in (root / "train/train.py").read_text()


def test_a_childs_run_time_mask_keeps_the_plain_message_when_nothing_moves(tmp_path):
    # policy "0": the parent's index 0 is physical GPU 0; a parent that counts nothing: no claim
    files = dict(RVC_LIKE)
    root = make(tmp_path / "identity", {"pyproject.toml": POLICY.replace('"1"', '"0"'), **files})
    files["configs/config.py"] = "import torch\nGPU_COUNT = 2\n"
    other = make(tmp_path / "nocount", {"pyproject.toml": POLICY, **files})
    for where in (root, other):
        proc = run_gpufix("scan", ".", "--format", "json", "--no-cache", "--select", "GPU108", cwd=where)
        msgs = [f["message"] for f in json.loads(proc.stdout)["findings"]]
        assert len(msgs) == 1 and msgs[0].startswith("CUDA_VISIBLE_DEVICES is computed at run time "
                                                     '(sys.argv[2].replace("-", ",")): this line replaces the policy'), msgs


# ComfyUI: the options are parsed in one module, the app's script writes one into its own mask
COMFY_LIKE = {
    "app/__init__.py": "",
    "app/cli_args.py": textwrap.dedent("""\
        import argparse

        parser = argparse.ArgumentParser()
        parser.add_argument("--cuda-device", type=int, default=None, help="the id of the cuda device to use")
        parser.add_argument("--gpu-id", type=int, default=0)
        args = parser.parse_args()
    """),
    "app/model.py": "import torch\n\n\ndef device():\n    return torch.device('cuda')\n",
    "main.py": textwrap.dedent("""\
        import os

        from app.cli_args import args

        if __name__ == "__main__":
            if args.cuda_device is not None:
                os.environ["CUDA_VISIBLE_DEVICES"] = str(args.cuda_device)

        import app.model
    """),
}


def test_an_option_another_file_writes_into_its_mask_is_reported_there(tmp_path):
    """--cuda-device reaches main.py's mask: reported once, at that write (which says that the
    app's value wins), as when the option and the write share a file; never as an option whose
    values "now index the policy's GPUs", which would send `--cuda-device 0` to the forbidden GPU.
    --gpu-id reaches nothing gpufix reads: reported as an option."""
    root = make(tmp_path, {"pyproject.toml": POLICY, **COMFY_LIKE})
    proc = run_gpufix("scan", ".", "--format", "json", "--no-cache", "--select", "GPU108", cwd=root)
    got = [(f["path"], f["line"], f["message"].split(":")[0]) for f in json.loads(proc.stdout)["findings"]]
    assert got == [
        ("app/cli_args.py", 5, 'the option --gpu-id picks a GPU, but the policy\'s header pins CUDA_VISIBLE_DEVICES="1"'),
        ("main.py", 7, "CUDA_VISIBLE_DEVICES is computed at run time (str(args.cuda_device))"),
    ]
    assert proc.returncode == 1
    # the same findings for the option's file alone (what pre-commit and editors run)
    alone = run_gpufix("scan", "app/cli_args.py", "--format", "json", "--no-cache", "--select", "GPU108", cwd=root)
    assert [f["line"] for f in json.loads(alone.stdout)["findings"]] == [5]


# -- a process that reaches no CUDA framework import gets no header ------------------------------
def test_a_process_taking_only_names_that_import_no_framework_gets_no_header(tmp_path):
    """FastChat's API tests take `run_cmd` from `fastchat/utils.py`, whose `import torch` is inside
    other functions: their process never imports a CUDA framework."""
    root = make(tmp_path, {
        "pyproject.toml": POLICY,
        "app/__init__.py": "",
        "app/utils.py": textwrap.dedent("""\
            import os


            def run_cmd(cmd):
                return os.system(cmd)


            def gpu_memory():
                import torch
                return torch.cuda.mem_get_info()


            def report():
                return gpu_memory()
        """),
        "app/model.py": "import torch\n",
        "app/mixed.py": "from app.model import torch\n\n\ndef run_cmd2():\n    pass\n\n\ndef f():\n    import torch\n",
        "client.py": 'from app.utils import run_cmd\n\nif __name__ == "__main__":\n    run_cmd("python -m app.serve")\n',
        "monitor.py": 'from app.utils import report\n\nif __name__ == "__main__":\n    report()\n',
        "whole.py": 'import app.utils\n\nif __name__ == "__main__":\n    app.utils.run_cmd("x")\n',
        "client2.py": 'from app.mixed import run_cmd2\n\nif __name__ == "__main__":\n    run_cmd2()\n',
    })
    proc = run_gpufix("scan", ".", "--format", "json", "--no-cache", "--select", "GPU101", cwd=root)
    assert sorted(p for p, _, _, _ in found(proc)) == ["client2.py", "monitor.py", "whole.py"]
    # the same answer for the file alone and through stdin
    alone = run_gpufix("scan", "client.py", "--format", "json", "--no-cache", "--select", "GPU101", cwd=root)
    assert found(alone) == [] and alone.returncode == 0
    text = (root / "client.py").read_text()
    piped = run_gpufix("scan", "-", "--stdin-filename", "client.py", "--format", "json", "--no-cache", "--select", "GPU101",
                       cwd=root, input=text)
    assert found(piped) == []
    # taking the function that imports torch instead: the header is asked
    piped = run_gpufix("scan", "-", "--stdin-filename", "client.py", "--format", "json", "--no-cache", "--select", "GPU101",
                       cwd=root, input=text.replace("run_cmd", "gpu_memory"))
    assert found(piped) == [("client.py", 1, "GPU101", True)]


def test_a_module_that_sets_the_mask_at_run_time_in_many_processes_is_named_once_with_what_to_do(tmp_path):
    """yolov5: `utils/torch_utils.py`'s select_device() writes the mask from `--device` in every
    script's process; `export.py` (a script the others import) keeps its header fix held. The
    reason names that module once, with the processes, and says that no fix replaces its write."""
    util = ('import os\nimport torch\n\n\ndef select_device(device):\n'
            '    os.environ["CUDA_VISIBLE_DEVICES"] = device\n    return torch.device("cuda:0")\n')
    lib = 'import torch\nimport util\n\n\ndef run():\n    return torch.zeros(1)\n\n\nif __name__ == "__main__":\n    run()\n'
    script = 'import lib\nimport util\n\nif __name__ == "__main__":\n    util.select_device("0")\n'
    files = {"pyproject.toml": POLICY, "util.py": util, "lib.py": lib}
    files.update({f"s{i}.py": script for i in range(1, 6)})
    root = make(tmp_path, files)
    scan = run_gpufix("scan", ".", "--format", "json", "--no-cache", cwd=root)
    msg = next(f["message"] for f in json.loads(scan.stdout)["findings"] if f["path"] == "lib.py" and f["rule"] == "GPU101")
    assert msg.endswith("(not fixed in this run: safe only together with the processes that import it, and `util.py` "
                        "keeps a mask of its own in the processes of `s1.py`, `s2.py`, `s3.py` and 2 more, which no fix "
                        "of this run replaces: make it keep the policy's mask by hand; "
                        "fix them together: `gpufix apply lib.py util.py s1.py s2.py ...`)"), msg


def test_a_header_in_a_script_that_another_process_imports_never_replaces_that_processs_mask(tmp_path):
    """lib.py is a script (guard) and a module main.py imports after setting "0,1": a header in
    lib.py would reset main's mask to "1" at that import and make its `cuda:1` invalid (RVC's
    extract_f0.py sets its mask from argv, then imports the guarded infer/rmvpe.py)."""
    main = ('import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "0,1"\n'
            'import lib\nimport torch\n\nif __name__ == "__main__":\n    x = torch.zeros(1, device="cuda:1")\n')
    lib = 'import torch\n\n\ndef f():\n    return torch.zeros(1)\n\n\nif __name__ == "__main__":\n    print(f())\n'
    root = make(tmp_path, {"pyproject.toml": POLICY, "main.py": main, "lib.py": lib})
    proc = run_gpufix("apply", ".", "--no-backup", "--no-tag", cwd=root)
    assert (root / "lib.py").read_text() == lib and (root / "main.py").read_text() == main
    assert proc.returncode == 1
    scan = run_gpufix("scan", ".", "--format", "json", "--no-cache", cwd=root)
    msg = next(f["message"] for f in json.loads(scan.stdout)["findings"] if f["path"] == "lib.py" and f["rule"] == "GPU101")
    assert msg.endswith("(not fixed in this run: safe only together with the processes that import it, and `main.py` keeps "
                        "a mask that its safe fixes do not replace; fix them together: `gpufix apply lib.py main.py`)")
    # once main.py sets the policy's mask first, lib.py's header is a no-op there: it is inserted
    (root / "main.py").write_text(main.replace('"0,1"', '"1"').replace('"cuda:1"', '"cuda:0"'))
    run_gpufix("apply", ".", "--no-backup", "--no-tag", "--allow-dirty", cwd=root)
    assert (root / "lib.py").read_text() == INSERTED + lib


def test_a_hold_found_late_in_a_chain_still_holds_the_entry_points_that_run_it(tmp_path):
    """other.py runs mod2.py, which is not in the run: other's header is held. mod.py's remap is
    right only under the mask of every process that runs it, other's included: held next. main.py
    runs mod.py: its header alone would make mod's `set_device(1)` an invalid ordinal, so it is
    held last, although mod's remap was still to be made when main's header was first judged."""
    mod = "import torch\n\n\ndef run():\n    torch.cuda.set_device(1)\n"
    main = 'import torch\nimport mod\n\nif __name__ == "__main__":\n    mod.run()\n'
    other = 'import torch\nimport mod\nimport mod2\n\nif __name__ == "__main__":\n    mod.run()\n    mod2.go()\n'
    files = {"pyproject.toml": POLICY, "main.py": main, "other.py": other, "mod.py": mod, "mod2.py": mod.replace("run", "go")}
    root = make(tmp_path, files)
    proc = run_gpufix("apply", "main.py", "other.py", "mod.py", "--no-backup", "--no-tag", cwd=root)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert {rel: (root / rel).read_text() for rel in files} == files
    assert ("main.py:1:1: GPU101 A script (`__main__` guard) never sets CUDA_VISIBLE_DEVICES before its process reaches "
            'a GPU framework; insert os.environ["CUDA_VISIBLE_DEVICES"] = "1" before the first import (not fixed in this '
            "run: safe only together with its mask, and `mod.py` has ordinals that this run does not remap; fix them "
            "together: `gpufix apply main.py mod.py`)") in proc.stdout
