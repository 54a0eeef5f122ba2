"""Multi-head attention: H attention heads side by side, each on its own D = E / H slice of the width.

The projections are four plain `nn.Linear` layers (q_proj, k_proj, v_proj, out_proj) so a learner can
read them; `MultiHeadAttention.from_torch` copies the weights of an `nn.MultiheadAttention`, and the
tests check that both give the same outputs and weights.

Shape legend (PyTorch's): B batch, H heads, L query length, S key length, E model width,
D head width (E / H). nanoGPT's B, T, C, nh, hs are our B, L (= S), E, H, D.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from attnkit._validate import expect_dims, expect_mask_dtype, expect_size, expect_tensor, shape_str
from attnkit.attention import attend
from attnkit.masks import causal_mask, combine_masks, to_additive

__all__ = ["split_heads", "merge_heads", "MultiHeadAttention"]


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Cut the width E of every token into `num_heads` slices of D = E / H and move heads forward.

    The view keeps each token's E numbers together and only reinterprets them as (H, D); the
    transpose then groups tokens by head. Transposing first and viewing after mixes tokens up.

    Shapes: x (B, L, E) -> (B, H, L, D), a view of x (no copy).

    See chapters/04_multi_head_attention.ipynb.
    """
    expect_tensor("x", x)
    expect_dims("x", x, ("B", "L", "E"))
    B, L, E = x.shape
    if not isinstance(num_heads, int) or num_heads <= 0 or E % num_heads != 0:
        raise ValueError(
            f"Expected `num_heads` to be a positive divisor of the width E={E} but got {num_heads!r}"
        )
    D = E // num_heads
    x = x.view(B, L, num_heads, D)  # (B, L, H, D): splitting one dimension is always a view
    return x.transpose(1, 2)  # (B, H, L, D)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Undo `split_heads`: put each token's H head outputs back side by side in one row of width H*D.

    This is the "concatenate the heads" step of the paper; out_proj then mixes the heads.

    Shapes: x (B, H, L, D) -> (B, L, H * D).

    See chapters/04_multi_head_attention.ipynb.
    """
    expect_tensor("x", x)
    expect_dims("x", x, ("B", "H", "L", "D"))
    B, H, L, D = x.shape
    x = x.transpose(1, 2)  # (B, L, H, D)
    return x.reshape(B, L, H * D)  # (B, L, H * D): copies, the transpose is not contiguous


class MultiHeadAttention(nn.Module):
    """Batch-first multi-head attention with the arguments of `nn.MultiheadAttention` and SDPA masks.

    Projects queries, keys and values with q_proj/k_proj/v_proj, runs `attnkit.attend` (the computation
    of `attnkit.scaled_dot_product_attention`) on all heads at once, merges the heads and applies
    out_proj. The masks are checked and combined once, here, into one float added to the scores.

    NOTE -- BOOLEAN MASKS ARE THE INVERSE OF `nn.MultiheadAttention`'s!
        Here, as in `F.scaled_dot_product_attention` and everywhere in attnkit, True means
        *may attend*: `key_padding_mask` is True for REAL tokens (`attnkit.padding_mask(lengths)`)
        and a bool `attn_mask` is True where the query may look at the key.
        `nn.MultiheadAttention` reads True as *ignore* for both. Pass `~mask` when moving a mask
        between the two. Float masks mean the same in both: they are added to the scores.
        An inverted mask usually runs silently, so a bool mask that leaves a query (attn_mask) or a
        whole sequence (key_padding_mask) with nothing to attend to gives a UserWarning that says so;
        such a query's output and weights are zeros, as in `F.scaled_dot_product_attention`.

    Other differences from `nn.MultiheadAttention`, all on purpose:
        - Batch first only. For (L, B, E) inputs (torch's default `batch_first=False`) transpose:
          `out, w = mha(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1))`, then
          `out.transpose(0, 1)`; the weights are (B, ...) either way, as in torch.
        - Dropout on the attention weights only in training mode (`module.train()`), like
          `nn.MultiheadAttention`, unlike the functional `scaled_dot_product_attention`, which drops
          whenever `dropout_p > 0`. The returned weights are the ones after dropout, as in torch.
        - `is_causal=True` applies the causal mask `attnkit.causal_mask(L, S)` (bottom-right aligned,
          AND-ed with `attn_mask` if one is given); in torch it is only a hint about `attn_mask`.
        - A query with every key masked gets zero weights and a zero output (torch gives NaN).
        - `attn_mask` may also be (B, H, L, S); no unbatched inputs, no add_bias_kv/add_zero_attn.

    Shapes:
        query (B, L, E), key (B, S, kdim), value (B, S, vdim),
        key_padding_mask (B, S), attn_mask (L, S), (B*H, L, S) or (B, H, L, S)
        -> output (B, L, E), weights (B, L, S) averaged over heads or (B, H, L, S), or None.

    See chapters/04_multi_head_attention.ipynb.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(num_heads, int) or num_heads <= 0 or embed_dim % num_heads != 0:
            raise ValueError(
                f"Expected `num_heads` to be a positive divisor of `embed_dim`={embed_dim} "
                f"but got {num_heads!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Expected `dropout` in [0, 1) but got {dropout}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # The initialisation of nn.MultiheadAttention with separate q/k/v weights: Xavier, zero biases.
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight)
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from every query to the keys in H heads; masks use True = MAY ATTEND (see the class).

        Dropout on the weights only in training mode.

        Shapes: see the class docstring.

        See chapters/04_multi_head_attention.ipynb.
        """
        for name, x, width in (("query", query, self.embed_dim), ("key", key, self.kdim),
                               ("value", value, self.vdim)):
            expect_tensor(name, x)
            expect_dims(name, x, "(B, length, width), batch first (use x.unsqueeze(0) if unbatched)", ndim=3)
            expect_size(name, x, -1, width, f"the `{name}` width given to __init__")
        B, L, E = query.shape
        S = key.shape[1]
        H = self.num_heads
        expect_size("key", key, 0, B, "the batch size B of `query`")
        expect_size("value", value, 0, B, "the batch size B of `query`")
        expect_size("value", value, 1, S, "the key length S")

        # The masks, each checked here once, become one float added to the scores (B, H, L, S): 0 = may
        # attend, -inf = blocked. attend() takes it as it is (no second check, no second conversion).
        mask = combine_masks(
            self._prepare_attn_mask(attn_mask, B, L, S, query.dtype),
            self._prepare_key_padding_mask(key_padding_mask, B, S, query.dtype),
            causal_mask(L, S, device=query.device) if is_causal else None,  # (L, S)
        )
        half = query.dtype in (torch.float16, torch.bfloat16)  # attend() works in float32 for these
        bias = 0.0 if mask is None else to_additive(mask, torch.float32 if half else query.dtype)

        q = split_heads(self.q_proj(query), H)  # (B, L, E) -> (B, H, L, D)
        k = split_heads(self.k_proj(key), H)  # (B, S, kdim) -> (B, S, E) -> (B, H, S, D)
        v = split_heads(self.v_proj(value), H)  # (B, S, vdim) -> (B, S, E) -> (B, H, S, D)
        dropout_p = self.dropout if self.training else 0.0
        # every head at once: (B, H, L, D) x (B, H, D, S) -> (B, H, L, S), then x (B, H, S, D)
        out, weights = attend(q, k, v, bias, dropout_p=dropout_p)
        out = self.out_proj(merge_heads(out))  # (B, H, L, D) -> (B, L, E)

        if not need_weights:
            return out, None
        if average_attn_weights:
            return out, weights.mean(dim=1)  # (B, H, L, S) -> (B, L, S)
        return out, weights  # (B, H, L, S)

    def _prepare_attn_mask(
        self, attn_mask: torch.Tensor | None, B: int, L: int, S: int, dtype: torch.dtype
    ) -> torch.Tensor | None:
        """Check `attn_mask` and bring it to (L, S) or (B, H, L, S)."""
        if attn_mask is None:
            return None
        expect_tensor("attn_mask", attn_mask)
        expect_mask_dtype("attn_mask", attn_mask)
        H = self.num_heads
        allowed = [(L, S), (B * H, L, S), (B, H, L, S)]
        if tuple(attn_mask.shape) not in allowed:
            raise ValueError(
                f"Expected `attn_mask` shape to be {shape_str((L, S))}, {shape_str((B * H, L, S))} "
                f"or {shape_str((B, H, L, S))} (L, S), (B*H, L, S) or (B, H, L, S) "
                f"but got {shape_str(attn_mask.shape)}"
            )
        if attn_mask.dtype == torch.bool and not attn_mask.any(dim=-1).all():
            warnings.warn(
                "`attn_mask` leaves a query with no key to attend to, so its output is zeros. In attnkit a "
                "bool mask is True where the query MAY ATTEND, the inverse of nn.MultiheadAttention "
                "(True = ignore): if you built this mask for torch, pass `~attn_mask`.",
                stacklevel=3,
            )
        if attn_mask.dim() == 3:
            attn_mask = attn_mask.view(B, H, L, S)  # (B*H, L, S) -> (B, H, L, S), torch's order
        return attn_mask

    def _prepare_key_padding_mask(
        self, key_padding_mask: torch.Tensor | None, B: int, S: int, dtype: torch.dtype
    ) -> torch.Tensor | None:
        """Check `key_padding_mask` (True = real token) and bring it to (B, 1, 1, S)."""
        if key_padding_mask is None:
            return None
        expect_tensor("key_padding_mask", key_padding_mask)
        expect_mask_dtype("key_padding_mask", key_padding_mask)
        if tuple(key_padding_mask.shape) != (B, S):
            raise ValueError(
                f"Expected `key_padding_mask` shape to be {shape_str((B, S))} (B, S) "
                f"but got {shape_str(key_padding_mask.shape)}"
            )
        if key_padding_mask.dtype == torch.bool and not key_padding_mask.any(dim=-1).all():
            warnings.warn(
                "`key_padding_mask` marks every key of a sequence as padding, so its outputs are zeros. In "
                "attnkit it is True for REAL tokens, the inverse of nn.MultiheadAttention (True = padding): "
                "if you built this mask for torch, pass `~key_padding_mask`.",
                stacklevel=3,
            )
        return key_padding_mask[:, None, None, :]  # (B, S) -> (B, 1, 1, S): same for every head, query

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Build a MultiHeadAttention with the weights of `mha`, giving the same outputs and weights.

        torch stacks W_q, W_k, W_v in `in_proj_weight` (3E, E), or keeps q/k/v_proj_weight apart
        when kdim or vdim differ from E; both are split into our q_proj, k_proj and v_proj.
        Remember to invert boolean masks (`~mask`) and, if `mha.batch_first` is False, to transpose
        the inputs and output (see the class docstring).

        Shapes: in_proj_weight (3E, E) -> q_proj, k_proj, v_proj weights (E, E) each.

        See chapters/04_multi_head_attention.ipynb.
        """
        if not isinstance(mha, nn.MultiheadAttention):
            raise TypeError(f"Expected `mha` to be an nn.MultiheadAttention but got {type(mha).__name__}")
        # ValueError, not NotImplementedError: the self-checks read NotImplementedError as an
        # exercise stub ("not implemented yet"), and these settings are a choice of `mha`, not a stub.
        if mha.bias_k is not None or mha.bias_v is not None:
            raise ValueError(
                "Expected `mha` without add_bias_kv=True but got add_bias_kv=True: the extra learned "
                "key/value token it appends is not supported by attnkit's MultiHeadAttention"
            )
        if mha.add_zero_attn:
            raise ValueError(
                "Expected `mha` without add_zero_attn=True but got add_zero_attn=True: the extra "
                "all-zero key/value token it appends is not supported by attnkit's MultiHeadAttention"
            )
        ref = mha.out_proj.weight
        ours = cls(mha.embed_dim, mha.num_heads, dropout=mha.dropout, bias=mha.in_proj_bias is not None,
                   kdim=mha.kdim, vdim=mha.vdim).to(device=ref.device, dtype=ref.dtype)
        if mha.in_proj_weight is not None:  # same width for q, k, v: one stacked matrix
            w_q, w_k, w_v = mha.in_proj_weight.chunk(3, dim=0)  # (3E, E) -> 3 x (E, E)
        else:  # kdim or vdim differ from E: three separate matrices
            w_q, w_k, w_v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
        projections = (ours.q_proj, ours.k_proj, ours.v_proj)
        with torch.no_grad():
            for proj, weight in zip(projections, (w_q, w_k, w_v), strict=True):
                proj.weight.copy_(weight)
            if mha.in_proj_bias is not None:
                b_q, b_k, b_v = mha.in_proj_bias.chunk(3)  # (3E,) -> 3 x (E,)
                for proj, b in zip(projections, (b_q, b_k, b_v), strict=True):
                    proj.bias.copy_(b)
            ours.out_proj.weight.copy_(mha.out_proj.weight)
            if ours.out_proj.bias is not None:
                ours.out_proj.bias.copy_(mha.out_proj.bias)
        return ours.train(mha.training)
