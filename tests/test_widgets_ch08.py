"""attnkit.widgets, chapter 8: the paging explorer shows the continuous-batching run's blocks, and redraws."""

from __future__ import annotations

import pytest
import torch
from widget_helpers import assert_redraws, controls

from attnkit import widgets as W
from attnkit.paged_cache import blocks_needed


@pytest.mark.parametrize("block_size", [2, 4, 8])
def test_every_step_holds_exactly_the_blocks_of_the_running_requests(block_size):
    n_steps = W.paging_explorer_data(0, block_size)["n_steps"]
    pool = 64 // block_size
    for step in range(n_steps):
        data = W.paging_explorer_data(step, block_size)
        held = [b for t in data["tables"].values() for b in t]
        assert len(held) == len(set(held)) == int((data["owner"] >= 0).sum())
        assert int(data["free_history"][step]) == pool - len(held)
        for request, table in data["tables"].items():
            assert (data["owner"][table] == request).all()
            assert len(table) == blocks_needed(data["lengths"][request], block_size)
        assert 0 <= data["allocated"] - data["used"] < block_size * max(len(data["tables"]), 1)
    assert int(data["free_history"][-1]) == pool  # everything returned at the end


def test_requests_arrive_join_and_finish_in_the_events():
    schedule = W.serving_schedule()
    events = [e for s in range(W.paging_explorer_data(0)["n_steps"]) for e in W.paging_explorer_data(s)["events"]]
    for i in range(len(schedule)):
        assert f"request {i} arrives" in events
        assert any(e.startswith(f"request {i} joins") for e in events)
    assert any("finishes" in e for e in events)
    with pytest.raises(ValueError, match="step"):
        W.paging_explorer_data(999)


def test_the_schedule_is_seeded():
    a, b = W.serving_schedule(), W.serving_schedule()
    assert all(torch.equal(x.prompt, y.prompt) and x.arrival == y.arrival for x, y in zip(a, b, strict=True))


def test_every_control_redraws():
    box = W.paging_explorer()
    assert_redraws(box, "step", 5)
    assert_redraws(box, "block size", 8)
    assert_redraws(box, "step", 12)


def test_the_step_slider_follows_the_run_of_the_block_size():
    box = W.paging_explorer()
    step, size = controls(box)["step"], controls(box)["block size"]
    for block_size in (8, 2, 4):
        size.value = block_size
        assert step.max == W.paging_explorer_data(0, block_size)["n_steps"] - 1
    longest, shortest = sorted((2, 4, 8), key=lambda p: -W.paging_explorer_data(0, p)["n_steps"])[::2]
    size.value = longest
    step.value = step.max
    size.value = shortest  # a shorter run: the slider's end moves in and takes the value with it
    assert step.value == step.max == W.paging_explorer_data(0, shortest)["n_steps"] - 1
    events = box.children[1]  # the step's events, wrapped text between the controls and the figure
    assert f"step {step.value}" in events.value


def test_one_block_is_not_plural():
    events = [e for s in range(W.paging_explorer_data(0)["n_steps"]) for e in W.paging_explorer_data(s)["events"]]
    assert not any(" 1 blocks" in e for e in events)


def test_a_waiting_request_says_why_and_with_blocks_of_8_one_waits_for_memory_beside_a_free_seat():
    reasons = []
    for step in range(W.paging_explorer_data(0, 8)["n_steps"]):
        data = W.paging_explorer_data(step, 8)
        said = [e for e in data["events"] if " waits: " in e]
        assert len(said) == (1 if data["waiting"] else 0)  # the first in the queue, and why
        reasons += said
    assert any("needs" in r and "free after reserving" in r for r in reasons)  # memory, not a seat
