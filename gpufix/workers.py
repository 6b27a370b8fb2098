"""The one worker pool scan and apply share: run a function over many files, in forked worker
processes when there is enough work, results in the input order; and what each worker process
holds for its pool's jobs (`WorkerState`: scan's lint, apply's planning, the project index's
records), with when it is set and cleared, in one place."""

from __future__ import annotations

import os
import sys
from typing import Callable, Iterator, Optional, Sequence


# `GPUFIX_START_METHOD=spawn` makes Linux start workers the way Windows and macOS do (a fresh
# interpreter that imports gpufix and unpickles the policy): the test suite runs scan and apply
# that way too, so that a Windows user's runs are the ones tested.
START_METHOD_ENV = "GPUFIX_START_METHOD"


def start_method() -> Optional[str]:
    """The multiprocessing start method of the pool: the environment's choice, else fork on Linux,
    else the platform's default (spawn on Windows and macOS)."""
    chosen = os.environ.get(START_METHOD_ENV, "").strip()
    if chosen in ("fork", "spawn", "forkserver"):
        return chosen
    return "fork" if sys.platform.startswith("linux") else None


def run_in_workers(
    fn: Callable,
    items: Sequence,
    workers: Optional[int] = None,
    per_worker: int = 24,
    initializer: Optional[Callable] = None,
    initargs: tuple = (),
) -> Iterator:
    """Yield fn(item) for every item, in order.

    Worker processes (forked on Linux: they start in milliseconds and inherit what the parent has
    loaded, such as the catalogue) are used when each would get at least `per_worker` items; the
    caller should put the biggest items first: those are handed out one by one (worth the IPC),
    the many small ones in chunks. `initializer(*initargs)` runs in every worker and, first, in
    this process (so the sequential path sees the same state). Where no process pool can be made
    (a sandbox), everything runs here."""
    n = len(items)
    if initializer is not None:
        initializer(*initargs)
    wanted = workers if workers is not None else (os.cpu_count() or 1)
    wanted = min(wanted, 32, n // per_worker)
    if wanted > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context(start_method())
        pool = None
        try:
            pool = ProcessPoolExecutor(max_workers=wanted, mp_context=ctx, initializer=initializer, initargs=initargs)
            head = max(wanted, n // 10)
            # Small chunks balance the load (file sizes vary a lot); big enough to keep IPC cheap.
            chunk = max(4, min(64, n // (wanted * 12)))
            # Both maps are submitted now, so the workers never wait between the two.
            parts = [pool.map(fn, items[:head], chunksize=1), pool.map(fn, items[head:], chunksize=chunk)]
        except (OSError, PermissionError, NotImplementedError):
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            pool = None
        if pool is not None:
            with pool:
                for part in parts:
                    yield from part
            return
    for item in items:
        yield fn(item)


class WorkerState:
    """What the processes of one pool hold for its jobs, in one named place.

    The pool's initializer `set`s it (replacing what was there) in this process first and then in
    every worker before its first job, forked or spawned: a spawned worker imports the job's
    module, which imports this one, so each process has its own copy and the initializer fills
    it. A job reads it (`state["key"]`, `get`); a value a job leaves for the next reader of the
    same file is `put` and `pop`ped by that job. Jobs are then a few small values: what every job
    needs (a policy that holds the project's index) is not pickled once per file. `holds` says
    what the state holds and when it is cleared (gpufix's own: `STATES`, below)."""

    def __init__(self, name: str, holds: str):
        self.name = name
        self.holds = holds
        self._values: dict = {}

    def set(self, **values) -> None:
        self._values = dict(values)

    def put(self, key: str, value) -> None:
        self._values[key] = value

    def get(self, key: str, default=None):
        return self._values.get(key, default)

    def pop(self, key: str, default=None):
        return self._values.pop(key, default)

    def clear(self) -> None:
        self._values = {}

    def __getitem__(self, key: str):
        try:
            return self._values[key]
        except KeyError:
            raise LookupError(f"the {self.name} worker state holds no {key!r}: its pool's initializer sets it") from None

    def __contains__(self, key: str) -> bool:
        return key in self._values

    def __repr__(self) -> str:
        return f"WorkerState({self.name!r}, holding {sorted(self._values)})"


# What a worker process of gpufix holds: one state per pool, each set by that pool's initializer.
LINT_STATE = WorkerState(
    "lint",
    "scan's per-file lint (gpufix.engine._lint_job): the policy, whether the prefilter is on, the "
    "policy's catalogue. Set by engine._job_init for each scan; kept until the next scan replaces it "
    "(a worker lives for one scan).")
PLAN_STATE = WorkerState(
    "plan",
    "apply's planning (gpufix.apply._plan_file): one gpufix.session.Session per policy group. Set by "
    "apply._plan_init; cleared when the planning ends, in this process (the sessions' policies hold "
    "the project indexes: not kept past it).")
INDEX_STATE = WorkerState(
    "index",
    "the project index's records (gpufix.project.imports.index_record): the project's root, its "
    "console scripts, the first-party catalogue; and `read`, the last file's import reading and tree, "
    "put by _index_file for the record's later readers of the same file (_lazy_facts: the file is "
    "not read twice), popped when the record is made. Set by imports._index_init for each index "
    "build (which also forgets which folders hold an `__init__.py`).")
STATES = (LINT_STATE, PLAN_STATE, INDEX_STATE)
