"""Telling attention where each token is: sinusoidal positions, RoPE and ALiBi.

Self-attention alone is permutation-equivariant (chapter 2): shuffle the tokens and the outputs are
shuffled the same way. Three ways to break that symmetry, besides GPT-2's learned table `wpe`:
- sinusoidal positions, added to the embeddings (the original Transformer);
- RoPE, which rotates each query and key by an angle proportional to its position, so that q . k
  depends on the two positions only through their offset (Llama, Mistral, Qwen);
- ALiBi, which adds -slope * distance to the scores: a float mask, added like every float mask.

RoPE convention: the halves convention of Hugging Face's Llama (`rotate_half`): feature i is paired
with feature i + D/2, pair i turning at frequency base^(-2i/D). The original paper pairs (2i, 2i + 1)
instead; the two differ only by a fixed permutation of the features, but weights trained with one
must be run with the same one.

Shape legend: B batch, H heads, L queries (new tokens), S keys, D head width, E model width.
"""

from __future__ import annotations

import math

import torch

from attnkit._validate import expect_ndim, expect_size, expect_tensor, shape_str

__all__ = ["sinusoidal_positions", "rope_cos_sin", "rotate_half", "apply_rope", "alibi_slopes", "alibi_bias"]


def _expect_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected `{name}` to be an int but got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"Expected `{name}` to be positive but got {value}")
    return value


def _expect_even(name: str, value: int) -> None:
    if value % 2:
        raise ValueError(f"Expected `{name}` to be even (features come in pairs) but got {value}")


def sinusoidal_positions(L: int, E: int, base: float = 10000.0) -> torch.Tensor:
    """The original Transformer's fixed position vectors: sin and cos of the position at E/2 frequencies.

    Row p holds sin(p w_i) in column 2i and cos(p w_i) in column 2i + 1, with w_i = base^(-2i/E).

    Shapes: -> (L, E).

    See chapters/06_transformer_block.ipynb.
    """
    _expect_positive_int("L", L)
    _expect_even("E", _expect_positive_int("E", E))
    freqs = base ** (-torch.arange(0, E, 2, dtype=torch.float32) / E)  # (E/2,)
    angles = torch.arange(L, dtype=torch.float32)[:, None] * freqs  # (L, 1) * (E/2,) -> (L, E/2)
    pe = torch.empty(L, E)
    pe[:, 0::2] = angles.sin()
    pe[:, 1::2] = angles.cos()
    return pe  # (L, E)


def _positions(positions: torch.Tensor | int, L: int) -> torch.Tensor:
    """`positions` as a float tensor: an int start gives start .. start + L - 1."""
    if isinstance(positions, bool):
        raise TypeError("Expected `positions` to be an int start or an integer tensor but got bool")
    if isinstance(positions, int):
        return torch.arange(positions, positions + L, dtype=torch.float32)  # (L,)
    expect_tensor("positions", positions)
    if positions.is_floating_point() or positions.dtype == torch.bool:
        raise TypeError(f"Expected `positions` to hold integer positions but got dtype {positions.dtype}")
    if positions.dim() not in (1, 2) or positions.shape[-1] != L:
        raise ValueError(f"Expected `positions` shape to be ({L},) or (B, {L}) but got {shape_str(positions.shape)}")
    return positions.float()


def rope_cos_sin(positions: torch.Tensor | int, D: int, L: int | None = None,
                 base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of RoPE's angles, position p times base^(-2i/D), each angle repeated for both halves.

    `positions` is an integer tensor, or an int start with L: start .. start + L - 1.

    Shapes: positions (L,) or (B, L) -> cos, sin (L, D) or (B, L, D).

    See chapters/06_transformer_block.ipynb.
    """
    _expect_even("D", _expect_positive_int("D", D))
    if isinstance(positions, int) and not isinstance(positions, bool):
        L = _expect_positive_int("L", L) if L is not None else None
        if L is None:
            raise ValueError("Expected `L` (how many positions) with an int start `positions`")
    pos = _positions(positions, L if L is not None else positions.shape[-1])  # (L,) or (B, L)
    inv_freq = 1.0 / base ** (torch.arange(0, D, 2, dtype=torch.float32) / D)  # (D/2,)
    angles = pos[..., None] * inv_freq  # (..., L, 1) * (D/2,) -> (..., L, D/2)
    angles = torch.cat([angles, angles], dim=-1)  # (..., L, D): feature i and i + D/2 share an angle
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) for the two halves of the last dimension: a quarter turn of every pair.

    Shapes: x (..., D) -> (..., D).

    See chapters/06_transformer_block.ipynb.
    """
    expect_tensor("x", x)
    expect_ndim("x", x, 1, "(..., D)")
    _expect_even("x.shape[-1]", x.shape[-1])
    x1, x2 = x.chunk(2, dim=-1)  # (..., D/2) each
    return torch.cat([-x2, x1], dim=-1)  # (..., D)


def apply_rope(x: torch.Tensor, positions: torch.Tensor | int = 0, base: float = 10000.0) -> torch.Tensor:
    """Rotate each query or key by its position: pair (i, i + D/2) turns by position * base^(-2i/D).

    Apply it to q and k, never to v. With a KV cache the new tokens' positions continue after the
    cached ones: pass `positions=cache_length` (an int start) or the positions themselves.

    Shapes: x (B, H, L, D), positions int, (L,) or (B, L) -> (B, H, L, D).

    See chapters/06_transformer_block.ipynb.
    """
    expect_tensor("x", x)
    if x.dim() != 4:
        raise ValueError(f"Expected `x` shape to be (B, H, L, D) but got {shape_str(x.shape)}")
    B, H, L, D = x.shape
    if isinstance(positions, torch.Tensor) and positions.dim() == 2:
        expect_size("positions", positions, 0, B, "the batch size B of `x`")
    cos, sin = rope_cos_sin(positions, D, L, base)  # (L, D) or (B, L, D)
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, L, D): the same angles in every head
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin  # (B, H, L, D)


def alibi_slopes(H: int) -> torch.Tensor:
    """ALiBi's slope per head: 2^(-8/H), 2^(-16/H), ... (for H not a power of two, as the paper does).

    Shapes: -> (H,).

    See chapters/06_transformer_block.ipynb.
    """
    _expect_positive_int("H", H)
    n = 2 ** math.floor(math.log2(H))  # the largest power of two <= H
    slopes = [2 ** (-8 * (i + 1) / n) for i in range(n)]
    if n < H:  # the odd slopes of the next power of two fill the rest
        slopes += [2 ** (-8 * (i + 1) / (2 * n)) for i in range(0, 2 * (H - n), 2)]
    return torch.tensor(slopes)  # (H,)


def alibi_bias(H: int, L: int, S: int | None = None) -> torch.Tensor:
    """ALiBi as a float mask: -slope_h * |position of query i - position of key j|, ADDED to the scores.

    Query i sits at position S - L + i (bottom-right, as with a KV cache). Combine it with a causal
    mask for a decoder; softmax ignores a constant per row, so only distances matter.

    Shapes: -> (H, L, S), broadcastable to scores (B, H, L, S).

    See chapters/06_transformer_block.ipynb.
    """
    _expect_positive_int("L", L)
    S = L if S is None else _expect_positive_int("S", S)
    if S < L:
        raise ValueError(f"Expected `S` >= `L` (the queries are the last L of S positions) but got S={S}, L={L}")
    query_pos = torch.arange(S - L, S, dtype=torch.float32)  # (L,)
    distance = (query_pos[:, None] - torch.arange(S, dtype=torch.float32)).abs()  # (L, 1) - (S,) -> (L, S)
    return -alibi_slopes(H)[:, None, None] * distance  # (H, 1, 1) * (L, S) -> (H, L, S)
