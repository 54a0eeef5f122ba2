"""Multi-head latent attention (MLA, DeepSeek-V2): cache one small latent per token instead of every head's k and v.

MHA caches 2 * H * D numbers per token and layer; GQA and MQA share key/value heads to cache
2 * H_kv * D. MLA compresses each token to a latent c = x W_dkv of width d_c and caches only c; the keys
and values of every head are up-projected from it when needed: k = c W_uk, v = c W_uv. Since
q . (W_uk c) = (W_uk^T q) . c, the up-projection of the keys can be folded into the query ("absorbed"),
so attention can run on the latents directly. (DeepSeek-V2 also caches a 64-wide RoPE key per token;
this module, like the course's GPT, has no rotary positions, so it leaves that part out.)

Shape legend: B batch, L new tokens, S cached + new tokens, E model width, H heads, D = E / H, d_c latent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnkit._validate import expect_dims, expect_tensor
from attnkit.masks import causal_mask

__all__ = ["LatentAttention", "kv_bytes_per_token"]


class LatentAttention(nn.Module):
    """Causal self-attention whose cache is a (B, S, d_latent) latent, up-projected to H heads of keys and values.

    `forward(x, latent_cache)` returns the output and the latents of every position so far (the new
    cache); with `absorb=True` the scores are computed against the latents with W_uk folded into the
    queries, never materialising the keys (same result up to rounding).

    Shapes: x (B, L, E), latent_cache (B, S - L, d_latent) or None -> y (B, L, E), latents (B, S, d_latent).

    See chapters/08_serving.ipynb.
    """

    def __init__(self, n_embd: int, n_head: int, d_latent: int) -> None:
        super().__init__()
        if n_head <= 0 or n_embd % n_head != 0:
            raise ValueError(f"Expected `n_head` to be a positive divisor of `n_embd`={n_embd} but got {n_head}")
        self.n_head, self.d_latent = n_head, d_latent
        self.q_proj = nn.Linear(n_embd, n_embd)  # W_q
        self.kv_down = nn.Linear(n_embd, d_latent, bias=False)  # W_dkv: E -> d_c, the only thing cached
        self.k_up = nn.Linear(d_latent, n_embd, bias=False)  # W_uk: d_c -> H * D keys
        self.v_up = nn.Linear(d_latent, n_embd, bias=False)  # W_uv: d_c -> H * D values
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(
        self, x: torch.Tensor, latent_cache: torch.Tensor | None = None, *, absorb: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        expect_tensor("x", x)
        expect_dims("x", x, "(B, L, E)", 3)
        B, L, E = x.shape
        H, D = self.n_head, E // self.n_head
        latents = self.kv_down(x)  # (B, L, d_c)
        if latent_cache is not None:
            expect_tensor("latent_cache", latent_cache)
            expect_dims("latent_cache", latent_cache, "(B, S, d_latent)", 3)
            latents = torch.cat([latent_cache, latents], dim=1)  # (B, S, d_c)
        S = latents.shape[1]
        q = self.q_proj(x).view(B, L, H, D).transpose(1, 2)  # (B, H, L, D)
        mask = causal_mask(L, S, device=x.device)  # (L, S), bottom-right aligned
        v = self.v_up(latents).view(B, S, H, D).transpose(1, 2)  # (B, H, S, D)
        if absorb:  # q . (W_uk c) = (W_uk^T q) . c: scores straight from the latents
            W_uk = self.k_up.weight.view(H, D, self.d_latent)  # (H, D, d_c)
            q_lat = torch.einsum("bhld,hdc->bhlc", q, W_uk)  # (B, H, L, d_c)
            scores = q_lat @ latents[:, None].transpose(-2, -1) / D ** 0.5  # (B, H, L, d_c) x (B, 1, d_c, S)
            weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # (B, H, L, S)
            y = weights @ v  # (B, H, L, D)
        else:
            k = self.k_up(latents).view(B, S, H, D).transpose(1, 2)  # (B, H, S, D)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, L, D)
        return self.c_proj(y.transpose(1, 2).reshape(B, L, E)), latents  # (B, L, E), (B, S, d_c)


def kv_bytes_per_token(
    kind: str, *, n_layer: int, n_head: int, head_dim: int, n_kv_head: int | None = None,
    d_latent: int | None = None, rope_dim: int = 0, dtype: torch.dtype = torch.float16,
) -> int:
    """Bytes of KV cache one token costs: MHA 2*H*D, GQA/MQA 2*H_kv*D, MLA d_latent + rope_dim, per layer.

    kind is "mha", "gqa" (give n_kv_head), "mqa" (one key/value head) or "mla" (give d_latent; DeepSeek-V2
    also caches a rope_dim = 64 key).

    Shapes: -> an int, in bytes.

    See chapters/08_serving.ipynb.
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    if kind == "mha":
        per_layer = 2 * n_head * head_dim
    elif kind == "mqa":
        per_layer = 2 * head_dim
    elif kind == "gqa":
        if n_kv_head is None or n_kv_head <= 0 or n_head % n_kv_head:
            raise ValueError(f"Expected `n_kv_head` to divide `n_head`={n_head} for kind='gqa' but got {n_kv_head!r}")
        per_layer = 2 * n_kv_head * head_dim
    elif kind == "mla":
        if d_latent is None or d_latent <= 0:
            raise ValueError(f"Expected a positive `d_latent` for kind='mla' but got {d_latent!r}")
        per_layer = d_latent + rope_dim
    else:
        raise ValueError(f"Expected `kind` to be 'mha', 'gqa', 'mqa' or 'mla' but got {kind!r}")
    return n_layer * per_layer * itemsize
