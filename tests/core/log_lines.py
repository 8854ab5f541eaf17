"""A Progress for tests that keeps the lines a step logs."""

from __future__ import annotations

from lcz_core.progress import Progress


class LogLines(Progress):
    """Progress that keeps the log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)
