"""Inside a sandboxed worker: run a notebook's cells, find the student's functions, run the cases.

No Jupyter kernel: each code cell (already plain Python, see notebook.py) is compiled and executed
in one namespace, in order, like "Run All"; a cell that raises is recorded for the feedback and the
next one runs, as in nbgrader. `get_ipython()` and `display()` are small shims, matplotlib draws
with Agg and figures are closed after each cell. While the cells run, `attnkit.checks._recorder`
makes `check("1.1", fn)` remember `fn`; that is the function graded (else the one with the
exercise's name).

The cases come from the grader (loaded with `torch.load(weights_only=True)`). Each call goes through
`attnkit.checks.core.run_case`, the self-check's own code, which turns what the function returns into
plain tensors. Their raw bytes are written with a description (dtype, shape, offset) in JSON; the verdict
is computed in the grader. Soft time limits (SIGALRM) stop a runaway cell or exercise and grading goes
on; the zygote's hard deadline is the backstop. Results go into the directory open as `out_fd`, in
the files and words of contract.py.
"""

from __future__ import annotations

import io
import json
import linecache
import os
import random
import signal
import sys
import time
import traceback
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnkit import checks
from attnkit.checks import core
from attnkit.checks.core import ERROR, PASSED, Case, Ran
from attnkit.grading import contract
from attnkit.grading.contract import MEMORY_PATTERN, CellProblem, Outcome, Stage, Step

__all__ = ["load_job", "run", "to_bytes"]

_MESSAGE_CHARS = 4000  # longer messages from student code are cut
_GRACE = 0.5  # seconds between the last soft deadline and the zygote's hard kill

class _Deadline(BaseException):
    """Raised by SIGALRM inside student code: a soft time limit (BaseException: `except Exception`
    in the student's code does not swallow it)."""


class _OutputLimit(BaseException):
    """Raised once when the captured output reaches its cap."""


def load_job(job_dir: Path, preloaded: dict[str, dict] | None = None) -> dict:
    """The job the grader wrote: cells, exercise ids and the case inputs (the zygote's copy if it has
    loaded them already, else from the cases file; safe loading only)."""
    with open(job_dir / contract.JOB, encoding="utf-8") as f:
        job = json.load(f)
    cases = (preloaded or {}).get(job["notebook"])
    job["cases"] = cases if cases is not None else torch.load(job["cases_file"], weights_only=True)
    return job


class _CappedOutput(io.TextIOBase):
    """sys.stdout / sys.stderr: write to the captured file until `cap` bytes, then stop once, loudly.

    The first write that crosses the cap raises _OutputLimit (ending the flood); later writes are
    dropped, so later cells can still print. RLIMIT_FSIZE enforces the same cap on the file for
    anything that writes to the descriptors directly.
    """

    def __init__(self, fd: int, budget: dict):
        self.fd, self.budget = fd, budget

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        return "utf-8"

    def write(self, text: str) -> int:
        data = str(text).encode("utf-8", "replace")
        left = self.budget["cap"] - self.budget["used"]
        if self.budget["exceeded"]:
            return len(text)
        if len(data) > left:
            self._raw(data[:max(left, 0)] + b"\n[output limit reached: the rest is not captured]\n")
            self.budget["used"] = self.budget["cap"]
            self.budget["exceeded"] = True
            raise _OutputLimit()
        self.budget["used"] += len(data)
        self._raw(data)
        return len(text)

    def _raw(self, data: bytes) -> None:
        try:
            os.write(self.fd, data)
        except OSError:
            pass

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.fd


class _Shell:
    """Enough of `get_ipython()` for course notebooks: magics are neutralised or run as plain code."""

    def __init__(self, namespace: dict, notes: list[str]):
        self.ns, self.notes = namespace, notes
        self.user_ns = namespace

    def run_line_magic(self, name: str, line: str, _stack_depth: int = 1) -> Any:
        if name in ("time", "timeit", "prun"):
            exec(compile(_strip_timeit_options(line), "<magic>", "exec"), self.ns)
        elif name not in ("matplotlib", "load_ext", "autoreload", "reload_ext", "config", "precision",
                          "pinfo", "pinfo2", "psearch", "who", "whos", "pylab", "env", "pip", "conda",
                          "cd", "pwd", "ls", "run", "xmode", "history", "colors"):
            self.notes.append(f"%{name} is not run by the grader")
        return None

    def run_cell_magic(self, name: str, line: str, cell: str) -> Any:
        if name in ("time", "timeit", "capture", "prun"):
            exec(compile(cell, "<magic>", "exec"), self.ns)
        elif name == "writefile":  # into the private working folder, as in the student's Jupyter
            path = line.split()[-1] if line.split() else "untitled.txt"
            with open(path, "a" if "-a" in line.split() else "w", encoding="utf-8") as f:
                f.write(cell)
        else:
            self.notes.append(f"%%{name} cells are not run by the grader")
        return None

    def system(self, cmd: str) -> None:
        self.notes.append("shell commands (`!...`) are not run by the grader")

    def getoutput(self, cmd: str, split: bool = True) -> list[str]:
        self.notes.append("shell commands (`!...`) are not run by the grader")
        return []

    def magic(self, line: str) -> Any:
        name, _, rest = line.lstrip("%").partition(" ")
        return self.run_line_magic(name, rest)

    def __getattr__(self, name: str) -> Any:  # anything else a notebook pokes at does nothing
        return lambda *args, **kwargs: None


def _strip_timeit_options(line: str) -> str:
    words = line.split()
    while words and words[0].startswith("-"):
        words = words[2:] if words[0] in ("-n", "-r") else words[1:]
    return " ".join(words)


def _display(*objs: Any, **kwargs: Any) -> None:
    """`display()` shim: outputs are not graded, so nothing is rendered."""


class _Worker:
    """State of one worker: the namespace, the output budget, where to write and the deadlines."""

    def __init__(self, job: dict, out_fd: int, limits: Any):
        self.job, self.out_fd, self.limits = job, out_fd, limits
        self.start = time.monotonic()
        self.end = self.start + limits.timeout - _GRACE  # the soft deadline of the whole notebook
        self.budget = {"cap": limits.output_kb * 1024, "used": 0, "exceeded": False}
        self.progress_fd = self.open(contract.PROGRESS, append=True)
        self.notes: list[str] = []
        self.ns: dict = {"__name__": "__main__", "__builtins__": __builtins__}
        shell = _Shell(self.ns, self.notes)
        self.ns["get_ipython"] = lambda: shell
        self.ns["display"] = _display

    def open(self, name: str, *, append: bool = False) -> int:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        return os.open(name, flags, 0o600, dir_fd=self.out_fd)

    def progress(self, step: Step, detail: object = "") -> None:
        """One line per stage ("cell 7", "exercise 1.2", ...), with the seconds since the fork."""
        os.write(self.progress_fd, Stage(step, str(detail)).line(time.monotonic() - self.start))

    def write_json(self, name: str, data: dict) -> None:
        fd = self.open(name)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)

    def alarm(self, seconds: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))

    @staticmethod
    def disarm() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Deadline()


def run(job: dict, out_fd: int, limits: Any) -> int:
    """Run the notebook, then every exercise's cases; write the results. Returns the exit code."""
    torch.set_num_threads(max(1, limits.threads))
    seed = job["seed"]
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    warnings.simplefilter("ignore")
    state = _Worker(job, out_fd, limits)
    signal.signal(signal.SIGALRM, _on_alarm)
    sys.stdout = _CappedOutput(1, state.budget)
    sys.stderr = _CappedOutput(2, state.budget)
    recorded: dict[str, Any] = {}
    try:
        with checks.grading_mode(lambda exercise, fn: recorded.__setitem__(exercise.id, fn)):
            run_cells(state)
        for index, ex_id in enumerate(job["exercises"]):
            run_exercise(state, index, ex_id, recorded, remaining=len(job["exercises"]) - index)
        state.progress(Step.FINISHED)
    except _Deadline:  # a soft deadline that fired in the worker's own code: report as a timeout
        state.progress(Step.FINISHED_LATE)
    sys.stdout.flush()
    return 0


def run_cells(state: _Worker) -> None:
    """Execute the code cells in order; a failing cell is recorded and the next one runs."""
    cells_end = state.start + 0.6 * (state.end - state.start)  # the rest is kept for the checks
    problems = []
    pyplot = sys.modules.get("matplotlib.pyplot")

    def problem(index: int, kind: CellProblem, error: str) -> None:
        problems.append({"cell": index, "kind": kind, "error": error})

    for index, source in state.job["cells"]:
        state.progress(Step.CELL, index)
        filename = f"<cell {index}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            code = compile(source, filename, "exec")
        except (SyntaxError, ValueError, OverflowError) as err:
            problem(index, CellProblem.ERROR, _syntax_message(err))
            continue
        try:
            state.alarm(max(cells_end - time.monotonic(), 0.2))
            try:
                exec(code, state.ns)
            finally:
                state.disarm()
        except _Deadline:
            problem(index, CellProblem.TIMEOUT, "stopped: it was still running at the time limit (an infinite "
                    "loop, or too slow for the grader)")
        except _OutputLimit:
            problem(index, CellProblem.OUTPUT_LIMIT, f"stopped: it printed more than {state.limits.output_kb} KiB")
        except SystemExit as err:
            problem(index, CellProblem.EXIT, f"called sys.exit({err.code!r}); the grader went on with the next "
                    "cell, as Jupyter does")
        except BaseException as err:  # the student's error: recorded, never fatal
            memory = MEMORY_PATTERN.search(f"{type(err).__name__}: {err}")
            problem(index, CellProblem.MEMORY if memory else CellProblem.ERROR, _exception_line(err, filename))
        if pyplot is not None:
            try:
                pyplot.close("all")
            except Exception:
                pass
    functions = sorted(name for name, value in list(state.ns.items())
                       if isinstance(value, types.FunctionType | type) and not name.startswith("_")
                       and getattr(value, "__module__", None) == "__main__")[:100]
    notes = sorted(set(state.notes))
    state.write_json(contract.CELLS, {"problems": problems[:50], "functions": functions, "notes": notes[:20],
                                    "output_exceeded": state.budget["exceeded"]})


def _syntax_message(err: Exception) -> str:
    if isinstance(err, SyntaxError):
        line = f" — `{err.text.strip()}`" if err.text else ""
        return f"SyntaxError: {err.msg} (line {err.lineno}{line})"
    return f"{type(err).__name__}: {err}"


def _exception_line(err: BaseException, filename: str) -> str:
    """`NameError: name 'x' is not defined (line 3 — `y = x + 1`)`, the line being the cell's own."""
    text = f"{type(err).__name__}: {str(err)[:300]}"
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == filename]
    if frames:
        f = frames[-1]
        code = f" — `{f.line.strip()[:120]}`" if f.line else ""
        text += f" (line {f.lineno}{code})"
    return text


def run_exercise(state: _Worker, index: int, ex_id: str, recorded: dict[str, Any], remaining: int) -> None:
    """Call the student's function on every case of one exercise; write ex<index>.json/.bin."""
    exercise = checks.get_exercise(ex_id)
    state.progress(Step.EXERCISE, ex_id)
    fn = recorded.get(ex_id)
    if not callable(fn):
        fn = state.ns.get(exercise.function)
    if not callable(fn):
        state.write_json(contract.exercise_json(index), {"outcome": Outcome.MISSING})
        state.progress(Step.DONE, ex_id)
        return
    share = (state.end - time.monotonic()) / remaining
    outcome, ran_list, detail = Outcome.RAN, [], ""
    state.budget.update(used=0, exceeded=False)  # each exercise's checks may print up to the cap
    try:
        state.alarm(share)
        try:
            for case_index, inputs in enumerate(state.job["cases"][ex_id]):
                detail = str(case_index)
                ran = _run_case(exercise, fn, Case(str(case_index), inputs))
                if ran.status == ERROR and MEMORY_PATTERN.search(ran.message):
                    outcome = Outcome.MEMORY
                    break
                ran_list.append(ran)
        finally:
            state.disarm()
    except _Deadline:
        outcome = Outcome.TIMEOUT
    except _OutputLimit:
        outcome = Outcome.OUTPUT_LIMIT
    data, results = to_bytes(ran_list, state.budget["cap"] // 2)
    if data:
        with os.fdopen(state.open(contract.exercise_bin(index)), "wb") as f:
            f.write(data)
    state.write_json(contract.exercise_json(index), {"outcome": outcome, "case": detail, "results": results,
                                            "seconds": round(share, 2)})
    state.progress(Step.DONE, ex_id)


def _run_case(exercise: Any, fn: Any, case: Case) -> Ran:
    """core.run_case, plus what it lets through: sys.exit() and other BaseExceptions of the student."""
    try:
        return core.run_case(exercise, fn, case)
    except (_Deadline, _OutputLimit):
        raise
    except SystemExit as err:
        return Ran(ERROR, message=f"Your function called sys.exit({err.code!r}). A function must return its "
                                  "result; ending the program stops the notebook.")
    except BaseException as err:
        return Ran(ERROR, message=f"Your function raised {type(err).__name__}: {str(err)[:300]}")


def to_bytes(ran_list: list[Ran], max_bytes: int) -> tuple[bytes, list[dict]]:
    """The returned tensors as one block of raw bytes, and a JSON-able description of each case's result
    (status, message, and per output its dtype, numpy dtype, shape and offset in the block)."""
    chunks: list[bytes] = []
    results, total = [], 0
    for ran in ran_list:
        entry: dict[str, Any] = {"status": ran.status, "message": ran.message[:_MESSAGE_CHARS], "outputs": []}
        if ran.misconception:  # the id of the hint in the message (the grader checks it names a known one)
            entry["misconception"] = ran.misconception
        if ran.status == PASSED:
            size = sum(t.numel() * t.element_size() for t in ran.outputs)
            if total + size > max_bytes:
                entry.update(status=ERROR, message=f"Your function returned {size / 2**20:.1f} MiB of tensors, "
                                                   "far more than the expected output; check the shapes.")
            else:
                for t in ran.outputs:
                    dtype = str(t.dtype)
                    plain = t if dtype in contract.NUMPY_DTYPES else t.to(torch.complex128 if t.is_complex()
                                                                           else torch.float64)
                    data = plain.contiguous().numpy().tobytes()
                    entry["outputs"].append({"dtype": dtype, "numpy": contract.NUMPY_DTYPES[str(plain.dtype)],
                                             "shape": list(plain.shape), "offset": total, "nbytes": len(data)})
                    chunks.append(data)
                    total += len(data)
        results.append(entry)
    return b"".join(chunks), results
