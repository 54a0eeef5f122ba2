"""How much the KV cache speeds up generation, and what it costs in memory.

Prints three tables:
  1. attnkit's GPT: tokens/s with and without the cache at 64, 256 and 1024 new tokens, and the ratio;
  2. side by side with Hugging Face `GPT2LMHeadModel.generate` on the same weights (greedy, identical
     tokens asserted), and attnkit once more through its nn.Modules (a no-op hook attached turns off
     `generate`'s direct decoding step, as any hook does);
  3. the cache's memory: `KVCache.nbytes` measured vs the formula 2 * layers * batch * heads * T * D * bytes,
     and the bytes held by Hugging Face's cache after the same run.

Model: 4 layers, 4 heads, width 256, vocab 1000, block_size 1100, random weights; batch 1, an 8-token
prompt, 2 threads. Each figure is the best of a few runs (like timeit), since a shared machine only ever
makes a run slower. Run: python benchmarks/kv_cache.py  (under a minute on 2 quiet CPU cores, up to
~2 minutes on a busy machine).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
import warnings

import torch
from tqdm import tqdm
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

from attnkit.decoding import generate
from attnkit.gpt import GPT
from attnkit.kv_cache import KVCache

N_LAYER, N_HEAD, N_EMBD, VOCAB, BLOCK = 4, 4, 256, 1000, 1100
PROMPT_LEN = 8
NEW_TOKENS = (64, 256, 1024)
HF_NEW_TOKENS = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per cached figure (the best is kept)")
    args = parser.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(0)
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    hf_config = GPT2Config(n_positions=BLOCK, n_embd=N_EMBD, n_layer=N_LAYER, n_head=N_HEAD,
                           vocab_size=VOCAB, bos_token_id=0, eos_token_id=None, pad_token_id=0)
    hf = GPT2LMHeadModel(hf_config).eval()
    model = GPT.from_gpt2(hf).eval()  # reads n_head from, and checks, the config
    prompt = torch.randint(0, VOCAB, (1, PROMPT_LEN))  # (B, L)
    hooked = copy.deepcopy(model)  # same weights; with a hook, generate() calls every module each step
    hooked.register_forward_pre_hook(lambda module, args: None)

    def run(who: str, n: int, use_cache: bool) -> torch.Tensor:
        with torch.inference_mode():
            if who == "attnkit":
                return generate(model, prompt, n, use_cache=use_cache)
            if who == "modules":
                return generate(hooked, prompt, n, use_cache=use_cache)
            return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                               do_sample=False, use_cache=use_cache)

    # How many times each figure is measured (the best run is kept); uncached runs are quadratic, slow.
    repeats = {("attnkit", n, True): args.repeats for n in NEW_TOKENS}
    repeats |= {("attnkit", 64, False): args.repeats, ("attnkit", 256, False): 3, ("attnkit", 1024, False): 1}
    repeats |= {("hf", HF_NEW_TOKENS, True): args.repeats, ("hf", HF_NEW_TOKENS, False): 2}
    repeats |= {("modules", HF_NEW_TOKENS, True): args.repeats}
    # Round r measures every figure that wants more than r runs, so that a burst of load from another
    # process spoils one run of several figures rather than every run of one figure.
    schedule = [key for r in range(max(repeats.values())) for key in repeats if repeats[key] > r]
    for who in ("attnkit", "modules", "hf"):  # warm-up: the first calls allocate memory and pick kernels
        run(who, 8, True)
    load_before = os.getloadavg()[0]
    seconds, tokens = {}, {}
    for key in tqdm(schedule, desc="generating", unit="run"):
        start = time.perf_counter()
        tokens[key] = run(*key)
        seconds[key] = min(seconds.get(key, float("inf")), time.perf_counter() - start)

    for n in NEW_TOKENS:  # the cache must not change a single token
        if not torch.equal(tokens["attnkit", n, True], tokens["attnkit", n, False]):
            raise SystemExit(f"cached and uncached generation differ at {n} new tokens")
    for who, use_cache in (("hf", True), ("hf", False), ("modules", True)):
        if not torch.equal(tokens["attnkit", HF_NEW_TOKENS, True], tokens[who, HF_NEW_TOKENS, use_cache]):
            raise SystemExit(f"attnkit and {who} (use_cache={use_cache}) generate different tokens")

    def tok_s(who: str, n: int, use_cache: bool) -> float:
        return n / seconds[who, n, use_cache]

    print(f"\nload average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on "
          f"{os.cpu_count()} CPUs (this script adds ~1-2: more means other processes competed for the cores)")
    print(f"\nattnkit GPT ({N_LAYER} layers, {N_HEAD} heads, width {N_EMBD}, vocab {VOCAB}), "
          f"batch 1, {PROMPT_LEN}-token prompt, greedy, {torch.get_num_threads()} threads")
    print(f"{'new tokens':>10} | {'cache tok/s':>11} | {'no cache tok/s':>14} | {'speed-up':>8}")
    print(f"{'-' * 10}-+-{'-' * 11}-+-{'-' * 14}-+-{'-' * 8}")
    for n in NEW_TOKENS:
        with_c, without = tok_s("attnkit", n, True), tok_s("attnkit", n, False)
        print(f"{n:>10} | {with_c:>11.0f} | {without:>14.0f} | {with_c / without:>7.1f}x")

    n = HF_NEW_TOKENS
    print(f"\nSide by side, same weights, {n} new tokens, identical tokens checked")
    print(f"{'':>30} | {'cache tok/s':>11} | {'no cache tok/s':>14}")
    print(f"{'-' * 30}-+-{'-' * 11}-+-{'-' * 14}")
    for who, name in (("attnkit", "attnkit generate"), ("hf", "HF GPT2LMHeadModel.generate")):
        print(f"{name:>30} | {tok_s(who, n, True):>11.0f} | {tok_s(who, n, False):>14.0f}")
    print(f"{'attnkit / HF':>30} | {tok_s('attnkit', n, True) / tok_s('hf', n, True):>10.2f}x | "
          f"{tok_s('attnkit', n, False) / tok_s('hf', n, False):>13.2f}x")
    print(f"{'attnkit through its modules':>30} | {tok_s('modules', n, True):>11.0f} |")
    print(f"{'attnkit through modules / HF':>30} | {tok_s('modules', n, True) / tok_s('hf', n, True):>10.2f}x |")

    # Memory: the cache generate() allocates for the longest run, filled the same way.
    T = PROMPT_LEN + NEW_TOKENS[-1]
    head_dim = N_EMBD // N_HEAD
    cache = KVCache(N_LAYER, 1, N_HEAD, T, head_dim)
    with torch.inference_mode():
        model(tokens["attnkit", NEW_TOKENS[-1], True], cache)
        hf_out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=NEW_TOKENS[-1],
                             do_sample=False, return_dict_in_generate=True)
    hf_bytes = sum(t.nbytes for layer in hf_out.past_key_values.layers for t in (layer.keys, layer.values))
    formula = KVCache.expected_nbytes(N_LAYER, 1, N_HEAD, T, head_dim, torch.float32)
    print(f"\nKV cache memory at T = {T} positions (float32)")
    print(f"  KVCache.nbytes (measured)        {cache.nbytes:>10,} B")
    print(f"  2*{N_LAYER}*1*{N_HEAD}*{T}*{head_dim}*4 (formula)    {formula:>10,} B"
          f"   {'equal' if cache.nbytes == formula else 'DIFFERENT'}")
    print(f"  HF DynamicCache after generate   {hf_bytes:>10,} B"
          f"   ({hf_out.past_key_values.get_seq_length()} positions: the last token is never fed back)")


if __name__ == "__main__":
    main()
