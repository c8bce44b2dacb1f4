"""Exceptions shared by the training modules.

Owns: the split between *user* errors (bad data, bad hyperparameters, a template that cannot be masked:
the user can fix them) and everything else (internal errors), which the subprocess entry point reports as
``user_error`` true/false. Does not own: how the worker turns them into job statuses.
"""

from __future__ import annotations


class TrainingUserError(Exception):
    """A problem the user can fix: the data, the hyperparameters or the choice of base model."""


class DatasetError(TrainingUserError):
    """A training file that is not valid. ``line`` is 1-based (0 when the problem is the whole file)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(line, message)
        self.line = line
        self.message = message

    def __str__(self) -> str:
        if self.line <= 0:
            return self.message
        return f"line {self.line}: {self.message}"


class TemplateError(TrainingUserError):
    """The base model's chat template does not render conversations in a way that allows masking."""


class TrainingCancelled(Exception):
    """Raised inside the recipe when ``should_stop()`` turned true (the worker sent SIGTERM)."""

    def __init__(self, step: int) -> None:
        super().__init__(f"training stopped at step {step}")
        self.step = step
