"""attnkit.kv_cache: appending, overflow, reset, memory and the sliding window, against torch.cat and SDPA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnkit.kv_cache import KVCache
from attnkit.masks import causal_mask

N_LAYER, B, H, MAX_LEN, D = 2, 2, 3, 10, 4


def chunks(lengths: list[int], seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(B, H, n, D, generator=g), torch.randn(B, H, n, D, generator=g)) for n in lengths]


def test_update_returns_everything_appended_so_far():
    cache = KVCache(N_LAYER, B, H, MAX_LEN, D)
    new = chunks([4, 1, 1, 3])
    for i, (k, v) in enumerate(new):
        for layer in range(N_LAYER):
            k_all, v_all = cache.update(layer, k + layer, v - layer)  # layers hold different data
            torch.testing.assert_close(k_all, torch.cat([c[0] for c in new[: i + 1]], dim=2) + layer,
                                       rtol=0, atol=0)
            torch.testing.assert_close(v_all, torch.cat([c[1] for c in new[: i + 1]], dim=2) - layer,
                                       rtol=0, atol=0)
    assert cache.seq_len == len(cache) == cache.n_seen == 9
    assert k_all.shape == (B, H, 9, D)
    assert k_all.data_ptr() == cache.keys[N_LAYER - 1].data_ptr()  # a view of the preallocated tensor


def test_cached_attention_equals_full_causal_attention():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(B, H, 7, D, generator=g) for _ in range(3))
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, 7, D)
    cache = KVCache(1, B, H, MAX_LEN, D)
    outs, start = [], 0
    for n in (3, 1, 2, 1):  # a prompt, then tokens one or two at a time
        k_all, v_all = cache.update(0, k[:, :, start:start + n], v[:, :, start:start + n])
        mask = causal_mask(n, k_all.shape[2])  # bottom-right aligned: (n, S)
        outs.append(F.scaled_dot_product_attention(q[:, :, start:start + n], k_all, v_all, attn_mask=mask))
        start += n
    torch.testing.assert_close(torch.cat(outs, dim=2), full, atol=1e-6, rtol=1e-5)


def test_overflow_error_names_the_numbers():
    cache = KVCache(N_LAYER, B, H, MAX_LEN, D)
    (k, v), (k2, v2) = chunks([8, 3])
    cache.update(0, k, v)
    with pytest.raises(ValueError, match=r"layer 0.*holds 8.*3 more.*11.*max_len=10"):
        cache.update(0, k2, v2)
    assert cache._held[0] == 8  # nothing written
    cache.update(1, k2, v2)  # layers are independent


def test_reset_starts_again_from_position_zero():
    cache = KVCache(1, B, H, MAX_LEN, D)
    (k, v), (k2, v2) = chunks([MAX_LEN, 2])
    cache.update(0, k, v)
    cache.reset()
    assert len(cache) == 0 and cache.n_seen == 0
    k_all, v_all = cache.update(0, k2, v2)  # no overflow after reset
    torch.testing.assert_close(k_all, k2, rtol=0, atol=0)
    torch.testing.assert_close(v_all, v2, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_nbytes_matches_the_formula(dtype):
    cache = KVCache(N_LAYER, B, H, MAX_LEN, D, dtype=dtype)
    itemsize = 4 if dtype == torch.float32 else 2
    expected = 2 * N_LAYER * B * H * MAX_LEN * D * itemsize
    assert KVCache.expected_nbytes(N_LAYER, B, H, MAX_LEN, D, dtype) == expected
    assert cache.nbytes == expected
    assert cache.nbytes == sum(t.untyped_storage().nbytes() for t in cache.keys + cache.values)
    # GPT-2 small: 12 layers, 12 heads, D=64, float32, 1024 positions
    assert KVCache.expected_nbytes(12, 1, 12, 1024, 64, torch.float32) == 75_497_472


def test_grouped_kv_heads_use_less_memory_and_feed_enable_gqa():
    H_q, H_kv = 6, 2
    cache = KVCache(1, B, H_q, MAX_LEN, D, n_kv_head=H_kv)
    assert cache.nbytes == KVCache.expected_nbytes(1, B, H_kv, MAX_LEN, D, torch.float32)
    g = torch.Generator().manual_seed(2)
    q = torch.randn(B, H_q, 1, D, generator=g)
    k, v = torch.randn(B, H_kv, 5, D, generator=g), torch.randn(B, H_kv, 5, D, generator=g)
    k_all, v_all = cache.update(0, k, v)
    got = F.scaled_dot_product_attention(q, k_all, v_all, enable_gqa=True)
    expected = F.scaled_dot_product_attention(q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1))
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match=r"`k` shape to be \(2, 2, 5, 4\).*\(2, 6, 5, 4\)"):
        cache.update(0, torch.randn(B, H_q, 5, D), torch.randn(B, H_q, 5, D))
    with pytest.raises(ValueError, match=r"`n_kv_head` to divide `n_head`=6.*4"):
        KVCache(1, B, 6, MAX_LEN, D, n_kv_head=4)


def test_window_keeps_the_last_positions_and_is_local_attention():
    window = 4
    cache = KVCache(1, B, H, MAX_LEN, D, window=window)
    assert cache.nbytes == KVCache.expected_nbytes(1, B, H, window, D, torch.float32)  # only w slots
    g = torch.Generator().manual_seed(3)
    T = 12  # more than max_len: a window never overflows
    q, k, v = (torch.randn(B, H, T, D, generator=g) for _ in range(3))
    # local attention over the whole sequence: query i sees keys i - window + 1 .. i
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    local = (j <= i) & (j > i - window)  # (T, T), True = may attend
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=local)
    for t in range(T):  # one token at a time
        k_all, v_all = cache.update(0, k[:, :, t:t + 1], v[:, :, t:t + 1])
        torch.testing.assert_close(k_all, k[:, :, max(0, t + 1 - window):t + 1], rtol=0, atol=0)
        out = F.scaled_dot_product_attention(q[:, :, t:t + 1], k_all, v_all)  # (B, H, 1, D)
        torch.testing.assert_close(out, expected[:, :, t:t + 1], atol=1e-6, rtol=1e-5)
    assert cache.seq_len == window and cache.n_seen == T


def test_window_with_chunks_keeps_the_last_positions():
    cache = KVCache(1, B, H, MAX_LEN, D, window=5)
    new = chunks([3, 2, 3, 4])
    for i, (k, v) in enumerate(new):
        k_all, v_all = cache.update(0, k, v)
        seen = torch.cat([c[0] for c in new[: i + 1]], dim=2)
        torch.testing.assert_close(k_all, seen[:, :, -5:], rtol=0, atol=0)
    assert cache.n_seen == 12
    with pytest.raises(ValueError, match=r"at most window=5 new positions.*6"):
        cache.update(0, *chunks([6])[0])


def test_argument_errors_name_the_argument():
    cache = KVCache(N_LAYER, B, H, MAX_LEN, D)
    k, v = chunks([2])[0]
    with pytest.raises(ValueError, match=r"`layer` in \[0, 2\).*2"):
        cache.update(2, k, v)
    with pytest.raises(ValueError, match=r"`k` shape to be \(2, 3, L_new, 4\).*\(3, 2, 4\)"):
        cache.update(0, k[0], v[0])
    with pytest.raises(ValueError, match=r"`v` shape to be \(2, 3, 2, 4\).*\(2, 3, 1, 4\)"):
        cache.update(0, k, v[:, :, :1])
    with pytest.raises(TypeError, match="`k`"):
        cache.update(0, k.tolist(), v)
    with pytest.raises(ValueError, match=r"`max_len`.*0"):
        KVCache(N_LAYER, B, H, 0, D)
    with pytest.raises(ValueError, match=r"`window`.*max_len=10.*11"):
        KVCache(N_LAYER, B, H, MAX_LEN, D, window=11)


def test_truncate_then_update_holds_what_a_fresh_cache_holds():
    (k1, v1), (k2, v2), (k3, v3) = chunks([5, 3, 2])
    cache, fresh = KVCache(2, 2, 3, 12, 4), KVCache(2, 2, 3, 12, 4)
    for layer in range(2):
        cache.update(layer, k1, v1)
        cache.update(layer, k2, v2)  # 8 positions, 3 of them about to be rejected
        fresh.update(layer, k1[:, :, :4], v1[:, :, :4])
    cache.truncate(4)
    assert cache.seq_len == cache.n_seen == 4
    for layer in range(2):
        got, want = cache.update(layer, k3, v3), fresh.update(layer, k3, v3)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert got[0].shape[2] == 6


def test_truncate_then_decode_gives_the_tokens_of_a_fresh_cache():
    from attnkit import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=64, n_layer=2, n_head=2, n_embd=16)).eval()
    prompt = torch.randint(0, 20, (1, 6), generator=torch.Generator().manual_seed(1))
    wrong = torch.randint(0, 20, (1, 5), generator=torch.Generator().manual_seed(2))

    def decode(cache: KVCache) -> list[int]:
        out, nxt = [], prompt[:, -1:]
        for _ in range(10):
            nxt = model(nxt, cache, last_only=True)[:, -1].argmax(-1, keepdim=True)  # (1, 1)
            out.append(int(nxt))
        return out

    with torch.no_grad():
        cache, fresh = KVCache(2, 1, 2, 64, 8), KVCache(2, 1, 2, 64, 8)
        model(torch.cat([prompt, wrong], dim=1), cache)  # 11 positions: the last 6 are wrong context
        cache.truncate(5)  # keep the prompt but its last token, which decode feeds
        model(prompt[:, :-1], fresh)
        assert decode(cache) == decode(fresh)


def test_truncate_errors_name_the_argument():
    cache = KVCache(1, 1, 1, 8, 2)
    k, v = chunks([3])[0]
    cache.update(0, k[:1, :1, :, :2], v[:1, :1, :, :2])
    for bad in (-1, 4, 2.0, True):
        with pytest.raises(ValueError, match=r"`n`.*\[0, 3\]"):
            cache.truncate(bad)
    windowed = KVCache(1, 1, 1, 8, 2, window=4)
    with pytest.raises(ValueError, match="`window`"):
        windowed.truncate(0)
