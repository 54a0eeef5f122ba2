"""attnkit.scoring: scorers against torch oracles (einsum, F.scaled_dot_product_attention, a per-pair loop)."""

import math

import pytest
import torch
import torch.nn.functional as F

from attnkit import (
    AdditiveAttention,
    additive_scores,
    attention_from_scores,
    dot_product_scores,
    masked_softmax,
    scaled_dot_product_scores,
    softmax_saturation,
)

# Shapes chosen so a transposition cannot pass: B > 1, H > 1, L != S, E != Ev, E_q != E_k != A.
B, H, L, S, E, Ev = 2, 3, 4, 5, 6, 7
E_q, E_k, A = 6, 9, 8


@pytest.fixture
def qkv():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, H, L, E, generator=g), torch.randn(B, H, S, E, generator=g),
            torch.randn(B, H, S, Ev, generator=g))


def test_dot_product_scores_match_einsum(qkv):
    q, k, _ = qkv
    scores = dot_product_scores(q, k)
    assert scores.shape == (B, H, L, S)
    torch.testing.assert_close(scores, torch.einsum("bhle,bhse->bhls", q, k))


@pytest.mark.parametrize("scale", [None, 0.3])
def test_scaled_scores_then_attention_match_torch_sdpa(qkv, scale):
    q, k, v = qkv
    out, w = attention_from_scores(scaled_dot_product_scores(q, k, scale), v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=scale))
    expected = torch.einsum("bhle,bhse->bhls", q, k) * (1 / math.sqrt(E) if scale is None else scale)
    torch.testing.assert_close(w, torch.softmax(expected, dim=-1))


def test_bool_mask_true_means_may_attend(qkv):
    q, k, v = qkv
    mask = torch.rand(B, 1, L, S, generator=torch.Generator().manual_seed(1)) > 0.4
    mask[..., 0] = True
    out, w = attention_from_scores(scaled_dot_product_scores(q, k), v, mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert (w.masked_select(~mask.expand(B, H, L, S)) == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, L))


def test_float_mask_is_added(qkv):
    q, k, v = qkv
    mask = torch.randn(L, S, generator=torch.Generator().manual_seed(2))
    mask[0, 1:] = float("-inf")
    out, w = attention_from_scores(scaled_dot_product_scores(q, k), v, mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert (w[..., 0, 1:] == 0).all()


def test_fully_masked_row_gives_zeros_like_torch(qkv):
    q, k, v = qkv
    mask = torch.ones(L, S, dtype=torch.bool)
    mask[2] = False
    out, w = attention_from_scores(scaled_dot_product_scores(q, k), v, mask)
    assert not out.isnan().any()
    assert (w[..., 2, :] == 0).all() and (out[..., 2, :] == 0).all()
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_masked_softmax_matches_masked_fill_then_softmax():
    scores = torch.randn(B, L, S, generator=torch.Generator().manual_seed(3))
    mask = torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L)
    expected = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    torch.testing.assert_close(masked_softmax(scores, mask), expected)
    torch.testing.assert_close(masked_softmax(scores), torch.softmax(scores, dim=-1))


@pytest.fixture
def additive():
    g = torch.Generator().manual_seed(4)
    return {"query": torch.randn(B, L, E_q, generator=g), "key": torch.randn(B, S, E_k, generator=g),
            "W_q": torch.randn(A, E_q, generator=g), "W_k": torch.randn(A, E_k, generator=g),
            "v_a": torch.randn(A, generator=g)}


def loop_additive_scores(query, key, W_q, W_k, v_a):
    """e[b, i, j] = v_a . tanh(W_q q_i + W_k k_j), one pair at a time."""
    out = torch.empty(query.shape[0], query.shape[1], key.shape[1])
    for b in range(query.shape[0]):
        for i in range(query.shape[1]):
            for j in range(key.shape[1]):
                out[b, i, j] = torch.dot(v_a, torch.tanh(W_q @ query[b, i] + W_k @ key[b, j]))
    return out


def test_additive_scores_match_per_pair_loop(additive):
    scores = additive_scores(**additive)
    assert scores.shape == (B, L, S)
    torch.testing.assert_close(scores, loop_additive_scores(**additive))


def test_additive_attention_module_matches_loop_and_learns(additive):
    torch.manual_seed(5)
    module = AdditiveAttention(E_q, E_k, A)
    value = torch.randn(B, S, Ev)
    mask = torch.ones(B, 1, S, dtype=torch.bool)
    mask[1, :, 3:] = False  # sequence 1 has 3 real keys
    out, w = module(additive["query"], additive["key"], value, attn_mask=mask)
    scores = loop_additive_scores(additive["query"], additive["key"], module.W_q.weight.detach(),
                                  module.W_k.weight.detach(), module.v_a.detach())
    expected_w = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    torch.testing.assert_close(w, expected_w)
    torch.testing.assert_close(out, expected_w @ value)
    assert (w[1, :, 3:] == 0).all()
    assert not hasattr(module, "weights") and not hasattr(module, "attn_weights")  # returned, not stashed

    out.square().sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert {n: tuple(p.shape) for n, p in module.named_parameters()} == {
        "W_q.weight": (A, E_q), "W_k.weight": (A, E_k), "v_a": (A,)}


def test_errors_name_the_argument(qkv, additive):
    q, k, v = qkv
    with pytest.raises(ValueError, match="`key`.*query width E"):
        dot_product_scores(q, k[..., :-1])
    with pytest.raises(ValueError, match=r"`value`.*key length S"):
        attention_from_scores(scaled_dot_product_scores(q, k), v[..., :-1, :])
    with pytest.raises(ValueError, match=r"`W_q` shape to be \(d_a, E_q\) but got \(8,\)"):
        additive_scores(**(additive | {"W_q": additive["v_a"]}))
    with pytest.raises(ValueError, match=r"`W_k`.*key width E_k"):
        additive_scores(**(additive | {"W_k": additive["W_q"]}))
    with pytest.raises(ValueError, match="`attn_mask` shape"):
        attention_from_scores(scaled_dot_product_scores(q, k), v, torch.ones(S, L, dtype=torch.bool))
    with pytest.raises(TypeError, match="`query`"):
        dot_product_scores(q.tolist(), k)


def test_softmax_saturation_shows_why_we_scale():
    stats = softmax_saturation((4, 64, 1024), S=16, num_samples=256, generator=torch.Generator().manual_seed(0))
    unscaled, scaled = stats["max_weight_unscaled"], stats["max_weight_scaled"]
    assert (unscaled.diff() > 0).all() and unscaled[-1] > 0.9  # unscaled: one key takes (nearly) all
    assert (scaled - scaled[0]).abs().max() < 0.05  # scaled: the same picture at every d_k
    assert stats["grad_norm_unscaled"][-1] < 0.3 * stats["grad_norm_scaled"][-1]  # gradients vanish


def test_softmax_saturation_matches_autograd():
    """Recompute one point with the same seed: torch.softmax and an autograd Jacobian per row."""
    stats = softmax_saturation((8,), S=5, num_samples=3, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(3, 1, 8, generator=g), torch.randn(3, 5, 8, generator=g)
    for kind, scale in (("unscaled", 1.0), ("scaled", 8**-0.5)):
        rows = (q @ k.transpose(1, 2))[:, 0] * scale  # (3, 5)
        norms = [torch.linalg.matrix_norm(torch.autograd.functional.jacobian(lambda x: torch.softmax(x, -1), r))
                 for r in rows]
        torch.testing.assert_close(stats[f"grad_norm_{kind}"], torch.stack(norms).mean()[None])
        torch.testing.assert_close(stats[f"max_weight_{kind}"], torch.softmax(rows, -1).amax(-1).mean()[None])
