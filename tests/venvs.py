"""Virtual environments for the tests that install attnkit as a user would, cached between runs.

Making one costs about 1.5 minutes (jupyterlab and its dependencies); it is kept in
/var/cache/attnkit-tests/ (like tests/test_grading_unprivileged.py's), keyed by the interpreter and the
package list, so a later run only (re)installs the freshly built attnkit into it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("ATTNKIT_TEST_CACHE", "/var/cache/attnkit-tests"))
TORCH = f"torch=={torch.__version__.split('+')[0]}"  # the CPU wheel on local disk here


def project_dependencies() -> list[str]:
    """attnkit's runtime dependencies, as pyproject.toml declares them."""
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]


def clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """The environment of a user who activated `venv`: no PYTHONPATH (so the checkout is not imported)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv), MPLBACKEND="Agg",
               PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


@contextmanager
def cached_venv(name: str, packages: list[str]) -> Iterator[Path]:
    """A virtual environment from this interpreter with `packages`, held under a lock while in use."""
    key = hashlib.sha256(" ".join([os.path.realpath(sys.executable), *packages]).encode()).hexdigest()[:12]
    venv = CACHE / f"{name}-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "ready").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
            done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *packages],
                                  capture_output=True, text=True, env=clean_env(venv))
            if done.returncode != 0:
                raise RuntimeError(f"could not install {packages} into {venv}:\n{done.stderr[-3000:]}")
            (venv / "ready").write_text("\n".join(packages) + "\n")
        yield venv


def run(venv: Path, *command: str | Path, cwd: Path | None = None, timeout: float = 600,
        **env: str) -> subprocess.CompletedProcess:
    """Run a command of the venv (e.g. "attnkit", "pip", "python") as its user would, text output."""
    program = str(venv / "bin" / command[0]) if not os.path.isabs(command[0]) else str(command[0])
    return subprocess.run([program, *map(str, command[1:])], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=clean_env(venv, **env))


def copy_checkout(dest: Path) -> Path:
    """The repository's files (as committed or edited, without caches and build output) in `dest`."""
    ignore = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist", "artifacts",
                                    ".ipynb_checkpoints", ".pytest_cache", ".ruff_cache")
    shutil.copytree(REPO, dest, ignore=ignore)
    return dest
