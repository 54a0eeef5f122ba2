"""Attention masks in the convention of `F.scaled_dot_product_attention`.

A boolean mask is True where a query *may attend* to a key. An additive (float) mask holds 0 there
and -inf elsewhere and is added to the scores. `masked_fill(mask, -inf)` wants the opposite (True =
block), and `nn.MultiheadAttention` also reads True as *ignore*: invert with `~mask` when you pass
ours to either. This inversion is the most common masking bug; chapter 3 shows it failing silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from attnkit._validate import expect_dims, expect_size, expect_tensor, shape_str

__all__ = ["causal_mask", "padding_mask", "combine_masks", "to_additive", "to_bool", "padding_invariance"]

def causal_mask(L: int, S: int | None = None, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean causal mask, True where query i may attend to key j, aligned bottom-right.

    With S > L (decoding with a KV cache: L new queries after S - L cached keys) query i is the
    token at position S - L + i and sees keys 0 .. S - L + i. PyTorch's `is_causal=True` is
    aligned top-left instead (tril(ones(L, S))); both agree when L == S.

    Shapes: -> (L, S), S defaulting to L.

    See chapters/03_masking.ipynb.
    """
    S = L if S is None else S
    for name, n in (("L", L), ("S", S)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"Expected `{name}` to be a non-negative int but got {n!r}")
    if S < L:
        raise ValueError(
            f"Expected `S` >= `L` (every query's own key is present) but got L={L}, S={S}"
        )
    return torch.ones(L, S, dtype=torch.bool, device=device).tril(diagonal=S - L)


def padding_mask(
    lengths: Sequence[int] | torch.Tensor, S: int | None = None, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """Boolean key-padding mask, True for real tokens (may be attended), False for padding.

    Sequence b has `lengths[b]` real tokens followed by padding up to S. To mask the scores
    (B, L, S) use `mask[:, None, :]`; with heads (B, H, L, S) use `mask[:, None, None, :]`.
    Note: `nn.MultiheadAttention(key_padding_mask=...)` wants the inverse, True = padding.

    Shapes: lengths (B,) -> (B, S), S defaulting to max(lengths).

    See chapters/03_masking.ipynb.
    """
    lengths = torch.as_tensor(lengths, device=device)
    if lengths.dim() != 1 or lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise ValueError(
            f"Expected `lengths` to be a 1-D sequence of ints (B,) but got shape "
            f"{shape_str(lengths.shape)} of dtype {lengths.dtype}"
        )
    S = int(lengths.max()) if S is None and lengths.numel() else (S or 0)
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > S):
        raise ValueError(f"Expected every length in [0, S={S}] but got {lengths.tolist()}")
    positions = torch.arange(S, device=lengths.device)  # (S,)
    return positions[None, :] < lengths[:, None]  # (1, S) < (B, 1) -> (B, S)


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """Combine masks so a key is attended only if every mask allows it (None masks are skipped).

    Boolean masks are AND-ed; float masks are added; a mix is converted to float first.

    Shapes: masks broadcast together, e.g. (L, S) and (B, 1, S) -> (B, L, S).

    See chapters/03_masking.ipynb.
    """
    present = [m for m in masks if m is not None]
    for i, m in enumerate(present):
        expect_tensor(f"masks[{i}]", m)
    if not present:
        return None
    if all(m.dtype == torch.bool for m in present):
        out = present[0]
        for m in present[1:]:
            out = out & m
        return out
    dtype = next(m.dtype for m in present if m.is_floating_point())
    out = to_additive(present[0], dtype)
    for m in present[1:]:
        out = out + to_additive(m, dtype)
    return out


def to_additive(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Boolean mask (True = may attend) -> float mask of 0 and -inf; a float mask is returned as is.

    Shapes: any -> same.

    See chapters/03_masking.ipynb.
    """
    expect_tensor("mask", mask)
    if mask.dtype != torch.bool:
        return mask.to(dtype)
    zeros = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return zeros.masked_fill(~mask, float("-inf"))


def to_bool(mask: torch.Tensor) -> torch.Tensor:
    """Float mask -> boolean mask, True where the added value is not -inf (the key may be attended).

    Shapes: any -> same.

    See chapters/03_masking.ipynb.
    """
    expect_tensor("mask", mask)
    if mask.dtype == torch.bool:
        return mask
    return ~torch.isneginf(mask)


def padding_invariance(
    fn: Callable[[torch.Tensor, torch.Tensor], object],
    x: torch.Tensor,
    lengths: Sequence[int] | torch.Tensor,
    *,
    noise_scale: float = 100.0,
    generator: torch.Generator | None = None,
) -> float:
    """How far real tokens' outputs move when only the padding changes: 0 (to rounding) for a correct padding mask.

    Calls `fn(x, lengths)` and `fn(x_other, lengths)`, where `x_other` is `x` with every pad position
    (position >= lengths[b]) replaced by loud noise (`noise_scale` times a seeded standard normal), and
    returns the largest absolute change of an output at a *real* position. `fn` may return the output or
    a tuple whose first item is the output (as attnkit's attention functions do). Pad positions' own
    outputs are not compared: they are meaningless, and the loss ignores them. Wrap a function of more
    arguments in a lambda: `padding_invariance(lambda x, n: my_attention(x, W_q, W_k, W_v, n), x, lengths)`.

    Shapes: x (B, L, E), lengths (B,); fn's output (B, L, ...) -> float.

    See chapters/03_masking.ipynb.
    """
    expect_tensor("x", x)
    expect_dims("x", x, ("B", "L", "E"))
    lengths = torch.as_tensor(lengths, device=x.device)
    expect_dims("lengths", lengths, ("B",))
    expect_size("lengths", lengths, 0, x.shape[0], "the batch size B of `x`")
    real = padding_mask(lengths, x.shape[1])  # (B, L): True = real token, raises on a bad length
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    noise = noise_scale * torch.randn(x.shape, generator=generator).to(x)  # (B, L, E)
    x_other = torch.where(real[:, :, None], x, noise)  # (B, L, E): only the pad positions differ

    def output(inputs: torch.Tensor) -> torch.Tensor:
        result = fn(inputs, lengths)
        result = result[0] if isinstance(result, tuple) else result
        expect_tensor("fn(x, lengths)", result)
        if result.shape[:2] != x.shape[:2]:
            raise ValueError(
                f"Expected `fn(x, lengths)` to return an output of shape (B, L, ...) = "
                f"{shape_str(x.shape[:2])} + (...) but got {shape_str(result.shape)}"
            )
        return result

    with torch.no_grad():
        change = (output(x) - output(x_other))[real]  # (real tokens, ...)
    return change.abs().max().item() if change.numel() else 0.0

