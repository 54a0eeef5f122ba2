"""A paged KV cache (vLLM's PagedAttention idea): keys and values in fixed-size blocks, one block table per sequence.

Chapter 5's `KVCache` reserves max_len slots per sequence up front, however short the sequence turns out.
Here memory is a pool of `num_blocks` blocks of `block_size` positions. A sequence owns a list of block
ids, its *block table*: logical block i (positions i*block_size .. (i+1)*block_size - 1) lives in physical
block table[i], anywhere in the pool. A sequence takes a new block only when its last one is full, so at
most block_size - 1 slots per sequence are ever unused, and a finished sequence gives its blocks back.

Two sequences may share blocks (a common prompt): each block counts its references, and a shared block
is copied before anyone writes into it (copy-on-write). Attention gathers a sequence's keys and values
through its table (`gather_paged_kv`) and sees exactly what a contiguous cache would hold.

Shape legend: N blocks in the pool, H heads, P = block_size positions per block, D head width,
n blocks in a table, S positions of a sequence, B sequences in a batch, L new tokens per sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attnkit._validate import expect_ndim, expect_positive_int, expect_tensor, shape_str

__all__ = ["OutOfBlocksError", "blocks_needed", "BlockAllocator", "gather_paged_kv", "PagedKVCache", "PagedBatch"]


class OutOfBlocksError(RuntimeError):
    """The pool has fewer free blocks than a request needs; nothing was allocated."""


def blocks_needed(n_tokens: int, block_size: int) -> int:
    """Blocks that hold `n_tokens` positions: n_tokens / block_size rounded up (0 tokens need 0 blocks).

    Shapes: ints -> an int.

    See chapters/08_serving.ipynb.
    """
    expect_positive_int("n_tokens", n_tokens, allow_zero=True)
    expect_positive_int("block_size", block_size)
    return -(-n_tokens // block_size)


class BlockAllocator:
    """A free list of block ids with a reference count per block; blocks return to the list at count 0.

    `allocate(n)` is all or nothing: it raises `OutOfBlocksError` naming what was asked and what is free,
    and then nothing has changed. The lowest free id is handed out first, so runs are reproducible.

    Shapes: ids are ints in [0, num_blocks).

    See chapters/08_serving.ipynb.
    """

    def __init__(self, num_blocks: int) -> None:
        self.num_blocks = expect_positive_int("num_blocks", num_blocks)
        self.ref_counts = [0] * num_blocks
        self._free = list(range(num_blocks - 1, -1, -1))  # a stack: pop() gives the lowest id first

    @property
    def num_free(self) -> int:
        """Blocks nobody references."""
        return len(self._free)

    def allocate(self, n: int) -> list[int]:
        """Take `n` free blocks (reference count 1 each), or raise OutOfBlocksError and take none."""
        expect_positive_int("n", n, allow_zero=True)
        if n > len(self._free):
            raise OutOfBlocksError(f"Requested {n} blocks but only {len(self._free)} of {self.num_blocks} are free; "
                                   "nothing was allocated (free a finished sequence, or wait for one)")
        blocks = [self._free.pop() for _ in range(n)]
        for b in blocks:
            self.ref_counts[b] = 1
        return blocks

    def share(self, block: int) -> None:
        """One more sequence references `block` (a shared prefix)."""
        self._check_in_use(block)
        self.ref_counts[block] += 1

    def free(self, block: int) -> None:
        """One sequence lets go of `block`; at no references left it returns to the free list."""
        self._check_in_use(block)
        self.ref_counts[block] -= 1
        if self.ref_counts[block] == 0:
            self._free.append(block)

    def _check_in_use(self, block: object) -> None:
        if not isinstance(block, int) or not 0 <= block < self.num_blocks:
            raise ValueError(f"Expected `block` to be an int in [0, {self.num_blocks}) but got {block!r}")
        if self.ref_counts[block] == 0:
            raise ValueError(f"Block {block} is free: it cannot be shared or freed again (a double free?)")


def gather_paged_kv(
    key_blocks: torch.Tensor, value_blocks: torch.Tensor, block_table: torch.Tensor, seq_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence's keys and values, in position order, read from the pool through its block table.

    Position p is at offset p % P of physical block block_table[p // P]; the last block may be partly filled.

    Shapes: key_blocks (N, H, P, D), value_blocks (N, H, P, Dv), block_table (n,) int, seq_len S <= n * P
        -> keys (H, S, D), values (H, S, Dv).

    See chapters/08_serving.ipynb.
    """
    for name, x in (("key_blocks", key_blocks), ("value_blocks", value_blocks)):
        expect_tensor(name, x)
        expect_ndim(name, x, 4, "(N, H, P, D)")
    expect_tensor("block_table", block_table)
    if block_table.dim() != 1 or block_table.is_floating_point() or block_table.dtype == torch.bool:
        raise ValueError(f"Expected `block_table` to be a 1-D integer tensor (n,) but got shape "
                         f"{shape_str(block_table.shape)} of dtype {block_table.dtype}")
    N, H, P, D = key_blocks.shape
    if value_blocks.shape[:3] != key_blocks.shape[:3]:
        raise ValueError(f"Expected `value_blocks` shape to be ({N}, {H}, {P}, Dv) like `key_blocks` "
                         f"but got {shape_str(value_blocks.shape)}")
    n = block_table.shape[0]
    expect_positive_int("seq_len", seq_len, allow_zero=True)
    if seq_len > n * P:
        raise ValueError(f"Expected `seq_len` <= {n} blocks x {P} positions = {n * P} but got {seq_len}")
    positions = torch.arange(seq_len, device=block_table.device)  # (S,)
    blocks = block_table[positions // P]  # (S,): the physical block of each position
    offsets = positions % P  # (S,): its slot inside that block
    keys = key_blocks[blocks, :, offsets]  # (S, H, D): advanced indices on dims 0 and 2 come first
    values = value_blocks[blocks, :, offsets]  # (S, H, Dv)
    return keys.transpose(0, 1), values.transpose(0, 1)  # (H, S, D), (H, S, Dv)


class PagedKVCache:
    """Keys and values of many sequences in one pool of blocks, each sequence with its block table.

    Sequences are named by any hashable id. `add(seq)` starts an empty one, `fork(parent, child)` makes
    `child` share all of `parent`'s blocks (copy-on-write later), `free(seq)` gives its blocks back,
    `truncate(seq, n)` forgets positions from n on (speculative decoding's rollback). A model call goes
    through `batch(seqs, L)`, which reserves room for L new positions in each sequence (all or nothing:
    on `OutOfBlocksError` no sequence changed) and is passed to `GPT` as its cache.

    Memory: `nbytes` is the pool's; `allocated_nbytes()` the blocks in use; `used_nbytes()` the positions
    actually held.

    Shapes: pool per layer: key_blocks[layer] (N, H, P, D), value_blocks[layer] (N, H, P, D).

    See chapters/08_serving.ipynb.
    """

    def __init__(
        self,
        n_layer: int,
        n_head: int,
        head_dim: int,
        *,
        num_blocks: int,
        block_size: int = 16,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        for name, n in (("n_layer", n_layer), ("n_head", n_head), ("head_dim", head_dim),
                        ("num_blocks", num_blocks), ("block_size", block_size)):
            expect_positive_int(name, n)
        self.n_layer, self.n_head, self.head_dim, self.block_size = n_layer, n_head, head_dim, block_size
        self.allocator = BlockAllocator(num_blocks)
        shape = (num_blocks, n_head, block_size, head_dim)  # (N, H, P, D)
        self.key_blocks = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.value_blocks = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.tables: dict[object, list[int]] = {}  # sequence -> its physical block ids, in logical order
        self.lengths: dict[object, int] = {}  # sequence -> positions held

    # --- bookkeeping ------------------------------------------------------------------------------

    def add(self, seq: object) -> None:
        """Start an empty sequence (no blocks yet)."""
        if seq in self.tables:
            raise ValueError(f"Sequence {seq!r} is already in the cache")
        self.tables[seq], self.lengths[seq] = [], 0

    def fork(self, parent: object, child: object) -> None:
        """`child` starts as a copy of `parent` that shares its blocks (no keys or values are copied)."""
        self._expect_seq(parent)
        self.add(child)
        for b in self.tables[parent]:
            self.allocator.share(b)
        self.tables[child], self.lengths[child] = list(self.tables[parent]), self.lengths[parent]

    def free(self, seq: object) -> None:
        """Forget a sequence; blocks no other sequence references go back to the free list."""
        self._expect_seq(seq)
        for b in self.tables.pop(seq):
            self.allocator.free(b)
        del self.lengths[seq]

    def truncate(self, seq: object, length: int) -> None:
        """Keep only the first `length` positions of `seq`, freeing the blocks past them."""
        self._expect_seq(seq)
        if not isinstance(length, int) or not 0 <= length <= self.lengths[seq]:
            raise ValueError(f"Expected `length` in [0, {self.lengths[seq]}] but got {length!r}")
        keep = blocks_needed(length, self.block_size)
        for b in self.tables[seq][keep:]:
            self.allocator.free(b)
        del self.tables[seq][keep:]
        self.lengths[seq] = length

    def block_table(self, seq: object) -> torch.Tensor:
        """The physical block ids of `seq`, in logical order. Shapes: -> (n,) int64."""
        self._expect_seq(seq)
        return torch.tensor(self.tables[seq], dtype=torch.long)

    def _expect_seq(self, seq: object) -> None:
        if seq not in self.tables:
            raise KeyError(f"No sequence {seq!r} in the cache (it holds {sorted(map(repr, self.tables))})")

    def reserve(self, seqs: Sequence[object], n_new: int) -> list[int]:
        """Make room for `n_new` more positions in each sequence; return their start positions.

        New blocks are allocated where the last one is full, and a shared last block that would be
        written into is copied first (copy-on-write). All or nothing: OutOfBlocksError changes nothing.
        """
        expect_positive_int("n_new", n_new)
        for s in seqs:
            self._expect_seq(s)
        P = self.block_size
        plans = []  # per sequence: (copy its last block?, new blocks to allocate)
        for s in seqs:
            n, table = self.lengths[s], self.tables[s]
            copy = n % P != 0 and self.allocator.ref_counts[table[-1]] > 1  # writing into a shared, partial block
            plans.append((copy, blocks_needed(n + n_new, P) - len(table)))
        wanted = sum(copy + extra for copy, extra in plans)
        if wanted > self.allocator.num_free:
            raise OutOfBlocksError(
                f"Requested {wanted} blocks for {n_new} new positions in {len(seqs)} sequences but only "
                f"{self.allocator.num_free} of {self.allocator.num_blocks} are free; no sequence was changed"
            )
        starts = []
        for s, (copy, extra) in zip(seqs, plans, strict=True):
            table = self.tables[s]
            if copy:  # copy-on-write: this sequence gets its own copy of the shared block
                (fresh,) = self.allocator.allocate(1)
                for layer in range(self.n_layer):
                    self.key_blocks[layer][fresh] = self.key_blocks[layer][table[-1]]
                    self.value_blocks[layer][fresh] = self.value_blocks[layer][table[-1]]
                self.allocator.free(table[-1])
                table[-1] = fresh
            table += self.allocator.allocate(extra)
            starts.append(self.lengths[s])
            self.lengths[s] += n_new
        return starts

    def batch(self, seqs: Sequence[object], n_new: int) -> PagedBatch:
        """Reserve `n_new` positions in each of `seqs` and return the cache view one GPT call uses."""
        return PagedBatch(self, list(seqs), self.reserve(seqs, n_new), n_new)

    # --- memory -------------------------------------------------------------------------------------

    @property
    def bytes_per_block(self) -> int:
        """Keys and values of one block in every layer."""
        return 2 * sum(t[0].nbytes for t in self.key_blocks)

    @property
    def nbytes(self) -> int:
        """The whole pool (allocated up front, like a GPU server's KV memory)."""
        return self.bytes_per_block * self.allocator.num_blocks

    def allocated_nbytes(self) -> int:
        """Bytes of the blocks in use (a shared block counts once)."""
        return self.bytes_per_block * (self.allocator.num_blocks - self.allocator.num_free)

    def used_nbytes(self) -> int:
        """Bytes of the positions the sequences hold (shared positions count once per sequence)."""
        return self.bytes_per_block // self.block_size * sum(self.lengths.values())


class PagedBatch:
    """The cache of one GPT call on B sequences of a `PagedKVCache`, each getting L new positions.

    `update(layer, k, v)` writes the new keys and values into each sequence's blocks and returns every
    sequence's keys and values gathered through its table, right-padded to the longest; `attn_mask`
    lets query l of row b see its own keys up to position start_b + l (causal, bottom-right aligned)
    and none of the padding; `positions(L)` are the rows' absolute positions, for the position embedding.

    Shapes: update: k, v (B, H, L, D) -> k_all, v_all (B, H, S, D); attn_mask (B, 1, L, S) bool or None
        (None when every key may be seen); positions (B, L).

    See chapters/08_serving.ipynb.
    """

    def __init__(self, cache: PagedKVCache, seqs: list[object], starts: list[int], n_new: int) -> None:
        self.cache, self.seqs, self.n_new = cache, seqs, n_new
        self.starts = torch.tensor(starts)  # (B,): each row's first new position
        self.lengths = [s + n_new for s in starts]  # positions per row after this call
        S, L = max(self.lengths), n_new
        l_idx, j_idx = torch.arange(L)[:, None], torch.arange(S)[None, :]  # (L, 1), (1, S)
        mask = j_idx <= self.starts[:, None, None] + l_idx  # (B, L, S): causal per row; padding j >= length
        self.attn_mask = None if bool(mask.all()) else mask[:, None]  # (B, 1, L, S)
        self.tables = [cache.block_table(s) for s in seqs]  # (n_b,) each

    def positions(self, L: int) -> torch.Tensor:
        """Absolute positions of the new tokens. Shapes: -> (B, L)."""
        if L != self.n_new:
            raise ValueError(f"Expected {self.n_new} new tokens per sequence (reserved) but got {L}")
        return self.starts[:, None] + torch.arange(L)  # (B, L)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new positions of `layer` into the blocks; return all positions, right-padded."""
        B, L = len(self.seqs), self.n_new
        c = self.cache
        if k.shape != (B, c.n_head, L, c.head_dim) or v.shape != k.shape:
            raise ValueError(f"Expected `k` and `v` shape to be {shape_str((B, c.n_head, L, c.head_dim))} "
                             f"(B, H, L, D) but got {shape_str(k.shape)} and {shape_str(v.shape)}")
        key_blocks, value_blocks = c.key_blocks[layer], c.value_blocks[layer]  # (N, H, P, D)
        if B == 1:  # one sequence: nothing to pad
            self._write(key_blocks, value_blocks, 0, k[0], v[0])
            keys, values = gather_paged_kv(key_blocks, value_blocks, self.tables[0], self.lengths[0])  # (H, S, D)
            return keys[None], values[None]  # (1, H, S, D)
        S = max(self.lengths)
        k_all = k.new_zeros(B, c.n_head, S, c.head_dim)  # (B, H, S, D), right-padded
        v_all = v.new_zeros(B, c.n_head, S, c.head_dim)
        for b in range(B):
            self._write(key_blocks, value_blocks, b, k[b], v[b])
            keys, values = gather_paged_kv(key_blocks, value_blocks, self.tables[b], self.lengths[b])  # (H, S_b, D)
            k_all[b, :, : self.lengths[b]] = keys
            v_all[b, :, : self.lengths[b]] = values
        return k_all, v_all

    def _write(self, key_blocks: torch.Tensor, value_blocks: torch.Tensor, row: int, k: torch.Tensor,
               v: torch.Tensor) -> None:
        """Store row `row`'s new keys and values (H, L, D) in their slots: position p at block table[p // P], p % P."""
        P = self.cache.block_size
        pos = torch.arange(int(self.starts[row]), self.lengths[row])  # (L,) positions written
        blocks, offsets = self.tables[row][pos // P], pos % P  # (L,), (L,)
        key_blocks[blocks, :, offsets] = k.transpose(0, 1)  # (L, H, D) into their slots
        value_blocks[blocks, :, offsets] = v.transpose(0, 1)
