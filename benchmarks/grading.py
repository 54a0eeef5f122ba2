"""How fast `attnkit grade` is: a synthetic class, and each notebook side by side with nbclient.

Prints two tables:
  1. nbclient executing each solution notebook in a fresh kernel (what nbgrader and otter do per
     notebook, before any grading) next to attnkit's cost per notebook in the class run below: the
     worker's wall time (fork, cells, every public and hidden check, exit) and the batch's CPU-core
     seconds per notebook (wall time x jobs / notebooks, startup included), with the ratios;
  2. a realistic class: STUDENTS students x every course notebook, as a class hands them in (nine in
     ten solved; one in twenty untouched stubs; one in twenty wrong: first exercise still a stub, or
     one exercise returning None) graded with `--jobs JOBS`, wall time end to end (including the
     zygote's start), against the target of 1,000 notebooks in 60 s (scaled: the rate is what counts).

Run: python benchmarks/grading.py [--students 200] [--jobs 2]   (about 1.5 min on 2 CPU cores).
`--class-only` skips table 1 (no Jupyter kernel needed). As root, `--as-user USER --user-python PY` then
grades the same class again as that ordinary user (PY: an interpreter it can run, with torch; a copy of
the course it can read is made) and prints both wall times side by side with their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from attnkit.grading import grade
from attnkit.grading.discover import released_notebooks

REPO = Path(__file__).resolve().parents[1]
TARGET_CLASS_SECONDS = 60.0  # per 1,000 notebooks: a class of another size gets the same rate
TARGET_RATIO = 0.1


def nbclient_seconds(path: Path) -> float:
    """Wall time of nbclient executing the notebook in a fresh python3 kernel (start to shutdown)."""
    from nbclient import NotebookClient  # only for table 1 (an ordinary user's bare venv may lack Jupyter)

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def variants(name: str) -> list[nbformat.NotebookNode]:
    """The four kinds of student in the synthetic class, for one notebook."""
    solved = nbformat.read(REPO / "solutions" / name, as_version=4)
    stubs = nbformat.read(REPO / "exercises" / name, as_version=4)
    exercise_cells = [i for i, c in enumerate(stubs.cells)
                      if c.cell_type == "code" and "NotImplementedError" in c.source]
    first_stub = nbformat.from_dict(solved)
    returns_none = nbformat.from_dict(solved)
    if exercise_cells and len(stubs.cells) == len(solved.cells):
        first_stub.cells[exercise_cells[0]] = stubs.cells[exercise_cells[0]]
        cell = nbformat.from_dict(stubs.cells[exercise_cells[-1]])
        lines = cell.source.splitlines()
        cell.source = "\n".join(line if "NotImplementedError" not in line else
                                line[: len(line) - len(line.lstrip())] + "return None" for line in lines)
        returns_none.cells[exercise_cells[-1]] = cell
    return [solved, stubs, first_stub, returns_none]


def make_class(root: Path, students: int, notebooks: list[str]) -> None:
    """Per notebook, student i hands in: i % 20 == 0 the stubs, == 1 a wrong one, else the solution."""
    kinds = {name: variants(name) for name in notebooks}
    for i in range(students):
        folder = root / f"student{i:03d}"
        folder.mkdir(parents=True)
        for name in notebooks:
            solved, stubs, first_stub, returns_none = kinds[name]
            kind = {0: stubs, 1: (first_stub, returns_none)[(i // 20) % 2]}.get(i % 20, solved)
            nbformat.write(kind, folder / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--class-only", action="store_true", help="skip the nbclient comparison")
    parser.add_argument("--as-user", metavar="USER", help="as root: grade the class again as this ordinary user")
    parser.add_argument("--user-python", metavar="PY", help="with --as-user: the interpreter that user runs")
    parser.add_argument("--rounds", type=int, default=2, help="with --as-user: root and user runs, alternating")
    args = parser.parse_args()
    if args.as_user and not (os.geteuid() == 0 and args.user_python):
        parser.error("--as-user needs root and --user-python")
    notebooks = [n for n in released_notebooks() if (REPO / "solutions" / n).exists()]
    if not notebooks:
        sys.exit("no solution notebooks in solutions/")

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    kernel = {}
    if not args.class_only:
        print(f"nbclient: each solution notebook in a fresh kernel ({len(notebooks)} notebooks)", flush=True)
        kernel = {name: nbclient_seconds(REPO / "solutions" / name) for name in notebooks}

    wall, summary = grade_class(args.students, notebooks, args.jobs)
    graded = summary.notebooks
    everything = [s for times in summary.worker_seconds.values() for s in times]
    core_seconds = wall * args.jobs / graded

    if kernel:
        print_kernel_table(notebooks, kernel, summary, core_seconds)
    print()
    print(f"class: {args.students} students x {len(notebooks)} notebooks = {graded} notebooks, "
          f"{sum(summary.rows.values())} rows, --jobs {args.jobs}, as uid {os.getuid()}, sandbox isolation "
          f"{summary.measures.get('isolation')}")
    per_1000 = wall * 1000 / graded
    print(f"wall time {wall:.1f} s end to end, {per_1000:.1f} s per 1,000 notebooks (target <= "
          f"{TARGET_CLASS_SECONDS:g} s: {'met' if per_1000 <= TARGET_CLASS_SECONDS else 'NOT met'}); "
          f"{graded / wall:.1f} notebooks/s; "
          f"worker p50 {statistics.median(everything):.3f} s, p95 {statistics.quantiles(everything, n=20)[-1]:.3f} s")
    print(f"rows by status: {dict(sorted(summary.rows.items()))}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.as_user:  # alternate, so that load from elsewhere falls on both alike
        root_walls, user_walls = [wall], []
        for round_ in range(args.rounds):
            user_walls.append(run_as_user(args.as_user, args.user_python, args.students, args.jobs))
            if round_ + 1 < args.rounds:
                root_walls.append(grade_class(args.students, notebooks, args.jobs)[0])
        root, user = statistics.median(root_walls), statistics.median(user_walls)
        print(f"\nside by side, alternating ({args.rounds} rounds): root {' '.join(f'{w:.1f}' for w in root_walls)} s, "
              f"{args.as_user} {' '.join(f'{w:.1f}' for w in user_walls)} s; medians {root:.1f} s and {user:.1f} s: "
              f"the ordinary user takes {user / root:.2f}x root's time (target <= 1.20)")


def grade_class(students: int, notebooks: list[str], jobs: int):
    """(wall seconds, summary) of grading a fresh realistic class in this process."""
    with tempfile.TemporaryDirectory(prefix="attnkit-bench-") as tmp:
        root = Path(tmp)
        make_class(root / "submissions", students, notebooks)
        start = time.perf_counter()
        summary = grade(root / "submissions", root / "out", jobs=jobs, progress=False)
        return time.perf_counter() - start, summary


def run_as_user(user: str, python: str, students: int, jobs: int) -> float:
    """This benchmark's class run as `user`, from a copy of the course it can read; its wall time."""
    import re
    import shutil
    import subprocess

    with tempfile.TemporaryDirectory(prefix="attnkit-bench-user-") as tmp:
        for name in ("attnkit", "solutions", "exercises", "benchmarks"):
            shutil.copytree(REPO / name, Path(tmp) / name, ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run(["chmod", "-R", "a+rX", tmp], check=True)
        env = [f"PYTHONPATH={tmp}", "MPLBACKEND=Agg", f"HOME={os.path.expanduser('~' + user)}", "PATH=/usr/bin:/bin"]
        print(f"\nthe same class as {user} ({python}):", flush=True)
        done = subprocess.run(["runuser", "-u", user, "--", "env", "-i", *env, python,
                               f"{tmp}/benchmarks/grading.py", "--class-only", "--students", str(students),
                               "--jobs", str(jobs)], cwd=tmp, capture_output=True, text=True)
    print(done.stdout + done.stderr[-2000:])
    found = re.search(r"wall time ([0-9.]+) s", done.stdout)
    if done.returncode != 0 or not found:
        sys.exit(f"the run as {user} failed (exit {done.returncode})")
    return float(found.group(1))


def print_kernel_table(notebooks: list[str], kernel: dict[str, float], summary, core_seconds: float) -> None:
    print()
    print(f"{'notebook':32} {'nbclient s':>10} {'worker s':>9} {'ratio':>7} {'core-s/nb':>10} {'ratio':>7}")
    for name in notebooks:
        worker = statistics.median(summary.worker_seconds[name])
        print(f"{name:32} {kernel[name]:10.2f} {worker:9.3f} {worker / kernel[name]:7.3f} "
              f"{core_seconds:10.3f} {core_seconds / kernel[name]:7.3f}")
    print("worker s: median over the class of this notebook's worker (fork, cells, all checks, exit);\n"
          "core-s/nb: the class run's wall time x jobs / notebooks, startup and judging included.")
    worst = max(core_seconds / k for k in kernel.values())
    print(f"worst ratio {worst:.3f} (target <= {TARGET_RATIO}): {'met' if worst <= TARGET_RATIO else 'NOT met'}")


if __name__ == "__main__":
    main()
