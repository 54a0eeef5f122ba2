"""`attnkit grade`: grade a class's notebooks in sandboxed workers, with the self-check's own tests.

One small module per step: `discover` finds SUBMISSIONS/<student>/<notebook>.ipynb, `notebook`
reads and validates a notebook and turns its code cells into plain Python, `sandbox` runs each
submission in a forked, resource-limited and (as root or not) isolated worker process, `guard` keeps
and restores the files where the sandbox cannot hide them, `worker` executes the cells there and calls
the student's functions on the grader's inputs, `pipeline` holds `grade()` (and owns the defaults),
`report` writes the CSVs, feedback and Gradescope JSON, `statuses` names the row statuses, and
`bundle` / `autograder` make and run the Gradescope autograder. The verdicts
(`attnkit.checks.core.judge`) are computed in the grader's own process, never in the student's.
See docs/grading.md.
"""

from __future__ import annotations

from attnkit.grading.pipeline import GradingError, grade, grade_submission

__all__ = ["grade", "grade_submission", "GradingError"]
