"""Progress bars for long commands (rich), written to stderr so stdout stays parseable."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Advance = Callable[[int], None]


def no_advance(n: int) -> None:
    """The advance of a run without a bar (a test, a caller that shows none)."""
    return None


@contextmanager
def bars() -> Iterator[Callable[[str, int | None], Advance]]:
    """Yields ``add(description, total) -> advance(n)``; each call adds a bar."""
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                  transient=False) as progress:

        def add(description: str, total: int | None) -> Advance:
            task = progress.add_task(description, total=total)
            return lambda n: progress.advance(task, n)

        yield add
