"""The `attnkit` command: a thin layer over the functions that do the work (and own the defaults)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence


def _version() -> str:
    """The installed distribution's version, else the package's own `__version__`."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("attnkit")
    except PackageNotFoundError:
        import attnkit

        return getattr(attnkit, "__version__", "unknown")


def _positive_seconds(option: str) -> Callable[[str], float]:
    """An argparse `type=` for a finite number > 0; the error names `option` and what was typed."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{option} must be a positive number of seconds, not {text!r}")
        return value

    return parse


def _integer_at_least(option: str, minimum: int) -> Callable[[str], int]:
    """An argparse `type=` for an integer >= `minimum`; the error names `option` and what was typed."""
    wanted = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{option} must be {wanted}, not {text!r}")
        return value

    return parse


def _release(args: argparse.Namespace) -> int:
    from attnkit.release import ReleaseError, release

    if args.nbgrader is not None:
        return _release_nbgrader(args)
    if args.force:
        print("attnkit release: --force goes with --nbgrader DIR", file=sys.stderr)
        return 2
    try:
        changed = release(args.source, args.dest, check=args.check)
    except (ReleaseError, OSError) as err:
        print(f"attnkit release: {err}", file=sys.stderr)
        return 2
    if args.check:
        for path in changed:
            print(f"stale: {path} (run `attnkit release`)", file=sys.stderr)
        return 1 if changed else 0
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print(f"{args.dest}/ is already current")
    return 0


def _start(args: argparse.Namespace) -> int:
    from attnkit.course import StartError, copy_course, launch

    try:
        report = copy_course(args.dir)
    except (StartError, OSError) as err:
        print(f"attnkit start: {err}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    if args.no_launch:
        print(f"to open it: cd {args.dir} && jupyter lab chapters/01_attention.ipynb")
        return 0
    print(f"starting JupyterLab in {args.dir} on chapter 1 (stop it with Ctrl-C)", flush=True)
    return launch(report.dest)


def _release_nbgrader(args: argparse.Namespace) -> int:
    from attnkit.nbgrader_export import export_nbgrader
    from attnkit.release import ReleaseError

    if args.check:
        print("attnkit release: --check and --nbgrader do not go together", file=sys.stderr)
        return 2
    try:
        written = export_nbgrader(args.source, args.nbgrader, force=args.force)
    except (ReleaseError, OSError) as err:
        print(f"attnkit release: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    print(f"next: cd {args.nbgrader} && nbgrader generate_assignment 01_attention  (see docs/grading.md)")
    return 0


def _given(args: argparse.Namespace, *names: str) -> dict:
    """The options the user typed (None means "use the function's default")."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _grade(args: argparse.Namespace) -> int:
    from attnkit.grading import GradingError, grade

    try:
        summary = grade(args.submissions, args.out, **_given(args, "jobs", "timeout", "seed", "memory_mb",
                                                             "output_kb", "notebooks"))
    except GradingError as err:
        print(f"attnkit grade: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnkit grade: interrupted; nothing written", file=sys.stderr)
        return 130
    print(summary.render())
    return 0


def _gradescope_bundle(args: argparse.Namespace) -> int:
    from attnkit.grading import GradingError
    from attnkit.grading.bundle import build_bundle

    try:
        path = build_bundle(args.zip, **_given(args, "notebooks", "timeout", "memory_mb", "torch"))
    except (GradingError, OSError) as err:
        print(f"attnkit gradescope-bundle: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}: upload it as the autograder of a Gradescope programming assignment")
    return 0


def _report(args: argparse.Namespace) -> int:
    from attnkit.grading.class_report import ReportError, write_class_report

    try:
        paths = write_class_report(args.out)
    except (ReportError, OSError) as err:
        print(f"attnkit report: error: {err}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnkit", description="Course tools for attnkit.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("start", help="copy the course into a folder of your own and open chapter 1",
                       description="Copy the chapters and exercise notebooks into DIR and start JupyterLab on "
                                   "chapter 1. A notebook you changed is never overwritten: the course's "
                                   "version is written beside it as NAME.new.ipynb. Safe to run again.")
    p.add_argument("dir", metavar="DIR", nargs="?", default="attention-course",
                   help="where to put the course (default: attention-course)")
    p.add_argument("--no-launch", action="store_true", help="only copy; do not start JupyterLab")
    p.set_defaults(run=_start)

    p = sub.add_parser("release", help="generate the student notebooks in exercises/ from solutions/")
    p.add_argument("--source", default="solutions", help="folder of solution notebooks (default: solutions)")
    p.add_argument("--dest", default="exercises", help="folder to write (default: exercises)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if dest is stale")
    p.add_argument("--nbgrader", metavar="DIR",
                   help="instead, write an nbgrader course into DIR: source/<notebook>/<notebook>.ipynb with "
                        "solution cells and graded test cells, and nbgrader_config.py")
    p.add_argument("--force", action="store_true", help="with --nbgrader: write into DIR even if it is not empty")
    p.set_defaults(run=_release)

    p = sub.add_parser("grade", help="grade SUBMISSIONS/<student>/<notebook>.ipynb in sandboxed workers",
                       description="Grade every student's notebooks with the public and hidden checks; write "
                                   "grades.csv, gradebook.csv, feedback/ and gradescope/ into OUT. The "
                                   "defaults are set in attnkit/grading/pipeline.py; see docs/grading.md.")
    p.add_argument("submissions", metavar="SUBMISSIONS", help="one folder per student, holding the notebooks")
    p.add_argument("--out", required=True, metavar="OUT", help="folder to write the results to")
    p.add_argument("--jobs", type=_integer_at_least("--jobs", 1), help="notebooks graded at once")
    p.add_argument("--timeout", type=_positive_seconds("--timeout"), metavar="SECONDS",
                   help="wall-clock limit per notebook, cells and checks")
    p.add_argument("--seed", type=_integer_at_least("--seed", 0),
                   help="seed of the hidden checks' inputs (same seed, same grades)")
    p.add_argument("--memory-mb", type=_integer_at_least("--memory-mb", 1),
                   help="memory per worker above the course's own")
    p.add_argument("--output-kb", type=_integer_at_least("--output-kb", 1), help="captured output per notebook")
    p.add_argument("--notebook", dest="notebooks", action="append", metavar="NAME",
                   help="grade only this released notebook (repeatable)")
    p.set_defaults(run=_grade)

    p = sub.add_parser("gradescope-bundle", help="write the Gradescope autograder zip",
                       description="Write a zip with setup.sh, run_autograder and the attnkit source, for a "
                                   "Gradescope programming assignment.")
    p.add_argument("zip", metavar="OUT.zip", help="the zip file to write")
    p.add_argument("--notebook", dest="notebooks", action="append", metavar="NAME",
                   help="the assignment's notebook (repeatable; default: all released notebooks)")
    p.add_argument("--timeout", type=_positive_seconds("--timeout"), metavar="SECONDS",
                   help="wall-clock limit per notebook")
    p.add_argument("--memory-mb", type=_integer_at_least("--memory-mb", 1),
                   help="memory per worker above the course's own")
    p.add_argument("--torch", help="the torch requirement setup.sh installs from the CPU wheel index")
    p.set_defaults(run=_gradescope_bundle)

    p = sub.add_parser("report", help="write OUT/class-report.html and .md again from OUT/grades.csv",
                       description="Regenerate the class report (which misconceptions the class has, points per "
                                   "exercise, totals, students likely stuck, run problems) from an existing "
                                   "OUT/grades.csv; see docs/grading.md.")
    p.add_argument("out", metavar="OUT", help="the output folder of `attnkit grade` (holding grades.csv)")
    p.set_defaults(run=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
