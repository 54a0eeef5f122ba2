"""A GPT-2 in one page, after nanoGPT's model.py, that decodes with attnkit's KV cache.

The module layout and parameter names follow Hugging Face's GPT-2 (transformer.wte, transformer.h.0.attn
.c_attn, ...), so `GPT.from_gpt2` loads its weights and the tests check our logits against
`transformers.GPT2LMHeadModel`.

Speed matters here (`benchmarks/kv_cache.py` measures it), so attention calls PyTorch's fused
`F.scaled_dot_product_attention`, not the readable `attnkit.scaled_dot_product_attention`: same maths
and mask convention (tests/test_attention.py checks that they agree), but one fused kernel instead of
a dozen small operations and input checks, and no (L, S) weights materialised. Decoding one token
(4 heads, 150 keys, 2 CPU threads) it is about twice as fast as the three written-out products
softmax(q k^T / sqrt(D)) v, and about four times as fast as attnkit's version, which also checks its
inputs and returns the weights for plotting. Generating tokens with it is decoding.py's `generate`.

Shape legend: B batch, L new tokens in this call, S keys attended (cached + new), E = n_embd,
H = n_head, D = E / H, V = vocab_size. nanoGPT's T, C, nh, hs are our L (= S), E, H, D.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attnkit._validate import expect_tensor, shape_str
from attnkit.kv_cache import KVCache
from attnkit.masks import causal_mask
from attnkit.paged_cache import PagedBatch

__all__ = ["GPTConfig", "CausalSelfAttention", "MLP", "Block", "GPT"]

# Head counts of the released GPT-2 checkpoints, by width: the weights alone do not tell H.
_GPT2_HEADS = {768: 12, 1024: 16, 1280: 20, 1600: 25}

# Settings of a Hugging Face GPT2Config that change the logits, and the values this GPT computes.
# Any other value would load without error and silently give different logits, so from_gpt2 refuses it.
_GPT2_SUPPORTED = {
    "activation_function": ("gelu_new", "gelu_pytorch_tanh"),  # both GELU's tanh approximation
    "scale_attn_weights": (True,),  # scores divided by sqrt(D)
    "scale_attn_by_inverse_layer_idx": (False,),  # ... and not also by the layer number + 1
    "reorder_and_upcast_attn": (False,),  # HF's own float32 path for mixed precision
    "add_cross_attention": (False,),  # decoder only: no attention to an encoder's output
}


@dataclass
class GPTConfig:
    """Sizes of a GPT-2 model; the defaults are GPT-2 small (124M parameters).

    See chapters/05_kv_cache.ipynb.
    """

    vocab_size: int = 50257  # V: tokens in the vocabulary (rows of wte and of the output layer)
    block_size: int = 1024  # longest sequence: rows of the learned position table wpe
    n_layer: int = 12  # transformer blocks stacked
    n_head: int = 12  # H: attention heads per block; must divide n_embd
    n_embd: int = 768  # E: model width, the size of every token's vector
    layer_norm_epsilon: float = 1e-5  # added to the variance in LayerNorm, as in GPT-2

    def __post_init__(self) -> None:
        if self.n_head <= 0 or self.n_embd % self.n_head != 0:
            raise ValueError(
                f"Expected `n_head` to be a positive divisor of `n_embd`={self.n_embd} but got {self.n_head}"
            )


class CausalSelfAttention(nn.Module):
    """Masked multi-head self-attention with one fused projection for q, k, v, as in GPT-2.

    With a `KVCache`, the L new tokens' queries attend to the cached keys plus their own, under a
    causal mask aligned bottom-right (`attnkit.causal_mask(L, S)`). With a `PagedBatch` (chapter 8)
    the rows hold sequences of different lengths, and the batch gives each row its own causal mask.

    Shapes: x (B, L, E) -> (B, L, E).

    See chapters/05_kv_cache.ipynb.
    """

    def __init__(self, config: GPTConfig, layer_idx: int = 0) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.layer_idx = layer_idx  # which layer of the KVCache is ours
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # W_q, W_k, W_v stacked
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)  # mixes the heads back together

    def forward(self, x: torch.Tensor, cache: KVCache | PagedBatch | None = None) -> torch.Tensor:
        B, L, E = x.shape
        H = self.n_head
        # split_heads(q), split_heads(k) and split_heads(v) in one view: this runs once per token per
        # layer while decoding, so it skips the three calls' input checks.
        qkv = self.c_attn(x).view(B, L, 3, H, E // H)  # (B, L, 3E) -> (B, L, 3, H, D)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, L, D)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, H, S, D): cached keys, then the L new ones
        S = k.shape[2]
        if isinstance(cache, PagedBatch):  # rows of different lengths: each row's own causal mask, padding hidden
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=cache.attn_mask)  # (B, H, L, D)
        elif L == S:  # no cache, or an empty one: plain causal attention (top-left = bottom-right)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, L, D)
        else:  # the L new queries are the last L of S positions: bottom-right aligned
            mask = None if L == 1 else causal_mask(L, S, device=x.device)  # (L, S); 1 query sees all
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, L, D)
        return self.c_proj(y.transpose(1, 2).reshape(B, L, E))  # merge_heads: (B, H, L, D) -> (B, L, E)


class MLP(nn.Module):
    """The feed-forward part of a block: widen to 4E, GELU (tanh approximation, as GPT-2), back to E.

    Shapes: x (B, L, E) -> (B, L, E).

    See chapters/05_kv_cache.ipynb.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.c_fc(x), approximate="tanh")  # (B, L, E) -> (B, L, 4E)
        return self.c_proj(h)  # (B, L, 4E) -> (B, L, E)


class Block(nn.Module):
    """One transformer block, pre-LayerNorm: x + attn(ln_1(x)), then x + mlp(ln_2(x)).

    Shapes: x (B, L, E) -> (B, L, E).

    See chapters/05_kv_cache.ipynb.
    """

    def __init__(self, config: GPTConfig, layer_idx: int = 0) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | PagedBatch | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)  # (B, L, E)
        return x + self.mlp(self.ln_2(x))  # (B, L, E)


class GPT(nn.Module):
    """GPT-2: token + learned position embeddings, n_layer blocks, a final LayerNorm, tied output layer.

    With a `KVCache`, `idx` holds only the new tokens; their positions continue after the cached ones.

    Shapes: idx (B, L) token ids -> logits (B, L, V), or (B, 1, V) with last_only=True.

    See chapters/05_kv_cache.ipynb.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embeddings
            wpe=nn.Embedding(config.block_size, config.n_embd),  # learned position embeddings
            h=nn.ModuleList(Block(config, i) for i in range(config.n_layer)),
            ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: one matrix reads and writes tokens
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale the residual projections by 1/sqrt(2N)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self, idx: torch.Tensor, cache: KVCache | PagedBatch | None = None, *, last_only: bool = False
    ) -> torch.Tensor:
        """Next-token logits for every position of `idx` (or only the last, all that generation needs).

        With a cache, positions start at the number of tokens it has seen; with a `PagedBatch` (from
        `PagedKVCache.batch`), each row's start at its own sequence's length.

        Shapes: idx (B, L) -> logits (B, L, V), or (B, 1, V) with last_only=True.

        See chapters/05_kv_cache.ipynb.
        """
        expect_tensor("idx", idx)
        if idx.dim() != 2 or idx.is_floating_point() or idx.dtype == torch.bool:
            raise ValueError(f"Expected `idx` to be integer token ids of shape (B, L) but got "
                             f"shape {shape_str(idx.shape)} of dtype {idx.dtype}")
        B, L = idx.shape
        if isinstance(cache, PagedBatch):  # a paged cache: each row continues from its own length
            positions = cache.positions(L)  # (B, L)
            start = int(positions[:, 0].max())  # the longest row's first new position
        else:
            start = 0 if cache is None else cache.n_seen  # position of idx[:, 0]
        if start + L > self.config.block_size:
            raise ValueError(
                f"Expected at most block_size={self.config.block_size} positions but got {start + L} "
                f"({start} cached + {L} new); crop the context or start a new cache"
            )
        if isinstance(cache, PagedBatch):
            return self._forward(self.transformer.wpe(positions), idx, cache, last_only)  # pos_emb (B, L, E)
        pos_emb = self.transformer.wpe.weight[start:start + L]  # (L, E): rows start .. start + L - 1
        return self._forward(pos_emb, idx, cache, last_only)

    def _forward(
        self, pos_emb: torch.Tensor, idx: torch.Tensor, cache: KVCache | PagedBatch | None, last_only: bool
    ) -> torch.Tensor:
        """The model after the position lookup: pos_emb (L, E) or (B, L, E), idx (B, L) -> logits."""
        x = self.transformer.wte(idx) + pos_emb  # (B, L, E) + (L, E) or (B, L, E) -> (B, L, E)
        for block in self.transformer.h:
            x = block(x, cache)  # (B, L, E)
        if last_only:
            x = x[:, -1:, :]  # (B, 1, E)
        x = self.transformer.ln_f(x)
        return self.lm_head(x)  # (B, L, E) -> (B, L, V)

    @classmethod
    def from_gpt2(
        cls, gpt2: nn.Module | Mapping[str, torch.Tensor], n_head: int | None = None, *, config: object = None
    ) -> GPT:
        """Build a GPT from a Hugging Face GPT-2: a `GPT2LMHeadModel` or `GPT2Model`, or its state dict.

        Given the model (or a state dict and `config=` its GPT2Config), the config is checked first:
        a setting this GPT does not compute (another activation_function, scale_attn_weights=False,
        scale_attn_by_inverse_layer_idx, reorder_and_upcast_attn, add_cross_attention, n_inner != 4E)
        raises a ValueError naming it, instead of loading and giving different logits; n_head and
        layer_norm_epsilon are read from it. A bare state dict is taken to have GPT-2's settings, and
        n_head then defaults only for the released widths (768 -> 12, 1024 -> 16, 1280 -> 20,
        1600 -> 25). HF's Conv1D stores its weight as (in, out), so those are transposed for nn.Linear.

        Shapes: transformer.h.N.attn.c_attn.weight (E, 3E) -> c_attn.weight (3E, E), and so on.

        See chapters/05_kv_cache.ipynb.
        """
        if isinstance(gpt2, nn.Module):
            config = gpt2.config if config is None else config
            state_dict = gpt2.state_dict()
        elif isinstance(gpt2, Mapping):
            state_dict = gpt2
        else:
            raise TypeError("Expected `gpt2` to be a Hugging Face GPT-2 model or its state dict but got "
                            f"{type(gpt2).__name__}")
        layer_norm_epsilon = GPTConfig.layer_norm_epsilon
        if config is not None:
            n_head, layer_norm_epsilon = _check_gpt2_config(config, n_head)
        if "transformer.wte.weight" not in state_dict and "wte.weight" in state_dict:  # GPT2Model
            state_dict = {f"transformer.{name}": w for name, w in state_dict.items()}
        if "transformer.wte.weight" not in state_dict:
            raise ValueError("Expected a GPT-2 state dict with a `transformer.wte.weight` entry, "
                             f"but got keys {sorted(state_dict)[:5]}...")
        vocab_size, n_embd = state_dict["transformer.wte.weight"].shape
        block_size = state_dict["transformer.wpe.weight"].shape[0]
        n_layer = len({name.split(".")[2] for name in state_dict if name.startswith("transformer.h.")})
        if n_head is None:
            if n_embd not in _GPT2_HEADS:
                raise ValueError(
                    f"Cannot infer `n_head` from the weights for width n_embd={n_embd} (only the "
                    f"released GPT-2 widths {sorted(_GPT2_HEADS)} have a default): pass n_head= "
                    "or the model itself, whose config tells it"
                )
            n_head = _GPT2_HEADS[n_embd]
        config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                           n_head=n_head, n_embd=n_embd, layer_norm_epsilon=layer_norm_epsilon)

        conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        ours = {}
        for name, w in state_dict.items():
            if name.endswith((".attn.bias", ".attn.masked_bias")):  # HF's causal-mask buffers, not weights
                continue
            ours[name] = w.t() if name.endswith(conv1d) else w  # Conv1D (in, out) -> Linear (out, in)
        wte = state_dict["transformer.wte.weight"]
        if "lm_head.weight" in ours and not torch.equal(ours["lm_head.weight"], wte):
            raise ValueError("Expected `lm_head.weight` to equal `transformer.wte.weight` (GPT-2 ties "
                             "them, and so does this GPT) but they differ")
        ours["lm_head.weight"] = wte
        model = cls(config).to(dtype=wte.dtype, device=wte.device)
        model.load_state_dict(ours, strict=True)
        return model


def _check_gpt2_config(config: object, n_head: int | None) -> tuple[int, float]:
    """Refuse a GPT2Config setting that GPT does not compute; return its n_head and layer_norm_epsilon."""
    model_type = getattr(config, "model_type", "gpt2")
    if model_type != "gpt2":
        raise ValueError(f"Expected `config` of a GPT-2 (model_type 'gpt2') but got model_type {model_type!r}")
    for name, supported in _GPT2_SUPPORTED.items():
        value = getattr(config, name, supported[0])
        if value not in supported:
            raise ValueError(
                f"GPT does not implement the GPT-2 setting {name}={value!r} (it computes "
                f"{' or '.join(map(repr, supported))}): its logits would differ from the model's"
            )
    n_embd, n_inner = config.n_embd, getattr(config, "n_inner", None)
    if n_inner is not None and n_inner != 4 * n_embd:
        raise ValueError(f"GPT does not implement the GPT-2 setting n_inner={n_inner} (its MLP is 4 * n_embd = "
                         f"{4 * n_embd} wide)")
    if n_head is not None and n_head != config.n_head:
        raise ValueError(f"Expected `n_head` to be the config's n_head={config.n_head} but got {n_head}")
    return config.n_head, float(config.layer_norm_epsilon)
