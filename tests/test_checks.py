"""The self-check core: every student mistake becomes a message, never a traceback from the checker."""

import math

import numpy as np
import pytest
import torch

import attnkit.checks as checks
from attnkit import check
from attnkit.checks import get_exercise, run_exercise
from attnkit.checks.core import ERROR, FAILED, PASSED, OutputTypeError, to_plain


def good_attention(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights


def test_check_prints_pass(capsys):
    check("1.4", good_attention)
    out = capsys.readouterr().out
    assert out.startswith("✓ Exercise 1.4 (scaled_dot_product_attention): all 3 checks passed.")


def test_check_finds_the_function_by_name_in_the_caller(capsys):
    scaled_dot_product_attention = good_attention  # noqa: F841  (looked up by check)
    check("1.4")
    assert "all 3 checks passed" in capsys.readouterr().out


def test_check_reports_missing_function(capsys):
    check("1.4")
    assert "no function named `scaled_dot_product_attention` was found" in capsys.readouterr().out


def test_unknown_exercise_lists_known_ids():
    with pytest.raises(ValueError, match=r"Expected an exercise id such as 1\.1, 1\.2.* but got '9\.9'"):
        check("9.9", good_attention)


def test_exception_in_student_code_is_a_message_naming_the_line(capsys):
    def scaled_dot_product_attention(query, key, value, attn_mask=None):
        return query @ key  # wrong: key not transposed

    check("1.4", scaled_dot_product_attention)
    out = capsys.readouterr().out
    assert "Your function raised RuntimeError" in out
    assert "return query @ key" in out
    assert "Traceback" not in out


def test_shape_mismatch_names_expected_and_actual():
    def transposed(query, key, value, attn_mask=None):
        out, w = good_attention(query, key, value, attn_mask)
        return out.transpose(-2, -1), w

    report = run_exercise(get_exercise("1.4"), transposed)
    text = report.render()
    assert "Expected `output` shape to be (3, 4) but got (4, 3)" in text
    assert "transposed" in text


def test_value_mismatch_shows_a_row_both_ways_and_the_inputs():
    def unscaled(query, key, value, attn_mask=None):
        return good_attention(query * math.sqrt(query.shape[-1]), key, value, attn_mask)

    text = run_exercise(get_exercise("1.4"), unscaled).render()
    assert "expected output[0, :] = [" in text and "got      output[0, :] = [" in text
    assert "inputs: query (3, 4) float32, key (3, 4) float32, value (3, 4) float32" in text
    assert "Hint: Divide the scores by sqrt(d_k)" in text


def test_nan_output_is_explained():
    def naive_softmax(x):
        return torch.exp(x) / torch.exp(x).sum(-1, keepdim=True)

    report = run_exercise(get_exercise("1.1"), naive_softmax)
    assert report.status == FAILED
    assert "contains NaN" in report.render() and "subtract the row maximum" in report.render()


class AlwaysEqual:
    def __eq__(self, other):
        return True

    def __array__(self, *args, **kwargs):
        return np.zeros(3)


class SneakyTensor(torch.Tensor):
    def __eq__(self, other):
        return True


def test_objects_that_claim_to_equal_anything_earn_nothing():
    for wrong in (AlwaysEqual(), torch.zeros(3).as_subclass(SneakyTensor)):
        report = run_exercise(get_exercise("1.1"), lambda x, w=wrong: w)
        assert report.points == 0 and report.status == ERROR
        assert "should return a torch.Tensor" in report.render()


def test_numbers_are_accepted_and_numpy_is_refused_by_name():
    assert to_plain(1.5, 1)[0].item() == 1.5
    with pytest.raises(OutputTypeError, match=r"NumPy ndarray as item 1 \(`weights`\): return a torch.Tensor"):
        to_plain((torch.ones(2), np.ones((2, 2))), 2, ("output", "weights"))
    with pytest.raises(OutputTypeError, match=r"NoneType as item 0 \(`output`\)"):
        to_plain((None, torch.ones(2)), 2, ("output", "weights"))


def test_a_function_without_return_is_asked_about_it():
    def softmax(x):
        torch.softmax(x, dim=-1)  # computed, never returned

    text = run_exercise(get_exercise("1.1"), softmax).render()
    assert "returned None: did you forget `return`?" in text and "?." not in text, text


def test_an_infinite_expected_value_is_shown_not_subtracted():
    from attnkit.checks.core import _first_difference

    want = torch.tensor([[1.0, float("-inf")], [2.0, 3.0]])
    got = torch.tensor([[1.0, 0.0], [2.0, 3.5]])
    text = _first_difference("lse", want, got, "differs from the expected values")
    assert "at index (0, 1) expected -inf, got 0" in text and "e+308" not in text, text
    text = _first_difference("lse", want, torch.tensor([[1.0, float("-inf")], [2.0, 3.5]]), "differs")
    assert "largest difference 0.5" in text, text


def test_changing_inputs_in_place_is_reported():
    def softmax(x):
        x -= x.max(dim=-1, keepdim=True).values
        return torch.softmax(x, dim=-1)

    report = run_exercise(get_exercise("1.1"), softmax)
    assert report.status == ERROR
    assert "changed its input `x` in place" in report.render()


def test_partial_credit_is_the_share_of_cases_passed():
    def only_2d(x):
        if x.dim() != 2:
            raise ValueError("I only handle matrices")
        return torch.softmax(x, dim=-1)

    report = run_exercise(get_exercise("1.1"), only_2d)
    passed = sum(r.status == PASSED for r in report.results)
    assert 0 < passed < len(report.results)
    assert report.points == round(passed / len(report.results), 2)


def test_hidden_failures_do_not_show_their_inputs():
    def only_public(x):
        if x.dim() == 3:
            return torch.zeros_like(x)
        return torch.softmax(x, dim=-1)

    report = run_exercise(get_exercise("1.1"), only_public, hidden=True)
    text = report.render()
    assert report.status == FAILED
    assert "hidden check failed" in text and "inputs:" not in text


def test_recorder_hook_records_instead_of_running(capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(checks, "_recorder", lambda ex, fn: seen.append((ex.id, fn)))
    check("1.4", good_attention)
    assert seen == [("1.4", good_attention)]
    assert capsys.readouterr().out == ""


def test_renamed_parameters_get_a_hint_to_keep_the_stub_names():
    def scaled_dot_product_attention(q, k, v, mask=None):
        return good_attention(q, k, v, mask)

    text = run_exercise(get_exercise("1.4"), scaled_dot_product_attention).render()
    assert "unexpected keyword argument 'query'" in text
    assert "calls `scaled_dot_product_attention(query=..., key=..., value=...)`: keep the parameter names" in text


def test_weights_normalised_over_the_wrong_dimension_get_a_generic_hint():
    from attnkit.checks import Case, Exercise

    exercise = Exercise(id="0.1", notebook="x.ipynb", function="weights", title="softmax",
                        reference=lambda scores: torch.softmax(scores, dim=-1),
                        make_cases=lambda g: [Case("(2, 3, 4) scores", {"scores": torch.randn(2, 3, 4, generator=g)})],
                        output_names=("weights",))
    text = run_exercise(exercise, lambda scores: torch.softmax(scores, dim=1)).render()
    assert "Hint: Your `weights` (2, 3, 4) sum to 1 along its dimension 1 (the queries' axis, not the keys')" in text
    doubled = run_exercise(exercise, lambda scores: 2 * torch.softmax(scores, dim=-1)).render()
    assert "along its dimension" not in doubled and "do not sum to 1" in doubled


def test_nan_with_a_mask_names_fully_masked_rows_first():
    def masked_nan(query, key, value, attn_mask=None):
        out, w = good_attention(query, key, value, attn_mask)
        if attn_mask is not None:
            w = w.clone()
            w[..., 0, :] = float("nan")
        return out, w

    text = run_exercise(get_exercise("1.4"), masked_nan).render()
    assert "NaN comes from a row whose every score is -inf" in text


def test_padding_changes_output_tells_the_buggy_function_from_a_fix():
    from attnkit.checks import padding_changes_output
    from attnkit.checks.ch03_masking import buggy_padded_self_attention

    assert padding_changes_output(buggy_padded_self_attention) > 1.0
    assert padding_changes_output(get_exercise("3.5").reference) < 1e-5
    assert padding_changes_output(lambda x, W_q, W_k, W_v, lengths: x @ W_v.T) == 0.0  # no attention at all


def test_exception_hints_read_the_students_line():
    from attnkit.checks.core import exception_hint

    def raised(fn):
        try:
            fn()
        except Exception as err:  # noqa: BLE001 (we want whatever torch raises)
            return err
        raise AssertionError("did not raise")

    matmul = raised(lambda: torch.randn(3, 4) @ torch.randn(3, 4))
    assert "nn.Linear's layout" in exception_hint(matmul, "q = x @ W_q")
    batched = raised(lambda: torch.randn(2, 3, 4) @ torch.randn(2, 3, 4).T)
    assert ".transpose(-2, -1)" in exception_hint(batched, "scores = q @ k.T")
    view = raised(lambda: torch.randn(2, 3, 4).transpose(1, 2).view(2, 12))
    assert ".reshape" in exception_hint(view, "")
    dtype = raised(lambda: torch.randn(3, 4) @ torch.randn(4, 3).double())
    assert "float64" in exception_hint(dtype, "")
    keepdim = raised(lambda: torch.randn(3, 5) / torch.randn(3, 5).sum(dim=-1))
    assert "keepdim=True" in exception_hint(keepdim, "return e / e.sum(dim=-1)")
    assert exception_hint(ValueError("something else entirely"), "") is None


def test_integer_outputs_returned_as_equal_floats_are_a_message_not_a_crash():
    text = run_exercise(get_exercise("5.5"), lambda n_cached, L: (
        torch.arange(n_cached, n_cached + L).float(),
        torch.ones(L, n_cached + L, dtype=torch.bool).tril(diagonal=n_cached))).render()
    assert "Expected `positions` to have dtype torch.int64 but got torch.float32" in text
    assert "integer tensor" in text


def test_wrong_temperature_is_named_with_the_size_it_equals():
    def sqrt_of_model_width(x, W_q, W_k, W_v):  # 2.2 scaled by sqrt(E) = sqrt(8), not sqrt(D) = sqrt(2)
        q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T
        w = torch.softmax(q @ k.transpose(-2, -1) / x.shape[-1] ** 1 / 2, dim=-1)  # precedence slip: (.. / E) / 2
        return w @ v, w

    text = run_exercise(get_exercise("2.2"), sqrt_of_model_width).render()
    assert "softmax of the right scores multiplied by" in text and "precedence" in text
