"""`attnkit grade`: grade a class's notebooks in sandboxed workers, with the self-check's own tests.

One small module per part, `pipeline` first (it reads as the ordered list of steps and owns the
defaults):
- `state`: the options and what the steps find (`Options`, `Grading`, `Job`, `Summary`);
- `discover`: SUBMISSIONS/<student>/<notebook>.ipynb and the files that are not graded;
- `notebook`: reads and validates a notebook, its code cells as plain Python;
- `sandbox`: the pre-warmed zygote (warmed by `warmup`) forking one isolated, limited worker per
  notebook, and its probe of the protections in force; `guard`: keeps and restores the files where
  the sandbox cannot hide them;
- `contract`: the worker <-> grader files, outcomes and stages; `worker`: runs the cells and calls the
  student's functions on the grader's inputs, inside the sandbox;
- `results`: reads what a worker wrote and judges it here, in the grader (`attnkit.checks.core.judge`);
  `diagnose`: why a worker ended early;
- `statuses`: a row's `Status` and the grader's own `Verdict`; `report`: the CSVs, feedback, Gradescope
  JSON and the summary; `bundle` / `autograder`: the Gradescope autograder.
See docs/grading.md.
"""

from __future__ import annotations

from attnkit.grading.pipeline import GradingError, grade, grade_submission

__all__ = ["grade", "grade_submission", "GradingError"]
