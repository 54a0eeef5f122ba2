"""Chapter 8's serving figures, side by side in one run: paged memory, prefix caching, speculative decoding.

Prints three tables:
  1. KV memory of 32 requests with lengths drawn from 16..1024 (seeded), each prefilled for real into an
     `attnkit.PagedKVCache` (blocks of 16): bytes used by the tokens, bytes of the blocks allocated
     (checked: within one block per sequence of the bytes used), and chapter 5's `KVCache` preallocated
     at max_len = 1024 for the batch, with its waste;
  2. prefix caching: a 512-token shared prompt and 8 continuations of 8 tokens (`generate_shared_prefix`,
     prefill only): positions prefilled with and without sharing (target: >= 7x fewer), the prefill time
     of each (best of a few runs), and the tokens of a 16-token decode checked equal to `generate`;
  3. speculative decoding with chapter 6's character GPT as the target and two drafts: its first two blocks
     (`truncated_draft`) and a trigram table of its training text (`NGramDraft`, a lookup): each draft's
     cost ratio c, then 5 prompts x k in 1..4, identical tokens to the target's greedy decoding asserted
     in every run, acceptance rate, target calls per token, and the tokens/s of speculative decoding on
     each cache side by side: on the paged cache against the target alone on it and against `generate`,
     on chapter 5's contiguous `KVCache` (the default) against `generate`, which decodes on that cache.

Models: (1) and (2) a GPT with random weights, 2 layers, 4 heads, width 64 / 4 layers, 4 heads, width
128, block_size 1024; (3) chapters/data/char_gpt.pt. 2 threads. Run: python benchmarks/serving.py
(15 s on 2 idle CPU cores; a few minutes with --repeats 10 on a loaded machine).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from attnkit import GPT, GPTConfig, KVCache, PagedKVCache, blocks_needed, generate, load_char_gpt
from attnkit.batching import generate_paged, generate_shared_prefix
from attnkit.char_gpt import docs_text
from attnkit.speculative import NGramDraft, speculative_generate, truncated_draft


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def paged_memory() -> None:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=256, block_size=1024, n_layer=2, n_head=4, n_embd=64)
    model = GPT(config).eval()
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(16, 1025, (32,), generator=gen).tolist()
    P, D = 16, config.n_embd // config.n_head
    cache = PagedKVCache(config.n_layer, config.n_head, D, block_size=P,
                         num_blocks=sum(blocks_needed(n, P) for n in lengths) + 8)
    with torch.inference_mode():
        for i, n in enumerate(lengths):
            cache.add(i)
            model(torch.randint(0, 256, (1, n), generator=gen), cache.batch([i], n), last_only=True)
    used, allocated = cache.used_nbytes(), cache.allocated_nbytes()
    within = allocated - used < len(lengths) * cache.bytes_per_block
    pre = KVCache(config.n_layer, len(lengths), config.n_head, 1024, D).nbytes
    print(f"1. KV memory: 32 requests, lengths {min(lengths)}..{max(lengths)} (mean {sum(lengths) / 32:.0f}), "
          f"{config.n_layer} layers x {config.n_head} heads x D={D}, float32, blocks of {P}")
    print(f"   {'':34s} {'bytes':>12s}  {'vs used':>8s}")
    print(f"   {'used by the tokens':34s} {used:12,d}  {1:8.3f}")
    print(f"   {'paged: blocks allocated':34s} {allocated:12,d}  {allocated / used:8.3f}   "
          f"unused {allocated - used:,d} B = {(allocated - used) / cache.bytes_per_block:.1f} blocks "
          f"(< 32 blocks, one per sequence: {within})")
    print(f"   {'preallocated KVCache (max_len 1024)':34s} {pre:12,d}  {pre / used:8.3f}   "
          f"unused {pre - used:,d} B = {100 * (pre - used) / pre:.1f} % wasted")
    assert within


def prefix_caching(repeats: int) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=1024, n_layer=4, n_head=4, n_embd=128)).eval()
    gen = torch.Generator().manual_seed(1)
    prefix = torch.randint(0, 256, (512,), generator=gen)
    suffixes = [torch.randint(0, 256, (8,), generator=gen) for _ in range(8)]
    counts, times = {}, {}
    for share in (False, True):
        counts[share] = generate_shared_prefix(model, prefix, suffixes, 1, share=share)[1]
        times[share] = best_of(lambda s=share: generate_shared_prefix(model, prefix, suffixes, 1, share=s), repeats)
    outputs, _ = generate_shared_prefix(model, prefix, suffixes, 16)
    same = all(torch.equal(o, generate(model, torch.cat([prefix, s])[None], 16)[0])
               for o, s in zip(outputs, suffixes, strict=True))
    saved = counts[False]["prefill_positions"] / counts[True]["prefill_positions"]
    print("\n2. Prefix caching: a 512-token shared prompt, 8 continuations of 8 tokens, blocks of 16 "
          "(4 layers, 4 heads, width 128)")
    print(f"   {'':16s} {'positions':>10s} {'peak blocks':>12s} {'prefill ms':>11s}")
    for share, name in ((False, "each alone"), (True, "shared prefix")):
        print(f"   {name:16s} {counts[share]['prefill_positions']:10d} {counts[share]['peak_blocks']:12d} "
              f"{1e3 * times[share]:11.1f}")
    print(f"   prefill work saved: {saved:.2f}x fewer positions (target >= 7x: {saved >= 7}), "
          f"{times[False] / times[True]:.2f}x less time; 16 decoded tokens equal generate's: {same}")
    assert saved >= 7 and same


def speculative(repeats: int) -> None:
    target, vocab, _, info = load_char_gpt()
    text = docs_text()
    train_ids = vocab.encode(text)[:info["split"]]  # the text the target was trained on
    drafts = [("first 2 blocks", truncated_draft(target, 2)),
              ("trigram table", NGramDraft(train_ids, len(vocab), n=3))]
    gen = torch.Generator().manual_seed(2)
    starts = torch.randint(0, len(text) - 40, (5,), generator=gen).tolist()
    prompts = [vocab.encode(text[s:s + 16])[None] for s in starts]  # (1, 16) each
    n = 40
    total = n * len(prompts)
    runs = {"target paged": lambda p: generate_paged(target, p, n), "generate": lambda p: generate(target, p, n)}
    for name, draft in drafts:
        runs[name, "draft paged"] = lambda p, d=draft: _draft_alone(d, p, n, paged=True)
        runs[name, "draft contiguous"] = lambda p, d=draft: _draft_alone(d, p, n, paged=False)
        for k in (1, 2, 3, 4):
            for c in (PagedKVCache, KVCache):
                runs[name, k, c] = lambda p, d=draft, k=k, c=c: speculative_generate(target, d, p, n, k=k, cache_type=c)
    t = interleaved_best_of(runs, prompts, repeats)  # seconds for the 5 prompts, each variant's best run
    t_target, t_contig = t["target paged"], t["generate"]
    print("\n3. Speculative decoding: target = chapter 6's character GPT (4 blocks); drafts = its first 2 blocks "
          f"(truncated_draft) and a trigram table of its training text (NGramDraft); 5 prompts of 16 characters, "
          f"{n} new each")
    print(f"   target alone, paged cache: {total / t_target:7.0f} tokens/s; with generate's contiguous cache: "
          f"{total / t_contig:7.0f} tokens/s")
    for name, _ in drafts:
        print(f"   draft {name}: cost ratio c = {t[name, 'draft paged'] / t_target:.3f} of a target call (paged), "
              f"{t[name, 'draft contiguous'] / t_contig:.3f} (contiguous)")
    print(f"   {'':32s} {'------ paged cache ------':>30s}  {'contiguous KVCache':>22s}")
    print(f"   {'draft':15s} {'k':>2s} {'accept':>6s} {'calls/tok':>9s} {'tokens/s':>9s} {'vs target':>10s} "
          f"{'vs generate':>11s}  {'tokens/s':>9s} {'vs generate':>12s}  identical")
    for name, draft in drafts:
        for k in (1, 2, 3, 4):
            identical, accepted, proposed, calls = True, 0, 0, 0
            for p in prompts:
                want = generate(target, p, n)
                for cache_type in (PagedKVCache, KVCache):
                    tokens, stats = speculative_generate(target, draft, p, n, k=k, cache_type=cache_type)
                    identical &= torch.equal(tokens, want)
                accepted, proposed, calls = (accepted + stats["accepted"], proposed + stats["proposed"],
                                             calls + stats["target_calls"])
            t_paged, t_cont = t[name, k, PagedKVCache], t[name, k, KVCache]
            print(f"   {name:15s} {k:2d} {accepted / proposed:6.2f} {calls / total:9.2f} {total / t_paged:9.0f} "
                  f"{t_target / t_paged:9.2f}x {t_contig / t_paged:10.2f}x  {total / t_cont:9.0f} "
                  f"{t_contig / t_cont:11.2f}x  {identical}")
            assert identical


def interleaved_best_of(runs: dict, prompts: list[torch.Tensor], repeats: int) -> dict:
    """Each run's best time over `repeats` rounds, every round timing all runs in turn (so a burst of load
    on a shared machine hits every variant alike instead of one); a run's time covers all the prompts."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for key, fn in runs.items():
            start = time.perf_counter()
            for p in prompts:
                fn(p)
            best[key] = min(best[key], time.perf_counter() - start)
    return best


def _draft_alone(draft: torch.nn.Module, prompt: torch.Tensor, n: int, *, paged: bool) -> None:
    """Decode n tokens greedily with the draft alone (its cost per token, as speculative decoding calls it)."""
    if isinstance(draft, NGramDraft):
        tokens = prompt[0].tolist()
        for _ in range(n):
            tokens.append(draft.next_token(tokens))
    else:
        (generate_paged if paged else generate)(draft, prompt, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per timing (the best is kept)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"load average before: {os.getloadavg()[0]:.1f}; torch {torch.__version__}, 2 threads\n")
    paged_memory()
    prefix_caching(args.repeats)
    speculative(args.repeats)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
