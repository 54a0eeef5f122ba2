"""`attnkit start`: the course is copied into a folder of the student's, and nothing they wrote is ever lost.

These run on the checkout (the course read from chapters/ and exercises/); tests/test_wheel.py runs the
same command from an installed wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from attnkit import cli, course

REPO = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_course_is_every_chapter_figure_data_file_and_exercise_and_no_solution():
    files = {str(f) for f in course.course_files()}
    patterns = ("chapters/*.ipynb", "chapters/figures/*.svg", "chapters/data/*.pt", "exercises/*.ipynb")
    expected = {str(p.relative_to(REPO)) for pattern in patterns for p in REPO.glob(pattern)}
    assert files == expected
    assert "chapters/01_attention.ipynb" in files and "exercises/01_attention.ipynb" in files
    assert not any(f.startswith("solutions") for f in files)


def test_start_copies_the_course_and_says_so(tmp_path, capsys):
    dest = tmp_path / "attention-course"
    assert cli.main(["start", "--no-launch", str(dest)]) == 0
    out = capsys.readouterr().out
    assert snapshot(dest) == {str(f): (REPO / f).read_bytes() for f in course.course_files()}
    n = len(course.course_files())
    assert f"copied {n} files, 0 already up to date" in out and "jupyter lab chapters/01_attention.ipynb" in out


def test_default_folder_is_attention_course_in_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["start", "--no-launch"]) == 0
    assert (tmp_path / "attention-course" / "chapters" / "01_attention.ipynb").is_file()
    assert (tmp_path / "attention-course" / "chapters" / "figures" / "01_four_steps.svg").is_file()


def test_running_twice_changes_nothing(tmp_path, capsys):
    dest = tmp_path / "course"
    cli.main(["start", "--no-launch", str(dest)])
    before = snapshot(dest)
    capsys.readouterr()
    assert cli.main(["start", "--no-launch", str(dest)]) == 0
    assert snapshot(dest) == before
    assert f"copied 0 files, {len(before)} already up to date" in capsys.readouterr().out


def test_an_edited_notebook_is_kept_and_the_course_version_goes_beside_it(tmp_path, capsys):
    dest = tmp_path / "course"
    cli.main(["start", "--no-launch", str(dest)])
    mine = dest / "exercises" / "01_attention.ipynb"
    mine.write_text(mine.read_text(encoding="utf-8").replace("raise NotImplementedError", "return 42 #"),
                    encoding="utf-8")
    edited = mine.read_bytes()
    capsys.readouterr()

    assert cli.main(["start", "--no-launch", str(dest)]) == 0
    out = capsys.readouterr().out
    assert mine.read_bytes() == edited
    beside = dest / "exercises" / "01_attention.new.ipynb"
    assert beside.read_bytes() == (REPO / "exercises" / "01_attention.ipynb").read_bytes()
    assert f"kept your {Path('exercises/01_attention.ipynb')}" in out and "01_attention.new.ipynb" in out

    # Third run: both already there, nothing to do. Then the student edits the .new copy too: still kept.
    assert cli.main(["start", "--no-launch", str(dest)]) == 0
    beside.write_text("my notes", encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["start", "--no-launch", str(dest)]) == 0
    assert "nothing written" in capsys.readouterr().out
    assert mine.read_bytes() == edited and beside.read_text(encoding="utf-8") == "my notes"


def test_a_deleted_notebook_is_copied_again(tmp_path, capsys):
    dest = tmp_path / "course"
    cli.main(["start", "--no-launch", str(dest)])
    (dest / "chapters" / "03_masking.ipynb").unlink()
    capsys.readouterr()
    assert cli.main(["start", "--no-launch", str(dest)]) == 0
    assert "copied 1 files" in capsys.readouterr().out
    copied = dest / "chapters" / "03_masking.ipynb"
    assert copied.read_bytes() == (REPO / "chapters" / "03_masking.ipynb").read_bytes()


def test_a_file_in_the_way_exits_2_with_one_line_and_changes_nothing(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine", encoding="utf-8")
    assert cli.main(["start", "--no-launch", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is a file, not a folder" in err and str(target) in err
    assert snapshot(tmp_path) == {"notes.txt": b"mine"}

    # A file where the course wants its chapters/ folder: refused before anything is copied.
    (tmp_path / "course").mkdir()
    (tmp_path / "course" / "chapters").write_text("mine", encoding="utf-8")
    assert cli.main(["start", "--no-launch", str(tmp_path / "course")]) == 2
    assert "chapters is a file, not a folder" in capsys.readouterr().err
    assert snapshot(tmp_path / "course") == {"chapters": b"mine"}


def test_no_write_permission_exits_2_with_one_line_and_changes_nothing(tmp_path, capsys):
    if os.geteuid() == 0:
        # root may write anywhere it has a writable filesystem: use one that refuses everyone (procfs).
        dest = Path("/proc/self/attention-course")
        parent_before = None
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        dest = locked / "attention-course"
        parent_before = snapshot(locked)
    assert cli.main(["start", "--no-launch", str(dest)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("attnkit start: cannot write in "), err
    assert not dest.exists()
    if parent_before is not None:
        assert snapshot(dest.parent) == parent_before
        dest.parent.chmod(0o700)


def test_start_launches_jupyterlab_on_chapter_1_in_the_copy(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(course.subprocess, "call", lambda command, cwd: calls.append((command, cwd)) or 0)
    assert cli.main(["start", str(tmp_path / "c")]) == 0
    root = ["--allow-root"] if os.geteuid() == 0 else []
    assert calls == [([sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={(tmp_path / 'c').resolve()}",
                       str(Path("chapters/01_attention.ipynb")), *root], tmp_path / "c")]
    assert "starting JupyterLab" in capsys.readouterr().out


def test_start_is_in_the_help_and_version_still_works():
    done = subprocess.run([sys.executable, "-m", "attnkit.cli", "--help"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "start" in done.stdout
    done = subprocess.run([sys.executable, "-m", "attnkit.cli", "--version"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.startswith("attnkit ")
