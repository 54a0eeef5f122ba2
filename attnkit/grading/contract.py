"""The worker <-> grader contract: the files of a job folder and the words both sides use in them.

The grader writes `job.json` (and a cases file) into a job folder; the sandboxed worker writes into
`out/`: `progress.txt` (one line per stage, so a crash can be located), `cells.json`, `ex<N>.json` /
`ex<N>.bin` per exercise (the returned tensors' raw bytes, described in the JSON), its captured
`output.txt`, and `leftovers.txt`. Every name, outcome and stage
is defined here once and used on both sides, so the two cannot drift apart.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = ["JOB", "OUT", "HOME", "OUTPUT", "PROGRESS", "CELLS", "LEFTOVERS", "exercise_json", "exercise_bin",
           "NUMPY_DTYPES",
           "Outcome", "CellProblem", "Step", "Stage", "INTERNAL_ERROR", "EXIT_INTERNAL", "MEMORY_PATTERN"]

JOB = "job.json"  # written by the grader: cells, exercise ids, seed, cases file
OUT = "out"  # the worker's results folder, handed to it as an open descriptor
HOME = "home"  # the worker's working folder when it has no private /tmp
OUTPUT = "output.txt"  # the worker's stdout and stderr, capped
PROGRESS = "progress.txt"  # "<seconds> <stage>" lines
CELLS = "cells.json"  # cell problems, functions defined, notes
LEFTOVERS = "leftovers.txt"  # processes alive when a pid-namespace worker ended (a count; informative only)
INTERNAL_ERROR = "attnkit grader: internal error"  # first line the worker prints on its own failure
EXIT_INTERNAL = 70  # the worker's exit code on its own failure (a grader bug), not the student's
# An allocation that failed, in the output or an exception: Python's MemoryError, torch's and numpy's messages.
MEMORY_PATTERN = re.compile(r"MemoryError|can't allocate memory|Cannot allocate memory|not enough memory|"
                            r"bad_alloc|Unable to allocate", re.IGNORECASE)


def exercise_json(index: int) -> str:
    return f"ex{index}.json"


def exercise_bin(index: int) -> str:
    return f"ex{index}.bin"


# The dtypes an output travels in, as numpy names (anything else, e.g. bfloat16, is sent as float64 or
# complex128 and cast back from the dtype the JSON names): numbers only, never objects.
NUMPY_DTYPES = {"torch.bool": "bool", "torch.uint8": "uint8", "torch.int8": "int8", "torch.int16": "int16",
                "torch.int32": "int32", "torch.int64": "int64", "torch.float16": "float16",
                "torch.float32": "float32", "torch.float64": "float64", "torch.complex64": "complex64",
                "torch.complex128": "complex128"}


class Outcome(str, enum.Enum):
    """How the calls of one exercise ended, as the worker saw it (ex<N>.json's "outcome")."""

    RAN = "ran"  # every case was called; the results are in ex<N>.json and ex<N>.bin
    MISSING = "missing"  # no function to grade
    TIMEOUT = "timeout"
    MEMORY = "memory"
    OUTPUT_LIMIT = "output_limit"


class CellProblem(str, enum.Enum):
    """Why a notebook cell did not finish (cells.json's problems[].kind)."""

    ERROR = "error"
    TIMEOUT = "timeout"
    OUTPUT_LIMIT = "output_limit"
    EXIT = "exit"
    MEMORY = "memory"


class Step(enum.Enum):
    """What a worker is doing: the first word of a progress line."""

    START = "start"  # nothing written yet
    CELL = "cell"  # running a notebook cell (detail: its index)
    EXERCISE = "exercise"  # calling the student's function on an exercise's cases (detail: its id)
    DONE = "done"  # an exercise's results are written (detail: its id)
    FINISHED = "finished"
    FINISHED_LATE = "finished-late"  # a soft deadline fired in the worker's own code


@dataclass(frozen=True)
class Stage:
    """One progress line's meaning: `Stage(Step.CELL, "7")` is written as "cell 7"."""

    step: Step
    detail: str = ""

    def text(self) -> str:
        return f"{self.step.value} {self.detail}".strip()

    def line(self, seconds: float) -> bytes:
        """The progress line, with the seconds since the fork."""
        return f"{seconds:.3f} {self.text()}\n".encode()

    @classmethod
    def last(cls, progress: str) -> Stage:
        """The stage of the last complete progress line (START if none, or if it cannot be read)."""
        lines = progress.strip().splitlines()
        if not lines:
            return cls(Step.START)
        words = lines[-1].strip().split(" ", 2)[1:]  # drop the seconds
        try:
            step = Step(words[0]) if words else Step.START
        except ValueError:
            return cls(Step.START)
        return cls(step, words[1] if len(words) > 1 else "")

    @property
    def cell(self) -> int | None:
        return int(self.detail) if self.step is Step.CELL and self.detail.isdigit() else None

    @property
    def in_cells(self) -> bool:
        return self.step in (Step.CELL, Step.START)
