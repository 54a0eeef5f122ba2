"""`attnkit start`: copy the student course (chapters and exercise notebooks) into a folder of one's own.

The course travels inside the installed package (attnkit/_course/, put there by pyproject.toml's build
configuration); in a checkout of the repository it is read from chapters/ and exercises/ directly. A copy
never overwrites a file the student may have edited: a differing file is kept and the course's version is
written beside it as NAME.new.ipynb, so running `attnkit start` again is always safe.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["course_root", "course_files", "copy_course", "CopyReport", "StartError", "FIRST_NOTEBOOK"]

FIRST_NOTEBOOK = Path("chapters") / "01_attention.ipynb"
DEFAULT_DEST = "attention-course"
_PACKAGE = Path(__file__).resolve().parent


class StartError(ValueError):
    """The course cannot be copied there (the message is one line saying where and why)."""


def course_root() -> Path:
    """The folder holding chapters/ and exercises/: inside the installed package, else the checkout."""
    for root in (_PACKAGE / "_course", _PACKAGE.parent):
        if (root / FIRST_NOTEBOOK).is_file() and (root / "exercises").is_dir():
            return root
    raise StartError(f"the course notebooks are missing: neither {_PACKAGE / '_course'} nor {_PACKAGE.parent} "
                     f"holds {FIRST_NOTEBOOK}; reinstall attnkit")


def course_files(root: Path | None = None) -> list[Path]:
    """The student course, as paths relative to `root`: the chapters, their figures and data, the exercises."""
    root = course_root() if root is None else root
    patterns = ("chapters/*.ipynb", "chapters/figures/*.svg", "chapters/data/*.pt", "exercises/*.ipynb")
    return sorted(path.relative_to(root) for pattern in patterns for path in root.glob(pattern))


@dataclass
class CopyReport:
    """What `copy_course` did to each file, relative to the destination."""

    dest: Path
    copied: list[Path] = field(default_factory=list)  # new files
    unchanged: list[Path] = field(default_factory=list)  # already there, identical to the course's
    beside: list[tuple[Path, Path]] = field(default_factory=list)  # (kept file, the course's copy beside it)
    skipped: list[tuple[Path, Path]] = field(default_factory=list)  # kept file and a differing NAME.new too

    def lines(self) -> list[str]:
        """What happened, for the terminal: one line per file that was not simply copied or left as it was."""
        out = [f"{self.dest}: copied {len(self.copied)} files, {len(self.unchanged)} already up to date"]
        for kept, new in self.beside:
            out.append(f"kept your {kept} (it differs from the course's); the course's version is in {new}")
        for kept, new in self.skipped:
            out.append(f"kept your {kept} and {new}: both differ from the course's version, nothing written")
        return out


def _beside(path: Path) -> Path:
    return path.with_name(f"{path.stem}.new{path.suffix}")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _can_write(folder: Path) -> bool:
    """Whether a file can be created in `folder` (tried, then removed: os.access is wrong for root)."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".attnkit-probe-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def check_destination(dest: Path, files: list[Path]) -> None:
    """Raise StartError, before anything is written, if the course cannot be copied into `dest`."""
    folders = sorted({dest, *(dest / f.parent for f in files)})
    for folder in folders:
        if folder.exists() and not folder.is_dir():
            raise StartError(f"{folder} is a file, not a folder: choose another place for the course")
    for folder in folders:
        existing = _nearest_existing(folder)
        if not existing.is_dir():
            raise StartError(f"{existing} is a file, not a folder: choose another place for the course")
        if not _can_write(existing):
            raise StartError(f"cannot write in {existing} (permission denied): choose a folder of your own")
    for file in files:
        target = dest / file
        if target.exists() and not target.is_file():
            raise StartError(f"{target} is in the way (not a file): move it, then run attnkit start again")


def copy_course(dest: str | Path = DEFAULT_DEST, *, root: Path | None = None) -> CopyReport:
    """Copy the course into `dest`, never overwriting a file: see the module docstring."""
    root = course_root() if root is None else root
    dest = Path(dest)
    files = course_files(root)
    check_destination(dest, files)
    report = CopyReport(dest)
    for file in files:
        source, target = root / file, dest / file
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            report.copied.append(file)
        elif filecmp.cmp(source, target, shallow=False):
            report.unchanged.append(file)
        else:
            new = _beside(target)
            if not new.exists():
                shutil.copyfile(source, new)
                report.beside.append((file, _beside(file)))
            elif filecmp.cmp(source, new, shallow=False):
                report.unchanged.append(file)
            else:
                report.skipped.append((file, _beside(file)))
    return report


def launch(dest: Path) -> int:
    """Start JupyterLab in `dest` on chapter 1 (the same Python environment's JupyterLab); its exit status."""
    # root_dir: the whole course in the file browser (given only a notebook, it would serve that notebook's folder).
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={dest.resolve()}", str(FIRST_NOTEBOOK)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # JupyterLab refuses root unless told; root is who a student is in many containers (Docker, Colab).
        command.append("--allow-root")
    try:
        return subprocess.call(command, cwd=dest)
    except KeyboardInterrupt:
        return 0
