"""Every exercise of the course: its reference passes, its stub says "not implemented yet", and every
misconception it knows is caught by a public case with its own hint."""

import pytest
import torch

from attnkit.checks import all_exercises, run_exercise
from attnkit.checks.core import FAILED, NOT_IMPLEMENTED, PASSED, expected_outputs, judge, run_case

EXERCISES = all_exercises()
IDS = sorted(EXERCISES, key=lambda i: tuple(map(int, i.split("."))))
MISCONCEPTIONS = [(ex_id, i) for ex_id in IDS for i in range(len(EXERCISES[ex_id].misconceptions))]


def test_every_chapter_has_exercises():
    chapters = {ex_id.split(".")[0] for ex_id in IDS}
    assert {"1"} <= chapters


@pytest.mark.parametrize("ex_id", IDS)
def test_reference_passes_public_and_hidden_cases(ex_id):
    ex = EXERCISES[ex_id]
    report = run_exercise(ex, ex.reference, hidden=True, seed=123)
    assert report.status == PASSED, report.render(show_hidden=True)
    assert report.points == ex.points
    assert any(r.case.hidden for r in report.results), f"exercise {ex_id} has no hidden case"
    assert sum(not r.case.hidden for r in report.results) >= 2, f"exercise {ex_id} needs >= 2 public cases"


@pytest.mark.parametrize("ex_id", IDS)
def test_cases_are_deterministic(ex_id):
    ex = EXERCISES[ex_id]
    first, second = ex.cases(7, hidden=True), ex.cases(7, hidden=True)
    for a, b in zip(first, second, strict=True):
        assert a.name == b.name
        for key, value in a.inputs.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, b.inputs[key])


@pytest.mark.parametrize("ex_id", IDS)
def test_stub_says_not_implemented(ex_id):
    ex = EXERCISES[ex_id]

    def stub(*args, **kwargs):
        raise NotImplementedError(f"Exercise {ex_id}: replace this line with your code")

    report = run_exercise(ex, stub)
    assert report.status == NOT_IMPLEMENTED
    assert report.points == 0
    assert "not implemented yet" in report.render()


@pytest.mark.parametrize("ex_id", IDS)
def test_a_function_returning_garbage_fails_with_a_message(ex_id):
    ex = EXERCISES[ex_id]
    report = run_exercise(ex, lambda *a, **k: "forty-two")
    assert report.status != PASSED and report.points == 0
    assert "should return" in report.render()


@pytest.mark.parametrize("ex_id,index", MISCONCEPTIONS)
def test_misconception_is_caught_with_its_hint(ex_id, index):
    ex = EXERCISES[ex_id]
    misconception = ex.misconceptions[index]
    results = []
    for case in ex.cases():
        ran = run_case(ex, misconception.wrong, case)
        results.append(judge(ex, case, expected_outputs(ex, case), ran))
    failed = [r for r in results if r.status == FAILED]
    assert failed, f"no public case of {ex_id} tells this misconception from the right answer"
    assert any(misconception.hint in r.message for r in failed), failed[0].message
