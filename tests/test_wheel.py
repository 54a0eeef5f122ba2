"""The student path, as a new user takes it: build the wheel, `pip install` it into a fresh virtual
environment, `attnkit start --no-launch`, and run the copied chapter 1 and an exercise notebook there.

Also: the sdist and the wheel carry the student course (chapters, figures, exercises) and no solution,
and binder/ names an environment that installs (repo2docker: requirements.txt, then postBuild).
The virtual environment's dependencies are cached (tests/venvs.py); attnkit itself is reinstalled from
the wheel built in this run.
"""

from __future__ import annotations

import re
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path

import nbformat
import pytest
from venvs import REPO, TORCH, cached_venv, copy_checkout, project_dependencies, run

from attnkit.release import BEGIN_SOLUTION

PACKAGES = [TORCH, *project_dependencies(), "build"]
# `python -m build` isolates the build: its setuptools comes from the (local) index, like a user's would.


@pytest.fixture(scope="module")
def venv():
    with cached_venv("wheel-venv", PACKAGES) as path:
        yield path


@pytest.fixture(scope="module")
def dist(venv, tmp_path_factory) -> dict[str, Path]:
    """sdist and wheel built by `python -m build` from a copy of the checkout (solutions/ included)."""
    root = tmp_path_factory.mktemp("dist")
    source = copy_checkout(root / "attnkit-src")
    assert (source / "solutions").is_dir()
    done = run(venv, "python", "-m", "build", "--outdir", root / "out", source, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    wheel, = (root / "out").glob("attnkit-*.whl")
    sdist, = (root / "out").glob("attnkit-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def installed(venv, dist) -> Path:
    """The cached venv with this run's wheel installed (its dependencies must already be satisfied)."""
    done = run(venv, "pip", "install", "-q", "--force-reinstall", "--no-deps", dist["wheel"])
    assert done.returncode == 0, done.stderr[-3000:]
    done = run(venv, "pip", "check")
    assert done.returncode == 0, done.stdout
    return venv


def course_in_repo() -> set[str]:
    patterns = ("chapters/*.ipynb", "chapters/figures/*.svg", "chapters/data/*.pt", "exercises/*.ipynb")
    return {str(p.relative_to(REPO)) for pattern in patterns for p in REPO.glob(pattern)}


def assert_no_solution(names_and_data: dict[str, bytes], where: str) -> None:
    """No solutions/ file, no notebook mentioning the marker, no file holding a solution region.

    A region is a line that is exactly `### BEGIN SOLUTION` (as `attnkit release` and nbgrader read it);
    prose that names the marker (the README, docstrings) is not one.
    """
    assert not [n for n in names_and_data if "solutions/" in n or n.startswith("solutions")], where
    for name, data in names_and_data.items():
        text = data.decode("utf-8", errors="replace")
        if name.endswith(".ipynb"):
            sources = [cell.source for cell in nbformat.reads(text, as_version=4).cells]
            assert not [s for s in sources if BEGIN_SOLUTION in s], f"{where}: {name} holds a solution"
        regions = [line for line in text.splitlines() if line.strip() == BEGIN_SOLUTION]
        assert not regions, f"{where}: {name} holds a solution region"


def test_wheel_carries_the_student_course_every_module_and_no_solution(dist):
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        files = {info.filename: wheel.read(info) for info in wheel.infolist()}
    course = {name.removeprefix("attnkit/_course/") for name in files if name.startswith("attnkit/_course/")}
    assert course == course_in_repo()
    for name in course:  # byte for byte what the repository holds
        assert files[f"attnkit/_course/{name}"] == (REPO / name).read_bytes(), name
    package = {str(p.relative_to(REPO)) for p in (REPO / "attnkit").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert package - set(files) == set(), "a file is missing: list its package (or data) in pyproject.toml"
    assert_no_solution(files, "wheel")
    entry_points = next(data for name, data in files.items() if name.endswith("entry_points.txt")).decode()
    assert "attnkit = attnkit.cli:main" in entry_points


def test_sdist_carries_the_student_course_and_no_solution(dist):
    with tarfile.open(dist["sdist"]) as sdist:
        files = {m.name.split("/", 1)[1]: sdist.extractfile(m).read() for m in sdist.getmembers() if m.isfile()}
    assert course_in_repo() <= set(files)
    assert {"pyproject.toml", "README.md", "attnkit/course.py"} <= set(files)
    assert_no_solution(files, "sdist")


def test_a_new_user_installs_the_wheel_starts_the_course_and_runs_chapter_1_and_an_exercise(installed, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    version = run(installed, "attnkit", "--version", cwd=home, HOME=str(home))
    assert version.returncode == 0 and version.stdout.strip() == "attnkit 0.1.0", version

    done = run(installed, "attnkit", "start", "--no-launch", cwd=home, HOME=str(home))
    assert done.returncode == 0, done.stderr
    dest = home / "attention-course"
    assert f"copied {len(course_in_repo())} files" in done.stdout
    assert {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()} == course_in_repo()
    again = run(installed, "attnkit", "start", "--no-launch", cwd=home, HOME=str(home))
    assert again.returncode == 0 and "copied 0 files" in again.stdout, again

    # Run the copies where they are, in a kernel of the venv; the last cell says which attnkit it used.
    script = """
import sys, nbformat, pathlib
from nbclient import NotebookClient
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import attnkit, sys; print(attnkit.__file__, sys.prefix)"))
    folder = str(pathlib.Path(path).parent)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": folder}}).execute()
    print(path, nb.cells[-1].outputs[0]["text"].strip())
"""
    notebooks = [dest / "chapters" / "01_attention.ipynb", dest / "exercises" / "01_attention.ipynb"]
    done = run(installed, "python", "-c", script, *notebooks, cwd=home, HOME=str(home), timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    for line in done.stdout.strip().splitlines():
        path, module, prefix = line.split()
        assert module.startswith(str(installed)) and prefix == str(installed), line  # not the checkout


def test_binder_environment_names_the_cpu_wheel_and_installs_the_package(installed, dist, tmp_path):
    requirements = (REPO / "binder" / "requirements.txt").read_text(encoding="utf-8")
    lines = [line.strip() for line in requirements.splitlines() if line.strip() and not line.startswith("#")]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    assert TORCH in lines  # the torch this suite tests with
    post_build = REPO / "binder" / "postBuild"
    assert post_build.stat().st_mode & stat.S_IXUSR, "repo2docker runs postBuild only if it is executable"
    assert subprocess.run(["bash", "-n", str(post_build)]).returncode == 0
    installs = re.findall(r"^\s*(?:python -m )?pip install (.+)$", post_build.read_text(), re.M)
    assert installs and installs[0].split()[-1] == ".", installs  # the checkout Binder cloned: this package
    # Resolve what the two files name (PyPI's torch stands in for the CPU index's; the same version is on
    # local disk here), with the wheel standing for ".": everything must resolve with no conflict.
    named = [line for line in lines if not line.startswith("-")]
    done = run(installed, "pip", "install", "--dry-run", "--quiet", "--report", tmp_path / "report.json",
               *named, dist["wheel"], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_leak_check_can_fail():
    solved = (REPO / "solutions" / "01_attention.ipynb").read_bytes()
    for files in ({"attnkit/_course/solutions/01_attention.ipynb": b"{}"},
                  {"attnkit/_course/exercises/01_attention.ipynb": solved},
                  {"attnkit/answers.py": b"def f():\n    ### BEGIN SOLUTION\n    return 1\n"}):
        with pytest.raises(AssertionError):
            assert_no_solution(files, "test")
    assert_no_solution({"attnkit/_course/exercises/01_attention.ipynb": (REPO / "exercises" / "01_attention.ipynb")
                        .read_bytes(), "README.md": b"regions between `### BEGIN SOLUTION` and ..."}, "test")


def test_the_gradescope_bundles_source_still_builds(venv, tmp_path):
    """setup.sh runs `pip install ./attnkit-src`: the mapped course folders must travel in the zip."""
    from attnkit.grading.bundle import build_bundle

    with zipfile.ZipFile(build_bundle(tmp_path / "autograder.zip")) as z:
        z.extractall(tmp_path / "source")
        assert not [n for n in z.namelist() if "solutions/" in n]
    done = run(venv, "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "out", tmp_path / "source" / "attnkit-src",
               timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with zipfile.ZipFile(next((tmp_path / "out").glob("attnkit-*.whl"))) as wheel:
        assert "attnkit/_course/exercises/01_attention.ipynb" in wheel.namelist()
