"""One place for argument checks, so every error names the argument, what was expected and what came.

Messages follow PyTorch's template: "Expected `attn_mask` shape to be (2, 3) but got (3, 2)".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def shape_str(shape: Sequence[int | str]) -> str:
    """Format a shape like PyTorch does in its messages: (2, 3), or (2,) for one dimension."""
    items = [str(s) for s in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def expect_tensor(name: str, x: object) -> torch.Tensor:
    """Return `x` if it is a tensor, else raise a TypeError that names the argument."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"Expected `{name}` to be a torch.Tensor but got {type(x).__name__}")
    return x


def expect_ndim(name: str, x: torch.Tensor, at_least: int, legend: str) -> None:
    """Raise a ValueError unless `x` has at least `at_least` dimensions; `legend` names them."""
    if x.dim() < at_least:
        raise ValueError(
            f"Expected `{name}` to have at least {at_least} dimensions {legend} "
            f"but got shape {shape_str(x.shape)}"
        )


def expect_dims(name: str, x: torch.Tensor, legend: Sequence[str] | str, ndim: int | None = None) -> None:
    """Raise a ValueError unless `x` has exactly as many dimensions as `legend` names (or `ndim`)."""
    ndim = len(legend) if ndim is None else ndim
    if x.dim() != ndim:
        shown = legend if isinstance(legend, str) else shape_str(legend)
        raise ValueError(f"Expected `{name}` shape to be {shown} but got {shape_str(x.shape)}")


def expect_size(name: str, x: torch.Tensor, dim: int, size: int, what: str) -> None:
    """Raise a ValueError unless `x.shape[dim] == size`; `what` says what that size must match."""
    if x.shape[dim] != size:
        raise ValueError(
            f"Expected `{name}`.shape[{dim}] to be {size} ({what}) but got {x.shape[dim]} "
            f"(full shape {shape_str(x.shape)})"
        )


def expect_broadcastable(name: str, x: torch.Tensor, target: Sequence[int]) -> None:
    """Raise a ValueError unless `x` broadcasts to `target` (e.g. a mask to the scores' shape)."""
    try:
        result = broadcast_shapes(tuple(x.shape), tuple(target))
    except RuntimeError:
        raise ValueError(
            f"Expected `{name}` shape to be broadcastable to {shape_str(target)} "
            f"but got {shape_str(x.shape)}"
        ) from None
    if result != torch.Size(target):
        raise ValueError(
            f"Expected `{name}` shape to be broadcastable to {shape_str(target)} "
            f"but got {shape_str(x.shape)}, which would grow the result"
        )


def expect_mask_dtype(name: str, mask: torch.Tensor) -> None:
    """A mask is boolean (True = may attend) or float like the scores (added to them)."""
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(
            f"Expected `{name}` to be a bool tensor (True = may attend) or a float tensor "
            f"(added to the scores) but got dtype {mask.dtype}"
        )


def expect_positive_int(name: str, n: object, *, allow_zero: bool = False) -> int:
    """A count or a size: an int (not a bool) >= 1, or >= 0 with allow_zero; returned for chaining."""
    if not isinstance(n, int) or isinstance(n, bool) or n < (0 if allow_zero else 1):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"Expected `{name}` to be a {kind} int but got {n!r}")
    return n


def expect_prompt(idx: object, batch: int | None = None) -> torch.Tensor:
    """A decoding prompt: a (B, L) tensor of token ids with L >= 1 (B = `batch` when given)."""
    expect_tensor("idx", idx)
    if idx.dim() != 2 or idx.shape[1] == 0 or (batch is not None and idx.shape[0] != batch):
        rows = "B" if batch is None else str(batch)
        raise ValueError(f"Expected `idx` shape to be ({rows}, L) with L >= 1 but got {shape_str(idx.shape)}")
    return idx


def broadcast_shapes(*shapes: Sequence[int]) -> torch.Size:
    """torch.broadcast_shapes in plain Python (the same result and the same RuntimeError).

    torch's own imports sympy and torch.fx's symbolic shapes on its first call (about 500 modules, seconds
    on a cold disk), which every chapter would pay for one tuple of sizes.
    """
    result: list[int] = []
    for shape in shapes:
        shape = tuple(shape)
        if len(shape) > len(result):
            result = [1] * (len(shape) - len(result)) + result
        for i, size in enumerate(shape, start=len(result) - len(shape)):
            if size != 1 and result[i] != 1 and size != result[i]:
                raise RuntimeError(f"Shape mismatch: objects cannot be broadcast to a single shape. "
                                   f"Mismatch is between {shape_str(result)} and {shape_str(shape)}")
            if result[i] == 1:
                result[i] = size
    return torch.Size(result)
