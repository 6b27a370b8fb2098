"""The one worker pool scan and apply share: run a function over many files, in forked worker
processes when there is enough work, results in the input order."""

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
