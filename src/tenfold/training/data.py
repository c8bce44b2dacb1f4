"""Validation and parsing of fine-tuning JSONL files (``purpose="fine-tune"``).

Owns: reading a whole file (UTF-8, one JSON object per line, blank lines only at the end, one format for the
whole file) and error messages that name the 1-based line and say what to fix: every bad line is reported
(the first ``MAX_REPORTED_PROBLEMS`` listed, all counted). The api calls ``validate_jsonl`` on upload; the
recipes call ``parse_jsonl`` (``read_examples`` for a job's file on disk) to get normalized ``Example``
objects. Does not own: what one line may hold (``tenfold.training.formats``: the accepted formats, per-example
and per-message ``weight``) or tokenization and loss masks (``tenfold.training.tokenize``). No torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tenfold.training.errors import DatasetError, TrainingUserError
from tenfold.training.examples import Example, Format, Message
from tenfold.training.formats import parse_line

if TYPE_CHECKING:
    from tenfold.training.spec import TrainingSpec

__all__ = ["DatasetError", "DatasetSummary", "Example", "Format", "Message", "parse_jsonl", "parse_line",
           "validate_jsonl"]

MAX_REPORTED_PROBLEMS = 20  # bad lines listed in one error; the count covers all of them


@dataclass(frozen=True)
class DatasetSummary:
    n_examples: int
    format: Format
    n_bytes: int
    examples: tuple[Example, ...] = field(default=(), compare=False, repr=False)


def validate_jsonl(data: bytes, *, purpose: str = "fine-tune") -> DatasetSummary:
    """Check a whole training file; raise ``DatasetError`` at the first problem."""
    examples = parse_jsonl(data, purpose=purpose)
    return DatasetSummary(n_examples=len(examples), format=examples[0].format, n_bytes=len(data),
                          examples=tuple(examples))


def parse_jsonl(data: bytes, *, purpose: str = "fine-tune") -> list[Example]:
    """Parse and normalize a training file into examples (message content as plain strings)."""
    if purpose != "fine-tune":
        raise DatasetError(0, f"unsupported purpose {purpose!r}: training files use purpose 'fine-tune'")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(line, f"the file is not valid UTF-8 (byte {exc.start}); save it as UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()  # blank lines at the end are fine
    if not lines:
        raise DatasetError(0, "the file is empty: add one JSON object per line")
    examples: list[Example] = []
    problems: list[tuple[int, str]] = []
    n_bad = 0
    for number, raw in enumerate(lines, start=1):
        try:
            if not raw.strip():
                raise DatasetError(number, "blank line: every line must hold one JSON object (blank lines are "
                                           "allowed only at the end of the file)")
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DatasetError(number, f"invalid JSON: {exc.msg} at column {exc.colno}") from None
            example = parse_line(number, obj)
            if examples and example.format != examples[0].format:
                raise DatasetError(number, f"this line uses the {example.format!r} format but line "
                                           f"{examples[0].line} uses {examples[0].format!r}; use one format "
                                           "for the whole file")
        except DatasetError as exc:
            n_bad += 1
            if len(problems) < MAX_REPORTED_PROBLEMS:
                problems.append((exc.line, exc.message))
            continue
        examples.append(example)
    if problems:
        first_line, first_message = problems[0]
        raise DatasetError(first_line, first_message, problems=problems, n_bad=n_bad, n_lines=len(lines))
    return examples


def read_examples(path: str, spec: TrainingSpec) -> list[Example]:
    """The examples of a job file on disk (the training file's errors as they are, the validation file's named)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TrainingUserError(f"cannot read training file {path}: {exc.strerror}") from None
    try:
        return parse_jsonl(data)
    except DatasetError as exc:
        if path == spec.training_file:
            raise
        raise DatasetError(exc.line, f"validation file: {exc.message}") from None
