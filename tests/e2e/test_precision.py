"""Issue 11: a header only where a process starts, no remap inside multi-GPU code, no silent
conflicts with the app's own GPU choice, explicit CPU runs kept, GPU105 precise about lazy init."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import NESTED_PYTEST, run_gpufix

POLICY = '[tool.gpufix]\nvisible-devices = "1"\n'


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return p


def scan(root: Path, *args):
    proc = run_gpufix("scan", "--format", "json", "--no-cache", *args, cwd=root)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def found(report):
    return sorted((f["path"], f["rule"]) for f in report["findings"])


def test_header_only_where_a_process_starts(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY + '\n[project]\nname = "mylib"\n[project.scripts]\nmy-cli = "mylib.cli:main"\n')
    write(tmp_path, "mylib/__init__.py", "from .model import build\n")
    write(tmp_path, "mylib/model.py", "import torch\n\ndef build():\n    return torch.zeros(1)\n")
    write(tmp_path, "mylib/lazy.py", "def load():\n    import torch  # lazy: still reaches the GPU\n    return torch\n")
    write(tmp_path, "mylib/typing_only.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n")
    write(tmp_path, "mylib/annotations.py", "import torch\n\ndef f(x: torch.Tensor) -> torch.Tensor:\n    return x\n")
    write(tmp_path, "mylib/cli.py", "def main():\n    from mylib.model import build\n    build()\n")
    write(tmp_path, "mylib/text.py", "WORDS = ['a']\n")
    write(tmp_path, "scripts/train.py", "import mylib\n\nif __name__ == '__main__':\n    mylib.build()\n")
    write(tmp_path, "scripts/notes.py", "print('no GPU here')\n")
    write(tmp_path, "tests/conftest.py", "import pytest\n")
    write(tmp_path, "tests/unit/conftest.py", "import pytest\n")
    write(tmp_path, "tests/unit/test_model.py", "import torch\n\ndef test_a():\n    assert torch.zeros(1).sum() == 0\n")
    write(tmp_path, "docs/conf.py", "import mylib\nproject = 'mylib'\n")
    report = scan(tmp_path)
    assert found(report) == [
        # `my-cli` runs `from mylib.cli import main`: mylib/__init__.py, whose header is in force
        # first, covers the console-script target (one header per process start)
        ("mylib/__init__.py", "GPU101"), ("mylib/__init__.py", "GPU102"),
        ("scripts/train.py", "GPU101"), ("scripts/train.py", "GPU102"),
        ("tests/conftest.py", "GPU101"), ("tests/conftest.py", "GPU102"),
    ]
    msgs = {f["path"]: f["message"] for f in report["findings"] if f["rule"] == "GPU101"}
    assert "top `__init__.py` of the package `mylib`" in msgs["mylib/__init__.py"]
    assert "`__main__` guard" in msgs["scripts/train.py"]
    assert "rootmost `conftest.py`" in msgs["tests/conftest.py"]
    # gpu-modules (seed-004 style) and all stay
    gm = found(scan(tmp_path, "--config", str(write(tmp_path, "gm.toml", 'visible-devices = "1"\nheader-scope = "gpu-modules"\n'))))
    assert ("mylib/model.py", "GPU101") in gm and ("tests/unit/test_model.py", "GPU101") in gm
    assert ("mylib/typing_only.py", "GPU101") not in gm and ("mylib/annotations.py", "GPU101") not in gm


def test_first_party_package_is_never_a_framework(tmp_path):
    # scanning TTS itself: `from TTS.api import TTS` is the project's own code
    write(tmp_path, "pyproject.toml", POLICY + 'header-scope = "gpu-modules"\n')
    write(tmp_path, "TTS/__init__.py", "")
    write(tmp_path, "TTS/api.py", "class TTS:\n    pass\n")
    write(tmp_path, "TTS/bin/synth.py", "from TTS.api import TTS\n")
    assert found(scan(tmp_path)) == []
    # ... unless the policy says it is one
    write(tmp_path, "pyproject.toml", POLICY + 'header-scope = "gpu-modules"\nknown-gpu-frameworks = ["TTS"]\n')
    assert ("TTS/bin/synth.py", "GPU101") in found(scan(tmp_path))
    # and a name can be declared first-party the other way round
    write(tmp_path, "pyproject.toml", POLICY + 'header-scope = "gpu-modules"\nknown-first-party = ["whisper"]\n')
    write(tmp_path, "app/run.py", "import whisper\n")
    assert ("app/run.py", "GPU101") not in found(scan(tmp_path))


def test_conftest_header_is_in_force_when_tests_import_the_framework(tmp_path):
    """A real pytest run: the stub framework records os.environ when it is imported."""
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "stubs/fakegpu.py", """
        import json, os
        with open(os.environ["RECORD"], "a") as fh:
            fh.write(json.dumps({k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")}) + "\\n")
    """)
    write(tmp_path, "tests/conftest.py", "import pytest\n")
    write(tmp_path, "tests/test_a.py", "import fakegpu\n\ndef test_a():\n    assert fakegpu\n")
    write(tmp_path, "tests/sub/test_b.py", "import fakegpu\n\ndef test_b():\n    assert fakegpu\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "i", "--allow-empty"], cwd=tmp_path, check=True)
    cfg = write(tmp_path, "gpufix.toml", 'visible-devices = "1"\nknown-gpu-frameworks = ["fakegpu"]\n')
    proc = run_gpufix("apply", "--no-tag", "--no-backup", "--allow-dirty", "--config", str(cfg), "tests", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CUDA_VISIBLE_DEVICES" in (tmp_path / "tests/conftest.py").read_text()
    assert "CUDA_VISIBLE_DEVICES" not in (tmp_path / "tests/test_a.py").read_text()

    def run_pytest(extra_env):
        record = tmp_path / "record.jsonl"
        record.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUDA_")}
        env.update(extra_env, RECORD=str(record), PYTHONPATH=str(tmp_path / "stubs"))
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", *NESTED_PYTEST, "tests"], cwd=tmp_path,
                           env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        return [json.loads(line) for line in record.read_text().splitlines()]

    assert run_pytest({}) == [{"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}]
    # an explicit CPU run by the caller stays a CPU run (cpu-runs = "keep", the default)
    assert run_pytest({"CUDA_VISIBLE_DEVICES": ""}) == [{"CUDA_VISIBLE_DEVICES": "", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}]
    assert run_pytest({"CUDA_VISIBLE_DEVICES": "-1"})[0]["CUDA_VISIBLE_DEVICES"] == "-1"
    # any other caller mask is replaced by the policy's
    assert run_pytest({"CUDA_VISIBLE_DEVICES": "0"})[0]["CUDA_VISIBLE_DEVICES"] == "1"


def test_cpu_runs_override_inserts_the_plain_header(tmp_path):
    write(tmp_path, "gpufix.toml", 'visible-devices = "1"\ncpu-runs = "override"\n')
    write(tmp_path, "run.py", "import torch\n")
    proc = run_gpufix("apply", "--no-tag", "--no-backup", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run.py").read_text() == (
        'import os\n\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n\nimport torch\n')


def test_a_file_that_pins_a_cpu_run_needs_no_device_order(tmp_path):
    """A script or notebook whose own header is an explicit CPU run (bark's
    use_small_models_on_cpu.ipynb: CUDA_VISIBLE_DEVICES="" before importing torch) sees no GPU, so
    the order of GPUs means nothing there: no GPU102. With cpu-runs = "override" the value itself
    is replaced (GPU103), and then the order is needed."""
    write(tmp_path, "gpufix.toml", 'visible-devices = "1"\n')
    write(tmp_path, "cpu.py", 'import os\n\nos.environ["CUDA_VISIBLE_DEVICES"] = ""\n\nimport torch\n')
    write(tmp_path, "cpu2.py", 'import os\nos.environ["CUDA_VISIBLE_DEVICES"] = "-1"\nimport torch\n')
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                     "source": ['import os\n', 'os.environ["CUDA_VISIBLE_DEVICES"] = ""\n', "import torch"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "cpu.ipynb").write_text(json.dumps(nb, indent=1) + "\n")
    # a CPU run that another write of the file may undo is still judged
    write(tmp_path, "mixed.py", """
        import os
        import sys
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        if "--gpu" in sys.argv:
            os.environ["CUDA_VISIBLE_DEVICES"] = "1"
        import torch
    """)
    assert found(scan(tmp_path)) == [("mixed.py", "GPU102")]
    write(tmp_path, "gpufix.toml", 'visible-devices = "1"\ncpu-runs = "override"\n')
    assert found(scan(tmp_path)) == [
        ("cpu.ipynb", "GPU102"), ("cpu.ipynb", "GPU103"), ("cpu.py", "GPU102"), ("cpu.py", "GPU103"),
        ("cpu2.py", "GPU102"), ("cpu2.py", "GPU103"), ("mixed.py", "GPU102"), ("mixed.py", "GPU103"),
    ]


def test_mask_in_a_branch_is_not_the_header(tmp_path):
    write(tmp_path, "gpufix.toml", 'visible-devices = "1"\n')
    write(tmp_path, "app.py", """
        import os
        import sys
        if "--gpu" in sys.argv:
            os.environ["CUDA_VISIBLE_DEVICES"] = "1"
        import torch
    """)
    assert found(scan(tmp_path)) == [("app.py", "GPU101"), ("app.py", "GPU102")]
    proc = run_gpufix("apply", "--no-tag", "--no-backup", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "app.py").read_text() == textwrap.dedent("""\
        import os

        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        if os.environ.get("CUDA_VISIBLE_DEVICES") not in ("", "-1"):  # keep an explicit CPU run
            os.environ["CUDA_VISIBLE_DEVICES"] = "1"

        import sys
        if "--gpu" in sys.argv:
            os.environ["CUDA_VISIBLE_DEVICES"] = "1"
        import torch
    """)


def test_order_in_a_function_is_not_the_header(tmp_path):
    write(tmp_path, "gpufix.toml", 'visible-devices = "1"\ncpu-runs = "override"\n')
    write(tmp_path, "app.py", """
        import os
        os.environ["CUDA_VISIBLE_DEVICES"] = "1"
        import torch


        def setup():
            os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    """)
    # GPU105 too: the order is set after `import torch` (a warning: torch initialises CUDA lazily)
    assert found(scan(tmp_path)) == [("app.py", "GPU102"), ("app.py", "GPU105")]
    run_gpufix("apply", "--no-tag", "--no-backup", cwd=tmp_path)
    text = (tmp_path / "app.py").read_text()
    assert text.startswith('import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n')


MULTI = """
    import pytest
    import torch
    from tests.helpers import RunIf


    @RunIf(min_cuda_gpus=2)
    def test_two_gpus():
        x = torch.zeros(1, device="cuda:0")
        assert x.to("cuda:1").device.index == 1


    @pytest.mark.skipif(torch.cuda.device_count() < 2, reason="two GPUs")
    def test_move_to_second():
        torch.zeros(1).to("cuda:1")


    def devices(n):
        return [f"cuda:{i}" for i in range(n)]


    @pytest.mark.parametrize("device", ["cuda:1"])
    def test_param(device):
        assert device


    def test_mock(mocker):
        mocker.patch("torch.cuda.current_device", return_value=1)
        assert torch.zeros(1).device == torch.device("cuda:1")


    def run():
        torch.cuda.set_device(1)
"""


def test_multi_gpu_code_gated_tests_and_plain_data(tmp_path):
    write(tmp_path, "gpufix.toml", 'visible-devices = "1"\nheader-scope = "all"\ncpu-runs = "override"\n')
    write(tmp_path, "test_multi.py", MULTI)
    # every rule: the remaps go with the header GPU101 inserts (`--select GPU0` would hold them)
    report = scan(tmp_path)
    rows = [(f["rule"], f["line"], (f["fix"] or {}).get("applicability")) for f in report["findings"]
            if f["rule"].startswith("GPU0")]
    # test_two_gpus (@RunIf(min_cuda_gpus=2), GPUs 0 and 1) and the test gated by
    # skipif(device_count() < 2) are skipped under a one-GPU policy and right as written on a machine
    # with two: no finding, nothing remapped.
    assert rows == [
        ("GPU004", 17, None),  # builds a device list
        ("GPU001", 21, "unsafe"),  # a parametrize table
        ("GPU001", 28, "unsafe"),  # an expected value in an assert
        ("GPU001", 32, "safe"),  # a plain device choice: remapped
    ]
    assert "builds a list of devices (line 18)" in next(f["message"] for f in report["findings"] if f["rule"] == "GPU004")
    proc = run_gpufix("apply", "--no-tag", "--no-backup", cwd=tmp_path)
    text = (tmp_path / "test_multi.py").read_text()
    assert 'x.to("cuda:1")' in text and '["cuda:1"]' in text and "set_device(0)" in text, proc.stderr
    # a policy with two GPUs: no multi-GPU finding
    assert not [f for f in scan(tmp_path, "--visible-devices", "0,1")["findings"] if f["rule"] == "GPU004"]


def test_runtime_mask_and_gpu_options_are_conflicts(tmp_path):
    write(tmp_path, "gpufix.toml", 'visible-devices = "1"\n')
    write(tmp_path, "server.py", """
        import os
        import argparse
        parser = argparse.ArgumentParser()
        parser.add_argument("--gpu-device-id", type=int, default=None)
        parser.add_argument("--device_index", type=int, default=0, help="CUDA device")
        parser.add_argument("--cpu", action="store_true")
        args = parser.parse_args()


        def main():
            if args.gpu_device_id is not None:
                os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu_device_id)
            import torch


        if __name__ == "__main__":
            main()
    """)
    report = scan(tmp_path)
    by_rule = {}
    for f in report["findings"]:
        by_rule.setdefault(f["rule"], []).append(f)
    assert sorted(by_rule) == ["GPU101", "GPU102", "GPU108"]
    lines = sorted(f["line"] for f in by_rule["GPU108"])
    assert lines == [5, 12]  # --device_index (line 5) and the run-time mask (line 12); --cpu is a switch
    mask = next(f for f in by_rule["GPU108"] if f["line"] == 12)["message"]
    assert "str(args.gpu_device_id)" in mask and "the header sets \"1\" first" in mask
    opt = next(f for f in by_rule["GPU108"] if f["line"] == 5)["message"]
    assert "--device_index" in opt and "cuda:0" in opt


def test_gpu105_lazy_torch_import_is_a_warning_a_call_is_an_error(tmp_path):
    write(tmp_path, "gpufix.toml", 'visible-devices = "1"\n')
    write(tmp_path, "lazy.py", 'import torch\nimport os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n')
    write(tmp_path, "late.py", 'import torch\nimport os\ntorch.cuda.init()\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n')
    sev = {(f["path"], f["line"]): (f["severity"], f["message"]) for f in scan(tmp_path)["findings"] if f["rule"] == "GPU105"}
    assert sev[("lazy.py", 4)][0] == "warning" and "lazily" in sev[("lazy.py", 4)][1]
    assert sev[("late.py", 5)][0] == "error" and "torch.cuda.init" in sev[("late.py", 5)][1]


def test_a_file_of_definitions_only_is_a_plugin_not_a_script(tmp_path):
    """Outside any package and imported by no file: a script when running it does something; a
    file that only defines classes and functions (a plugin loaded by path, diffusers'
    `custom_pipeline`) is covered by the process that loads it."""
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "community/lpw_pipeline.py", """
        import logging

        import torch

        logger = logging.getLogger(__name__)
        if torch.cuda.is_available():
            DEFAULT = "cuda"
        else:
            DEFAULT = "cpu"


        class LongPromptPipeline:
            def __call__(self, prompt):
                return torch.zeros(1)
    """)
    write(tmp_path, "tools/convert.py", """
        import torch


        def convert(path):
            return torch.load(path)


        convert("weights.pt")
    """)
    write(tmp_path, "tools/env_only.py", """
        import os

        import torch

        os.environ["TOKENIZERS_PARALLELISM"] = "false"


        def helper():
            return torch.ones(1)
    """)
    write(tmp_path, "tools/flat.py", "import torch\nmodel = torch.nn.Linear(1, 1)\n")
    write(tmp_path, "test_plugin.py", "import torch\n\n\ndef test_it():\n    assert torch.zeros(1).sum() == 0\n")
    assert [p for p, rule in found(scan(tmp_path, "--select", "GPU101"))] == [
        "test_plugin.py",  # pytest runs it
        "tools/convert.py",  # a call at module level
        "tools/env_only.py",  # it changes the environment at module level
        "tools/flat.py",  # no function or class: module-level code is all it is
    ]


def test_a_tree_without_markers_is_one_project_from_any_folder(tmp_path):
    """Scanned from outside, a tree without pyproject/setup/.git is one project, as when gpufix
    runs inside it: a module that another folder's script imports is no script of its own."""
    tree = tmp_path / "app"
    write(tree, "run.py", "import torch\nfrom lib.model import build\n\nbuild()\n")
    write(tree, "lib/model.py", "import torch\n\nx = torch.zeros(1)\nprint(x)\n\ndef build():\n    return x\n")
    inside = found(scan(tree, "--select", "GPU101", "--visible-devices", "1"))
    (tmp_path / "elsewhere").mkdir()
    outside = run_gpufix("scan", "--format", "json", "--no-cache", "--select", "GPU101", "--visible-devices", "1", str(tree),
                         cwd=tmp_path / "elsewhere")
    paths = sorted(Path(f["path"]).name for f in json.loads(outside.stdout)["findings"])
    assert inside == [("run.py", "GPU101")] and paths == ["run.py"]


def test_an_unpackaged_apps_own_packages_are_covered_by_its_scripts(tmp_path):
    """An application without packaging metadata: its packages run only inside its own scripts,
    whose headers cover them; a package with tests stays an entry point (pytest imports it). Once
    the project is packaged, its packages may be imported by other programs and need the header."""
    write(tmp_path, "gpufix.toml", 'visible-devices = "1"\n')
    write(tmp_path, "webui.py", "import torch\nfrom modules import models\n\nmodels.load()\n")
    write(tmp_path, "modules/__init__.py", "")
    write(tmp_path, "modules/models.py", "import torch\n\n\ndef load():\n    return torch.zeros(1)\n")
    write(tmp_path, "tests/__init__.py", "")
    write(tmp_path, "tests/test_models.py", "import torch\n\n\ndef test_load():\n    assert torch.zeros(1).sum() == 0\n")
    assert [p for p, _ in found(scan(tmp_path, "--select", "GPU101"))] == ["tests/__init__.py", "webui.py"]
    write(tmp_path, "pyproject.toml", '[project]\nname = "webui"\n')
    assert [p for p, _ in found(scan(tmp_path, "--select", "GPU101"))] == ["modules/__init__.py", "tests/__init__.py", "webui.py"]


def test_gpu105_judges_a_mask_set_in_a_spawn_child_for_that_child(tmp_path):
    """A function only spawn/forkserver children run: the child imports the module (not its
    `__main__` block) and then calls it; the parent's calls never run there."""
    write(tmp_path, "gpufix.toml", 'visible-devices = "1"\n')
    head = 'import os\nimport multiprocessing as mp\nimport torch\n\n\ndef work(i):\n    os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n\n\n'
    write(tmp_path, "pool.py", head + 'if __name__ == "__main__":\n    torch.cuda.init()\n'
          '    with mp.get_context("spawn").Pool(2) as p:\n        p.map(work, [0, 1])\n')
    write(tmp_path, "init.py", head + 'if __name__ == "__main__":\n    torch.cuda.init()\n'
          '    mp.get_context("forkserver").Pool(2, initializer=work)\n')
    write(tmp_path, "proc.py", head + 'if __name__ == "__main__":\n    mp.set_start_method("spawn")\n'
          '    torch.cuda.init()\n    mp.Process(target=work, args=(0,)).start()\n')
    write(tmp_path, "pex.py", head + 'if __name__ == "__main__":\n    from concurrent.futures import ProcessPoolExecutor\n'
          '    torch.cuda.init()\n    ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")).submit(work, 0)\n')
    write(tmp_path, "tspawn.py", head.replace("multiprocessing as mp", "torch.multiprocessing as mp")
          + 'torch.cuda.init()\n\nif __name__ == "__main__":\n    mp.spawn(work, nprocs=2)\n')
    # the default start method (fork on Linux): the child inherits the parent's CUDA state
    write(tmp_path, "fork.py", head + 'if __name__ == "__main__":\n    mp.Pool(2).map(work, [0, 1])\n')
    # run in a spawn child and by the parent: judged as the parent's code
    write(tmp_path, "both.py", head + 'if __name__ == "__main__":\n    work(0)\n    mp.get_context("spawn").Pool(2).map(work, [0])\n')
    got = sorted((f["path"], f["line"], f["severity"], f["message"]) for f in scan(tmp_path, "--select", "GPU105")["findings"])
    lazy = ('CUDA_VISIBLE_DEVICES is set after the import of torch on line 3; torch initialises CUDA lazily, so this still '
            'takes effect unless a CUDA call runs before this line (another import, a `.cuda()` at import time), which is '
            'easy to break; set it before the import')
    assert got == [
        ("both.py", 7, "warning", lazy),
        ("fork.py", 7, "warning", lazy),
        ("tspawn.py", 7, "error",
         "CUDA_VISIBLE_DEVICES is set in `work()`, which runs in a `spawn` child process: the child first imports this "
         "module, whose call of torch.cuda.init on line 10 runs there before this line and may already have initialised "
         "CUDA, so the mask is too late to take effect in the child; set it before that line (a header at the top of the "
         "module runs in the child too) or move that line into `work()` below the mask"),
    ]


def test_gpu108_says_a_spawn_childs_run_time_mask_replaces_the_inherited_one(tmp_path):
    write(tmp_path, "gpufix.toml", 'visible-devices = "1"\n')
    write(tmp_path, "kp.py", 'import os\nfrom torch.multiprocessing import Pool, set_start_method\n\n\ndef run(data):\n'
          '    os.environ["CUDA_VISIBLE_DEVICES"] = data\n\n\nif __name__ == "__main__":\n    set_start_method("spawn")\n'
          '    Pool(2).imap_unordered(run, ["0", "1"])\n')
    got = [(f["rule"], f["line"], f["message"]) for f in scan(tmp_path, "--select", "GPU105,GPU108")["findings"]]
    assert got == [("GPU108", 6,
                    "CUDA_VISIBLE_DEVICES is computed at run time (data): it runs in `run()`, which only `spawn` child "
                    "processes run, before CUDA starts in them: there the run-time value replaces the policy's mask (\"1\") "
                    "that the child inherits, and names physical GPUs, not the parent's visible ones; make the app choose "
                    "among the policy's GPUs or drop the run-time value")]
