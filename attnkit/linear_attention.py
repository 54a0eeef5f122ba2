"""Linear attention (Katharopoulos et al. 2020): exp(q . k) replaced by phi(q) . phi(k), phi(x) = elu(x) + 1.

Then sum_j phi(q)·phi(k_j) v_j = phi(q)^T (sum_j phi(k_j) v_j^T): the sum over keys no longer depends
on the query, so it is computed once, a D x Dv matrix, and the cost is linear in the length. Causal,
that sum is a running state S_t = S_{t-1} + phi(k_t) v_t^T (with a normaliser z_t = z_{t-1} + phi(k_t)):
an RNN whose state has a constant size, however long the sequence.

Shape legend (PyTorch's): B... any leading batch dims (batch, heads), L query length, S key length,
D query/key width, Dv value width.
"""

from __future__ import annotations

import torch

from attnkit._validate import expect_ndim, expect_size, expect_tensor

__all__ = ["elu_feature_map", "linear_attention_parallel", "linear_attention_rnn"]


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1: positive everywhere, so phi(q) . phi(k) > 0 can stand in for exp(q . k).

    Shapes: x (..., D) -> (..., D).

    See chapters/07_efficient_attention.ipynb.
    """
    expect_tensor("x", x)
    # elu(x) + 1 is x + 1 above 0 and exp(x) below; written so, it stays > 0 in float32 (elu(-20) + 1 rounds
    # to 0), and the clamp keeps exp() of the unused branch finite, so no 0 * inf reaches a gradient.
    return torch.where(x > 0, x + 1, torch.exp(x.clamp(max=0)))


def _check_qkv(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
    for name, x in (("query", query), ("key", key), ("value", value)):
        expect_tensor(name, x)
        expect_ndim(name, x, 2, "(..., length, width)")
    expect_size("key", key, -1, query.shape[-1], "the query width D")
    expect_size("value", value, -2, key.shape[-2], "the key length S")


def linear_attention_parallel(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *,
                     causal: bool = False) -> torch.Tensor:
    """Linear attention's parallel form: each query's phi-weighted average of the values.

    Not causal: phi(Q) (phi(K)^T V) / (phi(Q) phi(K)^T 1), linear in L and S (the D x Dv sum is
    shared by all queries). Causal (L == S): the same weights phi(q_i) . phi(k_j) for j <= i, as one
    masked (L, L) product, the form used for training; `linear_attention_rnn` gives the same numbers
    one token at a time.

    Shapes: query (B..., L, D), key (B..., S, D), value (B..., S, Dv) -> output (B..., L, Dv).

    See chapters/07_efficient_attention.ipynb.
    """
    _check_qkv(query, key, value)
    q, k = elu_feature_map(query), elu_feature_map(key)  # (B..., L, D), (B..., S, D)
    if not causal:
        kv = k.transpose(-2, -1) @ value  # (B..., D, S) x (B..., S, Dv) -> (B..., D, Dv): one sum for all queries
        z = k.sum(dim=-2)  # (B..., D): the normaliser's sum
        return (q @ kv) / (q @ z[..., None])  # (B..., L, Dv) / (B..., L, 1)
    L, S = query.shape[-2], key.shape[-2]
    if L != S:
        raise ValueError(f"Expected L == S with `causal=True` but got L={L}, S={S}")
    kernel = (q @ k.transpose(-2, -1)).tril()  # (B..., L, L): phi(q_i) . phi(k_j), 0 for j > i
    return (kernel @ value) / kernel.sum(dim=-1, keepdim=True)  # (B..., L, Dv)


def linear_attention_rnn(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Causal linear attention as an RNN: one token at a time, a state of constant size.

    S_t = S_{t-1} + phi(k_t) v_t^T, z_t = z_{t-1} + phi(k_t), out_t = phi(q_t)^T S_t / (phi(q_t)^T z_t).
    Returns the outputs and the final (S, z); pass it back as `state` to continue the sequence
    (decoding needs nothing else from the past: no KV cache).

    Shapes: query, key (B..., L, D), value (B..., L, Dv), state ((B..., D, Dv), (B..., D)) or None
    -> output (B..., L, Dv), state ((B..., D, Dv), (B..., D)).

    See chapters/07_efficient_attention.ipynb.
    """
    _check_qkv(query, key, value)
    expect_size("key", key, -2, query.shape[-2], "the query length L (one key per token)")
    batch, D, Dv = query.shape[:-2], query.shape[-1], value.shape[-1]
    if state is None:
        s = torch.zeros(batch + (D, Dv), dtype=query.dtype, device=query.device)  # (B..., D, Dv)
        z = torch.zeros(batch + (D,), dtype=query.dtype, device=query.device)  # (B..., D)
    else:
        s, z = state
        expect_tensor("state[0]", s)
        expect_tensor("state[1]", z)
        if s.shape[-2:] != (D, Dv) or z.shape[-1:] != (D,):
            raise ValueError(f"Expected `state` shapes (..., {D}, {Dv}) and (..., {D}) but got "
                             f"{tuple(s.shape)} and {tuple(z.shape)}")
    q, k = elu_feature_map(query), elu_feature_map(key)
    outs = []
    for t in range(query.shape[-2]):
        s = s + k[..., t, :, None] * value[..., t, None, :]  # (B..., D, 1) * (B..., 1, Dv) -> (B..., D, Dv)
        z = z + k[..., t, :]  # (B..., D)
        num = (q[..., t, None, :] @ s)[..., 0, :]  # (B..., 1, D) x (B..., D, Dv) -> (B..., Dv)
        den = (q[..., t, :] * z).sum(dim=-1, keepdim=True)  # (B..., 1)
        outs.append(num / den)
    return torch.stack(outs, dim=-2), (s, z)  # (B..., L, Dv)
