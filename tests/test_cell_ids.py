"""Every notebook uses one cell-id scheme: chNN-### in chapters/, exNN-### in solutions/ and exercises/."""

import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for folder in ("chapters", "solutions", "exercises") for p in (REPO / folder).glob("[0-9]*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_cell_ids_follow_the_scheme(path):
    prefix = "ch" if path.parent.name == "chapters" else "ex"
    number = path.name.split("_")[0]
    pattern = re.compile(rf"{prefix}{re.escape(number)}-\d{{3}}[a-z]?")
    ids = [cell.get("id") for cell in nbformat.read(path, as_version=4).cells]
    bad = [i for i in ids if not (isinstance(i, str) and pattern.fullmatch(i))]
    assert not bad, f"{path.name}: ids {bad[:5]} do not follow {prefix}{number}-### (new cells: the next free number)"
    assert len(set(ids)) == len(ids), f"{path.name}: duplicate cell ids"
