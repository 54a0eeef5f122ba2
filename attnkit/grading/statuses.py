"""The status of a graded row, what each one means, and the rows the grader decides on its own.

The first four statuses come from the self-check (`attnkit.checks.core`); the others are the
grader's. A `Status` is a `str`, so a row's status compares equal to the self-check's own words
("passed") and is written as its value in the CSV files.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from attnkit.checks.core import ERROR, FAILED, NOT_IMPLEMENTED, PASSED, Exercise
from attnkit.grading.contract import Outcome

__all__ = ["Status", "Verdict", "EXPLANATIONS", "LIMITS"]


class Status(str, enum.Enum):
    """One graded row's status."""

    PASSED = PASSED
    FAILED = FAILED
    ERROR = ERROR
    NOT_IMPLEMENTED = NOT_IMPLEMENTED
    MISSING = "missing"  # no function of the exercise's name, and check() was never called on one
    TIMEOUT = "timeout"
    MEMORY = "memory"
    OUTPUT_LIMIT = "output_limit"
    CRASHED = "crashed"
    INVALID = "invalid"
    NOT_SUBMITTED = "not_submitted"
    UNEXPECTED_FILE = "unexpected_file"
    DUPLICATE = "duplicate"
    TAMPERED = "tampered"  # changed files outside its sandbox (restored by guard.py)

    def __str__(self) -> str:
        return self.value

    @classmethod
    def of(cls, outcome: Outcome) -> Status:
        """The row status of a worker outcome that is not RAN (a limit, or no function)."""
        return cls(outcome.value)


@dataclass(frozen=True)
class Verdict:
    """A row the grader decides without the self-check's judgement: a limit hit, a crash, a missing or
    unreadable notebook, tampering. No points; the message says why."""

    exercise: Exercise
    status: Status
    message: str

    points = 0.0

    def render(self) -> str:
        return f"✗ Exercise {self.exercise.id} ({self.exercise.function}): {self.message}"


# The resource limits: a check that exceeds one earns no points for its exercise.
LIMITS = (Status.TIMEOUT, Status.MEMORY, Status.OUTPUT_LIMIT, Status.CRASHED)

EXPLANATIONS = {
    Status.PASSED: "every check (public and hidden) passed",
    Status.FAILED: "the function returned, but some checks got wrong values; partial credit per check passed",
    Status.ERROR: "the function raised an exception (or returned something that is not a tensor) on some checks",
    Status.NOT_IMPLEMENTED: "the released stub is still there (`raise NotImplementedError`)",
    Status.MISSING: "no function of the exercise's name was defined (renamed, deleted, or its cell failed)",
    Status.TIMEOUT: "the exercise's checks (or the notebook's cells) ran past the time limit",
    Status.MEMORY: "the code ran out of the memory the sandbox allows",
    Status.OUTPUT_LIMIT: "the code printed more than the output cap",
    Status.CRASHED: "the process died (segfault, os._exit(), killed) before the checks finished",
    Status.INVALID: "the notebook could not be read: empty, not JSON, not a notebook",
    Status.NOT_SUBMITTED: "the student's folder has no notebook of this name",
    Status.UNEXPECTED_FILE: "a file that is not a released notebook (not graded; 0 of 0 points)",
    Status.DUPLICATE: "a second copy of a notebook that was graded from another file (not graded)",
    Status.TAMPERED: "while it ran, the notebook changed other submissions, the output or the course files "
                     "(possible only without namespaces; the grader restored them): no points",
}
