"""`attnkit grade SUBMISSIONS --out OUT`: the grading pipeline, as an ordered list of small steps.

Each step takes the `Run` (options and everything found so far) and adds to it. The defaults live
here, in `grade()`'s signature; the CLI passes on only what the instructor typed.

    check_folders       SUBMISSIONS exists, OUT is writable (else GradingError: exit status 2)
    find_submissions    SUBMISSIONS/<student>/<notebook>.ipynb; strays become rows (discover.py)
    start_sandbox       start the pre-warming zygote now, so it imports while the next steps work
    read_notebooks      parse each notebook; a bad one becomes "invalid" rows (notebook.py)
    draw_cases          public + hidden cases from --seed, and the reference's outputs on them
    measure_sandbox     wait for the zygote; say which protections its probe worker measured
    guard_files         where student code could change the submissions, the output or the
                        course: keep copies, and grade one notebook at a time (guard.py)
    run_sandboxed       each notebook in a sandboxed worker (sandbox.py, worker.py); judge the
                        returned tensors here, in the grader (attnkit.checks.core.judge); after
                        each, restore what it changed outside its sandbox and mark it "tampered"
    write_reports       grades.csv, gradebook.csv, feedback/, gradescope/ (report.py)
"""

from __future__ import annotations

import collections
import difflib
import io
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from attnkit.checks import exercises_for
from attnkit.checks.core import ERROR, NOT_IMPLEMENTED, PASSED, Case, Exercise, ExerciseReport, Ran, judge
from attnkit.grading import contract
from attnkit.grading.contract import Outcome, Stage, Step
from attnkit.grading.diagnose import first_line, internal_error, why_it_ended
from attnkit.grading.discover import Discovery, Submission, discover, discover_one, released_notebooks
from attnkit.grading.guard import Guard
from attnkit.grading.notebook import Cell, InvalidNotebook, read_code_cells
from attnkit.grading.sandbox import JobEnd, Limits, Sandbox, SandboxError
from attnkit.grading.statuses import Status, Verdict

__all__ = ["grade", "grade_submission", "GradingError", "Run", "NotebookResult", "Summary", "GRADE_STEPS",
           "SUBMISSION_STEPS", "run_steps"]


# The defaults, in one place: `attnkit grade`, `attnkit gradescope-bundle` and Gradescope's runner use them.
TIMEOUT = 60.0  # wall-clock seconds per notebook, cells and checks (a course notebook needs well under 1 s)
SEED = 0  # seed of the hidden cases; pick your own per term and keep it private
MEMORY_MB = 2048  # memory per worker above what the pre-imported libraries already use
OUTPUT_KB = 1024  # captured stdout + stderr per notebook


class GradingError(RuntimeError):
    """Grading could not run at all (missing folder, nothing to grade, unwritable output)."""


@dataclass
class NotebookResult:
    """One student's notebook: a report per exercise, and notes about the notebook as a whole."""

    student: str
    notebook: str
    reports: list[ExerciseReport]
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
class _Job:
    submission: Submission
    cells: list[Cell]
    exercises: list[str]  # ids still to grade in this attempt
    attempt: int = 1
    notes: list[str] = field(default_factory=list)


@dataclass
class Run:
    """Options and everything the steps have found so far."""

    submissions: Path
    out: Path | None
    jobs: int
    limits: Limits
    seed: int
    notebooks: list[str]
    progress: bool | None
    discovery: Discovery = field(default_factory=Discovery)
    pending: list[_Job] = field(default_factory=list)
    cases: dict[str, list[Case]] = field(default_factory=dict)  # exercise id -> public + hidden cases
    expected: dict[str, list[tuple[torch.Tensor, ...]]] = field(default_factory=dict)
    results: dict[tuple[str, str], NotebookResult] = field(default_factory=dict)
    summary: Summary = field(default_factory=Summary)
    run_dir: Path | None = None
    sandbox: Sandbox | None = None
    guard: Guard | None = None
    started: float = field(default_factory=time.monotonic)


def grade(submissions: str | Path, out: str | Path, *, jobs: int | None = None, timeout: float = TIMEOUT,
          seed: int = SEED, memory_mb: int = MEMORY_MB, output_kb: int = OUTPUT_KB,
          notebooks: list[str] | None = None, progress: bool | None = None) -> Summary:
    """Grade SUBMISSIONS/<student>/<notebook>.ipynb into OUT; return the summary.

    `jobs` notebooks run at once (default: one per CPU core); each gets `timeout` wall-clock seconds
    for its cells and checks, `memory_mb` of memory above the pre-warmed worker's and `output_kb` of
    captured output. Hidden cases are drawn from `seed`: the same seed gives the same grades.
    `notebooks` restricts grading to some released notebooks. `progress` shows a bar (default: on
    a terminal). Raises GradingError when grading cannot run; never for what students submitted.
    """
    run = _make_run(submissions, out, jobs, timeout, seed, memory_mb, output_kb, notebooks, progress)
    run_steps(run, GRADE_STEPS)
    return run.summary


def grade_submission(folder: str | Path, *, student: str = "submission", jobs: int | None = None,
                     timeout: float = TIMEOUT, seed: int = SEED, memory_mb: int = MEMORY_MB,
                     output_kb: int = OUTPUT_KB, notebooks: list[str] | None = None) -> dict:
    """Grade one student's folder (Gradescope's /autograder/submission); return results.json's content.

    Same steps, sandbox and judge as `grade()`; a submission without the notebooks is graded zero
    ("not_submitted", naming the file expected), never an error.
    """
    from attnkit.grading.report import gradescope_results

    run = _make_run(folder, None, jobs, timeout, seed, memory_mb, output_kb, notebooks, False)
    run.discovery.students = [student]
    run_steps(run, SUBMISSION_STEPS)
    results = [run.results[student, n] for n in run.notebooks]
    return gradescope_results(results, run.discovery.strays, time.monotonic() - run.started)


def _make_run(submissions, out, jobs, timeout, seed, memory_mb, output_kb, notebooks, progress) -> Run:
    cores = len(os.sched_getaffinity(0))
    jobs = max(1, jobs or cores)
    # One torch thread per worker: tiny ops on more threads in a forked process are many times slower.
    limits = Limits(timeout=float(timeout), memory_mb=int(memory_mb), output_kb=int(output_kb), threads=1)
    released = released_notebooks()
    if notebooks:
        unknown = sorted(set(notebooks) - set(released))
        if unknown:
            raise GradingError(f"not a released notebook: {', '.join(unknown)} (released: {', '.join(released)})")
        released = [n for n in released if n in notebooks]
    return Run(Path(submissions), Path(out) if out is not None else None, jobs, limits, int(seed), released,
               progress)


def run_steps(run: Run, steps: list[Callable[[Run], None]]) -> None:
    """Run the steps in order; the private working folder is removed whatever happens."""
    run.run_dir = Path(tempfile.mkdtemp(prefix="attnkit-grade-"))
    try:
        for step in steps:
            step(run)
    except SandboxError as err:
        raise GradingError(str(err)) from None
    finally:
        if run.sandbox is not None:
            run.sandbox.close()
        if not os.environ.get("ATTNKIT_KEEP_RUN_DIR"):
            shutil.rmtree(run.run_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# The steps
# ---------------------------------------------------------------------------------------------------


def check_folders(run: Run) -> None:
    """SUBMISSIONS must be a folder; OUT must be creatable and writable, and not inside SUBMISSIONS."""
    if not run.submissions.is_dir():
        what = "is not a folder" if run.submissions.exists() else "does not exist"
        raise GradingError(f"{run.submissions} {what}: expected SUBMISSIONS/<student>/<notebook>.ipynb")
    if run.out is None:
        return
    sub, out = run.submissions.resolve(), run.out.resolve()
    if out == sub or sub in out.parents:
        raise GradingError(f"the output folder {run.out} must not be inside {run.submissions}")
    try:
        for folder in (out, out / "feedback", out / "gradescope"):
            folder.mkdir(parents=True, exist_ok=True)
        probe = out / ".attnkit-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise GradingError(f"cannot write the output folder {run.out}: {err.strerror or err}") from None


def find_one_submission(run: Run) -> None:
    """The single student's notebooks (no student sub-folders)."""
    if not run.submissions.is_dir():
        raise GradingError(f"{run.submissions} is not a folder")
    student = run.discovery.students[0]
    run.discovery = discover_one(run.submissions, student, run.notebooks)


def find_submissions(run: Run) -> None:
    """Who submitted what; files that are not graded become rows with the reason."""
    run.discovery = discover(run.submissions, run.notebooks)
    _require_something(run)


def _require_something(run: Run) -> None:
    found = run.discovery
    run.summary.students = len(found.students)
    run.summary.warnings += found.warnings
    if not found.students:
        hint = " (notebooks must be in one sub-folder per student)" if found.warnings else ""
        raise GradingError(f"nothing to grade: no student folders in {run.submissions}{hint}")
    if not found.submissions:
        raise GradingError(f"nothing to grade: no notebook named like the released ones "
                           f"({', '.join(run.notebooks)}) in any student folder of {run.submissions}")


def start_sandbox(run: Run) -> None:
    """Start the zygote now: it imports torch & co. while the next steps read and draw."""
    hide = [run.submissions, run.run_dir] + ([run.out] if run.out is not None else [])
    samples = {"course": Path(__file__).resolve().parents[1] / "__init__.py"}
    if run.discovery.submissions:
        samples["submission"] = run.discovery.submissions[0].path
    if run.out is not None:
        samples["output"] = run.out
    run.sandbox = Sandbox(run.limits, run.run_dir, hide=hide, samples=samples, jobs=run.jobs)
    run.sandbox.spawn()


def read_notebooks(run: Run) -> None:
    """Parse every found notebook (read only); unreadable ones are graded "invalid" right away."""
    for sub in run.discovery.submissions:
        notes = [sub.note] if sub.note else []
        exercises = exercises_for(sub.notebook)
        try:
            cells, note = read_code_cells(sub.path)
        except (InvalidNotebook, OSError) as err:
            reason = err if isinstance(err, InvalidNotebook) else f"the file could not be read ({err.strerror})."
            rows = [_override(ex, Status.INVALID, f"{sub.path.name}: {reason}") for ex in exercises]
            run.results[sub.student, sub.notebook] = NotebookResult(sub.student, sub.notebook, rows, notes)
            continue
        notes += [note] if note else []
        run.pending.append(_Job(sub, cells, [ex.id for ex in exercises], notes=notes))


def draw_cases(run: Run) -> None:
    """Public and hidden cases of the exercises to grade, and the reference's outputs on them."""
    wanted = {ex_id for job in run.pending for ex_id in job.exercises}
    for notebook in run.notebooks:
        by_id = {}
        for ex in exercises_for(notebook):
            if ex.id not in wanted:
                continue
            cases = ex.cases(run.seed, hidden=True)
            try:
                expected = [_reference_outputs(ex, case) for case in cases]
            except Exception as err:
                raise GradingError(f"the reference solution of exercise {ex.id} fails on its own cases "
                                   f"({type(err).__name__}: {err}); fix attnkit/checks before grading") from None
            run.cases[ex.id], run.expected[ex.id] = cases, expected
            by_id[ex.id] = [case.inputs for case in cases]
        if by_id:
            path = run.run_dir / _cases_file(notebook)
            torch.save(by_id, path)
            try:  # the worker loads them the same way: tensors and plain values only
                torch.load(path, weights_only=True)
            except Exception as err:
                raise GradingError(f"the cases of {notebook} cannot be shipped to the sandbox safely "
                                   f"({type(err).__name__}: {str(err)[:200]}); case inputs must be tensors and "
                                   "plain values (fix attnkit/checks)") from None


def _reference_outputs(ex: Exercise, case: Case) -> tuple[torch.Tensor, ...]:
    from attnkit.checks.core import expected_outputs

    return expected_outputs(ex, case)


def _cases_file(notebook: str) -> str:
    return f"cases-{Path(notebook).stem}.pt"


def measure_sandbox(run: Run) -> None:
    """Wait for the zygote; before anything runs, tell the instructor what is and is not protected."""
    if not run.pending:
        return
    from attnkit.grading.report import sandbox_lines

    run.summary.measures = run.sandbox.ready()
    if run.progress is not False:
        print("\n".join(sandbox_lines(run.summary.measures)), file=sys.stderr, flush=True)


def guard_files(run: Run) -> None:
    """Where the probe worker could write a submission, the output or the course, keep copies of them
    (and of the cases shipped to workers) to restore after each notebook, and run one at a time so
    that the notebook that changed them is known."""
    inside = run.summary.measures.get("inside", {})
    exposed = [key for key in ("submission_read_only", "output_read_only", "course_read_only")
               if key in inside and not inside[key]]
    if not run.pending or (not exposed and "error" not in inside):
        return
    import attnkit.grading.report  # noqa: F401  (imported now: nothing of ours is compiled while guarded)

    folders = {"submission_read_only": run.submissions, "output_read_only": run.out,
               "course_read_only": Path(__file__).resolve().parents[1]}
    roots = [folder for key, folder in folders.items() if folder is not None and not inside.get(key, False)]
    run.guard = Guard(roots + sorted(run.run_dir.glob(_cases_file("*"))))
    if run.jobs > 1:
        run.summary.warnings.append(f"notebooks were graded one at a time, not {run.jobs} at once, so that one "
                                    "that changes files outside its sandbox can be named")
        run.jobs = 1
    if run.guard.too_big:
        run.summary.warnings.append(f"{len(run.guard.too_big)} files too large to keep a copy of (or "
                                    f"unreadable) could not be restored if changed: {run.guard.too_big[0]}, ...")


def run_sandboxed(run: Run) -> None:
    """Run every pending notebook in the sandbox, `jobs` at a time, and judge what comes back."""
    if not run.pending:
        return
    from tqdm import tqdm

    queue = collections.deque(run.pending)
    bar = tqdm(total=len(queue), unit="nb", desc="grading", disable=(None if run.progress is None
                                                                    else not run.progress), file=sys.stderr)
    sandbox = run.sandbox
    free, active = list(range(run.jobs))[::-1], {}
    job_ids = iter(range(1, 2**31))

    def start_next() -> None:
        job_id, job, slot = next(job_ids), queue.popleft(), free.pop()
        active[job_id] = (job, slot, _write_job(run, job_id, job))
        sandbox.run(job_id, active[job_id][2], slot)

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while queue or active:
            while queue and free:
                start_next()
            end = sandbox.wait()
            changed = run.guard.check() if run.guard is not None else []  # before another notebook starts
            job, slot, job_dir = active.pop(end.job)
            free.append(slot)
            if queue:  # keep the slot busy while this one is judged
                start_next()
            retry = _collect(run, job, job_dir, end)
            if changed:
                _mark_tampered(run, job, changed)
                retry = None
            if not os.environ.get("ATTNKIT_KEEP_RUN_DIR"):
                shutil.rmtree(job_dir, ignore_errors=True)
            if retry is not None:
                run.summary.retries += 1
                queue.appendleft(retry)
            else:
                bar.update(1)
    finally:
        signal.signal(signal.SIGTERM, previous)
        bar.close()
    if run.guard is not None and run.guard.unrestored:
        run.summary.warnings.append(f"could not restore {len(run.guard.unrestored)} changed files: "
                                    + "; ".join(run.guard.unrestored[:5]))


def _mark_tampered(run: Run, job: _Job, changed: list[str]) -> None:
    """No points for a notebook that changed files outside its sandbox; name what it changed."""
    sub = job.submission
    changed = sorted(changed, key=lambda p: (os.path.isdir(p), p))  # files first: they are what was lost
    shown = ", ".join(_shorten(run, p) for p in changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5
                                                                else "")
    message = (f"while this notebook ran, {len(changed)} files outside its sandbox changed ({shown}); the grader "
               "restored them. Code that writes, deletes or moves other files gets no points.")
    run.results[sub.student, sub.notebook].reports = [_override(ex, Status.TAMPERED, message)
                                                      for ex in exercises_for(sub.notebook)]
    run.summary.tampered.append(f"{sub.student}/{sub.notebook}")


def _shorten(run: Run, path: str) -> str:
    """A changed path as the instructor knows it: relative to SUBMISSIONS or OUT where it is inside."""
    for root, label in ((run.submissions, "SUBMISSIONS"), (run.out, "OUT")):
        if root is not None and Path(path).is_relative_to(root.resolve()):
            return str(Path(label) / Path(path).relative_to(root.resolve()))
    return path


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt()


def _write_job(run: Run, job_id: int, job: _Job) -> Path:
    job_dir = run.run_dir / "jobs" / str(job_id)
    job_dir.mkdir(parents=True, mode=0o700)
    spec = {"notebook": job.submission.notebook, "cells": [[c.index, c.source] for c in job.cells],
            "exercises": job.exercises, "seed": run.seed,
            "cases_file": str(run.run_dir / _cases_file(job.submission.notebook))}
    with open(job_dir / contract.JOB, "w", encoding="utf-8") as f:
        json.dump(spec, f)
    return job_dir


# ---------------------------------------------------------------------------------------------------
# Reading a worker's results (files written by student-controlled code: read defensively) and judging
# ---------------------------------------------------------------------------------------------------

_MAX_RESULT_BYTES = 64 * 2**20


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


def _tail(path: Path, size: int = 4096) -> str:
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


def _load_arrays(path: Path) -> dict[str, torch.Tensor]:
    """np.savez output back as tensors: no pickles, no archive bombs, only numeric dtypes."""
    data = _read_untrusted(path, _MAX_RESULT_BYTES)
    if data is None:
        return {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if sum(info.file_size for info in archive.infolist()) > _MAX_RESULT_BYTES:
                return {}
            for info in archive.infolist():  # a header claiming a huge shape must not make numpy allocate it
                with archive.open(info) as member:
                    readers = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}
                    reader = readers.get(np.lib.format.read_magic(member))
                    if reader is None:
                        return {}
                    shape, _, dtype = reader(member)
                    if dtype.hasobject or int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > info.file_size:
                        return {}
        arrays = {}
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            for key in npz.files:
                arr = npz[key]
                if arr.dtype.kind in "biufc":
                    arrays[key] = torch.from_numpy(np.array(arr, copy=True))
        return arrays
    except (ValueError, OSError, TypeError, SyntaxError, zipfile.BadZipFile, EOFError):
        return {}


def _collect(run: Run, job: _Job, job_dir: Path, end: JobEnd) -> _Job | None:
    """Judge what the worker returned; on a crash mid-exercise, return a retry for the others."""
    sub = job.submission
    result = run.results.setdefault((sub.student, sub.notebook), NotebookResult(sub.student, sub.notebook, []))
    result.seconds += end.elapsed
    run.summary.worker_seconds.setdefault(sub.notebook, []).append(end.elapsed)
    run.summary.leftovers += end.leftovers
    run.summary.notebooks += job.attempt == 1
    out = job_dir / contract.OUT
    cells = _read_json(out / contract.CELLS)
    if job.attempt == 1:
        result.notes += job.notes + _cell_notes(run, cells, job)
    exercises = {ex.id: ex for ex in exercises_for(sub.notebook)}
    done: dict[str, ExerciseReport] = {}
    for index, ex_id in enumerate(job.exercises):
        data = _read_json(out / contract.exercise_json(index))
        if data is not None:
            done[ex_id] = _report(run, exercises[ex_id], data, out / contract.exercise_npz(index), cells)
    unfinished = [ex_id for ex_id in job.exercises if ex_id not in done]
    retry = None
    if unfinished:
        stage = Stage.last(_tail(out / contract.PROGRESS, 1024))
        culprit = stage.detail if stage.step is Step.EXERCISE else None
        output = _tail(out / contract.OUTPUT)
        why = why_it_ended(end, stage, job.cells, output, run.limits)
        if why[0] is Status.CRASHED and internal_error(end, output):
            run.summary.warnings.append(f"internal error grading {job.submission.path}:\n{output[-1500:]}")
        if culprit in unfinished:
            done[culprit] = _override(exercises[culprit], why[0], why[1])
            rest = unfinished[unfinished.index(culprit) + 1:]
            if rest:  # grade the others in a fresh worker, without the exercise that killed this one
                retry = _Job(sub, job.cells, rest, attempt=job.attempt + 1)
            for ex_id in unfinished[:unfinished.index(culprit)]:
                done[ex_id] = _override(exercises[ex_id], Status.CRASHED, "the grader lost this exercise's results.")
        else:
            for ex_id in unfinished:
                done[ex_id] = _override(exercises[ex_id], why[0], why[1])
    result.reports += done.values()
    order = {ex_id: i for i, ex_id in enumerate(exercises)}
    result.reports.sort(key=lambda r: order[r.exercise.id])
    return retry


def _override(exercise: Exercise, status: Status, message: str) -> Verdict:
    return Verdict(exercise, status, message)


def _case_label(case: Case) -> str:
    return "a hidden check" if case.hidden else f'check "{case.name}"'


def _report(run: Run, ex: Exercise, data: dict, npz: Path, cells: dict | None) -> ExerciseReport:
    """Judge one exercise's results (here, in the grader) or explain why there are none."""
    cases, expected = run.cases[ex.id], run.expected[ex.id]
    outcome = next((o for o in Outcome if o.value == data.get("outcome")), None)
    results = data.get("results") if isinstance(data.get("results"), list) else []
    if outcome == Outcome.MISSING:
        return _override(ex, Status.MISSING, _missing_message(ex, cells))
    if outcome in (Outcome.TIMEOUT, Outcome.MEMORY, Outcome.OUTPUT_LIMIT):
        case = cases[min(len(results), len(cases) - 1)]
        messages = {
            Outcome.TIMEOUT: f"{_case_label(case)} did not finish within this exercise's share of the notebook's "
                       f"time limit ({run.limits.timeout:g} s in all): an infinite loop, or a very slow approach?",
            Outcome.MEMORY: f"{_case_label(case)} ran out of memory (the grader allows {run.limits.memory_mb} MiB); "
                      "are you building a much larger tensor than needed?",
            Outcome.OUTPUT_LIMIT: f"{_case_label(case)} printed more than {run.limits.output_kb} KiB; remove the "
                            "print() calls from your function.",
        }
        return _override(ex, Status.of(outcome), messages[outcome])
    if outcome != Outcome.RAN or len(results) != len(cases):
        return _override(ex, Status.CRASHED, "the worker returned incomplete results for this exercise.")
    arrays = _load_arrays(npz) if npz.exists() else {}
    report = ExerciseReport(ex)
    for case, want, entry in zip(cases, expected, results, strict=True):
        report.results.append(judge(ex, case, want, _ran(entry, arrays)))
    return report


def _ran(entry: object, arrays: dict[str, torch.Tensor]) -> Ran:
    """Rebuild core.Ran from the worker's description: only known statuses, only real tensors."""
    if not isinstance(entry, dict):
        return Ran(ERROR, message="The grader could not read this result.")
    status = entry.get("status") if entry.get("status") in (PASSED, ERROR, NOT_IMPLEMENTED) else ERROR
    message = str(entry.get("message", ""))[:4000]
    outputs = []
    for out in entry.get("outputs", []) if status == PASSED else []:
        tensor = arrays.get(out.get("key")) if isinstance(out, dict) else None
        if tensor is None:
            return Ran(ERROR, message="The grader could not read what your function returned.")
        dtype = getattr(torch, str(out.get("dtype", "")).replace("torch.", ""), None)
        if isinstance(dtype, torch.dtype) and dtype != tensor.dtype:
            tensor = tensor.to(dtype)  # e.g. bfloat16, shipped as float64
        outputs.append(tensor)
    return Ran(status, tuple(outputs), message)


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


def _cell_notes(run: Run, cells: dict | None, job: _Job) -> list[str]:
    """Readable notes on cells that failed or hit a limit (for the feedback file)."""
    if cells is None:
        return []
    notes = []
    for problem in (cells.get("problems") or [])[:10]:
        if not isinstance(problem, dict):
            continue
        kind = str(problem.get("kind", "error"))
        run.summary.cell_problems[kind] += 1
        index = problem.get("cell")
        first = first_line(job.cells, index) if isinstance(index, int) else ""
        notes.append(f"cell {index}{first}: {str(problem.get('error', ''))[:400]}")
    notes += [f"{note}." for note in (cells.get("notes") or [])[:5] if isinstance(note, str)]
    return notes


def write_reports(run: Run) -> None:
    """grades.csv, gradebook.csv, feedback/<student>.md and gradescope/<student>.json."""
    from attnkit.grading.report import write_all

    fill_not_submitted(run)
    write_all(run)


def fill_not_submitted(run: Run) -> None:
    """A "not_submitted" row for each exercise of each notebook a student did not hand in."""
    for student in run.discovery.students:
        for notebook in run.notebooks:
            if (student, notebook) not in run.results:
                run.results[student, notebook] = NotebookResult(student, notebook, [
                    _override(ex, Status.NOT_SUBMITTED, f"no {notebook} in your submission.")
                    for ex in exercises_for(notebook)])


def summarise(run: Run) -> None:
    """Counts for the summary, and a warning for course files the sandbox user could change."""
    from attnkit.grading.report import rows

    run.summary.rows = collections.Counter(row.status for row in rows(run))
    run.summary.seconds = time.monotonic() - run.started
    run.summary.out = run.out
    measures = run.summary.measures
    if measures.get("uids") and not measures.get("namespaces"):
        run.summary.warnings += _writable_by_others([Path(__file__).resolve().parents[1], run.submissions]
                                                    + ([run.out] if run.out else []))


def _writable_by_others(roots: list[Path]) -> list[str]:
    found = []
    for root in roots:
        for dirpath, _, filenames in os.walk(root):
            for name in [dirpath, *(os.path.join(dirpath, f) for f in filenames)]:
                try:
                    if os.lstat(name).st_mode & stat.S_IWOTH and not os.path.islink(name):
                        found.append(name)
                except OSError:
                    continue
            if len(found) > 5:
                break
    if not found:
        return []
    return [f"world-writable, so student code could change them: {', '.join(found[:5])} "
            "(chmod o-w; or run as root where mount namespaces are allowed)"]


GRADE_STEPS: list[Callable[[Run], None]] = [
    check_folders,
    find_submissions,
    start_sandbox,
    read_notebooks,
    draw_cases,
    measure_sandbox,
    guard_files,
    run_sandboxed,
    write_reports,
    summarise,
]

# Gradescope: one student, results.json instead of the class reports (see autograder.py).
SUBMISSION_STEPS: list[Callable[[Run], None]] = [
    find_one_submission,
    start_sandbox,
    read_notebooks,
    draw_cases,
    measure_sandbox,
    guard_files,
    run_sandboxed,
    fill_not_submitted,
]
