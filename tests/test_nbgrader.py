"""`attnkit release --nbgrader DIR`: an nbgrader course whose test cells run the course's own checks.

The fast tests check the notebooks we write; the `nbgrader` one (deselected by default, run by .ci/run)
runs the real nbgrader 0.9 in a cached virtual environment: generate_assignment, then autograde a
solved, a blank and a wrong submission.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import nbformat
import pytest
import torch
from venvs import REPO, TORCH, cached_venv, project_dependencies, run

from attnkit import cli
from attnkit.checks import exercises_for, get_exercise, run_exercise
from attnkit.nbgrader_export import assert_exercise_passes, nbgrader_notebook
from attnkit.release import BEGIN_SOLUTION, END_SOLUTION

SOLUTIONS = sorted((REPO / "solutions").glob("*.ipynb"))
NBGRADER = "nbgrader>=0.9,<0.10"


def meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_each_exercise_gets_a_locked_test_cell_with_its_points_after_its_check(path):
    nb = nbgrader_notebook(nbformat.read(path, as_version=4), path.name)
    tests = [(i, c) for i, c in enumerate(nb.cells) if meta(c).get("grade") and not meta(c).get("solution")]
    exercises = exercises_for(path.name)
    assert [re.search(r'assert_exercise_passes\("([\d.]+)"', c.source)[1] for _, c in tests] == \
        [ex.id for ex in exercises]
    for (index, cell), ex in zip(tests, exercises, strict=True):
        assert meta(cell)["locked"] and meta(cell)["points"] == ex.points
        assert f'assert_exercise_passes("{ex.id}", {ex.function})' in cell.source
        before = nb.cells[index - 1].source
        assert f'check("{ex.id}"' in before or BEGIN_SOLUTION in before, before
    ids = [meta(c)["grade_id"] for c in nb.cells if meta(c)]
    assert len(ids) == len(set(ids)), "nbgrader needs unique grade ids"
    assert len({c.id for c in nb.cells}) == len(nb.cells)
    for cell in nb.cells:
        if BEGIN_SOLUTION in cell.source:
            assert meta(cell)["solution"], cell.source[:80]
            # nbgrader: a markdown answer must be graded (by hand); a code solution is not itself graded
            assert meta(cell)["grade"] == (cell.cell_type == "markdown")
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    nbformat.validate(nb)


def test_the_test_cell_passes_the_reference_and_fails_with_checks_own_message():
    ex = get_exercise("1.2")
    assert_exercise_passes("1.2", ex.reference)  # no exception

    def stub(query, key, scale=None):
        raise NotImplementedError("Exercise 1.2: replace this line with your code")

    def divided_by_d_k(query, key, scale=None):
        return query @ key.transpose(-2, -1) / query.shape[-1]

    for fn in (stub, divided_by_d_k, None):
        with pytest.raises(AssertionError) as err:
            assert_exercise_passes("1.2", fn)
        assert str(err.value) == run_exercise(ex, fn, hidden=True).render()
    with pytest.raises(AssertionError, match="Hint:"):
        assert_exercise_passes("1.2", divided_by_d_k)


def test_release_nbgrader_writes_a_course_and_refuses_a_non_empty_folder_without_force(tmp_path, capsys):
    dest = tmp_path / "course"
    assert cli.main(["release", "--source", str(REPO / "solutions"), "--nbgrader", str(dest)]) == 0
    written = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert written == sorted(["nbgrader_config.py", *(f"source/{p.stem}/{p.name}" for p in SOLUTIONS)])
    capsys.readouterr()

    (dest / "gradebook.db").write_text("the instructor's", encoding="utf-8")
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert cli.main(["release", "--source", str(REPO / "solutions"), "--nbgrader", str(dest)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not empty" in err and "--force" in err
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before

    assert cli.main(["release", "--source", str(REPO / "solutions"), "--nbgrader", str(dest), "--force"]) == 0
    assert (dest / "gradebook.db").read_text(encoding="utf-8") == "the instructor's"

    a_file = tmp_path / "file"
    a_file.write_text("x", encoding="utf-8")
    assert cli.main(["release", "--nbgrader", str(a_file), "--force"]) == 2
    assert cli.main(["release", "--force"]) == 2  # --force only goes with --nbgrader


# ---- the real nbgrader ----------------------------------------------------------------------------------

def _solved_except(source: Path, exercise_id: str, body: str) -> nbformat.NotebookNode:
    """The solved source notebook with one exercise's solution region replaced by `body`."""
    nb = nbformat.read(source, as_version=4)
    key = f"exercise_{exercise_id.replace('.', '_')}_code"
    cell = next(c for c in nb.cells if meta(c).get("grade_id") == key)
    cell.source = re.sub(rf"( *){re.escape(BEGIN_SOLUTION)}.*?{re.escape(END_SOLUTION)}",
                         lambda m: m[1] + body, cell.source, flags=re.S)
    return nb


def _divided_by_d_k(query: torch.Tensor, key: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    return query @ key.transpose(-2, -1) / query.shape[-1]


@pytest.mark.nbgrader
def test_real_nbgrader_generates_the_assignment_and_autogrades_solved_blank_and_wrong(tmp_path):
    with cached_venv("nbgrader-venv", [TORCH, *project_dependencies(), NBGRADER]) as venv:
        course, name = tmp_path / "course", "01_attention"
        assert cli.main(["release", "--source", str(REPO / "solutions"), "--nbgrader", str(course)]) == 0
        env = {"PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
        done = run(venv, "nbgrader", "generate_assignment", name, cwd=course, **env)
        assert done.returncode == 0, done.stderr[-4000:]
        student = course / "release" / name / f"{name}.ipynb"
        assert BEGIN_SOLUTION not in student.read_text(encoding="utf-8")

        source = course / "source" / name / f"{name}.ipynb"
        submissions = {"solved": nbformat.read(source, as_version=4),
                       "blank": nbformat.read(student, as_version=4),
                       "wrong": _solved_except(source, "1.2", "return query @ key.transpose(-2, -1) / query.shape[-1]")}
        for who, nb in submissions.items():
            folder = course / "submitted" / who / name
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / f"{name}.ipynb")
        done = run(venv, "nbgrader", "autograde", name, "--create", cwd=course, timeout=600, **env)
        assert done.returncode == 0, done.stderr[-4000:]
        done = run(venv, "nbgrader", "export", cwd=course, **env)
        assert done.returncode == 0, done.stderr[-4000:]

    with open(course / "grades.csv", newline="", encoding="utf-8") as f:
        scores = {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(f)}
    total = sum(ex.points for ex in exercises_for(f"{name}.ipynb"))
    assert scores == {"solved": (total, total), "blank": (0.0, total),
                      "wrong": (total - get_exercise("1.2").points, total)}

    graded = nbformat.read(course / "autograded" / "wrong" / name / f"{name}.ipynb", as_version=4)
    cell = next(c for c in graded.cells if meta(c).get("grade_id") == "exercise_1_2_test")
    error = next(o for o in cell.outputs if o.output_type == "error")
    expected = run_exercise(get_exercise("1.2"), _divided_by_d_k, hidden=True).render()
    assert error.ename == "AssertionError" and error.evalue == expected
    assert "Hint:" in error.evalue
