"""A catalogue of realistic wrong answers, at least four per exercise: each must lose points, and its
message must name the mistake (a specific hint, not only "differs from the expected values" or a bare
PyTorch error). `python tests/test_misconceptions.py` prints the share that gets a specific hint.

Each entry is (exercise, short name, the wrong source as a learner would write it, words the message
must contain). The source defines the exercise's function; `torch`, `math`, `F` and `nn` are in scope.
"""

from __future__ import annotations

import functools
import linecache
import math
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnkit.checks import all_exercises, run_exercise
from attnkit.checks.core import PASSED

EXERCISES = all_exercises()

# A message is specific when it explains the failure: a hint (named misconception, exception or value
# pattern), or one of the core's own explanations.
SPECIFIC = ("Hint:", "NaN comes from", "changed its input", "should return", "the cache saved no work")

C = [  # (exercise, name, wrong source, words the message must contain)
    # --- 1.1 softmax
    ("1.1", "no max subtraction", """
def softmax(x):
    e = torch.exp(x)
    return e / e.sum(dim=-1, keepdim=True)""", ["subtract"]),
    ("1.1", "sum without keepdim", """
def softmax(x):
    e = torch.exp(x - x.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1)""", ["keepdim=True"]),
    ("1.1", "max returns a pair", """
def softmax(x):
    e = torch.exp(x - x.max(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)""", [".values"]),
    ("1.1", "global max", """
def softmax(x):
    e = torch.exp(x - x.max())
    return e / e.sum(dim=-1, keepdim=True)""", ["each row's own maximum"]),
    ("1.1", "normalised over the whole tensor", """
def softmax(x):
    e = torch.exp(x - x.max())
    return e / e.sum()""", ["whole tensor"]),
    ("1.1", "softmax over dim 0", """
def softmax(x):
    return torch.softmax(x, dim=0)""", ["last dimension"]),
    ("1.1", "unnormalised exp", """
def softmax(x):
    return torch.exp(x - x.amax(dim=-1, keepdim=True))""", ["sum to 1"]),
    # --- 1.2 scaled scores
    ("1.2", ".T on a batch", """
def scaled_scores(query, key, scale=None):
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    return query @ key.T * scale""", ["transpose(-2, -1)"]),
    ("1.2", "precedence d ** 1/2", """
def scaled_scores(query, key, scale=None):
    d = query.shape[-1]
    scores = query @ key.transpose(-2, -1)
    return scores / d ** 1/2 if scale is None else scores * scale""", ["precedence"]),
    ("1.2", "scale ignored", """
def scaled_scores(query, key, scale=None):
    return query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])""", ["ignored `scale`"]),
    ("1.2", "divides by the scale", """
def scaled_scores(query, key, scale=None):
    scale = scale or 1 / math.sqrt(query.shape[-1])
    return query @ key.transpose(-2, -1) / scale""", ["multiplied"]),
    ("1.2", "transpose(0, 1) on a batch", """
def scaled_scores(query, key, scale=None):
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    return torch.matmul(query, key.transpose(0, 1)) * scale""", ["transpose(-2, -1)"]),
    ("1.2", "sqrt of the number of keys", """
def scaled_scores(query, key, scale=None):
    scale = 1 / math.sqrt(key.shape[-2]) if scale is None else scale
    return query @ key.transpose(-2, -1) * scale""", ["number of keys"]),
    # --- 1.3 additive scores
    ("1.3", "no pairs (no unsqueeze)", """
def additive_scores(query, key, W_q, W_k, v_a):
    return torch.tanh(query @ W_q.T + key @ W_k.T) @ v_a""", ["dimension"]),
    ("1.3", "weight layout", """
def additive_scores(query, key, W_q, W_k, v_a):
    hidden = torch.tanh((query @ W_q).unsqueeze(-2) + (key @ W_k).unsqueeze(-3))
    return hidden @ v_a""", ["x @ W.T"]),
    ("1.3", "no tanh", """
def additive_scores(query, key, W_q, W_k, v_a):
    return ((query @ W_q.T).unsqueeze(-2) + (key @ W_k.T).unsqueeze(-3)) @ v_a""", ["tanh"]),
    ("1.3", "tanh after v_a", """
def additive_scores(query, key, W_q, W_k, v_a):
    return torch.tanh(((query @ W_q.T).unsqueeze(-2) + (key @ W_k.T).unsqueeze(-3)) @ v_a)""", ["before v_a"]),
    ("1.3", "multiplicative", """
def additive_scores(query, key, W_q, W_k, v_a):
    return (query @ W_q.T) @ (key @ W_k.T).transpose(-2, -1)""", ["multiplicative"]),
    # --- 1.4 scaled dot-product attention
    ("1.4", "scores returned as weights", """
def scaled_dot_product_attention(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, -1e9)
    return torch.softmax(scores, dim=-1) @ value, scores""", ["scores before the softmax"]),
    ("1.4", "fill with 0", """
def scaled_dot_product_attention(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, 0.0)
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights""", ["-inf", "exactly 0"]),
    ("1.4", "inverted mask", """
def scaled_dot_product_attention(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(attn_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights""", ["inverted"]),
    ("1.4", "precedence d ** 1/2", """
def scaled_dot_product_attention(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / query.shape[-1] ** 1/2
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights""", ["precedence"]),
    ("1.4", "exp without normalising", """
def scaled_dot_product_attention(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = torch.exp(scores)
    return weights @ value, weights""", ["sum to 1"]),
    ("1.4", "divided by d_k", """
def scaled_dot_product_attention(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / query.shape[-1]
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights""", ["divided the scores by d_k", "square root"]),
    ("1.4", "outputs returned in the wrong order", """
def scaled_dot_product_attention(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights, weights @ value""", ["return the output first"]),
    ("1.4", "mask after the softmax", """
def scaled_dot_product_attention(query, key, value, attn_mask=None):
    weights = torch.softmax(query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1]), dim=-1)
    if attn_mask is not None:
        weights = weights * attn_mask
    return weights @ value, weights""", ["before"]),
    # --- 1.5 local attention
    ("1.5", "strict window", """
def local_attention(query, key, value, centers, D):
    distance = torch.arange(key.shape[-2]) - centers.unsqueeze(-1)
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    weights = torch.softmax(scores.masked_fill(distance.abs() >= D, float("-inf")), dim=-1)
    weights = weights * torch.exp(-distance ** 2 / (2 * (D / 2) ** 2))
    return weights @ value, weights""", ["both ends"]),
    ("1.5", "sigma = D", """
def local_attention(query, key, value, centers, D):
    distance = torch.arange(key.shape[-2]) - centers.unsqueeze(-1)
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    weights = torch.softmax(scores.masked_fill(distance.abs() > D, float("-inf")), dim=-1)
    weights = weights * torch.exp(-distance ** 2 / (2 * D ** 2))
    return weights @ value, weights""", ["sigma = D / 2"]),
    ("1.5", "renormalised", """
def local_attention(query, key, value, centers, D):
    distance = torch.arange(key.shape[-2]) - centers.unsqueeze(-1)
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    weights = torch.softmax(scores.masked_fill(distance.abs() > D, float("-inf")), dim=-1)
    weights = weights * torch.exp(-distance ** 2 / (2 * (D / 2) ** 2))
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights @ value, weights""", ["renormalise"]),
    ("1.5", "no window", """
def local_attention(query, key, value, centers, D):
    distance = torch.arange(key.shape[-2]) - centers.unsqueeze(-1)
    weights = torch.softmax(query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1]), dim=-1)
    weights = weights * torch.exp(-distance ** 2 / (2 * (D / 2) ** 2))
    return weights @ value, weights""", ["exactly 0"]),
    ("1.5", "Gaussian on the scores", """
def local_attention(query, key, value, centers, D):
    distance = torch.arange(key.shape[-2]) - centers.unsqueeze(-1)
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    scores = scores * torch.exp(-distance ** 2 / (2 * (D / 2) ** 2))
    weights = torch.softmax(scores.masked_fill(distance.abs() > D, float("-inf")), dim=-1)
    return weights @ value, weights""", ["Gaussian to the weights"]),
    # --- 1.6 additive attention
    ("1.6", "scaled like dot products", """
def additive_attention(query, key, value, W_q, W_k, v_a, attn_mask=None):
    hidden = torch.tanh((query @ W_q.T).unsqueeze(-2) + (key @ W_k.T).unsqueeze(-3))
    scores = hidden @ v_a / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights""", ["not scaled"]),
    ("1.6", "fill with 0", """
def additive_attention(query, key, value, W_q, W_k, v_a, attn_mask=None):
    hidden = torch.tanh((query @ W_q.T).unsqueeze(-2) + (key @ W_k.T).unsqueeze(-3))
    scores = hidden @ v_a
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, 0)
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights""", ["-inf"]),
    ("1.6", "inverted mask", """
def additive_attention(query, key, value, W_q, W_k, v_a, attn_mask=None):
    hidden = torch.tanh((query @ W_q.T).unsqueeze(-2) + (key @ W_k.T).unsqueeze(-3))
    scores = hidden @ v_a
    if attn_mask is not None:
        scores = scores.masked_fill(attn_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights""", ["inverted"]),
    ("1.6", "sum of the keys", """
def additive_attention(query, key, value, W_q, W_k, v_a, attn_mask=None):
    scores = torch.tanh((query @ W_q.T).unsqueeze(-2) + (key @ W_k.T).unsqueeze(-3)) @ v_a
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ key, weights""", ["VALUES"]),
    ("1.6", "mask applied when there is none", """
def additive_attention(query, key, value, W_q, W_k, v_a, attn_mask=None):
    scores = torch.tanh((query @ W_q.T).unsqueeze(-2) + (key @ W_k.T).unsqueeze(-3)) @ v_a
    weights = torch.softmax(scores.masked_fill(~attn_mask, float("-inf")), dim=-1)
    return weights @ value, weights""", ["is not None"]),
    ("1.6", "no softmax", """
def additive_attention(query, key, value, W_q, W_k, v_a, attn_mask=None):
    scores = torch.tanh((query @ W_q.T).unsqueeze(-2) + (key @ W_k.T).unsqueeze(-3)) @ v_a
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, 0.0)
    return scores @ value, scores""", ["softmax"]),
    # --- 2.1 projections
    ("2.1", "x @ W", """
def qkv_projections(x, W_q, W_k, W_v):
    return x @ W_q, x @ W_k, x @ W_v""", ["x @ W.T"]),
    ("2.1", "W @ x", """
def qkv_projections(x, W_q, W_k, W_v):
    return W_q @ x, W_k @ x, W_v @ x""", ["matrix product"]),
    ("2.1", "stacked into one tensor", """
def qkv_projections(x, W_q, W_k, W_v):
    return torch.stack([x @ W_q.T, x @ W_k.T, x @ W_v.T])""", ["tuple"]),
    ("2.1", "k from W_q", """
def qkv_projections(x, W_q, W_k, W_v):
    return x @ W_q.T, x @ W_q.T, x @ W_v.T""", ["own learned matrix"]),
    ("2.1", "F.linear with a transposed weight", """
def qkv_projections(x, W_q, W_k, W_v):
    return F.linear(x, W_q.T), F.linear(x, W_k.T), F.linear(x, W_v.T)""", ["nn.Linear"]),
    # --- 2.2 self-attention
    ("2.2", "scale by sqrt(E)", """
def self_attention(x, W_q, W_k, W_v):
    q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(x.shape[-1]), dim=-1)
    return weights @ v, weights""", ["sqrt(E)"]),
    ("2.2", "k.T on a batch", """
def self_attention(x, W_q, W_k, W_v):
    q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T
    weights = torch.softmax(q @ k.T / math.sqrt(k.shape[-1]), dim=-1)
    return weights @ v, weights""", [".transpose(-2, -1)"]),
    ("2.2", "softmax over the queries", """
def self_attention(x, W_q, W_k, W_v):
    q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1]), dim=-2)
    return weights @ v, weights""", ["last dimension"]),
    ("2.2", "values not projected", """
def self_attention(x, W_q, W_k, W_v):
    q, k = x @ W_q.T, x @ W_k.T
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1]), dim=-1)
    return weights @ x, weights""", ["values"]),
    ("2.2", "unscaled", """
def self_attention(x, W_q, W_k, W_v):
    q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T
    weights = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
    return weights @ v, weights""", ["sqrt(d_k)"]),
    # --- 2.3 Thinking Machines
    ("2.3", "sqrt(E)", """
def thinking_machines(x1, x2, W_q, W_k, W_v):
    q1, k1, k2, v1, v2 = W_q @ x1, W_k @ x1, W_k @ x2, W_v @ x1, W_v @ x2
    scores = torch.stack([q1 @ k1, q1 @ k2])
    scaled = scores / math.sqrt(x1.shape[0])
    w = torch.softmax(scaled, dim=0)
    return scores, scaled, w, w[0] * v1 + w[1] * v2""", ["sqrt(E)"]),
    ("2.3", "cat of 0-d tensors", """
def thinking_machines(x1, x2, W_q, W_k, W_v):
    q1, k1, k2, v1, v2 = W_q @ x1, W_k @ x1, W_k @ x2, W_v @ x1, W_v @ x2
    scores = torch.cat([q1 @ k1, q1 @ k2])
    scaled = scores / math.sqrt(k1.shape[0])
    w = torch.softmax(scaled, dim=0)
    return scores, scaled, w, w[0] * v1 + w[1] * v2""", ["torch.stack"]),
    ("2.3", "softmax of the raw scores", """
def thinking_machines(x1, x2, W_q, W_k, W_v):
    q1, k1, k2, v1, v2 = W_q @ x1, W_k @ x1, W_k @ x2, W_v @ x1, W_v @ x2
    scores = torch.stack([q1 @ k1, q1 @ k2])
    w = torch.softmax(scores, dim=0)
    return scores, scores / math.sqrt(k1.shape[0]), w, w[0] * v1 + w[1] * v2""", ["scaled scores"]),
    ("2.3", "z1 from the inputs", """
def thinking_machines(x1, x2, W_q, W_k, W_v):
    q1, k1, k2 = W_q @ x1, W_k @ x1, W_k @ x2
    scores = torch.stack([q1 @ k1, q1 @ k2])
    scaled = scores / math.sqrt(k1.shape[0])
    w = torch.softmax(scaled, dim=0)
    return scores, scaled, w, w[0] * x1 + w[1] * x2""", ["value vectors"]),
    ("2.3", "divide by d_k", """
def thinking_machines(x1, x2, W_q, W_k, W_v):
    q1, k1, k2, v1, v2 = W_q @ x1, W_k @ x1, W_k @ x2, W_v @ x1, W_v @ x2
    scores = torch.stack([q1 @ k1, q1 @ k2])
    scaled = scores / k1.shape[0]
    w = torch.softmax(scaled, dim=0)
    return scores, scaled, w, w[0] * v1 + w[1] * v2""", ["square root"]),
    # --- 2.4 cross-attention
    ("2.4", "roles swapped", """
def cross_attention(x, memory, W_q, W_k, W_v):
    q, k, v = memory @ W_q.T, x @ W_k.T, x @ W_v.T
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v, weights""", ["swapped"]),
    ("2.4", "values from x", """
def cross_attention(x, memory, W_q, W_k, W_v):
    q, k, v = x @ W_q.T, memory @ W_k.T, x @ W_v.T
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v, weights""", ["values project memory"]),
    ("2.4", "self-attention on x", """
def cross_attention(x, memory, W_q, W_k, W_v):
    q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v, weights""", ["self-attention"]),
    ("2.4", "scale by sqrt(E)", """
def cross_attention(x, memory, W_q, W_k, W_v):
    q, k, v = x @ W_q.T, memory @ W_k.T, memory @ W_v.T
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(x.shape[-1]), dim=-1)
    return weights @ v, weights""", ["sqrt(E)"]),
    ("2.4", "weights unnormalised", """
def cross_attention(x, memory, W_q, W_k, W_v):
    q, k, v = x @ W_q.T, memory @ W_k.T, memory @ W_v.T
    weights = torch.exp(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]))
    return weights @ v, weights""", ["sum to 1"]),
    # --- 3.1 causal mask
    ("3.1", "top-left", """
def causal_mask(L, S):
    return torch.ones(L, S, dtype=torch.bool).tril()""", ["top-left"]),
    ("3.1", "inverted", """
def causal_mask(L, S):
    return torch.ones(L, S, dtype=torch.bool).triu(diagonal=S - L + 1)""", ["inverted"]),
    ("3.1", "float mask", """
def causal_mask(L, S):
    return torch.ones(L, S).tril(diagonal=S - L)""", ["bool"]),
    ("3.1", "diagonal sign", """
def causal_mask(L, S):
    return torch.ones(L, S, dtype=torch.bool).tril(diagonal=L - S)""", ["wrong sign"]),
    ("3.1", "no self", """
def causal_mask(L, S):
    return torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L - 1)""", ["attend to itself"]),
    # --- 3.2 padding mask
    ("3.2", "True at padding", """
def padding_mask(lengths, S):
    return torch.arange(S)[None, :] >= lengths[:, None]""", ["key_padding_mask"]),
    ("3.2", "off by one", """
def padding_mask(lengths, S):
    return torch.arange(S)[None, :] <= lengths[:, None]""", ["Off by one"]),
    ("3.2", "no axes", """
def padding_mask(lengths, S):
    return torch.arange(S) < lengths""", ["axis"]),
    ("3.2", "longest sequence", """
def padding_mask(lengths, S):
    return torch.arange(int(lengths.max()))[None, :] < lengths[:, None]""", ["S columns"]),
    ("3.2", "python lists", """
def padding_mask(lengths, S):
    return [[j < int(n) for j in range(S)] for n in lengths]""", ["should return"]),
    # --- 3.3 masked softmax
    ("3.3", "NaN rows", """
def masked_softmax(scores, mask):
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)""", ["NaN"]),
    ("3.3", "sentinel -1e9", """
def masked_softmax(scores, mask):
    return torch.softmax(scores.masked_fill(~mask, -1e9), dim=-1)""", ["uniform"]),
    ("3.3", "fill with 0", """
def masked_softmax(scores, mask):
    return torch.softmax(scores.masked_fill(~mask, 0.0), dim=-1)""", ["-inf"]),
    ("3.3", "inverted mask inside", """
def masked_softmax(scores, mask):
    weights = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
    return torch.nan_to_num(weights, 0.0)""", ["inverted"]),
    ("3.3", "in place", """
def masked_softmax(scores, mask):
    scores[~mask.expand_as(scores)] = float("-inf")
    return torch.softmax(scores, dim=-1).nan_to_num(0.0)""", ["in place"]),
    ("3.3", "NaN gradient (additive mask + where)", """
def masked_softmax(scores, mask):
    w = torch.softmax(scores + torch.zeros(mask.shape).masked_fill(~mask, float("-inf")), dim=-1)
    return torch.where(mask.any(dim=-1, keepdim=True), w, torch.zeros_like(w))""", ["gradient"]),
    ("3.3", "mask after softmax", """
def masked_softmax(scores, mask):
    return torch.softmax(scores, dim=-1) * mask""", ["before"]),
    # --- 3.4 combine masks
    ("3.4", "padding on the query axis", """
def combine_masks(causal, padding):
    return causal[None] & padding[:, :, None]""", ["query axis"]),
    ("3.4", "or", """
def combine_masks(causal, padding):
    return causal[None] | padding[:, None, :]""", ["both"]),
    ("3.4", "no axes", """
def combine_masks(causal, padding):
    return causal & padding""", ["explicit batch"]),
    ("3.4", "float product", """
def combine_masks(causal, padding):
    return causal[None].float() * padding[:, None].float()""", ["bool"]),
    # --- 3.5 find and fix
    ("3.5", "unchanged", """
def fixed_padded_self_attention(x, W_q, W_k, W_v, lengths):
    B, L, E = x.shape
    q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T
    scores = q @ k.transpose(1, 2) / math.sqrt(k.shape[-1])
    real = torch.arange(L)[None, :] < lengths[:, None]
    weights = scores.masked_fill(real.unsqueeze(-1) == 0, -1e9).softmax(dim=-1)
    return weights @ v, weights""", ["still the buggy"]),
    ("3.5", "keys, but inverted", """
def fixed_padded_self_attention(x, W_q, W_k, W_v, lengths):
    B, L, E = x.shape
    q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T
    scores = q @ k.transpose(1, 2) / math.sqrt(k.shape[-1])
    real = torch.arange(L)[None, :] < lengths[:, None]
    weights = scores.masked_fill(real.unsqueeze(1), -1e9).softmax(dim=-1)
    return weights @ v, weights""", ["inverted"]),
    ("3.5", "-inf on the rows", """
def fixed_padded_self_attention(x, W_q, W_k, W_v, lengths):
    B, L, E = x.shape
    q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T
    scores = q @ k.transpose(1, 2) / math.sqrt(k.shape[-1])
    real = torch.arange(L)[None, :] < lengths[:, None]
    weights = scores.masked_fill(~real.unsqueeze(-1), float("-inf")).softmax(dim=-1)
    return weights @ v, weights""", ["query axis"]),
    ("3.5", "keys filled with 0", """
def fixed_padded_self_attention(x, W_q, W_k, W_v, lengths):
    B, L, E = x.shape
    q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T
    scores = q @ k.transpose(1, 2) / math.sqrt(k.shape[-1])
    real = torch.arange(L)[None, :] < lengths[:, None]
    weights = scores.masked_fill(~real[:, None, :], 0.0).softmax(dim=-1)
    return weights @ v, weights""", ["exactly 0"]),
    ("3.5", "mask removed", """
def fixed_padded_self_attention(x, W_q, W_k, W_v, lengths):
    q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T
    weights = (q @ k.transpose(1, 2) / math.sqrt(k.shape[-1])).softmax(dim=-1)
    return weights @ v, weights""", ["padded keys must get weight 0"]),
    # --- 3.6 padded causal attention
    ("3.6", "no head axis", """
def padded_causal_attention(query, key, value, lengths):
    L = query.shape[-2]
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    mask = causal[None] & (torch.arange(L)[None, :] < lengths[:, None])[:, None, :]
    scores = (query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])).masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights""", ["head axis"]),
    ("3.6", "causal only", """
def padded_causal_attention(query, key, value, lengths):
    L = query.shape[-2]
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    scores = (query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])).masked_fill(~causal, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights""", ["causal & padding"]),
    ("3.6", "padding only", """
def padded_causal_attention(query, key, value, lengths):
    L = query.shape[-2]
    real = torch.arange(L)[None, :] < lengths[:, None]
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    weights = torch.softmax(scores.masked_fill(~real[:, None, None, :], float("-inf")), dim=-1)
    return weights @ value, weights""", ["future"]),
    ("3.6", "fill with 0", """
def padded_causal_attention(query, key, value, lengths):
    L = query.shape[-2]
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    mask = (causal[None] & (torch.arange(L)[None, :] < lengths[:, None])[:, None, :])[:, None]
    scores = (query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])).masked_fill(~mask, 0.0)
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights""", ["-inf"]),
    ("3.6", "inverted", """
def padded_causal_attention(query, key, value, lengths):
    L = query.shape[-2]
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    mask = (causal[None] & (torch.arange(L)[None, :] < lengths[:, None])[:, None, :])[:, None]
    scores = (query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])).masked_fill(mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return weights @ value, weights""", ["inverted"]),
    # --- 4.1 split heads
    ("4.1", "view straight to (B, H, L, D)", """
def split_heads(x, num_heads):
    B, L, E = x.shape
    return x.view(B, num_heads, L, E // num_heads)""", ["THEN"]),
    ("4.1", "no transpose", """
def split_heads(x, num_heads):
    B, L, E = x.shape
    return x.view(B, L, num_heads, E // num_heads)""", [".transpose(1, 2)"]),
    ("4.1", "every H-th feature", """
def split_heads(x, num_heads):
    B, L, E = x.shape
    return x.view(B, L, E // num_heads, num_heads).permute(0, 3, 1, 2)""", ["contiguous slice"]),
    ("4.1", ".T on a 4-D tensor", """
def split_heads(x, num_heads):
    B, L, E = x.shape
    return x.reshape(B, L, num_heads, E // num_heads).T""", ["another order"]),
    ("4.1", "permute to (B, H, D, L)", """
def split_heads(x, num_heads):
    B, L, E = x.shape
    return x.reshape(B, L, num_heads, E // num_heads).permute(0, 2, 3, 1)""", ["transposed"]),
    # --- 4.2 merge heads
    ("4.2", "view without transpose", """
def merge_heads(x):
    B, H, L, D = x.shape
    return x.reshape(B, L, H * D)""", ["first", "transpose"]),
    ("4.2", "view after transpose", """
def merge_heads(x):
    B, H, L, D = x.shape
    return x.transpose(1, 2).view(B, L, H * D)""", [".reshape"]),
    ("4.2", "stack of heads on the last axis", """
def merge_heads(x):
    B, H, L, D = x.shape
    return torch.stack([x[:, h] for h in range(H)], dim=-1).reshape(B, L, H * D)""", ["(H, D)"]),
    ("4.2", "mean of heads", """
def merge_heads(x):
    return x.mean(dim=1)""", ["averaged"]),
    ("4.2", "cat along the tokens", """
def merge_heads(x):
    return torch.cat(list(x.unbind(dim=1)), dim=1)""", ["another shape"]),
    # --- 4.3 multi-head attention
    ("4.3", "scale by sqrt(E)", """
def multi_head_attention(query, key, value, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, attn_mask=None,
                         batch_first=True):
    if not batch_first:
        query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    B, L, E = query.shape
    S, H, D = key.shape[1], num_heads, E // num_heads
    q = (query @ W_q.T + b_q).reshape(B, L, H, D).transpose(1, 2)
    k = (key @ W_k.T + b_k).reshape(B, S, H, D).transpose(1, 2)
    v = (value @ W_v.T + b_v).reshape(B, S, H, D).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(E)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    out = (w @ v).transpose(1, 2).reshape(B, L, E) @ W_o.T + b_o
    return (out if batch_first else out.transpose(0, 1)), w.mean(dim=1)""", ["ITS width"]),
    ("4.3", "heads merged in the wrong order", """
def multi_head_attention(query, key, value, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, attn_mask=None,
                         batch_first=True):
    B, L, E = query.shape
    S, H, D = key.shape[1], num_heads, E // num_heads
    q = (query @ W_q.T + b_q).reshape(B, L, H, D).transpose(1, 2)
    k = (key @ W_k.T + b_k).reshape(B, S, H, D).transpose(1, 2)
    v = (value @ W_v.T + b_v).reshape(B, S, H, D).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    return (w @ v).reshape(B, L, E) @ W_o.T + b_o, w.mean(dim=1)""", ["BEFORE reshaping"]),
    ("4.3", "weights not averaged", """
def multi_head_attention(query, key, value, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, attn_mask=None,
                         batch_first=True):
    B, L, E = query.shape
    S, H, D = key.shape[1], num_heads, E // num_heads
    q = (query @ W_q.T + b_q).reshape(B, L, H, D).transpose(1, 2)
    k = (key @ W_k.T + b_k).reshape(B, S, H, D).transpose(1, 2)
    v = (value @ W_v.T + b_v).reshape(B, S, H, D).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    return (w @ v).transpose(1, 2).reshape(B, L, E) @ W_o.T + b_o, w""", ["averaged over the heads"]),
    ("4.3", "torch's mask convention", """
def multi_head_attention(query, key, value, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, attn_mask=None,
                         batch_first=True):
    B, L, E = query.shape
    S, H, D = key.shape[1], num_heads, E // num_heads
    q = (query @ W_q.T + b_q).reshape(B, L, H, D).transpose(1, 2)
    k = (key @ W_k.T + b_k).reshape(B, S, H, D).transpose(1, 2)
    v = (value @ W_v.T + b_v).reshape(B, S, H, D).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)
    if attn_mask is not None:
        scores = scores.masked_fill(attn_mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    return (w @ v).transpose(1, 2).reshape(B, L, E) @ W_o.T + b_o, w.mean(dim=1)""", ["inverted"]),
    ("4.3", "x @ W", """
def multi_head_attention(query, key, value, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, attn_mask=None,
                         batch_first=True):
    B, L, E = query.shape
    S, H, D = key.shape[1], num_heads, E // num_heads
    q = (query @ W_q + b_q).reshape(B, L, H, D).transpose(1, 2)
    k = (key @ W_k + b_k).reshape(B, S, H, D).transpose(1, 2)
    v = (value @ W_v + b_v).reshape(B, S, H, D).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    return (w @ v).transpose(1, 2).reshape(B, L, E) @ W_o + b_o, w.mean(dim=1)""", ["x @ W.T"]),
    ("4.3", "batch_first ignored", """
def multi_head_attention(query, key, value, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, attn_mask=None,
                         batch_first=True):
    B, L, E = query.shape
    S, H, D = key.shape[1], num_heads, E // num_heads
    q = (query @ W_q.T + b_q).reshape(B, L, H, D).transpose(1, 2)
    k = (key @ W_k.T + b_k).reshape(B, S, H, D).transpose(1, 2)
    v = (value @ W_v.T + b_v).reshape(B, S, H, D).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    return (w @ v).transpose(1, 2).reshape(B, L, E) @ W_o.T + b_o, w.mean(dim=1)""", ["(L, B, E)"]),
    ("4.3", "output left in (B, L, E)", """
def multi_head_attention(query, key, value, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, attn_mask=None,
                         batch_first=True):
    if not batch_first:
        query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    B, L, E = query.shape
    S, H, D = key.shape[1], num_heads, E // num_heads
    q = (query @ W_q.T + b_q).reshape(B, L, H, D).transpose(1, 2)
    k = (key @ W_k.T + b_k).reshape(B, S, H, D).transpose(1, 2)
    v = (value @ W_v.T + b_v).reshape(B, S, H, D).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    return (w @ v).transpose(1, 2).reshape(B, L, E) @ W_o.T + b_o, w.mean(dim=1)""", ["dimensions 0 and 1"]),
    # --- 4.4 weights from torch
    ("4.4", "reshape to (E, 3, E)", """
def weights_from_torch(mha):
    E = mha.embed_dim
    W = mha.in_proj_weight.reshape(E, 3, E)
    b = mha.in_proj_bias.reshape(E, 3)
    return W[:, 0], W[:, 1], W[:, 2], mha.out_proj.weight, b[:, 0], b[:, 1], b[:, 2], mha.out_proj.bias""",
     ["stacks the three"]),
    ("4.4", "transposed", """
def weights_from_torch(mha):
    W_q, W_k, W_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
    return W_q.T, W_k.T, W_v.T, mha.out_proj.weight.T, b_q, b_k, b_v, mha.out_proj.bias""", ["without .T"]),
    ("4.4", "kdim/vdim ignored", """
def weights_from_torch(mha):
    W_q, W_k, W_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
    return W_q, W_k, W_v, mha.out_proj.weight, b_q, b_k, b_v, mha.out_proj.bias""", ["q_proj_weight"]),
    ("4.4", "k, q, v order", """
def weights_from_torch(mha):
    E = mha.embed_dim
    if mha.in_proj_weight is None:
        W_k, W_q, W_v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
    else:
        W_k, W_q, W_v = mha.in_proj_weight.chunk(3)
    b_k, b_q, b_v = mha.in_proj_bias.chunk(3)
    return W_q, W_k, W_v, mha.out_proj.weight, b_q, b_k, b_v, mha.out_proj.bias""", ["q, k, v"]),
    # --- 4.5 find and fix (a class)
    ("4.5", "only the scale fixed", """
class FixedMultiHeadAttention(nn.Module):
    def __init__(self, embed_dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj, self.k_proj = nn.Linear(embed_dim, embed_dim), nn.Linear(embed_dim, embed_dim)
        self.v_proj, self.out_proj = nn.Linear(embed_dim, embed_dim), nn.Linear(embed_dim, embed_dim)

    def forward(self, x, attn_mask=None):
        B, L, E = x.shape
        H, D = self.num_heads, E // self.num_heads
        q, k, v = (p(x).view(B, L, H, D).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        scores = q @ k.transpose(-2, -1) / math.sqrt(D)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask[:, None], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return self.out_proj((weights @ v).view(B, L, E)), weights.mean(dim=1)""", ["one bug is left", "view"]),
    ("4.5", "only the merge fixed", """
class FixedMultiHeadAttention(nn.Module):
    def __init__(self, embed_dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj, self.k_proj = nn.Linear(embed_dim, embed_dim), nn.Linear(embed_dim, embed_dim)
        self.v_proj, self.out_proj = nn.Linear(embed_dim, embed_dim), nn.Linear(embed_dim, embed_dim)

    def forward(self, x, attn_mask=None):
        B, L, E = x.shape
        H, D = self.num_heads, E // self.num_heads
        q, k, v = (p(x).view(B, L, H, D).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        scores = q @ k.transpose(-2, -1) / math.sqrt(E)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask[:, None], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(B, L, E)
        return self.out_proj(out), weights.mean(dim=1)""", ["one bug is left", "D = E / num_heads"]),
    ("4.5", "view after the transpose", """
class FixedMultiHeadAttention(nn.Module):
    def __init__(self, embed_dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj, self.k_proj = nn.Linear(embed_dim, embed_dim), nn.Linear(embed_dim, embed_dim)
        self.v_proj, self.out_proj = nn.Linear(embed_dim, embed_dim), nn.Linear(embed_dim, embed_dim)

    def forward(self, x, attn_mask=None):
        B, L, E = x.shape
        H, D = self.num_heads, E // self.num_heads
        q, k, v = (p(x).view(B, L, H, D).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        scores = q @ k.transpose(-2, -1) / math.sqrt(D)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask[:, None], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return self.out_proj((weights @ v).transpose(1, 2).view(B, L, E)), weights.mean(dim=1)""", [".reshape"]),
    ("4.5", "torch's mask convention", """
class FixedMultiHeadAttention(nn.Module):
    def __init__(self, embed_dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj, self.k_proj = nn.Linear(embed_dim, embed_dim), nn.Linear(embed_dim, embed_dim)
        self.v_proj, self.out_proj = nn.Linear(embed_dim, embed_dim), nn.Linear(embed_dim, embed_dim)

    def forward(self, x, attn_mask=None):
        B, L, E = x.shape
        H, D = self.num_heads, E // self.num_heads
        q, k, v = (p(x).view(B, L, H, D).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        scores = q @ k.transpose(-2, -1) / math.sqrt(D)
        if attn_mask is not None:
            scores = scores.masked_fill(attn_mask[:, None], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return self.out_proj((weights @ v).transpose(1, 2).reshape(B, L, E)), weights.mean(dim=1)""", ["inverted"]),
    ("4.5", "layers renamed", """
class FixedMultiHeadAttention(nn.Module):
    def __init__(self, embed_dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.out = nn.Linear(embed_dim, embed_dim)

    def forward(self, x, attn_mask=None):
        return x, x""", ["q_proj"]),
    # --- 4.6 remove one head
    ("4.6", "every H-th feature", """
def ablate_head(x, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, head):
    B, L, E = x.shape
    H, D = num_heads, E // num_heads
    q, k, v = ((x @ W.T + b).view(B, L, H, D).transpose(1, 2) for W, b in ((W_q, b_q), (W_k, b_k), (W_v, b_v)))
    merged = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, E)
    merged[..., head::H] = 0
    return merged @ W_o.T + b_o""", ["side by side"]),
    ("4.6", "queries zeroed", """
def ablate_head(x, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, head):
    B, L, E = x.shape
    H, D = num_heads, E // num_heads
    q, k, v = ((x @ W.T + b).view(B, L, H, D).transpose(1, 2) for W, b in ((W_q, b_q), (W_k, b_k), (W_v, b_v)))
    q = q.clone()
    q[:, head] = 0
    merged = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, E)
    return merged @ W_o.T + b_o""", ["uniform"]),
    ("4.6", "zeroed after W_O", """
def ablate_head(x, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, head):
    B, L, E = x.shape
    H, D = num_heads, E // num_heads
    q, k, v = ((x @ W.T + b).view(B, L, H, D).transpose(1, 2) for W, b in ((W_q, b_q), (W_k, b_k), (W_v, b_v)))
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, E) @ W_o.T + b_o
    out[..., head * D:(head + 1) * D] = 0
    return out""", ["before the output projection"]),
    ("4.6", "bias dropped too", """
def ablate_head(x, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, head):
    B, L, E = x.shape
    H, D = num_heads, E // num_heads
    q, k, v = ((x @ W.T + b).view(B, L, H, D).transpose(1, 2) for W, b in ((W_q, b_q), (W_k, b_k), (W_v, b_v)))
    heads = F.scaled_dot_product_attention(q, k, v)
    heads[:, head] = 0
    return heads.transpose(1, 2).reshape(B, L, E) @ W_o.T""", ["b_o"]),
    ("4.6", "wrong rows of W_O", """
def ablate_head(x, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, head):
    B, L, E = x.shape
    H, D = num_heads, E // num_heads
    q, k, v = ((x @ W.T + b).view(B, L, H, D).transpose(1, 2) for W, b in ((W_q, b_q), (W_k, b_k), (W_v, b_v)))
    merged = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, E)
    W = W_o.clone()
    W[head * D:(head + 1) * D] = 0
    return merged @ W.T + b_o""", ["COLUMNS"]),
    ("4.6", "merge without transpose", """
def ablate_head(x, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, head):
    B, L, E = x.shape
    H, D = num_heads, E // num_heads
    q, k, v = ((x @ W.T + b).view(B, L, H, D).transpose(1, 2) for W, b in ((W_q, b_q), (W_k, b_k), (W_v, b_v)))
    heads = F.scaled_dot_product_attention(q, k, v)
    heads[:, head] = 0
    return heads.reshape(B, L, E) @ W_o.T + b_o""", ["BEFORE reshaping"]),
    # --- 5.1 cache update
    ("5.1", "stack for cat", """
def cache_update(k_cache, v_cache, k_new, v_new):
    return torch.stack([k_cache, k_new], dim=2), torch.stack([v_cache, v_new], dim=2)""", ["torch.cat"]),
    ("5.1", "cat on the heads", """
def cache_update(k_cache, v_cache, k_new, v_new):
    return torch.cat([k_cache, k_new], dim=1), torch.cat([v_cache, v_new], dim=1)""", ["heads"]),
    ("5.1", "cat on the features", """
def cache_update(k_cache, v_cache, k_new, v_new):
    return torch.cat([k_cache, k_new], dim=-1), torch.cat([v_cache, v_new], dim=-1)""", ["features"]),
    ("5.1", "new first", """
def cache_update(k_cache, v_cache, k_new, v_new):
    return torch.cat([k_new, k_cache], dim=2), torch.cat([v_new, v_cache], dim=2)""", ["cached keys first"]),
    ("5.1", "in place into the cache", """
def cache_update(k_cache, v_cache, k_new, v_new):
    k_cache[:, :, -k_new.shape[2]:] = k_new
    return torch.cat([k_cache, k_new], dim=2), torch.cat([v_cache, v_new], dim=2)""", ["in place"]),
    # --- 5.2 cached attention
    ("5.2", "is_causal", """
def cached_attention(q_new, k_all, v_all):
    return F.scaled_dot_product_attention(q_new, k_all, v_all, is_causal=True)""", ["TOP-LEFT"]),
    ("5.2", "float mask", """
def cached_attention(q_new, k_all, v_all):
    L, S = q_new.shape[-2], k_all.shape[-2]
    return F.scaled_dot_product_attention(q_new, k_all, v_all, attn_mask=torch.ones(L, S).tril(S - L))""",
     ["ADDS"]),
    ("5.2", "no mask", """
def cached_attention(q_new, k_all, v_all):
    return F.scaled_dot_product_attention(q_new, k_all, v_all)""", ["Without a mask"]),
    ("5.2", "diagonal sign", """
def cached_attention(q_new, k_all, v_all):
    L, S = q_new.shape[-2], k_all.shape[-2]
    mask = torch.ones(L, S, dtype=torch.bool).tril(diagonal=L - S)
    return F.scaled_dot_product_attention(q_new, k_all, v_all, attn_mask=mask)""", ["may see no key"]),
    ("5.2", "mask built (S, L)", """
def cached_attention(q_new, k_all, v_all):
    L, S = q_new.shape[-2], k_all.shape[-2]
    mask = torch.ones(S, L, dtype=torch.bool).tril(diagonal=S - L)
    return F.scaled_dot_product_attention(q_new, k_all, v_all, attn_mask=mask)""", ["(L, S)"]),
    # --- 5.3 greedy decoding
    ("5.3", "cache keeps the previous prompt", """
def greedy_decode(model, cache, idx, max_new_tokens):
    tokens = idx
    with torch.no_grad():
        logits = model(idx, cache, last_only=True)
        for _ in range(max_new_tokens):
            nxt = logits[:, -1].argmax(dim=-1, keepdim=True)
            tokens = torch.cat([tokens, nxt], dim=1)
            logits = model(nxt, cache, last_only=True)
    return tokens""", ["cache.reset()"]),
    ("5.3", "prefill bypasses the cache", """
def greedy_decode(model, cache, idx, max_new_tokens):
    cache.reset()
    tokens = idx
    with torch.no_grad():
        logits = model(idx)
        for _ in range(max_new_tokens):
            nxt = logits[:, -1].argmax(dim=-1, keepdim=True)
            tokens = torch.cat([tokens, nxt], dim=1)
            logits = model(nxt, cache, last_only=True)
    return tokens""", ["WITHOUT the cache"]),
    ("5.3", "no cache at all", """
def greedy_decode(model, cache, idx, max_new_tokens):
    tokens = idx
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = model(tokens)[:, -1].argmax(dim=-1, keepdim=True)
            tokens = torch.cat([tokens, nxt], dim=1)
    return tokens""", ["saved no work"]),
    ("5.3", "whole sequence into the cache", """
def greedy_decode(model, cache, idx, max_new_tokens):
    cache.reset()
    tokens = idx
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = model(tokens, cache, last_only=True)[:, -1].argmax(dim=-1, keepdim=True)
            tokens = torch.cat([tokens, nxt], dim=1)
    return tokens""", ["not seen"]),
    ("5.3", "last prompt token fed twice", """
def greedy_decode(model, cache, idx, max_new_tokens):
    cache.reset()
    tokens = idx
    with torch.no_grad():
        model(idx, cache)
        last = idx[:, -1:]
        for _ in range(max_new_tokens):
            last = model(last, cache, last_only=True)[:, -1].argmax(dim=-1, keepdim=True)
            tokens = torch.cat([tokens, last], dim=1)
    return tokens""", ["off by one"]),
    # --- 5.4 grouped-query attention
    ("5.4", "repeat instead of repeat_interleave", """
def grouped_query_attention(query, key, value, attn_mask=None):
    g = query.shape[1] // key.shape[1]
    return F.scaled_dot_product_attention(query, key.repeat(1, g, 1, 1), value.repeat(1, g, 1, 1),
                                          attn_mask=attn_mask)""", ["repeat_interleave"]),
    ("5.4", "queries regrouped (G, H_kv)", """
def grouped_query_attention(query, key, value, attn_mask=None):
    B, H, L, D = query.shape
    H_kv = key.shape[1]
    q = query.reshape(B, H // H_kv, H_kv, L, D).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, key[:, :, None], value[:, :, None], attn_mask=attn_mask)
    return out.transpose(1, 2).reshape(B, H, L, value.shape[-1])""", ["(B, H_kv, G, L, D)"]),
    ("5.4", "group axis in front of the keys' heads", """
def grouped_query_attention(query, key, value, attn_mask=None):
    B, H, L, D = query.shape
    q = query.view(B, key.shape[1], H // key.shape[1], L, D)
    out = F.scaled_dot_product_attention(q, key.unsqueeze(1), value.unsqueeze(1), attn_mask=attn_mask)
    return out.view(B, H, L, -1)""", ["key[:, :, None]"]),
    ("5.4", "keys without a group axis", """
def grouped_query_attention(query, key, value, attn_mask=None):
    B, H, L, D = query.shape
    q = query.view(B, key.shape[1], H // key.shape[1], L, D)
    return F.scaled_dot_product_attention(q, key, value, attn_mask=attn_mask).view(B, H, L, -1)""",
     ["size-1 group axis"]),
    ("5.4", "no expansion", """
def grouped_query_attention(query, key, value, attn_mask=None):
    return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask)""", ["repeat_interleave"]),
    ("5.4", "expand", """
def grouped_query_attention(query, key, value, attn_mask=None):
    B, H, L, D = query.shape
    k = key.expand(B, H, key.shape[2], key.shape[3])
    v = value.expand(B, H, value.shape[2], value.shape[3])
    return F.scaled_dot_product_attention(query, k, v, attn_mask=attn_mask)""", ["repeat_interleave"]),
    ("5.4", "repeated along the sequence", """
def grouped_query_attention(query, key, value, attn_mask=None):
    g = query.shape[1] // key.shape[1]
    k, v = key.repeat_interleave(g, dim=2), value.repeat_interleave(g, dim=2)
    return F.scaled_dot_product_attention(query, k, v, attn_mask=attn_mask)""", ["dim 1"]),
    ("5.4", "is_causal", """
def grouped_query_attention(query, key, value, attn_mask=None):
    g = query.shape[1] // key.shape[1]
    k, v = key.repeat_interleave(g, dim=1), value.repeat_interleave(g, dim=1)
    return F.scaled_dot_product_attention(query, k, v, is_causal=attn_mask is not None)""", ["top-left"]),
    # --- 5.5 chunk positions and mask
    ("5.5", "positions from 0", """
def chunk_positions_and_mask(n_cached, L):
    S = n_cached + L
    return torch.arange(L), torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L)""", ["continue after"]),
    ("5.5", "positions off by one", """
def chunk_positions_and_mask(n_cached, L):
    S = n_cached + L
    return torch.arange(n_cached + 1, S + 1), torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L)""",
     ["Off by one"]),
    ("5.5", "top-left mask", """
def chunk_positions_and_mask(n_cached, L):
    return torch.arange(n_cached, n_cached + L), torch.ones(L, n_cached + L, dtype=torch.bool).tril()""",
     ["top-left"]),
    ("5.5", "mask over the new keys only", """
def chunk_positions_and_mask(n_cached, L):
    return torch.arange(n_cached, n_cached + L), torch.ones(L, L, dtype=torch.bool).tril()""", ["cached ones"]),
    ("5.5", "float positions", """
def chunk_positions_and_mask(n_cached, L):
    S = n_cached + L
    return torch.arange(n_cached, S, dtype=torch.float32), torch.ones(L, S, dtype=torch.bool).tril(S - L)""",
     ["integer tensor"]),
    # --- 6.x positions, cross-attention, the block, sampling
    ('6.1', 'interleaved pairs', """
def apply_rope(q, k, v, start):
    L, D = q.shape[-2], q.shape[-1]
    theta = 10000 ** (-torch.arange(0, D, 2, dtype=torch.float32) / D)
    angles = torch.arange(start, start + L, dtype=torch.float32)[:, None] * theta
    cos, sin = angles.cos(), angles.sin()

    def rotate(x):
        x1, x2 = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2] = x1 * cos - x2 * sin
        out[..., 1::2] = x1 * sin + x2 * cos
        return out

    return rotate(q), rotate(k), v""", ['interleaved pairs']),
    ('6.1', 'positions from zero after a cache', """
def apply_rope(q, k, v, start):
    L, D = q.shape[-2], q.shape[-1]
    theta = 10000 ** (-torch.arange(0, D, 2, dtype=torch.float32) / D)
    angles = torch.arange(0, 0 + L, dtype=torch.float32)[:, None] * theta
    cos, sin = angles.cos(), angles.sin()

    def rotate(x):
        x1, x2 = x[..., : D // 2], x[..., D // 2:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    return rotate(q), rotate(k), v""", ['positions start']),
    ('6.1', 'rotated v too', """
def apply_rope(q, k, v, start):
    L, D = q.shape[-2], q.shape[-1]
    theta = 10000 ** (-torch.arange(0, D, 2, dtype=torch.float32) / D)
    angles = torch.arange(start, start + L, dtype=torch.float32)[:, None] * theta
    cos, sin = angles.cos(), angles.sin()

    def rotate(x):
        x1, x2 = x[..., : D // 2], x[..., D // 2:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    return rotate(q), rotate(k), rotate(v)""", ['rotated v']),
    ('6.1', 'off by one', """
def apply_rope(q, k, v, start):
    L, D = q.shape[-2], q.shape[-1]
    theta = 10000 ** (-torch.arange(0, D, 2, dtype=torch.float32) / D)
    angles = torch.arange(start + 1, start + 1 + L, dtype=torch.float32)[:, None] * theta
    cos, sin = angles.cos(), angles.sin()

    def rotate(x):
        x1, x2 = x[..., : D // 2], x[..., D // 2:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    return rotate(q), rotate(k), v""", ['Off by one']),
    ('6.2', 'queries and keys swapped', """
def cross_attention(x, memory, W_q, W_k, W_v, memory_mask):
    q = memory @ W_q.T
    k, v = x @ W_k.T, x @ W_v.T
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~memory_mask[:, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights""", ['swapped']),
    ('6.2', 'mask on the query axis', """
def cross_attention(x, memory, W_q, W_k, W_v, memory_mask):
    q = x @ W_q.T
    k, v = memory @ W_k.T, memory @ W_v.T
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~memory_mask[:, :, None], float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights""", ['wrong axis']),
    ('6.2', 'inverted mask', """
def cross_attention(x, memory, W_q, W_k, W_v, memory_mask):
    q = x @ W_q.T
    k, v = memory @ W_k.T, memory @ W_v.T
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(memory_mask[:, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights""", ['inverted']),
    ('6.2', 'padding not masked', """
def cross_attention(x, memory, W_q, W_k, W_v, memory_mask):
    q = x @ W_q.T
    k, v = memory @ W_k.T, memory @ W_v.T
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(torch.zeros_like(memory_mask[:, None, :]), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights""", ['Padded source']),
    ('6.3', 'not causal', """
def transformer_block(x, params, n_head):
    B, L, E = x.shape
    D = E // n_head

    def ln(h, name):
        return F.layer_norm(h, (E,), params[f"{name}.weight"], params[f"{name}.bias"], eps=1e-5)

    h = ln(x, "ln_1")
    q, k, v = F.linear(h, params["attn.c_attn.weight"], params["attn.c_attn.bias"]).split(E, dim=-1)
    q, k, v = (t.view(B, L, n_head, D).transpose(1, 2) for t in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=False)
    y = y.transpose(1, 2).reshape(B, L, E)
    x = x + F.linear(y, params["attn.c_proj.weight"], params["attn.c_proj.bias"])
    h = F.gelu(F.linear(ln(x, "ln_2"), params["mlp.c_fc.weight"], params["mlp.c_fc.bias"]), approximate="tanh")
    return x + F.linear(h, params["mlp.c_proj.weight"], params["mlp.c_proj.bias"])""", ['not causal']),
    ('6.3', 'exact GELU', """
def transformer_block(x, params, n_head):
    B, L, E = x.shape
    D = E // n_head

    def ln(h, name):
        return F.layer_norm(h, (E,), params[f"{name}.weight"], params[f"{name}.bias"], eps=1e-5)

    h = ln(x, "ln_1")
    q, k, v = F.linear(h, params["attn.c_attn.weight"], params["attn.c_attn.bias"]).split(E, dim=-1)
    q, k, v = (t.view(B, L, n_head, D).transpose(1, 2) for t in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    y = y.transpose(1, 2).reshape(B, L, E)
    x = x + F.linear(y, params["attn.c_proj.weight"], params["attn.c_proj.bias"])
    h = F.gelu(F.linear(ln(x, "ln_2"), params["mlp.c_fc.weight"], params["mlp.c_fc.bias"]), approximate="none")
    return x + F.linear(h, params["mlp.c_proj.weight"], params["mlp.c_proj.bias"])""", ['tanh approximation']),
    ('6.3', 'residual after the norm', """
def transformer_block(x, params, n_head):
    B, L, E = x.shape
    D = E // n_head

    def ln(h, name):
        return F.layer_norm(h, (E,), params[f"{name}.weight"], params[f"{name}.bias"], eps=1e-5)

    h = ln(x, "ln_1")
    q, k, v = F.linear(h, params["attn.c_attn.weight"], params["attn.c_attn.bias"]).split(E, dim=-1)
    q, k, v = (t.view(B, L, n_head, D).transpose(1, 2) for t in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    y = y.transpose(1, 2).reshape(B, L, E)
    x = h + F.linear(y, params["attn.c_proj.weight"], params["attn.c_proj.bias"])
    h = ln(x, "ln_2")
    m = F.gelu(F.linear(h, params["mlp.c_fc.weight"], params["mlp.c_fc.bias"]), approximate="tanh")
    return h + F.linear(m, params["mlp.c_proj.weight"], params["mlp.c_proj.bias"])""", ['NORMALISED']),
    ('6.3', "MLP reads the block's input", """
def transformer_block(x, params, n_head):
    B, L, E = x.shape
    D = E // n_head

    def ln(h, name):
        return F.layer_norm(h, (E,), params[f"{name}.weight"], params[f"{name}.bias"], eps=1e-5)

    h0 = h = ln(x, "ln_1")
    q, k, v = F.linear(h, params["attn.c_attn.weight"], params["attn.c_attn.bias"]).split(E, dim=-1)
    q, k, v = (t.view(B, L, n_head, D).transpose(1, 2) for t in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    y = y.transpose(1, 2).reshape(B, L, E)
    x = x + F.linear(y, params["attn.c_proj.weight"], params["attn.c_proj.bias"])
    h = F.gelu(F.linear(h0, params["mlp.c_fc.weight"], params["mlp.c_fc.bias"]), approximate="tanh")
    return x + F.linear(h, params["mlp.c_proj.weight"], params["mlp.c_proj.bias"])""", ['AFTER attention']),
    ('6.4', 'drops the crossing token', """
def sample_top_p(logits, p, temperature):
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs
    kept = sorted_probs * (before + sorted_probs <= p)
    kept = kept / kept.sum(dim=-1, keepdim=True)
    return torch.zeros_like(kept).scatter(-1, order, kept)""", ['crosses p']),
    ('6.4', 'not renormalised', """
def sample_top_p(logits, p, temperature):
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs
    kept = sorted_probs * (before < p)
    kept = kept
    return torch.zeros_like(kept).scatter(-1, order, kept)""", ['renormalise']),
    ('6.4', 'temperature ignored', """
def sample_top_p(logits, p, temperature):
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs
    kept = sorted_probs * (before < p)
    kept = kept / kept.sum(dim=-1, keepdim=True)
    return torch.zeros_like(kept).scatter(-1, order, kept)""", ['ignored `temperature`']),
    ('6.4', 'sorted order returned', """
def sample_top_p(logits, p, temperature):
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs
    kept = sorted_probs * (before < p)
    kept = kept / kept.sum(dim=-1, keepdim=True)
    return kept""", ['sorted order']),
]

# --- chapter 7: efficient attention
C += [
    ("7.1", "sum not rescaled when the max grows", """
def online_softmax(scores, values, block_size):
    m = torch.full(scores.shape[:-1], float("-inf"))
    l = torch.zeros(scores.shape[:-1])
    acc = torch.zeros(scores.shape[:-1] + values.shape[-1:])
    for j in range(0, scores.shape[-1], block_size):
        s = scores[..., j:j + block_size]
        m_new = torch.maximum(m, s.amax(dim=-1))
        p = torch.exp(s - m_new[..., None])
        l = l + p.sum(dim=-1)
        acc = acc * torch.exp(m - m_new)[..., None] + p @ values[..., j:j + block_size, :]
        m = m_new
    return acc / l[..., None], m, l""", ["not the running sum"]),
    ("7.1", "nothing rescaled", """
def online_softmax(scores, values, block_size):
    m = torch.full(scores.shape[:-1], float("-inf"))
    l = torch.zeros(scores.shape[:-1])
    acc = torch.zeros(scores.shape[:-1] + values.shape[-1:])
    for j in range(0, scores.shape[-1], block_size):
        s = scores[..., j:j + block_size]
        m = torch.maximum(m, s.amax(dim=-1))
        p = torch.exp(s - m[..., None])
        l = l + p.sum(dim=-1)
        acc = acc + p @ values[..., j:j + block_size, :]
    return acc / l[..., None], m, l""", ["did not rescale"]),
    ("7.1", "max starts at 0", """
def online_softmax(scores, values, block_size):
    m = torch.zeros(scores.shape[:-1])
    l = torch.zeros(scores.shape[:-1])
    acc = torch.zeros(scores.shape[:-1] + values.shape[-1:])
    for j in range(0, scores.shape[-1], block_size):
        s = scores[..., j:j + block_size]
        m_new = torch.maximum(m, s.amax(dim=-1))
        c = torch.exp(m - m_new)
        p = torch.exp(s - m_new[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ values[..., j:j + block_size, :]
        m = m_new
    return acc / l[..., None], m, l""", ["-inf"]),
    ("7.1", "correction upside down", """
def online_softmax(scores, values, block_size):
    m = torch.full(scores.shape[:-1], float("-inf"))
    l = torch.zeros(scores.shape[:-1])
    acc = torch.zeros(scores.shape[:-1] + values.shape[-1:])
    for j in range(0, scores.shape[-1], block_size):
        s = scores[..., j:j + block_size]
        m_new = torch.maximum(m, s.amax(dim=-1))
        c = torch.exp(m_new - m)
        p = torch.exp(s - m_new[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ values[..., j:j + block_size, :]
        m = m_new
    return acc / l[..., None], m, l""", ["upside down"]),
    ("7.1", "output accumulator not rescaled", """
def online_softmax(scores, values, block_size):
    m = torch.full(scores.shape[:-1], float("-inf"))
    l = torch.zeros(scores.shape[:-1])
    acc = torch.zeros(scores.shape[:-1] + values.shape[-1:])
    for j in range(0, scores.shape[-1], block_size):
        s = scores[..., j:j + block_size]
        m_new = torch.maximum(m, s.amax(dim=-1))
        c = torch.exp(m - m_new)
        p = torch.exp(s - m_new[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc + p @ values[..., j:j + block_size, :]
        m = m_new
    return acc / l[..., None], m, l""", ["not the output accumulator"]),
    ("7.1", "each block against its own max", """
def online_softmax(scores, values, block_size):
    m = torch.full(scores.shape[:-1], float("-inf"))
    l = torch.zeros(scores.shape[:-1])
    acc = torch.zeros(scores.shape[:-1] + values.shape[-1:])
    for j in range(0, scores.shape[-1], block_size):
        s = scores[..., j:j + block_size]
        p = torch.exp(s - s.amax(dim=-1, keepdim=True))
        l = l + p.sum(dim=-1)
        acc = acc + p @ values[..., j:j + block_size, :]
        m = torch.maximum(m, s.amax(dim=-1))
    return acc / l[..., None], m, l""", ["own max"]),
    ("7.2", "mask not applied in the tiles", """
def tiled_attention(query, key, value, attn_mask, block_size):
    m = torch.full(query.shape[:-1], float("-inf"))
    l = torch.zeros(query.shape[:-1])
    acc = torch.zeros(query.shape[:-1] + value.shape[-1:])
    for j in range(0, key.shape[-2], block_size):
        s = query @ key[..., j:j + block_size, :].transpose(-2, -1) / math.sqrt(query.shape[-1])
        m_new = torch.maximum(m, s.amax(dim=-1))
        c = torch.exp(m - m_new)
        p = torch.exp(s - m_new[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ value[..., j:j + block_size, :]
        m = m_new
    return acc / l[..., None], m + torch.log(l)""", ["mask is not applied"]),
    ("7.2", "the first tile's mask every time", """
def tiled_attention(query, key, value, attn_mask, block_size):
    mask = attn_mask.expand(query.shape[:-2] + (query.shape[-2], key.shape[-2]))
    m = torch.full(query.shape[:-1], float("-inf"))
    l = torch.zeros(query.shape[:-1])
    acc = torch.zeros(query.shape[:-1] + value.shape[-1:])
    for j in range(0, key.shape[-2], block_size):
        s = query @ key[..., j:j + block_size, :].transpose(-2, -1) / math.sqrt(query.shape[-1])
        s = s.masked_fill(~mask[..., :s.shape[-1]], float("-inf"))
        m_new = torch.maximum(m, s.amax(dim=-1))
        shift = torch.where(torch.isneginf(m_new), 0.0, m_new)
        c = torch.exp(m - shift)
        p = torch.exp(s - shift[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ value[..., j:j + block_size, :]
        m = m_new
    empty = l == 0
    return acc / torch.where(empty, 1.0, l)[..., None], torch.where(empty, float("-inf"), m + torch.log(l))""",
     ["FIRST tile"]),
    ("7.2", "NaN for a fully masked first tile", """
def tiled_attention(query, key, value, attn_mask, block_size):
    mask = attn_mask.expand(query.shape[:-2] + (query.shape[-2], key.shape[-2]))
    m = torch.full(query.shape[:-1], float("-inf"))
    l = torch.zeros(query.shape[:-1])
    acc = torch.zeros(query.shape[:-1] + value.shape[-1:])
    for j in range(0, key.shape[-2], block_size):
        s = query @ key[..., j:j + block_size, :].transpose(-2, -1) / math.sqrt(query.shape[-1])
        s = s.masked_fill(~mask[..., j:j + block_size], float("-inf"))
        m_new = torch.maximum(m, s.amax(dim=-1))
        c = torch.exp(m - m_new)
        p = torch.exp(s - m_new[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ value[..., j:j + block_size, :]
        m = m_new
    empty = l == 0
    return acc / torch.where(empty, 1.0, l)[..., None], torch.where(empty, float("-inf"), m + torch.log(l))""",
     ["fully masked TILE"]),
    ("7.2", "NaN for a fully masked row", """
def tiled_attention(query, key, value, attn_mask, block_size):
    mask = attn_mask.expand(query.shape[:-2] + (query.shape[-2], key.shape[-2]))
    m = torch.full(query.shape[:-1], float("-inf"))
    l = torch.zeros(query.shape[:-1])
    acc = torch.zeros(query.shape[:-1] + value.shape[-1:])
    for j in range(0, key.shape[-2], block_size):
        s = query @ key[..., j:j + block_size, :].transpose(-2, -1) / math.sqrt(query.shape[-1])
        s = s.masked_fill(~mask[..., j:j + block_size], float("-inf"))
        m_new = torch.maximum(m, s.amax(dim=-1))
        shift = torch.where(torch.isneginf(m_new), 0.0, m_new)
        c = torch.exp(m - shift)
        p = torch.exp(s - shift[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ value[..., j:j + block_size, :]
        m = m_new
    return acc / l[..., None], m + torch.log(l)""", ["0 / 0"]),
    ("7.2", "mask with masked_fill's meaning", """
def tiled_attention(query, key, value, attn_mask, block_size):
    mask = attn_mask.expand(query.shape[:-2] + (query.shape[-2], key.shape[-2]))
    m = torch.full(query.shape[:-1], float("-inf"))
    l = torch.zeros(query.shape[:-1])
    acc = torch.zeros(query.shape[:-1] + value.shape[-1:])
    for j in range(0, key.shape[-2], block_size):
        s = query @ key[..., j:j + block_size, :].transpose(-2, -1) / math.sqrt(query.shape[-1])
        s = s.masked_fill(mask[..., j:j + block_size], float("-inf"))
        m_new = torch.maximum(m, s.amax(dim=-1))
        shift = torch.where(torch.isneginf(m_new), 0.0, m_new)
        c = torch.exp(m - shift)
        p = torch.exp(s - shift[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ value[..., j:j + block_size, :]
        m = m_new
    empty = l == 0
    return acc / torch.where(empty, 1.0, l)[..., None], torch.where(empty, float("-inf"), m + torch.log(l))""",
     ["inverted"]),
    ("7.2", "lse forgets the max", """
def tiled_attention(query, key, value, attn_mask, block_size):
    mask = attn_mask.expand(query.shape[:-2] + (query.shape[-2], key.shape[-2]))
    m = torch.full(query.shape[:-1], float("-inf"))
    l = torch.zeros(query.shape[:-1])
    acc = torch.zeros(query.shape[:-1] + value.shape[-1:])
    for j in range(0, key.shape[-2], block_size):
        s = query @ key[..., j:j + block_size, :].transpose(-2, -1) / math.sqrt(query.shape[-1])
        s = s.masked_fill(~mask[..., j:j + block_size], float("-inf"))
        m_new = torch.maximum(m, s.amax(dim=-1))
        shift = torch.where(torch.isneginf(m_new), 0.0, m_new)
        c = torch.exp(m - shift)
        p = torch.exp(s - shift[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ value[..., j:j + block_size, :]
        m = m_new
    return acc / torch.where(l == 0, 1.0, l)[..., None], torch.log(l)""", ["m + log(l)"]),
    ("7.1", "all the values for every block", """
def online_softmax(scores, values, block_size):
    m = torch.full(scores.shape[:-1], float("-inf"))
    l = torch.zeros(scores.shape[:-1])
    acc = torch.zeros(scores.shape[:-1] + values.shape[-1:])
    for j in range(0, scores.shape[-1], block_size):
        s = scores[..., j:j + block_size]
        m_new = torch.maximum(m, s.amax(dim=-1))
        c = torch.exp(m - m_new)
        p = torch.exp(s - m_new[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ values
        m = m_new
    return acc / l[..., None], m, l""", ["SAME block of values"]),
    ("7.2", "scores not scaled", """
def tiled_attention(query, key, value, attn_mask, block_size):
    mask = attn_mask.expand(query.shape[:-2] + (query.shape[-2], key.shape[-2]))
    m = torch.full(query.shape[:-1], float("-inf"))
    l = torch.zeros(query.shape[:-1])
    acc = torch.zeros(query.shape[:-1] + value.shape[-1:])
    for j in range(0, key.shape[-2], block_size):
        s = query @ key[..., j:j + block_size, :].transpose(-2, -1)
        s = s.masked_fill(~mask[..., j:j + block_size], float("-inf"))
        m_new = torch.maximum(m, s.amax(dim=-1))
        shift = torch.where(torch.isneginf(m_new), 0.0, m_new)
        c = torch.exp(m - shift)
        p = torch.exp(s - shift[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ value[..., j:j + block_size, :]
        m = m_new
    empty = l == 0
    return acc / torch.where(empty, 1.0, l)[..., None], torch.where(empty, float("-inf"), m + torch.log(l))""",
     ["sqrt(D)"]),
    ("7.2", "F.scaled_dot_product_attention on the whole matrix", """
def tiled_attention(query, key, value, attn_mask, block_size):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    lse = torch.logsumexp(scores.masked_fill(~attn_mask, float("-inf")), dim=-1)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask), lse""", ["one tile at a time"]),
    ("7.3", "state overwritten, not accumulated", """
def linear_attention_recurrent(query, key, value):
    q, k = F.elu(query) + 1, F.elu(key) + 1
    outs = []
    for t in range(q.shape[1]):
        state = k[:, t, :, None] * value[:, t, None, :]
        z = k[:, t]
        outs.append((q[:, t, None, :] @ state)[:, 0] / (q[:, t] * z).sum(-1, keepdim=True))
    return torch.stack(outs, dim=1)""", ["not accumulated"]),
    ("7.3", "no normaliser", """
def linear_attention_recurrent(query, key, value):
    q, k = F.elu(query) + 1, F.elu(key) + 1
    state = torch.zeros(q.shape[0], q.shape[2], value.shape[2])
    outs = []
    for t in range(q.shape[1]):
        state = state + k[:, t, :, None] * value[:, t, None, :]
        outs.append((q[:, t, None, :] @ state)[:, 0])
    return torch.stack(outs, dim=1)""", ["normaliser is missing"]),
    ("7.3", "raw q and k", """
def linear_attention_recurrent(query, key, value):
    state = torch.zeros(query.shape[0], query.shape[2], value.shape[2])
    z = torch.zeros(query.shape[0], query.shape[2])
    outs = []
    for t in range(query.shape[1]):
        state = state + key[:, t, :, None] * value[:, t, None, :]
        z = z + key[:, t]
        outs.append((query[:, t, None, :] @ state)[:, 0] / (query[:, t] * z).sum(-1, keepdim=True))
    return torch.stack(outs, dim=1)""", ["feature map"]),
    ("7.3", "whole-sequence sums for every query", """
def linear_attention_recurrent(query, key, value):
    q, k = F.elu(query) + 1, F.elu(key) + 1
    state = k.transpose(1, 2) @ value
    z = k.sum(dim=1)
    return (q @ state) / (q @ z[:, :, None])""", ["non-causal"]),
    ("7.3", "output before the update", """
def linear_attention_recurrent(query, key, value):
    q, k = F.elu(query) + 1, F.elu(key) + 1
    state = torch.zeros(q.shape[0], q.shape[2], value.shape[2])
    z = torch.zeros(q.shape[0], q.shape[2])
    outs = []
    for t in range(q.shape[1]):
        outs.append((q[:, t, None, :] @ state)[:, 0] / (q[:, t] * z).sum(-1, keepdim=True))
        state = state + k[:, t, :, None] * value[:, t, None, :]
        z = z + k[:, t]
    return torch.stack(outs, dim=1)""", ["before adding token t"]),
    ("7.4", "window one too wide", """
def sliding_window_mask(L, S, window):
    i = torch.arange(S - L, S)[:, None]
    j = torch.arange(S)[None, :]
    return (j <= i) & (j >= i - window)""", ["Off by one"]),
    ("7.4", "top-left alignment", """
def sliding_window_mask(L, S, window):
    i = torch.arange(L)[:, None]
    j = torch.arange(S)[None, :]
    return (j <= i) & (i - j < window)""", ["S - L + i"]),
    ("7.4", "symmetric band", """
def sliding_window_mask(L, S, window):
    i = torch.arange(S - L, S)[:, None]
    j = torch.arange(S)[None, :]
    return (i - j).abs() < window""", ["symmetric"]),
    ("7.4", "band from tril and triu with the wrong diagonals", """
def sliding_window_mask(L, S, window):
    ones = torch.ones(L, S, dtype=torch.bool)
    return ones.tril(diagonal=S - L) & ones.triu(diagonal=S - L - window)""", ["Off by one"]),
    ("7.4", "causal only", """
def sliding_window_mask(L, S, window):
    return torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L)""", ["window is missing"]),
]

# --- chapter 7: the learner's further mistakes (findings of 2026-12-01)
C += [
    ('7.1', "the running max overwritten by the block's max", """
def online_softmax(scores, values, block_size):
    m = torch.full(scores.shape[:-1], float("-inf"))
    l = torch.zeros(scores.shape[:-1])
    acc = torch.zeros(scores.shape[:-1] + values.shape[-1:])
    for j in range(0, scores.shape[-1], block_size):
        s = scores[..., j:j + block_size]
        m_new = torch.maximum(m, s.amax(dim=-1))
        c = torch.exp(m - m_new)
        p = torch.exp(s - m_new[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ values[..., j:j + block_size, :]
        m = s.amax(dim=-1)
    return acc / l[..., None], m, l""", ['overwritten']),
    ('7.1', 'm_new from the block alone', """
def online_softmax(scores, values, block_size):
    m = torch.full(scores.shape[:-1], float("-inf"))
    l = torch.zeros(scores.shape[:-1])
    acc = torch.zeros(scores.shape[:-1] + values.shape[-1:])
    for j in range(0, scores.shape[-1], block_size):
        s = scores[..., j:j + block_size]
        m_new = s.amax(dim=-1)
        c = torch.exp(m - m_new)
        p = torch.exp(s - m_new[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ values[..., j:j + block_size, :]
        m = m_new
    return acc / l[..., None], m, l""", ['LAST']),
    ('7.1', 'row_max and row_sum swapped', """
def online_softmax(scores, values, block_size):
    m = torch.full(scores.shape[:-1], float("-inf"))
    l = torch.zeros(scores.shape[:-1])
    acc = torch.zeros(scores.shape[:-1] + values.shape[-1:])
    for j in range(0, scores.shape[-1], block_size):
        s = scores[..., j:j + block_size]
        m_new = torch.maximum(m, s.amax(dim=-1))
        c = torch.exp(m - m_new)
        p = torch.exp(s - m_new[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ values[..., j:j + block_size, :]
        m = m_new
    return acc / l[..., None], l, m""", ['swapped']),
    ('7.1', 'the log-sum-exp returned as row_sum', """
def online_softmax(scores, values, block_size):
    m = torch.full(scores.shape[:-1], float("-inf"))
    l = torch.zeros(scores.shape[:-1])
    acc = torch.zeros(scores.shape[:-1] + values.shape[-1:])
    for j in range(0, scores.shape[-1], block_size):
        s = scores[..., j:j + block_size]
        m_new = torch.maximum(m, s.amax(dim=-1))
        c = torch.exp(m - m_new)
        p = torch.exp(s - m_new[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ values[..., j:j + block_size, :]
        m = m_new
    return acc / l[..., None], m, m + torch.log(l)""", ['log-sum-exp']),
    ('7.1', 'the loop stops one block early', """
def online_softmax(scores, values, block_size):
    m = torch.full(scores.shape[:-1], float("-inf"))
    l = torch.zeros(scores.shape[:-1])
    acc = torch.zeros(scores.shape[:-1] + values.shape[-1:])
    for j in range(0, scores.shape[-1] - block_size, block_size):
        s = scores[..., j:j + block_size]
        m_new = torch.maximum(m, s.amax(dim=-1))
        c = torch.exp(m - m_new)
        p = torch.exp(s - m_new[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ values[..., j:j + block_size, :]
        m = m_new
    return acc / l[..., None], m, l""", ['one block early']),
    ('7.1', "the mean of each block's softmax", """
def online_softmax(scores, values, block_size):
    outs = [torch.softmax(scores[..., j:j + block_size], dim=-1) @ values[..., j:j + block_size, :]
            for j in range(0, scores.shape[-1], block_size)]
    m = scores.amax(dim=-1)
    return torch.stack(outs).mean(dim=0), m, torch.exp(scores - m[..., None]).sum(dim=-1)""", ['averaged']),
    ('7.1', 'a whole-row softmax', """
def online_softmax(scores, values, block_size):
    m = scores.amax(dim=-1)
    weights = torch.softmax(scores, dim=-1)
    return weights @ values, m, torch.exp(scores - m[..., None]).sum(dim=-1)""", ['one block of keys at a time']),
    ('7.1', 's.max(dim) is a pair', """
def online_softmax(scores, values, block_size):
    m = torch.full(scores.shape[:-1], float("-inf"))
    l = torch.zeros(scores.shape[:-1])
    acc = torch.zeros(scores.shape[:-1] + values.shape[-1:])
    for j in range(0, scores.shape[-1], block_size):
        s = scores[..., j:j + block_size]
        m_new = torch.maximum(m, s.max(dim=-1))
        c = torch.exp(m - m_new)
        p = torch.exp(s - m_new[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ values[..., j:j + block_size, :]
        m = m_new
    return acc / l[..., None], m, l""", ['.values']),
    ('7.1', "attnkit's own online_softmax", """
def online_softmax(scores, values, block_size):
    import attnkit
    maxes, sums = attnkit.online_softmax(scores, block_size)
    return torch.softmax(scores, dim=-1) @ values, maxes[-1], sums[-1]""", ['switched off']),
    ('7.2', 'blocked keys filled with -1e9', """
def tiled_attention(query, key, value, attn_mask, block_size):
    mask = attn_mask.expand(query.shape[:-1] + key.shape[-2:-1])
    m = torch.full(query.shape[:-1], float("-inf"))
    l = torch.zeros(query.shape[:-1])
    acc = torch.zeros(query.shape[:-1] + value.shape[-1:])
    for j in range(0, key.shape[-2], block_size):
        s = query @ key[..., j:j + block_size, :].transpose(-2, -1) / math.sqrt(query.shape[-1])
        s = s.masked_fill(~mask[..., j:j + block_size], -1e9)
        m_new = torch.maximum(m, s.amax(dim=-1))
        shift = torch.where(torch.isneginf(m_new), 0.0, m_new)
        c = torch.exp(m - shift)
        p = torch.exp(s - shift[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ value[..., j:j + block_size, :]
        m = m_new
    empty = l == 0
    lse = torch.where(empty, float("-inf"), m + torch.log(l))
    return acc / torch.where(empty, 1.0, l)[..., None], lse""", ['-1e9']),
    ('7.2', 'the bool mask added to the scores', """
def tiled_attention(query, key, value, attn_mask, block_size):
    mask = attn_mask.expand(query.shape[:-1] + key.shape[-2:-1])
    m = torch.full(query.shape[:-1], float("-inf"))
    l = torch.zeros(query.shape[:-1])
    acc = torch.zeros(query.shape[:-1] + value.shape[-1:])
    for j in range(0, key.shape[-2], block_size):
        s = query @ key[..., j:j + block_size, :].transpose(-2, -1) / math.sqrt(query.shape[-1])
        s = s + mask[..., j:j + block_size]
        m_new = torch.maximum(m, s.amax(dim=-1))
        shift = torch.where(torch.isneginf(m_new), 0.0, m_new)
        c = torch.exp(m - shift)
        p = torch.exp(s - shift[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ value[..., j:j + block_size, :]
        m = m_new
    empty = l == 0
    lse = torch.where(empty, float("-inf"), m + torch.log(l))
    return acc / torch.where(empty, 1.0, l)[..., None], lse""", ['ADDED']),
    ('7.2', 'lse 0 for a row with no visible key', """
def tiled_attention(query, key, value, attn_mask, block_size):
    mask = attn_mask.expand(query.shape[:-1] + key.shape[-2:-1])
    m = torch.full(query.shape[:-1], float("-inf"))
    l = torch.zeros(query.shape[:-1])
    acc = torch.zeros(query.shape[:-1] + value.shape[-1:])
    for j in range(0, key.shape[-2], block_size):
        s = query @ key[..., j:j + block_size, :].transpose(-2, -1) / math.sqrt(query.shape[-1])
        s = s.masked_fill(~mask[..., j:j + block_size], float("-inf"))
        m_new = torch.maximum(m, s.amax(dim=-1))
        shift = torch.where(torch.isneginf(m_new), 0.0, m_new)
        c = torch.exp(m - shift)
        p = torch.exp(s - shift[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ value[..., j:j + block_size, :]
        m = m_new
    empty = l == 0
    lse = torch.where(empty, 0.0, m + torch.log(l))
    return acc / torch.where(empty, 1.0, l)[..., None], lse""", ['expected -inf, got 0', 'log(0)']),
    ("7.2", "NaN replaced at the end instead of guarded", """
def tiled_attention(query, key, value, attn_mask, block_size):
    mask = attn_mask.expand(query.shape[:-1] + key.shape[-2:-1])
    m = torch.full(query.shape[:-1], float("-inf"))
    l = torch.zeros(query.shape[:-1])
    acc = torch.zeros(query.shape[:-1] + value.shape[-1:])
    for j in range(0, key.shape[-2], block_size):
        s = query @ key[..., j:j + block_size, :].transpose(-2, -1) / math.sqrt(query.shape[-1])
        s = s.masked_fill(~mask[..., j:j + block_size], float("-inf"))
        m_new = torch.maximum(m, s.amax(dim=-1))
        c = torch.exp(m - m_new)
        p = torch.exp(s - m_new[..., None])
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ value[..., j:j + block_size, :]
        m = m_new
    lse = m + torch.log(l)
    return torch.nan_to_num(acc / l[..., None]), torch.where(lse.isnan(), float("-inf"), lse)""", ["Guard the shift"]),
    ('7.3', 'the state overwritten, the normaliser accumulated', """
def linear_attention_recurrent(query, key, value):
    q, k = F.elu(query) + 1, F.elu(key) + 1
    state = torch.zeros(q.shape[0], q.shape[2], value.shape[2])
    z = torch.zeros(q.shape[0], q.shape[2])
    outs = []
    for t in range(q.shape[1]):
        state = k[:, t, :, None] * value[:, t, None, :]
        z = z + k[:, t]
        outs.append((q[:, t, None, :] @ state)[:, 0] / (q[:, t] * z).sum(-1, keepdim=True))
    return torch.stack(outs, dim=1)""", ['state S is not accumulated']),
    ('7.3', 'phi on the query only', """
def linear_attention_recurrent(query, key, value):
    q, k = F.elu(query) + 1, key
    state = torch.zeros(q.shape[0], q.shape[2], value.shape[2])
    z = torch.zeros(q.shape[0], q.shape[2])
    outs = []
    for t in range(q.shape[1]):
        state = state + k[:, t, :, None] * value[:, t, None, :]
        z = z + k[:, t]
        outs.append((q[:, t, None, :] @ state)[:, 0] / (q[:, t] * z).sum(-1, keepdim=True))
    return torch.stack(outs, dim=1)""", ['query only']),
    ('7.3', 'the normaliser sums the raw keys', """
def linear_attention_recurrent(query, key, value):
    q, k = F.elu(query) + 1, F.elu(key) + 1
    state = torch.zeros(q.shape[0], q.shape[2], value.shape[2])
    z = torch.zeros(q.shape[0], q.shape[2])
    outs = []
    for t in range(q.shape[1]):
        state = state + k[:, t, :, None] * value[:, t, None, :]
        z = z + key[:, t]
        outs.append((q[:, t, None, :] @ state)[:, 0] / (q[:, t] * z).sum(-1, keepdim=True))
    return torch.stack(outs, dim=1)""", ['raw keys']),
    ('7.3', 'the query scaled by 1/sqrt(D) before phi', """
def linear_attention_recurrent(query, key, value):
    q, k = F.elu(query / math.sqrt(query.shape[-1])) + 1, F.elu(key) + 1
    state = torch.zeros(q.shape[0], q.shape[2], value.shape[2])
    z = torch.zeros(q.shape[0], q.shape[2])
    outs = []
    for t in range(q.shape[1]):
        state = state + k[:, t, :, None] * value[:, t, None, :]
        z = z + k[:, t]
        outs.append((q[:, t, None, :] @ state)[:, 0] / (q[:, t] * z).sum(-1, keepdim=True))
    return torch.stack(outs, dim=1)""", ['No 1/sqrt(D)']),
    ('7.4', 'window one too narrow', """
def sliding_window_mask(L, S, window):
    i = torch.arange(S - L, S)[:, None]
    j = torch.arange(S)[None, :]
    return (j <= i) & (j > i - window + 1)""", ['window - 1 keys']),
    ('7.4', 'no causal bound', """
def sliding_window_mask(L, S, window):
    i = torch.arange(S - L, S)[:, None]
    j = torch.arange(S)[None, :]
    return j > i - window""", ['no causal bound']),
    ('7.4', "attnkit's dilated_window_mask", """
def sliding_window_mask(L, S, window):
    import attnkit
    return attnkit.dilated_window_mask(L, S, window)""", ['switched off']),
    ('7.4', 'an int64 mask', """
def sliding_window_mask(L, S, window):
    i = torch.arange(S - L, S)[:, None]
    j = torch.arange(S)[None, :]
    return ((j <= i) & (j > i - window)).long()""", ['dtype int64']),
    ('7.4', 'no return', """
def sliding_window_mask(L, S, window):
    i = torch.arange(S - L, S)[:, None]
    j = torch.arange(S)[None, :]
    mask = (j <= i) & (j > i - window)""", ['forget `return`']),
    ('7.4', 'a loop of slices with a negative start', '''
def sliding_window_mask(L, S, window):
    mask = torch.zeros(L, S, dtype=torch.bool)
    for i in range(L):
        p = S - L + i
        mask[i, p - window + 1:p + 1] = True
    return mask''', ['max(0']),
]
# --- chapter 8: serving (gather through a block table, the block manager, verifying a draft)
C += [
    ('8.1', 'block index and offset swapped', '''
def gather_paged_kv(key_blocks, value_blocks, block_table, seq_len):
    P = key_blocks.shape[2]
    pos = torch.arange(seq_len)
    blocks = block_table[pos % P]
    offsets = pos // P
    keys, values = key_blocks[blocks, :, offsets], value_blocks[blocks, :, offsets]
    return keys.transpose(0, 1), values.transpose(0, 1)''', ['swapped']),
    ('8.1', 'the last block not cropped', '''
def gather_paged_kv(key_blocks, value_blocks, block_table, seq_len):
    k = key_blocks[block_table].transpose(0, 1)           # (H, n, P, D)
    v = value_blocks[block_table].transpose(0, 1)
    H, n, P, D = k.shape
    return k.reshape(H, n * P, D), v.reshape(H, n * P, v.shape[-1])''', ['partly filled', 'seq_len']),
    ('8.1', 'pool read in physical order', '''
def gather_paged_kv(key_blocks, value_blocks, block_table, seq_len):
    n = len(block_table)
    k = key_blocks[:n].transpose(0, 1)
    v = value_blocks[:n].transpose(0, 1)
    k = k.reshape(k.shape[0], -1, k.shape[-1])[:, :seq_len]
    v = v.reshape(v.shape[0], -1, v.shape[-1])[:, :seq_len]
    return k, v''', ['block table']),
    ('8.1', 'reshape without moving the heads', '''
def gather_paged_kv(key_blocks, value_blocks, block_table, seq_len):
    H = key_blocks.shape[1]
    k = key_blocks[block_table].reshape(H, -1, key_blocks.shape[-1])[:, :seq_len]
    v = value_blocks[block_table].reshape(H, -1, value_blocks.shape[-1])[:, :seq_len]
    return k, v''', ['mixes heads']),
    ('8.1', 'sorted block table in a loop', '''
def gather_paged_kv(key_blocks, value_blocks, block_table, seq_len):
    P = key_blocks.shape[2]
    keys, values = [], []
    for i, b in enumerate(sorted(block_table.tolist())):
        take = min(P, seq_len - i * P)
        keys.append(key_blocks[b, :, :take])
        values.append(value_blocks[b, :, :take])
    return torch.cat(keys, dim=1), torch.cat(values, dim=1)''', ['sorted']),
    ('8.1', 'values reshaped with the head size of the keys', '''
def gather_paged_kv(key_blocks, value_blocks, block_table, seq_len):
    N, H, P, D = key_blocks.shape
    n = len(block_table)
    keys = key_blocks[block_table].transpose(0, 1).reshape(H, n * P, D)[:, :seq_len]
    values = value_blocks[block_table].transpose(0, 1).reshape(H, n * P, D)[:, :seq_len]
    return keys, values''', ['Dv']),
    ('8.2', 'floor instead of ceil', '''
class BlockManager:
    def __init__(self, num_blocks, block_size):
        self.block_size = block_size
        self.free_blocks = list(range(num_blocks))
        self.ref_counts = [0] * num_blocks
        self.tables = {}
        self.lengths = {}

    def fork(self, parent, child):
        self.tables[child] = list(self.tables[parent])
        self.lengths[child] = self.lengths[parent]
        for b in self.tables[child]:
            self.ref_counts[b] += 1

    def allocate(self, seq, n_tokens):
        table = self.tables.setdefault(seq, [])
        length = self.lengths.setdefault(seq, 0)
        need = (length + n_tokens) // self.block_size - len(table)
        if need > len(self.free_blocks):
            raise RuntimeError("out of blocks")
        for _ in range(need):
            if not self.free_blocks:
                raise RuntimeError("out of blocks")
            b = self.free_blocks.pop(0)
            self.ref_counts[b] = 1
            table.append(b)
        self.lengths[seq] = length + n_tokens

    def free(self, seq):
        for b in self.tables.pop(seq):
            self.ref_counts[b] -= 1
            if self.ref_counts[b] == 0:
                self.free_blocks.append(b)
        del self.lengths[seq]
''', ['rounds DOWN']),
    ('8.2', 'n // block_size + 1 blocks', '''
class BlockManager:
    def __init__(self, num_blocks, block_size):
        self.block_size = block_size
        self.free_blocks = list(range(num_blocks))
        self.ref_counts = [0] * num_blocks
        self.tables = {}
        self.lengths = {}

    def fork(self, parent, child):
        self.tables[child] = list(self.tables[parent])
        self.lengths[child] = self.lengths[parent]
        for b in self.tables[child]:
            self.ref_counts[b] += 1

    def allocate(self, seq, n_tokens):
        table = self.tables.setdefault(seq, [])
        length = self.lengths.setdefault(seq, 0)
        need = (length + n_tokens) // self.block_size + 1 - len(table)
        if need > len(self.free_blocks):
            raise RuntimeError("out of blocks")
        for _ in range(need):
            if not self.free_blocks:
                raise RuntimeError("out of blocks")
            b = self.free_blocks.pop(0)
            self.ref_counts[b] = 1
            table.append(b)
        self.lengths[seq] = length + n_tokens

    def free(self, seq):
        for b in self.tables.pop(seq):
            self.ref_counts[b] -= 1
            if self.ref_counts[b] == 0:
                self.free_blocks.append(b)
        del self.lengths[seq]
''', ['off by one']),
    ('8.2', 'new blocks at every call', '''
class BlockManager:
    def __init__(self, num_blocks, block_size):
        self.block_size = block_size
        self.free_blocks = list(range(num_blocks))
        self.ref_counts = [0] * num_blocks
        self.tables = {}
        self.lengths = {}

    def fork(self, parent, child):
        self.tables[child] = list(self.tables[parent])
        self.lengths[child] = self.lengths[parent]
        for b in self.tables[child]:
            self.ref_counts[b] += 1

    def allocate(self, seq, n_tokens):
        table = self.tables.setdefault(seq, [])
        length = self.lengths.setdefault(seq, 0)
        need = math.ceil(n_tokens / self.block_size)
        if need > len(self.free_blocks):
            raise RuntimeError("out of blocks")
        for _ in range(need):
            if not self.free_blocks:
                raise RuntimeError("out of blocks")
            b = self.free_blocks.pop(0)
            self.ref_counts[b] = 1
            table.append(b)
        self.lengths[seq] = length + n_tokens

    def free(self, seq):
        for b in self.tables.pop(seq):
            self.ref_counts[b] -= 1
            if self.ref_counts[b] == 0:
                self.free_blocks.append(b)
        del self.lengths[seq]
''', ['still has room']),
    ('8.2', 'free forgets the free list', '''
class BlockManager:
    def __init__(self, num_blocks, block_size):
        self.block_size = block_size
        self.free_blocks = list(range(num_blocks))
        self.ref_counts = [0] * num_blocks
        self.tables = {}
        self.lengths = {}

    def fork(self, parent, child):
        self.tables[child] = list(self.tables[parent])
        self.lengths[child] = self.lengths[parent]
        for b in self.tables[child]:
            self.ref_counts[b] += 1

    def allocate(self, seq, n_tokens):
        table = self.tables.setdefault(seq, [])
        length = self.lengths.setdefault(seq, 0)
        need = -(-(length + n_tokens) // self.block_size) - len(table)
        if need > len(self.free_blocks):
            raise RuntimeError(f"out of blocks: {need} wanted, {len(self.free_blocks)} free")
        for _ in range(need):
            b = self.free_blocks.pop(0)
            self.ref_counts[b] = 1
            table.append(b)
        self.lengths[seq] = length + n_tokens

    def free(self, seq):
        for b in self.tables.pop(seq):
            self.ref_counts[b] -= 1
        del self.lengths[seq]
''', ['leaks']),
    ('8.2', 'frees a block another sequence shares', '''
class BlockManager:
    def __init__(self, num_blocks, block_size):
        self.block_size = block_size
        self.free_blocks = list(range(num_blocks))
        self.ref_counts = [0] * num_blocks
        self.tables = {}
        self.lengths = {}

    def fork(self, parent, child):
        self.tables[child] = list(self.tables[parent])
        self.lengths[child] = self.lengths[parent]
        for b in self.tables[child]:
            self.ref_counts[b] += 1

    def allocate(self, seq, n_tokens):
        table = self.tables.setdefault(seq, [])
        length = self.lengths.setdefault(seq, 0)
        need = -(-(length + n_tokens) // self.block_size) - len(table)
        if need > len(self.free_blocks):
            raise RuntimeError(f"out of blocks: {need} wanted, {len(self.free_blocks)} free")
        for _ in range(need):
            b = self.free_blocks.pop(0)
            self.ref_counts[b] = 1
            table.append(b)
        self.lengths[seq] = length + n_tokens

    def free(self, seq):
        for b in self.tables.pop(seq):
            self.ref_counts[b] = 0
            self.free_blocks.append(b)
        del self.lengths[seq]
''', ['shared block']),
    ('8.2', 'takes blocks until the pool is empty', '''
class BlockManager:
    def __init__(self, num_blocks, block_size):
        self.block_size = block_size
        self.free_blocks = list(range(num_blocks))
        self.ref_counts = [0] * num_blocks
        self.tables = {}
        self.lengths = {}

    def fork(self, parent, child):
        self.tables[child] = list(self.tables[parent])
        self.lengths[child] = self.lengths[parent]
        for b in self.tables[child]:
            self.ref_counts[b] += 1

    def allocate(self, seq, n_tokens):
        table = self.tables.setdefault(seq, [])
        length = self.lengths.setdefault(seq, 0)
        need = -(-(length + n_tokens) // self.block_size) - len(table)
        for _ in range(need):
            if not self.free_blocks:
                raise RuntimeError("out of blocks")
            b = self.free_blocks.pop(0)
            self.ref_counts[b] = 1
            table.append(b)
        self.lengths[seq] = length + n_tokens

    def free(self, seq):
        for b in self.tables.pop(seq):
            self.ref_counts[b] -= 1
            if self.ref_counts[b] == 0:
                self.free_blocks.append(b)
        del self.lengths[seq]
''', ['BEFORE taking any']),
    ('8.2', 'free forgets the table but not the length', '''
class BlockManager:
    def __init__(self, num_blocks, block_size):
        self.block_size = block_size
        self.free_blocks = list(range(num_blocks))
        self.ref_counts = [0] * num_blocks
        self.tables = {}
        self.lengths = {}

    def fork(self, parent, child):
        self.tables[child] = list(self.tables[parent])
        self.lengths[child] = self.lengths[parent]
        for b in self.tables[child]:
            self.ref_counts[b] += 1

    def allocate(self, seq, n_tokens):
        table = self.tables.setdefault(seq, [])
        length = self.lengths.get(seq, 0)
        need = -(-(length + n_tokens) // self.block_size) - len(table)
        if need > len(self.free_blocks):
            raise RuntimeError(f"need {need} blocks, {len(self.free_blocks)} free")
        for _ in range(need):
            b = self.free_blocks.pop()
            self.ref_counts[b] = 1
            table.append(b)
        self.lengths[seq] = length + n_tokens

    def free(self, seq):
        for b in self.tables.pop(seq):
            self.ref_counts[b] -= 1
            if self.ref_counts[b] == 0:
                self.free_blocks.append(b)
''', ['del self.lengths[seq]']),
    ('8.2', 'the length updated before the out-of-blocks test', '''
class BlockManager:
    def __init__(self, num_blocks, block_size):
        self.block_size = block_size
        self.free_blocks = list(range(num_blocks))
        self.ref_counts = [0] * num_blocks
        self.tables = {}
        self.lengths = {}

    def fork(self, parent, child):
        self.tables[child] = list(self.tables[parent])
        self.lengths[child] = self.lengths[parent]
        for b in self.tables[child]:
            self.ref_counts[b] += 1

    def allocate(self, seq, n_tokens):
        table = self.tables.setdefault(seq, [])
        self.lengths[seq] = self.lengths.get(seq, 0) + n_tokens
        need = -(-self.lengths[seq] // self.block_size) - len(table)
        if need > len(self.free_blocks):
            raise RuntimeError("out of blocks")
        for _ in range(need):
            b = self.free_blocks.pop(0)
            self.ref_counts[b] = 1
            table.append(b)

    def free(self, seq):
        for b in self.tables.pop(seq):
            self.ref_counts[b] -= 1
            if self.ref_counts[b] == 0:
                self.free_blocks.append(b)
        del self.lengths[seq]
''', ['before finding out']),
    ('8.3', 'accepts past the first mismatch', '''
def verify_draft(draft_tokens, target_logits):
    choice = target_logits.argmax(dim=-1)
    out = []
    for i in range(len(draft_tokens)):
        out.append(int(draft_tokens[i]) if choice[i] == draft_tokens[i] else int(choice[i]))
    out.append(int(choice[-1]))
    return torch.tensor(out)''', ['after the first mismatch']),
    ('8.3', 'no bonus token', '''
def verify_draft(draft_tokens, target_logits):
    choice = target_logits.argmax(dim=-1)
    out = []
    for i in range(len(draft_tokens)):
        if choice[i] != draft_tokens[i]:
            out.append(int(choice[i]))
            break
        out.append(int(draft_tokens[i]))
    return torch.tensor(out)''', ['bonus']),
    ('8.3', 'logits i + 1 verify draft token i', '''
def verify_draft(draft_tokens, target_logits):
    choice = target_logits.argmax(dim=-1)
    out = []
    for i in range(len(draft_tokens)):
        if choice[i + 1] != draft_tokens[i]:
            out.append(int(choice[i + 1]))
            break
        out.append(int(draft_tokens[i]))
    return torch.tensor(out)''', ['alignment']),
    ('8.3', 'keeps the draft token at the mismatch', '''
def verify_draft(draft_tokens, target_logits):
    choice = target_logits.argmax(dim=-1)
    k = len(draft_tokens)
    n = 0
    while n < k and choice[n] == draft_tokens[n]:
        n += 1
    if n == k:
        return torch.cat([draft_tokens, choice[k:]])
    return draft_tokens[:n + 1]''', ['target decides']),
    ('8.3', 'only the accepted tokens', '''
def verify_draft(draft_tokens, target_logits):
    choice = target_logits.argmax(dim=-1)
    agree = (choice[:-1] == draft_tokens).long().cumprod(dim=0)
    return draft_tokens[: int(agree.sum())]''', ['n + 1 tokens']),
    ('8.2', 'refuses an exact fit (need >= free)', '''
class BlockManager:
    def __init__(self, num_blocks, block_size):
        self.block_size = block_size
        self.free_blocks = list(range(num_blocks))
        self.ref_counts = [0] * num_blocks
        self.tables = {}
        self.lengths = {}

    def fork(self, parent, child):
        self.tables[child] = list(self.tables[parent])
        self.lengths[child] = self.lengths[parent]
        for b in self.tables[child]:
            self.ref_counts[b] += 1

    def allocate(self, seq, n_tokens):
        table = self.tables.get(seq, [])
        length = self.lengths.get(seq, 0)
        need = -(-(length + n_tokens) // self.block_size) - len(table)
        if need >= len(self.free_blocks):
            raise RuntimeError("out of blocks")
        for _ in range(max(need, 0)):
            b = self.free_blocks.pop(0)
            self.ref_counts[b] = 1
            table.append(b)
        self.tables[seq] = table
        self.lengths[seq] = length + n_tokens

    def free(self, seq):
        for b in self.tables.pop(seq):
            self.ref_counts[b] -= 1
            if self.ref_counts[b] == 0:
                self.free_blocks.append(b)
        del self.lengths[seq]
''', ['need >= ']),
    ('8.2', 'allocate never sets the reference count', '''
class BlockManager:
    def __init__(self, num_blocks, block_size):
        self.block_size = block_size
        self.free_blocks = list(range(num_blocks))
        self.ref_counts = [0] * num_blocks
        self.tables = {}
        self.lengths = {}

    def fork(self, parent, child):
        self.tables[child] = list(self.tables[parent])
        self.lengths[child] = self.lengths[parent]
        for b in self.tables[child]:
            self.ref_counts[b] += 1

    def allocate(self, seq, n_tokens):
        table = self.tables.get(seq, [])
        length = self.lengths.get(seq, 0)
        need = -(-(length + n_tokens) // self.block_size) - len(table)
        if need > len(self.free_blocks):
            raise RuntimeError("out of blocks")
        for _ in range(max(need, 0)):
            b = self.free_blocks.pop(0)
            table.append(b)
        self.tables[seq] = table
        self.lengths[seq] = length + n_tokens

    def free(self, seq):
        for b in self.tables.pop(seq):
            self.ref_counts[b] -= 1
            if self.ref_counts[b] == 0:
                self.free_blocks.append(b)
        del self.lengths[seq]
''', ['ref_counts[b] = 1']),
    ('8.2', 'free leaves the table in place', '''
class BlockManager:
    def __init__(self, num_blocks, block_size):
        self.block_size = block_size
        self.free_blocks = list(range(num_blocks))
        self.ref_counts = [0] * num_blocks
        self.tables = {}
        self.lengths = {}

    def fork(self, parent, child):
        self.tables[child] = list(self.tables[parent])
        self.lengths[child] = self.lengths[parent]
        for b in self.tables[child]:
            self.ref_counts[b] += 1

    def allocate(self, seq, n_tokens):
        table = self.tables.get(seq, [])
        length = self.lengths.get(seq, 0)
        need = -(-(length + n_tokens) // self.block_size) - len(table)
        if need > len(self.free_blocks):
            raise RuntimeError("out of blocks")
        for _ in range(max(need, 0)):
            b = self.free_blocks.pop(0)
            self.ref_counts[b] = 1
            table.append(b)
        self.tables[seq] = table
        self.lengths[seq] = length + n_tokens

    def free(self, seq):
        for b in self.tables[seq]:
            self.ref_counts[b] -= 1
            if self.ref_counts[b] == 0:
                self.free_blocks.append(b)
''', ["leaves the sequence's table"]),
    ('8.2', 'free returns only unshared blocks', '''
class BlockManager:
    def __init__(self, num_blocks, block_size):
        self.block_size = block_size
        self.free_blocks = list(range(num_blocks))
        self.ref_counts = [0] * num_blocks
        self.tables = {}
        self.lengths = {}

    def fork(self, parent, child):
        self.tables[child] = list(self.tables[parent])
        self.lengths[child] = self.lengths[parent]
        for b in self.tables[child]:
            self.ref_counts[b] += 1

    def allocate(self, seq, n_tokens):
        table = self.tables.get(seq, [])
        length = self.lengths.get(seq, 0)
        need = -(-(length + n_tokens) // self.block_size) - len(table)
        if need > len(self.free_blocks):
            raise RuntimeError("out of blocks")
        for _ in range(max(need, 0)):
            b = self.free_blocks.pop(0)
            self.ref_counts[b] = 1
            table.append(b)
        self.tables[seq] = table
        self.lengths[seq] = length + n_tokens

    def free(self, seq):
        for b in self.tables.pop(seq):
            if self.ref_counts[b] == 1:
                self.ref_counts[b] = 0
                self.free_blocks.append(b)
        del self.lengths[seq]
''', ['Decrement EVERY']),
    ('8.2', 'MemoryError when the pool is too small', '''
class BlockManager:
    def __init__(self, num_blocks, block_size):
        self.block_size = block_size
        self.free_blocks = list(range(num_blocks))
        self.ref_counts = [0] * num_blocks
        self.tables = {}
        self.lengths = {}

    def fork(self, parent, child):
        self.tables[child] = list(self.tables[parent])
        self.lengths[child] = self.lengths[parent]
        for b in self.tables[child]:
            self.ref_counts[b] += 1

    def allocate(self, seq, n_tokens):
        table = self.tables.get(seq, [])
        length = self.lengths.get(seq, 0)
        need = -(-(length + n_tokens) // self.block_size) - len(table)
        if need > len(self.free_blocks):
            raise MemoryError("out of blocks")
        for _ in range(max(need, 0)):
            b = self.free_blocks.pop(0)
            self.ref_counts[b] = 1
            table.append(b)
        self.tables[seq] = table
        self.lengths[seq] = length + n_tokens

    def free(self, seq):
        for b in self.tables.pop(seq):
            self.ref_counts[b] -= 1
            if self.ref_counts[b] == 0:
                self.free_blocks.append(b)
        del self.lengths[seq]
''', ['raise RuntimeError']),
    ('8.3', 'counts every agreement with .sum()', '''
def verify_draft(draft_tokens, target_logits):
    choice = target_logits.argmax(dim=-1)
    n = int((choice[:-1] == draft_tokens).sum())
    return torch.cat([draft_tokens[:n], choice[n:n + 1]])''', ['counts EVERY']),
    ('8.3', 'boolean mask of the agreeing tokens', '''
def verify_draft(draft_tokens, target_logits):
    choice = target_logits.argmax(dim=-1)
    agree = choice[:-1] == draft_tokens
    return torch.cat([draft_tokens[agree], choice[-1:]])''', ['after the first mismatch']),
    ('8.3', 'loop without break', '''
def verify_draft(draft_tokens, target_logits):
    choice = target_logits.argmax(dim=-1)
    out, correction = [], None
    for i in range(len(draft_tokens)):
        if choice[i] == draft_tokens[i]:
            out.append(int(draft_tokens[i]))
        elif correction is None:
            correction = int(choice[i])
    out.append(correction if correction is not None else int(choice[-1]))
    return torch.tensor(out)''', ['break']),
    ('8.3', 'compares with logits i + 1, corrects with logits n', '''
def verify_draft(draft_tokens, target_logits):
    choice = target_logits.argmax(dim=-1)
    n = 0
    while n < len(draft_tokens) and choice[n + 1] == draft_tokens[n]:
        n += 1
    return torch.cat([draft_tokens[:n], choice[n:n + 1]])''', ['alignment']),
    ('8.3', 'bonus from the row of the last draft token', '''
def verify_draft(draft_tokens, target_logits):
    choice = target_logits.argmax(dim=-1)
    k = len(draft_tokens)
    n = 0
    while n < k and choice[n] == draft_tokens[n]:
        n += 1
    if n == k:
        return torch.cat([draft_tokens, choice[k - 1:k]])
    return torch.cat([draft_tokens[:n], choice[n:n + 1]])''', ['row k']),
    ('8.3', 'argmin finds the first mismatch', '''
def verify_draft(draft_tokens, target_logits):
    choice = target_logits.argmax(dim=-1)
    agree = choice[:len(draft_tokens)] == draft_tokens
    n = int(agree.int().argmin())
    return torch.cat([draft_tokens[:n], choice[n:n + 1]])''', ['no False']),
]

IDS = [f"{ex}: {name}" for ex, name, _, _ in C]


def compile_wrong(ex_id: str, source: str):
    """The learner's function (or class) from its source, as a notebook cell would define it."""
    namespace = {"torch": torch, "math": math, "F": F, "nn": nn}
    source, filename = textwrap.dedent(source), f"<wrong answer to {ex_id}>"
    # As IPython does for a notebook cell: register the source, so tracebacks show the learner's line.
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102
    return namespace[EXERCISES[ex_id].function]


@functools.cache
def grade(ex_id: str, source: str):
    """The learner's report, graded once per test session: three tests (here and in test_class_report.py) read it."""
    return run_exercise(EXERCISES[ex_id], compile_wrong(ex_id, source))


def is_specific(text: str) -> bool:
    return any(marker in text for marker in SPECIFIC)


def test_every_exercise_has_at_least_four_mistakes():
    counts = {ex_id: sum(ex == ex_id for ex, _, _, _ in C) for ex_id in EXERCISES}
    assert all(n >= 4 for n in counts.values()), {k: n for k, n in counts.items() if n < 4}


@pytest.mark.parametrize("ex_id,name,source,words", C, ids=IDS)
def test_mistake_loses_points_and_is_named(ex_id, name, source, words):
    report = grade(ex_id, source)
    text = report.render()
    assert report.status != PASSED and report.points < EXERCISES[ex_id].points, text
    assert is_specific(text), f"no specific hint:\n{text}"
    for word in words:
        assert word.lower() in text.lower(), f"{word!r} not in:\n{text}"


def share_named() -> tuple[int, int, list[str]]:
    """How many catalogue entries get a specific message, of how many, and the names of the others."""
    unnamed = [f"{ex}: {name}" for ex, name, source, _ in C if not is_specific(grade(ex, source).render())]
    return len(C) - len(unnamed), len(C), unnamed


def test_share_with_a_specific_hint_is_at_least_95_percent():
    named, total, unnamed = share_named()
    print(f"\n{named} of {total} catalogued mistakes ({100 * named / total:.1f} %) get a specific hint")
    assert named / total >= 0.95, unnamed


if __name__ == "__main__":
    named, total, unnamed = share_named()
    print(f"{named} of {total} catalogued mistakes ({100 * named / total:.1f} %) get a specific hint; "
          f"{len(EXERCISES)} exercises")
    for entry in unnamed:
        print("  unnamed:", entry)
