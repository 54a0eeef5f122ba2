"""attnkit.widgets, chapter 7: the online-softmax explorer shows the true running max and sum, and redraws."""

from __future__ import annotations

import pytest
import torch
from widget_helpers import assert_redraws, controls

from attnkit import widgets as W


def test_each_step_is_the_max_and_sum_of_the_keys_read_so_far():
    for block in (2, 3, 4, 8):
        n = W.online_softmax_explorer_data(1, block)["n_tiles"]
        assert n == -(-16 // block)
        for tile in range(1, n + 1):
            data = W.online_softmax_explorer_data(tile, block)
            seen = data["scores"][: min(tile * block, 16)]
            step = data["step"]
            assert float(step["max_after"]) == float(seen.max())
            assert float(step["sum_after"]) == pytest.approx(float(torch.exp(seen - seen.max()).sum()), rel=1e-5)
            assert float(step["sum_rescaled"]) == pytest.approx(float(step["sum_before"] * step["correction"]))
        torch.testing.assert_close(data["weights"], data["softmax"])  # the last tile: the softmax itself


def test_the_max_moves_so_the_sum_is_corrected():
    steps = W.online_softmax_explorer_data(4, 4)["steps"]
    assert sum(float(s["correction"]) < 1 for s in steps[1:]) >= 2


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="`tile`"):
        W.online_softmax_explorer_data(9, 4)
    with pytest.raises(ValueError, match="`block_size`"):
        W.online_softmax_explorer_data(1, 0)


def test_every_control_redraws_and_the_tile_slider_follows_the_block_size():
    box = W.online_softmax_explorer()
    assert "tile 2/4" in assert_redraws(box, "tile", 2)
    text = assert_redraws(box, "block size", 8)
    assert controls(box)["tile"].max == 2 and "tile 2/2" in text
    assert_redraws(box, "tile", 1)


def test_the_last_tile_stays_the_last_when_the_block_size_changes():
    box = W.online_softmax_explorer()
    assert_redraws(box, "tile", 4)  # the last of 4 tiles
    assert "tile 6/6" in assert_redraws(box, "block size", 3)  # still the last: the final numbers to compare
    assert "tile 2/2" in assert_redraws(box, "block size", 8)
    assert_redraws(box, "tile", 1)
    assert "tile 1/" in assert_redraws(box, "block size", 4)  # not at the end: stays where it was
