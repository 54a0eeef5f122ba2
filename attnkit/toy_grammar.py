"""A tiny agreement grammar, and a small GPT trained on it in a second or two on one CPU thread.

The language has one real grammatical dependency: the verb agrees in number with its subject, and a
relative clause may stand between them ("the robots that the child sees obey the orders ."). To pick
"obey" rather than "obeys" after "sees", a model has to look back past "the child" to "robots", which
makes the trained model's attention heads worth looking at (chapters 4 and 5).

Shape legend: N tokens in the corpus stream, T block size (window length), B batch, L sequence length,
V vocabulary size.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attnkit.gpt import GPT, GPTConfig

__all__ = ["NOUNS", "VERBS", "OBJECTS", "ADJECTIVES", "make_sentences", "ToyCorpus", "make_corpus", "train_toy_gpt"]

NOUNS = {"robot": "robots", "child": "children", "teacher": "teachers", "dog": "dogs", "farmer": "farmers"}
VERBS = {"obeys": "obey", "follows": "follow", "sees": "see", "helps": "help"}  # singular -> plural
OBJECTS = ["orders", "rules", "river", "song", "plan"]
ADJECTIVES = ["old", "small", "red", "quiet"]


def make_sentences(n: int = 2000, seed: int = 0) -> list[list[str]]:
    """`n` random sentences of the grammar, drawn from `random.Random(seed)`; each ends with ".".

    Shapes: a list of n word lists, 6 to 12 words each. See chapters/04_multi_head_attention.ipynb.
    """
    rng = random.Random(seed)

    def noun_phrase() -> tuple[list[str], bool]:
        plural = rng.random() < 0.5
        noun = rng.choice(list(NOUNS))
        adjective = [rng.choice(ADJECTIVES)] if rng.random() < 0.5 else []
        return ["the"] + adjective + [NOUNS[noun] if plural else noun], plural

    def verb(plural: bool) -> str:
        v = rng.choice(list(VERBS))
        return VERBS[v] if plural else v

    def sentence() -> list[str]:
        words, plural = noun_phrase()
        if rng.random() < 0.5:  # a relative clause between subject and verb
            inner, inner_plural = noun_phrase()
            words += ["that"] + inner + [verb(inner_plural)]
        return words + [verb(plural), "the", rng.choice(OBJECTS), "."]

    return [sentence() for _ in range(n)]


@dataclass
class ToyCorpus:
    """Sentences of the grammar as one stream of token ids, with the window starts used for training.

    Shapes: data (N,) token ids; starts (n_starts,) offsets of sentence starts that leave room for a
    window of block_size + 1 tokens. See chapters/04_multi_head_attention.ipynb.
    """

    sentences: list[list[str]]
    vocab: list[str]
    stoi: dict[str, int]
    data: torch.Tensor
    starts: torch.Tensor
    block_size: int

    def encode(self, text: str) -> torch.Tensor:
        """Space-separated words -> token ids of one sequence.

        Shapes: -> (1, L). See chapters/05_kv_cache.ipynb.
        """
        return torch.tensor([[self.stoi[w] for w in text.split()]])  # (1, L)

    def decode(self, idx: torch.Tensor) -> str:
        """Token ids of the first sequence of a batch -> space-separated words.

        Shapes: idx (B, L) -> str. See chapters/05_kv_cache.ipynb.
        """
        return " ".join(self.vocab[i] for i in idx[0].tolist())


def make_corpus(n_sentences: int = 2000, block_size: int = 16, seed: int = 0) -> ToyCorpus:
    """`make_sentences(n_sentences, seed)` as one stream of ids, a sorted vocabulary and the window starts.

    Shapes: corpus.data (N,), corpus.starts (n_starts,). See chapters/04_multi_head_attention.ipynb.
    """
    sentences = make_sentences(n_sentences, seed)
    vocab = sorted({w for s in sentences for w in s})
    stoi = {w: i for i, w in enumerate(vocab)}
    data = torch.tensor([stoi[w] for s in sentences for w in s])  # (N,): one long stream of ids
    starts = torch.tensor([0] + [len(s) for s in sentences[:-1]]).cumsum(0)  # where each sentence begins
    starts = starts[starts < len(data) - block_size - 1]  # room for inputs and next tokens
    return ToyCorpus(sentences, vocab, stoi, data, starts, block_size)


def train_toy_gpt(
    corpus: ToyCorpus,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 3e-3,
    n_layer: int = 2,
    n_head: int = 4,
    n_embd: int = 48,
    seed: int = 0,
) -> tuple[GPT, float]:
    """Train a small GPT on windows that start at sentence starts; return it in eval mode and the last loss.

    Seeds torch's generator with `seed` inside `torch.random.fork_rng`, so a run is reproducible and the
    caller's random state is the same afterwards as before (a notebook cell's later draws do not depend
    on whether it trained a model).

    Shapes: batches (batch_size, T) of inputs and next tokens, logits (batch_size, T, V).
    See chapters/04_multi_head_attention.ipynb.
    """
    T, data, starts = corpus.block_size, corpus.data, corpus.starts
    with torch.random.fork_rng():  # restores the CPU generator (and CUDA ones, which manual_seed reseeds too)
        torch.manual_seed(seed)
        config = GPTConfig(vocab_size=len(corpus.vocab), block_size=T, n_layer=n_layer, n_head=n_head,
                           n_embd=n_embd)
        model = GPT(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        loss = torch.tensor(float("nan"))
        for _ in range(steps):
            ix = starts[torch.randint(len(starts), (batch_size,))]  # (B,): windows, each from a sentence start
            xb = torch.stack([data[i : i + T] for i in ix])  # (B, T) inputs
            yb = torch.stack([data[i + 1 : i + T + 1] for i in ix])  # (B, T) next tokens
            loss = F.cross_entropy(model(xb).flatten(0, 1), yb.flatten())  # (B, T, V) -> (B*T, V) vs (B*T,)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    return model, loss.item()
