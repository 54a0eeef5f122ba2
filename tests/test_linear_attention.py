"""attnkit.linear_attention: the parallel and the recurrent forms agree, and both equal the kernel written out."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnkit import elu_feature_map, linear_attention_parallel, linear_attention_rnn


def qkv(B=2, H=3, L=11, S=11, D=6, Dv=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, L, D, generator=gen), torch.randn(B, H, S, D, generator=gen),
            torch.randn(B, H, S, Dv, generator=gen))


def by_definition(q, k, v, causal):
    """sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j), written as a weighted average (the oracle)."""
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    sim = torch.einsum("...ld,...sd->...ls", phi_q, phi_k)  # (B, H, L, S)
    if causal:
        sim = sim * torch.ones(sim.shape[-2:]).tril()
    weights = sim / sim.sum(-1, keepdim=True)  # rows sum to 1, like softmax weights
    return weights @ v


def test_feature_map_is_positive_and_elu_plus_one():
    x = torch.linspace(-20, 5, 101)
    phi = elu_feature_map(x)
    assert (phi > 0).all()
    torch.testing.assert_close(phi, F.elu(x.double()).float() + 1, atol=1e-6, rtol=1e-5)
    x.requires_grad_(True)
    elu_feature_map(x * 10).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_parallel_form_equals_the_definition_with_l_not_s():
    q, k, v = qkv(L=7, S=13)
    torch.testing.assert_close(linear_attention_parallel(q, k, v), by_definition(q, k, v, False), atol=1e-5,
                               rtol=1e-4)


def test_causal_parallel_and_recurrent_forms_agree():
    q, k, v = qkv(L=17, S=17)
    parallel = linear_attention_parallel(q, k, v, causal=True)
    recurrent, (state, z) = linear_attention_rnn(q, k, v)
    torch.testing.assert_close(parallel, by_definition(q, k, v, True), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(recurrent, parallel, atol=1e-5, rtol=1e-4)
    assert state.shape == (2, 3, 6, 4) and z.shape == (2, 3, 6)  # (B, H, D, Dv), (B, H, D): whatever L is
    phi_k = elu_feature_map(k)
    torch.testing.assert_close(state, phi_k.transpose(-2, -1) @ v, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(z, phi_k.sum(-2))


def test_the_last_causal_output_equals_the_non_causal_one_of_the_last_query():
    q, k, v = qkv(L=9, S=9)
    causal = linear_attention_parallel(q, k, v, causal=True)
    full = linear_attention_parallel(q, k, v)
    torch.testing.assert_close(causal[..., -1, :], full[..., -1, :], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(causal[..., 0, :], full[..., 0, :])


def test_the_state_carries_the_past_across_chunks():
    q, k, v = qkv(L=12, S=12)
    whole, _ = linear_attention_rnn(q, k, v)
    first, state = linear_attention_rnn(q[..., :5, :], k[..., :5, :], v[..., :5, :])
    second, _ = linear_attention_rnn(q[..., 5:, :], k[..., 5:, :], v[..., 5:, :], state)
    torch.testing.assert_close(torch.cat([first, second], dim=-2), whole, atol=1e-5, rtol=1e-4)


def test_bad_input_names_the_argument():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="`key`"):
        linear_attention_parallel(q, k[..., :3], v)
    with pytest.raises(ValueError, match="`value`"):
        linear_attention_rnn(q, k, v[..., :4, :])
    with pytest.raises(ValueError, match="L == S"):
        linear_attention_parallel(q[..., :3, :], k, v, causal=True)
    with pytest.raises(ValueError, match="`state`"):
        linear_attention_rnn(q, k, v, (torch.zeros(2, 3, 6, 5), torch.zeros(2, 3, 6)))
    with pytest.raises(TypeError, match="`x`"):
        elu_feature_map([1.0])
