"""attnkit.tiled_attention against F.scaled_dot_product_attention: the online softmax, the merge rule, the tiles."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnkit import causal_mask, flash_attention, merge_partials, online_softmax, padding_mask, tile_steps


def qkv(B=2, H=3, L=37, S=53, D=8, Dv=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, L, D, generator=gen), torch.randn(B, H, S, D, generator=gen),
            torch.randn(B, H, S, Dv, generator=gen))


def reference_lse(q, k, mask=None):
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # (B, H, L, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    return torch.logsumexp(scores, dim=-1)  # (B, H, L), -inf for a fully masked row


def test_online_softmax_ends_at_the_rows_max_and_sum():
    scores = torch.randn(4, 6, 23) * 3
    maxes, sums = online_softmax(scores, 5)
    assert maxes.shape == (5, 4, 6) and sums.shape == (5, 4, 6)
    m = scores.amax(dim=-1)
    torch.testing.assert_close(maxes[-1], m)
    torch.testing.assert_close(sums[-1], torch.exp(scores - m[..., None]).sum(-1))
    torch.testing.assert_close(torch.exp(scores - maxes[-1][..., None]) / sums[-1][..., None],
                               torch.softmax(scores, dim=-1))
    # after block t the state describes exactly the columns seen so far
    torch.testing.assert_close(maxes[1], scores[..., :10].amax(-1))
    torch.testing.assert_close(sums[1], torch.exp(scores[..., :10] - maxes[1][..., None]).sum(-1))


def test_online_softmax_of_a_fully_masked_row_is_max_minus_inf_sum_zero():
    scores = torch.tensor([[float("-inf")] * 6, [0.0, 1.0, float("-inf"), float("-inf"), 2.0, float("-inf")]])
    maxes, sums = online_softmax(scores, 2)
    assert torch.isneginf(maxes[-1, 0]) and sums[-1, 0] == 0 and not torch.isnan(sums).any()
    assert maxes[-1, 1] == 2.0


def test_merging_two_halves_gives_the_whole():
    q, k, v = qkv()
    half = 20
    out_a = F.scaled_dot_product_attention(q, k[..., :half, :], v[..., :half, :])
    out_b = F.scaled_dot_product_attention(q, k[..., half:, :], v[..., half:, :])
    out, lse = merge_partials(out_a, reference_lse(q, k[..., :half, :]), out_b, reference_lse(q, k[..., half:, :]))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(lse, reference_lse(q, k))


def test_merging_with_an_empty_part_keeps_the_other_and_two_empty_parts_give_zero():
    out = torch.randn(2, 3, 4)
    lse = torch.randn(2, 3)
    empty = torch.full((2, 3), float("-inf"))
    merged, merged_lse = merge_partials(out, lse, torch.zeros_like(out), empty)
    torch.testing.assert_close(merged, out)
    torch.testing.assert_close(merged_lse, lse)
    both, both_lse = merge_partials(torch.zeros_like(out), empty, torch.zeros_like(out), empty)
    assert (both == 0).all() and torch.isneginf(both_lse).all()


@pytest.mark.parametrize("block_q,block_k", [(1, 1), (8, 16), (16, 7), (64, 64), (200, 300)])
def test_flash_attention_equals_sdpa_for_any_tile_size(block_q, block_k):
    q, k, v = qkv()
    out, lse = flash_attention(q, k, v, block_q=block_q, block_k=block_k)
    assert out.shape == (2, 3, 37, 5) and lse.shape == (2, 3, 37)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(lse, reference_lse(q, k), atol=1e-5, rtol=1e-4)


def test_causal_is_bottom_right_aligned_like_causal_mask():
    q, k, v = qkv(L=9, S=30)
    out, lse = flash_attention(q, k, v, causal=True, block_q=4, block_k=8)
    mask = causal_mask(9, 30)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(lse, reference_lse(q, k, mask), atol=1e-5, rtol=1e-4)
    sq, sk, sv = qkv(L=24, S=24)
    square = flash_attention(sq, sk, sv, causal=True, block_q=5, block_k=7)[0]
    torch.testing.assert_close(square, F.scaled_dot_product_attention(sq, sk, sv, is_causal=True), atol=1e-5,
                               rtol=1e-4)


def test_bool_and_float_masks_per_tile_and_fully_masked_rows_give_zeros_like_sdpa():
    q, k, v = qkv(L=12, S=20)
    gen = torch.Generator().manual_seed(3)
    mask = torch.rand(2, 3, 12, 20, generator=gen) > 0.4  # (B, H, L, S)
    mask[0, 1, 5] = False  # a fully masked row
    mask[1, 2, :, :8] = False  # the first key tiles hidden from every query of one head
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert (want[0, 1, 5] == 0).all()  # SDPA's convention, which we follow
    out, lse = flash_attention(q, k, v, mask, block_q=5, block_k=4)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-4)
    assert not torch.isnan(out).any() and torch.isneginf(lse[0, 1, 5])
    torch.testing.assert_close(lse, reference_lse(q, k, mask), atol=1e-5, rtol=1e-4)
    additive = torch.randn(12, 20, generator=gen).masked_fill(torch.rand(12, 20, generator=gen) > 0.7, float("-inf"))
    out_f, _ = flash_attention(q, k, v, additive, block_q=5, block_k=6)
    torch.testing.assert_close(out_f, F.scaled_dot_product_attention(q, k, v, attn_mask=additive), atol=1e-5,
                               rtol=1e-4)


def test_left_padding_hides_whole_first_tiles_without_nan():
    q, k, v = qkv(B=2, H=1, L=6, S=16)
    real = padding_mask([10, 3], 16).flip(-1)  # (B, S): True for real keys, the padding on the LEFT
    mask = real[:, None, None, :]  # (B, 1, 1, S): sequence 1's first 13 keys, 3 whole tiles, are padding
    out, _ = flash_attention(q, k, v, mask, block_k=4)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5, rtol=1e-4)


def test_scale_and_no_head_dimension():
    gen = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(7, 4, generator=gen), torch.randn(9, 4, generator=gen), torch.randn(9, 6, generator=gen)
    out, _ = flash_attention(q, k, v, scale=0.3, block_q=3, block_k=2)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q[None], k[None], v[None], scale=0.3)[0],
                               atol=1e-5, rtol=1e-4)


def test_the_lse_recomputes_any_tiles_weights():
    q, k, v = qkv(L=10, S=16)
    _, lse = flash_attention(q, k, v, block_k=4)
    tile_scores = q @ k[..., 4:8, :].transpose(-2, -1) / 8 ** 0.5  # (B, H, L, 4): one tile of keys
    weights = torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5, dim=-1)[..., 4:8]
    torch.testing.assert_close(torch.exp(tile_scores - lse[..., None]), weights)


def test_tile_steps_tell_the_story_of_one_row():
    scores = torch.tensor([0.5, -1.0, 2.0, 0.0, 3.0, 1.0, -2.0])
    steps = tile_steps(scores, 3)
    assert len(steps) == 3 and steps[0]["block"].tolist() == [0, 1, 2]
    assert [float(s["max_after"]) for s in steps] == [2.0, 3.0, 3.0]
    assert float(steps[1]["correction"]) == pytest.approx(float(torch.exp(torch.tensor(-1.0))))
    assert float(steps[2]["correction"]) == 1.0
    for s in steps:
        assert float(s["sum_after"]) == pytest.approx(float(s["sum_rescaled"] + s["tile_sum"]))
    torch.testing.assert_close(steps[-1]["weights"], torch.softmax(scores, dim=-1))
    assert steps[0]["weights"][3:].eq(0).all()


def test_bad_input_names_the_argument():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="`key`"):
        flash_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="`value`"):
        flash_attention(q, k, v[..., :5, :])
    with pytest.raises(ValueError, match="`block_k`"):
        flash_attention(q, k, v, block_k=0)
    with pytest.raises(ValueError, match="`attn_mask`"):
        flash_attention(q, k, v, torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="`attn_mask`"):
        flash_attention(q, k, v, torch.ones(37, 53, dtype=torch.long))
    with pytest.raises(ValueError, match="S >= L"):
        flash_attention(k, q, q[..., :5], causal=True)
    with pytest.raises(TypeError, match="`scores`"):
        online_softmax([1.0, 2.0], 1)
    with pytest.raises(ValueError, match="`block_size`"):
        online_softmax(torch.randn(3, 4), 0)
    with pytest.raises(ValueError, match="`lse_b`"):
        merge_partials(torch.zeros(2, 3), torch.zeros(2), torch.zeros(2, 3), torch.zeros(3))


def test_gradients_flow_through_the_tiles_like_through_sdpa():
    q, k, v = (t.double().requires_grad_(True) for t in qkv(L=9, S=14))
    mask = causal_mask(9, 14)
    out, _ = flash_attention(q, k, v, mask, block_q=4, block_k=5)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    want = torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, attn_mask=mask).square().sum(), (q, k, v))
    for got, expected in zip(grads, want, strict=True):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tiles_are_as_accurate_as_sdpa(dtype):
    # float16/bfloat16 run in float32 tile by tile and round once: the error from float64 stays SDPA's size
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 3, 300, 64, generator=gen) for _ in range(3))
    exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    out, lse = flash_attention(q.to(dtype), k.to(dtype), v.to(dtype), block_q=64, block_k=64)
    sdpa = F.scaled_dot_product_attention(q.to(dtype), k.to(dtype), v.to(dtype))
    assert out.dtype == dtype and lse.dtype == torch.float32
    assert (out.double() - exact).abs().max() <= 1.5 * (sdpa.double() - exact).abs().max()
