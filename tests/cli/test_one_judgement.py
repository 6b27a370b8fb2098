"""What a user silenced, which rules run and which files are entry points are each decided in one
place (gpufix.suppress, gpufix.config.make_rule_filter, gpufix.importscan.is_main_guard) for every
file kind and every path through the engine: these tests pin what the user sees."""

import json

from project_files import apply, project, scan

from conftest import run_gpufix

HEADER = 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'
SILENCED = {
    "main.py": HEADER + 'import torch\n\n'
               'a = torch.device("cuda:1")\n'
               'b = torch.device("cuda:1")  # noqa: GPU00\n'
               'c = torch.device("cuda:1")  # gpufix: ignore[GPU002]\n',
    "run.sh": "export CUDA_DEVICE_ORDER=PCI_BUS_ID\nexport CUDA_VISIBLE_DEVICES=0\n"
              "export CUDA_VISIBLE_DEVICES=0  # gpufix: ignore[GPU1]\n",
    "run.bat": "set CUDA_DEVICE_ORDER=PCI_BUS_ID\r\nset CUDA_VISIBLE_DEVICES=0\r\n"
               "set CUDA_VISIBLE_DEVICES=0 & REM noqa: GPU103\r\n",
    "quiet.sh": "# gpufix: ignore-file\nexport CUDA_VISIBLE_DEVICES=0\n",
}
SILENCED["legacy/old.py"] = SILENCED["main.py"]
POLICY = ('[tool.gpufix]\nvisible-devices = "1"\n\n'
          '[tool.gpufix.per-file-ignores]\n"legacy/*.py" = ["GPU0"]\n')


def test_suppression_is_the_same_for_every_kind_and_for_apply(tmp_path):
    """Codes match by prefix everywhere: per-file-ignores (`GPU0` for legacy/), a `noqa` code
    (`GPU00`), an `ignore[...]` code (`GPU1`) in a shell comment, `REM noqa` in a batch file, a
    file-level `ignore-file`; a silenced finding is not fixed either."""
    root = project(tmp_path, SILENCED, POLICY)
    assert [(f["path"], f["line"], f["rule"]) for f in scan(root)["findings"]] == [
        ("main.py", 6, "GPU001"),  # line 7 (noqa: GPU00) silenced; line 8 ignores another code
        ("main.py", 8, "GPU001"),
        ("run.bat", 2, "GPU103"),
        ("run.sh", 2, "GPU103"),
    ]
    proc = apply(root)
    assert proc.returncode == 0, proc.stderr
    assert (root / "main.py").read_text() == HEADER + 'import torch\n\n' \
        'a = torch.device("cuda:0")\n' \
        'b = torch.device("cuda:1")  # noqa: GPU00\n' \
        'c = torch.device("cuda:0")  # gpufix: ignore[GPU002]\n'
    assert (root / "legacy/old.py").read_text() == SILENCED["legacy/old.py"]
    assert (root / "quiet.sh").read_text() == SILENCED["quiet.sh"]
    assert (root / "run.sh").read_text().splitlines()[1:] == ["export CUDA_VISIBLE_DEVICES=1",
                                                              "export CUDA_VISIBLE_DEVICES=0  # gpufix: ignore[GPU1]"]


def test_the_rules_listed_as_enabled_are_the_rules_that_run(tmp_path):
    """The most specific selector wins (`GPU103` over the ignored `GPU10`); `--show-settings`
    lists exactly the rules whose findings the scan reports."""
    policy = POLICY.replace("\n\n[tool.gpufix.per-file-ignores]\n\"legacy/*.py\" = [\"GPU0\"]\n",
                            '\nselect = ["GPU0", "GPU103"]\nignore = ["GPU10", "GPU002"]\n')
    root = project(tmp_path, {k: v for k, v in SILENCED.items() if k != "legacy/old.py"}, policy)
    shown = run_gpufix("scan", "main.py", "--show-settings", cwd=root)
    assert shown.returncode == 0, shown.stderr
    line = next(ln for ln in shown.stdout.splitlines() if ln.startswith("enabled rules = "))
    assert json.loads(line.split(" = ", 1)[1]) == ["GPU001", "GPU003", "GPU004", "GPU103"]
    rules = {f["rule"] for f in scan(root)["findings"]}
    assert rules == {"GPU001", "GPU103"}
    # the command line's selectors resolve the same way on top of the config's
    rules = {f["rule"] for f in scan(root, "--ignore", "GPU1")["findings"]}
    assert rules == {"GPU001"}


GUARDED_HELPER = ('import torch\n\n\ndef run():\n    return torch.zeros(1).to("cuda:0")\n\n\n'
                  'if __name__ {op} "__main__":\n    run()\n')


def test_only_an_equality_main_guard_makes_an_imported_module_an_entry_point(tmp_path):
    """`if __name__ == "__main__":` keeps an imported module a script of its own (it needs its
    header); `if __name__ != "__main__":` runs its body on import and is not a guard: the module
    is covered by the entry point that imports it."""
    main = HEADER + "import helper\n\nhelper.run()\n"
    found = {}
    for name, op in (("eq", "=="), ("ne", "!=")):
        (tmp_path / name).mkdir()
        root = project(tmp_path / name, {"main.py": main, "helper.py": GUARDED_HELPER.format(op=op)})
        found[op] = [(f["path"], f["line"], f["rule"]) for f in scan(root)["findings"]]
    assert found["=="] == [("helper.py", 1, "GPU101"), ("helper.py", 1, "GPU102")]
    assert found["!="] == []
