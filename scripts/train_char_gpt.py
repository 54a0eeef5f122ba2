"""Train chapter 6's character-level GPT on CPython's docs and write chapters/data/char_gpt.pt.

    python scripts/train_char_gpt.py              # 10 min on 2 CPU cores at load 3; seeded: same weights
    python scripts/train_char_gpt.py --steps 200 --out /tmp/try.pt   # a quick try

The chapter trains the same model for a few seconds live, then loads this longer-trained checkpoint.
It prints the validation loss beside the bigram baseline's (the next character from the current one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from attnkit.char_gpt import (
    CHAR_GPT_CONFIG,
    CHECKPOINT,
    CharVocab,
    bigram_loss,
    docs_text,
    save_char_gpt,
    train_char_gpt,
)
from attnkit.gpt import GPT, GPTConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=CHECKPOINT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    text = docs_text()
    vocab = CharVocab(text)
    ids = vocab.encode(text)  # (N,)
    split = int(0.9 * len(ids))
    train_ids, val_ids = ids[:split], ids[split:]  # the last 10% of the topics is never trained on
    bigram = bigram_loss(train_ids, val_ids, len(vocab))

    torch.manual_seed(args.seed)
    model = GPT(GPTConfig(vocab_size=len(vocab), **CHAR_GPT_CONFIG))
    print(f"bigram baseline {bigram:.3f} nats/char; training {args.steps} steps", flush=True)
    log = train_char_gpt(model, train_ids, val_ids, steps=args.steps, eval_every=250, seed=args.seed,
                         on_eval=lambda step, val: print(f"step {step + 1}: validation {val:.3f}", flush=True))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params:,} parameters, {args.steps} steps in {log.seconds:.0f} s")
    print(f"validation loss {log.val_loss[-1]:.3f} nats/char, bigram baseline {bigram:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_char_gpt(args.out, model, vocab, log, bigram_val_loss=bigram, seed=args.seed, split=split)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
