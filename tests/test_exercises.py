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
    """Every numbered chapter in chapters/ (not an optional companion such as 01b) has graded exercises,
    in its own solutions/ and exercises/ notebook, and every exercise names an existing notebook."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    numbers = {p.name.split("_")[0].lstrip("0") for p in (repo / "chapters").glob("[0-9][0-9]_*.ipynb")}
    with_exercises = {ex_id.split(".")[0] for ex_id in IDS}
    assert numbers and numbers <= with_exercises, f"chapters without exercises: {sorted(numbers - with_exercises)}"
    for ex in EXERCISES.values():
        assert (repo / "solutions" / ex.notebook).exists() and (repo / "exercises" / ex.notebook).exists(), ex.id


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


# From chapter 6 on, each misconception is a whole wrong function (it runs on every input), so the report the
# student sees, after run_exercise has chosen among the cases' hints, must still name it. (Chapters 1-5 model
# some mistakes only on the inputs they apply to, raising elsewhere: their hints are checked per case above.)
WHOLE = [(ex_id, i) for ex_id, i in MISCONCEPTIONS if int(ex_id.split(".")[0]) >= 6]


@pytest.mark.parametrize("ex_id,index", WHOLE)
def test_misconception_fails_and_the_report_shows_its_hint(ex_id, index):
    ex = EXERCISES[ex_id]
    misconception = ex.misconceptions[index]
    report = run_exercise(ex, misconception.wrong)
    assert report.status != PASSED and report.points < ex.points
    assert "Hint: " + misconception.hint in report.render(), report.render()


# Wrong answers a student review found accepted or badly explained, each with what the check must say.
def _decode_reset_every_step(model, cache, idx, max_new_tokens):
    tokens = idx
    with torch.no_grad():
        for _ in range(max_new_tokens):
            cache.reset()  # right tokens, but every step recomputes the whole sequence
            next_token = model(tokens, cache, last_only=True)[:, -1].argmax(dim=-1, keepdim=True)
            tokens = torch.cat([tokens, next_token], dim=1)
    return tokens


def _mha_lower_triangle_for_any_mask(**inputs):
    mask = inputs.get("attn_mask")
    if mask is not None:  # ignores the mask it was given
        inputs["attn_mask"] = torch.ones(mask.shape, dtype=torch.bool).tril()
    return EXERCISES["4.3"].reference(**inputs)


def _with_none_bias(*args, **kwargs):
    W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o = EXERCISES["4.4"].reference(*args, **kwargs)
    return W_q, W_k, W_v, W_o, None, b_k, b_v, b_o


WRONG = {
    "5.3 reset at every step": ("5.3", _decode_reset_every_step, "the cache saved no work"),
    "4.3 tril for any mask": ("4.3", _mha_lower_triangle_for_any_mask, "differs from the expected values"),
    "4.1 numpy": ("4.1", lambda x, num_heads: EXERCISES["4.1"].reference(x, num_heads).numpy(),
                  "returned a NumPy ndarray"),
    "5.1 float64": ("5.1", lambda **kw: tuple(t.double() for t in EXERCISES["5.1"].reference(**kw)),
                    "dtype torch.float32 (as the inputs) but got torch.float64"),
    "4.4 None in the tuple": ("4.4", _with_none_bias, "returned a NoneType as item 4 (`b_q`)"),
    "5.2 inverted mask": ("5.2", EXERCISES["5.2"].misconceptions[-2].wrong, "Your mask is inverted"),
}


@pytest.mark.parametrize("name", WRONG)
def test_wrong_answer_fails_the_public_checks_with_a_clear_message(name):
    ex_id, wrong, message = WRONG[name]
    report = run_exercise(EXERCISES[ex_id], wrong)
    assert report.status != PASSED and report.points < EXERCISES[ex_id].points
    assert message in report.render(), report.render()


def test_resetting_the_cache_after_decoding_is_accepted():
    reference = EXERCISES["5.3"].reference

    def reset_after(model, cache, idx, max_new_tokens):
        tokens = reference(model, cache, idx, max_new_tokens)
        cache.reset()  # harmless: the next prompt starts on an empty cache either way
        return tokens

    assert run_exercise(EXERCISES["5.3"], reset_after, hidden=True, seed=5).status == PASSED


def test_weights_normalised_over_the_queries_are_named_so():
    def softmax_over_queries(**inputs):
        output, weights = EXERCISES["4.3"].reference(**inputs)
        return output, weights / weights.sum(dim=1, keepdim=True)  # (B, L, S): columns sum to 1

    assert "the queries' axis" in run_exercise(EXERCISES["4.3"], softmax_over_queries).render()
