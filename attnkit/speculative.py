"""Speculative decoding, greedy: a cheap draft model guesses k tokens, the target checks them all in one call.

Decoding calls the target model once per token. Speculative decoding (Leviathan et al. 2023; Chen et al.
2023) lets a small draft model propose k tokens, then runs the target once on the newest token plus the
k proposals: with the cache, those k + 1 queries attend under chapter 5's bottom-right causal mask, and
the target's logits at position i say what it would have chosen after the first i proposals. Keep the
proposals up to the first one the target disagrees with, then take the target's own token there (or,
if all k agree, the bonus token after the last): every kept token is the one greedy decoding of the
target would pick, so the output is exactly the target's, only with fewer target calls.

Shape legend: k draft tokens per round, V vocabulary.
"""

from __future__ import annotations

import torch

from attnkit._validate import expect_positive_int, expect_prompt, expect_tensor, shape_str
from attnkit.decoding import _Decoder, _runs_as_built
from attnkit.kv_cache import KVCache
from attnkit.paged_cache import PagedKVCache, blocks_needed

__all__ = ["NGramDraft", "verify_draft", "speculative_generate", "truncated_draft"]


def verify_draft(draft_tokens: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """The tokens a greedy round keeps: the draft's longest prefix the target agrees with, then one of the target's.

    target_logits[i] are the target's logits after the context and the first i draft tokens, so draft
    token i is accepted when it is argmax(target_logits[i]) and every one before it was accepted.

    Shapes: draft_tokens (k,) int, target_logits (k + 1, V) -> tokens (n + 1,), n = draft tokens accepted.

    See chapters/08_serving.ipynb.
    """
    expect_tensor("draft_tokens", draft_tokens)
    expect_tensor("target_logits", target_logits)
    if draft_tokens.dim() != 1 or draft_tokens.is_floating_point():
        raise ValueError(f"Expected `draft_tokens` to be integer ids of shape (k,) but got shape "
                         f"{shape_str(draft_tokens.shape)} of dtype {draft_tokens.dtype}")
    k = draft_tokens.shape[0]
    if target_logits.dim() != 2 or target_logits.shape[0] != k + 1:
        raise ValueError(f"Expected `target_logits` shape to be (k + 1, V) = ({k + 1}, V) but got "
                         f"{shape_str(target_logits.shape)}")
    choice = target_logits.argmax(dim=-1)  # (k + 1,): the target's token after 0, 1, ..., k draft tokens
    agree = (choice[:k] == draft_tokens).long()  # (k,)
    n = int(agree.cumprod(dim=0).sum())  # length of the agreeing prefix
    return torch.cat([draft_tokens[:n], choice[n:n + 1]])  # (n + 1,)


def _new_cache(model: torch.nn.Module, total: int, cache_type: type, block_size: int) -> KVCache | PagedKVCache:
    config = model.config
    head_dim, dtype = config.n_embd // config.n_head, model.lm_head.weight.dtype
    if cache_type is KVCache:
        return KVCache(config.n_layer, 1, config.n_head, total, head_dim, dtype=dtype)
    cache = PagedKVCache(config.n_layer, config.n_head, head_dim, block_size=block_size,
                         num_blocks=blocks_needed(total, block_size) + 1, dtype=dtype)
    cache.add(0)
    return cache


def _held(cache: KVCache | PagedKVCache) -> int:
    return cache.seq_len if isinstance(cache, KVCache) else cache.lengths[0]


def _call(model: torch.nn.Module, context: torch.Tensor, cache: KVCache | PagedKVCache,
          decoder: _Decoder | None) -> torch.Tensor:
    """The model's logits (1, L_new, V) on `context` (1, L_new) after what `cache` holds, which then holds it too.

    On a non-empty contiguous cache through `generate`'s `_Decoder` (the same logits without the module
    calls), so that speculative decoding and `generate` pay the same per call.
    """
    if isinstance(cache, KVCache):
        if decoder is not None and cache.seq_len > 0:
            return decoder.logits(context, cache)
        return model(context, cache)
    return model(context, cache.batch([0], context.shape[1]))


def _decoder(model: torch.nn.Module, cache: KVCache | PagedKVCache | None) -> _Decoder | None:
    return _Decoder(model) if isinstance(cache, KVCache) and _runs_as_built(model) else None


def _truncate(cache: KVCache | PagedKVCache, n: int) -> None:
    if isinstance(cache, KVCache):
        cache.truncate(n)
    else:
        cache.truncate(0, n)


def speculative_generate(
    target: torch.nn.Module, draft: torch.nn.Module, idx: torch.Tensor, max_new_tokens: int, *, k: int = 4,
    cache_type: type[KVCache] | type[PagedKVCache] = KVCache, block_size: int = 16,
) -> tuple[torch.Tensor, dict[str, int]]:
    """Greedy speculative decoding of one prompt: exactly `generate(target, idx, max_new_tokens)`'s tokens.

    Each round the draft proposes k tokens (one cached call each), the target scores the newest token
    and the k proposals in one call, `verify_draft` keeps n + 1 of them, and both caches forget the
    positions of rejected tokens (`truncate`). `cache_type` is chapter 5's contiguous `KVCache` (as
    `generate` uses, and through the same module-free steps) or the `PagedKVCache` (blocks of
    `block_size`). Stats: "rounds", "proposed",
    "accepted", "target_calls", "draft_calls".

    Shapes: idx (1, L) -> (1, L + max_new_tokens), stats.

    See chapters/08_serving.ipynb.
    """
    expect_prompt(idx, batch=1)
    expect_positive_int("k", k)
    expect_positive_int("max_new_tokens", max_new_tokens, allow_zero=True)
    if cache_type is not KVCache and cache_type is not PagedKVCache:
        raise ValueError(f"Expected `cache_type` to be KVCache or PagedKVCache but got {cache_type!r}")
    L = idx.shape[1]
    total = L + max_new_tokens + k + 1  # a round may overshoot by k before trimming
    t_cache = _new_cache(target, total, cache_type, block_size)
    # an n-gram draft reads only its last n - 1 tokens: no cache to keep
    d_cache = None if isinstance(draft, NGramDraft) else _new_cache(draft, total, cache_type, block_size)
    t_fast, d_fast = _decoder(target, t_cache), _decoder(draft, d_cache)
    tokens = idx[0].tolist()
    stats = {"rounds": 0, "proposed": 0, "accepted": 0, "target_calls": 0, "draft_calls": 0}
    with torch.inference_mode():
        # Prefill the target with all but the last prompt token: each round feeds it the newest token.
        if L > 1:
            _call(target, idx[:, :-1], t_cache, None)
            stats["target_calls"] += 1
        while len(tokens) < L + max_new_tokens:
            k_round = min(k, L + max_new_tokens - len(tokens) - 1)  # no proposal past the end
            proposal = []
            for _ in range(k_round):  # the draft catches up on what it has not seen, then guesses
                if d_cache is None:
                    proposal.append(draft.next_token(tokens + proposal))
                else:
                    context = torch.tensor([(tokens + proposal)[_held(d_cache):]])  # (1, new for the draft)
                    logits = _call(draft, context, d_cache, d_fast)  # (1, new, V)
                    proposal.append(int(logits[0, -1].argmax()))
                stats["draft_calls"] += 1
            start = _held(t_cache)  # = len(tokens) - 1: the newest token is not cached yet
            context = torch.tensor([tokens[start:] + proposal])  # (1, 1 + k_round)
            logits = _call(target, context, t_cache, t_fast)[0]  # (1 + k_round, V): one call
            stats["target_calls"] += 1
            kept = verify_draft(torch.tensor(proposal, dtype=torch.long), logits).tolist()
            stats["rounds"] += 1
            stats["proposed"] += k_round
            stats["accepted"] += len(kept) - 1
            tokens += kept
            # Rejected proposals' keys and values are wrong context now: keep what precedes the newest token.
            _truncate(t_cache, len(tokens) - 1)
            if d_cache is not None:
                _truncate(d_cache, min(_held(d_cache), len(tokens) - 1))
    return torch.tensor([tokens[:L + max_new_tokens]]), stats


def truncated_draft(model: torch.nn.Module, n_layer: int) -> torch.nn.Module:
    """A draft made of the target's first `n_layer` blocks, its final LayerNorm and output layer ("early exit").

    No training: the draft shares the target's weights (a copy of them), and is cheaper by the blocks it
    skips. How often it agrees with the full model is what the chapter measures.

    Shapes: a GPT with config.n_layer = n_layer; idx (B, L) -> logits (B, L, V), like the target.

    See chapters/08_serving.ipynb.
    """
    from attnkit.gpt import GPT, GPTConfig

    config = model.config
    if not isinstance(n_layer, int) or not 1 <= n_layer <= config.n_layer:
        raise ValueError(f"Expected `n_layer` in [1, {config.n_layer}] but got {n_layer!r}")
    draft = GPT(GPTConfig(vocab_size=config.vocab_size, block_size=config.block_size, n_layer=n_layer,
                          n_head=config.n_head, n_embd=config.n_embd,
                          layer_norm_epsilon=config.layer_norm_epsilon))
    kept = {name: w for name, w in model.state_dict().items()
            if not name.startswith("transformer.h.") or int(name.split(".")[2]) < n_layer}
    draft.load_state_dict(kept)
    return draft.to(dtype=model.lm_head.weight.dtype).eval()


class NGramDraft(torch.nn.Module):
    """A draft that is a table: the most frequent next token after the last n - 1 tokens of a training text.

    Drafting costs a lookup, not a forward pass (n-gram or "prompt lookup" drafting, used in practice
    when a small model is too slow). A context never seen in the text backs off to the last token alone.

    Shapes: train_ids (N,) int; next_token(list of ids) -> int; forward(idx (B, L)) -> logits (B, L, V),
    one-hot at the drafted token of each position.

    See chapters/08_serving.ipynb.
    """

    def __init__(self, train_ids: torch.Tensor, vocab_size: int, n: int = 3) -> None:
        super().__init__()
        expect_tensor("train_ids", train_ids)
        if train_ids.dim() != 1 or train_ids.is_floating_point() or train_ids.shape[0] < n:
            raise ValueError(f"Expected `train_ids` to be at least {n} integer ids of shape (N,) but got shape "
                             f"{shape_str(train_ids.shape)} of dtype {train_ids.dtype}")
        if n not in (2, 3):
            raise ValueError(f"Expected `n` to be 2 (bigram) or 3 (trigram) but got {n!r}")
        V, ids = vocab_size, train_ids.long()
        bigram = torch.zeros(V * V).index_add_(0, ids[:-1] * V + ids[1:], torch.ones(len(ids) - 1))  # (V * V,)
        self.n, self.vocab_size = n, V
        self.after_one = bigram.view(V, V).argmax(dim=1).tolist()  # next token after one token: V ids
        self.after_two: dict[tuple[int, int], int] = {}
        if n == 3:
            tri = torch.zeros(V * V * V).index_add_(0, (ids[:-2] * V + ids[1:-1]) * V + ids[2:],
                                                    torch.ones(len(ids) - 2)).view(V * V, V)  # (V * V, V)
            seen = tri.sum(dim=1) > 0  # contexts (a, b) that occur in the text
            best = tri.argmax(dim=1)
            self.after_two = {(int(c) // V, int(c) % V): int(best[c]) for c in seen.nonzero()[:, 0]}

    def next_token(self, tokens: list[int]) -> int:
        """The drafted token after `tokens` (at least one id)."""
        if self.n == 3 and len(tokens) >= 2:
            found = self.after_two.get((tokens[-2], tokens[-1]))
            if found is not None:
                return found
        return self.after_one[tokens[-1]]

    def forward(self, idx: torch.Tensor, cache: object = None, *, last_only: bool = False) -> torch.Tensor:
        expect_tensor("idx", idx)
        rows = idx.tolist()
        B, L = idx.shape
        positions = range(L - 1, L) if last_only else range(L)
        logits = torch.zeros(B, len(positions), self.vocab_size)  # (B, L or 1, V)
        for b, row in enumerate(rows):
            for j, i in enumerate(positions):
                logits[b, j, self.next_token(row[:i + 1])] = 1.0
        return logits
