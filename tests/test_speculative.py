"""attnkit.speculative: verify_draft's acceptance rule, and speculative decoding's tokens equal the target's."""

from __future__ import annotations

import pytest
import torch

from attnkit import GPT, GPTConfig, KVCache, PagedKVCache, generate
from attnkit.speculative import speculative_generate, verify_draft


def logits_choosing(tokens: list[int], V: int = 6) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(tokens), V).float() * 3.0  # argmax = tokens


@pytest.mark.parametrize("draft, target, kept", [
    ([1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4]),  # all accepted: the bonus token too
    ([1, 2, 3], [1, 5, 3, 4], [1, 5]),  # stops at the first mismatch, even though 3 matches again
    ([1, 2, 3], [0, 2, 3, 4], [0]),  # nothing accepted: the target's own token
    ([], [4], [4]),  # k = 0: plain greedy decoding
])
def test_verify_draft_keeps_the_agreeing_prefix_and_one_target_token(draft, target, kept):
    got = verify_draft(torch.tensor(draft, dtype=torch.long), logits_choosing(target))
    assert got.tolist() == kept


def test_verify_draft_checks_the_shapes():
    with pytest.raises(ValueError, match=r"\(k \+ 1, V\) = \(4, V\)"):
        verify_draft(torch.tensor([1, 2, 3]), logits_choosing([1, 2, 3]))


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    target = GPT(GPTConfig(vocab_size=30, block_size=128, n_layer=3, n_head=4, n_embd=32)).eval()
    torch.manual_seed(1)
    draft = GPT(GPTConfig(vocab_size=30, block_size=128, n_layer=1, n_head=2, n_embd=16)).eval()
    return target, draft


@pytest.mark.parametrize("cache_type", [KVCache, PagedKVCache])
@pytest.mark.parametrize("k", range(1, 8))
@pytest.mark.parametrize("prompt_len", [1, 6])
def test_speculative_tokens_equal_the_targets_greedy_tokens(pair, k, prompt_len, cache_type):
    target, draft = pair
    idx = torch.randint(0, 30, (1, prompt_len), generator=torch.Generator().manual_seed(k))
    tokens, stats = speculative_generate(target, draft, idx, 25, k=k, cache_type=cache_type, block_size=4)
    assert torch.equal(tokens, generate(target, idx, 25))
    assert stats["accepted"] <= stats["proposed"] and stats["target_calls"] <= 25 + 1


@pytest.mark.parametrize("cache_type", [KVCache, PagedKVCache])
def test_a_perfect_draft_needs_one_target_call_per_k_plus_one_tokens(pair, cache_type):
    target, _ = pair
    idx = torch.randint(0, 30, (1, 4), generator=torch.Generator().manual_seed(0))
    tokens, stats = speculative_generate(target, target, idx, 20, k=4, cache_type=cache_type)
    assert torch.equal(tokens, generate(target, idx, 20))
    assert stats["accepted"] == stats["proposed"] and stats["rounds"] == 4  # 4 rounds x 5 tokens


def test_truncated_draft_is_the_targets_first_blocks(pair):
    from attnkit.speculative import truncated_draft

    target, _ = pair
    draft = truncated_draft(target, 2)
    idx = torch.randint(0, 30, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = target.transformer.wte(idx) + target.transformer.wpe.weight[:5]
        for block in target.transformer.h[:2]:
            x = block(x)
        want = target.lm_head(target.transformer.ln_f(x))
        torch.testing.assert_close(draft(idx), want)
    with pytest.raises(ValueError, match="n_layer"):
        truncated_draft(target, 4)


def test_ngram_draft_proposes_the_most_frequent_next_token_and_backs_off():
    from attnkit.speculative import NGramDraft

    ids = torch.tensor([1, 2, 3, 1, 2, 3, 1, 2, 4, 5, 2, 0])
    tri, bi = NGramDraft(ids, 6, n=3), NGramDraft(ids, 6, n=2)
    assert tri.next_token([1, 2]) == 3  # (1, 2) is followed by 3 twice, by 4 once
    assert tri.next_token([0, 2]) == bi.next_token([2]) == 3  # (0, 2) never seen: the bigram after 2
    assert tri.next_token([5]) == 2  # one token of context: the bigram
    logits = tri(torch.tensor([[1, 2], [5, 2]]))  # (2, 2, 6)
    assert logits.argmax(-1).tolist() == [[2, 3], [2, 0]]  # (5, 2) is followed by 0
    assert tri(torch.tensor([[1, 2]]), last_only=True).shape == (1, 1, 6)
    with pytest.raises(ValueError, match="`n`"):
        NGramDraft(ids, 6, n=4)
    with pytest.raises(ValueError, match="train_ids"):
        NGramDraft(ids.float(), 6)


@pytest.mark.parametrize("cache_type", [KVCache, PagedKVCache])
@pytest.mark.parametrize("k", range(1, 8))
def test_an_ngram_draft_keeps_the_targets_greedy_tokens(pair, k, cache_type):
    from attnkit.speculative import NGramDraft

    target, _ = pair
    idx = torch.randint(0, 30, (1, 5), generator=torch.Generator().manual_seed(k))
    text = generate(target, idx, 60)[0]  # the target's own text: a draft that has read it agrees often
    draft = NGramDraft(text, 30, n=3)
    tokens, stats = speculative_generate(target, draft, idx, 40, k=k, cache_type=cache_type)
    assert torch.equal(tokens, generate(target, idx, 40))
    assert stats["accepted"] > 0 and stats["draft_calls"] == stats["proposed"]


def test_speculative_generate_refuses_another_cache_type(pair):
    target, draft = pair
    with pytest.raises(ValueError, match="`cache_type`"):
        speculative_generate(target, draft, torch.tensor([[1, 2]]), 5, cache_type="paged")
