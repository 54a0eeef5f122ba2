"""Find the notebooks to grade in SUBMISSIONS/<student>/<notebook>.ipynb, and say why others are not.

Students download and re-upload files, so a folder often holds `01_attention (1).ipynb`, a copy in a
sub-folder, or a stray `.py`. The exact released name wins; a renamed copy is graded only when the
exact name is absent (and the feedback says so); anything else becomes a row explaining why it was
not graded. Nothing here opens a notebook: `notebook.py` reads them.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from attnkit.grading.statuses import Status

__all__ = ["Submission", "Stray", "Discovery", "discover", "discover_one", "released_notebooks"]

# Folders that archive tools and Jupyter create; never a student's work.
_IGNORED_DIRS = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}
# "01_attention (1)", "01_attention copy", "01_attention - Copy", "01_attention-copy 2"
_COPY_SUFFIX = re.compile(r"(\s*\(\d+\)|[\s_-]+copy(\s*\d+)?)+$", re.IGNORECASE)


@dataclass(frozen=True)
class Submission:
    """One notebook to grade: whose, which released notebook it answers, and where it is."""

    student: str
    notebook: str  # the released file name, e.g. "01_attention.ipynb"
    path: Path
    note: str = ""  # shown in the feedback, e.g. when a renamed copy was graded


@dataclass(frozen=True)
class Stray:
    """A file that is not graded, with the row status and the reason."""

    student: str
    name: str  # path relative to the student's folder
    status: Status  # UNEXPECTED_FILE or DUPLICATE
    message: str


@dataclass
class Discovery:
    """Everything found: the students, the notebooks to grade and the files left alone."""

    students: list[str] = field(default_factory=list)
    submissions: list[Submission] = field(default_factory=list)
    strays: list[Stray] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # for the summary: files outside student folders


def released_notebooks() -> list[str]:
    """The file names of the notebooks that have graded exercises, in course order."""
    from attnkit.checks import all_exercises

    return sorted({ex.notebook for ex in all_exercises().values()})


def discover(root: Path, notebooks: list[str]) -> Discovery:
    """Scan SUBMISSIONS: one student per sub-folder, sorted by name (so runs are reproducible)."""
    found = Discovery()
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith(".") or entry.name in _IGNORED_DIRS:
            continue
        if entry.is_dir(follow_symlinks=False):
            student = unicodedata.normalize("NFC", entry.name)
            found.students.append(student)
            _scan_student(found, student, Path(entry.path), notebooks)
        else:
            found.warnings.append(f"{entry.name}: not in a student folder (expected "
                                  f"SUBMISSIONS/<student>/<notebook>.ipynb); ignored")
    return found


def discover_one(folder: Path, student: str, notebooks: list[str]) -> Discovery:
    """One student's folder (Gradescope's /autograder/submission)."""
    found = Discovery(students=[student])
    _scan_student(found, student, folder, notebooks)
    return found


def _scan_student(found: Discovery, student: str, folder: Path, notebooks: list[str]) -> None:
    """Match every file in the folder (recursively) to a released notebook, best candidate first."""
    by_stem = {Path(n).stem.lower(): n for n in notebooks}
    candidates: dict[str, list[tuple[tuple[int, int, str], str, Path]]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _IGNORED_DIRS)
        depth = len(Path(dirpath).relative_to(folder).parts)
        for name in sorted(filenames):
            if name.startswith("."):  # .DS_Store and friends
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                found.strays.append(Stray(student, rel, Status.UNEXPECTED_FILE, "a symbolic link; not graded."))
                continue
            match = _match(name, notebooks, by_stem)
            if match is None:
                found.strays.append(Stray(student, rel, Status.UNEXPECTED_FILE, _unexpected_reason(name, notebooks)))
                continue
            notebook, closeness = match
            candidates.setdefault(notebook, []).append(((closeness, depth, rel), rel, path))
    for notebook in notebooks:
        ranked = sorted(candidates.get(notebook, []))
        if not ranked:
            continue
        (closeness, _, _), rel, path = ranked[0]
        note = "" if closeness == 0 and rel == notebook else (
            f"graded `{rel}` as {notebook} (no file named exactly `{notebook}` in your folder).")
        found.submissions.append(Submission(student, notebook, path, note))
        for _, other, _ in ranked[1:]:
            found.strays.append(Stray(student, other, Status.DUPLICATE,
                                      f"another copy of {notebook}; `{rel}` was graded instead. "
                                      "Submit one file per notebook, named as released."))


def _match(name: str, notebooks: list[str], by_stem: dict[str, str]) -> tuple[str, int] | None:
    """(released notebook, closeness) for a file name: 0 exact, 1 other case, 2 a renamed copy."""
    if name in notebooks:
        return name, 0
    stem, ext = os.path.splitext(name)
    if ext.lower() != ".ipynb":
        return None
    if stem.lower() in by_stem:
        return by_stem[stem.lower()], 1
    base = _COPY_SUFFIX.sub("", stem).strip().lower()
    if base in by_stem:
        return by_stem[base], 2
    return None


def _unexpected_reason(name: str, notebooks: list[str]) -> str:
    listed = ", ".join(notebooks)
    if name.lower().endswith(".ipynb"):
        return f"not a released notebook name (expected one of: {listed}); not graded."
    return f"not a notebook; only the released notebooks ({listed}) are graded."
