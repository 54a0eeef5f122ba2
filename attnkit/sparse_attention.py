"""Sparse attention patterns as boolean masks (True = may attend), and what they let a token reach.

Each pattern keeps O(L) of the L x S pairs: a sliding window (Longformer, Mistral), a dilated window
(every d-th key), a strided pattern (Sparse Transformer), global tokens that see and are seen by all,
and block-sparse layouts (BigBird). A mask here is dense, for reading and checking; an efficient
kernel (FlashAttention's block skipping, `torch.nn.attention.flex_attention`'s block mask) computes
only the allowed tiles. Masks are causal and bottom-right aligned like `attnkit.causal_mask`: query i
is the token at position S - L + i. LSH bucketing (Reformer) groups similar vectors instead.

Shapes: L query length, S key length, D width.
"""

from __future__ import annotations

import torch

from attnkit._validate import expect_dims, expect_tensor

__all__ = ["dilated_window_mask", "strided_mask", "global_tokens_mask", "block_sparse_mask", "receptive_field",
           "lsh_buckets"]


def _expect_int(name: str, n: object, low: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < low:
        raise ValueError(f"Expected `{name}` to be an int >= {low} but got {n!r}")
    return n


def _offsets(L: int, S: int) -> torch.Tensor:
    """(L, S): how far key j lies behind query i's position S - L + i (negative = in the future)."""
    _expect_int("L", L, 0)
    _expect_int("S", S, 0)
    if S < L:
        raise ValueError(f"Expected `S` >= `L` (every query's own key is present) but got L={L}, S={S}")
    return torch.arange(S - L, S)[:, None] - torch.arange(S)[None, :]  # (L, 1) - (1, S) -> (L, S)


def dilated_window_mask(L: int, S: int, window: int, dilation: int = 1) -> torch.Tensor:
    """Causal window of `window` keys spaced `dilation` apart, ending at the query's own position.

    Query at position p sees keys p, p - d, ..., p - (window - 1) d. With dilation 1 it is the plain
    sliding window of the last `window` tokens; a larger dilation reaches as far with the same count.

    Shapes: -> (L, S) bool.

    See chapters/07_efficient_attention.ipynb.
    """
    _expect_int("window", window, 1)
    _expect_int("dilation", dilation, 1)
    behind = _offsets(L, S)  # (L, S)
    return (behind >= 0) & (behind < window * dilation) & (behind % dilation == 0)


def strided_mask(L: int, S: int, stride: int) -> torch.Tensor:
    """The Sparse Transformer's strided pattern: the last `stride` tokens, and every `stride`-th before.

    Two heads (or two layers) of it, local then strided, connect every pair in two steps.

    Shapes: -> (L, S) bool.

    See chapters/07_efficient_attention.ipynb.
    """
    _expect_int("stride", stride, 1)
    behind = _offsets(L, S)  # (L, S)
    return (behind >= 0) & ((behind < stride) | (behind % stride == 0))


def global_tokens_mask(L: int, S: int, window: int, n_global: int) -> torch.Tensor:
    """A causal sliding window plus `n_global` global tokens at the start (Longformer; attention sinks).

    Every query sees the first `n_global` keys; a global query (position < n_global) sees every
    key up to itself.

    Shapes: -> (L, S) bool.

    See chapters/07_efficient_attention.ipynb.
    """
    _expect_int("n_global", n_global, 0)
    behind = _offsets(L, S)
    local = dilated_window_mask(L, S, window)  # (L, S)
    positions = torch.arange(S - L, S)[:, None]  # (L, 1)
    keys = torch.arange(S)[None, :]  # (1, S)
    return (local | (keys < n_global) | (positions < n_global)) & (behind >= 0)


def block_sparse_mask(layout: torch.Tensor, block_size: int) -> torch.Tensor:
    """Expand a block layout (True = compute this tile) to a token-level mask.

    Shapes: layout (nL, nS) bool -> (nL * block_size, nS * block_size) bool.

    See chapters/07_efficient_attention.ipynb.
    """
    expect_tensor("layout", layout)
    expect_dims("layout", layout, ("nL", "nS"))
    if layout.dtype != torch.bool:
        raise TypeError(f"Expected `layout` to be a bool tensor but got dtype {layout.dtype}")
    _expect_int("block_size", block_size, 1)
    return layout.repeat_interleave(block_size, dim=0).repeat_interleave(block_size, dim=1)


def receptive_field(mask: torch.Tensor, n_layers: int) -> torch.Tensor:
    """Which tokens can influence each position after `n_layers` layers with this attention mask.

    One layer moves information along the mask's edges; n layers along paths of n edges (the
    boolean matrix power). A window of w reaches about n (w - 1) tokens back after n layers.

    Shapes: mask (L, L) bool -> (L, L) bool.

    See chapters/07_efficient_attention.ipynb.
    """
    expect_tensor("mask", mask)
    expect_dims("mask", mask, ("L", "L"))
    if mask.shape[0] != mask.shape[1] or mask.dtype != torch.bool:
        raise ValueError(f"Expected `mask` to be a square bool (L, L) mask but got {tuple(mask.shape)} "
                         f"of dtype {mask.dtype}")
    _expect_int("n_layers", n_layers, 1)
    step = mask.float()
    reach = step
    for _ in range(n_layers - 1):
        reach = ((reach @ step) > 0).float()  # (L, L): a path of one more edge
    return reach > 0


def lsh_buckets(x: torch.Tensor, n_buckets: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Reformer's angular LSH: a random rotation, then the bucket = argmax over [xR, -xR].

    Vectors pointing the same way tend to share a bucket; attending only within a bucket keeps the
    large scores (similar q and k) and skips most small ones.

    Shapes: x (..., L, D) -> buckets (..., L) int64 in [0, n_buckets).

    See chapters/07_efficient_attention.ipynb.
    """
    expect_tensor("x", x)
    if x.dim() < 1:
        raise ValueError("Expected `x` to have a last dimension D but got a 0-d tensor")
    if not isinstance(n_buckets, int) or n_buckets < 2 or n_buckets % 2:
        raise ValueError(f"Expected `n_buckets` to be an even int >= 2 but got {n_buckets!r}")
    rotation = torch.randn(x.shape[-1], n_buckets // 2, generator=generator, dtype=x.dtype)  # (D, n_buckets / 2)
    projected = x @ rotation  # (..., L, n_buckets / 2)
    return torch.cat([projected, -projected], dim=-1).argmax(dim=-1)  # (..., L)
