"""Exercises of chapter 5 (solutions/05_kv_cache.ipynb): decoding with a key/value cache.

References: `torch.cat` for the cache update, `F.scaled_dot_product_attention` with an explicit
bottom-right causal mask for a cached attention step, and for generation a cached greedy decoder
whose tokens equal those of decoding without a cache (tests/ check that on every case).
Shapes are chosen so that transposition bugs show: B > 1, H > 1, L != S, D != H where it matters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnkit.checks.core import Case, Exercise, Misconception, randn

NOTEBOOK = "05_kv_cache.ipynb"



# --- 5.1 cache update ----------------------------------------------------------------------------


def _update_ref(k_cache: torch.Tensor, v_cache: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor):
    return torch.cat([k_cache, k_new], dim=2), torch.cat([v_cache, v_new], dim=2)  # (B, H, S + L, D)


def _update_cases(gen: torch.Generator) -> list[Case]:
    def case(name: str, B: int, H: int, S: int, L: int, D: int, Dv: int) -> Case:
        return Case(name, {"k_cache": randn(gen, B, H, S, D), "v_cache": randn(gen, B, H, S, Dv),
                           "k_new": randn(gen, B, H, L, D), "v_new": randn(gen, B, H, L, Dv)})

    return [
        case("cache of S=2 + L=2 new tokens: k (2, 3, 2, 2) + (2, 3, 2, 2)", 2, 3, 2, 2, 2, 2),
        case("cache of S=5 + one new token: k (2, 3, 5, 4) + (2, 3, 1, 4)", 2, 3, 5, 1, 4, 4),
        case("empty cache (S=0) + a prompt of L=4: k (1, 2, 0, 3) + (1, 2, 4, 3), values D=5", 1, 2, 0, 4, 3, 5),
    ]


def _update_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("B=3, H=1, S=7, L=1, D=5", {"k_cache": randn(gen, 3, 1, 7, 5), "v_cache": randn(gen, 3, 1, 7, 5),
                                             "k_new": randn(gen, 3, 1, 1, 5), "v_new": randn(gen, 3, 1, 1, 5)}),
            Case("B=2, H=2, S=3, L=3, D=2", {"k_cache": randn(gen, 2, 2, 3, 2), "v_cache": randn(gen, 2, 2, 3, 2),
                                             "k_new": randn(gen, 2, 2, 3, 2), "v_new": randn(gen, 2, 2, 3, 2)})]


def _update_on(dim: int):
    def wrong(k_cache, v_cache, k_new, v_new):
        return torch.cat([k_cache, k_new], dim=dim), torch.cat([v_cache, v_new], dim=dim)
    return wrong


def _update_new_first(k_cache, v_cache, k_new, v_new):
    return torch.cat([k_new, k_cache], dim=2), torch.cat([v_new, v_cache], dim=2)


# --- 5.2 one cached attention step ---------------------------------------------------------------


def _bottom_right(L: int, S: int, shift: int = 0) -> torch.Tensor:
    """True where query i (at position S - L + i) may attend key j; `shift` moves the diagonal."""
    return torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L + shift)


def _cached_ref(q_new: torch.Tensor, k_all: torch.Tensor, v_all: torch.Tensor) -> torch.Tensor:
    L, S = q_new.shape[-2], k_all.shape[-2]
    return F.scaled_dot_product_attention(q_new, k_all, v_all, attn_mask=_bottom_right(L, S))


def _cached_cases(gen: torch.Generator) -> list[Case]:
    def case(name: str, B: int, H: int, L: int, S: int, D: int) -> Case:
        return Case(name, {"q_new": randn(gen, B, H, L, D), "k_all": randn(gen, B, H, S, D),
                           "v_all": randn(gen, B, H, S, D)})

    return [
        case("one new token: q_new (2, 2, 1, 4) against S=6 keys (5 cached + its own)", 2, 2, 1, 6, 4),
        case("a chunk of L=3 new tokens after 4 cached ones: q_new (1, 2, 3, 4), k_all (1, 2, 7, 4)", 1, 2, 3, 7, 4),
        case("prefill (empty cache): L=S=5, q_new (2, 1, 5, 3)", 2, 1, 5, 5, 3),
    ]


def _cached_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("B=2, H=3, L=4, S=9, D=8", {"q_new": randn(gen, 2, 3, 4, 8), "k_all": randn(gen, 2, 3, 9, 8),
                                             "v_all": randn(gen, 2, 3, 9, 8)}),
            Case("B=1, H=2, L=2, S=3, D=2", {"q_new": randn(gen, 1, 2, 2, 2), "k_all": randn(gen, 1, 2, 3, 2),
                                             "v_all": randn(gen, 1, 2, 3, 2)})]


def _cached_with(make_mask):
    """A cached attention step that masks with `make_mask(L, S)` instead of the bottom-right causal mask."""
    def wrong(q_new, k_all, v_all):
        L, S = q_new.shape[-2], k_all.shape[-2]
        return F.scaled_dot_product_attention(q_new, k_all, v_all, attn_mask=make_mask(L, S))
    return wrong


# --- 5.3 greedy decoding with a cache ------------------------------------------------------------

_MODEL_KEYS = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")


def _tiny_gpt(inputs: dict):
    """The small GPT a case describes, seeded, with weights drawn wider than GPT-2's initialisation.

    With GPT-2's std 0.02 an untrained model barely looks at the context (its next token depends on
    the current one only), so a decoder that feeds the wrong context could still pass; and its top two
    logits lie so close that float rounding could flip a greedy choice. Unit-variance embeddings and
    1/sqrt(fan_in) projections make every position matter and keep the logits far apart.
    """
    from attnkit.gpt import GPT, GPTConfig

    with torch.random.fork_rng():
        torch.manual_seed(inputs["model_seed"])
        model = GPT(GPTConfig(**{k: inputs[k] for k in _MODEL_KEYS}))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.startswith(("transformer.wte", "transformer.wpe")):
                    p.normal_(0.0, 1.0)
                elif p.dim() == 2:  # nn.Linear (out, in)
                    p.normal_(0.0, p.shape[1] ** -0.5)
                elif name.endswith("bias"):
                    p.normal_(0.0, 0.1)
    return model.eval()


def _call_decode(fn, inputs: dict):
    """Decode two prompts one after the other with the same model and the same (reused) cache.

    Every model call of the second prompt is recorded: `used_the_cache` is 1 only if they were the
    prompt once into an empty `cache`, then one token per call into the same cache.
    """
    from attnkit.kv_cache import KVCache

    model = _tiny_gpt(inputs)
    config = model.config
    first, second = inputs["first_prompt"], inputs["second_prompt"]
    n = inputs["max_new_tokens"]
    cache = KVCache(config.n_layer, first.shape[0], config.n_head, config.block_size,
                    config.n_embd // config.n_head)
    calls = []  # per model call: (tokens fed, was `cache` passed, positions it held before)

    def record(module, args, kwargs):
        idx = args[0] if args else kwargs.get("idx")
        given = args[1] if len(args) > 1 else kwargs.get("cache")
        calls.append((idx.shape[-1] if isinstance(idx, torch.Tensor) else -1, given is cache, cache.n_seen))

    tokens_1 = fn(model, cache, first, n)
    hook = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        tokens_2 = fn(model, cache, second, n)
    finally:
        hook.remove()
    fed = [length for length, _, _ in calls]
    used = (len(calls) > 0 and all(given for _, given, _ in calls) and calls[0][2] == 0
            and fed[0] == second.shape[1] and all(length == 1 for length in fed[1:]))
    return tokens_1, tokens_2, torch.tensor(int(used))


def _decode_ref(model, cache, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    cache.reset()  # the cache may hold an earlier prompt
    tokens = idx
    with torch.no_grad():
        logits = model(idx, cache, last_only=True)  # prefill: (B, 1, V)
        for step in range(max_new_tokens):
            next_token = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
            tokens = torch.cat([tokens, next_token], dim=1)  # (B, L + step + 1)
            if step + 1 < max_new_tokens:
                logits = model(next_token, cache, last_only=True)  # one position: (B, 1, V)
    return tokens


def _decode_cases(gen: torch.Generator) -> list[Case]:
    model = {"vocab_size": 40, "block_size": 48, "n_layer": 2, "n_head": 2, "n_embd": 16}

    def prompt(B: int, L: int) -> torch.Tensor:
        return torch.randint(0, model["vocab_size"], (B, L), generator=gen)

    return [
        Case("GPT(n_layer=2, n_head=2, n_embd=16, vocab 40), prompts (1, 5) then (1, 3), 6 new tokens each",
             {**model, "model_seed": 1, "first_prompt": prompt(1, 5), "second_prompt": prompt(1, 3),
              "max_new_tokens": 6}),
        Case("same sizes, batch of 2: prompts (2, 4) then (2, 6), 5 new tokens each",
             {**model, "model_seed": 2, "first_prompt": prompt(2, 4), "second_prompt": prompt(2, 6),
              "max_new_tokens": 5}),
        Case("a one-token prompt (1, 1) after a (1, 7) one, 8 new tokens each",
             {**model, "model_seed": 3, "first_prompt": prompt(1, 7), "second_prompt": prompt(1, 1),
              "max_new_tokens": 8}),
    ]


def _decode_hidden(gen: torch.Generator) -> list[Case]:
    model = {"vocab_size": 50, "block_size": 40, "n_layer": 3, "n_head": 4, "n_embd": 32}
    small = {"vocab_size": 30, "block_size": 12, "n_layer": 1, "n_head": 2, "n_embd": 8}
    return [Case("3 layers, 4 heads, batch of 3",
                 {**model, "model_seed": int(torch.randint(0, 10_000, (), generator=gen)),
                  "first_prompt": torch.randint(0, 50, (3, 6), generator=gen),
                  "second_prompt": torch.randint(0, 50, (3, 2), generator=gen), "max_new_tokens": 7}),
            Case("prompt + new tokens = block_size exactly (12)",
                 {**small, "model_seed": int(torch.randint(0, 10_000, (), generator=gen)),
                  "first_prompt": torch.randint(0, 30, (2, 9), generator=gen),
                  "second_prompt": torch.randint(0, 30, (2, 5), generator=gen), "max_new_tokens": 3})]


def _decode_no_cache(model, cache, idx, max_new_tokens):
    tokens = idx
    with torch.no_grad():
        for _ in range(max_new_tokens):
            next_token = model(tokens)[:, -1].argmax(dim=-1, keepdim=True)  # the whole sequence again
            tokens = torch.cat([tokens, next_token], dim=1)
    return tokens


def _decode_no_reset(model, cache, idx, max_new_tokens):
    tokens = idx
    with torch.no_grad():
        logits = model(idx, cache, last_only=True)
        for _ in range(max_new_tokens):
            next_token = logits[:, -1].argmax(dim=-1, keepdim=True)
            tokens = torch.cat([tokens, next_token], dim=1)
            logits = model(next_token, cache, last_only=True)
    return tokens


def _decode_refeed_last(model, cache, idx, max_new_tokens):
    cache.reset()
    tokens = idx
    with torch.no_grad():
        model(idx, cache)  # prefill the whole prompt ...
        last = idx[:, -1:]  # ... then feed its last token again: every position is one too far
        for _ in range(max_new_tokens):
            next_token = model(last, cache, last_only=True)[:, -1].argmax(dim=-1, keepdim=True)
            tokens = torch.cat([tokens, next_token], dim=1)
            last = next_token
    return tokens


def _decode_prefill_without_cache(model, cache, idx, max_new_tokens):
    cache.reset()
    tokens = idx
    with torch.no_grad():
        logits = model(idx)  # the prompt runs, but its keys and values never reach the cache
        for _ in range(max_new_tokens):
            next_token = logits[:, -1].argmax(dim=-1, keepdim=True)
            tokens = torch.cat([tokens, next_token], dim=1)
            logits = model(next_token, cache, last_only=True)
    return tokens


def _decode_whole_sequence(model, cache, idx, max_new_tokens):
    cache.reset()
    tokens = idx
    with torch.no_grad():
        for _ in range(max_new_tokens):
            next_token = model(tokens, cache, last_only=True)[:, -1].argmax(dim=-1, keepdim=True)
            tokens = torch.cat([tokens, next_token], dim=1)
    return tokens


# --- 5.4 grouped-query attention ----------------------------------------------------------------


def _gqa_ref(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
             attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    # PyTorch's own GQA: query head h uses key/value head h // (H // H_kv)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, enable_gqa=True)


def _gqa_cases(gen: torch.Generator) -> list[Case]:
    def case(name: str, B: int, H: int, H_kv: int, L: int, S: int, D: int, Dv: int, mask: bool = False) -> Case:
        inputs = {"query": randn(gen, B, H, L, D), "key": randn(gen, B, H_kv, S, D),
                  "value": randn(gen, B, H_kv, S, Dv)}
        if mask:
            inputs["attn_mask"] = torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L)
        return Case(name, inputs)
    return [case("H=4 query heads, H_kv=2 key/value heads: query (2, 4, 3, 5), key (2, 2, 6, 5), value (2, 2, 6, 7)",
                 2, 4, 2, 3, 6, 5, 7),
            case("H=6, H_kv=3 (groups of 2), one new token against S=5 cached keys, causal attn_mask (1, 5)",
                 1, 6, 3, 1, 5, 4, 4, mask=True),
            case("multi-query attention: H=3, H_kv=1, query (2, 3, 4, 2), key/value (2, 1, 4, 2)",
                 2, 3, 1, 4, 4, 2, 2)]


def _gqa_hidden(gen: torch.Generator) -> list[Case]:
    mask = torch.ones(3, 7, dtype=torch.bool).tril(diagonal=4)
    return [Case("H=8, H_kv=2, L=3, S=7, causal mask", {"query": randn(gen, 2, 8, 3, 4), "key": randn(gen, 2, 2, 7, 4),
                                                        "value": randn(gen, 2, 2, 7, 6), "attn_mask": mask}),
            Case("H = H_kv = 2 (plain multi-head)", {"query": randn(gen, 1, 2, 2, 3), "key": randn(gen, 1, 2, 4, 3),
                                                     "value": randn(gen, 1, 2, 4, 3)})]


def _gqa_with(expand):
    def wrong(query, key, value, attn_mask=None):
        g = query.shape[1] // key.shape[1]
        return F.scaled_dot_product_attention(query, expand(key, g), expand(value, g), attn_mask=attn_mask)
    return wrong


def _gqa_keys_only(query, key, value, attn_mask=None):
    g = query.shape[1] // key.shape[1]
    return F.scaled_dot_product_attention(query, key.repeat_interleave(g, dim=1), value.repeat(1, g, 1, 1),
                                          attn_mask=attn_mask)


def _gqa_top_left(query, key, value, attn_mask=None):
    if attn_mask is None:
        raise ValueError("only applies with a mask")
    g = query.shape[1] // key.shape[1]
    return F.scaled_dot_product_attention(query, key.repeat_interleave(g, dim=1), value.repeat_interleave(g, dim=1),
                                          is_causal=True)


def _gqa_keys_without_group_axis(query, key, value, attn_mask=None):
    B, H, L, D = query.shape
    q = query.reshape(B, key.shape[1], H // key.shape[1], L, D)  # (B, H_kv, G, L, D)
    return F.scaled_dot_product_attention(q, key, value, attn_mask=attn_mask).reshape(B, H, L, -1)


def _gqa_averaged_queries(query, key, value, attn_mask=None):
    B, H, L, D = query.shape
    q = query.reshape(B, key.shape[1], H // key.shape[1], L, D).mean(dim=2)  # one query per group
    return F.scaled_dot_product_attention(q, key, value, attn_mask=attn_mask)


# --- 5.5 stretch: positions and mask for a chunk of new tokens ----------------------------------


def _chunk_ref(n_cached: int, L: int) -> tuple[torch.Tensor, torch.Tensor]:
    positions = torch.arange(n_cached, n_cached + L)  # (L,): the new tokens come after the cached ones
    S = n_cached + L
    mask = torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L)  # (L, S), bottom-right aligned
    return positions, mask


def _chunk_cases(gen: torch.Generator) -> list[Case]:
    return [Case("3 cached positions, a chunk of L=2 new tokens", {"n_cached": 3, "L": 2}),
            Case("empty cache, a prompt of L=4 (the prefill)", {"n_cached": 0, "L": 4}),
            Case("5 cached positions, one new token", {"n_cached": 5, "L": 1})]


def _chunk_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("n_cached=7, L=3", {"n_cached": 7, "L": 3}), Case("n_cached=1, L=1", {"n_cached": 1, "L": 1})]


def _chunk_with(positions, mask):
    def wrong(n_cached, L):
        return positions(n_cached, L), mask(n_cached, L)
    return wrong


def _right_positions(n, L):
    return torch.arange(n, n + L)


def _right_mask(n, L):
    return _chunk_ref(n, L)[1]


EXERCISES = [
    Exercise(
        id="5.1", notebook=NOTEBOOK, function="cache_update",
        title="Append the new keys and values to the cache along the sequence axis",
        reference=_update_ref, make_cases=_update_cases, make_hidden_cases=_update_hidden,
        output_names=("k_all", "v_all"),
        misconceptions=(
            Misconception(_update_on(1), "You concatenated along the heads (dim 1). Positions are dim 2 "
                                         "(or -2) of (B, H, S, D): the cache grows in S, H stays the same.",
                          name="cat-heads"),
            Misconception(_update_on(3), "You concatenated along the features (dim 3 / -1). The cache grows "
                                         "in the sequence dimension, dim 2 (or -2) of (B, H, S, D).",
                          name="cat-features"),
            Misconception(_update_on(0), "You concatenated along the batch (dim 0). The cache grows in the "
                                         "sequence dimension, dim 2 (or -2) of (B, H, S, D).", name="cat-batch"),
            Misconception(_update_new_first,
                          "Keep positions in order: cached keys first, then the new ones. The causal mask "
                          "assumes key j is position j, so the newest key must be last.", name="new-first"),
            Misconception(lambda k_cache, v_cache, k_new, v_new: (k_new, v_new),
                          "You returned only the new keys and values: the point of the cache is to keep "
                          "every earlier one too, so the new queries can attend to them.", name="new-only"),
        ),
    ),
    Exercise(
        id="5.2", notebook=NOTEBOOK, function="cached_attention",
        title="Attention of L new queries against all S cached keys, causal mask aligned bottom-right",
        reference=_cached_ref, make_cases=_cached_cases, make_hidden_cases=_cached_hidden,
        output_names=("output",),
        misconceptions=(
            Misconception(lambda q_new, k_all, v_all: F.scaled_dot_product_attention(q_new, k_all, v_all,
                                                                                     is_causal=True),
                          "is_causal=True (and tril(ones(L, S))) is aligned TOP-LEFT: with L < S it lets the "
                          "first new query see only key 0. The new queries are the LAST L of S positions: "
                          "query i sits at position S - L + i and sees keys 0 .. S - L + i, i.e. "
                          "torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L).", name="top-left"),
            Misconception(lambda q_new, k_all, v_all: F.scaled_dot_product_attention(q_new, k_all, v_all),
                          "Without a mask, each new query sees the new tokens after it. With one new token "
                          "that is fine; with L > 1, mask with tril(diagonal=S - L).", name="no-mask"),
            Misconception(_cached_with(lambda L, S: _bottom_right(L, S, shift=-1)),
                          "Off by one: each new token must see its own key. Query i is at position S - L + i, "
                          "so use tril(diagonal=S - L), not S - L - 1.", name="diagonal-too-low"),
            Misconception(_cached_with(lambda L, S: _bottom_right(L, S, shift=+1)),
                          "Off by one: query i (position S - L + i) may see keys up to S - L + i, not one more: "
                          "tril(diagonal=S - L).", name="diagonal-too-high"),
            Misconception(_cached_with(lambda L, S: torch.ones(L, S).tril(diagonal=S - L)),
                          "Your mask is a float tensor of 0s and 1s: F.scaled_dot_product_attention ADDS a float "
                          "mask to the scores, so it only nudges them and hides nothing. Pass a bool mask "
                          "(torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L)), True = may attend.",
                          name="float-mask"),
            Misconception(_cached_with(lambda L, S: ~_bottom_right(L, S)),
                          "Your mask is inverted: an all-zero output row means a query that may see no key "
                          "at all. In F.scaled_dot_product_attention a boolean mask is True where a query MAY "
                          "attend: tril(diagonal=S - L), not triu(diagonal=S - L + 1).", name="inverted-mask"),
            Misconception(_cached_with(lambda L, S: torch.ones(L, S, dtype=torch.bool).tril(diagonal=L - S)),
                          "The diagonal has the wrong sign: an all-zero output row means a query that may see "
                          "no key at all. The new queries come after the S - L cached keys, so the diagonal "
                          "moves right: tril(diagonal=S - L), not L - S.", name="wrong-diagonal-sign"),
        ),
    ),
    Exercise(
        id="5.3", notebook=NOTEBOOK, function="greedy_decode",
        title="Greedy decoding with a KV cache: prefill, then one token per step; same tokens as without it",
        reference=_decode_ref, make_cases=_decode_cases, make_hidden_cases=_decode_hidden,
        call=_call_decode,
        output_names=("first_prompt_tokens", "second_prompt_tokens", "used_the_cache"),
        misconceptions=(
            Misconception(_decode_no_cache,
                          "Right tokens, but the cache saved no work: the checker saw the model called without "
                          "`cache`, or with the whole sequence again (after a cache.reset()?). Reset once, "
                          "feed the prompt once (the prefill), then only the one new token per step: "
                          "model(next_token, cache, last_only=True).", name="no-cache"),
            Misconception(_decode_no_reset,
                          "The first prompt decodes fine but the second does not: the cache still held the "
                          "first prompt. Call cache.reset() before the prefill.", name="no-reset"),
            Misconception(_decode_refeed_last,
                          "Positions are off by one: after the prefill the cache already holds every prompt "
                          "token, so feed only the NEW token at each step (the prompt's last token was fed "
                          "twice).", name="refeed-last"),
            Misconception(_decode_prefill_without_cache,
                          "The first new token is right, the next ones are not: the prompt went through the model "
                          "WITHOUT the cache, so the cache is empty when the steps begin and each new token sees "
                          "no prompt (and sits at position 0). Prefill with the cache: model(idx, cache, "
                          "last_only=True).", name="prefill-without-cache"),
            Misconception(_decode_whole_sequence,
                          "With a cache, feed the model only the tokens it has not seen: the prompt once, then "
                          "one new token per step. Feeding the whole sequence appends it to the cache again.",
                          name="whole-sequence"),
        ),
    ),
    Exercise(
        id="5.4", notebook=NOTEBOOK, function="grouped_query_attention",
        title="Grouped-query attention: H query heads share H_kv key/value heads (head h uses kv head "
              "h // (H // H_kv))",
        reference=_gqa_ref, make_cases=_gqa_cases, make_hidden_cases=_gqa_hidden,
        output_names=("output",),
        error_hints=(
            (r"must match the size of tensor b \(\d+\) at non-singleton dimension 1|"
             r"must match the size of tensor b \(\d+\) at non-singleton dimension -3",
             "The queries have H heads but the keys/values H_kv: expand the keys AND the values to H heads "
             "along dim 1 first, with key.repeat_interleave(H // H_kv, dim=1), so that query head h meets kv head "
             "h // (H // H_kv) (or let F.scaled_dot_product_attention do it with enable_gqa=True).", "kv-heads"),
            (r"must match the size of tensor b \(\d+\) at non-singleton dimension 2|"
             r"must match the size of tensor b \(\d+\) at non-singleton dimension -2",
             "The positions no longer line up: did you repeat along dim 2 (the sequence) instead of dim 1 (the "
             "heads) of (B, H_kv, S, D)?", "repeated-sequence"),
        ),
        misconceptions=(
            Misconception(_gqa_with(lambda t, g: t.repeat(1, g, 1, 1)),
                          "Query head h used kv head h % H_kv (0, 1, 0, 1, ...): that is what `repeat` (tiling) "
                          "gives, or regrouping the queries as (B, G, H_kv, L, D), or a group axis put in front of "
                          "the keys' heads (key[:, None], not key[:, :, None]). Grouped-query attention gives each "
                          "kv head a GROUP of consecutive query heads, h // G with G = H // H_kv (0, 0, 1, 1, ...): "
                          "reshape the queries to (B, H_kv, G, L, D) (or, with copies, "
                          "`repeat_interleave(G, dim=1)`).", name="tiled-kv-heads"),
            Misconception(_gqa_keys_without_group_axis,
                          "The keys and values need a size-1 group axis to line up with the regrouped queries "
                          "(B, H_kv, G, L, D): key[:, :, None] is (B, H_kv, 1, S, D). Without it broadcasting "
                          "matched the keys' batch axis with the queries' kv-head axis (this only runs when the "
                          "sizes happen to agree).", name="no-group-axis"),
            Misconception(_gqa_keys_only,
                          "Your keys are expanded with repeat_interleave but the values with repeat: both must "
                          "map query head h to kv head h // (H // H_kv).", name="keys-only-interleaved"),
            Misconception(_gqa_top_left,
                          "is_causal=True is aligned top-left; with a cache (L < S) use the given attn_mask (or "
                          "tril(diagonal=S - L)).", name="top-left"),
            Misconception(_gqa_averaged_queries,
                          "You averaged the query heads of a group: each of the H query heads keeps its own "
                          "query and output; only the keys and values are shared.", name="averaged-queries"),
        ),
    ),
    Exercise(
        id="5.5", notebook=NOTEBOOK, function="chunk_positions_and_mask",
        title="Stretch: the positions of L new tokens after n_cached cached ones, and their (L, S) causal mask",
        reference=_chunk_ref, make_cases=_chunk_cases, make_hidden_cases=_chunk_hidden,
        output_names=("positions", "mask"),
        misconceptions=(
            Misconception(_chunk_with(lambda n, L: torch.arange(L), _right_mask),
                          "The new tokens' positions continue after the cache: n_cached, ..., n_cached + L - 1. "
                          "Starting again at 0 gives the first new token the position embedding of the first "
                          "prompt token.", name="restarted-positions"),
            Misconception(_chunk_with(lambda n, L: torch.arange(n + 1, n + L + 1), _right_mask),
                          "Off by one: positions start at 0, so after n_cached cached tokens the next one is at "
                          "position n_cached (not n_cached + 1).", name="off-by-one"),
            Misconception(_chunk_with(_right_positions, lambda n, L: torch.ones(L, n + L, dtype=torch.bool).tril()),
                          "That is the top-left alignment (torch's is_causal=True). New token i sits at position "
                          "n_cached + i and sees keys 0 .. n_cached + i: tril(diagonal=S - L) with S = n_cached + L.",
                          name="top-left"),
            Misconception(_chunk_with(_right_positions, lambda n, L: torch.ones(L, L, dtype=torch.bool).tril()),
                          "The mask covers every key the new tokens attend to, cached ones included: S = "
                          "n_cached + L columns, not L.", name="new-columns-only"),
            Misconception(_chunk_with(_right_positions,
                                      lambda n, L: torch.ones(L, n + L, dtype=torch.bool).tril(diagonal=n - 1)),
                          "Off by one: each new token sees its own key, tril(diagonal=S - L), not S - L - 1.",
                          name="diagonal-too-low"),
        ),
    ),
]
