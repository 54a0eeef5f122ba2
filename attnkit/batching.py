"""Serving many requests with one model: ragged batches, the paged cache, shared prefixes, continuous batching.

Requests come with prompts of different lengths and stop at different times. Three ways to put them in
one batch: left-pad them to the longest (`left_pad`: a padding mask hides the pad tokens), pack them end
to end in one row (`packed_causal_mask`: each token sees only its own sequence), or, while decoding, keep
each sequence in a `PagedKVCache` and hand the model a `PagedBatch` whose rows have their own lengths.
On the last one, this module builds greedy decoding (`generate_paged`), prefix sharing
(`generate_shared_prefix`) and a continuous-batching scheduler in miniature (`serve_continuous`); each
gives exactly the tokens of `attnkit.generate` with the contiguous cache, request by request.

Shape legend: B requests, L prompt length, T total packed tokens, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from attnkit._validate import expect_positive_int, expect_prompt, expect_tensor, shape_str
from attnkit.paged_cache import PagedKVCache, blocks_needed

__all__ = ["left_pad", "packed_causal_mask", "generate_paged", "generate_shared_prefix", "Request", "Wait", "ServeStep",
           "ServeLog", "serve_continuous"]


def _expect_prompts(prompts: object) -> list[torch.Tensor]:
    if not isinstance(prompts, Sequence) or len(prompts) == 0:
        raise ValueError(f"Expected `prompts` to be a non-empty list of 1-D token tensors but got {prompts!r}")
    for i, p in enumerate(prompts):
        expect_tensor(f"prompts[{i}]", p)
        if p.dim() != 1 or p.shape[0] == 0:
            raise ValueError(f"Expected `prompts[{i}]` shape to be (L,) with L >= 1 but got {shape_str(p.shape)}")
    return list(prompts)


def left_pad(prompts: Sequence[torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack prompts of different lengths into one (B, L_max) batch, padding on the left.

    Left, so that every row's last token, the one whose logits give the next token, is in the last column.
    The mask is True at real tokens (a padding mask of F.scaled_dot_product_attention's kind).

    Shapes: prompts B tensors (L_b,) -> idx (B, L_max), mask (B, L_max) bool.

    See chapters/08_serving.ipynb.
    """
    prompts = _expect_prompts(prompts)
    L_max = max(p.shape[0] for p in prompts)
    idx = torch.full((len(prompts), L_max), pad_id, dtype=prompts[0].dtype)  # (B, L_max)
    mask = torch.zeros(len(prompts), L_max, dtype=torch.bool)  # (B, L_max)
    for b, p in enumerate(prompts):
        idx[b, L_max - p.shape[0]:] = p
        mask[b, L_max - p.shape[0]:] = True
    return idx, mask


def packed_causal_mask(lengths: Sequence[int]) -> torch.Tensor:
    """The mask of sequences packed end to end in one row: causal inside each sequence, blocked across.

    Shapes: lengths B ints -> (T, T) bool, T = sum(lengths), True = may attend.

    See chapters/08_serving.ipynb.
    """
    if not isinstance(lengths, Sequence) or not lengths or any(
            not isinstance(n, int) or isinstance(n, bool) or n <= 0 for n in lengths):
        raise ValueError(f"Expected `lengths` to be a non-empty list of positive ints but got {lengths!r}")
    seq_id = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))  # (T,): whose token
    T = seq_id.shape[0]
    same = seq_id[:, None] == seq_id[None, :]  # (T, T): same sequence
    return same & torch.ones(T, T, dtype=torch.bool).tril()  # (T, T)


def _greedy(logits: torch.Tensor) -> torch.Tensor:
    return logits[:, -1, :].argmax(dim=-1)  # (B, L, V) -> (B,)


def generate_paged(
    model: torch.nn.Module, idx: torch.Tensor, max_new_tokens: int, *, block_size: int = 16,
    cache: PagedKVCache | None = None,
) -> torch.Tensor:
    """Greedy decoding with a paged KV cache: the same tokens as `attnkit.generate(model, idx, n)`.

    Without `cache`, one is made with just enough blocks; a given cache must be empty of the ids 0..B-1,
    and they are freed at the end.

    Shapes: idx (B, L) -> (B, L + max_new_tokens).

    See chapters/08_serving.ipynb.
    """
    expect_prompt(idx)
    expect_positive_int("max_new_tokens", max_new_tokens, allow_zero=True)
    B, L = idx.shape
    config = model.config
    if cache is None:
        cache = PagedKVCache(config.n_layer, config.n_head, config.n_embd // config.n_head, block_size=block_size,
                             num_blocks=B * max(1, blocks_needed(L + max_new_tokens, block_size)),
                             dtype=model.lm_head.weight.dtype)
    seqs = list(range(B))
    for s in seqs:
        cache.add(s)
    out, context = idx, idx  # (B, L): the prompt first, then (B, 1) per step
    try:
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                logits = model(context, cache.batch(seqs, context.shape[1]), last_only=True)  # (B, 1, V)
                context = _greedy(logits)[:, None]  # (B, 1)
                out = torch.cat([out, context], dim=1)
    finally:
        for s in seqs:
            cache.free(s)
    return out


def generate_shared_prefix(
    model: torch.nn.Module, prefix: torch.Tensor, suffixes: Sequence[torch.Tensor], max_new_tokens: int, *,
    block_size: int = 16, share: bool = True,
) -> tuple[list[torch.Tensor], dict[str, int]]:
    """Greedy continuations of prefix + suffix_i that compute the shared prefix once (prefix caching).

    The prefix is prefilled into one sequence; each continuation forks it (sharing its blocks, copied on
    write if the prefix ends inside a block), prefills only its suffix, and the continuations decode
    together in one batch. With share=False each continuation prefills prefix + suffix itself (the
    baseline). The stats count the positions prefilled ("prefill_positions") and the blocks in use at
    the peak ("peak_blocks").

    Shapes: prefix (P,), suffixes n tensors (L_i,) -> n tensors (P + L_i + max_new_tokens,), stats.

    See chapters/08_serving.ipynb.
    """
    expect_tensor("prefix", prefix)
    if prefix.dim() != 1 or prefix.shape[0] == 0:
        raise ValueError(f"Expected `prefix` shape to be (P,) with P >= 1 but got {shape_str(prefix.shape)}")
    suffixes = _expect_prompts(suffixes)
    config = model.config
    P, n = prefix.shape[0], len(suffixes)
    longest = P + max(s.shape[0] for s in suffixes) + max_new_tokens
    cache = PagedKVCache(config.n_layer, config.n_head, config.n_embd // config.n_head, block_size=block_size,
                         num_blocks=(n + 1) * blocks_needed(longest, block_size), dtype=model.lm_head.weight.dtype)
    prefilled, peak = 0, 0
    nexts = []
    with torch.inference_mode():
        if share:
            cache.add("prefix")
            model(prefix[None], cache.batch(["prefix"], P), last_only=True)  # keys and values only
            prefilled += P
        for i, suffix in enumerate(suffixes):
            tokens = suffix if share else torch.cat([prefix, suffix])
            if share:
                cache.fork("prefix", i)  # shares every block of the prefix
            else:
                cache.add(i)
            logits = model(tokens[None], cache.batch([i], tokens.shape[0]), last_only=True)  # (1, 1, V)
            prefilled += tokens.shape[0]
            nexts.append(_greedy(logits))
        if share:
            cache.free("prefix")  # the continuations still hold its blocks
        seqs = list(range(n))
        context = torch.stack(nexts)  # (n, 1)
        generated = [context]
        peak = cache.allocator.num_blocks - cache.allocator.num_free
        for _ in range(max_new_tokens - 1):
            logits = model(context, cache.batch(seqs, 1), last_only=True)  # (n, 1, V)
            context = _greedy(logits)[:, None]  # (n, 1)
            generated.append(context)
            peak = max(peak, cache.allocator.num_blocks - cache.allocator.num_free)
        for s in seqs:
            cache.free(s)
    new = torch.cat(generated, dim=1)[:, :max_new_tokens]  # (n, max_new_tokens)
    outputs = [torch.cat([prefix, s, new[i]]) for i, s in enumerate(suffixes)]
    return outputs, {"prefill_positions": prefilled, "peak_blocks": peak}


@dataclass(frozen=True)
class Request:
    """A request to serve: it arrives at scheduler step `arrival` and wants `max_new_tokens` greedy tokens."""

    arrival: int
    prompt: torch.Tensor  # (L,) token ids
    max_new_tokens: int


@dataclass
class Wait:
    """Why the first waiting request was not admitted at a step: no seat, or not enough blocks."""

    request: int
    seats_full: bool  # max_batch requests were running
    blocks_needed: int  # for its whole length (prompt + new tokens)
    blocks_available: int  # free blocks minus those the running requests will still need


@dataclass
class ServeStep:
    """What one scheduler step did, and the cache right after it."""

    step: int
    admitted: list[int]  # requests that joined (prefilled) this step
    finished: list[int]  # requests that got their last token and gave their blocks back
    running: list[int]  # requests decoding after this step
    waiting: list[int]  # arrived, but no room yet
    tables: dict[int, list[int]]  # block table of every running request
    lengths: dict[int, int]  # positions each running request holds
    free_blocks: int
    wait: Wait | None = None  # why waiting[0] did not join, if anyone waits


@dataclass
class ServeLog:
    """The outcome of `serve_continuous`: every request's tokens and the story, step by step."""

    tokens: dict[int, torch.Tensor]  # request index -> prompt + generated tokens (L + max_new_tokens,)
    steps: list[ServeStep] = field(default_factory=list)
    num_blocks: int = 0
    block_size: int = 0


def serve_continuous(
    model: torch.nn.Module, requests: Sequence[Request], *, max_batch: int = 4, num_blocks: int = 32,
    block_size: int = 4,
) -> ServeLog:
    """Continuous batching in miniature: requests join the running batch as soon as there is room.

    Each step: admit arrived requests in arrival order while fewer than `max_batch` run and the free
    blocks cover the new request's whole length plus what the running ones will still need (so decoding
    never runs out); prefill each newcomer alone; then decode one token for every running request in
    one batched call; finished requests free their blocks at once. Tokens equal `generate` per request.

    Shapes: requests' prompts (L_i,) -> log.tokens[i] (L_i + max_new_tokens_i,).

    See chapters/08_serving.ipynb.
    """
    expect_positive_int("max_batch", max_batch)
    for i, r in enumerate(requests):
        if not isinstance(r, Request) or r.max_new_tokens < 1:
            raise ValueError(f"Expected `requests[{i}]` to be a Request with max_new_tokens >= 1 but got {r!r}")
        need = blocks_needed(r.prompt.shape[0] + r.max_new_tokens, block_size)
        if need > num_blocks:
            raise ValueError(f"Request {i} needs {need} blocks, more than the whole pool (num_blocks={num_blocks})")
    config = model.config
    cache = PagedKVCache(config.n_layer, config.n_head, config.n_embd // config.n_head, block_size=block_size,
                         num_blocks=num_blocks, dtype=model.lm_head.weight.dtype)
    log = ServeLog(tokens={}, num_blocks=num_blocks, block_size=block_size)
    order = sorted(range(len(requests)), key=lambda i: (requests[i].arrival, i))
    waiting: list[int] = []
    running: list[int] = []
    out: dict[int, list[int]] = {}
    step = 0

    def total(i: int) -> int:
        return requests[i].prompt.shape[0] + requests[i].max_new_tokens

    with torch.inference_mode():
        while order or waiting or running:
            waiting += [i for i in order if requests[i].arrival <= step]
            order = [i for i in order if requests[i].arrival > step]
            admitted, finished = [], []
            promised = sum(blocks_needed(total(i), block_size) - len(cache.tables[i]) for i in running)
            while waiting and len(running) < max_batch and \
                    cache.allocator.num_free - promised >= blocks_needed(total(waiting[0]), block_size):
                i = waiting.pop(0)
                cache.add(i)
                prompt = requests[i].prompt
                logits = model(prompt[None], cache.batch([i], prompt.shape[0]), last_only=True)  # (1, 1, V)
                out[i] = prompt.tolist() + [int(_greedy(logits))]
                promised += blocks_needed(total(i), block_size) - len(cache.tables[i])
                running.append(i)
                admitted.append(i)
            wait = None if not waiting else Wait(waiting[0], len(running) >= max_batch,
                                                 blocks_needed(total(waiting[0]), block_size),
                                                 cache.allocator.num_free - promised)
            decoding = [i for i in running if len(out[i]) < total(i)]
            if decoding:
                context = torch.tensor([[out[i][-1]] for i in decoding])  # (B, 1): each one's newest token
                logits = model(context, cache.batch(decoding, 1), last_only=True)  # (B, 1, V)
                for i, t in zip(decoding, _greedy(logits).tolist(), strict=True):
                    out[i].append(t)
            for i in list(running):
                if len(out[i]) == total(i):
                    running.remove(i)
                    cache.free(i)
                    finished.append(i)
            log.steps.append(ServeStep(step, admitted, finished, list(running), list(waiting),
                                       {i: list(cache.tables[i]) for i in running},
                                       {i: cache.lengths[i] for i in running}, cache.allocator.num_free, wait))
            step += 1
    log.tokens = {i: torch.tensor(out[i]) for i in range(len(requests))}
    return log
