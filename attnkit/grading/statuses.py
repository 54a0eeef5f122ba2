"""The status of a graded row, and what each one means (shown in docs/grading.md and the summary).

The first four come from the self-check (`attnkit.checks.core`); the others are the grader's.
"""

from __future__ import annotations

from attnkit.checks.core import ERROR, FAILED, NOT_IMPLEMENTED, PASSED

__all__ = ["PASSED", "FAILED", "ERROR", "NOT_IMPLEMENTED", "MISSING", "TIMEOUT", "MEMORY", "OUTPUT_LIMIT",
           "CRASHED", "INVALID", "NOT_SUBMITTED", "UNEXPECTED_FILE", "DUPLICATE", "TAMPERED", "EXPLANATIONS", "LIMITS"]

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

# The resource limits: a check that exceeds one earns no points for its exercise.
LIMITS = (TIMEOUT, MEMORY, OUTPUT_LIMIT, CRASHED)

EXPLANATIONS = {
    PASSED: "every check (public and hidden) passed",
    FAILED: "the function returned, but some checks got wrong values; partial credit per check passed",
    ERROR: "the function raised an exception (or returned something that is not a tensor) on some checks",
    NOT_IMPLEMENTED: "the released stub is still there (`raise NotImplementedError`)",
    MISSING: "no function of the exercise's name was defined (renamed, deleted, or its cell failed)",
    TIMEOUT: "the exercise's checks (or the notebook's cells) ran past the time limit",
    MEMORY: "the code ran out of the memory the sandbox allows",
    OUTPUT_LIMIT: "the code printed more than the output cap",
    CRASHED: "the process died (segfault, os._exit(), killed) before the checks finished",
    INVALID: "the notebook could not be read: empty, not JSON, not a notebook",
    NOT_SUBMITTED: "the student's folder has no notebook of this name",
    UNEXPECTED_FILE: "a file that is not a released notebook (not graded; 0 of 0 points)",
    DUPLICATE: "a second copy of a notebook that was graded from another file (not graded)",
    TAMPERED: "while it ran, the notebook changed other submissions, the output or the course files "
              "(possible only without namespaces; the grader restored them): no points",
}
