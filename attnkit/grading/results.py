"""Reading what a worker wrote (files student code controlled: read defensively) and judging it.

The verdicts are computed here, in the grader's process, from plain arrays
(`attnkit.checks.core.judge`); an exercise without results gets a `Verdict` saying why
(diagnose.py), and a crash mid-exercise a retry of the others in a fresh worker.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import torch

from attnkit.checks import exercises_for
from attnkit.checks.core import ERROR, GENERIC_IDS, NOT_IMPLEMENTED, PASSED, Case, Exercise, ExerciseReport, Ran, judge
from attnkit.grading import contract
from attnkit.grading.contract import Outcome, Stage, Step
from attnkit.grading.diagnose import first_line, internal_error, why_it_ended
from attnkit.grading.sandbox import JobEnd
from attnkit.grading.state import Grading, Job, NotebookResult
from attnkit.grading.statuses import Status, Verdict

__all__ = ["collect", "verdict", "tail"]


_MAX_RESULT_BYTES = 64 * 2**20
_NUMPY_NAMES = set(contract.NUMPY_DTYPES.values())


def _read_untrusted(path: Path, limit: int) -> bytes | None:
    """A regular file's bytes, without following links or blocking on a FIFO; None if absent/too big."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit + 1)[:limit]
    finally:
        os.close(fd)


def _read_json(path: Path) -> dict | None:
    data = _read_untrusted(path, 16 * 2**20)
    if data is None:
        return None
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def tail(path: Path, size: int = 4096) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return ""
        os.lseek(fd, max(0, info.st_size - size), os.SEEK_SET)
        return os.read(fd, size).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _load_outputs(path: Path) -> bytes:
    """The raw bytes of an exercise's returned tensors (empty if absent, too large or not a file)."""
    return _read_untrusted(path, _MAX_RESULT_BYTES) or b""


def _tensor(out: object, data: bytes) -> torch.Tensor | None:
    """One output back as a tensor, from its description: a numeric dtype, a shape whose size matches
    its bytes, inside the block; None for anything else (no pickles, no allocation a header asks for)."""
    if not isinstance(out, dict) or out.get("numpy") not in _NUMPY_NAMES:
        return None
    shape, offset, nbytes = out.get("shape"), out.get("offset"), out.get("nbytes")
    if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)
            and isinstance(offset, int) and isinstance(nbytes, int) and 0 <= offset <= offset + nbytes <= len(data)):
        return None
    dtype = np.dtype(out["numpy"])
    if math.prod(shape) * dtype.itemsize != nbytes:
        return None
    array = np.frombuffer(data, dtype=dtype, count=nbytes // dtype.itemsize, offset=offset).reshape(shape)
    tensor = torch.from_numpy(array.copy())
    want = getattr(torch, str(out.get("dtype", "")).replace("torch.", ""), None)
    if isinstance(want, torch.dtype) and want != tensor.dtype:
        tensor = tensor.to(want)  # e.g. bfloat16, shipped as float64
    return tensor


def collect(grading: Grading, job: Job, job_dir: Path, end: JobEnd) -> Job | None:
    """Judge what the worker returned; on a crash mid-exercise, return a retry for the others."""
    sub = job.submission
    result = grading.results.setdefault((sub.student, sub.notebook), NotebookResult(sub.student, sub.notebook, []))
    result.seconds += end.elapsed
    grading.summary.worker_seconds.setdefault(sub.notebook, []).append(end.elapsed)
    grading.summary.leftovers += end.leftovers
    grading.summary.notebooks += job.attempt == 1
    out = job_dir / contract.OUT
    cells = _read_json(out / contract.CELLS)
    if job.attempt == 1:
        result.notes += job.notes + _cell_notes(grading, cells, job)
    exercises = {ex.id: ex for ex in exercises_for(sub.notebook)}
    done: dict[str, ExerciseReport] = {}
    for index, ex_id in enumerate(job.exercises):
        data = _read_json(out / contract.exercise_json(index))
        if data is not None:
            done[ex_id] = _report(grading, exercises[ex_id], data, out / contract.exercise_bin(index), cells)
    unfinished = [ex_id for ex_id in job.exercises if ex_id not in done]
    retry = None
    if unfinished:
        stage = Stage.last(tail(out / contract.PROGRESS, 1024))
        culprit = stage.detail if stage.step is Step.EXERCISE else None
        output = tail(out / contract.OUTPUT)
        why = why_it_ended(end, stage, job.cells, output, grading.options.limits)
        if why[0] is Status.CRASHED and internal_error(end, output):
            grading.summary.warnings.append(f"internal error grading {job.submission.path}:\n{output[-1500:]}")
        if culprit in unfinished:
            done[culprit] = verdict(exercises[culprit], why[0], why[1])
            rest = unfinished[unfinished.index(culprit) + 1:]
            if rest:  # grade the others in a fresh worker, without the exercise that killed this one
                retry = Job(sub, job.cells, rest, attempt=job.attempt + 1)
            for ex_id in unfinished[:unfinished.index(culprit)]:
                done[ex_id] = verdict(exercises[ex_id], Status.CRASHED, "the grader lost this exercise's results.")
        else:
            for ex_id in unfinished:
                done[ex_id] = verdict(exercises[ex_id], why[0], why[1])
    result.reports += done.values()
    order = {ex_id: i for i, ex_id in enumerate(exercises)}
    result.reports.sort(key=lambda r: order[r.exercise.id])
    return retry


def verdict(exercise: Exercise, status: Status, message: str) -> Verdict:
    return Verdict(exercise, status, message)


def _case_label(case: Case) -> str:
    return "a hidden check" if case.hidden else f'check "{case.name}"'


def _report(grading: Grading, ex: Exercise, data: dict, outputs: Path, cells: dict | None) -> ExerciseReport:
    """Judge one exercise's results (here, in the grader) or explain why there are none."""
    cases, expected = grading.cases[ex.id], grading.expected[ex.id]
    outcome = next((o for o in Outcome if o.value == data.get("outcome")), None)
    results = data.get("results") if isinstance(data.get("results"), list) else []
    if outcome == Outcome.MISSING:
        return verdict(ex, Status.MISSING, _missing_message(ex, cells))
    if outcome in (Outcome.TIMEOUT, Outcome.MEMORY, Outcome.OUTPUT_LIMIT):
        case = cases[min(len(results), len(cases) - 1)]
        limits = grading.options.limits
        messages = {
            Outcome.TIMEOUT: f"{_case_label(case)} did not finish within this exercise's share of the notebook's "
                             f"time limit ({limits.timeout:g} s in all): an infinite loop, or a very slow approach?",
            Outcome.MEMORY: f"{_case_label(case)} ran out of memory (the grader allows {limits.memory_mb} MiB); "
                            "are you building a much larger tensor than needed?",
            Outcome.OUTPUT_LIMIT: f"{_case_label(case)} printed more than {limits.output_kb} KiB; remove the "
                                  "print() calls from your function.",
        }
        return verdict(ex, Status.of(outcome), messages[outcome])
    if outcome != Outcome.RAN or len(results) != len(cases):
        return verdict(ex, Status.CRASHED, "the worker returned incomplete results for this exercise.")
    block = _load_outputs(outputs)
    report = ExerciseReport(ex)
    for case, want, entry in zip(cases, expected, results, strict=True):
        report.results.append(judge(ex, case, want, _ran(ex, entry, block)))
    return report


def _ran(ex: Exercise, entry: object, block: bytes) -> Ran:
    """Rebuild core.Ran from the worker's description: only known statuses, only real tensors."""
    if not isinstance(entry, dict):
        return Ran(ERROR, message="The grader could not read this result.")
    status = entry.get("status") if entry.get("status") in (PASSED, ERROR, NOT_IMPLEMENTED) else ERROR
    message = str(entry.get("message", ""))[:4000]
    named = entry.get("misconception")
    misconception = named if status == ERROR and isinstance(named, str) and (
        named in GENERIC_IDS or named in ex.misconception_ids()) else ""
    outputs = []
    for out in entry.get("outputs", []) if status == PASSED else []:
        tensor = _tensor(out, block)
        if tensor is None:
            return Ran(ERROR, message="The grader could not read what your function returned.")
        outputs.append(tensor)
    return Ran(status, tuple(outputs), message, misconception)


def _missing_message(ex: Exercise, cells: dict | None) -> str:
    message = (f"no function named `{ex.function}` was found. Define it with `def {ex.function}(...)` in the "
               "exercise cell and run that cell.")
    functions = [f for f in (cells or {}).get("functions", []) if isinstance(f, str)]
    others = {e.function for e in exercises_for(ex.notebook)}
    close = difflib.get_close_matches(ex.function, [f for f in functions if f not in others], n=1, cutoff=0.75)
    if close:
        message += (f" Your notebook defines `{close[0]}`: if that is your answer, name it `{ex.function}` "
                    f"(the grader looks for that name, or for the function you pass to check(\"{ex.id}\", ...)).")
    problems = (cells or {}).get("problems") or []
    if problems and isinstance(problems[0], dict):
        first = problems[0]
        message += f" Note: cell {first.get('cell')} failed — {str(first.get('error'))[:200]}"
    return message


def _cell_notes(grading: Grading, cells: dict | None, job: Job) -> list[str]:
    """Readable notes on cells that failed or hit a limit (for the feedback file)."""
    if cells is None:
        return []
    notes = []
    for problem in (cells.get("problems") or [])[:10]:
        if not isinstance(problem, dict):
            continue
        kind = str(problem.get("kind", "error"))
        grading.summary.cell_problems[kind] += 1
        index = problem.get("cell")
        first = first_line(job.cells, index) if isinstance(index, int) else ""
        notes.append(f"cell {index}{first}: {str(problem.get('error', ''))[:400]}")
    notes += [f"{note}." for note in (cells.get("notes") or [])[:5] if isinstance(note, str)]
    return notes
