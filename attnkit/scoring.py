"""Scoring functions: how much should query i look at key j?

Every scorer returns a (..., L, S) matrix of scores e_ij; `attention_from_scores` then does the step
they all share: a masked softmax into weights alpha_ij and the weighted sum of the values. So

    attention_from_scores(scaled_dot_product_scores(q, k), v) == scaled_dot_product_attention(q, k, v)

Shape legend (PyTorch's): B... any leading batch dims, L query length, S key length,
E query/key width (E_q, E_k when they differ), Ev value width, d_a the additive hidden width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from attnkit._validate import (
    expect_dims,
    expect_ndim,
    expect_size,
    expect_tensor,
)
from attnkit.attention import masked_softmax, softmax

__all__ = [
    "dot_product_scores",
    "scaled_dot_product_scores",
    "additive_scores",
    "attention_from_scores",
    "AdditiveAttention",
    "softmax_saturation",
]


def _expect_query_key(query: torch.Tensor, key: torch.Tensor, same_width: bool) -> None:
    for name, x in (("query", query), ("key", key)):
        expect_tensor(name, x)
        expect_ndim(name, x, 2, "(..., length, width)")
    if same_width:
        expect_size("key", key, -1, query.shape[-1], "the query width E")


def dot_product_scores(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Multiplicative (Luong "dot") scores e_ij = q_i . k_j, every pair at once.

    One matrix product scores all L x S pairs, which is why it is faster than additive scoring.

    Shapes: query (B..., L, E), key (B..., S, E) -> scores (B..., L, S).

    See chapters/01_attention.ipynb.
    """
    _expect_query_key(query, key, same_width=True)
    return query @ key.transpose(-2, -1)  # (B..., L, E) x (B..., E, S) -> (B..., L, S)


def scaled_dot_product_scores(
    query: torch.Tensor, key: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """Dot-product scores times `scale`, 1/sqrt(E) by default, as in the Transformer.

    With unit-variance entries q . k has variance E; dividing by sqrt(E) brings it back to 1 so
    the softmax does not saturate (see `softmax_saturation`).

    Shapes: query (B..., L, E), key (B..., S, E) -> scores (B..., L, S).

    See chapters/01_attention.ipynb.
    """
    scores = dot_product_scores(query, key)  # (B..., L, S)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    return scores * scale


def additive_scores(
    query: torch.Tensor,
    key: torch.Tensor,
    W_q: torch.Tensor,
    W_k: torch.Tensor,
    v_a: torch.Tensor,
) -> torch.Tensor:
    """Additive (Bahdanau "concat") scores e_ij = v_a . tanh(W_q q_i + W_k k_j): a one-hidden-layer MLP.

    Queries and keys may have different widths; the price is an (L, S, d_a) hidden tensor, where
    dot-product scoring needs none.

    Shapes: query (B..., L, E_q), key (B..., S, E_k), W_q (d_a, E_q), W_k (d_a, E_k), v_a (d_a,)
        -> scores (B..., L, S). W_q and W_k are laid out like an `nn.Linear` weight.

    See chapters/01_attention.ipynb.
    """
    _expect_query_key(query, key, same_width=False)
    for name, x, expected in (("W_q", W_q, ("d_a", "E_q")), ("W_k", W_k, ("d_a", "E_k")), ("v_a", v_a, ("d_a",))):
        expect_dims(name, expect_tensor(name, x), expected)
    d_a = v_a.shape[0]
    expect_size("W_q", W_q, 0, d_a, "the hidden width d_a of v_a")
    expect_size("W_k", W_k, 0, d_a, "the hidden width d_a of v_a")
    expect_size("W_q", W_q, 1, query.shape[-1], "the query width E_q")
    expect_size("W_k", W_k, 1, key.shape[-1], "the key width E_k")

    q = query @ W_q.T  # (B..., L, E_q) x (E_q, d_a) -> (B..., L, d_a)
    k = key @ W_k.T  # (B..., S, E_k) x (E_k, d_a) -> (B..., S, d_a)
    hidden = torch.tanh(q.unsqueeze(-2) + k.unsqueeze(-3))  # (B..., L, 1, d_a) + (B..., 1, S, d_a) -> (B..., L, S, d_a)
    return hidden @ v_a  # (B..., L, S, d_a) x (d_a,) -> (B..., L, S)


def attention_from_scores(
    scores: torch.Tensor, value: torch.Tensor, attn_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The step every scoring function shares: masked softmax into weights, then the weighted sum of values.

    Splitting scoring from this step lets dot-product, scaled and additive attention differ in one line.

    Shapes: scores (B..., L, S), value (B..., S, Ev), attn_mask broadcastable to (B..., L, S)
        -> output (B..., L, Ev), weights (B..., L, S).

    See chapters/01_attention.ipynb.
    """
    expect_tensor("value", value)
    expect_ndim("scores", expect_tensor("scores", scores), 2, "(..., L, S)")
    expect_ndim("value", value, 2, "(..., S, Ev)")
    expect_size("value", value, -2, scores.shape[-1], "the key length S of the scores")
    weights = masked_softmax(scores, attn_mask)  # (B..., L, S)
    output = weights @ value  # (B..., L, S) x (B..., S, Ev) -> (B..., L, Ev)
    return output, weights


class AdditiveAttention(nn.Module):
    """Bahdanau's additive attention as a module: learned W_q, W_k, v_a, then `attention_from_scores`.

    No biases, as in Bahdanau et al. (2015); the mask semantics are those of
    `F.scaled_dot_product_attention` (bool True = may attend, float = added).

    Shapes: query (B..., L, query_dim), key (B..., S, key_dim), value (B..., S, Ev)
        -> output (B..., L, Ev), weights (B..., L, S).

    See chapters/01_attention.ipynb.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.W_q = nn.Linear(query_dim, hidden_dim, bias=False)  # weight (d_a, E_q)
        self.W_k = nn.Linear(key_dim, hidden_dim, bias=False)  # weight (d_a, E_k)
        # v_a reads the hidden layer out into one score; initialised like an nn.Linear(d_a, 1) weight
        bound = 1.0 / math.sqrt(hidden_dim)
        self.v_a = nn.Parameter(torch.empty(hidden_dim).uniform_(-bound, bound))  # (d_a,)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = additive_scores(query, key, self.W_q.weight, self.W_k.weight, self.v_a)  # (B..., L, S)
        return attention_from_scores(scores, value, attn_mask)  # (B..., L, Ev), (B..., L, S)


def softmax_saturation(
    d_ks: Sequence[int] = (4, 16, 64, 256, 1024),
    S: int = 16,
    num_samples: int = 256,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Why scale by 1/sqrt(d_k): the largest weight and the softmax's gradient size, unscaled vs scaled.

    Queries and keys have unit-variance entries, so unscaled scores have variance d_k; as d_k grows the
    softmax becomes one-hot and its Jacobian diag(p) - p p^T (what backprop multiplies by) goes to zero.

    Shapes: -> dict of (len(d_ks),) tensors: "d_k", "max_weight_unscaled", "max_weight_scaled",
        "grad_norm_unscaled", "grad_norm_scaled" (means over `num_samples` rows of S keys).

    See chapters/01_attention.ipynb.
    """
    if S < 1 or num_samples < 1:
        raise ValueError(f"Expected `S` >= 1 and `num_samples` >= 1 but got S={S}, num_samples={num_samples}")
    stats: dict[str, list[float]] = {
        "max_weight_unscaled": [], "max_weight_scaled": [], "grad_norm_unscaled": [], "grad_norm_scaled": []
    }
    for d_k in d_ks:
        q = torch.randn(num_samples, 1, d_k, generator=generator)  # (N, 1, d_k)
        k = torch.randn(num_samples, S, d_k, generator=generator)  # (N, S, d_k)
        for kind, scale in (("unscaled", 1.0), ("scaled", 1.0 / math.sqrt(d_k))):
            p = softmax(scaled_dot_product_scores(q, k, scale)[:, 0])  # (N, 1, S) -> (N, S)
            jacobian = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # (N, S, S): d p / d scores
            stats[f"max_weight_{kind}"].append(p.amax(dim=-1).mean().item())
            stats[f"grad_norm_{kind}"].append(torch.linalg.matrix_norm(jacobian).mean().item())
    return {"d_k": torch.tensor(list(d_ks))} | {name: torch.tensor(v) for name, v in stats.items()}
