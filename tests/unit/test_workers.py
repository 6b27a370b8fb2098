"""The worker pool scan and apply share (gpufix.workers)."""

import os

from gpufix import workers
from gpufix.workers import run_in_workers

STATE = {}


def _init(tag):
    STATE["tag"] = tag


def _job(x):
    return (x * x, STATE.get("tag"), os.getpid())


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
