"""What a computation costs: the peak bytes of the tensors it creates, and its best wall time.

`peak_tensor_bytes` counts, as tracemalloc does for Python objects, every tensor storage created by a
PyTorch operation while the function runs: it adds a storage's bytes when an operation first returns
it and subtracts them when the last tensor using it is freed, and keeps the highest total. Views share
their base's storage and count once; the inputs, created before, count zero. What an operation
allocates inside itself and frees before returning (a fused kernel's per-thread buffers) is not seen.

Shapes: none (any function of tensors).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from attnkit._validate import expect_positive_int

__all__ = ["peak_tensor_bytes", "best_time"]


class _TensorBytes(TorchDispatchMode):
    """Live and peak bytes of the storages that operations return, while the mode is active."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage address -> [bytes, tensors still using it]
        self.current = 0
        self.peak = 0

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # False: torch then leaves __torch_dispatch__ as written instead of wrapping it in a dynamo-disable that
        # imports torch._dynamo (about 350 modules, seconds on a cold disk) at the first operation; this meter
        # is never compiled.
        return False

    def _release(self, address: int) -> None:
        entry = self.live.get(address)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[address]

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        # an output that shares an input's storage (a view, an in-place result) allocated nothing new
        operands = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                    if isinstance(t, torch.Tensor) and t.device.type != "meta"}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            address = storage.data_ptr()
            if address in self.live:
                self.live[address][1] += 1
            elif address in operands:
                continue  # a view of, or written into, a tensor made before the call (an input, a parameter)
            else:
                self.live[address] = [storage.nbytes(), 1]
                self.current += storage.nbytes()
                self.peak = max(self.peak, self.current)
            weakref.finalize(t, self._release, address)
        return out


def peak_tensor_bytes(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, int]:
    """Call fn(*args, **kwargs) and return its result and the peak bytes of the tensors it created.

    The inputs do not count; the result does (it is alive at the end). See the module docstring for
    what is and is not seen.

    Shapes: any -> (fn's result, int bytes).

    See chapters/07_efficient_attention.ipynb.
    """
    if not callable(fn):
        raise TypeError(f"Expected `fn` to be callable but got {type(fn).__name__}")
    meter = _TensorBytes()
    with meter:
        result = fn(*args, **kwargs)
    return result, meter.peak


def best_time(fn: Callable[..., Any], *args: Any, repeats: int = 3, **kwargs: Any) -> float:
    """The shortest of `repeats` wall times of fn(*args, **kwargs), in seconds (as `timeit` advises:
    other processes can only make a run slower).

    Shapes: any -> float seconds.

    See chapters/07_efficient_attention.ipynb.
    """
    if not callable(fn):
        raise TypeError(f"Expected `fn` to be callable but got {type(fn).__name__}")
    expect_positive_int("repeats", repeats)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best
