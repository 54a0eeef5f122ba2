"""attnkit.cost: the tensor-bytes meter counts what is created (views once, inputs never) and frees what dies."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnkit import best_time, flash_attention, peak_tensor_bytes


def test_counts_created_tensors_and_their_release():
    x = torch.randn(1000)  # an input: not counted

    def fn(x):
        a = x * 2  # 4,000 B
        b = a.view(10, 100).t()  # a view: shares a's storage
        c = torch.zeros(500, dtype=torch.float64)  # 4,000 B
        del a, b, c
        return x + 1  # 4,000 B, alive at the end

    result, peak = peak_tensor_bytes(fn, x)
    assert peak == 8000 and result.shape == (1000,)


def test_views_of_inputs_and_in_place_writes_into_them_cost_nothing():
    x, buffer = torch.randn(1000), torch.zeros(1000)

    def fn(x):
        head = x[:10]  # a view of the input
        buffer.add_(1.0)  # in place, into a tensor made before the call
        return head.sum()  # 4 bytes

    _, peak = peak_tensor_bytes(fn, x)
    assert peak == 4


def test_naive_attention_holds_the_l_by_s_matrix_and_flash_does_not():
    L, D = 512, 32
    q, k, v = (torch.randn(1, 1, L, D) for _ in range(3))

    def naive(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D), dim=-1) @ v

    _, naive_peak = peak_tensor_bytes(naive, q, k, v)
    assert naive_peak >= 2 * L * L * 4  # the scores and the weights, (L, L) float32 each, alive together
    out, flash_peak = peak_tensor_bytes(flash_attention, q, k, v, block_q=64, block_k=64)
    assert flash_peak < naive_peak / 8  # the output, one row of lse and a few (64, 64) tiles
    torch.testing.assert_close(out[0], F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-4)


def test_best_time_is_positive_and_checks_its_arguments():
    assert 0 < best_time(torch.randn, 10, repeats=2) < 1
    with pytest.raises(ValueError, match="`repeats`"):
        best_time(torch.randn, 10, repeats=0)
    with pytest.raises(TypeError, match="`fn`"):
        peak_tensor_bytes(3)


def test_the_meter_and_the_attention_functions_do_not_import_dynamo_or_sympy():
    """torch.broadcast_shapes and a dynamo-wrapped dispatch mode import ~800 modules (seconds on a cold disk)."""
    import subprocess
    import sys

    code = ("import sys, torch\nfrom attnkit import flash_attention, peak_tensor_bytes, scaled_dot_product_attention\n"
            "q = torch.randn(1, 1, 8, 4)\npeak_tensor_bytes(scaled_dot_product_attention, q, q, q)\n"
            "flash_attention(q, q, q, block_k=4)\n"
            "print(sorted(m for m in ('sympy', 'torch._dynamo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
