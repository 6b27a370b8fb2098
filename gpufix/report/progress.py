"""A progress bar on stderr (rich), for long scans and applies on a terminal.

The CLI decides when to make one (`progress_factory` in gpufix/cli.py); this class also stays silent
when stderr is not a terminal. It refreshes from `advance()` (at most ten times a second) rather than
from a background thread, so worker processes forked while it is shown never inherit a held lock.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, description: str = "Scanning"):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

        console = Console(file=sys.stderr)
        self._bar = RichProgress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            auto_refresh=False,
            disable=not console.is_terminal,
        )
        self._task = self._bar.add_task(description, total=total)
        self._last = 0.0
        self._closed = False
        self._bar.start()
        self._bar.refresh()

    def advance(self, n: int = 1) -> None:
        self._bar.advance(self._task, n)
        now = time.monotonic()
        if now - self._last >= 0.1:
            self._last = now
            self._bar.refresh()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bar.stop()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
