"""`attnkit gradescope-bundle OUT.zip`: the autograder zip for a Gradescope programming assignment.

The zip holds `setup.sh` (run once when Gradescope builds the image: installs Python, the CPU wheel of
torch and the attnkit source shipped in the zip), `run_autograder` (run per submission: grades
/autograder/submission with the same code as `attnkit grade`, writes /autograder/results/results.json)
and `config.json` (which notebooks, and the limits). See docs/grading.md.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

__all__ = ["build_bundle", "SETUP_SH", "RUN_AUTOGRADER"]

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image.
set -euo pipefail
cd /autograder/source
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --upgrade pip
# The CPU build of torch: ~200 MB instead of ~2 GB of CUDA libraries that Gradescope cannot use.
/autograder/venv/bin/pip install --index-url https://download.pytorch.org/whl/cpu "{torch}"
/autograder/venv/bin/pip install ./attnkit-src
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission. ATTNKIT_AUTOGRADER_ROOT and ATTNKIT_PYTHON let a test
# run it against a fake /autograder folder with another Python.
set -u
ROOT="${ATTNKIT_AUTOGRADER_ROOT:-/autograder}"
PYTHON="${ATTNKIT_PYTHON:-/autograder/venv/bin/python}"
if [ ! -x "$PYTHON" ]; then PYTHON=python3; fi
# The attnkit shipped in this zip, even if another one is installed.
export PYTHONPATH="$ROOT/source/attnkit-src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m attnkit.grading.autograder --root "$ROOT" --config "$ROOT/source/config.json"
"""

_README = "attnkit, as shipped in a Gradescope autograder bundle. See docs/grading.md in the course repository.\n"


TORCH = "torch==2.13.0"  # the version the course is tested with; setup.sh installs its CPU wheel


def build_bundle(zip_path: str | Path, *, notebooks: list[str] | None = None, timeout: float | None = None,
                 memory_mb: int | None = None, torch: str = TORCH) -> Path:
    """Write the autograder zip; return its path. `notebooks` defaults to every released notebook,
    `timeout` and `memory_mb` to `attnkit grade`'s."""
    from attnkit.grading.discover import released_notebooks
    from attnkit.grading.pipeline import MEMORY_MB, TIMEOUT, GradingError

    timeout = TIMEOUT if timeout is None else timeout
    memory_mb = MEMORY_MB if memory_mb is None else memory_mb

    released = released_notebooks()
    chosen = released if not notebooks else notebooks
    unknown = sorted(set(chosen) - set(released))
    if unknown:
        raise GradingError(f"not a released notebook: {', '.join(unknown)} (released: {', '.join(released)})")
    package = Path(__file__).resolve().parents[1]  # .../attnkit
    repo = package.parent
    config = {"notebooks": chosen, "timeout": timeout, "memory_mb": memory_mb}
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
        _add(z, "setup.sh", SETUP_SH.replace("{torch}", torch), executable=True)
        _add(z, "run_autograder", RUN_AUTOGRADER, executable=True)
        _add(z, "config.json", json.dumps(config, indent=1) + "\n")
        for path in sorted(package.rglob("*.py")):
            if "__pycache__" not in path.parts:
                _add(z, f"attnkit-src/{path.relative_to(repo).as_posix()}", path.read_text(encoding="utf-8"))
        pyproject = repo / "pyproject.toml"
        if pyproject.exists():
            _add(z, "attnkit-src/pyproject.toml", pyproject.read_text(encoding="utf-8"))
            # pyproject.toml maps chapters/ and exercises/ into the package (the student course, no solution):
            # without them `pip install ./attnkit-src` in setup.sh cannot build.
            from attnkit.course import course_files

            for path in course_files(repo):
                _add(z, f"attnkit-src/{path.as_posix()}", (repo / path).read_bytes())  # notebooks, SVGs, a checkpoint
        readme = repo / "README.md"
        _add(z, "attnkit-src/README.md", readme.read_text(encoding="utf-8") if readme.exists() else _README)
    return zip_path


def _add(z: zipfile.ZipFile, name: str, text: str | bytes, *, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))  # fixed: the same course, the same zip
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    z.writestr(info, text)
