"""FlashAttention's idea in readable code: the softmax computed block by block, attention tile by tile.

A row's softmax needs its maximum and its sum of exponentials, and both can be kept *running*: after
each block of keys, m' = max(m, rowmax(block)); the old sum and the old unnormalised output were
measured against the old maximum, so both are multiplied by exp(m - m') before this block's share is
added. At the end, output = O / l. Nothing of size L x S is ever built: the memory is the output plus
one (block_q, block_k) tile. Per row only the log-sum-exp m + log l is kept, which is all a backward
pass needs to recompute any tile's weights (Dao et al. 2022).

Masks follow `F.scaled_dot_product_attention` (bool True = may attend, float = added); a query whose
keys are all masked gets a zero output and a log-sum-exp of -inf, as SDPA returns zeros.

Shape legend (PyTorch's): B... any leading batch dims (batch, heads), L query length, S key length,
D query/key width, Dv value width.
"""

from __future__ import annotations

import math

import torch

from attnkit._validate import (
    broadcast_shapes,
    expect_broadcastable,
    expect_mask_dtype,
    expect_ndim,
    expect_positive_int,
    expect_size,
    expect_tensor,
)

__all__ = ["online_softmax", "merge_partials", "flash_attention", "tile_steps"]


def _safe(m: torch.Tensor) -> torch.Tensor:
    """The running max as a shift for exp(): 0 where it is still -inf (nothing seen yet, or all masked),
    so that exp(-inf - shift) = 0 instead of exp(-inf + inf) = NaN."""
    return torch.where(torch.isneginf(m), torch.zeros_like(m), m)


def online_softmax(scores: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The running max and running sum of each row's exp(scores), updated one block of columns at a time.

    Returns the history after every block: row_max[t] and row_sum[t] describe the first t + 1 blocks,
    row_sum measured against row_max (sum of exp(score - row_max)). The last entries give the
    softmax: exp(scores - row_max[-1]) / row_sum[-1]. Rows that are all -inf keep max -inf, sum 0.

    Shapes: scores (B..., S) -> row_max (n_blocks, B...), row_sum (n_blocks, B...).

    See chapters/07_efficient_attention.ipynb.
    """
    expect_tensor("scores", scores)
    expect_ndim("scores", scores, 1, "(..., S)")
    expect_positive_int("block_size", block_size)
    m = torch.full(scores.shape[:-1], float("-inf"), dtype=scores.dtype)  # (B...,): nothing seen yet
    l = torch.zeros(scores.shape[:-1], dtype=scores.dtype)  # (B...,)
    maxes, sums = [], []
    for j0 in range(0, scores.shape[-1], block_size):
        block = scores[..., j0:j0 + block_size]  # (B..., block)
        m_new = torch.maximum(m, block.amax(dim=-1))  # (B...,)
        shift = _safe(m_new)
        # the old sum was measured against m: rescale it to m_new, then add this block's share
        l = l * torch.exp(m - shift) + torch.exp(block - shift[..., None]).sum(dim=-1)
        m = m_new
        maxes.append(m)
        sums.append(l)
    return torch.stack(maxes), torch.stack(sums)


def merge_partials(
    out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor, lse_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge two attention results over disjoint sets of keys into the result over their union.

    Each part is normalised over its own keys and carries its log-sum-exp; the union's log-sum-exp is
    lse = log(e^lse_a + e^lse_b) and each part is weighted by e^(lse_part - lse). A part with
    lse = -inf (no visible key) gets weight 0; if both are -inf the result is 0 with lse -inf.

    Shapes: out_a, out_b (B..., L, Dv), lse_a, lse_b (B..., L) -> out (B..., L, Dv), lse (B..., L).

    See chapters/07_efficient_attention.ipynb.
    """
    for name, x in (("out_a", out_a), ("lse_a", lse_a), ("out_b", out_b), ("lse_b", lse_b)):
        expect_tensor(name, x)
    expect_ndim("out_a", out_a, 1, "(..., Dv)")
    if out_a.shape != out_b.shape:
        raise ValueError(f"Expected `out_b` shape to be {tuple(out_a.shape)} (as `out_a`) but got {tuple(out_b.shape)}")
    for name, lse in (("lse_a", lse_a), ("lse_b", lse_b)):
        if lse.shape != out_a.shape[:-1]:
            raise ValueError(f"Expected `{name}` shape to be {tuple(out_a.shape[:-1])} (the outputs' without Dv) "
                             f"but got {tuple(lse.shape)}")
    lse = torch.logaddexp(lse_a, lse_b)  # (B..., L): -inf only if both are
    shift = _safe(lse)
    w_a = torch.exp(lse_a - shift)[..., None]  # (B..., L, 1): the share of part a's keys in the union
    w_b = torch.exp(lse_b - shift)[..., None]
    return w_a * out_a + w_b * out_b, lse


def flash_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
    block_q: int = 128,
    block_k: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T * scale + mask) V computed tile by tile, never building the L x S matrix; plus each row's lse.

    For each block of `block_q` queries, loop over blocks of `block_k` keys keeping a running max m,
    a running sum l and an unnormalised output O (FlashAttention's forward); output = O / l and
    lse = m + log l. `causal=True` is bottom-right aligned like `attnkit.causal_mask(L, S)` and
    FlashAttention 2.1+ (query i is position S - L + i), NOT PyTorch's top-left `is_causal`; the two
    agree when L == S. Tiles entirely in the future are skipped. A fully masked query row gets a zero
    output and lse = -inf, as SDPA returns zeros. float16/bfloat16 tiles are computed in float32 and the
    output rounded back once, as SDPA does; the lse stays float32, as FlashAttention keeps it.

    Shapes:
        query (B..., L, D), key (B..., S, D), value (B..., S, Dv),
        attn_mask broadcastable to (B..., L, S)
        -> output (B..., L, Dv), lse (B..., L)

    See chapters/07_efficient_attention.ipynb.
    """
    for name, x in (("query", query), ("key", key), ("value", value)):
        expect_tensor(name, x)
        expect_ndim(name, x, 2, "(..., length, width)")
    expect_size("key", key, -1, query.shape[-1], "the query width D")
    expect_size("value", value, -2, key.shape[-2], "the key length S")
    expect_positive_int("block_q", block_q)
    expect_positive_int("block_k", block_k)
    L, S, Dv = query.shape[-2], key.shape[-2], value.shape[-1]
    batch = broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    if attn_mask is not None:
        expect_tensor("attn_mask", attn_mask)
        expect_mask_dtype("attn_mask", attn_mask)
        expect_broadcastable("attn_mask", attn_mask, batch + (L, S))
        attn_mask = attn_mask.expand(batch + (L, S))  # a view: no (L, S) copy is made
    if causal and S < L:
        raise ValueError(f"Expected S >= L with `causal=True` (bottom-right aligned) but got L={L}, S={S}")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    work = torch.float32 if query.dtype in (torch.float16, torch.bfloat16) else query.dtype  # one tile at a time
    out = torch.empty(batch + (L, Dv), dtype=work, device=query.device)  # (B..., L, Dv)
    lse = torch.empty(batch + (L,), dtype=work, device=query.device)  # (B..., L)
    for i0 in range(0, L, block_q):
        i1 = min(i0 + block_q, L)
        q = query[..., i0:i1, :].to(work) * scale  # (B..., bq, D)
        m = torch.full(batch + (i1 - i0,), float("-inf"), dtype=work, device=query.device)  # (B..., bq)
        l = torch.zeros_like(m)  # (B..., bq)
        acc = torch.zeros(batch + (i1 - i0, Dv), dtype=work, device=query.device)  # (B..., bq, Dv)
        # bottom-right causal: query i is position S - L + i and sees keys 0 .. S - L + i
        last_key = S if not causal else min(S, S - L + i1)
        for j0 in range(0, last_key, block_k):
            j1 = min(j0 + block_k, S)
            s = q @ key[..., j0:j1, :].to(work).transpose(-2, -1)  # (B..., bq, D) x (B..., D, bk) -> (B..., bq, bk)
            if causal:
                rows = torch.arange(i0, i1, device=query.device)[:, None] + (S - L)  # (bq, 1) positions
                cols = torch.arange(j0, j1, device=query.device)[None, :]  # (1, bk)
                s = s.masked_fill(cols > rows, float("-inf"))
            if attn_mask is not None:  # the mask's own tile: the same rows and columns as the scores'
                tile = attn_mask[..., i0:i1, j0:j1]
                s = s.masked_fill(~tile, float("-inf")) if tile.dtype == torch.bool else s + tile.to(work)
            m_new = torch.maximum(m, s.amax(dim=-1))  # (B..., bq)
            shift = _safe(m_new)  # a row with nothing visible yet stays at 0 instead of NaN
            p = torch.exp(s - shift[..., None])  # (B..., bq, bk)
            correction = torch.exp(m - shift)  # (B..., bq): old values were measured against m
            l = l * correction + p.sum(dim=-1)
            acc = acc * correction[..., None] + p @ value[..., j0:j1, :].to(work)  # (B..., bq, Dv)
            m = m_new
        empty = l == 0  # (B..., bq): every key masked
        out[..., i0:i1, :] = acc / torch.where(empty, torch.ones_like(l), l)[..., None]  # zeros for empty rows
        lse[..., i0:i1] = torch.where(empty, torch.full_like(m, float("-inf")), m + torch.log(l))
    return out.to(query.dtype), lse


def tile_steps(scores: torch.Tensor, block_size: int) -> list[dict[str, torch.Tensor]]:
    """Each step of the online softmax of ONE row of scores: what the max and the sum were, and became.

    Step t has "block" (the columns of tile t), "max_before", "max_after", "sum_before", "correction"
    (exp(max_before - max_after)), "sum_rescaled" (sum_before * correction), "tile_sum" and
    "sum_after" = sum_rescaled + tile_sum, and "weights" (S,): exp(score - max_after) / sum_after on
    the columns seen so far, 0 elsewhere (the softmax so far, before the later tiles correct it).

    Shapes: scores (S,) -> one dict per tile.

    See chapters/07_efficient_attention.ipynb.
    """
    expect_tensor("scores", scores)
    if scores.dim() != 1:
        raise ValueError(f"Expected `scores` shape to be (S,) but got {tuple(scores.shape)}")
    expect_positive_int("block_size", block_size)
    maxes, sums = online_softmax(scores, block_size)  # (n_blocks,), (n_blocks,)
    steps = []
    m, l = torch.tensor(float("-inf"), dtype=scores.dtype), torch.tensor(0.0, dtype=scores.dtype)
    for t in range(maxes.shape[0]):
        j0, j1 = t * block_size, min((t + 1) * block_size, scores.shape[0])
        m_new, l_new = maxes[t], sums[t]
        correction = torch.exp(m - _safe(m_new))
        weights = torch.zeros_like(scores)
        weights[:j1] = torch.exp(scores[:j1] - _safe(m_new)) / torch.where(l_new > 0, l_new, torch.ones_like(l_new))
        steps.append({"block": torch.arange(j0, j1), "max_before": m, "max_after": m_new, "sum_before": l,
                      "correction": correction, "sum_rescaled": l * correction, "tile_sum": l_new - l * correction,
                      "sum_after": l_new, "weights": weights})
        m, l = m_new, l_new
    return steps
