"""`attnkit release`: solution notebooks -> student notebooks, and the released ones are current."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from attnkit.checks import exercises_for
from attnkit.cli import main
from attnkit.release import ReleaseError, make_student_notebook, release

ROOT = Path(__file__).resolve().parents[1]
RELEASED = sorted((ROOT / "exercises").glob("*.ipynb"))


def notebook(*cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python", "version": "3.11.7"}, "widgets": {"state": {}}}
    for kind, source in cells:
        cell = (nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell)(source)
        nb.cells.append(cell)
    return nb


SOLVED = notebook(
    ("md", "### Exercise 1.2 — scores"),
    ("code", "def scores(q, k):\n    ### BEGIN SOLUTION\n    s = q @ k.T\n    return s\n    ### END SOLUTION"),
    ("code", "# Exercise 1.3\ndef other(x):\n    '''doc'''\n"
             "    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n"),
    ("code", "check('1.2', scores)\n### BEGIN HIDDEN TESTS\nassert scores(1, 2) == 2\n### END HIDDEN TESTS\n"),
    ("md", "Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION"),
)


def test_solution_regions_become_stubs_naming_the_exercise():
    SOLVED.cells[1].outputs = [nbformat.v4.new_output("stream", text="hi")]
    SOLVED.cells[1].execution_count = 3
    student = make_student_notebook(SOLVED)
    assert student.cells[1].source == (
        'def scores(q, k):\n    raise NotImplementedError("Exercise 1.2: replace this line with your code")')
    assert 'raise NotImplementedError("Exercise 1.3: replace' in student.cells[2].source
    assert "'''doc'''" in student.cells[2].source
    assert "assert scores" not in student.cells[3].source and "check('1.2', scores)" in student.cells[3].source
    assert student.cells[4].source == "Why?\n_Your answer here._"
    assert student.cells[1].outputs == [] and student.cells[1].execution_count is None
    assert student.metadata == {"kernelspec": SOLVED.metadata["kernelspec"], "language_info": {"name": "python"}}
    assert "BEGIN SOLUTION" in SOLVED.cells[1].source  # the solution notebook is untouched


@pytest.mark.parametrize("source,message", [
    ("x = 1\n### BEGIN SOLUTION\nx = 2\n### END SOLUTION", "must be indented inside a function"),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1", "never closed"),
    ("def f():\n    return 1\n    ### END SOLUTION", "without"),
    ("### BEGIN HIDDEN TESTS\nassert True", "never closed"),
])
def test_malformed_regions_are_clear_errors(source, message):
    with pytest.raises(ReleaseError, match=message):
        make_student_notebook(notebook(("code", source)), where="sol.ipynb")


def test_release_writes_only_changes_and_check_mode(tmp_path, capsys):
    src, dest = tmp_path / "solutions", tmp_path / "exercises"
    src.mkdir()
    nbformat.write(SOLVED, src / "01_x.ipynb")
    assert main(["release", "--source", str(src), "--dest", str(dest), "--check"]) == 1
    assert "stale:" in capsys.readouterr().err
    assert release(src, dest) == [dest / "01_x.ipynb"]
    assert release(src, dest) == []
    assert main(["release", "--source", str(src), "--dest", str(dest), "--check"]) == 0
    assert main(["release", "--source", str(tmp_path / "nowhere"), "--dest", str(dest)]) == 2
    assert "no solution notebooks" in capsys.readouterr().err


def test_committed_exercises_are_current():
    stale = release(ROOT / "solutions", ROOT / "exercises", check=True)
    assert stale == [], f"run `attnkit release`: stale {stale}"
    solutions = {p.name for p in (ROOT / "solutions").glob("*.ipynb")}
    assert {p.name for p in RELEASED} == solutions, "exercises/ holds a notebook with no solution"


def test_every_exercise_is_in_its_solution_and_released_notebook():
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        solution = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
        released = "\n".join(c.source for c in nbformat.read(ROOT / "exercises" / path.name, as_version=4).cells)
        exercises = exercises_for(path.name)
        assert exercises, f"{path.name} has no exercises in attnkit/checks"
        for ex in exercises:
            assert re.search(rf"(def|class) {re.escape(ex.function)}[(:]", solution), \
                f"{path.name} lacks exercise {ex.id}"  # a function, or a class (4.5)
            assert re.search(rf"check\((\"|'){re.escape(ex.id)}(\"|')", released), f"{path.name}: no check for {ex.id}"
        assert "### BEGIN SOLUTION" not in released


@pytest.mark.parametrize("path", RELEASED, ids=[p.name for p in RELEASED])
def test_untouched_exercise_notebook_runs_and_says_not_implemented(path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    check_outputs = ["".join(o.get("text", "") for o in cell.outputs)
                     for cell in nb.cells if cell.cell_type == "code" and "check(" in cell.source]
    assert check_outputs, "no self-check cells"
    for text in check_outputs:
        assert "not implemented yet" in text, text
        assert "Traceback" not in text
