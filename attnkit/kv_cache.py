"""A key/value cache for decoding: keep every layer's keys and values so each new token costs O(S).

Without a cache, generating token t recomputes the keys and values of all t - 1 earlier tokens in every
layer. They never change (causal attention: an earlier token never sees a later one), so we store them
once, in tensors allocated up front, and each step only appends the new token's key and value.

Shape legend: B batch, H heads (H_kv key/value heads with MQA/GQA), D head width,
max_len slots allocated per layer, S positions currently held.
"""

from __future__ import annotations

import torch

from attnkit._validate import expect_tensor, shape_str

__all__ = ["KVCache"]


class KVCache:
    """Per-layer keys and values in preallocated (B, H_kv, max_len, D) tensors, with a current length.

    `update(layer, k, v)` copies the new positions in and returns views of everything held so far, so
    no step allocates a new tensor. Memory, whatever the current length, is
    `expected_nbytes(n_layer, batch_size, n_kv_head, max_len or window, head_dim, dtype)`.

    Options:
        n_kv_head: heads of the keys/values if fewer than the query heads (MQA: 1, GQA: a divisor
            of n_head). The cache is n_head / n_kv_head times smaller; attention then needs
            `enable_gqa=True`.
        window: keep only the last `window` positions (only `window` slots are allocated; the
            oldest position is dropped instead of raising on overflow). Fed one token at a time,
            each query then sees itself and the window - 1 tokens before it: sliding-window attention,
            the causal form of local attention (`attnkit.local_window_mask` with half-width
            window - 1 around `monotonic_alignment`, AND-ed with `causal_mask`). A chunk of several
            new tokens after the window is full sees only the last `window` positions, so its
            earliest queries see fewer keys than local attention would give them.

    `truncate(n)` forgets every position from n on (speculative decoding's rollback; not with a window).

    Returned views stay valid until the next `update` of the same layer or `reset`.

    Shapes: update: k, v (B, H_kv, L_new, D) -> k_all, v_all (B, H_kv, S, D), S = seq_len.

    See chapters/05_kv_cache.ipynb.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        max_len: int,
        head_dim: int,
        *,
        n_kv_head: int | None = None,
        window: int | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        for name, n in (("n_layer", n_layer), ("batch_size", batch_size), ("n_head", n_head),
                        ("max_len", max_len), ("head_dim", head_dim), ("n_kv_head", n_kv_head)):
            if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
                raise ValueError(f"Expected `{name}` to be a positive int but got {n!r}")
        if n_head % n_kv_head != 0:
            raise ValueError(
                f"Expected `n_kv_head` to divide `n_head`={n_head} (each key/value head serves "
                f"n_head / n_kv_head query heads) but got {n_kv_head}"
            )
        if window is not None and (not isinstance(window, int) or not 0 < window <= max_len):
            raise ValueError(f"Expected `window` to be None or an int in [1, max_len={max_len}] "
                             f"but got {window!r}")
        self.n_layer, self.batch_size, self.n_head, self.n_kv_head = n_layer, batch_size, n_head, n_kv_head
        self.max_len, self.head_dim, self.window = max_len, head_dim, window
        slots = max_len if window is None else window
        shape = (batch_size, n_kv_head, slots, head_dim)  # (B, H_kv, max_len or window, D)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self._held = [0] * n_layer  # positions currently stored, per layer
        self._seen = [0] * n_layer  # positions appended since reset (more than held with a window)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new keys and values of `layer` and return all the ones held, oldest first.

        The result is what attention needs: the new queries against every cached key.

        Shapes: k, v (B, H_kv, L_new, D) -> k_all, v_all (B, H_kv, S, D).

        See chapters/05_kv_cache.ipynb.
        """
        # This runs once per layer per decoded token: one cheap test first, the full checks on failure.
        B, H_kv, D = self.batch_size, self.n_kv_head, self.head_dim
        fits = (isinstance(k, torch.Tensor) and isinstance(v, torch.Tensor) and k.dim() == 4
                and k.shape == v.shape and k.shape[0] == B and k.shape[1] == H_kv and k.shape[3] == D)
        if not fits or not isinstance(layer, int) or not 0 <= layer < self.n_layer:
            self._explain_bad_update(layer, k, v)
        L_new = k.shape[2]
        keys, values = self.keys[layer], self.values[layer]
        start, slots = self._held[layer], keys.shape[2]
        if start + L_new > slots:
            if self.window is None:
                raise ValueError(
                    f"KVCache overflow in layer {layer}: it holds {start} positions and {L_new} more "
                    f"would make {start + L_new}, past max_len={self.max_len}; allocate a larger max_len, "
                    "call reset() before a new prompt, or pass window= to drop the oldest positions"
                )
            if L_new > slots:
                raise ValueError(
                    f"Expected at most window={slots} new positions per update but got {L_new}"
                )
            # Sliding window: drop the oldest positions by moving the kept ones to the front.
            keep = slots - L_new
            keys[:, :, :keep] = keys[:, :, start - keep:start].clone()  # (B, H_kv, keep, D)
            values[:, :, :keep] = values[:, :, start - keep:start].clone()
            start = keep
        keys[:, :, start:start + L_new] = k  # (B, H_kv, L_new, D) into the free slots
        values[:, :, start:start + L_new] = v
        self._held[layer] = start + L_new
        self._seen[layer] += L_new
        S = self._held[layer]
        return keys[:, :, :S], values[:, :, :S]  # views: (B, H_kv, S, D)

    def _explain_bad_update(self, layer: object, k: object, v: object) -> None:
        """Raise the error that says what is wrong with the arguments of `update`."""
        if not isinstance(layer, int) or not 0 <= layer < self.n_layer:
            raise ValueError(f"Expected `layer` in [0, {self.n_layer}) but got {layer!r}")
        expect_tensor("k", k)
        expect_tensor("v", v)
        expected = (self.batch_size, self.n_kv_head, k.shape[-2] if k.dim() == 4 else "L_new", self.head_dim)
        for name, x in (("k", k), ("v", v)):
            if x.dim() != 4 or tuple(x.shape) != expected:
                raise ValueError(
                    f"Expected `{name}` shape to be {shape_str(expected)} (B, H_kv, L_new, D) "
                    f"but got {shape_str(x.shape)}"
                )

    def reset(self) -> None:
        """Forget every position (keep the memory), e.g. before the next prompt."""
        self._held = [0] * self.n_layer
        self._seen = [0] * self.n_layer

    def truncate(self, n: int) -> None:
        """Keep only the first `n` positions of every layer (speculative decoding's rollback of rejected tokens).

        The slots past n keep stale values until the next `update` overwrites them. A cache with a
        `window` is refused: the positions it dropped cannot come back, so what it would hold after
        truncation would differ from a fresh cache fed the same n tokens.

        Shapes: held (B, H_kv, S, D) per layer -> (B, H_kv, n, D), n <= S.

        See chapters/08_serving.ipynb.
        """
        if self.window is not None:
            raise ValueError(f"KVCache.truncate needs a cache without `window` (this one has window={self.window}: "
                             "the positions it dropped cannot be restored); use window=None")
        held = min(self._held)  # equal in every layer between model calls
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= held:
            raise ValueError(f"Expected `n` to be an int in [0, {held}] (the positions held) but got {n!r}")
        self._held = [n] * self.n_layer
        self._seen = [n] * self.n_layer

    @property
    def seq_len(self) -> int:
        """Positions held (by the last layer, so complete after a model's forward pass)."""
        return self._held[-1]

    @property
    def n_seen(self) -> int:
        """Positions appended since reset: the position of the next token. Equals seq_len without a window."""
        return self._seen[-1]

    def __len__(self) -> int:
        return self.seq_len

    @property
    def nbytes(self) -> int:
        """Bytes of memory the cache holds (every slot, used or not)."""
        return sum(t.nbytes for t in self.keys + self.values)

    @staticmethod
    def expected_nbytes(
        n_layer: int, batch: int, n_head: int, seq_len: int, head_dim: int, dtype: torch.dtype
    ) -> int:
        """Memory of a KV cache: 2 (keys and values) x layers x batch x heads x positions x D x bytes.

        For GPT-2 small (12 layers, 12 heads, D=64) in float32: 73.7 kB per token, 75.5 MB at 1024.

        Shapes: -> an int, in bytes.

        See chapters/05_kv_cache.ipynb.
        """
        itemsize = torch.empty((), dtype=dtype).element_size()
        return 2 * n_layer * batch * n_head * seq_len * head_dim * itemsize
