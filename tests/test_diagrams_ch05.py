"""attnkit.diagrams, chapter 5: which positions a cache holds, and the cache-growth picture."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from attnkit import KVCache, diagrams  # noqa: E402


def test_registered_with_docstring_shapes_and_backlink():
    for name in ("cache_positions", "cache_panel", "cache_growth"):
        assert name in diagrams.__all__
        doc = getattr(diagrams, name).__doc__
        assert "Shapes:" in doc
    assert diagrams.FIGURES["05_cache_growth"] is diagrams.cache_growth
    assert "See chapters/05_kv_cache.ipynb." in diagrams.cache_growth.__doc__


def test_full_cache_grows_by_one_per_decode_step():
    prefill = diagrams.cache_positions(0, 5)
    assert prefill["held"] == prefill["new"] == list(range(5)) and prefill["evicted"] == []
    for step in range(1, 4):
        p = diagrams.cache_positions(step, 5)
        assert p["held"] == list(range(5 + step)) and p["new"] == [4 + step]


def test_window_matches_attnkit_kvcache():
    """A sliding window holds what KVCache(window=W) holds, fed one token at a time."""
    W = 4
    cache = KVCache(1, 1, 1, 16, 1, window=W)
    for t in range(10):
        k, _ = cache.update(0, torch.full((1, 1, 1, 1), float(t)), torch.zeros(1, 1, 1, 1))
        if t >= 2:  # a prompt of 3 tokens, then decode steps
            held = diagrams.cache_positions(t - 2, 3, window=W)["held"]
            assert k.flatten().tolist() == [float(p) for p in held]


def test_sinks_keep_the_first_positions():
    p = diagrams.cache_positions(6, 5, window=4, sinks=1)
    assert p["held"] == [0, 8, 9, 10] and p["new"] == [10] and p["evicted"] == list(range(1, 8))
    with pytest.raises(ValueError, match="sinks"):
        diagrams.cache_positions(0, 5, window=4, sinks=4)
    with pytest.raises(ValueError, match="step"):
        diagrams.cache_positions(-1, 5)


def test_figure_shows_the_toy_gpt_cache_shapes():
    fig = diagrams.cache_growth()
    shown = [t.get_text() for ax in fig.axes for t in ax.texts]
    for S in (5, 6, 7, 8):  # prefill of 5 tokens, then 3 decode steps; toy GPT: H = 4, D = 48 / 4
        assert any(f"(B, H, S, D) = (1, 4, {S}, 12)" in s for s in shown)
    plt.close(fig)
