"""`attnkit release --nbgrader DIR`: the solution notebooks as an nbgrader course (source assignments).

nbgrader reads the same `### BEGIN SOLUTION` / `### END SOLUTION` regions as `attnkit release`, so a
solution notebook needs only cell metadata: each solution cell becomes an nbgrader solution cell, and
after each exercise's `check(...)` cell comes a read-only test cell worth the exercise's points that runs
the course's own checks (public and hidden) and fails with the very message `check(...)` prints. So
students get the same feedback in nbgrader as from the self-check, and `attnkit grade`, Gradescope and
nbgrader grade with the same code. See docs/grading.md, "If you use nbgrader".
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat

from attnkit.release import (
    BEGIN_SOLUTION,
    ReleaseError,
    _exercise_id_for,
    clean_metadata,
    clear_outputs,
    remove_hidden_tests,
)

__all__ = ["export_nbgrader", "nbgrader_notebook", "assert_exercise_passes", "SEED_VARIABLE"]

SEED_VARIABLE = "ATTNKIT_SEED"  # the hidden checks' seed at autograde time (as `attnkit grade --seed`)
_CHECK_CALL = re.compile(r"""\bcheck\(\s*["'](\d+\.\d+)["']""")
_SCHEMA = 3  # nbgrader's cell metadata schema (nbgrader 0.6 to 0.9)

CONFIG = '''\
# nbgrader's configuration for the attnkit course, written by `attnkit release --nbgrader`.
c = get_config()  # noqa: F821 (nbgrader defines it)
c.CourseDirectory.course_id = "attnkit"
# Each test cell runs an exercise's checks (a second or two); chapter 4 and 5 notebooks train a tiny model.
c.Execute.timeout = 120
'''


def assert_exercise_passes(exercise_id: str, fn: Callable[..., Any] | None) -> None:
    """nbgrader's test cell: raise AssertionError with `check`'s message unless every check passes.

    Runs the public and the hidden cases (hidden inputs from $ATTNKIT_SEED, default 0) in this kernel.
    Warnings are silenced: nbgrader gives zero points to a cell that writes to stderr.
    """
    from attnkit.checks import get_exercise, run_exercise

    seed = int(os.environ.get(SEED_VARIABLE, "0"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = run_exercise(get_exercise(exercise_id), fn, seed=seed, hidden=True)
    if report.status != "passed":
        raise AssertionError(report.render())
    print(report.render())


def _points(value: float) -> str:
    return f"{value:g} point" + ("" if value == 1 else "s")


def _test_cell(exercise) -> nbformat.NotebookNode:
    source = (f"# Graded by nbgrader: exercise {exercise.id}, {_points(exercise.points)}, all or nothing. It runs the "
              f'checks of check("{exercise.id}", ...)\n'
              f"# and hidden ones, and fails with the same message. This cell is read-only.\n"
              f"from attnkit.nbgrader_export import assert_exercise_passes\n\n"
              f'assert_exercise_passes("{exercise.id}", {exercise.function})')
    cell = nbformat.v4.new_code_cell(source)
    cell.id = f"nbgrader-{exercise.id.replace('.', '-')}"
    cell.metadata = {"nbgrader": {"grade": True, "grade_id": f"exercise_{exercise.id.replace('.', '_')}_test",
                                  "locked": True, "points": exercise.points, "schema_version": _SCHEMA,
                                  "solution": False, "task": False}}
    return cell


def nbgrader_notebook(solution: nbformat.NotebookNode, name: str, where: str = "notebook") -> nbformat.NotebookNode:
    """An nbgrader source notebook made from the solution notebook `name` (the input is not modified)."""
    from attnkit.checks import exercises_for

    nb = nbformat.from_dict(solution)  # a deep copy
    for step in (remove_hidden_tests, clear_outputs, clean_metadata):
        step(nb, where)
    anchors: dict[str, int] = {}  # exercise id -> index of the cell its test cell follows
    for index, cell in enumerate(nb.cells):
        if BEGIN_SOLUTION in cell.source:
            ex_id = _exercise_id_for(nb, index)
            if ex_id is None:
                raise ReleaseError(f"{where}, cell {index}: a solution region outside any `Exercise N.M`")
            key = f"exercise_{ex_id.replace('.', '_')}"
            if cell.cell_type == "code":
                meta = {"grade": False, "grade_id": f"{key}_code", "locked": False, "solution": True}
                anchors.setdefault(ex_id, index)
            else:  # a written answer: graded by hand in nbgrader's formgrader, 0 points unless you give it some
                meta = {"grade": True, "grade_id": f"{key}_answer", "locked": False, "points": 0, "solution": True}
            cell.metadata["nbgrader"] = {**meta, "schema_version": _SCHEMA, "task": False}
        elif cell.cell_type == "code":
            for ex_id in _CHECK_CALL.findall(cell.source):
                anchors[ex_id] = index
    cells = list(nb.cells)
    inserts = []
    for exercise in exercises_for(name):
        if exercise.id not in anchors:
            raise ReleaseError(f"{where}: exercise {exercise.id} has no solution cell nor check({exercise.id!r}) cell")
        inserts.append((anchors[exercise.id], _test_cell(exercise)))
    for index, cell in sorted(inserts, key=lambda item: item[0], reverse=True):
        cells.insert(index + 1, cell)
    nb.cells = cells
    return nb


def export_nbgrader(source: str | Path = "solutions", dest: str | Path = "nbgrader-course", *,
                    force: bool = False) -> list[Path]:
    """Write dest/source/<name>/<name>.ipynb for every source/<name>.ipynb, and dest/nbgrader_config.py.

    `dest` is an nbgrader course directory; it must be empty or missing unless `force` (then the files
    written here are replaced and every other file is left alone). Returns the files written.
    """
    source, dest = Path(source), Path(dest)
    notebooks = sorted(source.glob("*.ipynb"))
    if not notebooks:
        raise ReleaseError(f"no solution notebooks (*.ipynb) found in {source}")
    if dest.exists() and not dest.is_dir():
        raise ReleaseError(f"{dest} is a file, not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise ReleaseError(f"{dest} is not empty; choose an empty folder, or pass --force to replace the "
                           f"assignments and nbgrader_config.py in it")
    made = [(dest / "source" / path.stem / path.name,
             nbgrader_notebook(nbformat.read(path, as_version=4), path.name, where=str(path))) for path in notebooks]
    written = []
    for target, nb in made:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
        written.append(target)
    config = dest / "nbgrader_config.py"
    config.write_text(CONFIG, encoding="utf-8")
    written.append(config)
    return written
