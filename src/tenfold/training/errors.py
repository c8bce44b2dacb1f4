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

    def __init__(self, line: int, message: str, *, problems: list[tuple[int, str]] | None = None,
                 n_bad: int = 1, n_lines: int = 0) -> None:
        super().__init__(line, message)
        self.line = line
        self.message = message
        # Every bad line found (up to a limit): (1-based line, reason); the first one is (line, message).
        self.problems = problems or [(line, message)]
        self.n_bad = n_bad
        self.n_lines = n_lines

    def __str__(self) -> str:
        def one(line: int, message: str) -> str:
            return message if line <= 0 else f"line {line}: {message}"

        if self.n_bad <= 1:
            return one(self.line, self.message)
        shown = "; ".join(one(n, m) for n, m in self.problems)
        more = f" (the first {len(self.problems)} shown)" if self.n_bad > len(self.problems) else ""
        return f"{self.n_bad} of {self.n_lines} lines are invalid{more}: {shown}"


class TemplateError(TrainingUserError):
    """The base model's chat template does not render conversations in a way that allows masking."""


class TrainingCancelled(Exception):
    """Raised inside the recipe when ``should_stop()`` turned true (the worker sent SIGTERM)."""

    def __init__(self, step: int) -> None:
        super().__init__(f"training stopped at step {step}")
        self.step = step
