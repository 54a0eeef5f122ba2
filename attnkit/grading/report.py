"""What the grader writes: grades.csv, gradebook.csv, feedback/<student>.md, gradescope/<student>.json,
and the class report (class_report.py).

Every message comes from `ExerciseReport.render()`, the self-check's own text, which never shows a
hidden case's inputs; the notebook notes name cells and errors, never test code.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from attnkit.checks.core import PASSED
from attnkit.grading.statuses import EXPLANATIONS, LIMITS, Status, Verdict

__all__ = ["Row", "rows", "write_all", "feedback_markdown", "gradescope_results", "render_summary",
           "sandbox_lines", "GRADES_COLUMNS"]

# `misconception`: the id of the hint the message gives ("1.2/divided-by-d-k", "generic/wrong-axis"), or "".
GRADES_COLUMNS = ["student", "notebook", "exercise", "points", "max_points", "status", "message", "misconception"]


@dataclass(frozen=True)
class Row:
    """One line of grades.csv."""

    student: str
    notebook: str
    exercise: str  # "1.3", or "" for a file that was not graded
    points: float
    max_points: float
    status: str
    message: str
    misconception: str = ""  # id of the hint in `message`, "" when it gives none


def _num(x: float) -> str:
    return f"{round(x, 2):g}"


def rows(grading) -> list[Row]:
    """Every row, students in order, then notebooks in course order, then exercises."""
    out = []
    for student in grading.discovery.students:
        for notebook in grading.options.notebooks:
            result = grading.results.get((student, notebook))
            for report in result.reports if result else []:
                ex = report.exercise
                out.append(Row(student, notebook, ex.id, report.points, ex.points, report.status, report.render(),
                               getattr(report, "misconception", "")))
        for stray in grading.discovery.strays:
            if stray.student == student:
                out.append(Row(student, "", "", 0.0, 0.0, stray.status, f"{stray.name}: {stray.message}"))
    return out


def write_all(grading) -> None:
    if grading.options.out is None:
        return
    out = Path(grading.options.out)
    out.mkdir(parents=True, exist_ok=True)  # where student code ran unisolated it may have removed it
    all_rows = rows(grading)
    _write_csv(out / "grades.csv", GRADES_COLUMNS,
               ([r.student, r.notebook, r.exercise, _num(r.points), _num(r.max_points), r.status, r.message,
                 r.misconception] for r in all_rows))
    notebooks = grading.options.notebooks
    stems = [Path(n).stem for n in notebooks]
    book = []
    for student in grading.discovery.students:
        got = [sum(r.points for r in all_rows if r.student == student and r.notebook == n) for n in notebooks]
        top = [sum(r.max_points for r in all_rows if r.student == student and r.notebook == n) for n in notebooks]
        book.append([student, *map(_num, got), _num(sum(got)), _num(sum(top))])
    _write_csv(out / "gradebook.csv", ["student", *stems, "total", "max_total"], book)
    written = {"feedback": set(), "gradescope": set()}
    for student in grading.discovery.students:
        name = _file_name(student)
        results = [grading.results[student, n] for n in notebooks if (student, n) in grading.results]
        strays = [s for s in grading.discovery.strays if s.student == student]
        (out / "feedback" / f"{name}.md").write_text(feedback_markdown(student, results, strays), encoding="utf-8")
        data = gradescope_results(results, strays)
        (out / "gradescope" / f"{name}.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n",
                                                         encoding="utf-8")
        written["feedback"].add(f"{name}.md")
        written["gradescope"].add(f"{name}.json")
    for folder, keep in written.items():  # students removed since the last run
        for path in (out / folder).iterdir():
            if path.name not in keep and path.suffix in (".md", ".json") and path.is_file():
                path.unlink()
    from attnkit.grading.class_report import ReportError, write_class_report

    try:  # from the grades.csv just written, exactly as `attnkit report OUT` would
        write_class_report(out)
    except (ReportError, OSError) as err:
        grading.summary.warnings.append(f"class report not written: {err}")


def _write_csv(path: Path, header: list[str], body: Iterable[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(body)


def _file_name(student: str) -> str:
    """The student's folder name is already a valid file name; keep it (non-ASCII included)."""
    cleaned = "".join(c if c.isprintable() and c not in "/\\" else "_" for c in student)
    return cleaned if cleaned not in ("", ".", "..") else "_"


def feedback_markdown(student: str, results: list, strays: list) -> str:
    """One student's feedback: per notebook, each exercise's points and the self-check's message."""
    got = sum(r.points for res in results for r in res.reports)
    top = sum(r.exercise.points for res in results for r in res.reports)
    lines = [f"# Feedback for {student}", "", f"**Total: {_num(got)} / {_num(top)} points**", ""]
    for res in results:
        nb_got = sum(r.points for r in res.reports)
        nb_top = sum(r.exercise.points for r in res.reports)
        lines += [f"## {res.notebook}: {_num(nb_got)} / {_num(nb_top)}", ""]
        verdicts = {(r.status, r.message) if isinstance(r, Verdict) else None for r in res.reports}
        if len(res.reports) > 1 and len(verdicts) == 1 and None not in verdicts:
            status, message = next(iter(verdicts))  # one reason for the whole notebook: say it once
            names = ", ".join(r.exercise.id for r in res.reports)
            lines += [f"Exercises {names}: {status}, 0 points.", "", "```text", message, "```", ""]
            lines += ["Notes on this notebook:", ""] + [f"- {note}" for note in res.notes] + [""] if res.notes else []
            continue
        for report in res.reports:
            ex = report.exercise
            lines += [f"### Exercise {ex.id}: {ex.title} ({_num(report.points)} / {_num(ex.points)})", "",
                      "```text", report.render(), "```", ""]
        if res.notes:
            lines += ["Notes on this notebook:", ""] + [f"- {note}" for note in res.notes] + [""]
    if strays:
        lines += ["## Files that were not graded", ""] + [f"- `{s.name}`: {s.message}" for s in strays] + [""]
    lines += ["Run each exercise's `check(...)` cell in your notebook to see the same messages as you work."]
    return "\n".join(lines) + "\n"


def gradescope_results(results: list, strays: list, execution_time: float | None = None) -> dict:
    """Gradescope's results.json: a test per exercise (hidden cases folded in, never described)."""
    tests = []
    for res in results:
        for report in res.reports:
            ex = report.exercise
            tests.append({
                "name": f"Exercise {ex.id}: {ex.title} ({ex.function})",
                "number": ex.id,
                "score": round(report.points, 2),
                "max_score": ex.points,
                "status": "passed" if report.status == PASSED else "failed",
                "visibility": "visible",
                "output": report.render(),
                "output_format": "text",
                "tags": [res.notebook, report.status],
            })
    notes = [f"{res.notebook}: {note}" for res in results for note in res.notes]
    notes += [f"{s.name}: {s.message}" for s in strays]
    output = "Each test below is one exercise: public checks and hidden checks together.\n"
    if notes:
        output += "\nNotes:\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    seconds = execution_time if execution_time is not None else sum(res.seconds for res in results)
    return {
        "score": round(sum(t["score"] for t in tests), 2),
        "execution_time": round(seconds, 2),
        "output": output,
        "output_format": "md",
        "stdout_visibility": "hidden",
        "visibility": "visible",
        "tests": tests,
    }


def render_summary(summary) -> str:
    """The end-of-run summary: what was graded, how it went, and which protections were in force."""
    counts = summary.rows
    graded = sum(n for s, n in counts.items() if s not in (Status.UNEXPECTED_FILE, Status.DUPLICATE))
    by_status = ", ".join(f"{counts[s]} {s}" for s in EXPLANATIONS if counts.get(s))
    n = {status: counts.get(status, 0) for status in Status}
    lines = [f"Graded {summary.students} students, {summary.notebooks} notebooks, {graded} exercise rows in "
             f"{summary.seconds:.1f} s.",
             f"Rows by status: {by_status or 'none'}.",
             f"Errors: {n[Status.ERROR]} exercise rows raised, {n[Status.INVALID]} rows from unreadable notebooks; "
             f"limits hit: {n[Status.TIMEOUT]} timeouts, {n[Status.MEMORY]} memory, {n[Status.OUTPUT_LIMIT]} output, "
             f"{n[Status.CRASHED]} crashed ({sum(n[s] for s in LIMITS)} in all)."]
    if summary.cell_problems:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(summary.cell_problems.items()))
        lines.append(f"Cells that failed (graded anyway, noted in the feedback): {kinds}.")
    if summary.leftovers or summary.retries:
        lines.append(f"Killed {summary.leftovers} processes left running by submissions; re-ran "
                     f"{summary.retries} notebooks without an exercise that crashed their worker.")
    if summary.tampered:
        lines.append(f"Changed files outside their sandbox (restored; no points): {', '.join(summary.tampered)}.")
    lines += sandbox_lines(summary.measures)
    lines += [f"Warning: {w}" for w in summary.warnings]
    if summary.out is not None:
        lines.append(f"Wrote {summary.out}/grades.csv, gradebook.csv, class-report.html, class-report.md, "
                     "feedback/, gradescope/.")
    return "\n".join(lines)


_ISOLATION = {
    "root-namespaces": "as root: an unprivileged uid per job slot ({uids}) in private mount and network "
                       "namespaces",
    "user-namespaces": "as your user, in an unprivileged user namespace with private mount, network and pid "
                       "namespaces, every capability dropped",
    "root-uids": "as root without namespaces ({refused}): an unprivileged uid per job slot ({uids}), "
                 "files protected by their permissions only",
    "none": "NOT isolated ({refused}): student code runs as your user",
}

# What the probe worker tried from inside: the folders student code must not change (or read), then the rest.
_FOLDERS = [("submission", "submissions"), ("output", "the output folder"), ("course", "the course files")]
_PROBES = [("network_blocked", "no network", "network reachable"),
           ("grader_unreachable", "the grader's processes out of reach", "the grader's processes can be signalled")]


def _folder_measures(inside: dict, on: list[str], off: list[str]) -> list[str]:
    """Sort the folder probes into `on` and `off`; return the names of the folders left writable."""
    writable = []
    for key, name in _FOLDERS:
        if f"{key}_read_only" not in inside:
            continue
        hidden, read_only = inside.get(f"{key}_hidden"), inside[f"{key}_read_only"]
        if read_only:
            on.append(f"{name} {'hidden' if hidden else 'read-only'}")
        else:
            writable.append(name)
            off.append(f"{name} writable{'' if hidden else ' and readable'}")
    return writable


def sandbox_lines(m: dict) -> list[str]:
    """What the sandbox does and what its probe worker measured: "Sandbox: ..." and "Not protected: ..."."""
    if not m:
        return ["Sandbox: not started (nothing ran)"]
    limits, inside = m.get("limits", {}), m.get("inside", {})
    uids = f"{m['uids'][0]}-{m['uids'][-1]}" if m.get("uids") else ""
    refused = m.get("namespaces_refused") or "namespaces refused"
    isolation = m.get("isolation", "none")
    on, off = [], []
    if "error" in inside:
        off.append(f"the probe worker failed ({inside['error']}): nothing was measured")
    guarded = _folder_measures(inside, on, off) or (["submissions", "the output folder"] if "error" in inside else [])
    for key, good, bad in _PROBES:
        if key in inside:
            (on if inside[key] else off).append(good if inside[key] else bad)
    if "private_visible" in inside:
        if inside["private_visible"]:
            off.append(f"your home folder and /run are visible ({', '.join(inside['private_visible'][:3])}, ...)")
        else:
            on.append("your home folder and /run emptied")
    if inside.get("writable_mounts"):
        off.append(f"writable mounts: {', '.join(inside['writable_mounts'])}")
    if inside.get("capabilities"):
        off.append(f"capabilities kept ({inside['capabilities']:#x})")
    on = [_ISOLATION.get(isolation, isolation).format(uids=uids, refused=refused),
          "measured from inside a probe worker: " + (", ".join(on) or "nothing protected")]
    on += [f"forked worker per notebook from a pre-warmed zygote, own session, killed at "
           f"{limits.get('timeout', 0):g} s (soft limits per cell and exercise before that)",
           f"memory cap {limits.get('memory_mb')} MiB above the worker's {m.get('vmsize_mb')} MiB (RLIMIT_AS)",
           f"output cap {limits.get('output_kb')} KiB (RLIMIT_FSIZE, SIGXFSZ ignored)",
           f"RLIMIT_NPROC {limits.get('nproc')}" if isolation != "none" else "no process cap",
           "verdicts computed in the grader from raw numeric arrays (no pickles)"]
    if m.get("subreaper"):
        on.append("orphaned processes re-parented to the zygote and killed (child subreaper)")
    else:
        off.append("child subreaper: a daemon that escapes its process group may survive")
    if m.get("no_new_privs"):
        on.append("no_new_privs (setuid programs do not elevate)")
    lines = ["Sandbox: " + "; ".join(on)]
    if off:
        lines.append("Not protected: " + "; ".join(off) + "." + (
            f" So the grader keeps a copy of {' and '.join(guarded)}, compares them after each notebook and "
            "restores any change (that notebook gets 'tampered' and no points), grading one notebook at a time. "
            "For full isolation, grade in a container (docs/grading.md)." if guarded else ""))
    lines += [f"Warning: pre-import failed: {problem}" for problem in m.get("warm_problems", [])]
    return lines
