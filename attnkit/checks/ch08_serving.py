"""Exercises of chapter 8 (solutions/08_serving.ipynb): gather through a block table, a block manager, verify a draft.

References: `attnkit.gather_paged_kv` (tests/test_paged_cache.py checks it against keys written position
by position), a block manager with a free list and reference counts (the bookkeeping of
`attnkit.PagedKVCache`, run through scripted scenarios whose outputs do not depend on which free block
is taken), and greedy verification as in Leviathan et al. 2023 (`attnkit.verify_draft`, checked against
the target's own greedy decoding in tests/test_speculative.py).
"""

from __future__ import annotations

import torch

from attnkit.checks.core import Case, Exercise, Misconception, randn

NOTEBOOK = "08_serving.ipynb"


# --- 8.1 gather a sequence's keys and values through its block table ---------------------------------


def _gather(key_blocks, value_blocks, block_table, seq_len, *, swap=False, crop=True, table=True, sort=False,
            flat_reshape=False):
    N, H, P, D = key_blocks.shape
    n = block_table.shape[0]
    if sort:
        block_table = block_table.sort().values
    if not table:
        block_table = torch.arange(n)
    pos = torch.arange(seq_len if crop else n * P)
    blocks, offsets = (block_table[pos % P], pos // P) if swap else (block_table[pos // P], pos % P)

    def read(pool):
        if flat_reshape:  # (n, H, P, D) reshaped straight to (H, n * P, D): blocks and heads mixed
            out = pool[block_table].reshape(H, n * P, pool.shape[-1])
            return out[:, : len(pos)]
        return pool[blocks, :, offsets].transpose(0, 1)  # (S, H, D) -> (H, S, D)

    return read(key_blocks), read(value_blocks)


def _gather_ref(key_blocks, value_blocks, block_table, seq_len):
    return _gather(key_blocks, value_blocks, block_table, seq_len)


def _gather_case(gen: torch.Generator, name: str, N: int, H: int, P: int, D: int, Dv: int, table: list[int],
                 seq_len: int) -> Case:
    return Case(name, {"key_blocks": randn(gen, N, H, P, D), "value_blocks": randn(gen, N, H, P, Dv),
                       "block_table": torch.tensor(table), "seq_len": seq_len})


def _gather_cases(gen: torch.Generator) -> list[Case]:
    return [
        _gather_case(gen, "pool (6, 2, 3, 4), values Dv=5, block_table [4, 0, 2], seq_len=7 (last block 1 of 3)",
                     6, 2, 3, 4, 5, [4, 0, 2], 7),
        _gather_case(gen, "pool (5, 3, 2, 4), values Dv=3, block_table [3, 1], seq_len=4 (both blocks full)",
                     5, 3, 2, 4, 3, [3, 1], 4),
        _gather_case(gen, "pool (4, 2, 4, 3), block_table [2], seq_len=1", 4, 2, 4, 3, 3, [2], 1),
    ]


def _gather_hidden(gen: torch.Generator) -> list[Case]:
    return [_gather_case(gen, "pool (9, 4, 4, 6), block_table [8, 3, 5, 0], seq_len=14", 9, 4, 4, 6, 2,
                         [8, 3, 5, 0], 14)]


# --- 8.2 a block manager: allocate and free ---------------------------------------------------------


class _Manager:
    """The reference of 8.2, with switches for the mistakes."""

    floor = plus_one = per_call = no_return = ignore_refs = partial = stale_length = False
    full_at_equal = no_ref_set = table_kept = no_decrement = length_kept = length_first = False

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
        total = (0 if self.stale_length else length) + n_tokens
        if self.per_call:
            need = -(-n_tokens // self.block_size)
        elif self.floor:
            need = total // self.block_size - len(table)
        elif self.plus_one:
            need = total // self.block_size + 1 - len(table)
        else:
            need = -(-total // self.block_size) - len(table)
        need = max(need, 0)
        if self.length_first:  # the length updated before the test that may refuse the request
            self.lengths[seq] = length + n_tokens
        if (need >= len(self.free_blocks) if self.full_at_equal else need > len(self.free_blocks)) \
                and not self.partial:
            raise RuntimeError(f"out of blocks: {need} requested, {len(self.free_blocks)} free")
        for _ in range(need):
            if not self.free_blocks:
                raise RuntimeError("out of blocks")
            b = self.free_blocks.pop(0)
            if not self.no_ref_set:
                self.ref_counts[b] = 1
            table.append(b)
        self.lengths[seq] = length + n_tokens

    def free(self, seq):
        for b in (self.tables[seq] if self.table_kept else self.tables.pop(seq)):
            if self.no_decrement and self.ref_counts[b] != 1:
                continue  # leaves a shared block's count as it is
            self.ref_counts[b] -= 1
            if (self.ref_counts[b] == 0 or self.ignore_refs) and not self.no_return:
                self.free_blocks.append(b)
        if not (self.table_kept or self.length_kept):
            del self.lengths[seq]


def _manager(**mistakes):
    return type("Manager", (_Manager,), mistakes)


def _call_manager(cls, inputs: dict):
    """Run the scenario `ops` on cls(num_blocks, block_size); after every op record what a server would see.

    Outputs, per op: free blocks; blocks in each sequence's table (sequences 0 .. n_seqs - 1); distinct
    blocks held by all tables together; 1 if the op raised RuntimeError (out of blocks) else 0.
    """
    manager = cls(inputs["num_blocks"], inputs["block_size"])
    if not all(callable(getattr(manager, name, None)) for name in ("allocate", "free", "fork")):
        return manager  # not a block manager: judged on what it returned
    free, per_seq, in_use, raised = [], [], [], []
    for op in inputs["ops"]:
        failed = 0
        if op[0] == "allocate":
            try:
                manager.allocate(op[1], op[2])
            except NotImplementedError:  # a RuntimeError too, but the stub's: not an answer to judge
                raise
            except RuntimeError:
                failed = 1
        elif op[0] == "fork":
            manager.fork(op[1], op[2])
        elif op[1] in manager.tables:  # a server never frees a request whose allocation it refused
            manager.free(op[1])
        tables = manager.tables
        free.append(len(manager.free_blocks))
        per_seq.append([len(tables.get(s, ())) for s in range(inputs["n_seqs"])])
        in_use.append(len({b for t in tables.values() for b in t}))
        raised.append(failed)
    return torch.tensor(free), torch.tensor(per_seq), torch.tensor(in_use), torch.tensor(raised)


def _manager_cases(gen: torch.Generator) -> list[Case]:
    decode = [("allocate", 0, 5), ("allocate", 1, 3), ("allocate", 0, 1), ("allocate", 0, 1), ("allocate", 0, 1),
              ("allocate", 0, 1), ("allocate", 1, 1), ("allocate", 1, 1), ("free", 0), ("allocate", 2, 12),
              ("allocate", 0, 2), ("free", 1), ("free", 2), ("free", 0)]  # op 10: a new request reuses id 0
    shared = [("allocate", 0, 8), ("fork", 0, 1), ("fork", 0, 2), ("allocate", 1, 3), ("allocate", 2, 5),
              ("free", 0), ("free", 1), ("allocate", 3, 12), ("free", 2), ("free", 3)]
    full = [("allocate", 0, 3), ("allocate", 1, 4), ("allocate", 0, 5), ("free", 1), ("allocate", 0, 5),
            ("allocate", 1, 2), ("free", 0), ("free", 1)]
    return [
        Case("block_size=4, 8 blocks: prompts of 5 and 3 tokens, then one token at a time, then frees; op 10 is "
             "a new 2-token request under the freed id 0",
             {"num_blocks": 8, "block_size": 4, "n_seqs": 3, "ops": decode}),
        Case("block_size=4, 10 blocks: an 8-token prompt forked into two continuations, then frees",
             {"num_blocks": 10, "block_size": 4, "n_seqs": 4, "ops": shared}),
        Case("block_size=2, 5 blocks: the pool runs out (op 2: sequence 0 asks for 2 blocks, 1 is free), then "
             "op 5 asks for exactly the 1 block left, which must succeed",
             {"num_blocks": 5, "block_size": 2, "n_seqs": 2, "ops": full}),
    ]


def _manager_hidden(gen: torch.Generator) -> list[Case]:
    ops = [("allocate", 0, 3), ("fork", 0, 1), ("allocate", 1, 6), ("allocate", 0, 1), ("allocate", 2, 9),
           ("free", 0), ("allocate", 2, 4), ("free", 1), ("allocate", 3, 12), ("free", 2), ("free", 3)]
    return [Case("block_size=3, 9 blocks, fork inside a scenario", {"num_blocks": 9, "block_size": 3, "n_seqs": 4,
                                                                    "ops": ops})]


def _describe_scenario(inputs: dict) -> str:
    """The scenario in full, its ops numbered as the messages number them (the lists are short)."""
    ops = "; ".join(f"{i}: {op!r}" for i, op in enumerate(inputs["ops"]))
    return (f"inputs: BlockManager(num_blocks={inputs['num_blocks']}, block_size={inputs['block_size']}), "
            f"then op 0, op 1, ... = {ops}")


# --- 8.3 verify a draft ------------------------------------------------------------------------------


def _verify(draft_tokens, target_logits, *, stop=True, bonus=True, shift=False, draft_at_mismatch=False,
            append=True, count_all=False, mask=None, shift_fix_at=None, bonus_row_k_minus_1=False,
            argmin_no_sentinel=False):
    choice = target_logits.argmax(dim=-1)  # (k + 1,)
    k = draft_tokens.shape[0]
    verifier = choice[1:] if shift else choice[:k]  # which logits verify which draft token
    agree = verifier == draft_tokens  # (k,)
    if not stop:  # keeps going after a mismatch: takes the target's token at every position
        return choice.clone()
    if mask is not None:  # draft_tokens[agree] (or a loop without break): agreeing tokens after a mismatch kept
        first = int(agree.long().cumprod(dim=0).sum())
        return torch.cat([draft_tokens[agree], choice[k if mask == "last" else first].view(1)])
    # count_all: n = (choice[:k] == draft).sum() counts agreements after the first mismatch too
    n = int(agree.long().sum()) if count_all else int(agree.long().cumprod(dim=0).sum())
    if argmin_no_sentinel:  # n = first False of agree; with no False at all, argmin says 0, not k
        n = int(agree.long().argmin())
    if bonus_row_k_minus_1 and n == k:  # the bonus read from the row that verified the last draft token
        return torch.cat([draft_tokens, choice[k - 1:k]])
    if shift_fix_at == "n":  # compares with target_logits[i + 1] but corrects with target_logits[n]
        return torch.cat([draft_tokens[:n], choice[n:n + 1]])
    if not append:
        return draft_tokens[:n].clone()
    if n == k and not bonus:
        return draft_tokens.clone()
    if shift:  # thinks target_logits[i + 1] verifies draft token i, and corrects with it
        return torch.cat([draft_tokens[:n], choice[n + 1:n + 2]])
    if draft_at_mismatch and n < k:
        return draft_tokens[:n + 1].clone()
    return torch.cat([draft_tokens[:n], choice[n:n + 1]])


def _describe_draft(inputs: dict) -> str:
    """The draft and the target's own choices side by side: what a learner compares to debug 8.3."""
    draft, logits = inputs["draft_tokens"], inputs["target_logits"]
    return (f"inputs: draft_tokens={draft.tolist()}, target_logits ({logits.shape[0]}, {logits.shape[1]}) "
            f"{str(logits.dtype).replace('torch.', '')} whose argmax(-1) = {logits.argmax(-1).tolist()}")


def _verify_ref(draft_tokens, target_logits):
    return _verify(draft_tokens, target_logits)


def _logits_choosing(gen: torch.Generator, choices: list[int], V: int) -> torch.Tensor:
    logits = randn(gen, len(choices), V)  # (k + 1, V)
    logits[torch.arange(len(choices)), torch.tensor(choices)] += 6.0  # each row's argmax is its choice
    return logits


def _verify_case(gen, name, draft, choices, V):
    return Case(name, {"draft_tokens": torch.tensor(draft), "target_logits": _logits_choosing(gen, choices, V)})


def _verify_cases(gen: torch.Generator) -> list[Case]:
    return [
        _verify_case(gen, "k=4, V=8: the target disagrees with draft token 1 (tokens 2 and 3 agree again)",
                     [3, 1, 4, 1], [3, 5, 4, 1, 2], 8),
        _verify_case(gen, "k=3, V=6: the target agrees with every draft token", [2, 2, 5], [2, 2, 5, 0], 6),
        _verify_case(gen, "k=4, V=10: the target disagrees with the first draft token", [7, 7, 7, 7],
                     [1, 7, 7, 7, 7], 10),
        _verify_case(gen, "k=2, V=5: one accepted, then a mismatch", [0, 4], [0, 3, 1], 5),
    ]


def _verify_hidden(gen: torch.Generator) -> list[Case]:
    return [_verify_case(gen, "k=6, V=12, mismatch at 4", [5, 6, 7, 8, 9, 10], [5, 6, 7, 8, 1, 10, 11], 12),
            _verify_case(gen, "k=1, V=4, all accepted", [3], [3, 2], 4)]


EXERCISES = [
    Exercise(
        id="8.1", notebook=NOTEBOOK, function="gather_paged_kv",
        title="Read one sequence's keys and values, in position order, from the block pool through its block table",
        reference=_gather_ref, make_cases=_gather_cases, make_hidden_cases=_gather_hidden,
        output_names=("keys", "values"),
        error_hints=(
            (r"is invalid for input of size",
             "The sizes given to reshape do not multiply to the tensor's entries. Keys and values may have "
             "different head sizes: read D from key_blocks.shape[-1] and Dv from value_blocks.shape[-1] "
             "(not the same D for both), and n * block_size from the table.", "reshape-d-vs-dv"),
        ),
        misconceptions=(
            Misconception(lambda **kw: _gather(**kw, swap=True),
                          "Block index and offset are swapped: position p lives in logical block p // block_size "
                          "(look it up in the table) at offset p % block_size inside it, not the other way round.",
                          name="index-offset-swapped"),
            Misconception(lambda **kw: _gather(**kw, crop=False),
                          "You returned every slot of every block in the table. The last block is only partly "
                          "filled: keep the first `seq_len` positions.", name="last-partial-block"),
            Misconception(lambda **kw: _gather(**kw, table=False),
                          "You read the pool's blocks 0, 1, 2, ... in order. The sequence's blocks are wherever "
                          "the block table says: logical block i is physical block block_table[i].",
                          name="table-ignored"),
            Misconception(lambda **kw: _gather(**kw, sort=True),
                          "You sorted the block table. Its ORDER is the sequence's order: block_table[0] holds "
                          "positions 0 .. block_size - 1 even if its id is large.", name="sorted-table"),
            Misconception(lambda **kw: _gather(**kw, flat_reshape=True),
                          "You reshaped the gathered (n, H, block_size, D) blocks straight to (H, n * block_size, "
                          "D), which mixes heads and blocks. Move the head axis first: (n, H, P, D) -> (H, n, P, D)"
                          " (transpose(0, 1)), then merge n and P.", name="reshape-mixes-heads"),
        ),
    ),
    Exercise(
        id="8.2", notebook=NOTEBOOK, function="BlockManager",
        title="A block manager: allocate blocks only when the last one is full, free them when nobody holds them",
        reference=_Manager, make_cases=_manager_cases, make_hidden_cases=_manager_hidden, call=_call_manager,
        output_names=("free_after_op", "table_sizes_after_op", "in_use_after_op", "raised_at_op"),
        output_notes=("the number of free blocks after each op; index = op number",
                      "len(tables[seq]) after each op; row = op number, column = seq",
                      "distinct blocks held by all tables after each op; index = op number",
                      "1 where the op raised RuntimeError, else 0; index = op number"),
        describe=_describe_scenario,
        error_hints=(
            (r"(?i)out of|not enough|blocks|free|^(MemoryError|IndexError|ValueError|AssertionError):",
             "When the pool is too small, raise RuntimeError (the checker catches that one, as a server's scheduler "
             "would, and checks that nothing changed); another exception type (MemoryError, IndexError from "
             "popping an empty list, ...) is reported as a crash.",
             "not-runtime-error"),
        ),
        misconceptions=(
            Misconception(_manager(floor=True),
                          "Too few blocks: length // block_size rounds DOWN, so a partly filled last block is "
                          "never allocated. A sequence of n tokens needs ceil(n / block_size) blocks, "
                          "-(-n // block_size) in integers.", name="blocks-rounded-down"),
            Misconception(_manager(plus_one=True),
                          "Off by one: n // block_size + 1 blocks is one too many when n is a multiple of "
                          "block_size (8 tokens in blocks of 4 need 2 blocks, not 3). Use ceil(n / block_size).",
                          name="blocks-plus-one"),
            Misconception(_manager(per_call=True),
                          "You allocate ceil(n_tokens / block_size) NEW blocks at every call, even when the last "
                          "block still has room: a decoding sequence then takes a block per token. Count the "
                          "blocks the new TOTAL length needs, minus the blocks the table already has.",
                          name="ignores-room-in-last-block"),
            Misconception(_manager(stale_length=True),
                          "The sequence's length is not taken into account: blocks needed come from the tokens it "
                          "already holds PLUS n_tokens (self.lengths[seq] + n_tokens).", name="length-ignored"),
            Misconception(_manager(full_at_equal=True),
                          "Off by one in the out-of-blocks test: you refuse when need >= the number of free "
                          "blocks, so the last free blocks are never handed out. A request for exactly the blocks "
                          "that are free must succeed: raise only when need > len(self.free_blocks).",
                          name="full-at-equal"),
            Misconception(_manager(no_ref_set=True),
                          "Freed blocks never come back: allocate does not set ref_counts[b] = 1 when it takes a "
                          "block, so free's decrement never reaches 0. Set the count when you take the block.",
                          name="ref-count-not-set"),
            Misconception(_manager(no_return=True),
                          "Freed blocks never go back to the free list, so the pool leaks: when a block's "
                          "reference count drops to 0, append it to self.free_blocks (and check that allocate "
                          "set ref_counts[b] = 1 when it took the block, or the count never reaches 0).",
                          name="blocks-not-returned"),
            Misconception(_manager(no_decrement=True),
                          "free skips the blocks another sequence shares (count above 1) without decrementing "
                          "them, so when their last holder frees them they are never returned. Decrement EVERY "
                          "block of the table and return it to the free list when its count reaches 0.",
                          name="shared-count-not-decremented"),
            Misconception(_manager(table_kept=True),
                          "free returns the blocks but leaves the sequence's table (and length) in place: a freed "
                          "sequence still appears to hold its blocks. Remove it: self.tables.pop(seq), "
                          "del self.lengths[seq].", name="table-kept"),
            Misconception(_manager(length_kept=True),
                          "free removes the table but leaves self.lengths[seq]: when a new request reuses the id, "
                          "allocate starts from the old length and asks for too many blocks. Forget the length "
                          "too: del self.lengths[seq].", name="length-kept"),
            Misconception(_manager(ignore_refs=True),
                          "You freed a shared block that another sequence still references (a forked prompt): "
                          "decrement its reference count and return it to the free list only at 0.",
                          name="freed-shared-block"),
            Misconception(_manager(partial=True),
                          "When the pool runs out you took the blocks that were free and then failed, losing "
                          "them: check that enough blocks are free BEFORE taking any, and raise RuntimeError "
                          "without changing anything.", name="partial-allocation"),
            Misconception(_manager(length_first=True),
                          "A refused request changed the sequence's length: you added n_tokens to "
                          "self.lengths[seq] before finding out the pool is too small, so its next request asks "
                          "for blocks it never got. Raise BEFORE changing anything; update the length last.",
                          name="length-changed-on-refusal"),
        ),
    ),
    Exercise(
        id="8.3", notebook=NOTEBOOK, function="verify_draft",
        title="Greedy speculative decoding: keep the draft's agreeing prefix, then the target's token",
        reference=_verify_ref, make_cases=_verify_cases, make_hidden_cases=_verify_hidden,
        output_names=("tokens",), describe=_describe_draft,
        misconceptions=(
            Misconception(lambda **kw: _verify(**kw, stop=False),
                          "You kept going after the first mismatch. Once draft token i is rejected, the target's "
                          "logits at positions after i were computed on a context that contains the wrong token: "
                          "stop at the first disagreement.", name="accepts-past-mismatch"),
            Misconception(lambda **kw: _verify(**kw, count_all=True),
                          "You kept going after the first mismatch: n = (argmax == draft).sum() counts EVERY "
                          "agreement, also those after a rejected token. Accept only the agreeing PREFIX: stop "
                          "counting at the first disagreement (a loop with break, or cumprod of the matches).",
                          name="counts-all-matches"),
            Misconception(lambda **kw: _verify(**kw, mask="last"),
                          "You kept going after the first mismatch: draft_tokens[agree] keeps agreeing tokens "
                          "that come AFTER a rejected one. Once draft token i is rejected, everything after it was "
                          "computed on a wrong context: keep draft_tokens[:n], n = the first disagreement.",
                          name="mask-selects-past-mismatch"),
            Misconception(lambda **kw: _verify(**kw, mask="first"),
                          "You kept going after the first mismatch (a loop without `break`, or draft_tokens[agree]): "
                          "agreeing tokens after a rejected one are kept. Stop at the first disagreement n and "
                          "return draft_tokens[:n] plus the target's token there.",
                          name="loop-without-break"),
            Misconception(lambda **kw: _verify(**kw, bonus=False),
                          "When every draft token is accepted you forgot the bonus token: target_logits[k] (after "
                          "all k draft tokens) gives one more token for free, so a round returns k + 1 tokens.",
                          name="no-bonus-token"),
            Misconception(lambda **kw: _verify(**kw, shift=True),
                          "Wrong alignment: target_logits[i] is the target's prediction AFTER the context and the "
                          "first i draft tokens, so it verifies draft token i (not i - 1). Compare "
                          "argmax(target_logits[:k]) with the draft.", name="off-by-one-alignment"),
            Misconception(lambda **kw: _verify(**kw, shift=True, shift_fix_at="n"),
                          "Wrong alignment: you compare draft token i with argmax(target_logits[i + 1]). "
                          "target_logits[i] is the target's prediction AFTER the context and the first i draft "
                          "tokens, so it is the one that verifies draft token i.",
                          name="off-by-one-comparison"),
            Misconception(lambda **kw: _verify(**kw, draft_at_mismatch=True),
                          "At the first mismatch you kept the draft's token. The target decides: append "
                          "argmax(target_logits[n]), the target's own token at the first rejected position.",
                          name="draft-token-at-mismatch"),
            Misconception(lambda **kw: _verify(**kw, append=False),
                          "You returned only the accepted draft tokens: every round also gains the target's token "
                          "at position n (its correction, or the bonus token), n + 1 tokens in all.",
                          name="no-target-token"),
            Misconception(lambda **kw: _verify(**kw, bonus_row_k_minus_1=True),
                          "When all k draft tokens are accepted, the bonus token is the target's choice AFTER the "
                          "last of them: row k of target_logits (the last row), not row k - 1, which only "
                          "verified draft token k - 1.", name="bonus-from-row-k-minus-1"),
            Misconception(lambda **kw: _verify(**kw, argmin_no_sentinel=True),
                          "You found the first disagreement with argmin (or argmax of ~agree): when every draft "
                          "token agrees there is no False to find and it returns 0, not k. Append a False first "
                          "(torch.cat([agree, agree.new_zeros(1)])) or count the agreeing prefix with cumprod.",
                          name="argmin-without-sentinel"),
        ),
    ),
]
