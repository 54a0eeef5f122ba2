"""Exercises of chapter 1 (solutions/01_attention.ipynb): the four steps of attention, two scoring
functions and local attention.

References are PyTorch's own functions wherever one exists, so a student's answer is compared with
PyTorch, not with our library. Each misconception below is a function computing the answer of a
learner with that mistake; when a student's output equals it, its hint is shown.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnkit.checks.core import Case, Exercise, Misconception, randn

NOTEBOOK = "01_attention.ipynb"



# --- 1.1 softmax ---------------------------------------------------------------------------------


def _softmax_ref(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


def _softmax_cases(gen: torch.Generator) -> list[Case]:
    far_apart = randn(gen, 2, 5)
    far_apart[0] += 1000.0
    far_apart[1] -= 1000.0
    return [
        Case("one row of 4 scores", {"x": randn(gen, 4)}),
        Case("a (3, 5) matrix: softmax over each row", {"x": randn(gen, 3, 5)}),
        Case("large scores (around 1000): exp() overflows unless you subtract the row max",
             {"x": randn(gen, 2, 6) + 1000.0}),
        Case("two rows far apart (one near +1000, one near -1000): subtract each row's own max",
             {"x": far_apart}),
    ]


def _softmax_hidden(gen: torch.Generator) -> list[Case]:
    masked = randn(gen, 3, 6)
    masked[:, 2:4] = float("-inf")  # some keys masked, never a whole row
    return [Case("batched (2, 3, 7), large negative", {"x": randn(gen, 2, 3, 7, scale=30) - 500.0}),
            Case("one row", {"x": randn(gen, 1, 9)}),
            Case("a (4, 1) matrix: one key per row", {"x": randn(gen, 4, 1)}),
            Case("some entries -inf (masked keys)", {"x": masked})]


def _softmax_whole_tensor(x: torch.Tensor) -> torch.Tensor:
    e = torch.exp(x - x.max())
    return e / e.sum()


def _softmax_global_max(x: torch.Tensor) -> torch.Tensor:
    e = torch.exp(x - x.max())
    return e / e.sum(dim=-1, keepdim=True)


# --- 1.2 scaled dot-product scores ---------------------------------------------------------------


def _scores_ref(query: torch.Tensor, key: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    return query @ key.transpose(-2, -1) * scale


def _scores_cases(gen: torch.Generator) -> list[Case]:
    return [
        Case("L=2 queries, S=3 keys, d_k=4", {"query": randn(gen, 2, 4), "key": randn(gen, 3, 4)}),
        Case("batch of 2, L=3, S=5, d_k=8", {"query": randn(gen, 2, 3, 8), "key": randn(gen, 2, 5, 8)}),
        Case("plain dot-product (multiplicative) scores: L=3, S=4, d_k=6, scale=1.0",
             {"query": randn(gen, 3, 6), "key": randn(gen, 4, 6), "scale": 1.0}),
        Case("a given scale=0.5 (multiply the scores by it): L=2, S=3, d_k=4",
             {"query": randn(gen, 2, 4), "key": randn(gen, 3, 4), "scale": 0.5}),
    ]


def _scores_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("batch 3, heads 2, L=4, S=6, d_k=16",
                 {"query": randn(gen, 3, 2, 4, 16), "key": randn(gen, 3, 2, 6, 16)}),
            Case("one query, S=7, d_k=3, scale=0.1",
                 {"query": randn(gen, 1, 3), "key": randn(gen, 7, 3), "scale": 0.1})]


def _raw(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    return query @ key.transpose(-2, -1)


# --- 1.3 additive scores --------------------------------------------------------------------------


def _additive_ref(query: torch.Tensor, key: torch.Tensor, W_q: torch.Tensor, W_k: torch.Tensor,
                  v_a: torch.Tensor) -> torch.Tensor:
    # (..., L, 1, A) + (..., 1, S, A) -> (..., L, S, A) -> (..., L, S)
    hidden = torch.tanh((query @ W_q.T).unsqueeze(-2) + (key @ W_k.T).unsqueeze(-3))
    return hidden @ v_a


def _additive_cases(gen: torch.Generator) -> list[Case]:
    def case(name: str, batch: tuple[int, ...], L: int, S: int, Eq: int, Ek: int, A: int) -> Case:
        return Case(name, {"query": randn(gen, *batch, L, Eq), "key": randn(gen, *batch, S, Ek),
                           "W_q": randn(gen, A, Eq), "W_k": randn(gen, A, Ek), "v_a": randn(gen, A)})
    return [case("L=2, S=3, query width 4, key width 5, hidden 6", (), 2, 3, 4, 5, 6),
            case("batch of 2, L=3, S=4, widths 3 and 5, hidden 7", (2,), 3, 4, 3, 5, 7),
            case("batch of 2, one query (a decoder state) against S=6 keys, hidden 4", (2,), 1, 6, 5, 3, 4)]


def _additive_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("batch 2, L=5, S=1", {"query": randn(gen, 2, 5, 4), "key": randn(gen, 2, 1, 3),
                                       "W_q": randn(gen, 8, 4), "W_k": randn(gen, 8, 3),
                                       "v_a": randn(gen, 8)}),
            Case("batch 2, heads 3, L=4, S=5, same widths 6, hidden 5",
                 {"query": randn(gen, 2, 3, 4, 6), "key": randn(gen, 2, 3, 5, 6),
                  "W_q": randn(gen, 5, 6), "W_k": randn(gen, 5, 6), "v_a": randn(gen, 5)})]


def _additive_pre_activation(query, key, W_q, W_k):
    return (query @ W_q.T).unsqueeze(-2) + (key @ W_k.T).unsqueeze(-3)  # (..., L, S, A)


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
        return {"query": randn(gen, *batch, L, E), "key": randn(gen, *batch, S, E),
                "value": randn(gen, *batch, S, Ev)}

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
                 {"query": randn(gen, 2, 3, L, 8), "key": randn(gen, 2, 3, S, 8),
                  "value": randn(gen, 2, 3, S, 5), "attn_mask": mask}),
            Case("batch 2, heads 2, one query, S=7, E=8, value width 3, no mask",
                 {"query": randn(gen, 2, 2, 1, 8), "key": randn(gen, 2, 2, 7, 8),
                  "value": randn(gen, 2, 2, 7, 3)})]


def _attention_with(query, key, value, mask, scale, dim=-1):
    scores = query @ key.transpose(-2, -1) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=dim)
    return weights @ value, weights


def _attention_unscaled(query, key, value, attn_mask=None):
    return _attention_with(query, key, value, attn_mask, 1.0)


def _attention_inverted(query, key, value, attn_mask=None):
    if attn_mask is None:
        raise ValueError("only applies with a mask")
    return _attention_with(query, key, value, ~attn_mask, 1 / math.sqrt(query.shape[-1]))


def _attention_wrong_axis(query, key, value, attn_mask=None):
    return _attention_with(query, key, value, attn_mask, 1 / math.sqrt(query.shape[-1]), dim=-2)


def _attention_value_width(query, key, value, attn_mask=None):
    return _attention_with(query, key, value, attn_mask, 1 / math.sqrt(value.shape[-1]))


def _attention_key_count(query, key, value, attn_mask=None):
    return _attention_with(query, key, value, attn_mask, 1 / math.sqrt(key.shape[-2]))


def _attention_by_d_k(query, key, value, attn_mask=None):
    return _attention_with(query, key, value, attn_mask, 1 / query.shape[-1])


def _attention_zero_fill(query, key, value, attn_mask=None):
    if attn_mask is None:
        raise ValueError("only applies with a mask")
    scores = (query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])).masked_fill(~attn_mask, 0.0)
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights


def _attention_swapped_outputs(query, key, value, attn_mask=None):
    output, weights = _attention_with(query, key, value, attn_mask, 1 / math.sqrt(query.shape[-1]))
    return weights, output


def _attention_mask_after_softmax(query, key, value, attn_mask=None):
    if attn_mask is None:
        raise ValueError("only applies with a mask")
    weights = torch.softmax(query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1]), dim=-1) * attn_mask
    return weights @ value, weights


# --- 1.5 local attention ---------------------------------------------------------------------------


def _local(query, key, value, centers, D, *, sigma=None, strict=False, window=True, gaussian="after",
           renormalise=False):
    """Local attention with switches for the mistakes below; the defaults are Luong et al.'s."""
    S = key.shape[-2]
    positions = torch.arange(S, dtype=query.dtype)  # (S,)
    distance = positions - centers.unsqueeze(-1)  # (S,) - (..., L, 1) -> (..., L, S)
    inside = distance.abs() < D if strict else distance.abs() <= D  # (..., L, S), True = may attend
    sigma = D / 2 if sigma is None else sigma
    favour = torch.exp(-distance**2 / (2 * sigma**2))  # (..., L, S), 1 at the centre
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])  # (..., L, S)
    if gaussian == "scores":
        scores = scores * favour
    if window:
        scores = scores.masked_fill(~inside, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if gaussian == "after":
        weights = weights * favour  # not renormalised: rows sum to less than 1
    if renormalise:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights @ value, weights


def _local_ref(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, centers: torch.Tensor,
               D: float) -> tuple[torch.Tensor, torch.Tensor]:
    S, L = key.shape[-2], query.shape[-2]
    distance = torch.arange(S, dtype=query.dtype) - centers.unsqueeze(-1)  # (S,) - (..., L, 1) -> (..., L, S)
    inside = distance.abs() <= D  # (..., L, S), True = may attend
    favour = torch.exp(-distance**2 / (2 * (D / 2) ** 2))  # (..., L, S), sigma = D / 2
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])  # (..., L, S)
    weights = torch.softmax(scores.masked_fill(~inside, float("-inf")), dim=-1) * favour  # not renormalised
    # The output from PyTorch's SDPA, independently: query t attends inside its window to values
    # pre-multiplied by its own Gaussian, sum_j softmax_j * (g_tj v_j) = sum_j (softmax_j g_tj) v_j.
    batch = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2], inside.shape[:-2])
    q = query.expand(*batch, L, -1).unsqueeze(-2)  # (B..., L, 1, E): one query per "batch" row
    k = key.expand(*batch, S, -1).unsqueeze(-3).expand(*batch, L, S, -1)  # (B..., L, S, E)
    v = value.expand(*batch, S, -1).unsqueeze(-3) * favour.expand(*batch, L, S).unsqueeze(-1)  # (B..., L, S, Ev)
    mask = inside.expand(*batch, L, S).unsqueeze(-2)  # (B..., L, 1, S)
    output = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).squeeze(-2)  # (B..., L, Ev)
    return output, weights


def _local_cases(gen: torch.Generator) -> list[Case]:
    def qkv(*batch: int, L: int, S: int, E: int, Ev: int) -> dict[str, torch.Tensor]:
        return {"query": randn(gen, *batch, L, E), "key": randn(gen, *batch, S, E),
                "value": randn(gen, *batch, S, Ev)}

    return [
        Case("monotonic alignment p_t = t: L=S=6, E=4, D=1, centers (6,)",
             {**qkv(L=6, S=6, E=4, Ev=4), "centers": torch.arange(6, dtype=torch.float32), "D": 1}),
        Case("predictive alignment (real-valued centres): batch of 2, L=3, S=8, E=4, value width 5, D=2, "
             "centers (2, 3)",
             {**qkv(2, L=3, S=8, E=4, Ev=5), "centers": 8 * torch.sigmoid(randn(gen, 2, 3)), "D": 2}),
    ]


def _local_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("batch 2, heads 2, L=5, S=10, D=3, centres p_t = 2t of shape (L,)",
                 {"query": randn(gen, 2, 2, 5, 8), "key": randn(gen, 2, 2, 10, 8),
                  "value": randn(gen, 2, 2, 10, 3), "centers": 2 * torch.arange(5, dtype=torch.float32),
                  "D": 3}),
            Case("window wider than the sequence: L=S=4, D=10",
                 {"query": randn(gen, 4, 4), "key": randn(gen, 4, 4), "value": randn(gen, 4, 2),
                  "centers": torch.arange(4, dtype=torch.float32), "D": 10})]


# --- 1.6 stretch: additive attention end to end --------------------------------------------------


def _additive_attention_ref(query, key, value, W_q, W_k, v_a, attn_mask=None):
    scores = _additive_ref(query, key, W_q, W_k, v_a)  # (..., L, S): additive scores are NOT scaled
    S = scores.shape[-1]
    batch = torch.broadcast_shapes(scores.shape[:-2], value.shape[:-2])
    # The output from PyTorch's SDPA: "queries" = the scores against identity "keys" give back the
    # scores themselves (scale=1), so SDPA does the masked softmax and the weighted sum of the values.
    output = F.scaled_dot_product_attention(scores.expand(*batch, *scores.shape[-2:]),
                                            torch.eye(S, dtype=scores.dtype).expand(*batch, S, S),
                                            value.expand(*batch, *value.shape[-2:]), attn_mask=attn_mask,
                                            scale=1.0)  # (..., L, Dv)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return output, torch.softmax(scores, dim=-1)  # (..., L, Dv), (..., L, S)


def _additive_attention_cases(gen: torch.Generator) -> list[Case]:
    def case(name, batch, L, S, Eq, Ek, A, Dv, mask=False):
        inputs = {"query": randn(gen, *batch, L, Eq), "key": randn(gen, *batch, S, Ek),
                  "value": randn(gen, *batch, S, Dv), "W_q": randn(gen, A, Eq), "W_k": randn(gen, A, Ek),
                  "v_a": randn(gen, A)}
        if mask:
            m = torch.rand(*batch, L, S, generator=gen) > 0.4
            m[..., 0] = True  # every query keeps at least one key
            inputs["attn_mask"] = m
        return Case(name, inputs)
    return [case("L=2, S=4, query width 3, key width 5, hidden 6, value width 2", (), 2, 4, 3, 5, 6, 2),
            case("batch of 2, L=3, S=5, widths 4 and 4, hidden 3, value width 6, bool mask (2, 3, 5) "
                 "(True = may attend)", (2,), 3, 5, 4, 4, 3, 6, mask=True)]


def _additive_attention_hidden(gen: torch.Generator) -> list[Case]:
    m = torch.ones(4, 7, dtype=torch.bool).tril(diagonal=3)
    return [Case("batch 2, heads 2, L=4, S=7, causal mask (4, 7) broadcast",
                 {"query": randn(gen, 2, 2, 4, 5), "key": randn(gen, 2, 2, 7, 3), "value": randn(gen, 2, 2, 7, 4),
                  "W_q": randn(gen, 8, 5), "W_k": randn(gen, 8, 3), "v_a": randn(gen, 8), "attn_mask": m})]


def _aa_with(query, key, value, W_q, W_k, v_a, attn_mask=None, *, scale=1.0, invert=False, mix="value",
             mask_after=False):
    scores = _additive_ref(query, key, W_q, W_k, v_a) * scale
    if attn_mask is not None and not mask_after:
        scores = scores.masked_fill(attn_mask if invert else ~attn_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if attn_mask is not None and mask_after:
        weights = weights * attn_mask
    return weights @ (value if mix == "value" else key), weights


def _aa_only_masked(**kw):
    if kw.get("attn_mask") is None:
        raise ValueError("only applies with a mask")
    return kw


EXERCISES = [
    Exercise(
        id="1.1", notebook=NOTEBOOK, function="softmax",
        title="Numerically stable softmax over the last dimension",
        reference=_softmax_ref, make_cases=_softmax_cases, make_hidden_cases=_softmax_hidden,
        output_names=("weights",),
        misconceptions=(
            Misconception(lambda x: torch.softmax(x, dim=0),
                          "You normalised over the first dimension; attention weights are normalised over "
                          "the keys, the last dimension (dim=-1).", name="first-dim"),
            Misconception(lambda x: torch.exp(x), "Each row must sum to 1: divide exp(x) by its row sum.",
                          name="no-normalisation"),
            Misconception(_softmax_whole_tensor,
                          "You normalised over the whole tensor; each row must sum to 1 on its own: sum "
                          "over the last dimension with dim=-1, keepdim=True.", name="whole-tensor"),
            Misconception(_softmax_global_max,
                          "You subtracted the maximum of the whole tensor. Subtract each row's own maximum "
                          "(x.amax(dim=-1, keepdim=True)): a row far below the global maximum underflows to "
                          "exp() = 0 everywhere, and 0 / 0 is NaN.", name="global-max"),
        ),
    ),
    Exercise(
        id="1.2", notebook=NOTEBOOK, function="scaled_scores",
        title="Scaled dot-product scores Q K^T * scale, scale = 1/sqrt(d_k) unless given",
        reference=_scores_ref, make_cases=_scores_cases, make_hidden_cases=_scores_hidden,
        output_names=("scores",),
        misconceptions=(
            Misconception(lambda query, key, scale=None: _raw(query, key),
                          "These are the unscaled dot products: divide by sqrt(d_k), d_k = query.shape[-1].",
                          name="unscaled"),
            Misconception(lambda query, key, scale=None: _raw(query, key) / query.shape[-1],
                          "You divided by d_k; divide by its square root, math.sqrt(d_k).", name="divided-by-d-k"),
            Misconception(lambda query, key, scale=None: _raw(query, key) / math.sqrt(query.shape[-2]),
                          "d_k is the width of the queries and keys, query.shape[-1]; you divided by the "
                          "square root of the number of queries L (query.shape[-2]).", name="scaled-by-query-count"),
            Misconception(lambda query, key, scale=None: _raw(query, key) / math.sqrt(key.shape[-2]),
                          "d_k is the width of the queries and keys, query.shape[-1]; you divided by the "
                          "square root of the number of keys S (key.shape[-2]).", name="scaled-by-key-count"),
            Misconception(lambda query, key, scale=None: _raw(query, key) / math.sqrt(query.shape[-1]),
                          "You ignored `scale`: like PyTorch's scaled_dot_product_attention, use "
                          "1/sqrt(d_k) only when scale is None, and otherwise multiply by the scale given "
                          "(scale=1.0 gives the plain dot-product scores).", name="ignored-scale"),
            Misconception(lambda query, key, scale=None: _raw(query, key) / (scale or math.sqrt(query.shape[-1])),
                          "PyTorch *multiplies* the scores by `scale` (its default is 1/sqrt(d_k)); you "
                          "divided by it.", name="divided-by-scale"),
            Misconception(lambda query, key, scale=None: _raw(query, key) / (scale or 1 / math.sqrt(query.shape[-1])),
                          "You divided by the scale: the scores are *multiplied* by scale, which is "
                          "1/sqrt(d_k) by default (so the default divides them by sqrt(d_k)).",
                          name="divided-by-default-scale"),
        ),
    ),
    Exercise(
        id="1.3", notebook=NOTEBOOK, function="additive_scores",
        title="Additive (Bahdanau) scores v_a^T tanh(W_q q + W_k k)",
        reference=_additive_ref, make_cases=_additive_cases, make_hidden_cases=_additive_hidden,
        output_names=("scores",),
        misconceptions=(
            Misconception(lambda query, key, W_q, W_k, v_a: _additive_pre_activation(query, key, W_q, W_k) @ v_a,
                          "You left out the tanh: the score is v_a^T tanh(W_q q + W_k k).", name="no-tanh"),
            Misconception(lambda query, key, W_q, W_k, v_a:
                          torch.tanh(_additive_pre_activation(query, key, W_q, W_k) @ v_a),
                          "The tanh belongs on the hidden layer, before v_a reads it out: "
                          "v_a^T tanh(W_q q + W_k k), not tanh(v_a^T (W_q q + W_k k)).", name="tanh-after-readout"),
            Misconception(lambda query, key, W_q, W_k, v_a:
                          torch.tanh(_additive_pre_activation(query, key, W_q, W_k)).sum(dim=-1),
                          "You summed the hidden layer; read it out with the learned vector v_a instead "
                          "(a dot product with v_a over the hidden dimension).", name="summed-hidden"),
            Misconception(lambda query, key, W_q, W_k, v_a: (query @ W_q.T) @ (key @ W_k.T).transpose(-2, -1),
                          "You multiplied the projected query and key: that is multiplicative scoring. "
                          "Additive scoring *adds* W_q q and W_k k, applies tanh and reads out with v_a.",
                          name="multiplicative"),
        ),
    ),
    Exercise(
        id="1.4", notebook=NOTEBOOK, function="scaled_dot_product_attention",
        title="Scaled dot-product attention with an optional boolean mask, returning (output, weights)",
        reference=_attention_ref, make_cases=_attention_cases, make_hidden_cases=_attention_hidden,
        output_names=("output", "weights"),
        misconceptions=(
            Misconception(_attention_unscaled, "Divide the scores by sqrt(d_k) before the softmax.", name="unscaled"),
            Misconception(_attention_by_d_k, "You divided the scores by d_k; divide by its square root, "
                                             "math.sqrt(query.shape[-1]).", name="divided-by-d-k"),
            Misconception(_attention_zero_fill,
                          "You filled the blocked scores with 0. After the softmax a score of 0 still gets a "
                          "weight (exp(0 - max) > 0), so blocked keys leak into the output: fill them with "
                          "float('-inf'), whose weight is exactly 0.", name="zero-fill"),
            Misconception(_attention_swapped_outputs, "You returned (weights, output): return the output first, "
                                                      "then the weights, as `return output, weights`.",
                          name="swapped-outputs"),
            Misconception(_attention_inverted,
                          "Your mask is inverted: here True means *may attend* (like PyTorch's "
                          "scaled_dot_product_attention), so fill the scores with -inf where the mask is False.",
                          name="inverted-mask"),
            Misconception(_attention_wrong_axis,
                          "Softmax over the last dimension (the keys): each query's weights must sum to 1.",
                          name="wrong-axis"),
            Misconception(_attention_value_width,
                          "d_k is the width of the queries and keys (query.shape[-1]), not of the values: "
                          "scale by 1/sqrt(query.shape[-1]).", name="scaled-by-value-width"),
            Misconception(_attention_key_count,
                          "d_k is the width of the queries and keys (query.shape[-1]), not the number of keys "
                          "S (key.shape[-2]): scale by 1/sqrt(query.shape[-1]).", name="scaled-by-key-count"),
            Misconception(_attention_mask_after_softmax,
                          "Mask the scores *before* the softmax (set them to -inf); zeroing weights after the "
                          "softmax leaves rows that no longer sum to 1.", name="mask-after-softmax"),
        ),
    ),
    Exercise(
        id="1.5", notebook=NOTEBOOK, function="local_attention",
        title="Local attention: softmax inside the window [p_t - D, p_t + D], times a Gaussian (sigma = D/2)",
        reference=_local_ref, make_cases=_local_cases, make_hidden_cases=_local_hidden,
        output_names=("output", "weights"),
        misconceptions=(
            Misconception(lambda query, key, value, centers, D: _local(query, key, value, centers, D, strict=True),
                          "The window [p_t - D, p_t + D] includes both ends: keep the keys with "
                          "|s - p_t| <= D, not < D.", name="strict-window"),
            Misconception(lambda query, key, value, centers, D: _local(query, key, value, centers, D, sigma=D),
                          "The Gaussian's width is sigma = D / 2, so a key at the edge of the window keeps "
                          "exp(-2) of its weight; you used sigma = D.", name="sigma-d"),
            Misconception(lambda query, key, value, centers, D:
                          _local(query, key, value, centers, D, gaussian="none"),
                          "You restricted attention to the window but left out the Gaussian: multiply each "
                          "weight by exp(-(s - p_t)^2 / (2 sigma^2)) with sigma = D / 2.", name="no-gaussian"),
            Misconception(lambda query, key, value, centers, D:
                          _local(query, key, value, centers, D, renormalise=True),
                          "Do not renormalise after the Gaussian (Luong et al. do not): multiply the softmax "
                          "weights by the Gaussian and stop, so the rows sum to less than 1.", name="renormalised"),
            Misconception(lambda query, key, value, centers, D:
                          _local(query, key, value, centers, D, gaussian="scores"),
                          "Apply the Gaussian to the weights *after* the softmax, not to the scores before it.",
                          name="gaussian-on-scores"),
            Misconception(lambda query, key, value, centers, D: _local(query, key, value, centers, D, window=False),
                          "Keys outside [p_t - D, p_t + D] must get weight exactly 0: mask them with -inf "
                          "before the softmax (the Gaussian alone only makes them small).", name="window-unmasked"),
        ),
    ),
    Exercise(
        id="1.6", notebook=NOTEBOOK, function="additive_attention",
        title="Stretch: additive attention end to end (scores, optional mask, softmax, weighted sum of values)",
        reference=_additive_attention_ref, make_cases=_additive_attention_cases,
        make_hidden_cases=_additive_attention_hidden, output_names=("output", "weights"),
        misconceptions=(
            Misconception(lambda **kw: _aa_with(**kw, scale=1 / math.sqrt(kw["W_q"].shape[0])),
                          "Additive scores are not scaled: the 1/sqrt(d_k) belongs to dot-product scores, whose "
                          "size grows with d_k. v_a^T tanh(...) is already bounded by the tanh.",
                          name="scaled-additive"),
            Misconception(lambda **kw: _aa_with(**kw, scale=1 / math.sqrt(kw["query"].shape[-1])),
                          "Additive scores are not scaled: the 1/sqrt(d_k) belongs to dot-product scores, whose "
                          "size grows with d_k. v_a^T tanh(...) is already bounded by the tanh.",
                          name="scaled-additive-by-hidden"),
            Misconception(lambda **kw: _aa_with(**_aa_only_masked(**kw), invert=True),
                          "Your mask is inverted: True means *may attend*, so fill the scores with -inf where "
                          "the mask is False (`~attn_mask`).", name="inverted-mask"),
            Misconception(lambda **kw: _aa_with(**_aa_only_masked(**kw), mask_after=True),
                          "Mask the scores *before* the softmax (set them to -inf); zeroing weights after it "
                          "leaves rows that no longer sum to 1.", name="mask-after-softmax"),
            Misconception(lambda **kw: _aa_with(**kw, mix="key"),
                          "The output is the weighted sum of the VALUES (weights @ value), not of the keys.",
                          name="sum-of-keys"),
        ),
    ),
]
