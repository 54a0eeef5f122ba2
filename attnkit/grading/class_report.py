"""The class report: what the class got right and wrong, from grades.csv alone.

`attnkit grade` writes OUT/class-report.html (self-contained: inline CSS, plots as base64 PNG, no scripts)
and its markdown twin OUT/class-report.md after grades.csv; `attnkit report OUT` writes them again from
OUT/grades.csv. Sections: per notebook and exercise the counts, mean points and the points' distribution;
per exercise the misconceptions the feedback named (the `misconception` column) and the most common failing
check of the wrong answers no hint explained; the distribution of totals; the students who are likely stuck
and what the run hit. Students are named only in those last two, where the instructor must act.
"""

from __future__ import annotations

import base64
import collections
import csv
import html
import io
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from attnkit.grading.statuses import EXPLANATIONS, Status

__all__ = ["ReportError", "Record", "read_grades", "build", "render_markdown", "render_html",
           "write_class_report", "REPORT_FILES"]

REPORT_FILES = ("class-report.html", "class-report.md")

_COLUMNS = ["student", "notebook", "exercise", "points", "max_points", "status", "message", "misconception"]
_ID = re.compile(r"^[0-9A-Za-z._]+/[a-z0-9]+(-[a-z0-9]+)*$")
_CHECK = re.compile(r'^\s*Check "(.*)":\s*$', re.M)
_HINT = re.compile(r"^\s*Hint: (.*)$", re.M)
_WRONG = (Status.FAILED, Status.ERROR)
_RUN_PROBLEMS = (Status.TIMEOUT, Status.MEMORY, Status.OUTPUT_LIMIT, Status.CRASHED, Status.INVALID,
                 Status.TAMPERED)
# Hints without a "Hint: " line in the message: what they say, in a few words.
_NO_HINT_LINE = {
    "error/parameter-names": "The checker calls the function with the stub's parameter names: keep them.",
    "error/output-type": "The function should return a torch.Tensor (or a tuple of them).",
    "error/changed-input": "The function changed an input in place: work on a copy or out of place.",
}


class ReportError(Exception):
    """grades.csv is missing or malformed: no report is written."""


@dataclass(frozen=True)
class Record:
    """One row of grades.csv, parsed."""

    student: str
    notebook: str
    exercise: str
    points: float
    max_points: float
    status: str
    message: str
    misconception: str


def read_grades(path: str | Path) -> list[Record]:
    """Every row of grades.csv, checked; ReportError (one line, naming the file) if it is not one."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
    except FileNotFoundError:
        raise ReportError(f"{path} does not exist: run `attnkit grade SUBMISSIONS --out OUT` first") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ReportError(f"{path} cannot be read as a CSV file ({err})") from None
    if not table or table[0] not in (_COLUMNS, _COLUMNS[:-1]):
        raise ReportError(f"{path} is not a grades.csv: its header must be {','.join(_COLUMNS)}")
    width, statuses = len(table[0]), {s.value for s in Status}
    records = []
    for line, row in enumerate(table[1:], start=2):
        if not row:
            continue
        if len(row) != width:
            raise ReportError(f"{path}, line {line}: {len(row)} fields, expected {width}")
        try:
            points, max_points = float(row[3]), float(row[4])
        except ValueError:
            raise ReportError(f"{path}, line {line}: points {row[3]!r} / {row[4]!r} are not numbers") from None
        if not (math.isfinite(points) and math.isfinite(max_points) and 0 <= points <= max_points + 1e-9):
            raise ReportError(f"{path}, line {line}: points {row[3]} of {row[4]} are out of range")
        if row[5] not in statuses:
            raise ReportError(f"{path}, line {line}: unknown status {row[5]!r}")
        misconception = row[7] if width == len(_COLUMNS) else ""
        if misconception and not _ID.match(misconception):
            raise ReportError(f"{path}, line {line}: {misconception!r} is not a misconception id")
        records.append(Record(row[0], row[1], row[2], points, max_points, row[5], row[6], misconception))
    return records


# ---------------------------------------------------------------------------------------------------
# What the report says (plain data), then two renderings of it.
# ---------------------------------------------------------------------------------------------------


@dataclass
class ExerciseStats:
    notebook: str
    exercise: str
    max_points: float
    submitted: int = 0
    passed: int = 0
    points: list[float] = field(default_factory=list)  # one per student who submitted
    wrong: int = 0  # failed or error
    misconceptions: collections.Counter = field(default_factory=collections.Counter)
    unexplained: int = 0  # wrong answers without a hint
    unexplained_checks: collections.Counter = field(default_factory=collections.Counter)


@dataclass
class ClassData:
    students: int
    exercises: list[ExerciseStats]
    notebooks: list[tuple[str, int, int, float, list[float]]]  # name, submitted, all passed, max, points
    totals: list[float]  # per student
    max_total: float
    hints: dict[str, str]  # misconception id -> hint text
    stuck: list[tuple[str, str]]  # (student, notebook)
    problems: dict[str, list[str]]  # status -> "student: notebook (exercises)"
    not_graded: int  # unexpected files and duplicates


def build(records: list[Record]) -> ClassData:
    """Count everything the report shows."""
    students = list(dict.fromkeys(r.student for r in records))
    stats: dict[str, ExerciseStats] = {}
    by_notebook: dict[str, dict[str, list[Record]]] = {}
    totals = collections.Counter({s: 0.0 for s in students})
    hints: dict[str, str] = {}
    hit: dict[str, dict[tuple[str, str], list[str]]] = collections.defaultdict(dict)
    not_graded = 0
    for r in records:
        totals[r.student] += r.points
        if not r.exercise:
            not_graded += 1
            continue
        ex = stats.setdefault(r.exercise, ExerciseStats(r.notebook, r.exercise, r.max_points))
        by_notebook.setdefault(r.notebook, {}).setdefault(r.student, []).append(r)
        if r.status in _RUN_PROBLEMS:
            hit[r.status].setdefault((r.student, r.notebook), []).append(r.exercise)
        if r.status == Status.NOT_SUBMITTED:
            continue
        ex.submitted += 1
        ex.passed += r.status == Status.PASSED
        ex.points.append(r.points)
        if r.status in _WRONG:
            ex.wrong += 1
            if r.misconception:
                ex.misconceptions[r.misconception] += 1
                if r.misconception not in hints:
                    hints[r.misconception] = _hint_text(r)
            else:
                ex.unexplained += 1
                found = _CHECK.search(r.message)
                ex.unexplained_checks[found.group(1) if found else "a hidden check"] += 1
    hints.update({k: v for k, v in _known_hints().items() if k in hints})
    notebooks, stuck = [], []
    for notebook, per_student in by_notebook.items():
        handed_in = {s: rows for s, rows in per_student.items()
                     if any(r.status != Status.NOT_SUBMITTED for r in rows)}
        top = sum(r.max_points for r in next(iter(per_student.values())))
        points = [sum(r.points for r in rows) for rows in handed_in.values()]
        passed = sum(all(r.status == Status.PASSED for r in rows) for rows in handed_in.values())
        notebooks.append((notebook, len(handed_in), passed, top, points))
        for student, rows in handed_in.items():
            ran = any(r.status in (*_WRONG, Status.NOT_IMPLEMENTED, Status.MISSING) for r in rows)
            if ran and sum(r.points for r in rows) == 0:
                stuck.append((student, notebook))
    max_total = sum(top for _, _, _, top, _ in notebooks)
    problems = {status: [f"{student}: {notebook} ({', '.join(exercises)})"
                         for (student, notebook), exercises in found.items()] for status, found in hit.items()}
    return ClassData(len(students), list(stats.values()), notebooks, [totals[s] for s in students], max_total,
                     hints, stuck, problems, not_graded)


def _hint_text(r: Record) -> str:
    """The hint a row's message gives: its last "Hint: " line (an exception's own text, which the student's
    code chose, comes before the hint), or what a hint without such a line says."""
    found = _HINT.findall(r.message)
    return found[-1].strip() if found else _NO_HINT_LINE.get(r.misconception, "")


def _known_hints() -> dict[str, str]:
    """The exact hint of every exercise's own misconception and error hint, and of the exception hints that
    are fixed text (the others, and the generic value hints, name sizes or outputs: taken from a message)."""
    from attnkit.checks import all_exercises
    from attnkit.checks.core import _EXCEPTION_HINTS

    found = {f"error/{name}": hint for _, hint, name in _EXCEPTION_HINTS if isinstance(hint, str)}
    for ex in all_exercises().values():
        found.update(ex.misconception_ids())
    return found


def _num(x: float) -> str:
    return f"{round(x, 2):g}"


def _pct(n: int, of: int) -> str:
    return f"{100 * n / of:.0f}%" if of else "–"


def _mean(values: list[float]) -> str:
    return _num(statistics.fmean(values)) if values else "–"


def _distribution(values: list[float]) -> str:
    """'0 ×3 · 0.5 ×2 · 1 ×15': each points value with how many students got it."""
    counts = collections.Counter(round(v, 2) for v in values)
    return " · ".join(f"{_num(v)} ×{n}" for v, n in sorted(counts.items())) or "–"


def _bins(values: list[float], top: float, n: int = 10) -> list[tuple[float, float, int]]:
    """n equal bins over [0, top] (the last one closed): (low, high, count)."""
    top = top or max(values, default=1.0) or 1.0
    edges = [top * i / n for i in range(n + 1)]
    counts = [0] * n
    for v in values:
        counts[min(n - 1, int(v / top * n)) if v < top else n - 1] += 1
    return [(edges[i], edges[i + 1], counts[i]) for i in range(n)]


def _sections(data: ClassData) -> list[tuple[str, list]]:
    """The report as (heading, blocks); a block is a paragraph (str), a table (list of rows, the first the
    header), or ("plot", name, bins) for a histogram."""
    out: list[tuple[str, list]] = []
    mean_total = _mean(data.totals)
    out.append(("Class report", [
        f"{data.students} students; mean total {mean_total} of {_num(data.max_total)} points"
        + (f", median {_num(statistics.median(data.totals))}" if data.totals else "") + ". "
        "Made from grades.csv: the counts name no student except in the last two sections."]))
    table = [["Notebook", "Submitted", "All passed", "Mean points", "Points: value ×students"]]
    for name, submitted, passed, top, points in data.notebooks:
        table.append([name, str(submitted), f"{passed} ({_pct(passed, submitted)})",
                      f"{_mean(points)} of {_num(top)}", _distribution(points)])
    blocks: list = [table]
    extable = [["Exercise", "Notebook", "Submitted", "Passed", "Mean points", "Points: value ×students"]]
    for ex in data.exercises:
        extable.append([ex.exercise, ex.notebook, str(ex.submitted), f"{ex.passed} ({_pct(ex.passed, ex.submitted)})",
                        f"{_mean(ex.points)} of {_num(ex.max_points)}", _distribution(ex.points)])
    blocks += ["Mean points are over the students who submitted the notebook.", extable]
    blocks += [("plot", name, _bins(points, top, 10)) for name, _, _, top, points in data.notebooks]
    out.append(("Notebooks and exercises", blocks))
    blocks = ["Per exercise, the hints the feedback gave to wrong answers (failed or error), with how many "
              "students got each (and their share of those who submitted the exercise); then the wrong answers "
              "no hint explained, with their most common failing check."]
    for ex in data.exercises:
        if not ex.wrong:
            continue
        blocks.append(f"Exercise {ex.exercise} ({ex.notebook}): wrong answers from {ex.wrong} of the "
                      f"{ex.submitted} students who submitted it.")
        rows = [["Misconception", "Students", "Share", "Hint"]]
        for hint_id, n in ex.misconceptions.most_common():
            rows.append([hint_id, str(n), _pct(n, ex.submitted), data.hints.get(hint_id, "")])
        if ex.unexplained:
            check, n = ex.unexplained_checks.most_common(1)[0]
            rows.append(["(no hint)", str(ex.unexplained), _pct(ex.unexplained, ex.submitted),
                         f'most common failing check: "{check}" ({n} of {ex.unexplained})'])
        blocks.append(rows)
    if len(blocks) == 1:
        blocks.append("No wrong answers.")
    out.append(("Misconceptions", blocks))
    out.append(("Totals", [f"Each student's total over every notebook, of {_num(data.max_total)} points.",
                           ("plot", "class totals", _bins(data.totals, data.max_total, 10))]))
    stuck = [["Student", "Notebook"]] + [list(pair) for pair in data.stuck]
    out.append(("Likely stuck", ["Students who submitted a notebook and scored 0 on all of it (its code ran)."]
                + ([stuck] if data.stuck else ["None."])))
    blocks = ["What the run hit: exercises that timed out, ran out of memory or output, crashed, came from an "
              "unreadable notebook, or changed files outside the sandbox."]
    rows = [["Status", "Notebooks", "What it means", "Student: notebook (exercises)"]]
    for status in _RUN_PROBLEMS:
        hit = data.problems.get(status, [])
        if hit:
            rows.append([status.value, str(len(hit)), EXPLANATIONS[status], "; ".join(hit)])
    blocks.append(rows if len(rows) > 1 else "Nothing.")
    if data.not_graded:
        blocks.append(f"{data.not_graded} files were not graded (not a released notebook, or a duplicate).")
    out.append(("Run problems", blocks))
    return out


def render_markdown(data: ClassData) -> str:
    lines: list[str] = []
    for i, (heading, blocks) in enumerate(_sections(data)):
        lines += [("# " if i == 0 else "## ") + heading, ""]
        for block in blocks:
            if isinstance(block, str):
                lines += [block, ""]
            elif isinstance(block, tuple):
                _, name, bins = block
                top = max((n for _, _, n in bins), default=0) or 1
                lines += [f"Histogram: {name}", "", "| Points | Students | |", "|---|---:|---|"]
                lines += [f"| {_num(lo)}–{_num(hi)} | {n} | {'█' * round(20 * n / top)} |" for lo, hi, n in bins]
                lines.append("")
            else:
                lines.append("| " + " | ".join(_md_cell(c) for c in block[0]) + " |")
                lines.append("|" + "---|" * len(block[0]))
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block[1:]]
                lines.append("")
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


_CSS = ("body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .5em;"
        "text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}"
        ".plots{display:flex;flex-wrap:wrap;gap:1em}")


def render_html(data: ClassData) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>Class report</title>", f"<style>{_CSS}</style></head><body>"]
    for i, (heading, blocks) in enumerate(_sections(data)):
        parts.append(f"<h{1 if i == 0 else 2}>{html.escape(heading)}</h{1 if i == 0 else 2}>")
        plots = [b for b in blocks if isinstance(b, tuple)]
        for block in blocks:
            if isinstance(block, str):
                parts.append(f"<p>{html.escape(block)}</p>")
            elif isinstance(block, list):
                head, *body = block
                parts.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>")
                parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body]
                parts.append("</table>")
        if plots:
            parts.append('<div class="plots">')
            parts += [f'<img alt="Histogram of {html.escape(name)} points" src="data:image/png;base64,'
                      f'{_histogram_png(name, bins)}">' for _, name, bins in plots]
            parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _histogram_png(name: str, bins: list[tuple[float, float, int]]) -> str:
    """A small bar chart of the bins, as base64 PNG (drawn without pyplot: no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 2.4), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = (bins[0][1] - bins[0][0]) if bins else 1
    ax.bar([lo for lo, _, _ in bins], [n for _, _, n in bins], width=width * 0.9, align="edge", color="#4c72b0")
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("points", fontsize=8)
    ax.set_ylabel("students", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.yaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def write_class_report(out: str | Path) -> list[Path]:
    """Read OUT/grades.csv and write OUT/class-report.html and .md (both or neither); return their paths.

    Raises ReportError when grades.csv is missing or malformed.
    """
    out = Path(out)
    data = build(read_grades(out / "grades.csv"))
    texts = {REPORT_FILES[0]: render_html(data), REPORT_FILES[1]: render_markdown(data)}
    staged = []
    try:
        for name, text in texts.items():
            tmp = out / f".{name}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)  # umask applies
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            staged.append((tmp, out / name))
        for tmp, final in staged:
            os.replace(tmp, final)
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return [final for _, final in staged]
