"""A character-level GPT on real English: CPython's own documentation, already on every machine.

`pydoc_data.topics` ships with Python (the text behind `help("if")`): about 465 KB of English and
code examples, no download. `docs_text` joins it, `CharVocab` maps its ~100 characters to ids,
`bigram_loss` is the baseline a model must beat (the next character predicted from the current one
alone), `train_char_gpt` trains an `attnkit.GPT` on it, and `save_char_gpt` / `load_char_gpt` keep a
trained one small (float16 weights). scripts/train_char_gpt.py writes chapters/data/char_gpt.pt.

Shape legend: B batch, L characters per training window (<= block_size), V vocabulary size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from attnkit._validate import expect_tensor, shape_str
from attnkit.gpt import GPT, GPTConfig

__all__ = ["CHAR_GPT_CONFIG", "CHECKPOINT", "CharVocab", "TrainLog", "attention_weights", "bigram_loss", "char_batch",
           "docs_text", "evaluate_loss", "load_char_gpt", "save_char_gpt", "train_char_gpt"]

# The chapter's model (scripts/train_char_gpt.py trains it): 4 layers, 4 heads, width 64, 64 characters
# of context, about 0.2 M parameters; vocab_size comes from the text.
CHAR_GPT_CONFIG = {"block_size": 64, "n_layer": 4, "n_head": 4, "n_embd": 64}
# Where scripts/train_char_gpt.py writes the trained model, and load_char_gpt() finds it.
def _checkpoint() -> Path:
    """chapters/data/char_gpt.pt of the checkout, or of the course the installed package carries."""
    here = Path(__file__).resolve().parent
    for root in (here.parent, here / "_course"):
        if (root / "chapters" / "data" / "char_gpt.pt").is_file():
            return root / "chapters" / "data" / "char_gpt.pt"
    return here.parent / "chapters" / "data" / "char_gpt.pt"


CHECKPOINT = _checkpoint()


def docs_text() -> str:
    """CPython's pydoc topics (the text of `help("if")` and friends), joined in a fixed order.

    Shapes: -> str of about 465,000 characters.

    See chapters/06_transformer_block.ipynb.
    """
    from pydoc_data.topics import topics

    return "".join(topics[name] for name in sorted(topics))


class CharVocab:
    """Every character of a text, sorted, as token ids 0 .. V - 1; encode and decode.

    Shapes: encode(str of length N) -> (N,) int64; decode((N,)) -> str.

    See chapters/06_transformer_block.ipynb.
    """

    def __init__(self, chars: str) -> None:
        if not isinstance(chars, str) or not chars:
            raise TypeError(f"Expected `chars` to be a non-empty str but got {type(chars).__name__}")
        self.chars = "".join(sorted(set(chars)))
        self._index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        unknown = sorted(set(text) - set(self._index))
        if unknown:
            raise ValueError(f"Expected `text` to use only the vocabulary's characters but got {unknown[:5]}")
        return torch.tensor([self._index[c] for c in text], dtype=torch.long)  # (N,)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return "".join(self.chars[i] for i in ids)


def _expect_ids(name: str, ids: object) -> torch.Tensor:
    expect_tensor(name, ids)
    if ids.dim() != 1 or ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"Expected `{name}` to be a 1-d tensor of integer ids but got shape "
                         f"{shape_str(ids.shape)} of dtype {ids.dtype}")
    return ids


def bigram_loss(train_ids: torch.Tensor, val_ids: torch.Tensor, vocab_size: int) -> float:
    """Validation cross-entropy (nats per character) of next-character counts from the training text.

    The baseline to beat: it sees only the current character (add-one smoothed counts).

    Shapes: train_ids (N,), val_ids (M,) -> float.

    See chapters/06_transformer_block.ipynb.
    """
    _expect_ids("train_ids", train_ids)
    _expect_ids("val_ids", val_ids)
    counts = torch.ones(vocab_size, vocab_size)  # (V, V): add-one smoothing, no zero probability
    counts.index_put_((train_ids[:-1], train_ids[1:]), torch.ones(len(train_ids) - 1), accumulate=True)
    log_probs = (counts / counts.sum(dim=1, keepdim=True)).log()  # (V, V): row = current, column = next
    return float(-log_probs[val_ids[:-1], val_ids[1:]].mean())


def char_batch(ids: torch.Tensor, batch_size: int, block_size: int,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of the text and the same windows shifted by one (the next characters).

    Shapes: ids (N,) -> x (B, L), y (B, L) with B = batch_size, L = block_size.

    See chapters/06_transformer_block.ipynb.
    """
    _expect_ids("ids", ids)
    if not 0 < block_size < len(ids):
        raise ValueError(f"Expected `block_size` in 1 .. {len(ids) - 1} but got {block_size}")
    starts = torch.randint(0, len(ids) - block_size, (batch_size,), generator=generator)  # (B,)
    offsets = starts[:, None] + torch.arange(block_size)  # (B, L)
    return ids[offsets], ids[offsets + 1]


@torch.no_grad()
def evaluate_loss(model: GPT, ids: torch.Tensor, block_size: int | None = None, max_windows: int = 64) -> float:
    """Mean next-character cross-entropy of `model` over up to `max_windows` consecutive windows of `ids`.

    Shapes: ids (N,) -> float (nats per character).

    See chapters/06_transformer_block.ipynb.
    """
    _expect_ids("ids", ids)
    L = block_size or model.config.block_size
    n = min(max_windows, (len(ids) - 1) // L)
    if n < 1:
        raise ValueError(f"Expected `ids` longer than block_size={L} but got {len(ids)} ids")
    x = ids[: n * L].view(n, L)  # (n, L)
    y = ids[1: n * L + 1].view(n, L)  # (n, L)
    was_training = model.training
    model.eval()
    logits = model(x)  # (n, L, V)
    model.train(was_training)
    return float(F.cross_entropy(logits.flatten(0, 1), y.flatten()))


@dataclass
class TrainLog:
    """What a training run measured: loss per step, validation loss at some steps, wall time."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_char_gpt(
    model: GPT, train_ids: torch.Tensor, val_ids: torch.Tensor, *, steps: int, batch_size: int = 32,
    lr: float = 3e-3, eval_every: int = 100, seed: int = 0, log: TrainLog | None = None,
    on_eval: Callable[[int, float], None] | None = None,
) -> TrainLog:
    """Train `model` on windows of `train_ids` with AdamW and a cosine learning-rate decay; seeded.

    Pass the `log` of an earlier run to continue its step count; `on_eval(step, val_loss)` hears each evaluation.

    Shapes: train_ids (N,), val_ids (M,) -> TrainLog.

    See chapters/06_transformer_block.ipynb.
    """
    _expect_ids("train_ids", train_ids)
    _expect_ids("val_ids", val_ids)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"Expected `steps` to be a positive int but got {steps!r}")
    log = TrainLog() if log is None else log
    first = log.steps[-1] + 1 if log.steps else 0
    gen = torch.Generator().manual_seed(seed + first)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.01)
    L = model.config.block_size
    model.train()
    start = time.perf_counter()
    for i in range(steps):
        for group in optimizer.param_groups:  # short warm-up, then cosine down to lr / 10
            warm = min(1.0, (i + 1) / 50)
            group["lr"] = lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * i / steps)))
        x, y = char_batch(train_ids, batch_size, L, gen)  # (B, L), (B, L)
        logits = model(x)  # (B, L, V)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        log.steps.append(first + i)
        log.train_loss.append(loss.item())
        if (i + 1) % eval_every == 0 or i + 1 == steps:
            log.val_steps.append(first + i)
            log.val_loss.append(evaluate_loss(model, val_ids))
            if on_eval is not None:
                on_eval(first + i, log.val_loss[-1])
            model.train()
    model.eval()
    log.seconds += time.perf_counter() - start
    return log


def save_char_gpt(path: str | Path, model: GPT, vocab: CharVocab, log: TrainLog, **info: object) -> None:
    """Save a trained char GPT small: float16 weights, its config, vocabulary, training log and `info`.

    Shapes: -> a file of about 2 bytes per parameter.

    See chapters/06_transformer_block.ipynb.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"Expected `model` to be an attnkit.GPT but got {type(model).__name__}")
    state = {name: w.half() for name, w in model.state_dict().items() if name != "lm_head.weight"}  # tied to wte
    torch.save({"config": asdict(model.config), "chars": vocab.chars, "state_dict": state,
                "log": asdict(log), "info": info}, path)


def load_char_gpt(path: str | Path = CHECKPOINT) -> tuple[GPT, CharVocab, TrainLog, dict]:
    """Load what `save_char_gpt` wrote (default: chapter 6's checkpoint): model (float32, eval), vocab, log, info.

    Shapes: -> (GPT, CharVocab, TrainLog, dict).

    See chapters/06_transformer_block.ipynb.
    """
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**saved["config"]))
    state = {name: w.float() for name, w in saved["state_dict"].items()}
    state["lm_head.weight"] = state["transformer.wte.weight"]
    model.load_state_dict(state)
    return model.eval(), CharVocab(saved["chars"]), TrainLog(**saved["log"]), saved["info"]


@torch.no_grad()
def attention_weights(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Every head's attention weights in every layer of an `attnkit.GPT` on `idx` (no cache).

    Recomputes softmax(q k^T / sqrt(D) + causal mask) from each layer's input, since the model's fused
    attention does not return its weights; the layer outputs are the model's own.

    Shapes: idx (B, L) -> (n_layer, B, H, L, L).

    See chapters/06_transformer_block.ipynb.
    """
    from attnkit.attention import scaled_dot_product_attention
    from attnkit.masks import causal_mask

    expect_tensor("idx", idx)
    if idx.dim() != 2 or idx.is_floating_point():
        raise ValueError(f"Expected `idx` to be integer token ids of shape (B, L) but got {shape_str(idx.shape)}")
    B, L = idx.shape
    H = model.config.n_head
    x = model.transformer.wte(idx) + model.transformer.wpe.weight[:L]  # (B, L, E)
    maps = []
    for block in model.transformer.h:
        E = x.shape[-1]
        q, k, _ = block.attn.c_attn(block.ln_1(x)).split(E, dim=-1)  # 2 x (B, L, E)
        q, k = (t.view(B, L, H, E // H).transpose(1, 2) for t in (q, k))  # (B, H, L, D)
        _, weights = scaled_dot_product_attention(q, k, k, attn_mask=causal_mask(L))  # (B, H, L, L)
        maps.append(weights)
        x = block(x)  # (B, L, E)
    return torch.stack(maps)  # (n_layer, B, H, L, L)
