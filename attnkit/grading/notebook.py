"""Read a submitted notebook (never modifying it) and turn its code cells into plain Python.

Bad input is data: an empty file, invalid JSON, a file that is not a notebook or an old nbformat
each raise `InvalidNotebook` with a reason a student can act on. IPython syntax (`%matplotlib
inline`, `!pip install`, `%%time`) is rewritten by IPython's own `TransformerManager` into calls to
`get_ipython()`, which the worker answers with a small shim instead of a kernel.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Cell", "InvalidNotebook", "read_code_cells", "to_python", "MAX_NOTEBOOK_BYTES"]

MAX_NOTEBOOK_BYTES = 50 * 2**20  # larger than any course notebook with its outputs
# Only cells with one of these can hold IPython syntax; the rest skip the (slower) transformer.
_MAYBE_IPYTHON = re.compile(r"^\s*[%!]|[?]\s*$|=\s*[%!]", re.MULTILINE)


class InvalidNotebook(ValueError):
    """The file cannot be graded as a notebook; the message says why, for the student."""


@dataclass(frozen=True)
class Cell:
    """A code cell: its position among all the notebook's cells (1-based, as Jupyter shows) and code."""

    index: int
    source: str  # plain Python, IPython syntax already transformed


def read_code_cells(path: Path) -> tuple[list[Cell], str]:
    """The notebook's code cells in order, and a note (e.g. "converted from nbformat 3") or ""."""
    data = _read_bytes(path)
    if not data.strip():
        raise InvalidNotebook(f"the file is empty ({len(data)} bytes): save the notebook in Jupyter "
                              "(File > Save) before uploading it.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InvalidNotebook(f"the file is not UTF-8 text (byte {err.start}): upload the .ipynb "
                              "file itself, not an export or an archive.") from None
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidNotebook(f"the file is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
                              "it was probably cut short or edited outside Jupyter. Re-download it "
                              "from Jupyter and submit again.") from None
    if not isinstance(nb, dict) or not ("cells" in nb or "worksheets" in nb):
        raise InvalidNotebook("the file is JSON but not a Jupyter notebook (it has no cells).")
    note = ""
    major = nb.get("nbformat")
    if major != 4:
        nb, note = _upgrade(text, major)
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise InvalidNotebook("the notebook's `cells` is not a list: the file is damaged.")
    code = []
    for index, cell in enumerate(cells, 1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(s for s in source if isinstance(s, str))
        if not isinstance(source, str):
            raise InvalidNotebook(f"cell {index} has no readable source: the file is damaged.")
        code.append(Cell(index, to_python(source)))
    return code, note


def _read_bytes(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise InvalidNotebook(f"the file is {size / 2**20:.0f} MiB, over the {MAX_NOTEBOOK_BYTES // 2**20} MiB "
                              "limit: clear the outputs (Edit > Clear All Outputs), save and submit again.")
    with open(path, "rb") as f:  # read only: submissions are never modified
        return f.read(MAX_NOTEBOOK_BYTES + 1)


def _upgrade(text: str, major: object) -> tuple[dict, str]:
    """Convert an older nbformat (v3's worksheets) to v4 with nbformat itself."""
    import nbformat

    if not isinstance(major, int) or major > 4:
        raise InvalidNotebook(f"unsupported notebook format version {major!r} (expected 4).")
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as err:  # nbformat raises many types for damaged files
        raise InvalidNotebook(f"an old notebook format (nbformat {major}) that could not be converted: "
                              f"{type(err).__name__}: {str(err)[:200]}") from None
    return nb, f"converted from nbformat {major} to 4 before grading."


def to_python(source: str) -> str:
    """Plain Python for a code cell: IPython magics and shell lines become `get_ipython()` calls."""
    if not _MAYBE_IPYTHON.search(source):
        return source
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # leave it: compiling it in the worker reports the syntax error to the student
        return source
