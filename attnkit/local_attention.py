"""Local attention (Luong et al., 2015): soft attention inside a window [p_t - D, p_t + D].

A middle way between hard and soft attention: pick a centre p_t for query t (hard, a position),
then attend softly to the 2D + 1 keys around it, weighted by a Gaussian of width sigma = D / 2 that
favours keys near the centre. The centre is p_t = t (monotonic alignment) or learned,
p_t = S * sigmoid(v_p . tanh(W_p h_t)) (predictive alignment). A query needs only its 2D + 1 keys,
not all S (this reference code still scores all L x S pairs and masks them: easier to read and check).

The function is `luong_local_attention`, not `local_attention`: `attnkit.local_attention` is this module,
and a function of the same name would be hidden behind it once the module is imported.
Positions count from 0, so keys sit at 0 .. S - 1 and a predicted centre lies in (0, S).
Shape legend (PyTorch's): B... any leading batch dims, L query length, S key length, E width,
Ev value width, d_a hidden width of the alignment MLP.
"""

from __future__ import annotations

import torch

from attnkit._validate import (
    expect_broadcastable,
    expect_dims,
    expect_mask_dtype,
    expect_ndim,
    expect_size,
    expect_tensor,
)
from attnkit.masks import combine_masks
from attnkit.scoring import masked_softmax, scaled_dot_product_scores

__all__ = [
    "local_window_mask",
    "monotonic_alignment",
    "predictive_alignment",
    "gaussian_window",
    "luong_local_attention",
]


def _expect_D(D: float, positive: bool) -> None:
    if isinstance(D, bool) or not isinstance(D, int | float) or D < 0 or (positive and D == 0):
        expected = "a positive number (sigma = D / 2 must be > 0)" if positive else "a number >= 0"
        raise ValueError(f"Expected `D` to be {expected} but got {D!r}")


def _expect_centers(centers: torch.Tensor, L: int) -> None:
    expect_tensor("centers", centers)
    expect_ndim("centers", centers, 1, "(..., L)")
    expect_size("centers", centers, -1, L, "the query length L")


def local_window_mask(L: int, S: int, D: float, centers: torch.Tensor) -> torch.Tensor:
    """Boolean mask, True where key s lies in query t's window [p_t - D, p_t + D] (ends included).

    Same convention as every mask here: True = may attend. Centres may be real-valued (predictive
    alignment), in which case the window holds the integer positions within D of p_t.

    Shapes: centers (B..., L) -> mask (B..., L, S).

    See chapters/01b_classic_attention.ipynb.
    """
    _expect_D(D, positive=False)
    _expect_centers(centers, L)
    positions = torch.arange(S, device=centers.device)  # (S,)
    distance = positions - centers.unsqueeze(-1)  # (S,) - (B..., L, 1) -> (B..., L, S)
    return distance.abs() <= D


def monotonic_alignment(L: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Monotonic alignment p_t = t: query t is centred on key t.

    Fits source and target sequences that advance roughly in step (and self-attention, L == S).

    Shapes: -> centers (L,) float32.

    See chapters/01b_classic_attention.ipynb.
    """
    if isinstance(L, bool) or not isinstance(L, int) or L < 0:
        raise ValueError(f"Expected `L` to be a non-negative int but got {L!r}")
    return torch.arange(L, dtype=torch.float32, device=device)  # (L,)


def predictive_alignment(h: torch.Tensor, W_p: torch.Tensor, v_p: torch.Tensor, S: int) -> torch.Tensor:
    """Predictive alignment p_t = S * sigmoid(v_p . tanh(W_p h_t)): the query's state predicts where to look.

    The sigmoid keeps the centre inside the source, (0, S); the centre is real-valued and
    differentiable in W_p and v_p, so it is learned with the rest of the model.

    Shapes: h (B..., L, E), W_p (d_a, E), v_p (d_a,) -> centers (B..., L).

    See chapters/01b_classic_attention.ipynb.
    """
    expect_tensor("h", h)
    expect_ndim("h", h, 1, "(..., L, E)")
    for name, x, expected in (("W_p", W_p, ("d_a", "E")), ("v_p", v_p, ("d_a",))):
        expect_dims(name, expect_tensor(name, x), expected)
    expect_size("W_p", W_p, 0, v_p.shape[0], "the hidden width d_a of v_p")
    expect_size("W_p", W_p, 1, h.shape[-1], "the width E of h")
    hidden = torch.tanh(h @ W_p.T)  # (B..., L, E) x (E, d_a) -> (B..., L, d_a)
    return S * torch.sigmoid(hidden @ v_p)  # (B..., L, d_a) x (d_a,) -> (B..., L)


def gaussian_window(positions: torch.Tensor, centers: torch.Tensor, D: float) -> torch.Tensor:
    """Gaussian favour exp(-(s - p_t)^2 / (2 sigma^2)) with sigma = D / 2: 1 at the centre, e^-2 at the edge.

    Multiplied into the window's weights so keys near the predicted centre count most.

    Shapes: positions (S,), centers (B..., L) -> (B..., L, S).

    See chapters/01b_classic_attention.ipynb.
    """
    _expect_D(D, positive=True)
    expect_tensor("positions", positions)
    expect_tensor("centers", centers)
    sigma = D / 2
    distance = positions - centers.unsqueeze(-1)  # (S,) - (B..., L, 1) -> (B..., L, S)
    return torch.exp(-(distance**2) / (2 * sigma**2))


def luong_local_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    D: float,
    alignment: str | torch.Tensor = "monotonic",
    gaussian: bool = True,
    *,
    scale: float | None = None,
    attn_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Luong's local attention: scaled dot-product softmax inside [p_t - D, p_t + D], times a Gaussian.

    As in Luong et al., the Gaussian is applied *after* the softmax and the weights are *not*
    renormalised, so with `gaussian=True` a row sums to less than 1; `gaussian=False` is plain
    attention restricted to the window. `alignment` is "monotonic" (p_t = t) or a tensor of centres,
    e.g. from `predictive_alignment`. `attn_mask` (True = may attend, or float added) is combined
    with the window; a query whose window holds no allowed key gets zero weights and output.

    Shapes: query (B..., L, E), key (B..., S, E), value (B..., S, Ev), alignment centres
        broadcastable to (B..., L) -> output (B..., L, Ev), weights (B..., L, S).

    See chapters/01b_classic_attention.ipynb.
    """
    expect_tensor("value", value)
    scores = scaled_dot_product_scores(query, key, scale)  # (B..., L, S)
    expect_size("value", value, -2, key.shape[-2], "the key length S")
    L, S = scores.shape[-2], scores.shape[-1]
    if isinstance(alignment, str):
        if alignment != "monotonic":
            raise ValueError(
                f'Expected `alignment` to be "monotonic" or a tensor of centres (B..., L), e.g. from '
                f"predictive_alignment(h, W_p, v_p, S), but got {alignment!r}"
            )
        centers = monotonic_alignment(L, device=scores.device)  # (L,)
    else:
        centers = alignment  # (B..., L)
    window = local_window_mask(L, S, D, centers)  # (B..., L, S)
    expect_broadcastable("alignment (its window)", window, scores.shape)
    if attn_mask is not None:
        expect_mask_dtype("attn_mask", expect_tensor("attn_mask", attn_mask))
        expect_broadcastable("attn_mask", attn_mask, scores.shape)

    weights = masked_softmax(scores, combine_masks(window, attn_mask))  # (B..., L, S)
    if gaussian:
        positions = torch.arange(S, dtype=scores.dtype, device=scores.device)  # (S,)
        weights = weights * gaussian_window(positions, centers.to(scores.dtype), D)  # not renormalised
    output = weights @ value  # (B..., L, S) x (B..., S, Ev) -> (B..., L, Ev)
    return output, weights
