"""The Transformer block, with the two design choices that make deep stacks trainable as switches.

GPT-2's block (`attnkit.gpt.Block`) is pre-norm: x + attn(ln_1(x)), then x + mlp(ln_2(x)). The
original Transformer was post-norm: ln_1(x + attn(x)), then ln_2(x + mlp(x)). `TransformerBlock`
computes either, with or without the residual connections, using GPT-2's parameter names (so a
`gpt.Block`'s state dict loads into it and the outputs match), and `gradient_norms_by_depth`
measures what each choice does to the gradients that reach the first layers of a deep stack.

Shape legend: B batch, L tokens, E model width, H heads, D = E / H.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnkit._validate import expect_dims, expect_size, expect_tensor

__all__ = ["TransformerBlock", "gradient_norms_by_depth"]


class _SelfAttention(nn.Module):
    """Causal multi-head self-attention with GPT-2's fused q, k, v projection (same names as gpt.py)."""

    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)  # W_q, W_k, W_v stacked: (3E, E)
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, E = x.shape
        q, k, v = self.c_attn(x).split(E, dim=-1)  # 3 x (B, L, E)
        q, k, v = (t.view(B, L, self.n_head, E // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, L, D)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, L, D)
        return self.c_proj(y.transpose(1, 2).reshape(B, L, E))  # merge heads: (B, L, E)


class _MLP(nn.Module):
    def __init__(self, n_embd: int, hidden: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, hidden)  # (4E, E) in GPT-2
        self.c_proj = nn.Linear(hidden, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # (B, L, E) -> (B, L, 4E) -> (B, L, E)


class TransformerBlock(nn.Module):
    """A decoder block: causal self-attention then an MLP, each wrapped in a LayerNorm and a residual.

    norm_first=True is GPT-2's pre-norm, x + attn(ln_1(x)); False the original post-norm,
    ln_1(x + attn(x)). residual=False drops the "x +" (to measure why it is there).

    Shapes: x (B, L, E) -> (B, L, E).

    See chapters/06_transformer_block.ipynb.
    """

    def __init__(self, n_embd: int, n_head: int, *, norm_first: bool = True, residual: bool = True,
                 mlp_ratio: int = 4, eps: float = 1e-5) -> None:
        super().__init__()
        if not isinstance(n_head, int) or n_head <= 0 or n_embd % n_head:
            raise ValueError(f"Expected `n_head` to be a positive divisor of `n_embd`={n_embd} but got {n_head!r}")
        self.norm_first, self.residual = norm_first, residual
        self.ln_1 = nn.LayerNorm(n_embd, eps=eps)
        self.attn = _SelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd, eps=eps)
        self.mlp = _MLP(n_embd, mlp_ratio * n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expect_tensor("x", x)
        expect_dims("x", x, ("B", "L", "E"))
        expect_size("x", x, -1, self.ln_1.normalized_shape[0], "the block's width n_embd")
        keep = 1.0 if self.residual else 0.0  # the residual stream, or nothing
        if self.norm_first:  # GPT-2: normalise what goes INTO each sublayer; the stream stays raw
            x = keep * x + self.attn(self.ln_1(x))  # (B, L, E)
            return keep * x + self.mlp(self.ln_2(x))  # (B, L, E)
        x = self.ln_1(keep * x + self.attn(x))  # post-norm: normalise the stream after each sum
        return self.ln_2(keep * x + self.mlp(x))  # (B, L, E)


def gradient_norms_by_depth(n_layer: int = 24, *, norm_first: bool = True, residual: bool = True,
                            n_embd: int = 32, n_head: int = 4, L: int = 16, B: int = 4,
                            seed: int = 0) -> torch.Tensor:
    """The gradient norm of each block's weights after one backward pass through a random deep stack.

    A stack of `n_layer` TransformerBlocks (PyTorch's default initialisation, seeded) on random inputs, the
    loss the mean square of the output: with residuals the first blocks get gradients as large as the last.

    Shapes: -> (n_layer,), entry i the norm of block i's parameter gradients (block 0 nearest the input).

    See chapters/06_transformer_block.ipynb.
    """
    if not isinstance(n_layer, int) or n_layer < 1:
        raise ValueError(f"Expected `n_layer` to be a positive int but got {n_layer!r}")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        blocks = nn.Sequential(*(TransformerBlock(n_embd, n_head, norm_first=norm_first, residual=residual)
                                 for _ in range(n_layer)))
    x = torch.randn(B, L, n_embd, generator=gen)  # (B, L, E)
    target = torch.randn(B, L, n_embd, generator=gen)  # (B, L, E)
    loss = F.mse_loss(blocks(x), target)
    loss.backward()
    norms = [torch.sqrt(sum((p.grad ** 2).sum() for p in block.parameters())) for block in blocks]
    return torch.stack(norms).detach()  # (n_layer,)
