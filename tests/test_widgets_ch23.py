"""Chapters 2-3 explorers (attnkit.widgets): each redraws when its control moves, and its data is torch's."""

import math

import pytest
import torch
from widget_helpers import assert_redraws, controls, shown

from attnkit import widgets as W
from attnkit.masks import causal_mask


def test_projection_data_is_softmax_of_projected_scores():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 8, generator=g)  # (L, E)
    data = W.projection_explorer_data(x, seed=3, gain=2.0, D=4)
    q, k = x @ data["W_q"].T, x @ data["W_k"].T  # (L, D)
    torch.testing.assert_close(data["weights"], torch.softmax(q @ k.T / math.sqrt(4), dim=-1))
    assert data["W_q"].shape == (4, 8)
    assert torch.equal(W.projection_explorer_data(x, 3, 2.0)["weights"], data["weights"])  # seeded
    flat = W.projection_explorer_data(x, seed=3, gain=0.0)["weights"]
    torch.testing.assert_close(flat, torch.full((5, 5), 0.2))  # gain 0: every row uniform
    sharp = W.projection_explorer_data(x, seed=3, gain=4.0)["weights"]
    assert sharp.max(-1).values.mean() > data["weights"].max(-1).values.mean()  # bigger gain, sharper rows
    with pytest.raises(ValueError, match="x"):
        W.projection_explorer_data(x[0])


def test_projection_explorer_redraws_for_every_control():
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    box = W.projection_explorer(x, ["a", "robot", "must", "obey", "orders"])
    assert set(controls(box)) == {"projection seed", "W_q, W_k gain"}
    assert_redraws(box, "projection seed", 4)
    text = assert_redraws(box, "W_q, W_k gain", 0.0)
    assert text == "largest weight per row: [0.2, 0.2, 0.2, 0.2, 0.2]"


def test_prefix_data_is_the_top_left_corner_of_the_causal_pass():
    scores = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    weights = torch.softmax(scores.masked_fill(~causal_mask(4), float("-inf")), dim=-1)  # (L, L)
    data = W.prefix_explorer_data(weights, 3)
    assert torch.equal(data["weights"], weights[:3, :3]) and torch.equal(data["mask"], causal_mask(3))
    torch.testing.assert_close(data["row"], torch.softmax(scores[2, :3], dim=0))  # prefix 3 read at its last word
    assert data["row"].sum().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="n"):
        W.prefix_explorer_data(weights, 5)


def test_prefix_explorer_redraws_and_names_the_newest_word():
    scores = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    weights = torch.softmax(scores.masked_fill(~causal_mask(4), float("-inf")), dim=-1)
    box = W.prefix_explorer(weights, ["robot", "must", "obey", "orders"])
    assert shown(box)[1].startswith("robot must:")
    text = assert_redraws(box, "prefix length", 4)
    assert text.startswith("robot must obey orders: robot ")
    assert_redraws(box, "prefix length", 1)
    assert shown(box)[1] == "robot: robot 100%"
