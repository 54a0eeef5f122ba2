"""attnkit.cross_attention against F.scaled_dot_product_attention, and the reverser learns the known alignment."""

import pytest
import torch
import torch.nn.functional as F

from attnkit import CrossAttention, Seq2SeqReverser, padding_mask, reversal_batch, train_reverser


def test_cross_attention_equals_sdpa_with_the_padding_mask():
    torch.manual_seed(0)
    B, L, S, E, Es, H = 2, 3, 5, 12, 7, 3
    layer = CrossAttention(E, H, source_dim=Es)
    x, memory = torch.randn(B, L, E), torch.randn(B, S, Es)
    mask = padding_mask(torch.tensor([5, 2]), S)  # (B, S), True = real token
    out, weights = layer(x, memory, mask)
    q = layer.q_proj(x).view(B, L, H, E // H).transpose(1, 2)
    k = layer.k_proj(memory).view(B, S, H, E // H).transpose(1, 2)
    v = layer.v_proj(memory).view(B, S, H, E // H).transpose(1, 2)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])  # (B, H, L, D)
    torch.testing.assert_close(out, layer.out_proj(ref.transpose(1, 2).reshape(B, L, E)))
    assert weights.shape == (B, H, L, S)
    assert weights[1, :, :, 2:].abs().max() == 0  # padded source positions get no weight
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, L))


def test_padding_does_not_change_the_real_tokens_output():
    torch.manual_seed(1)
    layer = CrossAttention(8, 2)
    x, memory = torch.randn(1, 3, 8), torch.randn(1, 4, 8)
    padded = torch.cat([memory, torch.randn(1, 2, 8)], dim=1)  # two junk positions after the real four
    mask = torch.tensor([[True] * 4 + [False] * 2])
    torch.testing.assert_close(layer(x, padded, mask)[0], layer(x, memory)[0])


def test_reversal_batch_is_left_padded_and_reversed():
    source, target, mask = reversal_batch(6, 5, 9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(target, source.flip(-1))
    assert torch.equal(source == 0, ~mask)
    assert (mask.int().diff(dim=-1) >= 0).all()  # padding only at the start


def test_reverser_learns_the_anti_diagonal():
    torch.manual_seed(0)
    model = Seq2SeqReverser(10, 6)
    losses = train_reverser(model, 150, seed=0)
    assert losses[-1] < 0.1 * losses[0]
    source, target, mask = reversal_batch(32, 6, 10, generator=torch.Generator().manual_seed(5))
    logits, weights = model(source, mask)
    real = target != 0
    assert (logits.argmax(-1)[real] == target[real]).float().mean() > 0.95
    full = mask.all(-1)
    assert weights[full, 0].argmax(-1).eq(torch.arange(5, -1, -1)).float().mean() > 0.95  # target i reads 5 - i


@pytest.mark.parametrize("call, error, name", [
    (lambda: CrossAttention(10, 3), ValueError, "`n_head`"),
    (lambda: CrossAttention(8, 2)(torch.randn(2, 3, 8), torch.randn(2, 4, 6)), ValueError, "`memory`"),
    (lambda: CrossAttention(8, 2)(torch.randn(2, 3, 8), torch.randn(3, 4, 8)), ValueError, "`memory`"),
    (lambda: CrossAttention(8, 2)(torch.randn(2, 3), torch.randn(2, 4, 8)), ValueError, "`x`"),
    (lambda: CrossAttention(8, 2)(torch.randn(2, 3, 8), torch.randn(2, 4, 8), torch.ones(2, 3, dtype=torch.bool)),
     ValueError, "`memory_mask`"),
    (lambda: CrossAttention(8, 2)(torch.randn(2, 3, 8), torch.randn(2, 4, 8), torch.ones(2, 4)),
     TypeError, "`memory_mask`"),
    (lambda: reversal_batch(2, 4, 1), ValueError, "`vocab_size`"),
    (lambda: reversal_batch(2, 4, 5, min_len=5), ValueError, "`min_len`"),
    (lambda: reversal_batch(0, 4, 5), ValueError, "`batch_size`"),
    (lambda: Seq2SeqReverser(5, 4)(torch.zeros(2, 4)), ValueError, "`source`"),
    (lambda: Seq2SeqReverser(5, 4)(torch.zeros(2, 6, dtype=torch.long)), ValueError, "`source`"),
    (lambda: train_reverser(Seq2SeqReverser(5, 4), 0), ValueError, "`steps`"),
    (lambda: train_reverser("model"), TypeError, "`model`"),
])
def test_bad_input_names_the_argument(call, error, name):
    with pytest.raises(error, match=name):
        call()
