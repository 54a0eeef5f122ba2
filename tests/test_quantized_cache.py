"""attnkit.quantized_cache: int8 round trip error bound, and a GPT decoding with the int8 cache."""

from __future__ import annotations

import torch

from attnkit import GPT, GPTConfig, KVCache
from attnkit.quantized_cache import Int8KVCache, dequantize_int8, quantize_int8


def test_round_trip_error_is_at_most_half_a_step():
    x = torch.randn(3, 4, 5, 16) * torch.rand(3, 4, 5, 1) * 10
    q, scale = quantize_int8(x)
    assert q.dtype == torch.int8 and scale.shape == (3, 4, 5, 1) and q.abs().max() == 127
    assert ((dequantize_int8(q, scale) - x).abs() <= scale / 2 + 1e-6).all()


def test_zero_vector_survives():
    q, scale = quantize_int8(torch.zeros(2, 4))
    assert torch.equal(dequantize_int8(q, scale), torch.zeros(2, 4))


def test_gpt_with_int8_cache_is_close_but_not_equal_and_about_a_quarter_of_the_bytes():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=64, n_layer=2, n_head=4, n_embd=32)).eval()
    idx = torch.randint(0, 40, (2, 12))
    exact, int8 = KVCache(2, 2, 4, 12, 8), Int8KVCache(2, 2, 4, 12, 8)
    with torch.no_grad():
        want, got = model(idx, exact), model(idx, int8)
    err = (got - want).abs().max()
    assert 0 < err < 0.05 * want.abs().max()
    D = 8  # one byte per number plus a float32 scale per D numbers: (1 + 4 / D) / 4 of float32's bytes
    assert int8.nbytes == exact.nbytes * (1 + 4 / D) / 4
