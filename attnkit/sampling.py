"""Choosing the next token from a model's logits: greedy, temperature, top-k and top-p (nucleus).

The filters work on logits and set what they drop to -inf, like Hugging Face's logits warpers
(`TemperatureLogitsWarper`, `TopKLogitsWarper`, `TopPLogitsWarper`; tests/test_sampling.py checks
equality), so they compose in `sample_next` in the same order as `transformers` applies them:
temperature, then top-k, then top-p. Top-p keeps the smallest set of most likely tokens whose
probabilities add up to at least p, including the token that crosses p, then renormalises.

Shape legend: B batch, V vocabulary size.
"""

from __future__ import annotations

import torch

from attnkit._validate import expect_ndim, expect_tensor

__all__ = ["apply_temperature", "top_k_filter", "top_p_filter", "sampling_probs", "sample_next"]


def _expect_logits(logits: object) -> torch.Tensor:
    expect_tensor("logits", logits)
    expect_ndim("logits", logits, 1, "(..., V)")
    if not logits.is_floating_point():
        raise TypeError(f"Expected `logits` to be a float tensor but got dtype {logits.dtype}")
    return logits


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide the logits by `temperature`: below 1 sharpens the distribution, above 1 flattens it.

    Shapes: logits (..., V) -> (..., V).

    See chapters/06_transformer_block.ipynb.
    """
    _expect_logits(logits)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise TypeError(f"Expected `temperature` to be a float but got {type(temperature).__name__}")
    if not temperature > 0:
        raise ValueError(f"Expected `temperature` > 0 (use argmax for greedy decoding) but got {temperature}")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (and any tied with the k-th), set the rest to -inf.

    Shapes: logits (..., V) -> (..., V).

    See chapters/06_transformer_block.ipynb.
    """
    _expect_logits(logits)
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"Expected `k` to be an int but got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"Expected `k` >= 1 but got {k}")
    kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the most likely tokens until their probabilities reach p (the one that crosses p included).

    Every other logit becomes -inf; at least one token always stays.

    Shapes: logits (..., V) -> (..., V).

    See chapters/06_transformer_block.ipynb.
    """
    _expect_logits(logits)
    if isinstance(p, bool) or not isinstance(p, int | float):
        raise TypeError(f"Expected `p` to be a float but got {type(p).__name__}")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"Expected `p` in (0, 1] but got {p}")
    if p == 1.0:  # everything: skip the sums, whose rounding could drop a token of probability ~0
        return logits.clone()
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (..., V), most likely first
    probs = sorted_logits.softmax(dim=-1)  # (..., V)
    before = probs.cumsum(dim=-1) - probs  # (..., V): the mass of the more likely tokens
    drop_sorted = before >= p  # a token is kept while the mass before it is still short of p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sampling_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None) -> torch.Tensor:
    """The distribution `sample_next` draws from: temperature, then top-k, then top-p, then softmax.

    Shapes: logits (..., V) -> probabilities (..., V), each row summing to 1.

    See chapters/06_transformer_block.ipynb.
    """
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits.softmax(dim=-1)


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, *, greedy: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row: the argmax if `greedy`, else a draw from `sampling_probs` (pass a seeded generator).

    Shapes: logits (B, V) -> (B,) token ids.

    See chapters/06_transformer_block.ipynb.
    """
    _expect_logits(logits)
    if logits.dim() != 2:
        raise ValueError(f"Expected `logits` shape to be (B, V) but got {tuple(logits.shape)}")
    if greedy:
        return logits.argmax(dim=-1)  # (B,)
    probs = sampling_probs(logits, temperature, top_k, top_p)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B, 1) -> (B,)
