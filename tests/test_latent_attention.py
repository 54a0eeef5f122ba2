"""attnkit.latent_attention: MLA with its cache equals MLA without, absorbed equals up-projected; memory per token."""

from __future__ import annotations

import pytest
import torch

from attnkit import KVCache
from attnkit.latent_attention import LatentAttention, kv_bytes_per_token


@pytest.fixture
def mla():
    torch.manual_seed(0)
    return LatentAttention(n_embd=24, n_head=3, d_latent=10).eval()


def test_cached_latents_give_the_full_pass(mla):
    x = torch.randn(2, 7, 24)
    with torch.no_grad():
        full, latents = mla(x)
        first, cache = mla(x[:, :4])
        rest, cache = mla(x[:, 4:], cache)
    assert latents.shape == (2, 7, 10)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cache, latents)


def test_absorbed_query_equals_up_projected_keys(mla):
    x = torch.randn(2, 5, 24)
    with torch.no_grad():
        past = mla(x[:, :3])[1]
        torch.testing.assert_close(mla(x[:, 3:], past, absorb=True)[0], mla(x[:, 3:], past)[0],
                                   atol=1e-5, rtol=1e-5)


def test_bytes_per_token_match_the_caches_and_deepseek():
    mha = kv_bytes_per_token("mha", n_layer=4, n_head=8, head_dim=16, dtype=torch.float32)
    assert mha == KVCache.expected_nbytes(4, 1, 8, 1, 16, torch.float32)
    assert kv_bytes_per_token("gqa", n_layer=4, n_head=8, head_dim=16, n_kv_head=2, dtype=torch.float32) == mha // 4
    assert kv_bytes_per_token("mqa", n_layer=4, n_head=8, head_dim=16, dtype=torch.float32) == mha // 8
    # DeepSeek-V2: 128 heads of 128, latent 512 + a 64-wide RoPE key: 576 vs 32768 numbers per layer
    ratio = kv_bytes_per_token("mla", n_layer=1, n_head=128, head_dim=128, d_latent=512, rope_dim=64) / \
        kv_bytes_per_token("mha", n_layer=1, n_head=128, head_dim=128)
    assert ratio == pytest.approx(576 / 32768)
    with pytest.raises(ValueError, match="kind"):
        kv_bytes_per_token("gpa", n_layer=1, n_head=2, head_dim=2)
