"""attnkit.widgets, chapters 4-5: the cache-growth explorer computes what KVCache holds and redraws."""

from __future__ import annotations

import pytest
import torch
from widget_helpers import assert_redraws, controls

from attnkit import KVCache
from attnkit import widgets as W


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


def test_show_head_origin_draws_one_panel_per_head():
    labels = (10 * torch.arange(4)[:, None] + torch.arange(6)[None, :]).float()  # (L, E)
    heads = labels.view(4, 2, 3).transpose(0, 1)  # (H, L, D)
    fig = W.show_head_origin(list(heads), ["head 0", "head 1"])
    assert [ax.get_title() for ax in fig.axes] == ["head 0", "head 1"]
    with pytest.raises(ValueError):
        W.show_head_origin(list(heads), ["only one title"])


def test_decoding_rows_match_uncached_decoding_and_a_recomputed_softmax():
    from attnkit import GPT, GPTConfig, generate

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=8)).eval()
    prompt = torch.tensor([[3, 1, 4]])
    tokens, rows = W.decoding_rows(model, prompt, 5)
    assert torch.equal(tokens, generate(model, prompt, 5, use_cache=False))
    assert len(rows) == 2 and [r.shape for r in rows[0]] == [(2, S) for S in range(3, 9)]
    for layer_rows in rows:
        for r in layer_rows:
            torch.testing.assert_close(r.sum(-1), torch.ones(2))
    # the last row of layer 0 equals the causal attention weights of the last position, without a cache
    block = model.transformer.h[0]
    with torch.no_grad():
        x = block.ln_1(model.transformer.wte(tokens) + model.transformer.wpe.weight[: tokens.shape[1]])
        q, k, _ = block.attn.c_attn(x).split(8, dim=2)
        q, k = q.view(1, -1, 2, 4).transpose(1, 2), k.view(1, -1, 2, 4).transpose(1, 2)
        expected = (q[:, :, -1:] @ k.transpose(-2, -1) / 2).softmax(-1)[0, :, 0]  # (H, S)
    torch.testing.assert_close(rows[0][-1], expected)
    assert not any(block.attn._forward_pre_hooks for block in model.transformer.h)  # hooks removed
