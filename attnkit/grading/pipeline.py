"""`attnkit grade SUBMISSIONS --out OUT`: the grading pipeline, as an ordered list of small steps.

Each step takes the `Grading` (state.py: the options and everything found so far) and adds to it. The defaults live
here, in `grade()`'s signature; the CLI passes on only what the instructor typed.

    check_folders       SUBMISSIONS exists, OUT is writable (else GradingError: exit status 2)
    find_submissions    SUBMISSIONS/<student>/<notebook>.ipynb; strays become rows (discover.py)
    start_sandbox       start the pre-warming zygote now, so it imports while the next steps work
    read_notebooks      parse each notebook; a bad one becomes "invalid" rows (notebook.py)
    draw_cases          public + hidden cases from --seed, and the reference's outputs on them
    measure_sandbox     wait for the zygote; say which protections its probe worker measured
    ship_cases          the zygote loads the cases once, so that every worker has them in memory
    guard_files         where student code could change the submissions, the output or the
                        course: keep copies, and grade one notebook at a time (guard.py)
    run_sandboxed       each notebook in a sandboxed worker (sandbox.py, worker.py); judge the
                        returned tensors here, in the grader (attnkit.checks.core.judge); after
                        each, restore what it changed outside its sandbox and mark it "tampered"
    write_reports       grades.csv, gradebook.csv, feedback/, gradescope/ (report.py) and the class
                        report of misconceptions, class-report.html/.md (class_report.py)
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from attnkit.checks import exercises_for
from attnkit.checks.core import Case, Exercise
from attnkit.grading import contract
from attnkit.grading.discover import discover, discover_one, released_notebooks
from attnkit.grading.guard import Guard
from attnkit.grading.isolation import Limits
from attnkit.grading.notebook import InvalidNotebook, read_code_cells
from attnkit.grading.results import collect, verdict
from attnkit.grading.sandbox import Sandbox, SandboxError
from attnkit.grading.state import Grading, GradingError, Job, NotebookResult, Options, Summary
from attnkit.grading.statuses import Status

__all__ = ["grade", "grade_submission", "GradingError", "GRADE_STEPS", "SUBMISSION_STEPS", "run_steps",
           "TIMEOUT", "SEED", "MEMORY_MB", "OUTPUT_KB"]


# The defaults, in one place: `attnkit grade`, `attnkit gradescope-bundle` and Gradescope's runner use them.
TIMEOUT = 60.0  # wall-clock seconds per notebook, cells and checks (a course notebook needs well under 1 s)
SEED = 0  # seed of the hidden cases; pick your own per term and keep it private
MEMORY_MB = 2048  # memory per worker above what the pre-imported libraries already use
OUTPUT_KB = 1024  # captured stdout + stderr per notebook
WARM_UP = "attnkit.grading.warmup:warm_up"  # what the sandbox's zygote imports and runs once, before any fork


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
    grading = Grading(_options(submissions, out, jobs, timeout, seed, memory_mb, output_kb, notebooks, progress))
    run_steps(grading, GRADE_STEPS)
    return grading.summary


def grade_submission(folder: str | Path, *, student: str = "submission", jobs: int | None = None,
                     timeout: float = TIMEOUT, seed: int = SEED, memory_mb: int = MEMORY_MB,
                     output_kb: int = OUTPUT_KB, notebooks: list[str] | None = None) -> dict:
    """Grade one student's folder (Gradescope's /autograder/submission); return results.json's content.

    Same steps, sandbox and judge as `grade()`; a submission without the notebooks is graded zero
    ("not_submitted", naming the file expected), never an error.
    """
    from attnkit.grading.report import gradescope_results

    grading = Grading(_options(folder, None, jobs, timeout, seed, memory_mb, output_kb, notebooks, False))
    grading.discovery.students = [student]
    run_steps(grading, SUBMISSION_STEPS)
    results = [grading.results[student, n] for n in grading.options.notebooks]
    return gradescope_results(results, grading.discovery.strays, time.monotonic() - grading.started)


def _options(submissions, out, jobs, timeout, seed, memory_mb, output_kb, notebooks, progress) -> Options:
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
    return Options(Path(submissions), Path(out) if out is not None else None, jobs, limits, int(seed), released,
                   progress)


def run_steps(grading: Grading, steps: list[Callable[[Grading], None]]) -> None:
    """Run the steps in order; the private working folder is removed whatever happens."""
    grading.work_dir = Path(tempfile.mkdtemp(prefix="attnkit-grade-"))
    grading.slots = grading.options.jobs
    try:
        for step in steps:
            step(grading)
    except SandboxError as err:
        raise GradingError(str(err)) from None
    finally:
        if grading.sandbox is not None:
            grading.sandbox.close()
        if not os.environ.get("ATTNKIT_KEEP_RUN_DIR"):
            shutil.rmtree(grading.work_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# The steps
# ---------------------------------------------------------------------------------------------------


def check_folders(grading: Grading) -> None:
    """SUBMISSIONS must be a folder; OUT must be creatable and writable, and not inside SUBMISSIONS."""
    if not grading.options.submissions.is_dir():
        what = "is not a folder" if grading.options.submissions.exists() else "does not exist"
        raise GradingError(f"{grading.options.submissions} {what}: expected SUBMISSIONS/<student>/<notebook>.ipynb")
    if grading.options.out is None:
        return
    sub, out = grading.options.submissions.resolve(), grading.options.out.resolve()
    if out == sub or sub in out.parents:
        raise GradingError(f"the output folder {grading.options.out} must not be inside {grading.options.submissions}")
    try:
        for folder in (out, out / "feedback", out / "gradescope"):
            folder.mkdir(parents=True, exist_ok=True)
        probe = out / ".attnkit-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise GradingError(f"cannot write the output folder {grading.options.out}: {err.strerror or err}") from None


def find_one_submission(grading: Grading) -> None:
    """The single student's notebooks (no student sub-folders)."""
    if not grading.options.submissions.is_dir():
        raise GradingError(f"{grading.options.submissions} is not a folder")
    student = grading.discovery.students[0]
    grading.discovery = discover_one(grading.options.submissions, student, grading.options.notebooks)


def find_submissions(grading: Grading) -> None:
    """Who submitted what; files that are not graded become rows with the reason."""
    grading.discovery = discover(grading.options.submissions, grading.options.notebooks)
    _require_something(grading)


def _require_something(grading: Grading) -> None:
    found = grading.discovery
    grading.summary.students = len(found.students)
    grading.summary.warnings += found.warnings
    if not found.students:
        hint = " (notebooks must be in one sub-folder per student)" if found.warnings else ""
        raise GradingError(f"nothing to grade: no student folders in {grading.options.submissions}{hint}")
    if not found.submissions:
        options = grading.options
        raise GradingError(f"nothing to grade: no notebook named like the released ones "
                           f"({', '.join(options.notebooks)}) in any student folder of {options.submissions}")


def start_sandbox(grading: Grading) -> None:
    """Start the zygote now: it imports torch & co. while the next steps read and draw."""
    options = grading.options
    hide = [options.submissions, grading.work_dir] + ([options.out] if options.out is not None else [])
    samples = {"course": Path(__file__).resolve().parents[1] / "__init__.py"}
    if grading.discovery.submissions:
        samples["submission"] = grading.discovery.submissions[0].path
    if grading.options.out is not None:
        samples["output"] = grading.options.out
    grading.sandbox = Sandbox(options.limits, grading.work_dir, warm_up=WARM_UP, hide=hide, samples=samples,
                              jobs=options.jobs)
    grading.sandbox.spawn()


def read_notebooks(grading: Grading) -> None:
    """Parse every found notebook (read only); unreadable ones are graded "invalid" right away."""
    for sub in grading.discovery.submissions:
        notes = [sub.note] if sub.note else []
        exercises = exercises_for(sub.notebook)
        try:
            cells, note = read_code_cells(sub.path)
        except (InvalidNotebook, OSError) as err:
            reason = err if isinstance(err, InvalidNotebook) else f"the file could not be read ({err.strerror})."
            rows = [verdict(ex, Status.INVALID, f"{sub.path.name}: {reason}") for ex in exercises]
            grading.results[sub.student, sub.notebook] = NotebookResult(sub.student, sub.notebook, rows, notes)
            continue
        notes += [note] if note else []
        grading.pending.append(Job(sub, cells, [ex.id for ex in exercises], notes=notes))


def draw_cases(grading: Grading) -> None:
    """Public and hidden cases of the exercises to grade, and the reference's outputs on them."""
    wanted = {ex_id for job in grading.pending for ex_id in job.exercises}
    for notebook in grading.options.notebooks:
        by_id = {}
        for ex in exercises_for(notebook):
            if ex.id not in wanted:
                continue
            cases = ex.cases(grading.options.seed, hidden=True)
            try:
                expected = [_reference_outputs(ex, case) for case in cases]
            except Exception as err:
                raise GradingError(f"the reference solution of exercise {ex.id} fails on its own cases "
                                   f"({type(err).__name__}: {err}); fix attnkit/checks before grading") from None
            grading.cases[ex.id], grading.expected[ex.id] = cases, expected
            by_id[ex.id] = [case.inputs for case in cases]
        if by_id:
            path = grading.work_dir / _cases_file(notebook)
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


def measure_sandbox(grading: Grading) -> None:
    """Wait for the zygote; before anything runs, tell the instructor what is and is not protected."""
    if not grading.pending:
        return
    from attnkit.grading.report import sandbox_lines

    grading.summary.measures = grading.sandbox.ready()
    if grading.options.progress is not False:
        print("\n".join(sandbox_lines(grading.summary.measures)), file=sys.stderr, flush=True)


def ship_cases(grading: Grading) -> None:
    """Hand the drawn cases to the zygote, which loads each file once: every worker then has them."""
    if not grading.pending:
        return
    files = {notebook: grading.work_dir / _cases_file(notebook) for notebook in grading.options.notebooks}
    grading.sandbox.preload({notebook: path for notebook, path in files.items() if path.exists()})


def guard_files(grading: Grading) -> None:
    """Where the probe worker could write a submission, the output or the course, keep copies of them
    (and of the cases shipped to workers) to restore after each notebook, and run one at a time so
    that the notebook that changed them is known."""
    inside = grading.summary.measures.get("inside", {})
    exposed = [key for key in ("submission_read_only", "output_read_only", "course_read_only")
               if key in inside and not inside[key]]
    if not grading.pending or (not exposed and "error" not in inside):
        return
    import attnkit.grading.report  # noqa: F401  (imported now: nothing of ours is compiled while guarded)

    folders = {"submission_read_only": grading.options.submissions, "output_read_only": grading.options.out,
               "course_read_only": Path(__file__).resolve().parents[1]}
    roots = [folder for key, folder in folders.items() if folder is not None and not inside.get(key, False)]
    grading.guard = Guard(roots + sorted(grading.work_dir.glob(_cases_file("*"))))
    if grading.slots > 1:
        grading.summary.warnings.append(f"notebooks were graded one at a time, not {grading.slots} at once, so "
                                        "that one that changes files outside its sandbox can be named")
        grading.slots = 1
    if grading.guard.too_big:
        grading.summary.warnings.append(f"{len(grading.guard.too_big)} files too large to keep a copy of (or "
                                    f"unreadable) could not be restored if changed: {grading.guard.too_big[0]}, ...")


def run_sandboxed(grading: Grading) -> None:
    """Run every pending notebook in the sandbox, `jobs` at a time, and judge what comes back."""
    if not grading.pending:
        return
    from tqdm import tqdm

    queue = collections.deque(grading.pending)
    bar = tqdm(total=len(queue), unit="nb", desc="grading", disable=(None if grading.options.progress is None
                                                                    else not grading.options.progress), file=sys.stderr)
    sandbox = grading.sandbox
    free, active = list(range(grading.slots))[::-1], {}
    job_ids = iter(range(1, 2**31))

    def start_next() -> None:
        job_id, job, slot = next(job_ids), queue.popleft(), free.pop()
        active[job_id] = (job, slot, _write_job(grading, job_id, job))
        sandbox.submit(job_id, active[job_id][2], slot)

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while queue or active:
            while queue and free:
                start_next()
            end = sandbox.wait()
            changed = grading.guard.check() if grading.guard is not None else []  # before another notebook starts
            job, slot, job_dir = active.pop(end.job)
            free.append(slot)
            if queue:  # keep the slot busy while this one is judged
                start_next()
            retry = collect(grading, job, job_dir, end)
            if changed:
                _mark_tampered(grading, job, changed)
                retry = None
            if not os.environ.get("ATTNKIT_KEEP_RUN_DIR"):
                shutil.rmtree(job_dir, ignore_errors=True)
            if retry is not None:
                grading.summary.retries += 1
                queue.appendleft(retry)
            else:
                bar.update(1)
    finally:
        signal.signal(signal.SIGTERM, previous)
        bar.close()
    if grading.guard is not None and grading.guard.unrestored:
        grading.summary.warnings.append(f"could not restore {len(grading.guard.unrestored)} changed files: "
                                    + "; ".join(grading.guard.unrestored[:5]))


def _mark_tampered(grading: Grading, job: Job, changed: list[str]) -> None:
    """No points for a notebook that changed files outside its sandbox; name what it changed."""
    sub = job.submission
    changed = sorted(changed, key=lambda p: (os.path.isdir(p), p))  # files first: they are what was lost
    shown = ", ".join(_shorten(grading, p) for p in changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5
                                                                else "")
    message = (f"while this notebook ran, {len(changed)} files outside its sandbox changed ({shown}); the grader "
               "restored them. Code that writes, deletes or moves other files gets no points.")
    grading.results[sub.student, sub.notebook].reports = [verdict(ex, Status.TAMPERED, message)
                                                      for ex in exercises_for(sub.notebook)]
    grading.summary.tampered.append(f"{sub.student}/{sub.notebook}")


def _shorten(grading: Grading, path: str) -> str:
    """A changed path as the instructor knows it: relative to SUBMISSIONS or OUT where it is inside."""
    for root, label in ((grading.options.submissions, "SUBMISSIONS"), (grading.options.out, "OUT")):
        if root is not None and Path(path).is_relative_to(root.resolve()):
            return str(Path(label) / Path(path).relative_to(root.resolve()))
    return path


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt()


def _write_job(grading: Grading, job_id: int, job: Job) -> Path:
    job_dir = grading.work_dir / "jobs" / str(job_id)
    job_dir.mkdir(parents=True, mode=0o700)
    spec = {"notebook": job.submission.notebook, "cells": [[c.index, c.source] for c in job.cells],
            "exercises": job.exercises, "seed": grading.options.seed,
            "cases_file": str(grading.work_dir / _cases_file(job.submission.notebook))}
    with open(job_dir / contract.JOB, "w", encoding="utf-8") as f:
        json.dump(spec, f)
    return job_dir


def write_reports(grading: Grading) -> None:
    """grades.csv, gradebook.csv, feedback/<student>.md and gradescope/<student>.json."""
    from attnkit.grading.report import write_all

    fill_not_submitted(grading)
    write_all(grading)


def fill_not_submitted(grading: Grading) -> None:
    """A "not_submitted" row for each exercise of each notebook a student did not hand in."""
    for student in grading.discovery.students:
        for notebook in grading.options.notebooks:
            if (student, notebook) not in grading.results:
                grading.results[student, notebook] = NotebookResult(student, notebook, [
                    verdict(ex, Status.NOT_SUBMITTED, f"no {notebook} in your submission.")
                    for ex in exercises_for(notebook)])


def summarise(grading: Grading) -> None:
    """Counts for the summary, and a warning for course files the sandbox user could change."""
    from attnkit.grading.report import rows

    grading.summary.rows = collections.Counter(row.status for row in rows(grading))
    grading.summary.seconds = time.monotonic() - grading.started
    grading.summary.out = grading.options.out
    measures = grading.summary.measures
    if measures.get("uids") and not measures.get("namespaces"):
        grading.summary.warnings += _writable_by_others([Path(__file__).resolve().parents[1],
                                                         grading.options.submissions]
                                                    + ([grading.options.out] if grading.options.out else []))


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


GRADE_STEPS: list[Callable[[Grading], None]] = [
    check_folders,
    find_submissions,
    start_sandbox,
    read_notebooks,
    draw_cases,
    measure_sandbox,
    ship_cases,
    guard_files,
    run_sandboxed,
    write_reports,
    summarise,
]

# Gradescope: one student, results.json instead of the class reports (see autograder.py).
SUBMISSION_STEPS: list[Callable[[Grading], None]] = [
    find_one_submission,
    start_sandbox,
    read_notebooks,
    draw_cases,
    measure_sandbox,
    ship_cases,
    guard_files,
    run_sandboxed,
    fill_not_submitted,
]
