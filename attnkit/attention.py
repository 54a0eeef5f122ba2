"""Scaled dot-product attention, written out so a learner can read every step.

This is the "equivalent to" reference in the docstring of
`torch.nn.functional.scaled_dot_product_attention`, with the same names, argument order and mask
semantics, and one addition: it also returns the attention weights.

Shape legend (PyTorch's): B... any leading batch dims (batch, heads), L query length,
S key length, E query/key width, Ev value width.
"""

from __future__ import annotations

import math

import torch

from attnkit._validate import (
    broadcast_shapes,
    expect_broadcastable,
    expect_mask_dtype,
    expect_ndim,
    expect_size,
    expect_tensor,
)
from attnkit.masks import to_additive

__all__ = ["softmax", "masked_softmax", "scaled_dot_product_attention", "attend", "entropy"]

_HALF = (torch.float16, torch.bfloat16)  # computed in float32, results rounded back, as in PyTorch


def softmax(scores: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable softmax that gives zeros, not NaN, on a row whose every entry is -inf.

    Subtracting the row maximum keeps exp() from overflowing; a fully masked row has nothing to
    attend to, and we follow PyTorch's SDPA in giving it all-zero weights.

    Shapes: scores (..., N) -> weights (..., N), each row summing to 1 (or 0 if fully masked).

    See chapters/01_attention.ipynb and chapters/03_masking.ipynb.
    """
    expect_tensor("scores", scores)
    # float16/bfloat16: compute in float32 and round once at the end, as PyTorch's SDPA does.
    # In float16 exp() of the shifted scores and the row sums lose most of their digits otherwise.
    work = scores.float() if scores.dtype in _HALF else scores
    row_max = work.amax(dim=dim, keepdim=True)  # (..., 1)
    fully_masked = torch.isneginf(row_max)  # (..., 1): nothing to attend to
    shifted = work - torch.where(fully_masked, torch.zeros_like(row_max), row_max)
    exp = torch.exp(shifted)  # exp(-inf) = 0, so masked entries vanish; a fully masked row is all 0
    total = exp.sum(dim=dim, keepdim=True)  # (..., 1), at least 1 unless the row is fully masked
    # Divide a fully masked row by 1, not 0: its weights are 0 / 1 = 0 and so are its gradients.
    # (Computing 0 / 0 and hiding the NaN with torch.where would still send NaN into the backward.)
    total = torch.where(fully_masked, torch.ones_like(total), total)
    return (exp / total).to(scores.dtype)


def masked_softmax(scores: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the keys after masking, with the masks of `F.scaled_dot_product_attention`.

    A bool mask is True where a query *may attend*; a float mask is added to the scores. A query
    whose keys are all masked gets zero weights, as in PyTorch's SDPA (a naive softmax gives NaN).

    Shapes: scores (B..., L, S), attn_mask broadcastable to (B..., L, S) -> weights (B..., L, S).

    See chapters/01_attention.ipynb and chapters/03_masking.ipynb.
    """
    expect_tensor("scores", scores)
    return softmax(scores + _bias(attn_mask, scores.shape, scores.dtype), dim=-1)  # rows sum to 1 (0 if masked)


def _bias(attn_mask: torch.Tensor | None, scores_shape: torch.Size, dtype: torch.dtype) -> torch.Tensor | float:
    """A user's `attn_mask`, checked, as the float added to the scores (0 / -inf for a bool mask)."""
    if attn_mask is None:
        return 0.0
    expect_tensor("attn_mask", attn_mask)
    expect_mask_dtype("attn_mask", attn_mask)
    expect_broadcastable("attn_mask", attn_mask, scores_shape)
    return to_additive(attn_mask, dtype)


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T * scale + mask) V, exactly as `F.scaled_dot_product_attention`, plus weights.

    Masks: a bool `attn_mask` is True where a query *may attend* to a key; a float one is *added*
    to the scores. `is_causal=True` is top-left aligned like PyTorch's (tril of ones(L, S)); for
    decoding with a cache use `attnkit.causal_mask(L, S)`, which is bottom-right aligned. A query
    whose keys are all masked gets zero weights and a zero output, as PyTorch does. Dropout is
    applied whenever `dropout_p > 0`, training or not, as in PyTorch; the returned weights are the
    ones after dropout, i.e. the ones multiplied with V. float16/bfloat16 inputs are computed in
    float32 and the output and weights rounded back, as in PyTorch, which keeps gradients accurate.

    Shapes:
        query (B..., L, E), key (B..., S, E), value (B..., S, Ev),
        attn_mask broadcastable to (B..., L, S)
        -> output (B..., L, Ev), weights (B..., L, S)
        With enable_gqa, key/value may have fewer heads (dim -3) than query, a divisor of them.

    See chapters/01_attention.ipynb.
    """
    for name, x in (("query", query), ("key", key), ("value", value)):
        expect_tensor(name, x)
        expect_ndim(name, x, 2, "(..., length, width)")
    E = query.shape[-1]
    expect_size("key", key, -1, E, "the query width E")
    expect_size("value", value, -2, key.shape[-2], "the key length S")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"Expected `dropout_p` in [0, 1) but got {dropout_p}")
    if enable_gqa and key.dim() >= 3 and key.shape[-3] != query.shape[-3]:
        Hq, Hk = query.shape[-3], key.shape[-3]
        if Hq % Hk != 0:
            raise ValueError(
                f"Expected the query heads ({Hq}) to be a multiple of the key heads ({Hk}) "
                "with enable_gqa=True"
            )
        # each key/value head serves Hq // Hk query heads: (B, Hk, S, E) -> (B, Hq, S, E)
        key = key.repeat_interleave(Hq // Hk, dim=-3)
        value = value.repeat_interleave(Hq // Hk, dim=-3)

    L, S = query.shape[-2], key.shape[-2]
    if is_causal:
        if attn_mask is not None:
            raise ValueError("Expected either `attn_mask` or `is_causal=True`, not both")
        # top-left aligned, like PyTorch: query i sees keys 0..i whatever S is
        attn_mask = torch.ones(L, S, dtype=torch.bool, device=query.device).tril()
    scores_shape = broadcast_shapes(query.shape[:-2], key.shape[:-2]) + (L, S)
    bias = _bias(attn_mask, scores_shape, torch.float32 if query.dtype in _HALF else query.dtype)
    return attend(query, key, value, bias, dropout_p=dropout_p, scale=scale)


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor | float = 0.0, *,
           dropout_p: float = 0.0, scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The computation of `scaled_dot_product_attention` on inputs already checked: the one place
    where scores, mask, softmax, dropout and the weighted sum meet (MultiHeadAttention calls it too).

    `bias` is the mask as a float added to the scores (0 keeps, -inf blocks). float16/bfloat16 run in
    float32 and the output and weights are rounded back once, as PyTorch's math path does (rounding the
    scores to half precision first makes the gradients several times less accurate).

    Shapes: query (B..., L, E), key (B..., S, E), value (B..., S, Ev), bias broadcastable to (B..., L, S)
    -> output (B..., L, Ev), weights (B..., L, S).

    See chapters/01_attention.ipynb.
    """
    in_dtype = query.dtype
    if in_dtype in _HALF:
        query, key, value = query.float(), key.float(), value.float()
        if isinstance(bias, torch.Tensor):
            bias = bias.float()  # added to the scores: same precision
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    # (B..., L, E) x (B..., E, S) -> (B..., L, S): one score per query-key pair
    scores = query @ key.transpose(-2, -1) * scale
    weights = softmax(scores + bias, dim=-1)  # (B..., L, S), rows sum to 1 (0 if fully masked)
    if dropout_p > 0.0:
        weights = torch.dropout(weights, dropout_p, train=True)  # survivors scaled by 1/(1-p)
    output = weights @ value  # (B..., L, S) x (B..., S, Ev) -> (B..., L, Ev)
    return output.to(in_dtype), weights.to(in_dtype)


def entropy(weights: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The entropy of attention weights in nats: 0 for one-hot, log S for uniform over S keys.

    A zero weight contributes 0 (0 log 0 = 0), so masked keys give no NaN.

    Shapes: weights (..., S) -> (...).

    See chapters/01_attention.ipynb and chapters/04_multi_head_attention.ipynb.
    """
    expect_tensor("weights", weights)
    return -torch.special.xlogy(weights, weights).sum(dim=dim)  # (..., S) -> (...)
