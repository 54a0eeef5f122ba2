"""Chapter 6's checks beyond the common ones of tests/test_exercises.py: what the chapter promises, and
the library's own versions passing the exercises."""

import torch

from attnkit.checks import get_exercise, run_exercise
from attnkit.checks.ch06_transformer_block import EXERCISES
from attnkit.checks.core import PASSED


def test_the_exercises_cover_what_the_chapter_promises():
    ids = {ex.id: ex.function for ex in EXERCISES}
    assert ids == {"6.1": "apply_rope", "6.2": "cross_attention", "6.3": "transformer_block", "6.4": "sample_top_p"}
    hints = {ex.id: " ".join(m.hint for m in ex.misconceptions) for ex in EXERCISES}
    assert "interleaved" in hints["6.1"] and "start" in hints["6.1"] and "rotated v" in hints["6.1"]
    assert "swapped" in hints["6.2"] and "wrong axis" in hints["6.2"]
    assert "post-norm" in hints["6.3"] and "NORMALISED" in hints["6.3"]
    assert "crosses p" in hints["6.4"] and "renormalise" in hints["6.4"] and "Temperature comes first" in hints["6.4"]


def test_library_versions_pass_the_exercises():
    from attnkit import TransformerBlock, apply_rope, sampling_probs

    def rope(q, k, v, start):
        return apply_rope(q, start), apply_rope(k, start), v

    def block(x, params, n_head):
        module = TransformerBlock(x.shape[-1], n_head)
        module.load_state_dict(params)
        return module(x)

    def top_p(logits, p, temperature):
        return sampling_probs(logits, temperature, top_p=p)

    for ex_id, fn in (("6.1", rope), ("6.3", block), ("6.4", top_p)):
        report = run_exercise(get_exercise(ex_id), fn, hidden=True, seed=1)
        assert report.status == PASSED, report.render(show_hidden=True)


def test_a_student_top_p_in_float64_is_told_about_the_dtype():
    ex = get_exercise("6.4")
    report = run_exercise(ex, lambda logits, p, temperature: ex.reference(logits.double(), p, temperature))
    assert "dtype" in report.render()
    assert torch.get_default_dtype() == torch.float32
