"""An int8 KV cache: store keys and values in 8 bits with one float scale per vector, a quarter of float32's bytes.

Each cached key (or value) vector of D numbers is stored as round(x / scale) in int8 with
scale = max|x| / 127 (symmetric "absmax" quantisation, one scale per token and head), and multiplied
back by its scale when attention reads it. The rounding error is at most scale / 2 per number; the
chapter measures what it does to the model's logits.

Shape legend: B batch, H_kv key/value heads, S positions, D head width.
"""

from __future__ import annotations

import torch

from attnkit._validate import expect_tensor
from attnkit.kv_cache import KVCache

__all__ = ["quantize_int8", "dequantize_int8", "Int8KVCache"]


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Absmax int8 quantisation along the last dimension: x ~ q * scale, |q| <= 127.

    Shapes: x (..., D) float -> q (..., D) int8, scale (..., 1) float.

    See chapters/08_serving.ipynb.
    """
    expect_tensor("x", x)
    if not x.is_floating_point():
        raise TypeError(f"Expected `x` to be a float tensor but got dtype {x.dtype}")
    scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / 127  # (..., 1)
    return (x / scale).round().clamp(-127, 127).to(torch.int8), scale  # (..., D), (..., 1)


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Back to floats: q * scale.

    Shapes: q (..., D) int8, scale (..., 1) -> (..., D) in scale's dtype.

    See chapters/08_serving.ipynb.
    """
    expect_tensor("q", q)
    expect_tensor("scale", scale)
    return q.to(scale.dtype) * scale


class Int8KVCache(KVCache):
    """`KVCache` that keeps int8 keys and values (plus a scale per vector) and hands attention dequantised ones.

    Same constructor and `update` as `KVCache`; `nbytes` counts the int8 tensors and the scales.

    Shapes: update: k, v (B, H_kv, L_new, D) -> k_all, v_all (B, H_kv, S, D) float, rounded to int8 steps.

    See chapters/08_serving.ipynb.
    """

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Round-trip the new positions through int8 before they are stored; what the float tensors hold is
        # then exactly dequantize(quantize(.)), and `nbytes` reports the int8 storage a server would use.
        k, v = (dequantize_int8(*quantize_int8(t)) for t in (k, v))
        return super().update(layer, k, v)

    @property
    def nbytes(self) -> int:
        """Bytes an int8 cache of this size holds: one byte per number plus a float32 scale per vector."""
        numbers = sum(t.numel() for t in self.keys + self.values)
        return numbers + 4 * numbers // self.head_dim
