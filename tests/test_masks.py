"""Masks: conventions checked against PyTorch (SDPA and nn.MultiheadAttention)."""

import pytest
import torch
import torch.nn.functional as F

from attnkit import causal_mask, combine_masks, padding_mask, scaled_dot_product_attention, to_additive, to_bool


def test_causal_mask_square_equals_torch_is_causal():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 5, 4, generator=g) for _ in range(3))
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(5)), expected)


def test_causal_mask_is_bottom_right_aligned_when_keys_outnumber_queries():
    mask = causal_mask(2, 5)
    assert mask.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    # torch's is_causal is top-left aligned: it would hide cached keys from the new queries.
    assert not torch.equal(mask, torch.ones(2, 5, dtype=torch.bool).tril())


def test_causal_mask_last_rows_equal_full_mask_rows():
    """Decoding the last L of S tokens must see exactly what the full causal mask lets them see."""
    full = causal_mask(7)
    for L in range(1, 8):
        assert torch.equal(causal_mask(L, 7), full[-L:])


def test_cached_decoding_with_causal_mask_equals_full_attention():
    g = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(1, 6, 8, generator=g), torch.randn(1, 6, 8, generator=g), torch.randn(1, 6, 3, generator=g)
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    last_two, _ = scaled_dot_product_attention(q[:, -2:], k, v, attn_mask=causal_mask(2, 6))
    torch.testing.assert_close(last_two, full[:, -2:])


def test_causal_mask_errors():
    with pytest.raises(ValueError, match="Expected `S` >= `L`"):
        causal_mask(5, 3)
    with pytest.raises(ValueError, match="Expected `L` to be a non-negative int but got -1"):
        causal_mask(-1)


def test_padding_mask_marks_real_tokens():
    mask = padding_mask([2, 4, 0], 5)
    assert mask.shape == (3, 5)
    assert mask.tolist() == [[True, True, False, False, False], [True] * 4 + [False], [False] * 5]
    assert padding_mask(torch.tensor([1, 3])).shape == (2, 3)


def test_padding_mask_is_the_inverse_of_torch_key_padding_mask():
    """nn.MultiheadAttention reads True as *ignore*: pass it ~padding_mask(...)."""
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(2, 4, 8)
    lengths = [3, 2]
    _, w = mha(x, x, x, key_padding_mask=~padding_mask(lengths, 4))
    assert (w[0, :, 3] == 0).all() and (w[1, :, 2:] == 0).all()
    assert (w[0, :, :3] > 0).all()


def test_padding_mask_errors():
    with pytest.raises(ValueError, match=r"Expected every length in \[0, S=3\] but got \[4, 1\]"):
        padding_mask([4, 1], 3)
    with pytest.raises(ValueError, match="1-D sequence of ints"):
        padding_mask([[1, 2]], 3)
    with pytest.raises(ValueError, match="1-D sequence of ints"):
        padding_mask([1.5], 3)


def test_combine_padding_and_causal_matches_torch():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 4, 6, generator=g) for _ in range(3))
    mask = combine_masks(causal_mask(4), padding_mask([4, 2], 4)[:, None, :])  # (4, 4) & (2, 1, 4) -> (2, 4, 4)
    assert mask.shape == (2, 4, 4)
    assert mask[1].tolist() == [[True, False, False, False], [True, True, False, False],
                                [True, True, False, False], [True, True, False, False]]
    ours, _ = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_combine_float_and_bool_masks():
    bias = torch.tensor([[0.5, -1.0, 2.0]])
    combined = combine_masks(bias, torch.tensor([[True, False, True]]), None)
    assert combined.tolist() == [[0.5, float("-inf"), 2.0]]
    assert combine_masks(None, None) is None


def test_bool_additive_round_trip_and_same_attention():
    mask = causal_mask(3, 5)
    additive = to_additive(mask)
    assert additive.dtype == torch.float32
    assert torch.equal(to_bool(additive), mask)
    assert (additive[mask] == 0).all() and torch.isneginf(additive[~mask]).all()
    g = torch.Generator().manual_seed(3)
    q, k, v = torch.randn(3, 4, generator=g), torch.randn(5, 4, generator=g), torch.randn(5, 2, generator=g)
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, attn_mask=additive),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
