"""Exercises of chapter 2 (solutions/02_self_attention.ipynb): queries, keys and values from one input.

Weights follow `nn.Linear`: a projection matrix is (out_features, in_features) and projects with
`x @ W.T`. References use PyTorch's own ops (`F.linear`, `F.scaled_dot_product_attention`), so an
answer is compared with PyTorch, not with our library. Shapes keep E (model width), D (query/key
width) and Dv (value width) apart, so that a transpose or a scale by the wrong width shows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnkit.checks.core import Case, Exercise, Misconception, randn

NOTEBOOK = "02_self_attention.ipynb"



def _weights(gen: torch.Generator, E: int, D: int, Dv: int) -> dict[str, torch.Tensor]:
    """nn.Linear-style projections (out, in), initialised like nn.Linear (scale 1/sqrt(E))."""
    s = 1.0 / math.sqrt(E)
    return {"W_q": randn(gen, D, E, scale=s), "W_k": randn(gen, D, E, scale=s), "W_v": randn(gen, Dv, E, scale=s)}


# --- 2.1 the Q/K/V projections --------------------------------------------------------------------


def _qkv_ref(x: torch.Tensor, W_q: torch.Tensor, W_k: torch.Tensor,
             W_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return F.linear(x, W_q), F.linear(x, W_k), F.linear(x, W_v)  # each (..., L, out)


def _qkv_cases(gen: torch.Generator) -> list[Case]:
    return [
        Case("one sequence x (L=3, E=4), square weights (4, 4)",
             {"x": randn(gen, 3, 4), **_weights(gen, E=4, D=4, Dv=4)}),
        Case("batch x (B=2, L=5, E=6), W_q/W_k (D=3, E=6), W_v (Dv=4, E=6)",
             {"x": randn(gen, 2, 5, 6), **_weights(gen, E=6, D=3, Dv=4)}),
    ]


def _qkv_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("batch 3, L=1, E=8, D=2, Dv=5", {"x": randn(gen, 3, 1, 8), **_weights(gen, E=8, D=2, Dv=5)}),
            Case("L=4, E=5, D=5, Dv=3", {"x": randn(gen, 4, 5), **_weights(gen, E=5, D=5, Dv=3)})]


def _qkv_untransposed(x, W_q, W_k, W_v):
    return x @ W_q, x @ W_k, x @ W_v


def _qkv_one_matrix(x, W_q, W_k, W_v):
    return F.linear(x, W_q), F.linear(x, W_q), F.linear(x, W_v)


# --- 2.2 self-attention -----------------------------------------------------------------------------


def _self_attention_ref(x: torch.Tensor, W_q: torch.Tensor, W_k: torch.Tensor,
                        W_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q, k, v = F.linear(x, W_q), F.linear(x, W_k), F.linear(x, W_v)  # (..., L, D), (..., L, D), (..., L, Dv)
    output = F.scaled_dot_product_attention(q, k, v)  # (..., L, Dv)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)  # (..., L, L)
    return output, weights


def _self_attention_cases(gen: torch.Generator) -> list[Case]:
    return [
        Case("one sequence x (L=3, E=4), D=Dv=4", {"x": randn(gen, 3, 4), **_weights(gen, E=4, D=4, Dv=4)}),
        Case("batch x (B=2, L=5, E=8), W_q/W_k (D=2, E=8), W_v (Dv=3, E=8)",
             {"x": randn(gen, 2, 5, 8), **_weights(gen, E=8, D=2, Dv=3)}),
    ]


def _self_attention_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("batch 3, L=6, E=12, D=4, Dv=6", {"x": randn(gen, 3, 6, 12), **_weights(gen, E=12, D=4, Dv=6)}),
            Case("one token, L=1", {"x": randn(gen, 1, 1, 5), **_weights(gen, E=5, D=3, Dv=2)})]


def _attend(q, k, v, scale, dim=-1):
    weights = torch.softmax(q @ k.transpose(-2, -1) * scale, dim=dim)
    return weights @ v, weights


def _sa_scaled_by_model_width(x, W_q, W_k, W_v):
    return _attend(F.linear(x, W_q), F.linear(x, W_k), F.linear(x, W_v), 1 / math.sqrt(x.shape[-1]))


def _sa_unscaled(x, W_q, W_k, W_v):
    return _attend(F.linear(x, W_q), F.linear(x, W_k), F.linear(x, W_v), 1.0)


def _sa_wrong_axis(x, W_q, W_k, W_v):
    q, k, v = F.linear(x, W_q), F.linear(x, W_k), F.linear(x, W_v)
    return _attend(q, k, v, 1 / math.sqrt(q.shape[-1]), dim=-2)


def _sa_values_unprojected(x, W_q, W_k, W_v):
    q, k = F.linear(x, W_q), F.linear(x, W_k)
    return _attend(q, k, x, 1 / math.sqrt(q.shape[-1]))


# --- 2.3 the "Thinking Machines" numbers -------------------------------------------------------------


def _thinking_ref(x1: torch.Tensor, x2: torch.Tensor, W_q: torch.Tensor, W_k: torch.Tensor,
                  W_v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    X = torch.stack([x1, x2])  # (2, E): the two words as rows
    q, k, v = F.linear(X, W_q), F.linear(X, W_k), F.linear(X, W_v)  # (2, D), (2, D), (2, Dv)
    scores = k @ q[0]  # (2, D) x (D,) -> (2,): q1.k1, q1.k2
    scaled = scores / math.sqrt(q.shape[-1])  # divide by sqrt(d_k), d_k = D
    weights = torch.softmax(scaled, dim=-1)  # (2,)
    z1 = F.scaled_dot_product_attention(q[:1], k, v)[0]  # (1, Dv) -> (Dv,): PyTorch's z1, same as weights @ v
    return scores, scaled, weights, z1


def _thinking_cases(gen: torch.Generator) -> list[Case]:
    def case(name: str, E: int, D: int, Dv: int) -> Case:
        return Case(name, {"x1": randn(gen, E), "x2": randn(gen, E), **_weights(gen, E=E, D=D, Dv=Dv)})
    return [case("x1, x2 of width E=4; W_q, W_k (D=3, E=4); W_v (Dv=3, E=4)", 4, 3, 3),
            case("x1, x2 of width E=8; W_q, W_k (D=4, E=8); W_v (Dv=2, E=8)", 8, 4, 2)]


def _thinking_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("E=6, D=9, Dv=5", {"x1": randn(gen, 6, scale=2.0), "x2": randn(gen, 6, scale=2.0),
                                    **_weights(gen, E=6, D=9, Dv=5)})]


def _thinking_with(x1, x2, W_q, W_k, W_v, *, divide_by, values="v"):
    X = torch.stack([x1, x2])
    q, k, v = F.linear(X, W_q), F.linear(X, W_k), F.linear(X, W_v)
    scores = k @ q[0]
    scaled = scores / divide_by(q.shape[-1], X.shape[-1])
    weights = torch.softmax(scaled, dim=-1)
    z1 = weights @ (v if values == "v" else X)
    return scores, scaled, weights, z1


def _thinking_sqrt_model_width(x1, x2, W_q, W_k, W_v):
    return _thinking_with(x1, x2, W_q, W_k, W_v, divide_by=lambda D, E: math.sqrt(E))


def _thinking_by_d_k(x1, x2, W_q, W_k, W_v):
    return _thinking_with(x1, x2, W_q, W_k, W_v, divide_by=lambda D, E: D)


def _thinking_softmax_of_raw_scores(x1, x2, W_q, W_k, W_v):
    scores, scaled, _, _ = _thinking_ref(x1, x2, W_q, W_k, W_v)
    weights = torch.softmax(scores, dim=-1)
    v = torch.stack([F.linear(x1, W_v), F.linear(x2, W_v)])
    return scores, scaled, weights, weights @ v


def _thinking_sums_inputs(x1, x2, W_q, W_k, W_v):
    return _thinking_with(x1, x2, W_q, W_k, W_v, divide_by=lambda D, E: math.sqrt(D), values="x")


def _thinking_query_of_word_2(x1, x2, W_q, W_k, W_v):
    """The numbers of "Machines": q2 scored against k1 and k2, and z2."""
    X = torch.stack([x1, x2])
    q, k, v = F.linear(X, W_q), F.linear(X, W_k), F.linear(X, W_v)
    scores = k @ q[1]
    scaled = scores / math.sqrt(q.shape[-1])
    weights = torch.softmax(scaled, dim=-1)
    return scores, scaled, weights, weights @ v


def _thinking_k_times_k(x1, x2, W_q, W_k, W_v):
    """Scores k1.k1 and k1.k2: the key standing in for the query."""
    return _thinking_ref(x1, x2, W_k, W_k, W_v)


# --- 2.4 stretch: cross-attention ----------------------------------------------------------------


def _cross_ref(x: torch.Tensor, memory: torch.Tensor, W_q: torch.Tensor, W_k: torch.Tensor,
               W_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q = F.linear(x, W_q)  # (..., L, D): the queries come from x
    k, v = F.linear(memory, W_k), F.linear(memory, W_v)  # (..., S, D), (..., S, Dv): keys, values from memory
    output = F.scaled_dot_product_attention(q, k, v)  # (..., L, Dv)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)  # (..., L, S)
    return output, weights


def _cross_weights(gen: torch.Generator, E: int, Em: int, D: int, Dv: int) -> dict[str, torch.Tensor]:
    return {"W_q": randn(gen, D, E, scale=E ** -0.5), "W_k": randn(gen, D, Em, scale=Em ** -0.5),
            "W_v": randn(gen, Dv, Em, scale=Em ** -0.5)}


def _cross_cases(gen: torch.Generator) -> list[Case]:
    return [
        Case("x (B=2, L=3, E=4), memory (B=2, S=5, E=4), D=2, Dv=3",
             {"x": randn(gen, 2, 3, 4), "memory": randn(gen, 2, 5, 4), **_cross_weights(gen, 4, 4, 2, 3)}),
        Case("x (L=2, E=6), memory (S=4, width 5): W_q (3, 6), W_k (3, 5), W_v (4, 5)",
             {"x": randn(gen, 2, 6), "memory": randn(gen, 4, 5), **_cross_weights(gen, 6, 5, 3, 4)}),
    ]


def _cross_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("B=3, L=1, S=7, E=8, memory width 6, D=4, Dv=2",
                 {"x": randn(gen, 3, 1, 8), "memory": randn(gen, 3, 7, 6), **_cross_weights(gen, 8, 6, 4, 2)})]


def _cross_swapped(x, memory, W_q, W_k, W_v):
    return _self_attention_like(F.linear(memory, W_q), F.linear(x, W_k), F.linear(x, W_v))


def _self_attention_like(q, k, v, scale=None, dim=-1):
    return _attend(q, k, v, 1 / math.sqrt(q.shape[-1]) if scale is None else scale, dim=dim)


def _cross_self(x, memory, W_q, W_k, W_v):
    return _self_attention_like(F.linear(x, W_q), F.linear(x, W_k), F.linear(x, W_v))


def _cross_scaled_by_width(x, memory, W_q, W_k, W_v):
    return _self_attention_like(F.linear(x, W_q), F.linear(memory, W_k), F.linear(memory, W_v),
                                scale=1 / math.sqrt(x.shape[-1]))


EXERCISES = [
    Exercise(
        id="2.1", notebook=NOTEBOOK, function="qkv_projections",
        title="Queries, keys and values from the same input through three learned projections",
        reference=_qkv_ref, make_cases=_qkv_cases, make_hidden_cases=_qkv_hidden,
        output_names=("q", "k", "v"),
        misconceptions=(
            Misconception(_qkv_untransposed,
                          "nn.Linear stores its weight as (out_features, in_features), so it projects with "
                          "x @ W.T (or F.linear(x, W)), not x @ W.", name="untransposed-weights"),
            Misconception(_qkv_one_matrix,
                          "Your k equals your q: each of Q, K and V has its own learned matrix (W_q, W_k, W_v).",
                          name="one-matrix"),
        ),
    ),
    Exercise(
        id="2.2", notebook=NOTEBOOK, function="self_attention",
        title="Self-attention: project x to q, k, v, then softmax(q k^T / sqrt(d_k)) v, returning (output, weights)",
        reference=_self_attention_ref, make_cases=_self_attention_cases, make_hidden_cases=_self_attention_hidden,
        output_names=("output", "weights"),
        misconceptions=(
            Misconception(_sa_scaled_by_model_width,
                          "You scaled by sqrt(E), the width of x. d_k is the width of the queries and keys "
                          "after projection: q.shape[-1] (here W_q.shape[0]).", name="scaled-by-model-width"),
            Misconception(_sa_unscaled, "Divide the scores q k^T by sqrt(d_k) before the softmax.", name="unscaled"),
            Misconception(_sa_wrong_axis,
                          "Softmax over the last dimension (the keys): each query's weights must sum to 1.",
                          name="wrong-axis"),
            Misconception(_sa_values_unprojected,
                          "The weighted sum is over the values v = x @ W_v.T, not over the inputs x.",
                          name="values-unprojected"),
        ),
    ),
    Exercise(
        id="2.3", notebook=NOTEBOOK, function="thinking_machines",
        title='The "Thinking Machines" numbers: scores, scaled scores, weights and z1 for the first word',
        reference=_thinking_ref, make_cases=_thinking_cases, make_hidden_cases=_thinking_hidden,
        output_names=("scores", "scaled_scores", "weights", "z1"),
        misconceptions=(
            Misconception(_thinking_sqrt_model_width,
                          "You divided by sqrt(E), the width of the word vectors. d_k is the width of the keys: "
                          "W_k.shape[0].", name="scaled-by-model-width"),
            Misconception(_thinking_by_d_k, "You divided by d_k; divide by its square root, math.sqrt(d_k).",
                          name="divided-by-d-k"),
            Misconception(_thinking_softmax_of_raw_scores,
                          "Your weights are the softmax of the unscaled scores: apply the softmax to the "
                          "scaled scores.", name="softmax-of-raw-scores"),
            Misconception(_thinking_sums_inputs,
                          "z1 is the weighted sum of the value vectors v1, v2 (x @ W_v.T), not of x1, x2.",
                          name="sums-inputs"),
            Misconception(_thinking_query_of_word_2,
                          "These are the numbers for the second word. z1 belongs to \"Thinking\": score q1 "
                          "against k1 and k2.", name="query-of-word-2"),
            Misconception(_thinking_k_times_k,
                          "The scores use the query of word 1 (q1 = x1 @ W_q.T) against each key, not a key "
                          "against the keys.", name="key-times-keys"),
        ),
    ),
    Exercise(
        id="2.4", notebook=NOTEBOOK, function="cross_attention",
        title="Stretch: cross-attention, queries from x and keys/values from memory, returning (output, weights)",
        reference=_cross_ref, make_cases=_cross_cases, make_hidden_cases=_cross_hidden,
        output_names=("output", "weights"),
        error_hints=(
            (r"Expected size for first two dimensions of batch2 tensor|mat1 and mat2 shapes cannot be multiplied",
             "Check which sequence each projection reads: the queries project x (L rows, W_q is (D, E)), the "
             "keys AND the values project memory (S rows, W_k and W_v take its width E_m). The (L, S) weights "
             "then multiply the S value rows.", "projection-shape"),
        ),
        misconceptions=(
            Misconception(_cross_swapped,
                          "The roles are swapped: the QUERIES come from x (the sequence that asks, L rows) and "
                          "the keys and values from memory (S rows), so the weights are (L, S).", name="swapped-roles"),
            Misconception(_cross_self,
                          "That is self-attention on x: in cross-attention the keys and values are projections "
                          "of `memory`, not of x.", name="self-attention"),
            Misconception(_cross_scaled_by_width,
                          "You scaled by sqrt(E), the width of x. d_k is the width of the queries and keys after "
                          "projection: W_q.shape[0].", name="scaled-by-model-width"),
        ),
    ),
]
