"""Why a worker ended before writing all its results, in words a student can act on.

The zygote says how the process ended (`JobEnd`), the last progress line says what it was doing
(`contract.Stage`), and the tail of its captured output may name a MemoryError or the grader's own
failure; from these, `why_it_ended` picks a row status and a message naming the cell or exercise.
"""

from __future__ import annotations

import signal

from attnkit.grading.contract import EXIT_INTERNAL, INTERNAL_ERROR, MEMORY_PATTERN, Stage, Step
from attnkit.grading.isolation import Limits
from attnkit.grading.notebook import Cell
from attnkit.grading.sandbox import Ending, JobEnd
from attnkit.grading.statuses import Status

__all__ = ["why_it_ended", "internal_error", "where", "first_line", "signal_name"]


def internal_error(end: JobEnd, output: str) -> bool:
    """Did the worker itself fail (a grader bug), rather than the student's code?"""
    return end.status is Ending.EXITED and end.code == EXIT_INTERNAL and INTERNAL_ERROR in output


def why_it_ended(end: JobEnd, stage: Stage, cells: list[Cell], output: str, limits: Limits) -> tuple[Status, str]:
    """(status, message) for a worker that ended at `stage` before writing some results."""
    place = where(stage, cells)
    after = (" Nothing after it could be graded." if stage.in_cells
             else " The other exercises were graded in a fresh process.")
    if internal_error(end, output):
        return Status.CRASHED, "the grader itself failed on this notebook; your instructor has the details."
    if end.status is Ending.TIMEOUT:
        verb = "were" if stage.step is Step.EXERCISE else "was"
        return Status.TIMEOUT, (f"{place} {verb} still running when the notebook's time limit ({limits.timeout:g} s) "
                                f"ran out.{after} An infinite loop, or work too slow for the grader?")
    if MEMORY_PATTERN.search(output) or (end.status is Ending.SIGNALED and end.signal == signal.SIGKILL):
        return Status.MEMORY, f"{place} ran out of memory (the grader allows {limits.memory_mb} MiB).{after}"
    if end.status is Ending.SIGNALED:
        return Status.CRASHED, f"the process crashed ({signal_name(end.signal)}) while running {place}.{after}"
    if end.code == 0 and stage.step is Step.FINISHED_LATE:
        return Status.TIMEOUT, "the checks ran out of the notebook's time before reaching this exercise."
    if end.code == 0 and stage.step is Step.FINISHED:
        return Status.CRASHED, "the results of this exercise went missing (was a grader file deleted?)."
    if stage.in_cells:
        return Status.CRASHED, (f"the process ended (exit code {end.code}) while running {place}: os._exit() or a "
                                f"crash ends the kernel, and the rest of the notebook never runs.{after}")
    return Status.CRASHED, (f"the process ended (exit code {end.code}) while running {place}: does your function "
                            f"call os._exit() or exit()? A function must return its result.{after}")


def where(stage: Stage, cells: list[Cell]) -> str:
    """"cell 7 (`import os`)", "the checks of exercise 1.2", ... for a message."""
    if stage.step is Step.CELL:
        index = stage.cell if stage.cell is not None else -1
        return f"cell {index}{first_line(cells, index)}"
    if stage.step is Step.EXERCISE:
        return f"the checks of exercise {stage.detail}"
    if stage.step is Step.START:
        return "the notebook's first cell"
    return "the end of the notebook"


def first_line(cells: list[Cell], index: int) -> str:
    """" (`<the cell's first line>`)" for the cell of this index, or ""."""
    for cell in cells:
        if cell.index == index:
            first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
            return f" (`{first[:60]}{'...' if len(first) > 60 else ''}`)" if first else ""
    return ""


def signal_name(number: int | None) -> str:
    names = {signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "aborted", signal.SIGBUS: "bus error",
             signal.SIGFPE: "floating-point exception", signal.SIGILL: "illegal instruction",
             signal.SIGXCPU: "CPU time limit", signal.SIGTERM: "terminated"}
    try:
        return names.get(number, signal.Signals(number).name)
    except (ValueError, TypeError):
        return f"signal {number}"
