"""Adding a rule touches only its catalogue entry, its rule module, its fixture and the regenerated
docs (issue 14's "Done when"). A copy of gpufix gets a toy rule GPU999 (rules/GPU999.toml and
gpufix/rules/gpu999_toy.py, nothing else: the module also defines the facts it needs) and the real
CLI, run on that copy, reports it end to end: a fact from a walk collector that declares its own
prefilter text, a whole-tree fact in a file that imports no GPU framework (only under a policy),
and the same rule on a shell script's facts. When any of that needs an engine edit, this fails."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT

TOY_ENTRY = '''\
code = "GPU999"
name = "toy-long-sleep"
severity = "warning"
fix = "none"
summary = "A toy rule of the test-suite: long sleeps, GPU to-dos and masks in shell scripts."

what-it-does = """
Finds `time.sleep(N)` with N >= 10, `# TODO(gpu)` comments (under a policy) and the
CUDA_VISIBLE_DEVICES a shell script sets.
"""

why-bad = """
It exists to prove that a rule is one unit.
"""

example = """
import time
time.sleep(30)  # GPU999
"""

fix-safety = """
No fix.
"""

[messages]
sleep = "sleeps {seconds} s"
todo = "a GPU to-do"
shell-mask = "the script sets CUDA_VISIBLE_DEVICES={value}"

[[valid]]
code = """
import time
time.sleep(1)
"""

[[invalid]]
code = """
import time
time.sleep(30)
"""
expect = [[2, 1]]
'''

TOY_MODULE = '''\
"""GPU999 toy-long-sleep, with the two facts it reads."""

from gpufix.analysis import Pos, literal_int
from gpufix.collectors import Collector
from gpufix.rules import Rule


class Sleeps(Collector):
    """`time.sleep(N)` with a literal N >= 10, from the one walk."""

    name = "toy-sleeps"
    priority = 80

    def prefilter_tests(self, catalog):
        return (("sleep(", r"sleep\\(\\s*[1-9]\\d"),)

    def focus_words(self, catalog, imports):
        return ("sleep",)

    def visit_Call(self, node, walk):
        if walk.call_qual == "time.sleep" and node.args and (literal_int(node.args[0]) or 0) >= 10:
            walk.facts.extra.setdefault(self.name, []).append((walk.pos(node), node.args[0].value))


class GpuTodos(Collector):
    """Lines with a `# TODO(gpu)` comment: from the whole text, in files without a GPU import too."""

    name = "toy-gpu-todos"
    only_with_policy = True

    def parse_tests(self, catalog):
        return (("TODO(gpu)", None),)

    def finish(self, facts, tree, text):
        facts.extra[self.name] = [n for n, line in enumerate(text.splitlines(), 1) if "# TODO(gpu)" in line]


class ToyLongSleep(Rule):
    code = "GPU999"
    messages = {"sleep": ("seconds",), "todo": (), "shell-mask": ("value",)}

    def check(self, ctx):
        for pos, seconds in ctx.facts.extra.get(Sleeps.name, ()):
            yield self.finding(ctx, pos, "sleep", seconds=seconds)
        for line in ctx.facts.extra.get(GpuTodos.name, ()):
            yield self.finding(ctx, Pos(line, 0, line, 0), "todo")

    def check_text(self, tctx):
        for e in tctx.mask_sets:
            yield self.finding(tctx, tctx.pos(e.start, e.end), "shell-mask", value=e.value)
'''

PAD = "".join(f"\n\ndef helper_{i}(x):\n    return x + {i}\n" for i in range(80))  # past the focused walk's threshold
PROJECT = {
    "pyproject.toml": '[project]\nname = "toyproject"\n',
    "train.py": "import time\nimport torch\n" + PAD + "\n\ndef main():\n    time.sleep(30)\n    time.sleep(2)\n",
    "notes.py": "import os\n\n# TODO(gpu): pick the device from the config\nprint(os.getcwd())\n",
    "run.sh": "#!/bin/sh\nexport CUDA_DEVICE_ORDER=PCI_BUS_ID\nexport CUDA_VISIBLE_DEVICES=1\npython train.py\n",
}


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def _run(checkout: Path, *args, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "GPUFIX_PROBE"}
    env.update(NO_COLOR="1", PYTHONPATH=str(checkout), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd or checkout, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A copy of this checkout with the toy rule added: its entry and its module, nothing else."""
    root = tmp_path_factory.mktemp("checkout")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("gpufix", "rules", "scripts", "docs"):
        shutil.copytree(ROOT / name, root / name, ignore=ignore)
    for name in ("README.md", "pyproject.toml"):
        shutil.copy(ROOT / name, root / name)
    before = _digest(root)
    (root / "rules" / "GPU999.toml").write_text(TOY_ENTRY, encoding="utf-8")
    (root / "gpufix" / "rules" / "gpu999_toy.py").write_text(TOY_MODULE, encoding="utf-8")
    # The docs drift until they are regenerated; then they agree.
    assert _run(root, "scripts/gen_rules_doc.py", "--check").returncode == 1
    regen = _run(root, "scripts/gen_rules_doc.py")
    assert regen.returncode == 0, regen.stderr
    assert _run(root, "scripts/gen_rules_doc.py", "--check").returncode == 0
    after = _digest(root)
    changed = sorted(k for k in after if before.get(k) != after[k])
    assert changed == ["README.md", "docs/rules.md", "gpufix/rules/gpu999_toy.py", "rules/GPU999.toml"]
    assert "GPU999" in (root / "docs" / "rules.md").read_text(encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("toyproject")
    for rel, text in PROJECT.items():
        (root / rel).write_text(text, encoding="utf-8")
    return root


def _scan(checkout, project, *extra):
    proc = _run(checkout, "-m", "gpufix", "scan", ".", "--select", "GPU999", "--format", "json", "--no-cache", *extra,
                cwd=project)
    assert proc.returncode in (0, 1), proc.stderr
    return [(f["path"], f["line"], f["column"], f["message"]) for f in json.loads(proc.stdout)["findings"]]


def test_the_copy_runs_its_own_code(checkout):
    proc = _run(checkout, "-c", "import gpufix.rules.gpu999_toy as m; print(m.__file__)", cwd=checkout.parent)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_relative_to(checkout)


def test_a_new_rule_and_its_facts_need_no_engine_change(checkout, project):
    sleep_line = PROJECT["train.py"].splitlines().index("    time.sleep(30)") + 1
    expected = [
        ("notes.py", 3, 1, "a GPU to-do"),  # no GPU import: parsed for the collector's parse_tests
        ("run.sh", 3, 29, "the script sets CUDA_VISIBLE_DEVICES=1"),  # the rule on a shell script's facts
        ("train.py", sleep_line, 5, "sleeps 30 s"),  # a walk collector's fact, in a focused walk
    ]
    assert _scan(checkout, project, "--visible-devices", "1") == expected
    assert _scan(checkout, project, "--visible-devices", "1", "--no-prefilter") == expected
    # Without a policy the to-do collector does not run (only_with_policy), with or without the prefilter.
    assert _scan(checkout, project) == [f for f in expected if f[0] != "notes.py"]
    assert _scan(checkout, project, "--no-prefilter") == [f for f in expected if f[0] != "notes.py"]


def test_the_new_rule_is_listed_and_explained(checkout):
    explain = _run(checkout, "-m", "gpufix", "explain", "GPU999")
    assert explain.returncode == 0, explain.stderr
    assert "toy-long-sleep" in explain.stdout
    listed = _run(checkout, "-m", "gpufix", "rules")
    assert "GPU999" in listed.stdout


def test_the_pipeline_names_no_rule():
    """The pipeline is generic: no rule code, and no rule or collector module, in the engine, the
    prefilter, the walk, the registry, the worker pool, apply and the fixer, or the non-Python
    readers (a rule-specific hook there is what this guards against)."""
    import ast
    import re

    names = ("engine.py", "prefilter.py", "analysis.py", "cache.py", "apply.py", "registry.py", "workers.py")
    pipeline = [ROOT / "gpufix" / n for n in names] + sorted((ROOT / "gpufix" / "project").glob("*.py"))
    pipeline += sorted((ROOT / "gpufix" / "fix").glob("*.py"))
    pipeline += sorted((ROOT / "gpufix" / "formats").glob("*.py"))
    for path in pipeline:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert not re.search(r"\bGPU\d{3}\b", node.value), f"{path.name}:{node.lineno} names a rule: {node.value!r}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                for m in modules:
                    assert not re.match(r"gpufix\.(rules\.gpu\d|collectors\.\w)", m), f"{path.name}:{node.lineno} imports {m}"
