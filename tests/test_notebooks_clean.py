"""Notebooks diff cleanly: valid, no outputs or execution counts, no machine-specific metadata."""

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for folder in ("chapters", "solutions", "exercises") for p in (ROOT / folder).glob("*.ipynb"))
ALLOWED_NOTEBOOK_METADATA = {"kernelspec", "language_info"}


def test_the_course_has_its_notebooks():
    names = {p.relative_to(ROOT).as_posix() for p in NOTEBOOKS}
    assert "chapters/01_attention.ipynb" in names and "solutions/01_attention.ipynb" in names
    assert "chapters/01b_classic_attention.ipynb" in names  # chapter 1's optional companion


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.relative_to(ROOT).as_posix() for p in NOTEBOOKS])
def test_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    stray = set(nb.metadata) - ALLOWED_NOTEBOOK_METADATA
    assert not stray, f"stray notebook metadata {stray}"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for i, cell in enumerate(nb.cells):
        assert set(cell.metadata) <= {"tags"}, f"cell {i}: stray metadata {dict(cell.metadata)}"
        if cell.cell_type == "markdown":
            # A "\top" written through a Python string becomes TAB + "op" and renders as " op".
            bad = sorted({repr(ch) for ch in cell.source if ord(ch) < 32 and ch != "\n"})
            assert not bad, f"markdown cell {i} holds control characters {bad} (an unescaped backslash?)"
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} has committed outputs"
            assert cell.execution_count is None, f"cell {i} has an execution count"
