"""The `attnkit` command: a thin layer over the functions that do the work (and own the defaults)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnkit", description="Course tools for attnkit.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("release", help="generate the student notebooks in exercises/ from solutions/")
    p.add_argument("--source", default="solutions", help="folder of solution notebooks (default: solutions)")
    p.add_argument("--dest", default="exercises", help="folder to write (default: exercises)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if dest is stale")
    p.set_defaults(run=_release)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
