"""Gradescope's side: `run_autograder` calls `python -m attnkit.grading.autograder` for each submission.

It grades /autograder/submission with the same steps, sandbox and judge as `attnkit grade` and writes
/autograder/results/results.json. The root folder (ATTNKIT_AUTOGRADER_ROOT or --root) can point at a
fake /autograder-shaped folder, which is how tests run it. Whatever goes wrong, a results.json is
written (score 0 and the reason), because without one Gradescope shows students a bare failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

__all__ = ["run_autograder", "main"]


def run_autograder(root: Path, config: dict) -> dict:
    """Grade root/submission into root/results/results.json; return the results."""
    from attnkit.grading.pipeline import grade_submission

    options = {k: config[k] for k in ("notebooks", "timeout", "memory_mb", "output_kb", "seed") if k in config}
    return grade_submission(root / "submission", **options)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnkit.grading.autograder")
    parser.add_argument("--root", default=os.environ.get("ATTNKIT_AUTOGRADER_ROOT", "/autograder"),
                        help="the /autograder folder (default: $ATTNKIT_AUTOGRADER_ROOT or /autograder)")
    parser.add_argument("--config", help="the bundle's config.json (default: ROOT/source/config.json)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    results_path = root / "results" / "results.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        config_path = Path(args.config) if args.config else root / "source" / "config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        results, code = run_autograder(root, config), 0
    except Exception as err:  # still give Gradescope a results.json that says what happened
        traceback.print_exc()
        results = {"score": 0, "output": f"The autograder itself failed ({type(err).__name__}: {err}). "
                                         "Please tell your instructor; your submission was not graded.",
                   "tests": [], "stdout_visibility": "hidden"}
        code = 1
    results_path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"score {results['score']}; wrote {results_path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
