"""Exercises of chapter 3 (solutions/03_masking.ipynb): causal and padding masks, a safe masked softmax.

Every boolean mask here follows `F.scaled_dot_product_attention`: True = *may attend*. References
use PyTorch itself wherever it has the operation: the masked softmax is read out of
`F.scaled_dot_product_attention` (identity keys and values), so fully masked rows get PyTorch's zeros.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F

from attnkit.checks.core import Case, Exercise, Misconception, case_seed, randn

NOTEBOOK = "03_masking.ipynb"



def _lengths(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


# --- 3.1 causal mask ----------------------------------------------------------------------------------


def _causal_ref(L: int, S: int) -> torch.Tensor:
    # query i is the token at position S - L + i: it sees keys 0 .. S - L + i (bottom-right aligned)
    return torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L)


def _causal_cases(gen: torch.Generator) -> list[Case]:
    return [Case("L=4 queries, S=4 keys (a whole sequence)", {"L": 4, "S": 4}),
            Case("L=2 new queries, S=5 keys (3 cached + 2 new)", {"L": 2, "S": 5}),
            Case("L=1 query, S=6 keys (one decoding step)", {"L": 1, "S": 6})]


def _causal_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("L=S=1", {"L": 1, "S": 1}), Case("L=3, S=8", {"L": 3, "S": 8}), Case("L=S=7", {"L": 7, "S": 7})]


# --- 3.2 padding mask ---------------------------------------------------------------------------------


def _padding_ref(lengths: torch.Tensor, S: int) -> torch.Tensor:
    return torch.arange(S)[None, :] < torch.as_tensor(lengths)[:, None]  # (1, S) < (B, 1) -> (B, S)


def _padding_cases(gen: torch.Generator) -> list[Case]:
    return [Case("lengths [3, 1, 2], S=3", {"lengths": _lengths(3, 1, 2), "S": 3}),
            Case("lengths [2, 4], S=6 (longer than every sequence)", {"lengths": _lengths(2, 4), "S": 6})]


def _padding_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("one sequence, full length", {"lengths": _lengths(5), "S": 5}),
            Case("lengths [0, 7, 3, 1], S=8", {"lengths": _lengths(0, 7, 3, 1), "S": 8})]


def _padding_off_by_one(lengths, S):
    return torch.arange(S)[None, :] <= torch.as_tensor(lengths)[:, None]


def _padding_longest(lengths, S):
    lengths = torch.as_tensor(lengths)
    return torch.arange(int(lengths.max()))[None, :] < lengths[:, None]


# --- 3.3 masked softmax -------------------------------------------------------------------------------


def _masked_softmax_ref(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PyTorch's own masked softmax: SDPA with identity keys and values returns exactly its weights."""
    S = scores.shape[-1]
    batch = torch.broadcast_shapes(scores.shape, mask.shape)[:-2]
    eye = torch.eye(S, dtype=scores.dtype).expand(*batch, S, S)  # (B..., S, S)
    query = scores.expand(*batch, *scores.shape[-2:])  # (B..., L, S)
    # (B..., L, S) x (B..., S, S)^T = the scores; softmax; x (B..., S, S) identity = the weights
    return F.scaled_dot_product_attention(query, eye, eye, attn_mask=mask.expand(*batch, *mask.shape[-2:]), scale=1.0)


def _masked_softmax_cases(gen: torch.Generator) -> list[Case]:
    one = torch.tensor([[False, False, False, False],
                        [True, False, True, False],
                        [True, True, True, True]])  # (3, 4): row 0 has nothing to attend to
    # left-padded causal batch: sequence 1 starts with 2 pads, so its first 2 queries see only padding
    causal = torch.ones(4, 4, dtype=torch.bool).tril()  # (L, S)
    real = torch.tensor([[True, True, True, True], [False, False, True, True]])  # (B, S), left padding
    lengths_5_2 = torch.arange(5)[None, None, :] < torch.tensor([5, 2])[:, None, None]  # (2, 1, 5)
    return [
        Case("scores (3, 4), mask (3, 4) whose first row is fully masked",
             {"scores": randn(gen, 3, 4, scale=2.0), "mask": one}),
        Case("scores (2, 3, 5), padding mask (2, 1, 5) broadcast over queries, lengths 5 and 2",
             {"scores": randn(gen, 2, 3, 5, scale=2.0), "mask": lengths_5_2}),
        Case("scores (2, 2, 4, 4) (B, H, L, S), causal & left-padding mask (2, 1, 4, 4); 2 rows fully masked",
             {"scores": randn(gen, 2, 2, 4, 4, scale=2.0), "mask": (causal & real[:, None, :])[:, None]}),
    ]


def _masked_softmax_hidden(gen: torch.Generator) -> list[Case]:
    mask = torch.rand(3, 5, 6, generator=gen) > 0.5
    mask[0, 1] = False
    mask[2, 4] = False
    return [Case("random mask (3, 5, 6) with fully masked rows, large scores",
                 {"scores": randn(gen, 3, 5, 6, scale=30.0), "mask": mask}),
            Case("nothing masked (1, 2, 3)",
                 {"scores": randn(gen, 1, 2, 3), "mask": torch.ones(2, 3, dtype=torch.bool)})]


def _ms_after_softmax(scores, mask):
    return torch.softmax(scores, dim=-1) * mask


def _ms_nan_rows(scores, mask):
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


def _ms_wrong_axis(scores, mask):
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-2).nan_to_num(0.0)


def _ms_inverted(scores, mask):
    return torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1).nan_to_num(0.0)


def _ms_sentinel(scores, mask):
    return torch.softmax(scores.masked_fill(~mask, -1e9), dim=-1)


def _ms_nan_gradient(scores, mask):
    # right forward pass, NaN backward: the where() picks zeros, but autograd still goes through the
    # softmax of an all -inf row (NaN), and NaN * 0 = NaN
    weights = torch.softmax(scores + torch.zeros(mask.shape).masked_fill(~mask, float("-inf")), dim=-1)
    return torch.where(mask.any(dim=-1, keepdim=True), weights, torch.zeros_like(weights))


def _probe(shape: torch.Size) -> torch.Tensor:
    """A fixed random upstream gradient, the same for the student's function and the reference."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(case_seed("3.3", "probe", *shape)))


def _masked_softmax_call(fn, inputs: dict) -> object:
    """Call fn(scores, mask), then backprop sum(weights * probe): returns (weights, d/d scores).

    Training goes through the masked softmax too, so its gradient must be finite: a fully masked row
    has zero weights whatever its scores, so its gradient is zero (PyTorch's SDPA agrees).
    """
    leaf = inputs["scores"].detach().clone().requires_grad_(True)
    scores = leaf.clone()  # (..., L, S), not a leaf: an in-place change is reported, not an autograd error
    weights = fn(scores=scores, mask=inputs["mask"])
    inputs["scores"].copy_(scores.detach())  # so that run_case sees an in-place change of `scores`
    if type(weights) is not torch.Tensor or weights.shape != torch.broadcast_shapes(leaf.shape, inputs["mask"].shape):
        return weights, torch.zeros_like(leaf)  # judged on the weights alone: their type or shape is wrong
    if not weights.requires_grad:
        raise ValueError("the weights are not connected to `scores` in the autograd graph (did you use "
                         ".detach(), .data, .item() or numpy?): keep to torch operations on `scores`")
    (weights * _probe(weights.shape)).sum().backward()
    return weights, leaf.grad


# --- 3.4 combining causal and padding masks ---------------------------------------------------------


def _combine_ref(causal: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    # (1, L, S) & (B, 1, S) -> (B, L, S): a key is visible if it is in the past AND a real token
    return causal[None, :, :] & padding[:, None, :]


def _combine_cases(gen: torch.Generator) -> list[Case]:
    def case(name: str, L: int, S: int, *lengths: int) -> Case:
        return Case(name, {"causal": torch.ones(L, S, dtype=torch.bool).tril(S - L),
                           "padding": torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]})
    return [case("causal (4, 4), padding (B=4, S=4) for lengths [4, 1, 3, 2] (B == L)", 4, 4, 4, 1, 3, 2),
            case("causal (3, 3), padding (B=2, S=3) for lengths [3, 2]", 3, 3, 3, 2),
            case("causal (2, 5) bottom-right (decoding), padding (B=3, S=5) for lengths [5, 3, 4]", 2, 5, 5, 3, 4)]


def _combine_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("causal (6, 6), padding (1, 6)", {"causal": torch.ones(6, 6, dtype=torch.bool).tril(),
                                                   "padding": torch.tensor([[True] * 4 + [False] * 2])}),
            Case("causal (1, 4), padding (2, 4)", {"causal": torch.ones(1, 4, dtype=torch.bool).tril(3),
                                                   "padding": torch.tensor([[True, True, False, False],
                                                                            [True, True, True, True]])})]


def _combine_query_axis(causal, padding):
    return causal[None, :, :] & padding[:, :, None]


def _combine_or(causal, padding):
    return causal[None, :, :] | padding[:, None, :]


def _combine_no_broadcast(causal, padding):
    return causal & padding


# --- 3.5 find and fix the bug -----------------------------------------------------------------------


def _fixed_ref(x: torch.Tensor, W_q: torch.Tensor, W_k: torch.Tensor, W_v: torch.Tensor,
               lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q, k, v = F.linear(x, W_q), F.linear(x, W_k), F.linear(x, W_v)  # (B, L, D), (B, L, D), (B, L, Dv)
    L = x.shape[1]
    real = torch.arange(L)[None, :] < lengths[:, None]  # (B, L): True = real token
    mask = real[:, None, :]  # (B, 1, L): hide padded *keys* from every query
    output = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, L, Dv)
    scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])  # (B, L, L)
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)  # (B, L, L)
    return output, weights


def buggy_padded_self_attention(x, W_q, W_k, W_v, lengths):
    """The function of exercise 3.5 as given to the student (it has one masking bug)."""
    B, L, E = x.shape
    q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T  # (B, L, D), (B, L, D), (B, L, Dv)
    scores = q @ k.transpose(1, 2) / math.sqrt(k.shape[-1])  # (B, L, L)
    real = torch.arange(L)[None, :] < lengths[:, None]  # (B, L): True = real token
    scores = scores.masked_fill(real.unsqueeze(-1) == 0, -1e9)  # (B, L, 1) broadcast over (B, L, L)
    weights = scores.softmax(dim=-1)  # (B, L, L)
    return weights @ v, weights


def _fixed_cases(gen: torch.Generator) -> list[Case]:
    def case(name: str, L: int, E: int, D: int, Dv: int, *lengths: int) -> Case:
        s = 1.0 / math.sqrt(E)
        return Case(name, {"x": randn(gen, len(lengths), L, E), "W_q": randn(gen, D, E, scale=s),
                           "W_k": randn(gen, D, E, scale=s), "W_v": randn(gen, Dv, E, scale=s),
                           "lengths": torch.tensor(lengths)})
    return [case("x (B=2, L=4, E=6), D=3, Dv=5, lengths [4, 2]", 4, 6, 3, 5, 4, 2),
            case("x (B=3, L=5, E=4), D=Dv=4, lengths [1, 5, 3]", 5, 4, 4, 4, 1, 5, 3)]


def _fixed_hidden(gen: torch.Generator) -> list[Case]:
    s = 1 / math.sqrt(8)
    return [Case("B=4, L=6, E=8, D=2, Dv=3", {"x": randn(gen, 4, 6, 8), "W_q": randn(gen, 2, 8, scale=s),
                                              "W_k": randn(gen, 2, 8, scale=s), "W_v": randn(gen, 3, 8, scale=s),
                                              "lengths": torch.tensor([6, 1, 2, 4])})]


def _fixed_inverted(x, W_q, W_k, W_v, lengths):
    q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T
    real = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    scores = (q @ k.transpose(1, 2) / math.sqrt(k.shape[-1])).masked_fill(real.unsqueeze(1), -1e9)
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def _fixed_query_axis_inf(x, W_q, W_k, W_v, lengths):
    # -inf instead of -1e9, but still on the query axis: padded queries' rows are all -inf -> NaN
    q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T
    real = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    scores = (q @ k.transpose(1, 2) / math.sqrt(k.shape[-1])).masked_fill(~real.unsqueeze(-1), float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def _fixed_unmasked(x, W_q, W_k, W_v, lengths):
    q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T
    weights = (q @ k.transpose(1, 2) / math.sqrt(k.shape[-1])).softmax(dim=-1)
    return weights @ v, weights


# --- 3.6 stretch: padded causal attention from your own pieces ----------------------------------


def _pca_mask(L: int, lengths: torch.Tensor) -> torch.Tensor:
    causal = torch.ones(L, L, dtype=torch.bool).tril()  # (L, S=L)
    padding = torch.arange(L)[None, :] < lengths[:, None]  # (B, S)
    return (causal[None] & padding[:, None, :])[:, None]  # (B, 1, L, S): the same for every head


def _pca_ref(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
             lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mask = _pca_mask(query.shape[-2], lengths)  # (B, 1, L, L)
    output = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)  # (B, H, L, Dv)
    return output, _masked_softmax_ref(query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1]), mask)


def _pca_cases(gen: torch.Generator) -> list[Case]:
    def case(name: str, B: int, H: int, L: int, D: int, Dv: int, *lengths: int) -> Case:
        return Case(name, {"query": randn(gen, B, H, L, D), "key": randn(gen, B, H, L, D),
                           "value": randn(gen, B, H, L, Dv), "lengths": torch.tensor(lengths)})
    return [case("B=3, H=2, L=5, D=4, Dv=3, lengths [5, 2, 4] (right padding)", 3, 2, 5, 4, 3, 5, 2, 4),
            case("B=2, H=2 (B == H), L=4, D=3, Dv=2, lengths [4, 1]", 2, 2, 4, 3, 2, 4, 1)]


def _pca_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("B=4, H=3, L=6, D=8, Dv=5, lengths [6, 1, 3, 2]",
                 {"query": randn(gen, 4, 3, 6, 8), "key": randn(gen, 4, 3, 6, 8), "value": randn(gen, 4, 3, 6, 5),
                  "lengths": torch.tensor([6, 1, 3, 2])})]


def _pca_with(query, key, value, lengths, *, causal=True, padding=True, head_axis=True, invert=False,
              padding_on_queries=False):
    B, H, L, D = query.shape
    mask = torch.ones(B, L, L, dtype=torch.bool)
    if causal:
        mask = mask & torch.ones(L, L, dtype=torch.bool).tril()
    if padding:
        real = torch.arange(L)[None, :] < lengths[:, None]  # (B, L)
        mask = mask & (real[:, :, None] if padding_on_queries else real[:, None, :])
    if invert:
        mask = ~mask
    mask = mask[:, None] if head_axis else mask  # (B, 1, L, L) or, wrongly, (B, L, L) -> (1, B, L, L)
    scores = query @ key.transpose(-2, -1) / math.sqrt(D)
    weights = _masked_softmax_ref(scores, mask)
    return weights @ value, weights


EXERCISES = [
    Exercise(
        id="3.1", notebook=NOTEBOOK, function="causal_mask",
        title="Causal mask (L, S): True where query i may attend to key j, aligned bottom-right",
        reference=_causal_ref, make_cases=_causal_cases, make_hidden_cases=_causal_hidden,
        output_names=("mask",),
        misconceptions=(
            Misconception(lambda L, S: ~_causal_ref(L, S),
                          "Your mask is inverted: True must mean *may attend* (the past and the token itself), "
                          "as in F.scaled_dot_product_attention; the future is False.", name="inverted"),
            Misconception(lambda L, S: torch.ones(L, S, dtype=torch.bool).tril(),
                          "That is the top-left alignment of torch's is_causal=True. With S > L the L queries "
                          "are the *last* L tokens: query i sits at position S - L + i and sees keys up to it "
                          "(tril with diagonal=S - L).", name="top-left"),
            Misconception(lambda L, S: torch.ones(L, S, dtype=torch.bool).tril(S - L - 1),
                          "Your diagonal is False: a token may attend to itself (the mask includes the "
                          "diagonal; only keys strictly in the future are hidden).", name="no-diagonal"),
            Misconception(lambda L, S: torch.ones(L, S, dtype=torch.bool).tril(diagonal=L - S),
                          "The diagonal has the wrong sign: with S > L the triangle moves RIGHT (the queries are "
                          "the last L positions), so tril(diagonal=S - L), not L - S.", name="wrong-diagonal-sign"),
            Misconception(lambda L, S: torch.ones(L, S, dtype=torch.bool).triu(S - L),
                          "You kept the upper triangle: that lets each query see the future. Keep the lower "
                          "triangle (tril).", name="upper-triangle"),
        ),
    ),
    Exercise(
        id="3.2", notebook=NOTEBOOK, function="padding_mask",
        title="Key-padding mask (B, S): True for the real tokens of each sequence, False for padding",
        reference=_padding_ref, make_cases=_padding_cases, make_hidden_cases=_padding_hidden,
        output_names=("mask",),
        misconceptions=(
            Misconception(lambda lengths, S: ~_padding_ref(lengths, S),
                          "Your mask is True on the padding: that is nn.MultiheadAttention's key_padding_mask "
                          "convention (True = ignore). Here True means a real token that may be attended.",
                          name="true-on-padding"),
            Misconception(_padding_off_by_one,
                          "Off by one: a sequence of length n has real tokens at positions 0 .. n - 1, so use "
                          "position < length.", name="off-by-one"),
            Misconception(_padding_longest,
                          "The mask must have S columns (the padded length of the batch), which may be "
                          "longer than the longest sequence.", name="longest-not-s"),
        ),
    ),
    Exercise(
        id="3.3", notebook=NOTEBOOK, function="masked_softmax",
        title="Masked softmax over the keys, with zeros (not NaN) for a fully masked row",
        reference=_masked_softmax_ref, make_cases=_masked_softmax_cases, make_hidden_cases=_masked_softmax_hidden,
        call=_masked_softmax_call, output_names=("weights", "gradient of sum(weights * probe) w.r.t. scores"),
        misconceptions=(
            Misconception(_ms_nan_rows,
                          "Right wherever a row has a key to attend to, but a fully masked row is all -inf and "
                          "softmax gives 0/0 = NaN there. Return zeros for such rows (like PyTorch's SDPA), e.g. "
                          "with torch.where on `mask.any(dim=-1, keepdim=True)`.", name="nan-rows"),
            Misconception(_ms_sentinel,
                          "A finite sentinel like -1e9 gives a fully masked row *uniform* weights (every entry "
                          "equally -1e9), so that query averages over keys it must not see. Those rows must be zeros.",
                          name="finite-sentinel"),
            Misconception(_ms_after_softmax,
                          "You masked after the softmax: the surviving weights no longer sum to 1. Set masked "
                          "scores to -inf *before* the softmax.", name="mask-after-softmax"),
            Misconception(_ms_inverted,
                          "Your mask is inverted: True means *may attend* here (as in F.scaled_dot_product_"
                          "attention), but masked_fill fills where its mask is True. Fill where the mask is False "
                          "(`~mask`).", name="inverted-mask"),
            Misconception(_ms_wrong_axis,
                          "Softmax over the last dimension (the keys): each query's weights must sum to 1.",
                          name="wrong-axis"),
            Misconception(_ms_nan_gradient,
                          "Your weights are right but their gradient is NaN on the fully masked rows. torch.where "
                          "picks the zeros in the forward pass, yet the backward pass still runs through the "
                          "softmax of an all -inf row, which is NaN, and NaN * 0 = NaN. Keep every branch "
                          "finite: block the masked keys with -inf, then give a fully masked row finite scores, "
                          "`.masked_fill(~has_key, 0.0)` with has_key = mask.any(dim=-1, keepdim=True), before the "
                          "softmax, and zero those rows after it. (masked_fill(~mask, -inf) instead of adding a "
                          "-inf mask also works: masked_fill passes no gradient to the entries it fills.)",
                          name="nan-gradient"),
        ),
    ),
    Exercise(
        id="3.4", notebook=NOTEBOOK, function="combine_masks",
        title="One (B, L, S) mask for a padded causal batch from a causal (L, S) and a padding (B, S) mask",
        reference=_combine_ref, make_cases=_combine_cases, make_hidden_cases=_combine_hidden,
        output_names=("mask",),
        misconceptions=(
            Misconception(_combine_query_axis,
                          "You put the padding mask on the query axis (padding[:, :, None] is (B, S, 1)): that "
                          "hides the rows of padded queries, not the columns of padded keys. Padding hides "
                          "keys: padding[:, None, :] is (B, 1, S).", name="query-axis"),
            Misconception(_combine_or,
                          "A key is visible only if *both* masks allow it: combine with & (and), not | (or).",
                          name="or-not-and"),
            Misconception(_combine_no_broadcast,
                          "causal & padding broadcasts (L, S) with (B, S) row by row, mixing sequence b with "
                          "query b. Give them explicit batch and query axes: causal[None] & padding[:, None, :].",
                          name="no-broadcast"),
        ),
    ),
    Exercise(
        id="3.5", notebook=NOTEBOOK, function="fixed_padded_self_attention",
        title="Find and fix the masking bug in a padded self-attention function",
        reference=_fixed_ref, make_cases=_fixed_cases, make_hidden_cases=_fixed_hidden,
        output_names=("output", "weights"),
        misconceptions=(
            Misconception(buggy_padded_self_attention,
                          "This is still the buggy output: the mask is on the query axis (the rows), so real "
                          "tokens put weight on padded keys. The keys are the last axis (the columns) of the "
                          "(B, L, L) scores: the padding mask must be (B, 1, L), not (B, L, 1) — with -1e9 or -inf.",
                          name="still-buggy"),
            Misconception(_fixed_inverted,
                          "Now the mask is on the keys but inverted: every query attends only to the padding. "
                          "masked_fill fills where its mask is True, so fill where the token is NOT real.",
                          name="inverted-mask"),
            Misconception(_fixed_query_axis_inf,
                          "-inf is fine, but the mask is still on the query axis (the rows): real.unsqueeze(-1) is "
                          "(B, L, 1), so a padded query's whole row is -inf (softmax 0/0 = NaN there) while real "
                          "queries still attend to padded keys. Padding hides keys, the columns: mask with "
                          "(B, 1, L), real[:, None, :].", name="query-axis-inf"),
            Misconception(_fixed_unmasked,
                          "Your weights ignore the padding completely: padded keys must get weight 0.",
                          name="unmasked"),
        ),
    ),
    Exercise(
        id="3.6", notebook=NOTEBOOK, function="padded_causal_attention",
        title="Stretch: attention for a right-padded causal batch of heads, from your own masks and softmax",
        reference=_pca_ref, make_cases=_pca_cases, make_hidden_cases=_pca_hidden,
        output_names=("output", "weights"),
        error_hints=(
            (r"must match the size of tensor b \(\d+\) at non-singleton dimension (1|-3)\b",
             "The (B, L, S) mask met the (B, H, L, S) scores without a head axis, so broadcasting lined its "
             "batch axis up with the heads. The mask is the same for every head: give it a head axis of size 1, "
             "mask[:, None] (B, 1, L, S).", "no-head-axis"),
        ),
        misconceptions=(
            Misconception(partial(_pca_with, head_axis=False),
                          "Your (B, L, S) mask met the (B, H, L, S) scores without a head axis, so broadcasting "
                          "read its batch axis as the heads: head h used sequence h's padding (this only runs "
                          "when B == H or B == 1). Give it a head axis: mask[:, None] is (B, 1, L, S).",
                          name="no-head-axis"),
            Misconception(partial(_pca_with, padding=False),
                          "Only the causal mask: with right padding the real tokens never see a padded key "
                          "(the padding comes after them), but the padded positions' own rows still attend to "
                          "padding. Combine both masks (causal & padding) so that no query attends to a padded "
                          "key.", name="causal-only"),
            Misconception(partial(_pca_with, causal=False),
                          "Only the padding mask: every token also sees the future. Combine it with the causal "
                          "mask (causal & padding).", name="padding-only"),
            Misconception(partial(_pca_with, padding_on_queries=True),
                          "The padding mask is on the query axis (the rows): padding hides KEYS, the last axis: "
                          "padding[:, None, :] is (B, 1, S).", name="padding-on-queries"),
            Misconception(partial(_pca_with, invert=True),
                          "Your mask is inverted: True means *may attend*, so -inf goes where the mask is False.",
                          name="inverted-mask"),
        ),
    ),
]
