"""attnkit.batching: every serving path gives the tokens of `generate` with the contiguous cache."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnkit import GPT, GPTConfig, generate
from attnkit.batching import (
    Request,
    generate_paged,
    generate_shared_prefix,
    left_pad,
    packed_causal_mask,
    serve_continuous,
)
from attnkit.paged_cache import PagedKVCache, blocks_needed


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=128, n_layer=2, n_head=4, n_embd=32)).eval()


def ids(seed: int, *shape: int) -> torch.Tensor:
    return torch.randint(0, 50, shape, generator=torch.Generator().manual_seed(seed))


def test_left_pad_puts_every_last_token_in_the_last_column():
    idx, mask = left_pad([torch.tensor([1, 2, 3]), torch.tensor([7])], pad_id=0)
    assert idx.tolist() == [[1, 2, 3], [0, 0, 7]]
    assert mask.tolist() == [[True, True, True], [False, False, True]]


def test_packed_attention_equals_each_sequence_alone():
    gen = torch.Generator().manual_seed(0)
    lengths = [3, 1, 4]
    q, k, v = (torch.randn(1, 2, 8, 5, generator=gen) for _ in range(3))  # (1, H, T, D)
    packed = F.scaled_dot_product_attention(q, k, v, attn_mask=packed_causal_mask(lengths))
    start = 0
    for n in lengths:
        part = slice(start, start + n)
        alone = F.scaled_dot_product_attention(q[:, :, part], k[:, :, part], v[:, :, part], is_causal=True)
        torch.testing.assert_close(packed[:, :, part], alone)
        start += n


@pytest.mark.parametrize("block_size", [1, 3, 16])
def test_generate_paged_equals_generate(model, block_size):
    idx = ids(1, 3, 7)
    assert torch.equal(generate_paged(model, idx, 20, block_size=block_size), generate(model, idx, 20))


def test_generate_paged_frees_its_blocks_in_a_given_cache(model):
    cache = PagedKVCache(2, 4, 8, num_blocks=10, block_size=4)
    generate_paged(model, ids(2, 2, 5), 8, cache=cache)
    assert cache.allocator.num_free == 10 and not cache.tables


@pytest.mark.parametrize("prefix_len", [8, 10])  # a whole number of blocks, and one ending inside a block
def test_shared_prefix_gives_the_tokens_of_recomputing_the_prefix(model, prefix_len):
    prefix, suffixes = ids(3, prefix_len), [ids(4, 3), ids(5, 1), ids(6, 6)]
    outputs, stats = generate_shared_prefix(model, prefix, suffixes, 9, block_size=4)
    for out, suffix in zip(outputs, suffixes, strict=True):
        assert torch.equal(out, generate(model, torch.cat([prefix, suffix])[None], 9)[0])
    _, baseline = generate_shared_prefix(model, prefix, suffixes, 9, block_size=4, share=False)
    assert stats["prefill_positions"] == prefix_len + 10
    assert baseline["prefill_positions"] == 3 * prefix_len + 10
    assert stats["peak_blocks"] < baseline["peak_blocks"]


def requests() -> list[Request]:
    spec = [(0, 5, 6), (0, 9, 3), (1, 4, 8), (2, 12, 5), (2, 3, 1), (5, 6, 6), (5, 2, 4)]
    return [Request(arrival, ids(10 + i, n), new) for i, (arrival, n, new) in enumerate(spec)]


def test_continuous_batching_gives_each_request_its_tokens_alone(model):
    reqs = requests()
    log = serve_continuous(model, reqs, max_batch=3, num_blocks=12, block_size=4)
    for i, r in enumerate(reqs):
        assert torch.equal(log.tokens[i], generate(model, r.prompt[None], r.max_new_tokens)[0])


def test_continuous_batching_keeps_the_invariants_of_the_pool(model):
    reqs = requests()
    log = serve_continuous(model, reqs, max_batch=3, num_blocks=12, block_size=4)
    admitted = [i for s in log.steps for i in s.admitted]
    finished = [i for s in log.steps for i in s.finished]
    assert sorted(admitted) == sorted(finished) == list(range(len(reqs)))  # no request lost
    for s in log.steps:
        assert len(s.running) <= 3
        held = [b for t in s.tables.values() for b in t]
        assert len(held) == len(set(held))  # no block in two tables (nothing is shared here)
        assert s.free_blocks + len(held) == 12  # no block leaked
        for i, t in s.tables.items():
            assert len(t) == blocks_needed(s.lengths[i], 4)
        assert all(reqs[i].arrival <= s.step for i in s.running + s.waiting)
    assert log.steps[-1].free_blocks == 12 and not log.steps[-1].running
    assert any(s.waiting for s in log.steps)  # the pool or the batch was full at some point


def test_a_request_larger_than_the_pool_is_refused_up_front(model):
    with pytest.raises(ValueError, match="needs 4 blocks, more than the whole pool"):
        serve_continuous(model, [Request(0, ids(1, 10), 6)], num_blocks=3, block_size=4)


def test_a_request_waits_only_for_a_seat_or_for_blocks(model):
    requests = [Request(0, ids(20 + i, n), 4) for i, n in enumerate((9, 7, 12, 5, 10))]  # all at once
    log = serve_continuous(model, requests, max_batch=2, num_blocks=12, block_size=4)
    waits = [s.wait for s in log.steps if s.wait is not None]
    assert waits and any(w.seats_full for w in waits)
    for w in waits:  # the reason given is true: no seat, or fewer blocks than the request's whole length
        assert w.seats_full or w.blocks_needed > w.blocks_available
