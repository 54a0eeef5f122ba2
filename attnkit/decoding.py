"""Generating tokens with a GPT: greedy or sampled, with attnkit's KV cache or without it.

With the cache, the prompt goes through the model once (prefill), then one token per step; without,
every step reruns the whole (cropped) sequence; both give the same tokens. Once the prompt is in the
cache, each one-token step runs as plain function calls on the weights (`_Decoder`: the same
operations in the same order as the modules, checked equal in tests/test_gpt.py), because the ~40
nn.Module calls per token cost a fifth of a step on a small model (benchmarks/kv_cache.py). A model
with a forward hook or a replaced module is decoded through its modules, so hooks always fire.

Shape legend: B batch, L prompt tokens, E = n_embd, H = n_head, D = E / H, V = vocab_size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnkit._validate import expect_positive_int, expect_prompt
from attnkit.gpt import GPT, MLP, Block, CausalSelfAttention
from attnkit.kv_cache import KVCache
from attnkit.masks import causal_mask

__all__ = ["generate"]


# The module types a GPT is built from. Any other (a subclass, a parametrized or LoRA-wrapped Linear)
# may compute something else, so `generate` then decodes through the modules, not with `_Decoder`.
_AS_BUILT = (GPT, nn.ModuleDict, nn.ModuleList, Block, CausalSelfAttention, MLP, nn.Linear, nn.LayerNorm,
             nn.Embedding)


def _runs_as_built(model: nn.Module) -> bool:
    """True if every module of `model` has a type built here and no forward hook, global or its own.

    Only then does `_Decoder` compute what the modules would; a hook must see its module called.
    """
    from torch.nn.modules import module as nn_module  # where PyTorch keeps the global hooks

    if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
        return False
    return all(type(m) in _AS_BUILT and not (m._forward_hooks or m._forward_pre_hooks) for m in model.modules())


class _Decoder:
    """`model(idx, cache, last_only=True)` for one new token (or `logits`: L), as plain calls on its weights.

    The same operations in the same order as the modules' forward passes (tests/test_gpt.py checks equal
    logits), but the weights are looked up once per `generate` call instead of ~40 nn.Module calls and
    ~150 attribute lookups per token: a step takes ~20% less time on the benchmark's model
    (benchmarks/kv_cache.py). Only for a model that `_runs_as_built`.

    Shapes: idx (B, 1) -> logits (B, V); logits: idx (B, L) -> (B, L, V).
    """

    def __init__(self, model: GPT) -> None:
        tr = model.transformer
        self.n_head, self.n_embd = model.config.n_head, model.config.n_embd
        self.wte, self.wpe, self.lm_head = tr.wte.weight, tr.wpe.weight, model.lm_head.weight

        def ln(m: nn.LayerNorm) -> tuple:  # the arguments of F.layer_norm after the input
            return m.normalized_shape, m.weight, m.bias, m.eps

        def lin(m: nn.Linear) -> tuple:  # the arguments of F.linear after the input
            return m.weight, m.bias

        self.layers = [(ln(b.ln_1), lin(b.attn.c_attn), lin(b.attn.c_proj), ln(b.ln_2), lin(b.mlp.c_fc),
                        lin(b.mlp.c_proj)) for b in tr.h]
        self.ln_f = ln(tr.ln_f)

    def __call__(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        return self.logits(idx, cache)[:, -1, :]  # (B, V)

    def logits(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """`model(idx, cache)` for L new tokens after the cached ones (speculative decoding verifies k + 1).

        Shapes: idx (B, L) -> logits (B, L, V).
        """
        B, L, H, E = idx.shape[0], idx.shape[1], self.n_head, self.n_embd
        start = cache.n_seen
        x = F.embedding(idx, self.wte) + self.wpe[start:start + L]  # (B, L, E) + (L, E) -> (B, L, E)
        mask = None  # one query sees every key; L queries: the last L of S, bottom-right aligned
        for layer, (ln_1, c_attn, attn_proj, ln_2, c_fc, mlp_proj) in enumerate(self.layers):
            h = F.layer_norm(x, *ln_1)  # Block: ln_1
            qkv = F.linear(h, *c_attn).view(B, L, 3, H, E // H)  # (B, L, 3E) -> (B, L, 3, H, D)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, L, D)
            k, v = cache.update(layer, k, v)  # (B, H, S, D)
            if L > 1 and mask is None:
                mask = causal_mask(L, k.shape[2], device=x.device)  # (L, S), the same in every layer
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, L, D)
            x = x + F.linear(y.transpose(1, 2).reshape(B, L, E), *attn_proj)  # (B, L, E)
            h = F.gelu(F.linear(F.layer_norm(x, *ln_2), *c_fc), approximate="tanh")  # MLP: (B, L, 4E)
            x = x + F.linear(h, *mlp_proj)  # (B, L, E)
        return F.linear(F.layer_norm(x, *self.ln_f), self.lm_head)  # (B, L, V)


def _next_token(logits: torch.Tensor, do_sample: bool, temperature: float, top_k: int | None,
                generator: torch.Generator | None) -> torch.Tensor:
    """Pick one token per row: the most likely (greedy) or a sample at `temperature` from the top_k."""
    if not do_sample:
        return logits.argmax(dim=-1)  # (B, V) -> (B,)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))  # keep the top_k (and ties)
    probs = F.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B, 1) -> (B,)


def generate(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    use_cache: bool = True,
    temperature: float = 1.0,
    top_k: int | None = None,
    do_sample: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Continue `idx` by `max_new_tokens` tokens: greedy, or sampled with do_sample=True.

    With the cache: one pass over the prompt (prefill), then one token per step. Without it, every
    step reruns the model on the whole sequence, cropped to the last block_size tokens. Both give
    the same tokens (while the sequence fits in block_size, which the cache requires). Cached steps
    skip the nn.Module calls (`_Decoder`) unless a module has a forward hook or was replaced.

    Shapes: idx (B, L) -> (B, L + max_new_tokens).

    See chapters/05_kv_cache.ipynb.
    """
    expect_prompt(idx)
    expect_positive_int("max_new_tokens", max_new_tokens, allow_zero=True)
    if do_sample and not temperature > 0:
        raise ValueError(f"Expected `temperature` > 0 but got {temperature}")
    if top_k is not None and (not isinstance(top_k, int) or top_k <= 0):
        raise ValueError(f"Expected `top_k` to be None or a positive int but got {top_k!r}")
    B, L = idx.shape
    config = model.config
    total = L + max_new_tokens
    if use_cache and total > config.block_size:
        raise ValueError(
            f"With use_cache=True the prompt plus new tokens must fit in block_size={config.block_size} "
            f"but got {L} + {max_new_tokens} = {total}; use_cache=False crops the context instead"
        )
    cache = None
    if use_cache:
        cache = KVCache(config.n_layer, B, config.n_head, total, config.n_embd // config.n_head,
                        dtype=model.lm_head.weight.dtype, device=idx.device)
    out = idx.new_empty(B, total)  # (B, L + new): filled in place, no torch.cat per step
    out[:, :L] = idx
    # One token per step through the same operations without the module calls, unless a hook or a
    # replaced module must see them (chapter 5 hooks c_attn): see _Decoder.
    decode_step = _Decoder(model) if use_cache and _runs_as_built(model) else None
    with torch.inference_mode():
        for t in range(L, total):
            if cache is None:
                context = out[:, max(0, t - config.block_size):t]  # (B, <= block_size): all tokens again
            else:
                context = out[:, cache.n_seen:t]  # (B, L) the prompt first, then (B, 1) per step
            if decode_step is not None and t > L:
                logits = decode_step(context, cache)  # (B, V)
            else:
                logits = model(context, cache, last_only=True)[:, -1, :]  # (B, V)
            out[:, t] = _next_token(logits, do_sample, temperature, top_k, generator)
    return out
