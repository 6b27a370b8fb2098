"""The worker pool scan and apply share (gpufix.workers), and what its processes hold (WorkerState)."""

import os

import pytest

from gpufix import workers
from gpufix.workers import WorkerState, run_in_workers

STATE = WorkerState("test", "the tag of the test's pool")


def _init(tag):
    STATE.set(tag=tag)


def _job(x):
    return (x * x, STATE["tag"], os.getpid())


def test_results_in_input_order_from_worker_processes():
    items = list(range(200))
    out = list(run_in_workers(_job, items, workers=2, per_worker=24, initializer=_init, initargs=("t",)))
    assert [r[0] for r in out] == [x * x for x in items]
    assert {r[1] for r in out} == {"t"}  # the initializer ran in every worker
    assert os.getpid() not in {r[2] for r in out}  # the work left this process


def test_little_work_stays_in_this_process():
    out = list(run_in_workers(_job, [1, 2, 3], workers=2, per_worker=24, initializer=_init, initargs=("here",)))
    assert out == [(1, "here", os.getpid()), (4, "here", os.getpid()), (9, "here", os.getpid())]


def test_no_process_pool_falls_back_to_this_process(monkeypatch):
    import concurrent.futures

    class NoPool:
        def __init__(self, *a, **k):
            raise PermissionError("no processes in this sandbox")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", NoPool)
    items = list(range(100))
    out = list(workers.run_in_workers(_job, items, workers=4, per_worker=10))
    assert [r[0] for r in out] == [x * x for x in items] and {r[2] for r in out} == {os.getpid()}


def test_spawned_workers_give_the_same_results(monkeypatch):
    """Windows and macOS start workers with `spawn`: a fresh interpreter that imports the job's
    module and unpickles the initializer's arguments."""
    monkeypatch.setenv(workers.START_METHOD_ENV, "spawn")
    assert workers.start_method() == "spawn"
    items = list(range(120))
    out = list(run_in_workers(_job, items, workers=2, per_worker=24, initializer=_init, initargs=("s",)))
    assert [r[0] for r in out] == [x * x for x in items]
    assert {r[1] for r in out} == {"s"} and os.getpid() not in {r[2] for r in out}


def test_start_method_default_and_bad_values(monkeypatch):
    import sys

    monkeypatch.setenv(workers.START_METHOD_ENV, "threads")  # not a start method: the default
    assert workers.start_method() == ("fork" if sys.platform.startswith("linux") else None)


def test_a_worker_state_names_what_it_holds():
    state = WorkerState("demo", "a tag")
    state.set(tag="a", other=1)
    state.set(tag="b")  # set replaces: nothing of an earlier pool's is left
    assert state["tag"] == "b" and "other" not in state and state.get("other") is None
    state.put("read", 1)
    assert state.pop("read") == 1 and state.pop("read") is None
    state.clear()
    with pytest.raises(LookupError, match="the demo worker state holds no 'tag': its pool's initializer sets it"):
        state["tag"]
    assert [s.name for s in workers.STATES] == ["lint", "plan", "index"] and all(s.holds for s in workers.STATES)


def test_apply_lets_go_of_its_sessions_and_the_index_of_its_last_read(tmp_path, monkeypatch):
    """apply's plan state holds the sessions (their policies hold the project index) only while it
    plans; an index record leaves no file's reading behind."""
    from gpufix.apply import ApplyOptions, run_apply
    from gpufix.config import Policy

    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (tmp_path / "train.py").write_text("import torch\ntorch.cuda.set_device(1)\n")
    monkeypatch.chdir(tmp_path)
    out = run_apply(["."], Policy(visible_devices="1"), ApplyOptions(tag=False, backup=False, diff=True, allow_dirty=True, jobs=1))
    assert [path for path, _ in out.diffs] == ["train.py"]
    assert "groups" not in workers.PLAN_STATE
    assert "root" in workers.INDEX_STATE and "read" not in workers.INDEX_STATE
