"""Student self-checks: `check("1.3", my_function)` runs the grader's public tests on your function.

The exercises of each chapter live in `attnkit/checks/chNN_*.py`; the grader runs the very same
cases (plus hidden ones) through the same code in `core.py`, so a self-check that passes at home
passes in the grader unless a hidden case finds something the public ones did not.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

from attnkit.checks.core import Case, Exercise, ExerciseReport, Misconception, run_exercise
from attnkit.checks.probes import padding_changes_output

__all__ = ["check", "get_exercise", "all_exercises", "exercises_for", "grading_mode", "Case", "Exercise",
           "Misconception", "ExerciseReport", "run_exercise", "padding_changes_output"]

_recorder: Callable[[Exercise, Any], None] | None = None  # set only by grading_mode()


@contextlib.contextmanager
def grading_mode(record: Callable[[Exercise, Any], None]) -> Iterator[None]:
    """Inside the grader's worker: `check(id, fn)` calls `record(exercise, fn)` and runs nothing.

    So the function graded is the one the student checked, even if a later cell reuses its name.
    Students never need it. See docs/grading.md.
    """
    global _recorder
    previous, _recorder = _recorder, record
    try:
        yield
    finally:
        _recorder = previous


def all_exercises() -> dict[str, Exercise]:
    """Every exercise of the course by id ("1.3"), from the chapter modules in this package."""
    found: dict[str, Exercise] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("ch"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for ex in getattr(module, "EXERCISES", ()):
            if ex.id in found:
                raise RuntimeError(f"exercise id {ex.id} is defined twice ({info.name})")
            found[ex.id] = ex
    return found


def get_exercise(exercise_id: str) -> Exercise:
    """The exercise with this id, or a ValueError listing the ids that exist."""
    exercises = all_exercises()
    if exercise_id not in exercises:
        known = ", ".join(sorted(exercises, key=_id_key))
        raise ValueError(f"Expected an exercise id such as {known!s} but got {exercise_id!r}")
    return exercises[exercise_id]


def exercises_for(notebook: str) -> list[Exercise]:
    """The exercises of one released notebook (by file name), in order."""
    return sorted((ex for ex in all_exercises().values() if ex.notebook == notebook), key=lambda e: _id_key(e.id))


def _id_key(exercise_id: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in exercise_id.split("."))


def check(exercise_id: str, fn: Callable[..., Any] | None = None) -> None:
    """Run exercise `exercise_id`'s public tests on `fn` and print pass, not-implemented or a hint.

    `fn` defaults to the function of the exercise's name in the calling notebook. Never raises
    for anything the function does: every failure becomes a message.

    See the exercise notebooks in exercises/.
    """
    exercise = get_exercise(exercise_id)
    if fn is None:
        caller = inspect.currentframe().f_back  # type: ignore[union-attr]
        fn = caller.f_locals.get(exercise.function, caller.f_globals.get(exercise.function))
    if _recorder is not None:  # inside the grader's worker: remember, do not run
        _recorder(exercise, fn)
        return
    print(run_exercise(exercise, fn).render())
