"""Progress reporting and cancellation: the small interface every long core step takes.

The QGIS plugin bridges it to QgsProcessingFeedback (through the worker's JSON lines), the command
line to a tqdm bar. A step calls `progress.report(...)` between units of work; a cancelled run
raises `Cancelled` there, so outputs written through `outputs.atomic_path` are removed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

T = TypeVar("T")


class Cancelled(Exception):
    """The user cancelled the run."""


class Progress:
    """Silent progress: the default where nobody listens. Subclasses override `_emit`/`log`."""

    def __init__(self) -> None:
        self.cancelled = False

    def report(self, percent: float, message: str | None = None) -> None:
        """Report `percent` (0-100) done; raise `Cancelled` if the run was cancelled."""
        self.check()
        self._emit(max(0.0, min(100.0, float(percent))), message)

    def log(self, message: str) -> None:
        """Report a line of information for the user."""

    def cancel(self) -> None:
        """Ask the run to stop at the next report."""
        self.cancelled = True

    def check(self) -> None:
        """Raise `Cancelled` if the run was cancelled."""
        if self.cancelled:
            raise Cancelled("cancelled by the user")

    def _emit(self, percent: float, message: str | None) -> None:
        pass


class SubProgress(Progress):
    """Maps 0-100 of a sub-step onto [start, end] of a parent progress."""

    def __init__(self, parent: Progress, start: float, end: float) -> None:
        super().__init__()
        self.parent, self.start, self.end = parent, start, end

    def check(self) -> None:
        """Raise `Cancelled` if the parent run was cancelled."""
        self.parent.check()

    def log(self, message: str) -> None:
        """Forward a log line to the parent."""
        self.parent.log(message)

    def _emit(self, percent: float, message: str | None) -> None:
        self.parent.report(self.start + (self.end - self.start) * percent / 100.0, message)


class TqdmProgress(Progress):
    """A progress bar on a terminal (command line use)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__()
        from tqdm import tqdm

        self._bar = tqdm(total=100, unit="%", file=stream or sys.stderr, leave=True)

    def log(self, message: str) -> None:
        """Print a line above the bar."""
        self._bar.write(message, file=sys.stderr)

    def _emit(self, percent: float, message: str | None) -> None:
        if message:
            self._bar.set_description(message, refresh=False)
        self._bar.update(percent - self._bar.n)

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()


class JsonLinesProgress(Progress):
    """Progress as JSON lines on a stream: the worker protocol spoken to the QGIS plugin."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stdout

    def send(self, kind: str, **fields: object) -> None:
        """Write one message {"type": kind, ...} and flush."""
        self.stream.write(json.dumps({"type": kind, **fields}, default=str) + "\n")
        self.stream.flush()

    def log(self, message: str) -> None:
        """Send a log line."""
        self.send("log", message=message)

    def _emit(self, percent: float, message: str | None) -> None:
        self.send("progress", percent=round(percent, 2), message=message)


def track(
    items: Iterable[T], progress: Progress, total: int, message: str | None = None
) -> Iterator[T]:
    """Yield `items`, reporting progress (and honouring cancel) before each one."""
    for done, item in enumerate(items):
        progress.report(100.0 * done / max(total, 1), message)
        yield item
    progress.report(100.0, message)
