"""Errors a user can fix: each names the parameter at fault and says what to do."""

from __future__ import annotations


class LczError(Exception):
    """A user error in a core step: `parameter` names the input at fault."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message
