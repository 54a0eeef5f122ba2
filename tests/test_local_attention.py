"""attnkit.local_attention against brute-force loops (Luong et al. 2015, written one query at a time) and torch SDPA."""

import math

import pytest
import torch
import torch.nn.functional as F

from attnkit import (
    gaussian_window,
    local_window_mask,
    luong_local_attention,
    monotonic_alignment,
    predictive_alignment,
)

B, L, S, E, Ev, A = 2, 6, 9, 4, 3, 5  # L != S, E != Ev


@pytest.fixture
def qkv():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, L, E, generator=g), torch.randn(B, S, E, generator=g),
            torch.randn(B, S, Ev, generator=g))


def test_window_mask_matches_brute_force_with_real_centres():
    centers = torch.tensor([0.0, 1.5, 4.0, 7.3, 8.9, 12.0])
    for D in (0, 1, 2, 2.5):
        mask = local_window_mask(L, S, D, centers)
        expected = torch.tensor([[c - D <= s <= c + D for s in range(S)] for c in centers.tolist()])
        assert torch.equal(mask, expected), D
    assert local_window_mask(L, S, 1, centers)[1].nonzero().flatten().tolist() == [1, 2]
    assert not local_window_mask(L, S, 1, centers)[5].any()  # a centre beyond the keys sees none


def test_monotonic_alignment_is_t():
    assert torch.equal(monotonic_alignment(4), torch.tensor([0.0, 1.0, 2.0, 3.0]))


def test_predictive_alignment_matches_a_loop():
    g = torch.Generator().manual_seed(1)
    h, W_p, v_p = torch.randn(B, L, E, generator=g), torch.randn(A, E, generator=g), torch.randn(A, generator=g)
    centers = predictive_alignment(h, W_p, v_p, S)
    assert centers.shape == (B, L)
    for b in range(B):
        for t in range(L):
            z = sum(v_p[a].item() * math.tanh(W_p[a] @ h[b, t]) for a in range(A))
            assert centers[b, t].item() == pytest.approx(S / (1 + math.exp(-z)), rel=1e-5)
    assert ((centers > 0) & (centers < S)).all()
    with pytest.raises(ValueError, match=r"`W_p`.*width E of h"):
        predictive_alignment(h, W_p[:, :-1], v_p, S)


def test_gaussian_window_has_sigma_D_over_2():
    centers = torch.tensor([2.0, 5.5])
    D = 3
    window = gaussian_window(torch.arange(S, dtype=torch.float32), centers, D)
    expected = torch.tensor([[math.exp(-((s - c) ** 2) / (2 * (D / 2) ** 2)) for s in range(S)] for c in (2.0, 5.5)])
    torch.testing.assert_close(window, expected)
    assert window[0, 2].item() == 1.0 and window[0, 5].item() == pytest.approx(math.exp(-2))  # edge: e^-2
    with pytest.raises(ValueError, match="`D`.*positive"):
        gaussian_window(torch.arange(S), centers, 0)


def brute_force_local(q, k, v, D, centers, gaussian):
    """Luong's local attention, one query at a time: softmax over the window, times the Gaussian."""
    weights = torch.zeros(q.shape[0], q.shape[1], k.shape[1])
    for b in range(q.shape[0]):
        for t in range(q.shape[1]):
            c = centers[b, t].item() if centers.dim() == 2 else centers[t].item()
            window = [s for s in range(k.shape[1]) if abs(s - c) <= D]
            if not window:
                continue
            scores = torch.stack([q[b, t] @ k[b, s] / math.sqrt(q.shape[-1]) for s in window])
            for s, alpha in zip(window, torch.softmax(scores, 0), strict=True):
                favour = math.exp(-((s - c) ** 2) / (2 * (D / 2) ** 2)) if gaussian else 1.0
                weights[b, t, s] = alpha * favour
    return weights @ v, weights


@pytest.mark.parametrize("gaussian", [True, False])
@pytest.mark.parametrize("alignment", ["monotonic", "predictive"])
def test_local_attention_matches_brute_force(qkv, alignment, gaussian):
    q, k, v = qkv
    D = 2
    if alignment == "monotonic":
        centers = torch.arange(L, dtype=torch.float32)
        out, w = luong_local_attention(q, k, v, D, "monotonic", gaussian)
    else:
        g = torch.Generator().manual_seed(2)
        centers = predictive_alignment(q, torch.randn(A, E, generator=g), torch.randn(A, generator=g), S)
        out, w = luong_local_attention(q, k, v, D, centers, gaussian)
    expected_out, expected_w = brute_force_local(q, k, v, D, centers, gaussian)
    torch.testing.assert_close(w, expected_w)
    torch.testing.assert_close(out, expected_out)


def test_without_gaussian_it_is_sdpa_with_the_window_mask(qkv):
    q, k, v = qkv
    window = local_window_mask(L, S, 1, monotonic_alignment(L))
    out, w = luong_local_attention(q, k, v, 1, gaussian=False)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=window))
    torch.testing.assert_close(w.sum(-1), torch.ones(B, L))
    out_all, _ = luong_local_attention(q, k, v, S, gaussian=False)  # a window wider than the keys: global attention
    torch.testing.assert_close(out_all, F.scaled_dot_product_attention(q, k, v))


def test_gaussian_weights_are_not_renormalised(qkv):
    q, k, v = qkv
    _, w = luong_local_attention(q, k, v, 2)
    assert (w.sum(-1) < 1).all() and (w.sum(-1) > 0).all()
    torch.testing.assert_close(w, luong_local_attention(q, k, v, 2, gaussian=False)[1]
                               * gaussian_window(torch.arange(S, dtype=torch.float32), monotonic_alignment(L), 2))


def test_attn_mask_is_combined_with_the_window(qkv):
    q, k, v = qkv
    real = torch.ones(B, 1, S, dtype=torch.bool)
    real[1, :, 2:] = False  # sequence 1 has only 2 real keys
    out, w = luong_local_attention(q, k, v, 2, gaussian=False, attn_mask=real)
    window = local_window_mask(L, S, 2, monotonic_alignment(L))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=window & real))
    assert (w[1, :, 2:] == 0).all()
    assert (w[1, 5] == 0).all() and (out[1, 5] == 0).all()  # window [3, 7] holds no real key: zeros, no NaN


def test_errors(qkv):
    q, k, v = qkv
    with pytest.raises(ValueError, match="predictive_alignment"):
        luong_local_attention(q, k, v, 2, "predictive")
    with pytest.raises(ValueError, match="`D`"):
        luong_local_attention(q, k, v, -1)
    with pytest.raises(ValueError, match="`centers`.*query length L"):
        luong_local_attention(q, k, v, 2, torch.zeros(L + 1))
    with pytest.raises(ValueError, match="`value`.*key length S"):
        luong_local_attention(q, k, v[:, :-1], 2)
