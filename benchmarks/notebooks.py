"""Time every chapter, solution and exercise notebook from a fresh kernel (the course's 20 s budget).

    python benchmarks/notebooks.py    # one row per notebook: seconds with and without kernel start
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 20.0


def time_notebook(path: Path) -> tuple[float, float]:
    """(seconds including kernel start, seconds of the cells alone) for one fresh-kernel run."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    start = time.perf_counter()
    with client.setup_kernel():
        cells_start = time.perf_counter()
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        end = time.perf_counter()
    return end - start, end - cells_start


def main() -> int:
    paths = [p for folder in ("chapters", "solutions", "exercises") for p in sorted((ROOT / folder).glob("*.ipynb"))]
    rows = []
    for path in tqdm(paths, desc="notebooks", unit="nb"):
        total, cells = time_notebook(path)
        rows.append((path.relative_to(ROOT).as_posix(), total, cells))
    print(f"\n{'notebook':45s} {'fresh kernel s':>14s} {'cells s':>8s}")
    for name, total, cells in rows:
        print(f"{name:45s} {total:14.1f} {cells:8.1f}{'  OVER BUDGET' if total > BUDGET_S else ''}")
    worst = max(r[1] for r in rows)
    print(f"slowest {worst:.1f} s (budget {BUDGET_S:.0f} s per notebook): {'met' if worst <= BUDGET_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
