"""Exercises of chapter 4 (solutions/04_multi_head_attention.ipynb): multi-head attention.

The references are PyTorch's own: `F.multi_head_attention_forward` (what `nn.MultiheadAttention` runs)
and the module's own parameters, so an answer is compared with PyTorch, not with our library.
Shapes are chosen so that transposition bugs show: B > 1, L != S, L != H, D != H where it matters.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.checks.core import Case, Exercise, Misconception, randn

NOTEBOOK = "04_multi_head_attention.ipynb"



# --- 4.1 split_heads -----------------------------------------------------------------------------


def _split_ref(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    B, L, E = x.shape
    return x.reshape(B, L, num_heads, E // num_heads).permute(0, 2, 1, 3)  # (B, H, L, D)


def _split_cases(gen: torch.Generator) -> list[Case]:
    return [
        Case("x (2, 3, 8): batch of 2, L=3 tokens, E=8, num_heads=2 (D=4)",
             {"x": randn(gen, 2, 3, 8), "num_heads": 2}),
        Case("x (1, 5, 12): L=5 tokens, E=12, num_heads=3 (D=4)", {"x": randn(gen, 1, 5, 12), "num_heads": 3}),
        Case("x (3, 4, 6): L=4 tokens, E=6, num_heads=6 (D=1)", {"x": randn(gen, 3, 4, 6), "num_heads": 6}),
    ]


def _split_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("x (2, 7, 20), 4 heads", {"x": randn(gen, 2, 7, 20), "num_heads": 4}),
            Case("x (2, 3, 6), 1 head", {"x": randn(gen, 2, 3, 6), "num_heads": 1}),
            Case("a non-contiguous x (2, 5, 12) (a transposed tensor), 3 heads",
                 {"x": randn(gen, 2, 12, 5).transpose(1, 2), "num_heads": 3})]


def _split_view_bhld(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    B, L, E = x.shape
    return x.reshape(B, num_heads, L, E // num_heads)


def _split_no_transpose(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    B, L, E = x.shape
    return x.reshape(B, L, num_heads, E // num_heads)


def _split_strided(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    B, L, E = x.shape
    return x.reshape(B, L, E // num_heads, num_heads).permute(0, 3, 1, 2)  # head h = every H-th feature


# --- 4.2 merge_heads -----------------------------------------------------------------------------


def _merge_ref(x: torch.Tensor) -> torch.Tensor:
    B, H, L, D = x.shape
    return x.permute(0, 2, 1, 3).reshape(B, L, H * D)


def _merge_cases(gen: torch.Generator) -> list[Case]:
    return [
        Case("x (2, 2, 3, 4): batch of 2, H=2 heads, L=3 tokens, D=4 -> (2, 3, 8)", {"x": randn(gen, 2, 2, 3, 4)}),
        Case("x (1, 3, 5, 2): H=3 heads, L=5 tokens, D=2 -> (1, 5, 6)", {"x": randn(gen, 1, 3, 5, 2)}),
    ]


def _merge_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("x (3, 4, 6, 5)", {"x": randn(gen, 3, 4, 6, 5)}),
            Case("x (2, 1, 3, 4): one head", {"x": randn(gen, 2, 1, 3, 4)})]


def _merge_no_transpose(x: torch.Tensor) -> torch.Tensor:
    B, H, L, D = x.shape
    return x.reshape(B, L, H * D)


def _merge_interleaved(x: torch.Tensor) -> torch.Tensor:
    B, H, L, D = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, L, D * H)  # feature d of every head, then feature d + 1


# --- 4.3 a multi-head forward pass ---------------------------------------------------------------


def _mha_ref(query, key, value, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, attn_mask=None,
             batch_first=True):
    """PyTorch's own multi-head attention (the function nn.MultiheadAttention calls).

    With batch_first=False the inputs and the output are (L, B, E), PyTorch's default layout.
    """
    E = query.shape[-1]
    torch_mask = None if attn_mask is None else ~attn_mask  # torch: True = IGNORE; ours: True = may attend
    if not batch_first:  # (L, B, E) in and out: run the batch-first code on transposed copies
        out, weights = _mha_ref(query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1), W_q, W_k,
                                W_v, W_o, b_q, b_k, b_v, b_o, num_heads, attn_mask)
        return out.transpose(0, 1), weights  # (L, B, E), (B, L, S)
    out, weights = F.multi_head_attention_forward(
        query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1),  # (B, L, E) -> (L, B, E)
        E, num_heads,
        in_proj_weight=torch.cat([W_q, W_k, W_v]), in_proj_bias=torch.cat([b_q, b_k, b_v]),  # (3E, E), (3E,)
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
        out_proj_weight=W_o, out_proj_bias=b_o, training=False,
        need_weights=True, attn_mask=torch_mask, average_attn_weights=True,
    )
    return out.transpose(0, 1), weights  # (B, L, E), (B, L, S)


def _mha_variant(query, key, value, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, attn_mask=None,
                 batch_first=True, *, scale_by_width=False, split="right", merge="right", skip_out_proj=False,
                 weights="mean", invert_mask=False, transpose_weights=False, empty_rows_zero=False,
                 fill=float("-inf"), ignore_layout=False):
    """A multi-head forward pass with one known mistake switched on (each flag is one misconception)."""
    if not batch_first and not ignore_layout:  # the mistake, in PyTorch's (L, B, E) layout
        out, w = _mha_variant(query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1), W_q, W_k, W_v,
                              W_o, b_q, b_k, b_v, b_o, num_heads, attn_mask, scale_by_width=scale_by_width,
                              split=split, merge=merge, skip_out_proj=skip_out_proj, weights=weights,
                              invert_mask=invert_mask, transpose_weights=transpose_weights,
                              empty_rows_zero=empty_rows_zero, fill=fill)
        return out.transpose(0, 1), w
    B, L, E = query.shape
    S = key.shape[1]
    H, D = num_heads, E // num_heads

    def proj(x, W, b):
        return x @ (W if transpose_weights else W.T) + b

    def split_heads(x, n):
        if split == "view_bhld":
            return x.reshape(B, H, n, D)
        return x.reshape(B, n, H, D).transpose(1, 2)

    q = split_heads(proj(query, W_q, b_q), L)
    k = split_heads(proj(key, W_k, b_k), S)
    v = split_heads(proj(value, W_v, b_v), S)
    scores = q @ k.transpose(-2, -1) / math.sqrt(E if scale_by_width else D)  # (B, H, L, S)
    if attn_mask is not None:
        scores = scores.masked_fill(attn_mask if invert_mask else ~attn_mask, fill)
    w = torch.softmax(scores, dim=-1)
    if empty_rows_zero:
        w = w.nan_to_num(0.0)  # a fully masked row: zeros, as F.scaled_dot_product_attention gives
    out = w @ v  # (B, H, L, D)
    if merge == "no_transpose" or (split == "view_bhld" and merge == "matching"):
        out = out.reshape(B, L, E)
    else:
        out = out.transpose(1, 2).reshape(B, L, E)
    if not skip_out_proj:
        out = out @ (W_o if transpose_weights else W_o.T) + b_o
    if weights == "mean":
        w = w.mean(dim=1)
    elif weights == "sum":
        w = w.sum(dim=1)
    elif weights == "first":
        w = w[:, 0]
    return out, w


def _mha_cases(gen: torch.Generator) -> list[Case]:
    def params(E: int) -> dict[str, torch.Tensor]:
        s = 1.0 / math.sqrt(E)
        return {"W_q": randn(gen, E, E, scale=s), "W_k": randn(gen, E, E, scale=s),
                "W_v": randn(gen, E, E, scale=s), "W_o": randn(gen, E, E, scale=s),
                "b_q": randn(gen, E, scale=0.1), "b_k": randn(gen, E, scale=0.1),
                "b_v": randn(gen, E, scale=0.1), "b_o": randn(gen, E, scale=0.1)}

    x = randn(gen, 2, 4, 8)
    self_attn = {"query": x, "key": x, "value": x, **params(8), "num_heads": 2}
    cross = {"query": randn(gen, 2, 3, 12), "key": randn(gen, 2, 5, 12), "value": randn(gen, 2, 5, 12),
             **params(12), "num_heads": 3}
    y = randn(gen, 2, 5, 8)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    masked = {"query": y, "key": y, "value": y, **params(8), "num_heads": 4, "attn_mask": causal}
    keep = torch.ones(3, 5, dtype=torch.bool)
    keep[:, 3:] = False  # keys 3 and 4 are padding
    keep[1, 0] = False  # and query 1 may not see key 0
    padded = {"query": randn(gen, 2, 3, 8), "key": randn(gen, 2, 5, 8), "value": randn(gen, 2, 5, 8),
              **params(8), "num_heads": 2, "attn_mask": keep}
    seq_first = randn(gen, 5, 3, 8)  # (L, B, E)
    layout = {"query": seq_first, "key": seq_first, "value": seq_first, **params(8), "num_heads": 2,
              "batch_first": False}
    return [
        Case("self-attention: query = key = value (2, 4, 8): B=2, L=S=4, E=8, num_heads=2, no mask", self_attn),
        Case("cross-attention: query (2, 3, 12), key/value (2, 5, 12): L=3, S=5, E=12, num_heads=3, no mask",
             cross),
        Case("self-attention (2, 5, 8), num_heads=4, causal attn_mask (5, 5) bool, True = may attend", masked),
        Case("cross-attention: query (2, 3, 8), key/value (2, 5, 8), num_heads=2, attn_mask (3, 5) bool: keys "
             "3-4 are padding and query 1 may not see key 0", padded),
        Case("PyTorch's default layout, batch_first=False: query = key = value (5, 3, 8) is (L, B, E) with L=5, "
             "B=3; num_heads=2, no mask; output (L, B, E), weights (B, L, S)", layout),
    ]


def _mha_hidden(gen: torch.Generator) -> list[Case]:
    E, H, L, S = 16, 4, 2, 6
    s = 1.0 / math.sqrt(E)
    mask = torch.rand(L, S, generator=gen) > 0.5
    mask[:, 0] = True  # every query keeps at least one key
    return [Case("B=3, L=2, S=6, E=16, H=4, random bool mask",
                 {"query": randn(gen, 3, L, E), "key": randn(gen, 3, S, E), "value": randn(gen, 3, S, E),
                  "W_q": randn(gen, E, E, scale=s), "W_k": randn(gen, E, E, scale=s),
                  "W_v": randn(gen, E, E, scale=s), "W_o": randn(gen, E, E, scale=s),
                  "b_q": randn(gen, E, scale=0.1), "b_k": randn(gen, E, scale=0.1),
                  "b_v": randn(gen, E, scale=0.1), "b_o": randn(gen, E, scale=0.1),
                  "num_heads": H, "attn_mask": mask}),
            Case("batch_first=False: query (L=2, B=3, E=16), key/value (S=6, B=3, E=16), H=4, random bool mask",
                 {"query": randn(gen, L, 3, E), "key": randn(gen, S, 3, E), "value": randn(gen, S, 3, E),
                  "W_q": randn(gen, E, E, scale=s), "W_k": randn(gen, E, E, scale=s),
                  "W_v": randn(gen, E, E, scale=s), "W_o": randn(gen, E, E, scale=s),
                  "b_q": randn(gen, E, scale=0.1), "b_k": randn(gen, E, scale=0.1),
                  "b_v": randn(gen, E, scale=0.1), "b_o": randn(gen, E, scale=0.1),
                  "num_heads": H, "attn_mask": mask, "batch_first": False})]


def _only_with_mask(fn):
    def wrong(**inputs):
        if inputs.get("attn_mask") is None:
            raise ValueError("only applies with a mask")
        return fn(**inputs)
    return wrong


# --- 4.4 weights from nn.MultiheadAttention ------------------------------------------------------

_MHA_PARAMS = ("in_proj_weight", "in_proj_bias", "q_proj_weight", "k_proj_weight", "v_proj_weight",
               "out_proj_weight", "out_proj_bias")


def _build_torch_mha(inputs: dict) -> nn.MultiheadAttention:
    """The nn.MultiheadAttention a case describes, with the case's (random) weights and biases."""
    mha = nn.MultiheadAttention(inputs["embed_dim"], inputs["num_heads"], kdim=inputs.get("kdim"),
                                vdim=inputs.get("vdim"), batch_first=inputs.get("batch_first", False))
    state = {name.replace("out_proj_", "out_proj."): inputs[name] for name in _MHA_PARAMS if name in inputs}
    mha.load_state_dict(state, strict=True)
    return mha.eval()


def _call_with_mha(fn, inputs: dict):
    return fn(_build_torch_mha(inputs))


def _weights_ref(mha: nn.MultiheadAttention):
    E = mha.embed_dim
    if mha.in_proj_weight is not None:
        W_q, W_k, W_v = mha.in_proj_weight[:E], mha.in_proj_weight[E:2 * E], mha.in_proj_weight[2 * E:]
    else:
        W_q, W_k, W_v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
    b_q, b_k, b_v = mha.in_proj_bias[:E], mha.in_proj_bias[E:2 * E], mha.in_proj_bias[2 * E:]
    return W_q, W_k, W_v, mha.out_proj.weight, b_q, b_k, b_v, mha.out_proj.bias


def _weights_cases(gen: torch.Generator) -> list[Case]:
    def state(E: int, kdim: int | None = None, vdim: int | None = None) -> dict[str, torch.Tensor]:
        s = 1.0 / math.sqrt(E)
        d = {"in_proj_bias": randn(gen, 3 * E, scale=0.1), "out_proj_weight": randn(gen, E, E, scale=s),
             "out_proj_bias": randn(gen, E, scale=0.1)}
        if kdim is None and vdim is None:
            d["in_proj_weight"] = randn(gen, 3 * E, E, scale=s)
        else:
            d["q_proj_weight"] = randn(gen, E, E, scale=s)
            d["k_proj_weight"] = randn(gen, E, kdim or E, scale=s)
            d["v_proj_weight"] = randn(gen, E, vdim or E, scale=s)
        return d

    return [
        Case("nn.MultiheadAttention(embed_dim=8, num_heads=2): in_proj_weight (24, 8)",
             {"embed_dim": 8, "num_heads": 2, **state(8)}),
        Case("nn.MultiheadAttention(embed_dim=12, num_heads=3, batch_first=True): in_proj_weight (36, 12)",
             {"embed_dim": 12, "num_heads": 3, "batch_first": True, **state(12)}),
        Case("nn.MultiheadAttention(embed_dim=8, num_heads=2, kdim=6, vdim=5): in_proj_weight is None, "
             "q_proj_weight (8, 8), k_proj_weight (8, 6), v_proj_weight (8, 5)",
             {"embed_dim": 8, "num_heads": 2, "kdim": 6, "vdim": 5, **state(8, 6, 5)}),
    ]


def _weights_hidden(gen: torch.Generator) -> list[Case]:
    E = 16
    s = 1.0 / math.sqrt(E)
    return [Case("embed_dim=16, num_heads=4",
                 {"embed_dim": E, "num_heads": 4, "in_proj_weight": randn(gen, 3 * E, E, scale=s),
                  "in_proj_bias": randn(gen, 3 * E), "out_proj_weight": randn(gen, E, E, scale=s),
                  "out_proj_bias": randn(gen, E)})]


def _weights_interleaved(mha: nn.MultiheadAttention):
    E = mha.embed_dim
    rows = mha.in_proj_weight.reshape(E, 3, E)  # wrong: reads the stack as if q, k, v rows alternated
    bias = mha.in_proj_bias.reshape(E, 3)
    return rows[:, 0], rows[:, 1], rows[:, 2], mha.out_proj.weight, bias[:, 0], bias[:, 1], bias[:, 2], \
        mha.out_proj.bias


def _weights_transposed(mha: nn.MultiheadAttention):
    W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o = _weights_ref(mha)
    return W_q.T, W_k.T, W_v.T, W_o.T, b_q, b_k, b_v, b_o


def _weights_columns(mha: nn.MultiheadAttention):
    W_q, W_k, W_v = mha.in_proj_weight.chunk(3, dim=1)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
    return W_q, W_k, W_v, mha.out_proj.weight, b_q, b_k, b_v, mha.out_proj.bias


def _weights_kqv(mha: nn.MultiheadAttention):
    W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o = _weights_ref(mha)
    return W_k, W_q, W_v, W_o, b_k, b_q, b_v, b_o


# --- 4.5 find and fix: a multi-head attention class --------------------------------------------

_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


class BuggyMultiHeadAttention(nn.Module):
    """The class of exercise 4.5 as given to the learner: batch-first self-attention with two bugs."""

    def __init__(self, embed_dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x, attn_mask=None):
        B, L, E = x.shape
        H, D = self.num_heads, E // self.num_heads
        q = self.q_proj(x).view(B, L, H, D).transpose(1, 2)  # (B, H, L, D)
        k = self.k_proj(x).view(B, L, H, D).transpose(1, 2)  # (B, H, L, D)
        v = self.v_proj(x).view(B, L, H, D).transpose(1, 2)  # (B, H, L, D)
        scores = q @ k.transpose(-2, -1) / math.sqrt(E)  # (B, H, L, L)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask[:, None], float("-inf"))  # (B, 1, L, L)
        weights = torch.softmax(scores, dim=-1)  # (B, H, L, L)
        out = (weights @ v).view(B, L, E)  # (B, H, L, D) -> (B, L, E)
        return self.out_proj(out), weights.mean(dim=1)  # (B, L, E), (B, L, L)


class _TorchMultiHeadAttention(nn.Module):
    """The reference of 4.5: the same four nn.Linear layers, run through nn.MultiheadAttention itself."""

    def __init__(self, embed_dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        for name in _PROJECTIONS:
            setattr(self, name, nn.Linear(embed_dim, embed_dim))

    def forward(self, x, attn_mask=None):
        E, H = x.shape[-1], self.num_heads
        mha = nn.MultiheadAttention(E, H, batch_first=True).eval()
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]))
            mha.in_proj_bias.copy_(torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]))
            mha.out_proj.weight.copy_(self.out_proj.weight)
            mha.out_proj.bias.copy_(self.out_proj.bias)
        # torch: True = IGNORE, one (L, S) mask per batch element AND head: (B*H, L, S), batch-major
        ignore = None if attn_mask is None else (~attn_mask).repeat_interleave(H, dim=0)
        return mha(x, x, x, attn_mask=ignore, need_weights=True, average_attn_weights=True)


def _call_mha_class(cls, inputs: dict):
    """Build cls(embed_dim, num_heads), copy the case's weights into its four nn.Linear, run it on x."""
    E, H = inputs["x"].shape[-1], inputs["num_heads"]
    module = cls(E, H)
    if not isinstance(module, nn.Module):  # not a class of ours: judged on what it returned
        return module
    with torch.no_grad():
        for name in _PROJECTIONS:
            layer = getattr(module, name, None)
            if not isinstance(layer, nn.Linear):
                raise AttributeError(f"the checker copies its weights into `self.{name}`, an nn.Linear(E, E) "
                                     f"(found {type(layer).__name__}): keep the four layers of the given class "
                                     "and their names q_proj, k_proj, v_proj, out_proj")
            layer.weight.copy_(inputs[f"W_{name[0]}"])
            layer.bias.copy_(inputs[f"b_{name[0]}"])
    module.eval()
    with torch.no_grad():
        return module(inputs["x"], attn_mask=inputs["attn_mask"])


def _fix_cases(gen: torch.Generator) -> list[Case]:
    def case(name: str, B: int, L: int, E: int, H: int, *lengths: int) -> Case:
        s = 1.0 / math.sqrt(E)
        causal = torch.ones(L, L, dtype=torch.bool).tril()  # (L, S)
        padding = torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]  # (B, S), right padding
        return Case(name, {"x": randn(gen, B, L, E), "num_heads": H,
                           **{f"W_{c}": randn(gen, E, E, scale=s) for c in "qkvo"},
                           **{f"b_{c}": randn(gen, E, scale=0.1) for c in "qkvo"},
                           "attn_mask": causal[None] & padding[:, None, :]})  # (B, L, S), True = may attend
    return [case("padded causal batch: x (2, 5, 8), num_heads=2, lengths [5, 3], attn_mask (2, 5, 5)",
                 2, 5, 8, 2, 5, 3),
            case("x (3, 4, 12), num_heads=3, lengths [2, 4, 1], attn_mask (3, 4, 4)", 3, 4, 12, 3, 2, 4, 1)]


def _fix_hidden(gen: torch.Generator) -> list[Case]:
    E, L = 16, 6
    s = 1.0 / math.sqrt(E)
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    padding = torch.arange(L)[None, :] < torch.tensor([6, 2, 5, 1])[:, None]
    return [Case("B=4, L=6, E=16, num_heads=4", {"x": randn(gen, 4, L, E), "num_heads": 4,
                                                 **{f"W_{c}": randn(gen, E, E, scale=s) for c in "qkvo"},
                                                 **{f"b_{c}": randn(gen, E, scale=0.1) for c in "qkvo"},
                                                 "attn_mask": causal[None] & padding[:, None, :]})]


def _mha_class(*, scale_by_width=False, view_merge=False, invert=False, per_head=False):
    """A variant of the fixed class with some mistakes switched on."""
    class Variant(BuggyMultiHeadAttention):
        def forward(self, x, attn_mask=None):
            B, L, E = x.shape
            H, D = self.num_heads, E // self.num_heads
            q = self.q_proj(x).view(B, L, H, D).transpose(1, 2)
            k = self.k_proj(x).view(B, L, H, D).transpose(1, 2)
            v = self.v_proj(x).view(B, L, H, D).transpose(1, 2)
            scores = q @ k.transpose(-2, -1) / math.sqrt(E if scale_by_width else D)
            if attn_mask is not None:
                scores = scores.masked_fill((attn_mask if invert else ~attn_mask)[:, None], float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            out = weights @ v
            out = out.reshape(B, L, E) if view_merge else out.transpose(1, 2).reshape(B, L, E)
            return self.out_proj(out), (weights if per_head else weights.mean(dim=1))
    return Variant


# --- 4.6 stretch: remove one head (head ablation) -----------------------------------------------


def _ablate_ref(x, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, head):
    """Self-attention with head `head` removed: PyTorch's own layer with that head's D columns of W_O zeroed.

    The concatenation puts head h's output in features h*D .. (h+1)*D - 1, and W_O reads them through
    those columns; zeroing them removes exactly that head, and nothing else (b_o stays).
    """
    E = x.shape[-1]
    D = E // num_heads
    W_o = W_o.clone()
    W_o[:, head * D:(head + 1) * D] = 0.0  # (E, E): head `head` no longer reaches the output
    out, _ = F.multi_head_attention_forward(
        x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), E, num_heads,  # (L, B, E)
        in_proj_weight=torch.cat([W_q, W_k, W_v]), in_proj_bias=torch.cat([b_q, b_k, b_v]), bias_k=None,
        bias_v=None, add_zero_attn=False, dropout_p=0.0, out_proj_weight=W_o, out_proj_bias=b_o,
        training=False, need_weights=False)
    return out.transpose(0, 1)  # (B, L, E)


def _ablate_cases(gen: torch.Generator) -> list[Case]:
    def case(name: str, B: int, L: int, E: int, H: int, head: int) -> Case:
        s = 1.0 / math.sqrt(E)
        return Case(name, {"x": randn(gen, B, L, E), **{f"W_{c}": randn(gen, E, E, scale=s) for c in "qkvo"},
                           **{f"b_{c}": randn(gen, E, scale=0.1) for c in "qkvo"}, "num_heads": H, "head": head})
    return [case("x (2, 4, 8), num_heads=2, remove head 0", 2, 4, 8, 2, 0),
            case("x (1, 5, 12), num_heads=3, remove head 1", 1, 5, 12, 3, 1),
            case("x (2, 3, 12), num_heads=4, remove head 3 (the last)", 2, 3, 12, 4, 3)]


def _ablate_hidden(gen: torch.Generator) -> list[Case]:
    E, s = 16, 0.25
    return [Case("x (3, 6, 16), num_heads=4, remove head 2",
                 {"x": randn(gen, 3, 6, E), **{f"W_{c}": randn(gen, E, E, scale=s) for c in "qkvo"},
                  **{f"b_{c}": randn(gen, E, scale=0.1) for c in "qkvo"}, "num_heads": 4, "head": 2})]


def _ablate_with(x, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o, num_heads, head, *, how="columns"):
    B, L, E = x.shape
    H, D = num_heads, E // num_heads
    q, k, v = (_split_ref(x @ W.T + b, H) for W, b in ((W_q, b_q), (W_k, b_k), (W_v, b_v)))  # (B, H, L, D)
    if how == "queries":
        q = q.clone()
        q[:, head] = 0.0  # a uniform softmax, not a silent head
    heads = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, D)
    if how == "columns":
        heads = heads.clone()
        heads[:, head] = 0.0
        merged = _merge_ref(heads)
    elif how == "merge_no_transpose":
        heads = heads.clone()
        heads[:, head] = 0.0
        merged = heads.reshape(B, L, E)
    elif how == "rows":
        merged = _merge_ref(heads)
        W_o = W_o.clone()
        W_o[head * D:(head + 1) * D] = 0.0  # output features, not the head's inputs to W_O
    elif how == "strided":
        merged = _merge_ref(heads).clone()
        merged[..., head::H] = 0.0  # every H-th feature
    else:
        merged = _merge_ref(heads)
    out = merged @ W_o.T + b_o
    if how == "after_proj":
        out = out.clone()
        out[..., head * D:(head + 1) * D] = 0.0
    elif how == "no_bias":
        heads = heads.clone()
        heads[:, head] = 0.0
        out = _merge_ref(heads) @ W_o.T
    return out


_WRONG_ORDER_HINT = ("Split the width into heads first, x.reshape(B, L, H, D), THEN move the head axis forward "
                     "with .transpose(1, 2) (or .permute(0, 2, 1, 3)). Reshaping straight to (B, H, L, D) gives "
                     "the right shape but cuts across tokens: a 'head' then holds pieces of several tokens.")

_INVERTED_MASK_HINT = ("Your mask is inverted. Here a bool attn_mask is True where a query MAY ATTEND (as in "
                       "F.scaled_dot_product_attention), the opposite of nn.MultiheadAttention's "
                       "(True = ignore): fill the scores with -inf where the mask is False.")

EXERCISES = [
    Exercise(
        id="4.1", notebook=NOTEBOOK, function="split_heads",
        title="Split the model width E into num_heads heads of width D: (B, L, E) -> (B, H, L, D)",
        reference=_split_ref, make_cases=_split_cases, make_hidden_cases=_split_hidden,
        output_names=("heads",),
        misconceptions=(
            Misconception(_split_view_bhld, _WRONG_ORDER_HINT, name="view-to-bhld"),
            Misconception(_split_no_transpose,
                          "You cut E into (H, D) but left the heads in dimension 2: (B, L, H, D). Move them "
                          "in front of the tokens with .transpose(1, 2) so each head is a (L, D) matrix.",
                          name="no-transpose"),
            Misconception(_split_strided,
                          "Head h owns the contiguous slice of features h*D .. (h+1)*D - 1, not every H-th "
                          "feature: reshape to (B, L, H, D) (heads outside, D inside), not (B, L, D, H).",
                          name="strided-heads"),
        ),
    ),
    Exercise(
        id="4.2", notebook=NOTEBOOK, function="merge_heads",
        title="Concatenate the heads back into one row per token: (B, H, L, D) -> (B, L, H*D)",
        reference=_merge_ref, make_cases=_merge_cases, make_hidden_cases=_merge_hidden,
        output_names=("merged",),
        misconceptions=(
            Misconception(_merge_no_transpose,
                          "Move the heads back behind the tokens first, x.transpose(1, 2) -> (B, L, H, D), and "
                          "only then reshape to (B, L, H*D). Reshaping (B, H, L, D) directly mixes tokens.",
                          name="no-transpose"),
            Misconception(_merge_interleaved,
                          "Concatenation puts head 0's D numbers first, then head 1's: the order within a token "
                          "must be (H, D), i.e. permute to (B, L, H, D), not (B, L, D, H).", name="interleaved"),
            Misconception(lambda x: x.mean(dim=1),
                          "You averaged the heads. Multi-head attention concatenates them (width H*D); the "
                          "output projection W_O then mixes them.", name="averaged-heads"),
            Misconception(lambda x: x.sum(dim=1),
                          "You summed the heads. Multi-head attention concatenates them (width H*D); the "
                          "output projection W_O then mixes them.", name="summed-heads"),
        ),
    ),
    Exercise(
        id="4.3", notebook=NOTEBOOK, function="multi_head_attention",
        title="Multi-head attention forward pass, matching nn.MultiheadAttention (batch first)",
        reference=_mha_ref, make_cases=_mha_cases, make_hidden_cases=_mha_hidden,
        output_names=("output", "weights"),
        error_hints=(
            (r"is invalid for input of size",
             "The sizes given to reshape do not multiply to the tensor's entries. Read B, L, S and E from the "
             "tensors AFTER any layout change: with batch_first=False all three inputs are (·, B, E), so query, "
             "key AND value each need .transpose(0, 1); and do not mix up L and S.", "reshape-sizes"),
        ),
        misconceptions=(
            Misconception(partial(_mha_variant, scale_by_width=True),
                          "Each head is scaled by the square root of ITS width, D = E / num_heads, not of the "
                          "model width E: dividing by sqrt(E) makes every head's softmax too flat.",
                          name="scaled-by-model-width"),
            Misconception(partial(_mha_variant, split="view_bhld", merge="matching"), _WRONG_ORDER_HINT,
                          name="split-view-both-ways"),
            Misconception(partial(_mha_variant, split="view_bhld"), _WRONG_ORDER_HINT, name="split-view-to-bhld"),
            Misconception(partial(_mha_variant, merge="no_transpose"),
                          "When merging, transpose (B, H, L, D) -> (B, L, H, D) BEFORE reshaping to (B, L, E).",
                          name="merge-no-transpose"),
            Misconception(partial(_mha_variant, skip_out_proj=True),
                          "You forgot the output projection: after concatenating the heads, multiply by W_O "
                          "(out = concat @ W_o.T + b_o). It is what lets the heads' results mix.",
                          name="no-output-projection"),
            Misconception(partial(_mha_variant, weights="none"),
                          "Return the weights averaged over the heads, (B, L, S), as nn.MultiheadAttention "
                          "does by default (average_attn_weights=True): weights.mean(dim=1).", name="per-head-weights"),
            Misconception(partial(_mha_variant, weights="sum"),
                          "Average the heads' weights (mean over dim 1), do not sum them: each row must still "
                          "sum to 1.", name="summed-head-weights"),
            Misconception(partial(_mha_variant, weights="first"),
                          "You returned one head's weights; return the mean over all heads, (B, L, S).",
                          name="one-head-weights"),
            Misconception(_only_with_mask(partial(_mha_variant, invert_mask=True)),
                          _INVERTED_MASK_HINT, name="inverted-mask"),
            Misconception(_only_with_mask(partial(_mha_variant, invert_mask=True, empty_rows_zero=True)),
                          _INVERTED_MASK_HINT, name="inverted-mask-zero-rows"),
            Misconception(_only_with_mask(partial(_mha_variant, invert_mask=True, fill=-1e9)),  # uniform rows
                          _INVERTED_MASK_HINT, name="inverted-mask-finite-fill"),
            Misconception(partial(_mha_variant, transpose_weights=True),
                          "The weights use nn.Linear's layout (out_features, in_features): a projection is "
                          "x @ W.T + b, not x @ W + b.", name="untransposed-weights"),
            Misconception(partial(_mha_variant, ignore_layout=True),
                          "With batch_first=False the inputs are (L, B, E), PyTorch's default layout: your code "
                          "read them as (B, L, E), so tokens attended across the batch. Transpose them to "
                          "(B, L, E) first (query.transpose(0, 1)) and the output back to (L, B, E) at the end; "
                          "the weights stay (B, L, S).", name="batch-first-ignored"),
        ),
    ),
    Exercise(
        id="4.4", notebook=NOTEBOOK, function="weights_from_torch",
        title="Read W_q, W_k, W_v, W_o and the biases out of an nn.MultiheadAttention",
        reference=_weights_ref, make_cases=_weights_cases, make_hidden_cases=_weights_hidden,
        call=_call_with_mha,
        output_names=("W_q", "W_k", "W_v", "W_o", "b_q", "b_k", "b_v", "b_o"),
        error_hints=(
            (r"'NoneType' object (has no attribute|is not subscriptable)",
             "mha.in_proj_weight is None when the layer was built with kdim or vdim different from embed_dim: "
             "then the three matrices live in mha.q_proj_weight, mha.k_proj_weight and mha.v_proj_weight "
             "(check `mha.in_proj_weight is None`, or mha._qkv_same_embed_dim).", "separate-weights"),
        ),
        misconceptions=(
            Misconception(_weights_interleaved,
                          "in_proj_weight stacks the three matrices one after another along dim 0: rows "
                          "0..E-1 are W_q, rows E..2E-1 are W_k, rows 2E..3E-1 are W_v (and the same for "
                          "in_proj_bias). Slice or .chunk(3, dim=0); do not reshape to (E, 3, E).", name="interleaved"),
            Misconception(_weights_columns,
                          "in_proj_weight is (3E, E): the three matrices are stacked along dim 0 (rows), "
                          "so split along dim 0, not dim 1.", name="split-columns"),
            Misconception(_weights_transposed,
                          "Keep PyTorch's nn.Linear layout (out_features, in_features): return the matrices "
                          "as they are stored, without .T.", name="transposed"),
            Misconception(_weights_kqv, "The stacking order is q, k, v: W_q comes first.", name="kqv-order"),
        ),
    ),
    Exercise(
        id="4.5", notebook=NOTEBOOK, function="FixedMultiHeadAttention",
        title="Find and fix: a multi-head attention class that disagrees with nn.MultiheadAttention",
        reference=_TorchMultiHeadAttention, make_cases=_fix_cases, make_hidden_cases=_fix_hidden,
        call=_call_mha_class, output_names=("output", "weights"),
        error_hints=(
            (r"the checker copies its weights into",
             "Start from the given class and change only its forward pass: the checker builds "
             "FixedMultiHeadAttention(embed_dim, num_heads) and loads the weights into its four nn.Linear layers "
             "by name.", "changed-init"),
        ),
        misconceptions=(
            Misconception(BuggyMultiHeadAttention,
                          "This is still the given class: it has two bugs. One is in the scale of the scores "
                          "(whose width?), one where the heads are put back together (compare with your "
                          "merge_heads of exercise 4.2).", name="unchanged"),
            Misconception(_mha_class(view_merge=True),
                          "The scale is fixed; one bug is left: `.view(B, L, E)` on the (B, H, L, D) head "
                          "outputs keeps the right shape but cuts across tokens. Move the heads behind the "
                          "tokens first: .transpose(1, 2) -> (B, L, H, D), then .reshape(B, L, E).",
                          name="view-merge-left"),
            Misconception(_mha_class(scale_by_width=True),
                          "The heads are merged right now; one bug is left: each head is scaled by the square "
                          "root of ITS width D = E / num_heads, not of the model width E.", name="scale-left"),
            Misconception(_mha_class(invert=True),
                          "Your mask is inverted: attn_mask here is True where a query MAY attend (the "
                          "opposite of nn.MultiheadAttention's), so fill -inf where it is False.",
                          name="inverted-mask"),
            Misconception(_mha_class(per_head=True),
                          "Return the weights averaged over the heads, (B, L, L), as nn.MultiheadAttention "
                          "does by default: weights.mean(dim=1).", name="per-head-weights"),
        ),
    ),
    Exercise(
        id="4.6", notebook=NOTEBOOK, function="ablate_head",
        title="Stretch: multi-head self-attention with one head removed (its output zeroed before W_O)",
        reference=_ablate_ref, make_cases=_ablate_cases, make_hidden_cases=_ablate_hidden, output_names=("output",),
        misconceptions=(
            Misconception(partial(_ablate_with, how="strided"),
                          "Head h's D outputs sit side by side in the concatenation, features h*D .. (h+1)*D - 1 "
                          "(head 0 first), not every H-th feature: remove that contiguous block (the same as "
                          "zeroing W_O's columns h*D .. (h+1)*D - 1).", name="strided-head"),
            Misconception(partial(_ablate_with, how="queries"),
                          "Zeroing a head's queries does not silence it: its scores become 0, its softmax "
                          "uniform, and it still averages the values. Zero the head's OUTPUT, before W_O.",
                          name="zeroed-queries"),
            Misconception(partial(_ablate_with, how="after_proj"),
                          "You zeroed D features of the final output, after W_O has mixed all the heads into "
                          "every feature. Remove the head before the output projection: zero its (B, L, D) "
                          "output, or W_O's columns h*D .. (h+1)*D - 1.", name="zeroed-output"),
            Misconception(partial(_ablate_with, how="rows"),
                          "You zeroed ROWS h*D .. (h+1)*D - 1 of W_O: those make output features. W_O reads head "
                          "h through its COLUMNS h*D .. (h+1)*D - 1 (out = merged @ W_o.T: column j multiplies "
                          "merged feature j); or simply zero the head's output before merging.", name="zeroed-wo-rows"),
            Misconception(partial(_ablate_with, how="merge_no_transpose"),
                          "When merging, transpose (B, H, L, D) -> (B, L, H, D) BEFORE reshaping to (B, L, E): "
                          "reshaping directly mixes tokens.", name="merge-no-transpose"),
            Misconception(partial(_ablate_with, how="no_bias"),
                          "Removing a head removes its contribution through W_O, not the output bias b_o: "
                          "keep + b_o.", name="dropped-bias"),
            Misconception(partial(_ablate_with, how="none"),
                          "Nothing was removed: this is the full multi-head output. Zero head `head`'s output "
                          "(B, L, D) before merging and projecting.", name="nothing-removed"),
        ),
    ),
]
