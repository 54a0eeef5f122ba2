"""`attnkit grade` and `attnkit gradescope-bundle` from the command line: exit codes, determinism, the zip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from attnkit.checks import exercises_for
from attnkit.cli import main

REPO = Path(__file__).resolve().parents[1]
CH1 = "01_attention.ipynb"
HAVE_CH1 = (REPO / "solutions" / CH1).exists() and (REPO / "exercises" / CH1).exists()
needs_ch1 = pytest.mark.skipif(not HAVE_CH1, reason="solutions/ and exercises/01_attention.ipynb needed")


def small_class(root: Path) -> Path:
    """Three students on chapter 1: solved, untouched, and one exercise wrong."""
    solved = nbformat.read(REPO / "solutions" / CH1, as_version=4)
    stubs = nbformat.read(REPO / "exercises" / CH1, as_version=4)
    wrong = nbformat.from_dict(solved)
    for cell in wrong.cells:
        if cell.cell_type == "code" and cell.source.lstrip().startswith("# Exercise 1.1"):
            cell.source = "# Exercise 1.1\nimport torch\ndef softmax(x):\n    return torch.softmax(x, dim=0)\n"
    for student, nb in (("ada", solved), ("bo", stubs), ("cy", wrong)):
        (root / student).mkdir(parents=True)
        nbformat.write(nb, root / student / CH1)
    return root


def test_missing_folder_is_an_error(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_nothing_to_grade_is_an_error(tmp_path, capsys):
    (tmp_path / "subs").mkdir()
    assert main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out")]) == 2
    assert "nothing to grade: no student folders" in capsys.readouterr().err
    (tmp_path / "subs" / "ada").mkdir()
    (tmp_path / "subs" / "ada" / "notes.txt").write_text("hi")
    assert main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out")]) == 2
    assert "no notebook named like the released ones" in capsys.readouterr().err


def test_unwritable_output_is_an_error(tmp_path, capsys):
    (tmp_path / "subs" / "ada").mkdir(parents=True)
    (tmp_path / "a-file").write_text("not a folder")
    assert main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "a-file" / "out")]) == 2
    assert "cannot write the output folder" in capsys.readouterr().err


def test_unknown_notebook_is_an_error(tmp_path, capsys):
    (tmp_path / "subs").mkdir()
    assert main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--notebook", "99_x.ipynb"]) == 2
    assert "not a released notebook" in capsys.readouterr().err


@needs_ch1
def test_grading_twice_gives_identical_grades_and_exit_status_0(tmp_path, capsys):
    subs = small_class(tmp_path / "subs")
    outputs = []
    for run in ("first", "second"):
        code = main(["grade", str(subs), "--out", str(tmp_path / run), "--jobs", "2", "--notebook", CH1,
                     "--seed", "7"])
        assert code == 0  # students' scores do not change the exit status
        outputs.append((tmp_path / run / "grades.csv").read_bytes())
    assert outputs[0] == outputs[1]
    captured = capsys.readouterr()
    text = captured.out
    assert "Graded 3 students, 3 notebooks" in text and "Sandbox:" in text
    assert captured.err.startswith("Sandbox: ")  # said before grading starts, on stderr beside the bar
    book = (tmp_path / "first" / "gradebook.csv").read_text().splitlines()
    assert book[0] == "student,01_attention,total,max_total"
    total = sum(ex.points for ex in exercises_for(CH1))
    assert book[1] == f"ada,{total:g},{total:g},{total:g}" and book[2] == f"bo,0,0,{total:g}"


@needs_ch1
def test_gradescope_bundle_runs_in_a_fake_autograder_folder(tmp_path):
    bundle = tmp_path / "autograder.zip"
    assert main(["gradescope-bundle", str(bundle), "--notebook", CH1, "--timeout", "30"]) == 0
    root = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as z:
        names = z.namelist()
        assert {"setup.sh", "run_autograder", "config.json", "attnkit-src/pyproject.toml",
                "attnkit-src/attnkit/grading/worker.py", "attnkit-src/attnkit/checks/core.py"} <= set(names)
        assert "torch==2.13.0" in z.read("setup.sh").decode() and "whl/cpu" in z.read("setup.sh").decode()
        z.extractall(root / "source")
    (root / "submission").mkdir()
    wrong = small_class(tmp_path / "class") / "cy" / CH1
    (root / "submission" / CH1).write_bytes(wrong.read_bytes())
    (root / "submission" / "scratch.py").write_text("x = 1\n")
    env = dict(os.environ, ATTNKIT_AUTOGRADER_ROOT=str(root), ATTNKIT_PYTHON=sys.executable)
    env.pop("PYTHONPATH", None)
    done = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    exercises = exercises_for(CH1)
    assert [t["number"] for t in results["tests"]] == [ex.id for ex in exercises]
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))
    first = results["tests"][0]
    assert first["status"] == "failed" and first["score"] < first["max_score"] and "Hint:" in first["output"]
    assert results["score"] == pytest.approx(sum(ex.points for ex in exercises) - 1 + first["score"])
    assert all(t["status"] == "passed" for t in results["tests"][1:])
    assert "scratch.py" in results["output"]
    assert isinstance(results["execution_time"], float)
