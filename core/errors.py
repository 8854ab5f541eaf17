"""Errors a user can fix: each names the parameter at fault and says what to do."""

from __future__ import annotations


class LczError(Exception):
    """A user error in a core step: `parameter` names the input at fault."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message

    def __reduce__(self) -> tuple:
        # pickled whole, so that a cluster worker's error reaches the run that sent the task
        return type(self), (self.parameter, self.message)
