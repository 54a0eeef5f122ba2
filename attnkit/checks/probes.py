"""Probes a learner can run on their own code: experiments that show a bug, not graded checks.

`padding_changes_output` is the experiment of exercise 3.5: change only the padding of a batch and
measure how far the outputs of the real tokens move (they must not move at all).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["padding_changes_output"]


def padding_changes_output(fn: Callable[..., Any], *, B: int = 3, L: int = 6, E: int = 8, D: int = 4,
                           Dv: int = 5, seed: int = 0) -> float:
    """Largest change of a REAL token's output when only the padding of the batch changes (0.0 if correct).

    `fn(x, W_q, W_k, W_v, lengths)` is a padded self-attention function returning `output` or
    `(output, weights)`. Lengths run from L down to 1, so every batch has padding.

    Shapes: x (B, L, E), W_q/W_k (D, E), W_v (Dv, E), lengths (B,) -> output (B, L, Dv).
    See chapters/03_masking.ipynb.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, E, generator=g)  # (B, L, E)
    W_q, W_k = (torch.randn(D, E, generator=g) / math.sqrt(E) for _ in range(2))  # (D, E) each
    W_v = torch.randn(Dv, E, generator=g) / math.sqrt(E)  # (Dv, E)
    lengths = torch.tensor([max(1, L - (b * (L - 1)) // max(1, B - 1)) for b in range(B)])  # (B,): L .. 1
    real = torch.arange(L)[None, :] < lengths[:, None]  # (B, L): True = real token
    x_new_padding = x.clone()
    x_new_padding[~real] = 10 * torch.randn(int((~real).sum()), E, generator=g)  # only pad positions change

    def output(inputs: torch.Tensor) -> torch.Tensor:
        out = fn(inputs.clone(), W_q, W_k, W_v, lengths.clone())
        return out[0] if isinstance(out, tuple | list) else out  # (B, L, Dv)

    with torch.no_grad():
        change = (output(x) - output(x_new_padding))[real]  # (number of real tokens, Dv)
    return float(change.abs().max())
