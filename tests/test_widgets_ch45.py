"""attnkit.widgets, chapters 4-5: the cache-growth explorer computes what KVCache holds and redraws."""

from __future__ import annotations

import pytest
import torch

from attnkit import KVCache
from attnkit import widgets as W


def controls(box):
    """Every widget with a description inside `box`, by description."""
    found, stack = {}, [box]
    while stack:
        w = stack.pop()
        if getattr(w, "description", ""):
            found[w.description] = w
        stack.extend(getattr(w, "children", ()))
    return found


def shown(box):
    (output,) = box.children[-1].outputs
    return output["data"]["image/png"], output["data"]["text/plain"]


def assert_redraws(box, description, value):
    before = shown(box)
    controls(box)[description].value = value
    after = shown(box)
    assert after[0] != before[0] and after[1] != before[1], f"moving {description!r} did not redraw"
    return after[1]


@pytest.mark.parametrize("kind, window, sinks", [("full", None, 0), ("sliding window", 4, 0),
                                                 ("window + sink", 4, 1)])
def test_cache_growth_data(kind, window, sinks):
    for step in range(7):
        data = W.cache_growth_explorer_data(step, kind, prompt_len=3, window=4, sinks=1, H=2, D=5)
        S = len(data["held"])
        assert data["shape"] == (1, 2, S, 5)
        assert data["seen"] == list(range(3 + step))
        assert sorted(data["held"] + data["evicted"]) == data["seen"]
        if window is None:
            assert S == 3 + step
        else:
            assert S == min(3 + step, window) and data["held"][:sinks] == list(range(sinks))
            assert data["held"][sinks:] == data["seen"][-(S - sinks):]
    with pytest.raises(ValueError, match="cache"):
        W.cache_growth_explorer_data(0, "paged")


def test_cache_growth_full_matches_kvcache_length():
    cache = KVCache(1, 1, 2, 16, 5)
    cache.update(0, torch.zeros(1, 2, 5, 5), torch.zeros(1, 2, 5, 5))  # prefill
    for step in range(1, 5):
        k, _ = cache.update(0, torch.zeros(1, 2, 1, 5), torch.zeros(1, 2, 1, 5))
        assert tuple(k.shape) == W.cache_growth_explorer_data(step, H=2, D=5)["shape"]


def test_cache_growth_explorer_redraws():
    box = W.cache_growth_explorer([f"t{i}" for i in range(13)])
    assert set(controls(box)) == {"step", "cache"}
    assert "(1, 4, 7, 12)" in assert_redraws(box, "step", 2)
    assert "(1, 4, 4, 12)" in assert_redraws(box, "cache", "sliding window")
    assert "'t0'" in assert_redraws(box, "cache", "window + sink")
    with pytest.raises(ValueError, match="tokens"):
        W.cache_growth_explorer(["a"])
