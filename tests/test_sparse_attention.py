"""attnkit.sparse_attention: the patterns as masks, checked entry by entry, against flex_attention's mask_mod,
and through F.scaled_dot_product_attention."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from attnkit import (
    block_sparse_mask,
    causal_mask,
    dilated_window_mask,
    global_tokens_mask,
    lsh_buckets,
    receptive_field,
    strided_mask,
)


def by_loops(L, S, allowed):
    """The mask entry by entry from a rule on (query position p, key j): the slow, obvious oracle."""
    return torch.tensor([[bool(allowed(S - L + i, j)) for j in range(S)] for i in range(L)])


def test_sliding_window_is_the_last_w_tokens_bottom_right():
    for L, S, w in ((6, 6, 3), (3, 9, 4), (5, 5, 1), (4, 10, 20)):
        want = by_loops(L, S, lambda p, j, w=w: 0 <= p - j < w)
        assert torch.equal(dilated_window_mask(L, S, w), want)
    assert torch.equal(dilated_window_mask(7, 7, 7), causal_mask(7))  # a window as long as the text is causal


def test_dilated_and_strided_patterns():
    want = by_loops(8, 12, lambda p, j: 0 <= p - j < 3 * 2 and (p - j) % 2 == 0)
    assert torch.equal(dilated_window_mask(8, 12, 3, dilation=2), want)
    want = by_loops(10, 10, lambda p, j: p >= j and (p - j < 3 or (p - j) % 3 == 0))
    assert torch.equal(strided_mask(10, 10, 3), want)


def test_global_tokens_see_and_are_seen():
    mask = global_tokens_mask(10, 10, window=3, n_global=2)
    want = by_loops(10, 10, lambda p, j: p >= j and (p - j < 3 or j < 2 or p < 2))
    assert torch.equal(mask, want)
    assert mask[:, :2].tril().sum() == mask[:, :2].sum() and mask[9, 0] and mask[9, 1] and not mask[9, 5]


def test_block_sparse_layout_expands_to_tiles():
    layout = torch.tensor([[True, False], [True, True]])
    mask = block_sparse_mask(layout, 3)
    assert mask.shape == (6, 6) and mask[:3, :3].all() and not mask[:3, 3:].any() and mask[3:].all()


def test_receptive_field_of_a_window_grows_by_w_minus_1_per_layer():
    L, w = 40, 4
    mask = dilated_window_mask(L, L, w)
    for n in (1, 2, 5):
        reach = receptive_field(mask, n)
        assert int(reach[-1].sum()) == n * (w - 1) + 1  # the last token reaches n (w - 1) tokens back, and itself
        assert torch.equal(reach, dilated_window_mask(L, L, n * (w - 1) + 1))
    strided = strided_mask(L, L, 6)
    assert receptive_field(strided, 2)[-1].all() and not strided[-1].all()  # two strided steps reach everything


def test_a_pattern_runs_through_sdpa_and_matches_a_float_mask():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 12, 8, generator=gen) for _ in range(3))
    mask = global_tokens_mask(12, 12, window=3, n_global=1)
    additive = torch.zeros(12, 12).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=additive))


def test_flex_attention_mask_mod_gives_the_same_mask_and_output():
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    L, stride = 32, 4

    def strided(b, h, q_idx, kv_idx):  # flex's mask_mod: True = may attend, as ours
        behind = q_idx - kv_idx
        return (behind >= 0) & ((behind < stride) | (behind % stride == 0))

    dense = flex.create_mask(strided, None, None, L, L, device="cpu")  # (1, 1, L, L)
    assert torch.equal(dense[0, 0], strided_mask(L, L, stride))
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, L, 16, generator=gen) for _ in range(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flex_attention called without torch.compile": slow but exact on CPU
        out = flex.flex_attention(q, k, v, block_mask=flex.create_block_mask(strided, None, None, L, L, device="cpu"))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=strided_mask(L, L, stride)),
                               atol=1e-5, rtol=1e-4)


def test_lsh_puts_near_duplicates_together_and_opposites_apart():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 16, generator=gen)
    near = x + 0.01 * torch.randn(50, 16, generator=gen)
    buckets = lsh_buckets(torch.cat([x, near, -x]), 8, generator=torch.Generator().manual_seed(1))
    assert buckets.shape == (150,) and buckets.min() >= 0 and buckets.max() < 8
    assert (buckets[:50] == buckets[50:100]).float().mean() > 0.9
    assert (buckets[:50] != buckets[100:]).all()  # -x lands in the opposite bucket


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="`window`"):
        dilated_window_mask(4, 4, 0)
    with pytest.raises(ValueError, match="`S`"):
        strided_mask(5, 3, 2)
    with pytest.raises(TypeError, match="`layout`"):
        block_sparse_mask(torch.ones(2, 2), 2)
    with pytest.raises(ValueError, match="`mask`"):
        receptive_field(torch.ones(3, 4, dtype=torch.bool), 2)
    with pytest.raises(ValueError, match="`n_buckets`"):
        lsh_buckets(torch.randn(4, 3), 3)
