"""Progress of a running job on stderr: a live bar on a terminal, plain lines in a log."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from featuremap.cli._format import echo, plural
from featuremap.cli._signals import raise_pending

__all__ = ["progress_reporter"]

#: A non-terminal gets a progress line at least every this many seconds ...
PLAIN_PROGRESS_SECONDS = 2.0
#: ... or whenever this fraction of the blocks has finished since the last line.
PLAIN_PROGRESS_FRACTION = 0.1


class _PlainProgress:
    """Progress lines on stderr for logs: every ~10 % or ~2 s, and at the end."""

    def __init__(self) -> None:
        self.start = self.last_time = 0.0
        self.first_done: int | None = None
        self.last_done = -1

    def __call__(self, done: int, total: int) -> None:
        raise_pending()  # a signal whose exception a finalizer swallowed
        now = time.monotonic()
        if self.first_done is None:
            # The rate counts from the first report: cluster start-up and skipped blocks are not work.
            self.first_done, self.start, self.last_time = done, now, now
        due = (
            done == total
            or now - self.last_time >= PLAIN_PROGRESS_SECONDS
            or done - self.last_done >= PLAIN_PROGRESS_FRACTION * total
        )
        if not due or done == self.last_done:
            return
        self.last_time, self.last_done = now, done
        rate = (done - self.first_done) / max(now - self.start, 1e-9)
        eta = f", ETA {(total - done) / rate:.0f} s" if rate > 0 and done < total else ""
        percent = 100 * done // total if total else 100
        echo(
            f"featuremap: {done}/{plural(total, 'block')} ({percent}%), {rate:.1f} blocks/s{eta}",
            err=True,
        )


@contextmanager
def progress_reporter(enabled: bool = True) -> Iterator[Callable[[int, int], None] | None]:
    """A ``progress(done, total)`` callback: a live rich bar on a terminal, plain lines otherwise."""
    if not enabled:
        yield None
        return
    if not sys.stderr.isatty():
        yield _PlainProgress()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.1f} blocks/s" if task.speed else "- blocks/s")

    with Progress(
        TextColumn("blocks"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("run", total=None)

        def update(done: int, total: int) -> None:
            raise_pending()
            bar.update(task, completed=done, total=total)

        yield update
