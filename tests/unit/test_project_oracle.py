"""`gpufix apply` of a whole project, of any subset of its files or of one file through stdin keeps
every process on the GPU it used, under the policy's mask: the project oracle
(tests/oracle/project_oracle.py) on named regression cases and on generated projects.

Each case in tests/oracle/project_cases/ is a project `apply` once got wrong, with the process
starts to run and the ways of applying that showed it (`ways`), and why (`why`). The generated
run is bounded here (a fixed seed); GPUFIX_PROJECT_ORACLE=N runs N random projects instead (the
long run; also `python -m oracle.project_oracle N SEED OUTDIR` from tests/, which counts
counterexamples by family and writes each to OUTDIR).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from oracle.project_gen import random_project
from oracle.project_oracle import judge_project

CASES = Path(__file__).resolve().parent.parent / "oracle" / "project_cases"
LONG = os.environ.get("GPUFIX_PROJECT_ORACLE")


@pytest.mark.parametrize("case", sorted(CASES.glob("*.json")), ids=lambda p: p.stem)
def test_project_regression_case(case):
    data = json.loads(case.read_text())
    starts = [tuple(s) for s in data["starts"]]
    # the case's own ways (and the whole tree, and one stdin); scan/stdin equality on 2 of its files
    problems = judge_project(data["files"], starts, random.Random(0), subsets=0, equality=True if LONG else 2,
                             extra_ways=[tuple(w) for w in data.get("ways", ())])
    assert problems == [], data["why"]


@pytest.mark.parametrize("seed", range(int(LONG) if LONG else 6))
def test_generated_projects(seed):
    rng = random.Random(1000 + seed)
    files, starts = random_project(rng)
    # bounded: 2 files of each project compared for scan FILE / scan . / stdin (the long run: all)
    problems = judge_project(files, starts, rng, subsets=1, equality=True if LONG else 2)
    assert problems == [], json.dumps({"files": files, "starts": starts}, indent=1)


def test_the_oracle_sees_a_remap_without_its_header():
    """The oracle itself can fail: the 0.1 behaviour (a module's set_device(1) rewritten with no
    header anywhere) is a `device` problem."""
    from oracle.project_oracle import compare

    before = {"exception": None, "ran": ["m.py"], "import_env": [None, None], "frozen_env": [None, None],
              "calls": [{"name": "torch.cuda.set_device", "line": "m.py:3", "devices": [{"kind": "int", "index": 1, "raw": 1}]}]}
    after = dict(before, calls=[{"name": "torch.cuda.set_device", "line": "m.py:3", "devices": [{"kind": "int", "index": 0, "raw": 0}]}])
    problems = compare(before, after, {}, "1")
    assert [p[0] for p in problems] == ["header", "device"] or [p[0] for p in problems] == ["device"]


def test_the_oracle_runs_and_judges_a_child_with_the_env_it_is_given(tmp_path):
    """A subprocess child is run with the env its parent hands it, recorded under its parent, and
    judged like any process: a child left on the parent's "0,1" after apply, with no finding in
    it or its parent, is a `header` problem."""
    from oracle.project_oracle import compare, run_start

    (tmp_path / "launch.py").write_text(
        'import os\nimport subprocess\nimport sys\n\nenv = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1"}\n'
        'subprocess.run([sys.executable, "worker.py"], env=env, check=True)\n')
    (tmp_path / "worker.py").write_text('import torch\n\ntorch.zeros(1, device="cuda:1")\n')
    got = run_start(str(tmp_path), ("script", "launch.py"))
    assert [c["start"] for c in got["children"]] == ["script worker.py"]
    child = got["children"][0]["record"]
    assert child["import_env"] == ["0,1", None]
    assert [(c["name"], c["line"]) for c in child["calls"]] == [("torch.zeros", "worker.py:3")]
    problems = compare(got, got, {}, "1")
    assert [p[0] for p in problems] == ["header"] and problems[0][1].startswith("child script worker.py")
