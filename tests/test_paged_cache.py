"""attnkit.paged_cache: the allocator's invariants, gathering through a block table, copy-on-write, GPT on pages."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnkit import GPT, GPTConfig, KVCache, generate
from attnkit.paged_cache import BlockAllocator, OutOfBlocksError, PagedKVCache, blocks_needed, gather_paged_kv


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=40, block_size=96, n_layer=2, n_head=4, n_embd=32)).eval()


def test_blocks_needed_rounds_up():
    assert [blocks_needed(n, 4) for n in (0, 1, 3, 4, 5, 8, 9)] == [0, 1, 1, 1, 2, 2, 3]
    with pytest.raises(ValueError, match="block_size"):
        blocks_needed(3, 0)


def test_allocator_hands_out_lowest_ids_counts_references_and_refuses_double_free():
    a = BlockAllocator(5)
    assert a.allocate(2) == [0, 1] and a.num_free == 3
    a.share(1)
    a.free(1)
    assert a.num_free == 3  # still referenced once
    a.free(1)
    assert a.num_free == 4 and a.allocate(1) == [1]
    a.free(0)
    with pytest.raises(ValueError, match="double free"):
        a.free(0)


def test_out_of_blocks_names_the_numbers_and_allocates_nothing():
    a = BlockAllocator(3)
    a.allocate(2)
    with pytest.raises(OutOfBlocksError, match=r"Requested 2 blocks but only 1 of 3 are free"):
        a.allocate(2)
    assert a.num_free == 1


@pytest.mark.parametrize("seq_len", [1, 4, 5, 11, 12])
def test_gather_reads_positions_in_order_through_a_scrambled_table(seq_len):
    gen = torch.Generator().manual_seed(seq_len)
    N, H, P, D, Dv = 7, 3, 4, 5, 6
    keys, values = torch.randn(H, seq_len, D, generator=gen), torch.randn(H, seq_len, Dv, generator=gen)
    table = torch.tensor([5, 2, 6])[: blocks_needed(seq_len, P)]
    key_blocks, value_blocks = torch.randn(N, H, P, D, generator=gen), torch.randn(N, H, P, Dv, generator=gen)
    for p in range(seq_len):  # write position p at block table[p // P], slot p % P
        key_blocks[table[p // P], :, p % P] = keys[:, p]
        value_blocks[table[p // P], :, p % P] = values[:, p]
    k, v = gather_paged_kv(key_blocks, value_blocks, table, seq_len)
    assert torch.equal(k, keys) and torch.equal(v, values)


def test_gather_validates_its_arguments():
    kb = torch.zeros(4, 2, 4, 3)
    with pytest.raises(ValueError, match="seq_len"):
        gather_paged_kv(kb, kb, torch.tensor([0, 1]), 9)
    with pytest.raises(ValueError, match="block_table"):
        gather_paged_kv(kb, kb, torch.tensor([0.0, 1.0]), 3)


def test_paged_attention_equals_contiguous_attention():
    """Keys written through PagedBatch.update and gathered back give SDPA's output on the contiguous keys."""
    gen = torch.Generator().manual_seed(0)
    cache = PagedKVCache(1, 2, 8, num_blocks=10, block_size=4)
    lengths = [6, 3]
    k = [torch.randn(2, n, 8, generator=gen) for n in lengths]
    for s, n in enumerate(lengths):
        cache.add(s)
        cache.batch([s], n).update(0, k[s][None], k[s][None])
    batch = cache.batch([0, 1], 2)  # two new positions each: rows of lengths 8 and 5
    new = torch.randn(2, 2, 2, 8, generator=gen)  # (B, H, L, D)
    q = torch.randn(2, 2, 2, 8, generator=gen)
    k_all, v_all = batch.update(0, new, new)
    out = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=batch.attn_mask)
    for b in range(2):
        full = torch.cat([k[b], new[b]], dim=1)[None]  # (1, H, S_b, D)
        S = full.shape[2]
        mask = torch.ones(2, S, dtype=torch.bool).tril(diagonal=S - 2)
        want = F.scaled_dot_product_attention(q[b:b + 1], full, full, attn_mask=mask)
        torch.testing.assert_close(out[b:b + 1], want)
    assert batch.positions(2).tolist() == [[6, 7], [3, 4]]


@pytest.mark.parametrize("block_size", [1, 4, 16])
def test_gpt_logits_on_pages_equal_the_contiguous_cache(block_size):
    model = tiny_gpt()
    idx = torch.randint(0, 40, (2, 9), generator=torch.Generator().manual_seed(1))
    paged = PagedKVCache(2, 4, 8, num_blocks=20, block_size=block_size)
    contiguous = KVCache(2, 2, 4, 20, 8)
    for s in (0, 1):
        paged.add(s)
    with torch.no_grad():
        for chunk in (idx[:, :6], idx[:, 6:7], idx[:, 7:]):
            want = model(chunk, contiguous)
            got = model(chunk, paged.batch([0, 1], chunk.shape[1]))
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_fork_shares_blocks_and_copies_a_shared_partial_block_before_writing():
    cache = PagedKVCache(1, 1, 2, num_blocks=6, block_size=4)
    cache.add("p")
    x = torch.arange(12.0).view(1, 1, 6, 2)
    cache.batch(["p"], 6).update(0, x, x)  # 6 positions: one full block, one half-full
    cache.fork("p", "a")
    assert cache.tables["a"] == cache.tables["p"] and cache.allocator.num_free == 4
    cache.batch(["a"], 1).update(0, torch.full((1, 1, 1, 2), -1.0), torch.full((1, 1, 1, 2), -1.0))
    assert cache.tables["a"][0] == cache.tables["p"][0]  # the full block is still shared
    assert cache.tables["a"][1] != cache.tables["p"][1]  # the partial one was copied on write
    k_p, _ = gather_paged_kv(cache.key_blocks[0], cache.value_blocks[0], cache.block_table("p"), 6)
    k_a, _ = gather_paged_kv(cache.key_blocks[0], cache.value_blocks[0], cache.block_table("a"), 7)
    assert torch.equal(k_p, x[0]) and torch.equal(k_a[:, :6], x[0]) and (k_a[:, 6] == -1).all()


def test_freeing_every_sequence_returns_every_block():
    cache = PagedKVCache(1, 1, 2, num_blocks=8, block_size=2)
    cache.add(0)
    cache.reserve([0], 5)
    cache.fork(0, 1)
    cache.fork(0, 2)
    cache.reserve([1, 2], 3)
    cache.free(0)
    assert all(r >= 0 for r in cache.allocator.ref_counts)
    cache.free(1)
    cache.free(2)
    assert cache.allocator.num_free == 8 and not any(cache.allocator.ref_counts)


def test_out_of_blocks_in_reserve_changes_no_sequence():
    cache = PagedKVCache(1, 1, 2, num_blocks=3, block_size=2)
    for s in (0, 1):
        cache.add(s)
        cache.reserve([s], 2)
    before = ({s: list(t) for s, t in cache.tables.items()}, dict(cache.lengths), cache.allocator.num_free)
    with pytest.raises(OutOfBlocksError, match="Requested 2 blocks .* only 1 of 3 are free; no sequence"):
        cache.reserve([0, 1], 1)
    assert ({s: list(t) for s, t in cache.tables.items()}, dict(cache.lengths), cache.allocator.num_free) == before
    cache.reserve([0], 1)  # the one that fits still can


def test_truncate_frees_the_blocks_past_the_new_length():
    cache = PagedKVCache(1, 1, 2, num_blocks=5, block_size=2)
    cache.add(0)
    cache.reserve([0], 7)
    assert cache.allocator.num_free == 1
    cache.truncate(0, 3)
    assert cache.lengths[0] == 3 and len(cache.tables[0]) == 2 and cache.allocator.num_free == 3


def test_memory_is_within_one_block_per_sequence_of_what_is_used():
    cache = PagedKVCache(2, 2, 4, num_blocks=64, block_size=8)
    lengths = [1, 8, 9, 30]
    for s, n in enumerate(lengths):
        cache.add(s)
        cache.reserve([s], n)
    per_position = cache.bytes_per_block // 8
    assert cache.used_nbytes() == per_position * sum(lengths)
    assert 0 <= cache.allocated_nbytes() - cache.used_nbytes() < len(lengths) * cache.bytes_per_block


def test_generate_tokens_unchanged_by_the_paged_option():
    model = tiny_gpt(3)
    idx = torch.randint(0, 40, (1, 5), generator=torch.Generator().manual_seed(2))
    assert torch.equal(generate(model, idx, 10), generate(model, idx, 10, use_cache=False))


@pytest.mark.parametrize("seed", range(5))
def test_random_operations_keep_the_pool_consistent(seed):
    """Random add / fork / reserve / truncate / free: every block is free xor referenced, counts match tables."""
    gen = torch.Generator().manual_seed(seed)

    def pick(n: int) -> int:
        return int(torch.randint(n, (1,), generator=gen))

    cache = PagedKVCache(1, 1, 2, num_blocks=12, block_size=3)
    alive, next_id = [], 0
    for _ in range(200):
        op = pick(5)
        if op == 0 or not alive:
            cache.add(next_id)
            alive.append(next_id)
            next_id += 1
        elif op == 1:
            cache.fork(alive[pick(len(alive))], next_id)
            alive.append(next_id)
            next_id += 1
        elif op == 2:
            seqs = [alive[pick(len(alive))]]
            try:
                cache.reserve(seqs, 1 + pick(5))
            except OutOfBlocksError:
                pass
        elif op == 3:
            s = alive[pick(len(alive))]
            cache.truncate(s, pick(cache.lengths[s] + 1))
        else:
            cache.free(alive.pop(pick(len(alive))))
        refs = [0] * 12
        for s in alive:
            assert len(cache.tables[s]) == blocks_needed(cache.lengths[s], 3)
            for b in cache.tables[s]:
                refs[b] += 1
        assert refs == cache.allocator.ref_counts
        assert cache.allocator.num_free == refs.count(0)
    for s in alive:
        cache.free(s)
    assert cache.allocator.num_free == 12
