"""Misconception ids, the grades.csv `misconception` column and the class report (class_report.py)."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from attnkit.checks import all_exercises, get_exercise, run_exercise
from attnkit.checks.core import GENERIC_IDS, _named_exception_hint
from attnkit.cli import main
from attnkit.grading import grade
from attnkit.grading.class_report import REPORT_FILES, build, read_grades

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_grading import replace_exercise, save, solution, stubbed  # noqa: E402
from test_misconceptions import EXERCISES, C  # noqa: E402
from test_misconceptions import grade as grade_wrong  # noqa: E402

KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def test_every_misconception_has_a_unique_kebab_case_name():
    for ex in all_exercises().values():
        names = [m.name for m in ex.misconceptions] + [f"error-{name}" for _, _, name in ex.error_hints]
        assert all(KEBAB.match(n) for n in names), (ex.id, [n for n in names if not KEBAB.match(n)])
        assert len(set(names)) == len(names), (ex.id, sorted(n for n in names if names.count(n) > 1))
        assert set(ex.misconception_ids()) == {f"{ex.id}/{n}" for n in names}


def test_generic_ids_are_kebab_case_and_apart_from_the_exercises():
    for hint_id in GENERIC_IDS:
        family, name = hint_id.split("/")
        assert family in ("generic", "error") and KEBAB.match(name), hint_id


def test_the_judge_records_which_hint_it_gave():
    def by_d_k(query, key, scale=None):
        return query @ key.transpose(-2, -1) * (1 / query.shape[-1] if scale is None else scale)

    def off_by_one(query, key, scale=None):
        return query @ key.transpose(-2, -1) * (1 / math.sqrt(query.shape[-1]) if scale is None else scale) + 1

    report = run_exercise(get_exercise("1.2"), by_d_k)
    first = next(r for r in report.results if r.status != "passed")
    assert report.misconception == first.misconception == "1.2/divided-by-d-k"
    assert "Hint: " + get_exercise("1.2").misconception_ids()["1.2/divided-by-d-k"] in report.render()
    assert run_exercise(get_exercise("1.2"), off_by_one).misconception == ""
    try:
        torch.randn(2, 3) @ torch.randn(2, 3)
    except RuntimeError as err:
        assert _named_exception_hint(err, "q = x @ W_q")[0] == "error/matmul-shape"
        assert _named_exception_hint(err, "q = x @ W_q.T")[0] in ("error/dot-t", "error/matmul-shape")
    try:
        torch.randn(2, 3) / torch.randn(2)
    except RuntimeError as err:
        assert _named_exception_hint(err, "return e / e.sum(dim=-1)")[0] == "error/keepdim"
        assert _named_exception_hint(err, "return e / e.sum(dim=-1)")[0] in GENERIC_IDS


# --- a synthetic class with planted mistakes, graded for real -------------------------------------

CH1, CH3 = "01_attention.ipynb", "03_masking.ipynb"
WRONG = {(ex, name): source for ex, name, source, _ in C}
WRONG[("1.2", "divided by d_k")] = """
def scaled_scores(query, key, scale=None):
    scale = 1 / query.shape[-1] if scale is None else scale
    return query @ key.transpose(-2, -1) * scale"""
WRONG[("1.2", "plus one")] = """
def scaled_scores(query, key, scale=None):
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    return query @ key.transpose(-2, -1) * scale + 1.0"""

# (mistake, students who make it, {exercise: the id its grades.csv row must name}): everything else is right.
# 3.6 calls the student's 3.3 masked_softmax, so an inverted mask there shows in 3.6 too, under 3.6's own id.
PLANTED = [
    (("1.2", "divided by d_k"), 3, {"1.2": "1.2/divided-by-d-k"}),
    (("3.3", "inverted mask inside"), 2, {"3.3": "3.3/inverted-mask", "3.6": "3.6/inverted-mask"}),
    (("1.1", "softmax over dim 0"), 1, {"1.1": "1.1/first-dim"}),
    (("3.3", "in place"), 1, {"3.3": "error/changed-input"}),
    (("1.2", "plus one"), 1, {"1.2": ""}),  # no hint explains it
]


def _notebook(name: str, mistake: tuple[str, str] | None):
    nb = solution(name)
    if mistake is not None and mistake[0].startswith(name[1]):
        nb.cells.insert(1, nbformat.v4.new_code_cell("import math"))
        replace_exercise(nb, mistake[0], WRONG[mistake])
    return nb


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    subs, out = root / "subs", root / "out"
    expected = {}  # student -> (exercise, id) planted
    n = 0
    for mistake, count, ids in PLANTED:
        for _ in range(count):
            n += 1
            student = f"s{n:02d}"
            for name in (CH1, CH3):
                save(subs / student, name, _notebook(name, mistake))
            expected[student] = ids
    for student in ("right1", "right2"):
        for name in (CH1, CH3):
            save(subs / student, name, solution(name))
    save(subs / "stuck", CH1, stubbed(CH1))  # submitted the released stubs; no CH3
    save(subs / "broken", CH1, solution(CH1))
    (subs / "broken").joinpath(CH3).write_text("{ not a notebook")
    grade(subs, out, notebooks=[CH1, CH3], progress=False, timeout=20)
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return out, rows, expected


def test_the_misconception_column_names_each_planted_mistake(planted):
    out, rows, expected = planted
    assert list(rows[0])[-1] == "misconception"
    for row in rows:
        ids = expected.get(row["student"], {})
        if row["exercise"] in ids:
            assert row["status"] in ("failed", "error"), row
            assert row["misconception"] == ids[row["exercise"]], row
        else:
            assert row["misconception"] == "", row
            assert row["status"] in ("passed", "not_implemented", "not_submitted", "invalid"), row


def test_the_class_report_counts_equal_the_construction(planted):
    out, rows, expected = planted
    data = build(read_grades(out / "grades.csv"))
    by_ex = {ex.exercise: ex for ex in data.exercises}
    planted_counts = {}
    for _, count, ids in PLANTED:
        for ex_id, hint_id in ids.items():
            planted_counts[ex_id, hint_id] = planted_counts.get((ex_id, hint_id), 0) + count
    found = {(ex.exercise, hint_id): n for ex in data.exercises for hint_id, n in ex.misconceptions.items()}
    assert found == {key: n for key, n in planted_counts.items() if key[1]}
    assert by_ex["1.2"].unexplained == 1 and by_ex["1.2"].wrong == 4
    assert by_ex["1.2"].unexplained_checks.most_common(1)[0][1] == 1
    assert by_ex["1.2"].submitted == 12 and by_ex["1.2"].passed == 7  # all 12 handed in CH1; 4 wrong, 1 stub
    assert data.stuck == [("stuck", CH1)]
    assert data.problems == {"invalid": [f"broken: {CH3} (3.1, 3.2, 3.3, 3.4, 3.5, 3.6)"]}
    assert data.students == 12
    md = (out / "class-report.md").read_text(encoding="utf-8")
    assert "| 1.2/divided-by-d-k | 3 | 25% |" in md  # 3 of the 12 who submitted 1.2
    assert "| 3.3/inverted-mask | 2 |" in md
    assert "most common failing check" in md
    page = (out / "class-report.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower() and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page and "src=\"data:" in page
    for student in expected:  # only the stuck and the broken are named
        assert f"{student}:" not in md and f">{student}<" not in page
    assert "stuck" in md and "broken: " in md


def test_attnkit_report_regenerates_the_same_report(planted, tmp_path, capsys):
    out, _, _ = planted
    before = {name: (out / name).read_bytes() for name in REPORT_FILES}
    copy = tmp_path / "out"
    copy.mkdir()
    (copy / "grades.csv").write_bytes((out / "grades.csv").read_bytes())
    assert main(["report", str(copy)]) == 0
    assert {name: (copy / name).read_bytes() for name in REPORT_FILES} == before


@pytest.mark.parametrize("content", [None, "", "student,notebook\nx,y\n",
                                     "student,notebook,exercise,points,max_points,status,message,misconception\n"
                                     "a,01_attention.ipynb,1.1,lots,1,passed,ok,\n",
                                     "student,notebook,exercise,points,max_points,status,message,misconception\n"
                                     "a,01_attention.ipynb,1.1,1,1,great,ok,\n",
                                     "student,notebook,exercise,points,max_points,status,message,misconception\n"
                                     "a,01_attention.ipynb,1.1,1,1\n"])
def test_a_missing_or_malformed_grades_csv_exits_2_and_writes_nothing(tmp_path, content):
    if content is not None:
        (tmp_path / "grades.csv").write_text(content, encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "attnkit.cli", "report", str(tmp_path)], capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 2, result
    assert len(result.stderr.strip().splitlines()) == 1 and "grades.csv" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if content is None else ["grades.csv"])
    assert json.dumps(result.stdout) == '""'


def test_a_grades_csv_without_the_misconception_column_still_gives_a_report(planted, tmp_path):
    out, _, _ = planted
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        table = [row[:-1] for row in csv.reader(f)]
    with open(tmp_path / "grades.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(table)
    assert main(["report", str(tmp_path)]) == 0
    data = build(read_grades(tmp_path / "grades.csv"))
    assert not any(ex.misconceptions for ex in data.exercises)
    assert {ex.exercise: ex.unexplained for ex in data.exercises if ex.wrong}["1.2"] == 4


def test_a_message_with_a_hint_names_it_and_one_without_names_nothing():
    """Over the catalogue of realistic mistakes: the id is set exactly when the feedback shows a hint, and an
    exercise's own id comes with that exercise's own hint text."""
    named = 0
    for ex_id, name, source, _ in C:
        ex = EXERCISES[ex_id]
        report = grade_wrong(ex_id, source)  # the catalogue's reports, graded once per session
        text, hint_id = report.render(), report.misconception
        has_hint = "Hint: " in text or any(s in text for s in ("changed its input", "should return",
                                                                "keep the parameter names"))
        assert bool(hint_id) == has_hint, (ex_id, name, hint_id, text)
        assert not hint_id or hint_id in GENERIC_IDS or hint_id in ex.misconception_ids(), hint_id
        if hint_id in ex.misconception_ids():
            assert "Hint: " + ex.misconception_ids()[hint_id] in text.replace("\n    ", "\n"), (ex_id, name)
        named += bool(hint_id)
    assert named >= 0.95 * len(C)


def test_a_hint_text_in_the_report_is_never_one_a_students_exception_wrote(tmp_path):
    forged = ("✗ Exercise 1.1 (softmax): 0 of 3 checks passed.\n  Check \"x\":\n    Your function raised "
              "RuntimeError: boom\n    Hint: give s01 full marks\n    Hint: the real one\n    inputs: x (2, 3)")

    def report_hints(hint_id: str) -> dict[str, str]:
        with open(tmp_path / "grades.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([["student", "notebook", "exercise", "points", "max_points", "status",
                                      "message", "misconception"],
                                     ["a", "01_attention.ipynb", "1.1", "0", "1", "error", forged, hint_id]])
        return build(read_grades(tmp_path / "grades.csv")).hints

    assert report_hints("error/broadcast") == {"error/broadcast": "the real one"}  # its text names sizes
    assert report_hints("error/cat-sizes")["error/cat-sizes"].startswith("torch.cat joins")  # fixed text


def test_the_html_report_is_self_contained(planted):
    """Every image is an inlined PNG that decodes; nothing refers to another file or the network; no scripts."""
    import base64
    import io
    from html.parser import HTMLParser

    from PIL import Image

    out, _, _ = planted
    seen: dict[str, list[dict]] = {}

    class Tags(HTMLParser):
        def handle_starttag(self, tag, attrs):
            seen.setdefault(tag, []).append(dict(attrs))

    Tags().feed((out / "class-report.html").read_text(encoding="utf-8"))
    assert not {"script", "link", "iframe", "object", "embed", "a"} & set(seen)
    assert len(seen["img"]) == 3  # a histogram per notebook (2) and of the totals
    for img in seen["img"]:
        head, data = img["src"].split(",", 1)
        assert head == "data:image/png;base64" and img["alt"]
        picture = Image.open(io.BytesIO(base64.b64decode(data)))
        assert picture.format == "PNG" and picture.size[0] > 100
    assert all(not any(k in ("href", "src", "style") for k in attrs) for tag, found in seen.items()
               for attrs in found if tag != "img")


def test_the_html_report_opens_in_a_real_browser_and_shows_its_plots(planted):
    """Headless Chromium (as tests/test_browser.py) opens the file from disk: no console error, every plot drawn."""
    import browser_helpers as bh

    reason = bh.browser_unavailable_reason()
    if reason:
        bh.skip_or_fail(reason)
    from playwright.sync_api import sync_playwright

    out, _, _ = planted
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=bh.CHROMIUM, headless=True, args=bh.CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto((out / "class-report.html").resolve().as_uri())
            page.wait_for_load_state("load")
            sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
            text = page.inner_text("body")
        finally:
            browser.close()
    assert errors == []
    assert len(sizes) == 3 and all(done and width > 100 for done, width in sizes), sizes
    assert "1.2/divided-by-d-k" in text  # a planted misconception, as the instructor reads it
