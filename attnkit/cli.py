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

    p = sub.add_parser("release", help="generate the student notebooks in exercises/ from solutions/")
    p.add_argument("--source", default="solutions", help="folder of solution notebooks (default: solutions)")
    p.add_argument("--dest", default="exercises", help="folder to write (default: exercises)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if dest is stale")
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
