"""How accurate attnkit's scaled_dot_product_attention is in float16 and bfloat16, beside PyTorch's.

Prints, for each dtype, the relative error (||x - x64|| / ||x64||, mean over 5 seeds) of the output and
of the gradients dq, dk, dv against the same inputs run through F.scaled_dot_product_attention in
float64, for attnkit and for PyTorch. Shapes B=2, H=3, L=16, S=24, E=32, Ev=40, scores of size ~10,
a random bool mask; `--no-masked-row` drops the query that may attend to nothing (row 3).
Run: python benchmarks/half_precision.py  (a second or two)
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from attnkit import scaled_dot_product_attention


def run(attend, q, k, v, mask, grad_out):
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = attend(q, k, v, mask)
    (out * grad_out.to(out.dtype)).sum().backward()
    return out.detach(), q.grad, k.grad, v.grad


def relative_error(x: torch.Tensor, reference: torch.Tensor) -> float:
    if not torch.isfinite(x).all():
        return float("nan")
    return ((x.double() - reference).norm() / reference.norm()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-masked-row", action="store_true", help="no query without keys to attend to")
    args = parser.parse_args()
    attends = {
        "attnkit": lambda q, k, v, m: scaled_dot_product_attention(q, k, v, attn_mask=m)[0],
        "PyTorch": lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
    }
    print(f"relative error vs float64, mean of 5 seeds (nan: NaN in the result); masked row: {not args.no_masked_row}")
    print(f"{'dtype':>9} | {'who':>7} | {'output':>8} | {'dq':>8} | {'dk':>8} | {'dv':>8}")
    for dtype in (torch.float16, torch.bfloat16):
        errors = {name: torch.zeros(4, dtype=torch.float64) for name in attends}
        for seed in range(5):
            g = torch.Generator().manual_seed(seed)
            q, k = 2 * torch.randn(2, 3, 16, 32, generator=g), 2 * torch.randn(2, 3, 24, 32, generator=g)
            v, grad_out = torch.randn(2, 3, 24, 40, generator=g), torch.randn(2, 3, 16, 40, generator=g)
            mask = torch.rand(16, 24, generator=g) > 0.3
            mask[:, 0] = True
            if not args.no_masked_row:
                mask[3] = False
            q, k, v, grad_out = (t.to(dtype) for t in (q, k, v, grad_out))
            exact = run(attends["PyTorch"], q.double(), k.double(), v.double(), mask, grad_out.double())
            for name, attend in attends.items():
                got = run(attend, q, k, v, mask, grad_out)
                errors[name] += torch.tensor([relative_error(a, x) for a, x in zip(got, exact, strict=True)]) / 5
        for name, err in errors.items():
            cells = " | ".join(f"{e:8.2e}" for e in err.tolist())
            print(f"{str(dtype).removeprefix('torch.'):>9} | {name:>7} | {cells}")


if __name__ == "__main__":
    main()
