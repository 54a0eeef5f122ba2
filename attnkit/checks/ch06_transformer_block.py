"""Exercises of chapter 6 (solutions/06_transformer_block.ipynb): positions, cross-attention, the block, sampling.

References: RoPE in the halves convention of Hugging Face's Llama (`rotate_half`: feature i pairs with
feature i + D/2), single-head cross-attention with a source padding mask (True = real source token),
GPT-2's pre-norm block written with torch.nn.functional, and top-p filtering as transformers'
`TopPLogitsWarper` computes it (tests/test_sampling.py and tests/test_block.py check the library
versions against Hugging Face). Shapes are chosen so that transposition bugs show: B > 1, H > 1,
L != S, D != Dv where it matters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnkit.checks.core import Case, Exercise, Misconception, randn

NOTEBOOK = "06_transformer_block.ipynb"


# --- 6.1 RoPE on the new tokens' queries and keys ------------------------------------------------


def _angles(L: int, D: int, start: int) -> torch.Tensor:
    """Angle of pair i at position start + l: (start + l) * 10000^(-2i/D)."""
    inv_freq = 1.0 / 10000 ** (torch.arange(0, D, 2, dtype=torch.float32) / D)  # (D/2,)
    pos = torch.arange(start, start + L, dtype=torch.float32)  # (L,)
    return pos[:, None] * inv_freq  # (L, D/2)


def _rotate_halves(x: torch.Tensor, start: int, sign: float = 1.0) -> torch.Tensor:
    L, D = x.shape[-2:]
    theta = _angles(L, D, start)
    cos, sin = theta.cos(), sign * theta.sin()  # (L, D/2)
    x1, x2 = x[..., : D // 2], x[..., D // 2:]  # pair i is (x1[i], x2[i]) = features (i, i + D/2)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (B, H, L, D)


def _rotate_interleaved(x: torch.Tensor, start: int) -> torch.Tensor:
    L, D = x.shape[-2:]
    theta = _angles(L, D, start)
    cos, sin = theta.cos(), theta.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]  # pairs (2i, 2i + 1): the original paper's layout
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out


def _rope_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int):
    return _rotate_halves(q, start), _rotate_halves(k, start), v


def _rope_cases(gen: torch.Generator) -> list[Case]:
    def case(name: str, B: int, H: int, L: int, D: int, start: int) -> Case:
        return Case(name, {"q": randn(gen, B, H, L, D), "k": randn(gen, B, H, L, D), "v": randn(gen, B, H, L, D),
                           "start": start})

    return [
        case("3 new tokens after 5 cached ones (start=5): q, k, v (2, 3, 3, 8)", 2, 3, 3, 8, 5),
        case("one new token at position 9: q, k, v (1, 2, 1, 6)", 1, 2, 1, 6, 9),
        case("the prompt, nothing cached (start=0): q, k, v (2, 2, 4, 4)", 2, 2, 4, 4, 0),
    ]


def _rope_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("B=2, H=2, L=2, D=16, start=20", {"q": randn(gen, 2, 2, 2, 16), "k": randn(gen, 2, 2, 2, 16),
                                                   "v": randn(gen, 2, 2, 2, 16), "start": 20})]


# --- 6.2 cross-attention with a source padding mask ----------------------------------------------


def _lengths_mask(lengths: list[int], S: int) -> torch.Tensor:
    return torch.arange(S) < torch.tensor(lengths)[:, None]  # (B, S): True for the real source tokens


def _cross_ref(x, memory, W_q, W_k, W_v, memory_mask):
    q, k, v = x @ W_q.T, memory @ W_k.T, memory @ W_v.T  # (B, L, D), (B, S, D), (B, S, Dv)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, L, S)
    scores = scores.masked_fill(~memory_mask[:, None, :], float("-inf"))  # hide padded source keys
    weights = scores.softmax(dim=-1)  # (B, L, S)
    return weights @ v, weights  # (B, L, Dv), (B, L, S)


def _cross_cases(gen: torch.Generator) -> list[Case]:
    def case(name: str, B: int, L: int, S: int, lengths: list[int], E: int = 6, D: int = 4, Dv: int = 5) -> Case:
        return Case(name, {"x": randn(gen, B, L, E), "memory": randn(gen, B, S, E), "W_q": randn(gen, D, E),
                           "W_k": randn(gen, D, E), "W_v": randn(gen, Dv, E), "memory_mask": _lengths_mask(lengths, S)})

    return [
        case("L = S = 4, source lengths [4, 2]", 2, 4, 4, [4, 2]),
        case("L=3 target tokens, S=5 source tokens, source lengths [5, 3]", 2, 3, 5, [5, 3]),
        case("one sentence, L=2, S=6, no padding", 1, 2, 6, [6]),
    ]


def _cross_hidden(gen: torch.Generator) -> list[Case]:
    B, L, S, E, D, Dv = 3, 5, 7, 8, 6, 3
    return [Case("B=3, L=5, S=7, source lengths [7, 1, 4]",
                 {"x": randn(gen, B, L, E), "memory": randn(gen, B, S, E), "W_q": randn(gen, D, E),
                  "W_k": randn(gen, D, E), "W_v": randn(gen, Dv, E), "memory_mask": _lengths_mask([7, 1, 4], S)})]


def _cross_swapped(x, memory, W_q, W_k, W_v, memory_mask):
    return _cross_ref(memory, x, W_q, W_k, W_v, memory_mask)  # queries from the source, keys from the target


def _cross_mask_on_queries(x, memory, W_q, W_k, W_v, memory_mask):
    q, k, v = x @ W_q.T, memory @ W_k.T, memory @ W_v.T
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, L, S)
    scores = scores.masked_fill(~memory_mask[:, :, None], float("-inf"))  # (B, S, 1): hides whole query rows
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def _cross_with_mask(make):
    def wrong(x, memory, W_q, W_k, W_v, memory_mask):
        return _cross_ref(x, memory, W_q, W_k, W_v, make(memory_mask))
    return wrong


def _cross_unscaled(x, memory, W_q, W_k, W_v, memory_mask):
    return _cross_ref(x * math.sqrt(W_q.shape[0]), memory, W_q, W_k, W_v, memory_mask)


# --- 6.3 the pre-norm transformer block ----------------------------------------------------------


def _block_params(gen: torch.Generator, E: int) -> dict[str, torch.Tensor]:
    """GPT-2's block weights in nn.Linear's (out, in) layout, drawn so that every part matters."""
    def lin(out_dim: int, in_dim: int) -> torch.Tensor:
        return randn(gen, out_dim, in_dim, scale=in_dim ** -0.5)

    return {"ln_1.weight": 1 + randn(gen, E, scale=0.2), "ln_1.bias": randn(gen, E, scale=0.2),
            "attn.c_attn.weight": lin(3 * E, E), "attn.c_attn.bias": randn(gen, 3 * E, scale=0.1),
            "attn.c_proj.weight": lin(E, E), "attn.c_proj.bias": randn(gen, E, scale=0.1),
            "ln_2.weight": 1 + randn(gen, E, scale=0.2), "ln_2.bias": randn(gen, E, scale=0.2),
            "mlp.c_fc.weight": lin(4 * E, E), "mlp.c_fc.bias": randn(gen, 4 * E, scale=0.1),
            "mlp.c_proj.weight": lin(E, 4 * E), "mlp.c_proj.bias": randn(gen, E, scale=0.1)}


def _ln(x: torch.Tensor, p: dict, name: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], p[f"{name}.weight"], p[f"{name}.bias"], eps=1e-5)


def _attn(x: torch.Tensor, p: dict, n_head: int, causal: bool = True) -> torch.Tensor:
    B, L, E = x.shape
    q, k, v = F.linear(x, p["attn.c_attn.weight"], p["attn.c_attn.bias"]).split(E, dim=-1)  # 3 x (B, L, E)
    q, k, v = (t.view(B, L, n_head, E // n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, L, D)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, L, D)
    return F.linear(y.transpose(1, 2).reshape(B, L, E), p["attn.c_proj.weight"], p["attn.c_proj.bias"])


def _mlp(x: torch.Tensor, p: dict, approximate: str = "tanh") -> torch.Tensor:
    h = F.gelu(F.linear(x, p["mlp.c_fc.weight"], p["mlp.c_fc.bias"]), approximate=approximate)  # (B, L, 4E)
    return F.linear(h, p["mlp.c_proj.weight"], p["mlp.c_proj.bias"])  # (B, L, E)


def _block_ref(x: torch.Tensor, params: dict, n_head: int) -> torch.Tensor:
    x = x + _attn(_ln(x, params, "ln_1"), params, n_head)  # (B, L, E)
    return x + _mlp(_ln(x, params, "ln_2"), params)  # (B, L, E)


def _block_cases(gen: torch.Generator) -> list[Case]:
    def case(name: str, B: int, L: int, E: int, H: int) -> Case:
        return Case(name, {"x": randn(gen, B, L, E), "params": _block_params(gen, E), "n_head": H})

    return [
        case("x (2, 5, 8), 2 heads", 2, 5, 8, 2),
        case("x (1, 4, 12), 3 heads", 1, 4, 12, 3),
        case("x (2, 3, 8), 4 heads", 2, 3, 8, 4),
    ]


def _block_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("x (3, 6, 16), 4 heads", {"x": randn(gen, 3, 6, 16), "params": _block_params(gen, 16), "n_head": 4})]


def _block_post_norm(x, params, n_head):
    x = _ln(x + _attn(x, params, n_head), params, "ln_1")
    return _ln(x + _mlp(x, params), params, "ln_2")


def _block_residual_after_norm(x, params, n_head):
    h = _ln(x, params, "ln_1")
    x = h + _attn(h, params, n_head)  # the residual carries the normalised x, not x
    h = _ln(x, params, "ln_2")
    return h + _mlp(h, params)


def _block_no_causal(x, params, n_head):
    x = x + _attn(_ln(x, params, "ln_1"), params, n_head, causal=False)
    return x + _mlp(_ln(x, params, "ln_2"), params)


def _block_exact_gelu(x, params, n_head):
    x = x + _attn(_ln(x, params, "ln_1"), params, n_head)
    return x + _mlp(_ln(x, params, "ln_2"), params, approximate="none")


def _block_one_norm(x, params, n_head):
    h = _ln(x, params, "ln_1")
    x = x + _attn(h, params, n_head)
    return x + _mlp(h, params)  # the MLP reads the block's input, not the stream after attention


# --- 6.4 top-p (nucleus) filtering after temperature ---------------------------------------------


def _top_p_probs(logits: torch.Tensor, p: float, keep_crossing: bool = True, renormalise: bool = True,
                 sorted_order: bool = False) -> torch.Tensor:
    probs = logits.softmax(dim=-1)  # (B, V)
    sorted_probs, order = probs.sort(dim=-1, descending=True)  # (B, V)
    cum = sorted_probs.cumsum(dim=-1)  # (B, V)
    if keep_crossing:
        keep = (cum - sorted_probs) < p  # the mass BEFORE the token is short of p: the crossing token stays
    else:
        keep = cum <= p
        keep[..., 0] = True  # at least the most likely token
    kept = sorted_probs * keep  # (B, V)
    if renormalise:
        kept = kept / kept.sum(dim=-1, keepdim=True)
    if sorted_order:
        return kept
    return torch.zeros_like(kept).scatter(-1, order, kept)  # back to vocabulary order


def _top_p_ref(logits: torch.Tensor, p: float, temperature: float) -> torch.Tensor:
    return _top_p_probs(logits / temperature, p)  # temperature first, then top-p on the result


def _top_p_cases(gen: torch.Generator) -> list[Case]:
    return [
        Case("logits (3, 10), p=0.9, temperature=0.7", {"logits": randn(gen, 3, 10, scale=2.0), "p": 0.9,
                                                          "temperature": 0.7}),
        Case("logits (2, 8), p=0.5, temperature=1.5", {"logits": randn(gen, 2, 8, scale=2.0), "p": 0.5,
                                                        "temperature": 1.5}),
        Case("logits (1, 6), p=0.75, temperature=1.0", {"logits": torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]]),
                                                         "p": 0.75, "temperature": 1.0}),
    ]


def _top_p_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("logits (4, 20), p=0.8, temperature=0.9", {"logits": randn(gen, 4, 20, scale=2.0), "p": 0.8,
                                                             "temperature": 0.9})]


def _top_p_then_temperature(logits, p, temperature):
    keep = _top_p_probs(logits, p) > 0  # (B, V): chosen on the untempered distribution
    return (logits / temperature).masked_fill(~keep, float("-inf")).softmax(dim=-1)


EXERCISES = [
    Exercise(
        id="6.1", notebook=NOTEBOOK, function="apply_rope",
        title="Rotate the new tokens' queries and keys by their absolute positions (RoPE); values unchanged",
        reference=_rope_ref, make_cases=_rope_cases, make_hidden_cases=_rope_hidden,
        output_names=("q_rotated", "k_rotated", "v"),
        misconceptions=(
            Misconception(lambda q, k, v, start: (_rotate_interleaved(q, start), _rotate_interleaved(k, start), v),
                          "You rotated interleaved pairs (2i, 2i + 1), the original paper's layout. This exercise "
                          "(like Hugging Face's Llama) pairs feature i with feature i + D/2: x1 = x[..., :D//2], "
                          "x2 = x[..., D//2:], and pair i turns by position * 10000^(-2i/D).",
                          name="interleaved-pairs"),
            Misconception(lambda q, k, v, start: _rope_ref(q, k, v, 0),
                          "You rotated the new tokens as if they were positions 0 .. L-1. After `start` cached "
                          "tokens they sit at positions start .. start + L - 1: with the wrong positions, their "
                          "dot products with the cached keys measure the wrong offsets.", name="positions-from-zero"),
            Misconception(lambda q, k, v, start: (*_rope_ref(q, k, v, start)[:2], _rotate_halves(v, start)),
                          "You rotated v too. RoPE rotates only q and k, so that q . k depends on their offset; "
                          "rotating the values would change what each token passes on. Return v unchanged.",
                          name="rotated-v"),
            Misconception(lambda q, k, v, start: (_rotate_halves(q, start, -1.0), _rotate_halves(k, start, -1.0), v),
                          "Your rotation turns the wrong way (the sign of sin is flipped): the first half becomes "
                          "x1 cos - x2 sin and the second x1 sin + x2 cos, i.e. x * cos + rotate_half(x) * sin "
                          "with rotate_half(x) = cat(-x2, x1).", name="rotation-sign"),
            Misconception(lambda q, k, v, start: _rope_ref(q, k, v, start + 1),
                          "Off by one: the first new token sits at position `start` (there are `start` cached "
                          "tokens at 0 .. start - 1), not start + 1.", name="off-by-one-position"),
        ),
    ),
    Exercise(
        id="6.2", notebook=NOTEBOOK, function="cross_attention",
        title="Single-head cross-attention: queries from the target, keys and values from the padded source",
        reference=_cross_ref, make_cases=_cross_cases, make_hidden_cases=_cross_hidden,
        output_names=("output", "weights"),
        misconceptions=(
            Misconception(_cross_swapped,
                          "Queries and keys are swapped: the queries come from the target `x` (one row of "
                          "weights per target token, (B, L, S)), the keys and values from the source `memory`.",
                          name="queries-keys-swapped"),
            Misconception(_cross_mask_on_queries,
                          "The mask is on the wrong axis: `memory_mask` (B, S) marks SOURCE positions, which are "
                          "the keys, the last axis of the (B, L, S) scores: memory_mask[:, None, :], not "
                          "memory_mask[:, :, None].", name="mask-on-queries"),
            Misconception(_cross_with_mask(lambda m: ~m),
                          "Your mask is inverted: True in `memory_mask` means a real source token that MAY be "
                          "attended to (as in F.scaled_dot_product_attention); block where it is False.",
                          name="inverted-mask"),
            Misconception(_cross_with_mask(torch.ones_like),
                          "Padded source positions still get weight: block the scores where memory_mask is False "
                          "(masked_fill with -inf) before the softmax.", name="mask-ignored"),
            Misconception(_cross_unscaled,
                          "Divide the scores by sqrt(D), D the query/key width (W_q.shape[0]).", name="unscaled"),
        ),
    ),
    Exercise(
        id="6.3", notebook=NOTEBOOK, function="transformer_block",
        title="GPT-2's pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x))",
        reference=_block_ref, make_cases=_block_cases, make_hidden_cases=_block_hidden,
        output_names=("output",), atol=1e-4,
        misconceptions=(
            Misconception(_block_post_norm,
                          "That is the post-norm block of the original Transformer, ln(x + attn(x)). GPT-2 is "
                          "pre-norm: normalise what goes INTO each sublayer and add its output to the raw stream: "
                          "x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)).", name="post-norm"),
            Misconception(_block_residual_after_norm,
                          "Your residual adds the sublayer's output to the NORMALISED x. The residual stream "
                          "carries x itself: x + attn(ln_1(x)), not ln_1(x) + attn(ln_1(x)).",
                          name="residual-after-norm"),
            Misconception(_block_one_norm,
                          "The MLP must read the stream AFTER attention, through its own LayerNorm: "
                          "x = x + attn(ln_1(x)), then x + mlp(ln_2(x)) with that new x.",
                          name="mlp-reads-block-input"),
            Misconception(_block_no_causal,
                          "Attention is not causal: a GPT block's token i may attend only to tokens 0 .. i "
                          "(is_causal=True with L == S).", name="not-causal"),
            Misconception(_block_exact_gelu,
                          "GPT-2's MLP uses GELU's tanh approximation: F.gelu(h, approximate='tanh').",
                          name="exact-gelu"),
        ),
    ),
    Exercise(
        id="6.4", notebook=NOTEBOOK, function="sample_top_p",
        title="The distribution top-p sampling draws from: temperature, then keep the nucleus, renormalise",
        reference=_top_p_ref, make_cases=_top_p_cases, make_hidden_cases=_top_p_hidden,
        output_names=("probs",),
        misconceptions=(
            Misconception(lambda logits, p, temperature: _top_p_probs(logits / temperature, p, keep_crossing=False),
                          "You dropped the token that crosses p. Top-p keeps the smallest set of most likely "
                          "tokens whose probabilities reach p, so the token that takes the running sum past p "
                          "stays: keep a token while the mass of the tokens BEFORE it is < p.",
                          name="drops-crossing-token"),
            Misconception(lambda logits, p, temperature: _top_p_probs(logits / temperature, p, renormalise=False),
                          "Your kept probabilities do not sum to 1: divide them by their sum (renormalise) "
                          "after dropping the tail.", name="not-renormalised"),
            Misconception(_top_p_then_temperature,
                          "Temperature comes first: divide the logits by the temperature, THEN choose the nucleus "
                          "on that distribution (a low temperature shrinks the nucleus, a high one grows it).",
                          name="temperature-after-top-p"),
            Misconception(lambda logits, p, temperature: _top_p_probs(logits / temperature, p, sorted_order=True),
                          "Your probabilities are in sorted order: scatter them back to the vocabulary's order "
                          "(entry j must be token j's probability).", name="sorted-order"),
            Misconception(lambda logits, p, temperature: _top_p_probs(logits, p),
                          "You ignored `temperature`: divide the logits by it before the softmax.",
                          name="temperature-ignored"),
        ),
    ),
]
