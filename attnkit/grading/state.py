"""What a grading knows: the instructor's options, and what the steps find and decide.

`Options` is fixed once `grade()` has checked its arguments; `Grading` accumulates, step by step
(pipeline.py), the submissions found, the jobs pending, the cases drawn, each notebook's results and
the summary printed at the end.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from attnkit.checks.core import Case, ExerciseReport
from attnkit.grading.discover import Discovery, Submission
from attnkit.grading.guard import Guard
from attnkit.grading.isolation import Limits
from attnkit.grading.notebook import Cell
from attnkit.grading.sandbox import Sandbox
from attnkit.grading.statuses import Verdict

__all__ = ["GradingError", "Options", "Grading", "Job", "NotebookResult", "Summary"]


class GradingError(RuntimeError):
    """Grading could not run at all (missing folder, nothing to grade, unwritable output)."""


@dataclass
class NotebookResult:
    """One student's notebook: a report per exercise, and notes about the notebook as a whole."""

    student: str
    notebook: str
    reports: list[ExerciseReport | Verdict]
    notes: list[str] = field(default_factory=list)  # cell errors, renamed file, conversion...
    seconds: float = 0.0


@dataclass
class Summary:
    """What the run did, for the terminal."""

    students: int = 0
    notebooks: int = 0  # notebooks run in a worker
    rows: collections.Counter = field(default_factory=collections.Counter)  # status -> rows
    cell_problems: collections.Counter = field(default_factory=collections.Counter)  # kind -> notebooks
    leftovers: int = 0  # processes that outlived their notebook and were killed
    worker_seconds: dict[str, list[float]] = field(default_factory=dict)  # notebook -> fork-to-exit times
    retries: int = 0
    tampered: list[str] = field(default_factory=list)  # "student/notebook" whose run changed guarded files
    seconds: float = 0.0
    measures: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    out: Path | None = None

    def render(self) -> str:
        """A few lines: counts, wall time and the sandbox measures that were (not) in force."""
        from attnkit.grading.report import render_summary

        return render_summary(self)


@dataclass
class Job:
    """One notebook to run in a worker (again, without the exercise that crashed the last attempt)."""

    submission: Submission
    cells: list[Cell]
    exercises: list[str]  # ids still to grade in this attempt
    attempt: int = 1
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Options:
    """What the instructor asked for (defaults in pipeline.py), fixed for the whole grading."""

    submissions: Path  # SUBMISSIONS/<student>/<notebook>.ipynb, or one student's folder (Gradescope)
    out: Path | None  # OUT, or None when only Gradescope's results.json is wanted
    jobs: int  # notebooks graded at once
    limits: Limits
    seed: int  # of the hidden cases
    notebooks: list[str]  # released notebooks to grade, in course order
    progress: bool | None  # a progress bar (None: on a terminal)


@dataclass
class Grading:
    """A grading in progress: its options and everything the steps have found so far."""

    options: Options
    discovery: Discovery = field(default_factory=Discovery)
    pending: list[Job] = field(default_factory=list)
    cases: dict[str, list[Case]] = field(default_factory=dict)  # exercise id -> public + hidden cases
    expected: dict[str, list[tuple[torch.Tensor, ...]]] = field(default_factory=dict)
    results: dict[tuple[str, str], NotebookResult] = field(default_factory=dict)
    summary: Summary = field(default_factory=Summary)
    work_dir: Path | None = None  # the grader's private folder: cases, one folder per job
    sandbox: Sandbox | None = None
    guard: Guard | None = None
    slots: int = 1  # notebooks at once: options.jobs, or 1 while files are guarded
    started: float = field(default_factory=time.monotonic)
