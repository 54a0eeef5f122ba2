"""The grader run by an ordinary user, not root: the adversarial class of test_grading.py, twice.

Instructors grade on their own laptop or a course server, as themselves. CI runs as root, so this
test creates an ordinary user, gives it an interpreter it can run (a virtual environment made from the
distribution's python3: the one CI uses lives in root's home, which other users cannot enter), copies
the course into a folder that user owns, and runs tests/test_grading.py and tests/test_grading_units.py
as that user:
  1. as the kernel allows: in an unprivileged user namespace (every adversarial test passes, the
     vandal's writes are refused, the home folder and the network are out of reach);
  2. with ATTNKIT_SANDBOX_NO_NAMESPACES=1, the fallback: nothing isolates student code, so the grader
     must restore what the vandal changed and name it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
USER = "attnkit-grader"
SYSTEM_PYTHON = "/usr/bin/python3"
CACHE = Path("/var/cache/attnkit-tests")  # the virtual environment is kept between runs (~30 s to make)
PACKAGES = [f"torch=={torch.__version__.split('+')[0]}", "numpy", "matplotlib", "ipywidgets", "nbformat", "tqdm",
            "pytest"]


def _unavailable(reason: str) -> None:
    """Skip on a developer's machine; in CI (CI=true) the unprivileged path must be tested, so fail."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def ordinary_user() -> str:
    if os.geteuid() != 0:
        pytest.skip("already an ordinary user: tests/test_grading.py itself runs unprivileged here")
    if not shutil.which("useradd") or not shutil.which("runuser"):
        _unavailable("useradd and runuser are needed to create and become an ordinary user")
    if subprocess.run(["id", "-u", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True, capture_output=True)
    return USER


@pytest.fixture(scope="module")
def interpreter() -> Path:
    """A virtual environment from the distribution's python3 with what the grader imports, readable by all."""
    if not os.path.exists(SYSTEM_PYTHON):
        _unavailable(f"{SYSTEM_PYTHON} is needed to make an interpreter an ordinary user can run")
    key = hashlib.sha256(" ".join([os.path.realpath(SYSTEM_PYTHON), *PACKAGES]).encode()).hexdigest()[:12]
    venv = CACHE / f"venv-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "ready").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True, capture_output=True)
            done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *PACKAGES], capture_output=True,
                                  text=True)
            if done.returncode != 0:
                _unavailable(f"could not install {PACKAGES} into {venv}: {done.stderr[-2000:]}")
            subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True)
            (venv / "ready").write_text("ok")
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def course(ordinary_user, tmp_path_factory) -> Path:
    """The course as an instructor has it: a copy the ordinary user owns (and could, unprotected, change)."""
    root = tmp_path_factory.mktemp("unprivileged")
    copy = root / "course"
    copy.mkdir()
    for name in ("attnkit", "solutions", "exercises"):
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "tests").mkdir()
    for name in ("test_grading.py", "test_grading_units.py"):
        shutil.copy(REPO / "tests" / name, copy / "tests" / name)
    subprocess.run(["chown", "-R", f"{ordinary_user}:{ordinary_user}", str(copy)], check=True)
    for folder in [root, *root.parents]:  # let the user reach its folder (pytest's tmp folders are 0700)
        if folder == Path("/"):
            break
        os.chmod(folder, os.stat(folder).st_mode | 0o001)
    return copy


def run_as_user(user: str, python: Path, course: Path, tests: list[str], **env: str) -> subprocess.CompletedProcess:
    home = Path(os.path.expanduser(f"~{user}"))
    clean = {"PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "USER": user,
             "LOGNAME": user, "PYTHONPATH": str(course), "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1",
             "TMPDIR": "/tmp", **env}
    command = ["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in clean.items()),
               str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", "-o", "addopts=", "--rootdir",
               str(course), *tests]
    return subprocess.run(command, cwd=course, capture_output=True, text=True, timeout=600)


def _user_namespaces_allowed(user: str) -> bool:
    return subprocess.run(["runuser", "-u", user, "--", "unshare", "--user", "--map-root-user", "--mount", "true"],
                          capture_output=True).returncode == 0


def _report(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n--- stdout ---\n{done.stdout[-6000:]}\n--- stderr ---\n{done.stderr[-3000:]}"


def test_every_adversarial_grading_test_passes_as_an_ordinary_user(ordinary_user, interpreter, course):
    expected = "user-namespaces" if _user_namespaces_allowed(ordinary_user) else "none"
    done = run_as_user(ordinary_user, interpreter, course, ["tests/test_grading.py", "tests/test_grading_units.py"],
                       ATTNKIT_EXPECT_ISOLATION=expected)
    assert done.returncode == 0, _report(done)
    assert " passed" in done.stdout and " failed" not in done.stdout and " error" not in done.stdout, _report(done)
    print(f"as {ordinary_user} ({expected}): {done.stdout.strip().splitlines()[-1]}")


def test_without_namespaces_an_ordinary_user_still_loses_nothing(ordinary_user, interpreter, course):
    """The fallback: the vandal's writes succeed, and the grader restores them and names the vandal."""
    done = run_as_user(ordinary_user, interpreter, course, ["tests/test_grading.py"],
                       ATTNKIT_SANDBOX_NO_NAMESPACES="1", ATTNKIT_EXPECT_ISOLATION="none")
    assert done.returncode == 0, _report(done)
    assert " passed" in done.stdout and " failed" not in done.stdout, _report(done)
    print(f"as {ordinary_user} without namespaces: {done.stdout.strip().splitlines()[-1]}")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v", "-s"]))
