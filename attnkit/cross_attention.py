"""Cross-attention: queries from one sequence, keys and values from another (an encoder's output).

In an encoder-decoder (translation, speech recognition) each decoder position asks "which source
positions matter for me?": its query is matched against keys made from the source, and it reads a
weighted mix of the source's values. Padded source positions must receive no weight, so the mask is
a source padding mask, (B, S), True where a key is a real token (the convention of
`F.scaled_dot_product_attention`; `nn.MultiheadAttention`'s key_padding_mask is the inverse).

`Seq2SeqReverser` is the smallest encoder-decoder that needs cross-attention: it reverses a sequence,
so the alignment it must learn (target i reads source S - 1 - i) is known in advance.

Shape legend: B batch, H heads, L target (query) length, S source (key) length, E width, D = E / H.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnkit._validate import expect_dims, expect_size, expect_tensor, shape_str
from attnkit.attention import scaled_dot_product_attention
from attnkit.mha import merge_heads, split_heads

__all__ = ["CrossAttention", "Seq2SeqReverser", "reversal_batch", "train_reverser"]


class CrossAttention(nn.Module):
    """Multi-head attention from a target sequence x to a source sequence (memory), with a padding mask.

    Queries come from x, keys and values from memory; memory_mask is True where a source position
    may be attended to (a real token) and False for padding.

    Shapes: x (B, L, E), memory (B, S, E_src), memory_mask (B, S) bool
        -> output (B, L, E), weights (B, H, L, S).

    See chapters/06_transformer_block.ipynb.
    """

    def __init__(self, n_embd: int, n_head: int, source_dim: int | None = None) -> None:
        super().__init__()
        if not isinstance(n_head, int) or n_head <= 0 or n_embd % n_head:
            raise ValueError(f"Expected `n_head` to be a positive divisor of `n_embd`={n_embd} but got {n_head!r}")
        self.n_head, self.n_embd = n_head, n_embd
        self.source_dim = n_embd if source_dim is None else source_dim
        self.q_proj = nn.Linear(n_embd, n_embd)  # from the target
        self.k_proj = nn.Linear(self.source_dim, n_embd)  # from the source
        self.v_proj = nn.Linear(self.source_dim, n_embd)  # from the source
        self.out_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor, memory: torch.Tensor,
                memory_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        expect_tensor("x", x)
        expect_tensor("memory", memory)
        expect_dims("x", x, ("B", "L", "E"))
        expect_dims("memory", memory, ("B", "S", "E_src"))
        expect_size("x", x, -1, self.n_embd, "n_embd")
        expect_size("memory", memory, -1, self.source_dim, "source_dim")
        expect_size("memory", memory, 0, x.shape[0], "the batch size of `x`")
        B, S = memory.shape[:2]
        mask = None
        if memory_mask is not None:
            expect_tensor("memory_mask", memory_mask)
            if memory_mask.dtype != torch.bool:
                raise TypeError(f"Expected `memory_mask` to be a bool tensor (True = real source token) but got "
                                f"dtype {memory_mask.dtype}")
            if tuple(memory_mask.shape) != (B, S):
                raise ValueError(f"Expected `memory_mask` shape to be {shape_str((B, S))} (B, S): one flag per "
                                 f"source position, not per target position, but got {shape_str(memory_mask.shape)}")
            mask = memory_mask[:, None, None, :]  # (B, 1, 1, S): the same keys hidden from every head and query
        q = split_heads(self.q_proj(x), self.n_head)  # (B, H, L, D)
        k = split_heads(self.k_proj(memory), self.n_head)  # (B, H, S, D)
        v = split_heads(self.v_proj(memory), self.n_head)  # (B, H, S, D)
        out, weights = scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, L, D), (B, H, L, S)
        return self.out_proj(merge_heads(out)), weights  # (B, L, E), (B, H, L, S)


def reversal_batch(batch_size: int, S: int, vocab_size: int, *, min_len: int = 1,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random token sequences of lengths min_len .. S, padded at the START, and their reversals.

    Padding on the left keeps the right alignment fixed: target i is source position S - 1 - i for
    every length. Token 0 is the padding token; real tokens are 1 .. vocab_size - 1.

    Shapes: -> source (B, S), target (B, S) (padded with 0 at the end), source_mask (B, S) bool.

    See chapters/06_transformer_block.ipynb.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Expected `batch_size` to be a positive int but got {batch_size!r}")
    if not 1 <= min_len <= S:
        raise ValueError(f"Expected `min_len` in 1 .. S={S} but got {min_len}")
    if vocab_size < 2:
        raise ValueError(f"Expected `vocab_size` >= 2 (padding + one token) but got {vocab_size}")
    tokens = torch.randint(1, vocab_size, (batch_size, S), generator=generator)  # (B, S)
    lengths = torch.randint(min_len, S + 1, (batch_size,), generator=generator)  # (B,)
    source_mask = torch.arange(S) >= (S - lengths)[:, None]  # (B, S): the last `length` are real
    source = tokens.masked_fill(~source_mask, 0)  # (B, S)
    target = source.flip(-1)  # (B, S): reversed; the padding moves to the end
    return source, target, source_mask


class Seq2SeqReverser(nn.Module):
    """A one-layer encoder-decoder: embedded source tokens, and one learned query per target position
    that cross-attends to them.

    No decoder self-attention: target i can only know what to output by finding the right source
    position, so the cross-attention weights are the whole story.

    Shapes: source (B, S), source_mask (B, S) -> logits (B, S, V), weights (B, H, S, S).

    See chapters/06_transformer_block.ipynb.
    """

    def __init__(self, vocab_size: int, S: int, n_embd: int = 32, n_head: int = 1) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab_size, n_embd)
        self.src_pos = nn.Embedding(S, n_embd)  # where each source token is
        self.tgt_pos = nn.Embedding(S, n_embd)  # one query per target position
        self.cross = CrossAttention(n_embd, n_head)
        self.head = nn.Linear(n_embd, vocab_size)

    def forward(self, source: torch.Tensor, source_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        expect_tensor("source", source)
        if source.dim() != 2 or source.is_floating_point() or source.dtype == torch.bool:
            raise ValueError(f"Expected `source` to be token ids of shape (B, S) but got shape "
                             f"{shape_str(source.shape)} of dtype {source.dtype}")
        B, S = source.shape
        if S > self.src_pos.num_embeddings:
            raise ValueError(f"Expected `source` of at most S={self.src_pos.num_embeddings} positions but got {S}")
        memory = self.tok(source) + self.src_pos.weight[:S]  # (B, S, E): the encoder's output
        queries = self.tgt_pos.weight[:S].expand(B, S, -1)  # (B, L=S, E)
        out, weights = self.cross(queries, memory, source_mask)  # (B, L, E), (B, H, L, S)
        return self.head(out), weights  # (B, L, V), (B, H, L, S)


def train_reverser(model: Seq2SeqReverser, steps: int = 300, *, batch_size: int = 64, lr: float = 1e-2,
                   seed: int = 0) -> list[float]:
    """Train `model` to reverse padded sequences (loss on real target tokens only); return the losses.

    Shapes: -> a list of `steps` losses.

    See chapters/06_transformer_block.ipynb.
    """
    if not isinstance(model, Seq2SeqReverser):
        raise TypeError(f"Expected `model` to be a Seq2SeqReverser but got {type(model).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"Expected `steps` to be a positive int but got {steps!r}")
    gen = torch.Generator().manual_seed(seed)
    vocab_size, S = model.tok.num_embeddings, model.src_pos.num_embeddings
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        source, target, mask = reversal_batch(batch_size, S, vocab_size, generator=gen)
        logits, _ = model(source, mask)  # (B, S, V)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=0)  # skip padding
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses
