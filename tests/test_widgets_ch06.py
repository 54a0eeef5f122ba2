"""attnkit.widgets, chapter 6: the RoPE offset and sampling explorers compute what they draw and redraw."""

from __future__ import annotations

import pytest
import torch
from widget_helpers import assert_redraws, controls

from attnkit import sampling_probs
from attnkit import widgets as W


def test_rope_scores_ignore_the_offset_unless_the_cache_bug_shifts_the_query():
    base = W.rope_offset_explorer_data(0)
    for offset in (1, 7, 40):
        data = W.rope_offset_explorer_data(offset)
        torch.testing.assert_close(data["rope"], base["rope"], atol=1e-4, rtol=1e-4)
        assert not torch.allclose(data["sinusoidal"], base["sinusoidal"], atol=1e-2)
        assert data["key_positions"].tolist() == list(range(offset, offset + 8))
        bugged = W.rope_offset_explorer_data(offset, cache_bug=True)
        assert bugged["query_position"] == 7
        assert (bugged["rope"] - base["rope"]).abs().max() > 0.05
    with pytest.raises(ValueError, match="offset"):
        W.rope_offset_explorer_data(-1)


def test_sampling_data_matches_the_library():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    data = W.sampling_explorer_data(logits, 0.8, 3, 0.9)
    torch.testing.assert_close(data["probs"], sampling_probs(logits[None], 0.8, 3, 0.9)[0])
    assert data["kept"].tolist() == [True, True, True, False, False]
    assert W.sampling_explorer_data(logits)["kept"].all()


def test_every_control_redraws():
    box = W.rope_offset_explorer()
    assert_redraws(box, "offset", 20)
    assert_redraws(box, "cache bug", True)
    box = W.sampling_explorer(torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0]), list("abcde"))
    assert_redraws(box, "temperature", 0.3)
    assert_redraws(box, "top-k", 2)
    controls(box)["top-k"].value = 0
    controls(box)["temperature"].value = 1.0
    assert_redraws(box, "top-p", 0.5)
