"""Exercises of chapter 1 (solutions/01_attention.ipynb): the four steps of attention.

References are PyTorch's own functions wherever one exists, so a student's answer is compared with
PyTorch, not with our library.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnkit.checks.core import Case, Exercise, Misconception

NOTEBOOK = "01_attention.ipynb"


def _randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


# --- 1.1 softmax ---------------------------------------------------------------------------------


def _softmax_ref(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


def _softmax_cases(gen: torch.Generator) -> list[Case]:
    return [
        Case("one row of 4 scores", {"x": _randn(gen, 4)}),
        Case("a (3, 5) matrix: softmax over each row", {"x": _randn(gen, 3, 5)}),
        Case("large scores (around 1000): exp() overflows unless you subtract the row max",
             {"x": _randn(gen, 2, 6) + 1000.0}),
    ]


def _softmax_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("batched (2, 3, 7), large negative", {"x": _randn(gen, 2, 3, 7, scale=30) - 500.0}),
            Case("one row", {"x": _randn(gen, 1, 9)})]


# --- 1.2 scaled dot-product scores ---------------------------------------------------------------


def _scores_ref(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    return query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])


def _scores_cases(gen: torch.Generator) -> list[Case]:
    return [
        Case("L=2 queries, S=3 keys, d_k=4", {"query": _randn(gen, 2, 4), "key": _randn(gen, 3, 4)}),
        Case("batch of 2, L=3, S=5, d_k=8", {"query": _randn(gen, 2, 3, 8), "key": _randn(gen, 2, 5, 8)}),
    ]


def _scores_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("batch 3, heads 2, L=4, S=6, d_k=16",
                 {"query": _randn(gen, 3, 2, 4, 16), "key": _randn(gen, 3, 2, 6, 16)})]


# --- 1.3 additive scores --------------------------------------------------------------------------


def _additive_ref(query: torch.Tensor, key: torch.Tensor, W_q: torch.Tensor, W_k: torch.Tensor,
                  v_a: torch.Tensor) -> torch.Tensor:
    # (..., L, 1, A) + (..., 1, S, A) -> (..., L, S, A) -> (..., L, S)
    hidden = torch.tanh((query @ W_q.T).unsqueeze(-2) + (key @ W_k.T).unsqueeze(-3))
    return hidden @ v_a


def _additive_cases(gen: torch.Generator) -> list[Case]:
    def case(name: str, batch: tuple[int, ...], L: int, S: int, Eq: int, Ek: int, A: int) -> Case:
        return Case(name, {"query": _randn(gen, *batch, L, Eq), "key": _randn(gen, *batch, S, Ek),
                           "W_q": _randn(gen, A, Eq), "W_k": _randn(gen, A, Ek), "v_a": _randn(gen, A)})
    return [case("L=2, S=3, query width 4, key width 5, hidden 6", (), 2, 3, 4, 5, 6),
            case("batch of 2, L=3, S=4, widths 3 and 5, hidden 7", (2,), 3, 4, 3, 5, 7)]


def _additive_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("batch 2, L=5, S=1", {"query": _randn(gen, 2, 5, 4), "key": _randn(gen, 2, 1, 3),
                                       "W_q": _randn(gen, 8, 4), "W_k": _randn(gen, 8, 3),
                                       "v_a": _randn(gen, 8)})]


# --- 1.4 scaled dot-product attention ------------------------------------------------------------


def _attention_ref(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attn_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    output = F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask)
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return output, torch.softmax(scores, dim=-1)


def _attention_cases(gen: torch.Generator) -> list[Case]:
    def qkv(*batch: int, L: int, S: int, E: int, Ev: int) -> dict[str, torch.Tensor]:
        return {"query": _randn(gen, *batch, L, E), "key": _randn(gen, *batch, S, E),
                "value": _randn(gen, *batch, S, Ev)}

    masked = qkv(2, L=3, S=5, E=4, Ev=6)
    mask = torch.rand(2, 3, 5, generator=gen) > 0.4
    mask[..., 0] = True  # every query may attend to at least one key
    return [
        Case("L=3 queries, S=3 keys, E=4, no mask", qkv(L=3, S=3, E=4, Ev=4)),
        Case("batch of 2, L=3, S=5, E=4, value width 6, no mask", qkv(2, L=3, S=5, E=4, Ev=6)),
        Case("batch of 2, L=3, S=5, boolean mask (True = may attend)", {**masked, "attn_mask": mask}),
    ]


def _attention_hidden(gen: torch.Generator) -> list[Case]:
    L, S = 4, 6
    mask = torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L)
    return [Case("batch 2, heads 3, causal mask (L, S) broadcast",
                 {"query": _randn(gen, 2, 3, L, 8), "key": _randn(gen, 2, 3, S, 8),
                  "value": _randn(gen, 2, 3, S, 5), "attn_mask": mask})]


def _attention_unscaled(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights


def _attention_inverted(query, key, value, attn_mask=None):
    if attn_mask is None:
        raise ValueError("only applies with a mask")
    return _masked_with(query, key, value, ~attn_mask)


def _masked_with(query, key, value, mask):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return weights @ value, weights


def _attention_wrong_axis(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-2)
    return weights @ value, weights


def _attention_mask_after_softmax(query, key, value, attn_mask=None):
    if attn_mask is None:
        raise ValueError("only applies with a mask")
    weights = torch.softmax(query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1]), dim=-1) * attn_mask
    return weights @ value, weights


EXERCISES = [
    Exercise(
        id="1.1", notebook=NOTEBOOK, function="softmax",
        title="Numerically stable softmax over the last dimension",
        reference=_softmax_ref, make_cases=_softmax_cases, make_hidden_cases=_softmax_hidden,
        output_names=("weights",),
        misconceptions=(
            Misconception(lambda x: torch.softmax(x, dim=0),
                          "You normalised over the first dimension; attention weights are normalised over "
                          "the keys, the last dimension (dim=-1)."),
            Misconception(lambda x: torch.exp(x), "Each row must sum to 1: divide exp(x) by its row sum."),
        ),
    ),
    Exercise(
        id="1.2", notebook=NOTEBOOK, function="scaled_scores",
        title="Scaled dot-product scores Q K^T / sqrt(d_k)",
        reference=_scores_ref, make_cases=_scores_cases, make_hidden_cases=_scores_hidden,
        output_names=("scores",),
        misconceptions=(
            Misconception(lambda query, key: query @ key.transpose(-2, -1),
                          "These are the unscaled dot products: divide by sqrt(d_k), d_k = query.shape[-1]."),
            Misconception(lambda query, key: query @ key.transpose(-2, -1) / query.shape[-1],
                          "You divided by d_k; divide by its square root, math.sqrt(d_k)."),
        ),
    ),
    Exercise(
        id="1.3", notebook=NOTEBOOK, function="additive_scores",
        title="Additive (Bahdanau) scores v_a^T tanh(W_q q + W_k k)",
        reference=_additive_ref, make_cases=_additive_cases, make_hidden_cases=_additive_hidden,
        output_names=("scores",),
        misconceptions=(
            Misconception(lambda query, key, W_q, W_k, v_a:
                          ((query @ W_q.T).unsqueeze(-2) + (key @ W_k.T).unsqueeze(-3)) @ v_a,
                          "You left out the tanh: the score is v_a^T tanh(W_q q + W_k k)."),
        ),
    ),
    Exercise(
        id="1.4", notebook=NOTEBOOK, function="scaled_dot_product_attention",
        title="Scaled dot-product attention with an optional boolean mask, returning (output, weights)",
        reference=_attention_ref, make_cases=_attention_cases, make_hidden_cases=_attention_hidden,
        output_names=("output", "weights"),
        misconceptions=(
            Misconception(_attention_unscaled, "Divide the scores by sqrt(d_k) before the softmax."),
            Misconception(_attention_inverted,
                          "Your mask is inverted: here True means *may attend* (like PyTorch's "
                          "scaled_dot_product_attention), so fill the scores with -inf where the mask is False."),
            Misconception(_attention_wrong_axis,
                          "Softmax over the last dimension (the keys): each query's weights must sum to 1."),
            Misconception(_attention_mask_after_softmax,
                          "Mask the scores *before* the softmax (set them to -inf); zeroing weights after the "
                          "softmax leaves rows that no longer sum to 1."),
        ),
    ),
]
