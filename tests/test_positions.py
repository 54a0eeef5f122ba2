"""attnkit.positions against Hugging Face's Llama rotary embedding, and the properties the chapter claims."""

import math

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from attnkit import alibi_bias, alibi_slopes, apply_rope, causal_mask, rope_cos_sin, rotate_half, sinusoidal_positions


def hf_rope(D, H=2, base=10000.0):
    config = LlamaConfig(hidden_size=D * H, num_attention_heads=H, head_dim=D, max_position_embeddings=128,
                         rope_theta=base)
    return LlamaRotaryEmbedding(config)


@pytest.mark.parametrize("D, base", [(8, 10000.0), (16, 500.0)])
def test_rope_equals_llama_on_the_same_q_and_k(D, base):
    torch.manual_seed(0)
    B, H, L = 2, 3, 5
    q, k = torch.randn(B, H, L, D), torch.randn(B, H, L, D)
    position_ids = torch.tensor([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]])  # (B, L): the second after 7 cached
    cos, sin = hf_rope(D, base=base)(q, position_ids)  # (B, L, D)
    q_hf, k_hf = apply_rotary_pos_emb(q, k, cos, sin)
    torch.testing.assert_close(apply_rope(q, position_ids, base), q_hf)
    torch.testing.assert_close(apply_rope(k, position_ids, base), k_hf)
    ours_cos, ours_sin = rope_cos_sin(position_ids, D, base=base)
    torch.testing.assert_close(ours_cos, cos)
    torch.testing.assert_close(ours_sin, sin)


def test_rope_int_start_equals_the_positions_it_names():
    x = torch.randn(1, 2, 3, 6)
    torch.testing.assert_close(apply_rope(x, 4), apply_rope(x, torch.arange(4, 7)))
    assert not torch.allclose(apply_rope(x, 4), apply_rope(x, 0))


def test_rope_dot_product_depends_only_on_the_offset():
    torch.manual_seed(1)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    scores = {(i, j): float((apply_rope(q, i) * apply_rope(k, j)).sum())
              for i in range(0, 30, 7) for j in range(0, 30, 5)}
    for (i, j), s in scores.items():
        assert math.isclose(s, float((apply_rope(q, i - j + 40) * apply_rope(k, 40)).sum()), abs_tol=1e-4)
    assert len({round(s, 3) for s in scores.values()}) > 3  # and it does depend on the offset


def test_rope_keeps_norms_and_rotate_half_is_a_quarter_turn():
    x = torch.randn(2, 2, 4, 8)
    torch.testing.assert_close(apply_rope(x, 3).norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(rotate_half(rotate_half(x)), -x)


def test_sinusoidal_positions_layout_and_similarity_falls_with_distance():
    pe = sinusoidal_positions(50, 32)
    assert pe.shape == (50, 32)
    torch.testing.assert_close(pe[3, 0], torch.tensor(math.sin(3.0)))
    torch.testing.assert_close(pe[3, 1], torch.tensor(math.cos(3.0)))
    torch.testing.assert_close(pe[5, 2], torch.tensor(math.sin(5 * 10000 ** (-2 / 32))))
    sims = pe[20] @ pe.T  # (50,)
    assert sims[20] == sims.max()
    torch.testing.assert_close(sims[15], sims[25])  # symmetric in the offset


def test_alibi_slopes_match_the_paper():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert alibi_slopes(12).shape == (12,)
    torch.testing.assert_close(alibi_slopes(12)[:8], alibi_slopes(8))
    torch.testing.assert_close(alibi_slopes(12)[8:], alibi_slopes(16)[0::2][:4])


def test_alibi_bias_is_a_float_mask_aligned_bottom_right():
    bias = alibi_bias(4, 2, 5)  # (H, L, S): two new queries at positions 3 and 4
    assert bias.shape == (4, 2, 5) and bias.dtype == torch.float32
    assert bias[:, 0, 3].abs().max() == 0 and bias[:, 1, 4].abs().max() == 0
    torch.testing.assert_close(bias[0, 1, 0], -alibi_slopes(4)[0] * 4)
    scores = torch.randn(2, 4, 2, 5)
    added = torch.softmax(scores + bias + torch.where(causal_mask(2, 5), 0.0, float("-inf")), dim=-1)
    assert added[..., 0, 4].abs().max() == 0  # the causal mask still hides the future


@pytest.mark.parametrize("call, error, name", [
    (lambda: apply_rope(torch.randn(2, 3, 5), 0), ValueError, "`x`"),
    (lambda: apply_rope([1.0], 0), TypeError, "`x`"),
    (lambda: apply_rope(torch.randn(1, 1, 3, 5), 0), ValueError, "even"),
    (lambda: apply_rope(torch.randn(1, 1, 3, 4), torch.arange(4)), ValueError, "`positions`"),
    (lambda: apply_rope(torch.randn(1, 1, 3, 4), torch.ones(3)), TypeError, "`positions`"),
    (lambda: apply_rope(torch.randn(2, 1, 3, 4), torch.zeros(3, 3, dtype=torch.long)), ValueError, "`positions`"),
    (lambda: sinusoidal_positions(4, 5), ValueError, "`E`"),
    (lambda: sinusoidal_positions(0, 4), ValueError, "`L`"),
    (lambda: rope_cos_sin(3, 8), ValueError, "`L`"),
    (lambda: rotate_half(torch.randn(3, 5)), ValueError, "even"),
    (lambda: alibi_slopes(0), ValueError, "`H`"),
    (lambda: alibi_slopes(2.0), TypeError, "`H`"),
    (lambda: alibi_bias(2, 5, 3), ValueError, "`S`"),
])
def test_bad_input_names_the_argument(call, error, name):
    with pytest.raises(error, match=name):
        call()
