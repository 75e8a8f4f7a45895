"""Progress on stderr, shown only when stderr is a terminal (the report itself goes to stdout)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def byte_progress(description: str, total: int, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """Yield a thread-safe ``advance(n_bytes)`` callback driving a rich progress bar, or None."""
    if not enabled or total <= 0:
        yield None
        return
    import threading

    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    lock = threading.Lock()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)

        def advance(count: int) -> None:
            with lock:
                bar.advance(task, count)

        yield advance
