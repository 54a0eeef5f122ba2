"""Chapter 7's checks beyond the common ones of tests/test_exercises.py: the issue's misconceptions, the traps
the hints talk about, the shortcuts refused, and the library's versions of the same ideas passing."""

import dataclasses

import torch

from attnkit.checks import get_exercise, run_exercise
from attnkit.checks.ch07_efficient_attention import EXERCISES
from attnkit.checks.core import PASSED


def test_the_issue_s_misconceptions_are_named():
    names = {ex.id: {m.name for m in ex.misconceptions} for ex in EXERCISES}
    assert {ex.id: ex.function for ex in EXERCISES} == {"7.1": "online_softmax", "7.2": "tiled_attention",
                                                       "7.3": "linear_attention_recurrent",
                                                       "7.4": "sliding_window_mask"}
    assert {"no-rescale", "sum-not-rescaled", "max-starts-at-zero"} <= names["7.1"]
    assert {"mask-same-tile", "mask-ignored", "fully-masked-tile-nan", "fully-masked-row-nan"} <= names["7.2"]
    assert {"state-not-accumulated", "normaliser-missing"} <= names["7.3"]
    assert {"off-by-one-window", "top-left-alignment", "symmetric-window"} <= names["7.4"]


def test_the_cases_contain_the_traps_the_hints_talk_about():
    tiled = {c.name: c.inputs for c in get_exercise("7.2").cases()}
    masks = [inputs["attn_mask"].expand(2, 5, 12) for inputs in tiled.values() if inputs["key"].shape == (2, 12, 6)]
    assert len(masks) == 3
    assert any((~m[..., :4]).all(dim=-1).any() and m.any(dim=-1).all() for m in masks)  # a masked first tile
    assert any((~m).all(dim=-1).any() for m in masks)  # a fully masked row
    online = get_exercise("7.1").cases()
    assert any((c.inputs["scores"] < 0).all() for c in online)  # all negative: a max starting at 0 shows
    window = get_exercise("7.4").cases()
    assert any(c.inputs["L"] < c.inputs["S"] for c in window)  # the alignment matters only when L < S


def _unguarded(ex_id):
    """The exercise as checked without its guards (attnkit's own versions are switched off in the real check)."""
    return dataclasses.replace(get_exercise(ex_id), call=None)


def test_library_versions_pass_the_exercises():
    from attnkit import dilated_window_mask, flash_attention, linear_attention_rnn, online_softmax

    def online(scores, values, block_size):  # the library's stats, then the output from them, block by block
        maxes, sums = online_softmax(scores, block_size)
        out = 0
        for j in range(0, scores.shape[-1], block_size):
            weights = torch.exp(scores[..., j:j + block_size] - maxes[-1][..., None]) / sums[-1][..., None]
            out = out + weights @ values[..., j:j + block_size, :]
        return out, maxes[-1], sums[-1]

    def tiled(query, key, value, attn_mask, block_size):
        return flash_attention(query, key, value, attn_mask, block_q=3, block_k=block_size)

    for ex_id, fn in (("7.1", online), ("7.2", tiled), ("7.3", lambda query, key, value:
                                                        linear_attention_rnn(query, key, value)[0]),
                      ("7.4", dilated_window_mask)):
        report = run_exercise(_unguarded(ex_id), fn, hidden=True, seed=1)
        assert report.status == PASSED, report.render(show_hidden=True)
        report = run_exercise(get_exercise(ex_id), fn)  # the real check refuses attnkit's own version
        assert report.status != PASSED and all(r.misconception == f"{ex_id}/error-shortcut"
                                               for r in report.results), report.render()
    assert run_exercise(get_exercise("7.1"), online).results[0].status != PASSED


def test_the_shortcut_is_refused_however_it_was_imported_and_restored_afterwards():
    import attnkit
    import attnkit.sparse_attention as sparse

    namespace = {"torch": torch}
    exec("from attnkit import dilated_window_mask as band\n"  # noqa: S102
         "def sliding_window_mask(L, S, window):\n    return band(L, S, window)\n", namespace)
    report = run_exercise(get_exercise("7.4"), namespace["sliding_window_mask"])
    assert report.results[0].misconception == "7.4/error-shortcut", report.render()
    assert "Hint:" in report.render()
    assert namespace["band"] is attnkit.dilated_window_mask is sparse.dilated_window_mask
    assert attnkit.dilated_window_mask(3, 3, 2).dtype == torch.bool


def test_a_whole_row_softmax_is_told_to_work_by_blocks():
    def whole(scores, values, block_size):
        m = scores.amax(dim=-1)
        e = torch.exp(scores - m[..., None])  # (B, L, S): every score of the row at once
        return e @ values / e.sum(dim=-1)[..., None], m, e.sum(dim=-1)

    report = run_exercise(get_exercise("7.1"), whole)
    assert report.status != PASSED and report.passed == 3, report.render()
    assert report.results[-1].misconception == "7.1/error-whole-row", report.render()


def test_a_function_that_builds_all_the_scores_at_once_is_told_to_tile():
    def whole(query, key, value, attn_mask, block_size):
        scores = query @ key.transpose(-2, -1) / query.shape[-1] ** 0.5  # (B, L, S): the whole matrix
        scores = scores.masked_fill(~attn_mask, float("-inf"))
        lse = torch.logsumexp(scores, dim=-1)
        weights = torch.exp(scores - lse.masked_fill(torch.isneginf(lse), 0)[..., None])
        return weights @ value, lse

    report = run_exercise(get_exercise("7.2"), whole)
    assert report.status != PASSED and report.passed == 3, report.render()  # right values, wrong method
    text = report.render()
    assert "tile by tile" in text and "one tile at a time" in text, text
    assert report.results[-1].misconception == "7.2/error-full-scores"
