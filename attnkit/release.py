"""`attnkit release`: make the student notebooks in exercises/ from the solved ones in solutions/.

Each solution notebook is the single source of its exercise. Releasing it is a short list of
steps, nbgrader-style: stub the solution regions, drop hidden tests, clear outputs and metadata.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import nbformat

__all__ = ["release", "make_student_notebook", "ReleaseError"]

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MARKDOWN_STUB = "_Your answer here._"
_EXERCISE_ID = re.compile(r"Exercise\s+(\d+\.\d+)")


class ReleaseError(ValueError):
    """A solution notebook that cannot be released as it is (the message says where and why)."""


def _exercise_id_for(nb: nbformat.NotebookNode, index: int) -> str | None:
    """The id of the exercise cell `index` belongs to: in the cell itself, or the markdown above."""
    for i in range(index, -1, -1):
        cell = nb.cells[i]
        if i == index or cell.cell_type == "markdown":
            found = _EXERCISE_ID.findall(cell.source)
            if found:
                return found[-1] if i != index else found[0]
    return None


def stub_solutions(nb: nbformat.NotebookNode, where: str) -> None:
    """Replace each BEGIN/END SOLUTION region by a stub that raises NotImplementedError."""
    for index, cell in enumerate(nb.cells):
        if BEGIN_SOLUTION not in cell.source:
            if END_SOLUTION in cell.source:
                raise ReleaseError(f"{where}, cell {index}: `{END_SOLUTION}` without `{BEGIN_SOLUTION}`")
            continue
        out: list[str] = []
        inside, indent = False, ""
        for lineno, line in enumerate(cell.source.splitlines(), 1):
            stripped = line.strip()
            if stripped == BEGIN_SOLUTION:
                if inside:
                    raise ReleaseError(f"{where}, cell {index}, line {lineno}: nested `{BEGIN_SOLUTION}`")
                inside, indent = True, line[: len(line) - len(line.lstrip())]
                if cell.cell_type == "markdown":
                    out.append(MARKDOWN_STUB)
                    continue
                if not indent:
                    raise ReleaseError(
                        f"{where}, cell {index}, line {lineno}: a solution region must be indented inside a "
                        "function, so that the released stub raises only when the function is called")
                ex_id = _exercise_id_for(nb, index)
                label = f"Exercise {ex_id}" if ex_id else "This exercise"
                out.append(f'{indent}raise NotImplementedError("{label}: replace this line with your code")')
            elif stripped == END_SOLUTION:
                if not inside:
                    raise ReleaseError(f"{where}, cell {index}, line {lineno}: `{END_SOLUTION}` without begin")
                inside = False
            elif not inside:
                out.append(line)
        if inside:
            raise ReleaseError(f"{where}, cell {index}: `{BEGIN_SOLUTION}` is never closed")
        cell.source = "\n".join(out)


def remove_hidden_tests(nb: nbformat.NotebookNode, where: str) -> None:
    """Delete BEGIN/END HIDDEN TESTS regions (the grader has its own hidden cases)."""
    for index, cell in enumerate(nb.cells):
        if BEGIN_HIDDEN not in cell.source:
            continue
        pattern = re.compile(rf"^[ \t]*{BEGIN_HIDDEN}.*?^[ \t]*{END_HIDDEN}[ \t]*\n?", re.S | re.M)
        source, n = pattern.subn("", cell.source)
        if BEGIN_HIDDEN in source or n == 0:
            raise ReleaseError(f"{where}, cell {index}: `{BEGIN_HIDDEN}` is never closed")
        cell.source = source


def clear_outputs(nb: nbformat.NotebookNode, where: str) -> None:
    """Students start from a clean notebook: no outputs, no execution counts."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None


def clean_metadata(nb: nbformat.NotebookNode, where: str) -> None:
    """Keep only the kernel and language metadata, so notebooks diff cleanly."""
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")}
    if "language_info" in nb.metadata:
        nb.metadata["language_info"] = {"name": nb.metadata["language_info"].get("name", "python")}
    for cell in nb.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in ("tags",)}


# The release pipeline, in order. Each step takes (notebook, where) and edits the notebook in place.
STEPS: list[Callable[[nbformat.NotebookNode, str], None]] = [
    stub_solutions,
    remove_hidden_tests,
    clear_outputs,
    clean_metadata,
]


def make_student_notebook(solution: nbformat.NotebookNode, where: str = "notebook") -> nbformat.NotebookNode:
    """The student version of a solution notebook (the input is not modified)."""
    nb = nbformat.from_dict(solution)  # a deep copy
    for step in STEPS:
        step(nb, where)
    return nb


def release(source: str | Path = "solutions", dest: str | Path = "exercises", *,
            check: bool = False) -> list[Path]:
    """Write dest/<name>.ipynb for every source/<name>.ipynb; return the files that changed.

    With `check=True` nothing is written: the returned list names the stale or missing files.
    """
    source, dest = Path(source), Path(dest)
    notebooks = sorted(source.glob("*.ipynb"))
    if not notebooks:
        raise ReleaseError(f"no solution notebooks (*.ipynb) found in {source}")
    changed = []
    for path in notebooks:
        solution = nbformat.read(path, as_version=4)
        student = make_student_notebook(solution, where=str(path))
        text = nbformat.writes(student) + "\n"
        target = dest / path.name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            changed.append(target)
            if not check:
                dest.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
    return changed
