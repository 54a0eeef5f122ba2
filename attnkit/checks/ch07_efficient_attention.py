"""Exercises of chapter 7 (solutions/07_efficient_attention.ipynb): online softmax, tiles, linear attention, windows.

References: FlashAttention's forward (Dao et al. 2022) written over key blocks, with a running max m, a
running sum l and an unnormalised output O; causal linear attention as an RNN with phi(x) = elu(x) + 1
(Katharopoulos et al. 2020); a causal sliding window aligned bottom-right like `attnkit.causal_mask`.
tests/test_tiled_attention.py, tests/test_linear_attention.py and tests/test_sparse_attention.py check
the library's versions against F.scaled_dot_product_attention. Shapes are chosen so that transposition
bugs show: B > 1, L != S, D != Dv, a last block shorter than the others.
"""

from __future__ import annotations

import contextlib
import math
import sys

import torch

from attnkit.checks.core import Case, Exercise, Misconception, randn
from attnkit.cost import peak_tensor_bytes

NOTEBOOK = "07_efficient_attention.ipynb"
_NEG = float("-inf")


# --- 7.1 the online softmax: softmax(scores) @ values one block of keys at a time ----------------


def _online(scores, values, block_size, *, start=_NEG, rescale_sum=True, rescale_acc=True, inverted=False,
            block_max=False, max_from="running", keep_max="new", skip_short=False, stats="m, l"):
    """The online softmax with switches for the classic mistakes (all off: the reference)."""
    m = torch.full(scores.shape[:-1], start, dtype=scores.dtype)  # (B, L): the running max
    l = torch.zeros(scores.shape[:-1], dtype=scores.dtype)  # (B, L): the running sum, measured against m
    acc = torch.zeros(scores.shape[:-1] + values.shape[-1:], dtype=scores.dtype)  # (B, L, Dv)
    S = scores.shape[-1]
    for j0 in range(0, S - block_size if skip_short else S, block_size):  # skip_short: stops one block early
        s = scores[..., j0:j0 + block_size]  # (B, L, bk)
        m_new = torch.maximum(m, s.amax(dim=-1)) if max_from == "running" else s.amax(dim=-1)  # (B, L)
        c = torch.exp(m_new - m) if inverted else torch.exp(m - m_new)  # (B, L): old values were against m
        if block_max:  # each block against its own max, nothing corrected
            c = torch.ones_like(c)
        p = torch.exp(s - (s.amax(dim=-1) if block_max else m_new)[..., None])  # (B, L, bk)
        l = (l * c if rescale_sum else l) + p.sum(dim=-1)
        acc = (acc * c[..., None] if rescale_acc else acc) + p @ values[..., j0:j0 + block_size, :]  # (B, L, Dv)
        m = m_new if keep_max == "new" else s.amax(dim=-1)
    if stats == "l, m":
        return acc / l[..., None], l, m
    if stats == "m, lse":
        return acc / l[..., None], m, m + torch.log(l)
    return acc / l[..., None], m, l


def _online_block_average(scores, values, block_size):
    """The mean of each block's own softmax(block) @ values: every block weighted the same."""
    outs = [torch.softmax(scores[..., j0:j0 + block_size], dim=-1) @ values[..., j0:j0 + block_size, :]
            for j0 in range(0, scores.shape[-1], block_size)]  # each (B, L, Dv)
    m = scores.amax(dim=-1)  # (B, L)
    return torch.stack(outs).mean(dim=0), m, torch.exp(scores - m[..., None]).sum(dim=-1)


def _online_ref(scores, values, block_size):
    return _online(scores, values, block_size)


def _online_cases(gen: torch.Generator) -> list[Case]:
    rising = torch.linspace(-2, 6, 12).expand(2, 3, 12) + randn(gen, 2, 3, 12, scale=0.3)  # the max moves each block
    return [
        Case("scores (2, 3, 10), values (2, 10, 4), block_size 4 (the last block has 2 keys)",
             {"scores": randn(gen, 2, 3, 10, scale=2.0), "values": randn(gen, 2, 10, 4), "block_size": 4}),
        Case("scores rising left to right (a new max in every block), (2, 3, 12), block_size 3",
             {"scores": rising.contiguous(), "values": randn(gen, 2, 12, 5), "block_size": 3}),
        Case("every score negative (between -9 and -3), (1, 4, 9), block_size 3",
             {"scores": -6 + randn(gen, 1, 4, 9).clamp(-3, 3), "values": randn(gen, 1, 9, 2), "block_size": 3}),
        Case("2048 keys in blocks of 128, (1, 8, 2048) (exp of all 2048 scores of a row must never exist at once)",
             {"scores": randn(gen, 1, 8, 2048, scale=2.0), "values": randn(gen, 1, 2048, 4), "block_size": 128}),
    ]


def _online_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("scores (3, 5, 16), values (3, 16, 6), block_size 5",
                 {"scores": randn(gen, 3, 5, 16, scale=3.0) - 2, "values": randn(gen, 3, 16, 6), "block_size": 5})]


# --- 7.2 attention tile by tile over the keys, with a mask ---------------------------------------


def _tiled(query, key, value, attn_mask, block_size, *, use_mask="tile", safe_shift=True, safe_divide=True,
           lse="m+log(l)", scaled=True, fill=_NEG):
    """Tiled attention with switches for the classic mistakes (defaults: the reference)."""
    scale = 1 / math.sqrt(query.shape[-1]) if scaled else 1.0
    L, S = query.shape[-2], key.shape[-2]
    mask = attn_mask.expand(query.shape[:-2] + (L, S))  # (B, L, S), a view
    m = torch.full(query.shape[:-1], _NEG)  # (B, L)
    l = torch.zeros(query.shape[:-1])  # (B, L)
    acc = torch.zeros(query.shape[:-1] + value.shape[-1:])  # (B, L, Dv)
    for j0 in range(0, S, block_size):
        j1 = min(j0 + block_size, S)
        s = query @ key[..., j0:j1, :].transpose(-2, -1) * scale  # (B, L, D) x (B, D, bk) -> (B, L, bk)
        if use_mask == "tile":
            s = s.masked_fill(~mask[..., j0:j1], fill)
        elif use_mask == "added":  # a bool mask added like a float one: +1 where allowed
            s = s + mask[..., j0:j1]
        elif use_mask == "first-tile":
            s = s.masked_fill(~mask[..., : j1 - j0], _NEG)  # the first tile's columns, every time
        elif use_mask == "inverted":
            s = s.masked_fill(mask[..., j0:j1], _NEG)
        m_new = torch.maximum(m, s.amax(dim=-1))  # (B, L)
        shift = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new) if safe_shift else m_new
        c = torch.exp(m - shift)
        p = torch.exp(s - shift[..., None])  # (B, L, bk)
        l = l * c + p.sum(dim=-1)
        acc = acc * c[..., None] + p @ value[..., j0:j1, :]
        m = m_new
    empty = l == 0
    out = acc / (torch.where(empty, torch.ones_like(l), l) if safe_divide else l)[..., None]
    if lse == "log(l)":
        return out, torch.log(l)
    if lse == "m":
        return out, m
    if lse == "zero-if-empty":
        return out, torch.where(empty, torch.zeros_like(m), m + torch.log(l))
    return out, torch.where(empty, torch.full_like(m, _NEG), m + torch.log(l))


def _tiled_nan_hidden(query, key, value, attn_mask, block_size):
    """No guard against the -inf max, then the NaN it made replaced at the end (zeros, lse -inf)."""
    out, lse = _tiled(query, key, value, attn_mask, block_size, safe_shift=False, safe_divide=False)
    return out.nan_to_num(nan=0.0), torch.where(lse.isnan(), torch.full_like(lse, _NEG), lse)


def _tiled_ref(query, key, value, attn_mask, block_size):
    return _tiled(query, key, value, attn_mask, block_size)


class FullScoresError(RuntimeError):
    """Raised by the 7.1/7.2 checks when the function created a tensor as large as all the scores at once."""


class ShortcutError(RuntimeError):
    """Raised when a function calls the attnkit function that solves the exercise it is checked for."""


@contextlib.contextmanager
def _switched_off(names: tuple[str, ...], fn, exercise_id: str):
    """attnkit's functions `names` raise ShortcutError while the block runs: in attnkit, in their modules and
    under any name the learner's function sees them in its globals (a notebook's `from attnkit import ...`)."""
    import attnkit

    originals = {name: getattr(attnkit, name) for name in names}
    ids = {id(f): name for name, f in originals.items()}

    def refuse(name):
        def refused(*args, **kwargs):
            raise ShortcutError(f"you called attnkit.{name}: exercise {exercise_id} asks you to write it yourself "
                                "(attnkit's own version is switched off while this exercise is checked)")
        return refused

    patched = []  # (namespace, name, old value or _MISSING), or (closure cell, None, old value)
    spaces = [attnkit.__dict__] + [sys.modules[f.__module__].__dict__ for f in originals.values()]
    spaces.append(getattr(fn, "__globals__", {}))
    for space in spaces:
        for key, value in list(space.items()):
            if id(value) in ids and callable(value):
                patched.append((space, key, value))
                space[key] = refuse(ids[id(value)])
    for name in names:  # attnkit resolves its exports lazily: a name not loaded yet is patched too
        if name not in attnkit.__dict__:
            patched.append((attnkit.__dict__, name, _MISSING))
            attnkit.__dict__[name] = refuse(name)
    cells = [c for c in (getattr(fn, "__closure__", None) or ()) if id(_cell_value(c)) in ids]
    for cell in cells:  # a name the function closed over (an import inside an enclosing function)
        patched.append((cell, None, cell.cell_contents))
        cell.cell_contents = refuse(ids[id(cell.cell_contents)])
    try:
        if id(fn) in ids:  # the function handed to check() is attnkit's own
            refuse(ids[id(fn)])()
        yield
    finally:
        for space, key, value in reversed(patched):
            if key is None:
                space.cell_contents = value
            elif value is _MISSING:
                space.pop(key, None)
            else:
                space[key] = value


def _cell_value(cell):
    try:
        return cell.cell_contents
    except ValueError:  # a cell not filled yet
        return None


_MISSING = object()


def _guarded(exercise_id: str, shortcuts: tuple[str, ...], *, scores_of=None):
    """A `call` for Exercise: the shortcuts switched off, and with many keys (`scores_of(inputs)` = (B, L, S)
    or None) no tensor set as large as the whole (B, L, S) float32 scores alive at once."""

    def call(fn, inputs):
        with _switched_off(shortcuts, fn, exercise_id):
            if scores_of is None:
                return fn(**inputs)
            out, peak = peak_tensor_bytes(fn, **inputs)
        B, L, S = scores_of(inputs)
        full = B * L * S * 4  # bytes of the (B, L, S) float32 scores
        if S >= 1024 and peak >= full:
            raise FullScoresError(f"your function had {peak:,} bytes of tensors alive at once, as much as the "
                                  f"whole (B, L, S) scores ({full:,} bytes): it did not work tile by tile (a copy "
                                  "or dtype conversion of the whole input counts too: copy one block at a time)")
        return out

    return call


_call_online = _guarded("7.1", ("online_softmax", "flash_attention"), scores_of=lambda i: tuple(i["scores"].shape))
_call_tiled = _guarded("7.2", ("flash_attention",),
                       scores_of=lambda i: (i["query"].shape[0], i["query"].shape[1], i["key"].shape[1]))
_call_linear = _guarded("7.3", ("linear_attention_rnn", "linear_attention_parallel"))
_call_window = _guarded("7.4", ("dilated_window_mask", "global_tokens_mask", "strided_mask", "block_sparse_mask",
                                "local_window_mask"))


def _tiled_cases(gen: torch.Generator) -> list[Case]:
    B, L, S, D, Dv = 2, 5, 12, 6, 4
    behind = torch.arange(S - L, S)[:, None] - torch.arange(S)[None, :]  # (L, S): query i is position S - L + i
    window = (behind >= 0) & (behind < 6)  # (L, S): causal, bottom-right, the last 6 tokens
    left_padded = torch.arange(S) >= torch.tensor([2, 8])[:, None]  # (B, S): 2 and 8 padding keys on the left
    rows = torch.rand(B, L, S, generator=gen) > 0.3  # (B, L, S)
    rows[0, 2] = False  # query 2 of sequence 0 may attend to nothing
    return [
        Case("a causal window of 6 keys (5, 12), bottom-right aligned, B=2, D=6, Dv=4, block_size 4",
             {"query": randn(gen, B, L, D), "key": randn(gen, B, S, D), "value": randn(gen, B, S, Dv),
              "attn_mask": window, "block_size": 4}),
        Case("left padding (B, 1, S): sequence 1's first 8 keys (two whole tiles) are padding, block_size 4",
             {"query": randn(gen, B, L, D), "key": randn(gen, B, S, D), "value": randn(gen, B, S, Dv),
              "attn_mask": left_padded[:, None, :], "block_size": 4}),
        Case("a random mask (2, 5, 12) where query 2 of sequence 0 may attend to no key, block_size 5",
             {"query": randn(gen, B, L, D), "key": randn(gen, B, S, D), "value": randn(gen, B, S, Dv),
              "attn_mask": rows, "block_size": 5}),
        # 64 queries: the whole scores (512 KB) outweigh any copy of the inputs (a float64 key is 96 KB)
        Case("2048 keys in tiles of 128, no key masked (the (1, 64, 2048) scores must never exist whole)",
             {"query": randn(gen, 1, 64, D), "key": randn(gen, 1, 2048, D), "value": randn(gen, 1, 2048, Dv),
              "attn_mask": torch.ones(64, 2048, dtype=torch.bool), "block_size": 128}),
    ]


def _tiled_hidden(gen: torch.Generator) -> list[Case]:
    B, L, S, D, Dv = 3, 7, 16, 8, 3
    mask = torch.arange(S) >= torch.tensor([0, 5, 11])[:, None]  # (B, S): left padding
    mask = mask[:, None, :] & torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L)  # (B, L, S)
    return [Case("left padding and a causal mask (3, 7, 16), block_size 3",
                 {"query": randn(gen, B, L, D), "key": randn(gen, B, S, D), "value": randn(gen, B, S, Dv),
                  "attn_mask": mask, "block_size": 3})]


# --- 7.3 causal linear attention as an RNN -----------------------------------------------------


def _phi(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.elu(x) + 1


def _linear_rnn(query, key, value, *, accumulate=True, accumulate_z=True, normalise=True, feature=_phi,
                causal=True, read_first=False, accumulate_s=True, key_feature=None, z_raw=False, q_scale=1.0):
    """Recurrent linear attention with switches for the classic mistakes (defaults: the reference)."""
    q, k = feature(query * q_scale), (key_feature or feature)(key)  # (B, L, D)
    B, L, D = q.shape
    s = torch.zeros(B, D, value.shape[-1])  # (B, D, Dv): sum of phi(k_j) v_j^T so far
    z = torch.zeros(B, D)  # (B, D): sum of phi(k_j) so far
    if not causal:
        s, z = k.transpose(-2, -1) @ value, k.sum(dim=-2)  # the whole sequence's sums, for every query
    outs = []
    for t in range(L):
        kv = k[:, t, :, None] * value[:, t, None, :]  # (B, D, 1) * (B, 1, Dv) -> (B, D, Dv)
        if read_first:  # output before the state includes token t
            num, den = (q[:, t, None, :] @ s)[:, 0], (q[:, t] * z).sum(-1, keepdim=True)
        if causal:
            s = s + kv if accumulate and accumulate_s else kv
            k_z = key[:, t] if z_raw else k[:, t]  # (B, D)
            z = z + k_z if accumulate_z and accumulate else k_z
        if not read_first:
            num, den = (q[:, t, None, :] @ s)[:, 0], (q[:, t] * z).sum(-1, keepdim=True)  # (B, Dv), (B, 1)
        outs.append(num / den if normalise else num)
    return torch.stack(outs, dim=1)  # (B, L, Dv)


def _linear_ref(query, key, value):
    return _linear_rnn(query, key, value)


def _linear_cases(gen: torch.Generator) -> list[Case]:
    def case(name: str, B: int, L: int, D: int, Dv: int) -> Case:
        return Case(name, {"query": randn(gen, B, L, D), "key": randn(gen, B, L, D), "value": randn(gen, B, L, Dv)})

    return [case("query, key (2, 6, 4), value (2, 6, 3)", 2, 6, 4, 3),
            case("one sequence of 9 tokens, D=5, Dv=2", 1, 9, 5, 2),
            case("query, key (3, 4, 8), value (3, 4, 6)", 3, 4, 8, 6)]


def _linear_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("query, key (2, 12, 6), value (2, 12, 5)",
                 {"query": randn(gen, 2, 12, 6), "key": randn(gen, 2, 12, 6), "value": randn(gen, 2, 12, 5)})]


# --- 7.4 a causal sliding-window mask ----------------------------------------------------------


def _window(L: int, S: int, window: int, *, extra: int = 0, top_left: bool = False, symmetric: bool = False,
            causal_only: bool = False, no_causal_bound: bool = False) -> torch.Tensor:
    positions = torch.arange(L)[:, None] + (0 if top_left else S - L)  # (L, 1): query i is position S - L + i
    behind = positions - torch.arange(S)[None, :]  # (L, S): how far key j lies behind the query
    if causal_only:
        return behind >= 0
    if symmetric:
        return behind.abs() < window + extra
    if no_causal_bound:
        return behind < window + extra
    return (behind >= 0) & (behind < window + extra)


def _window_ref(L, S, window):
    return _window(L, S, window)


def _window_slices(L: int, S: int, window: int) -> torch.Tensor:
    """A loop of row slices m[i, p - window + 1 : p + 1] with no max(0, ...): a negative start wraps around."""
    mask = torch.zeros(L, S, dtype=torch.bool)
    for i in range(L):
        p = S - L + i
        mask[i, p - window + 1:p + 1] = True
    return mask


def _window_cases(gen: torch.Generator) -> list[Case]:
    return [Case("L = S = 6, window 3", {"L": 6, "S": 6, "window": 3}),
            Case("3 new queries after 5 cached tokens: L=3, S=8, window 4", {"L": 3, "S": 8, "window": 4}),
            Case("window 1 (each token sees only itself), L = S = 4", {"L": 4, "S": 4, "window": 1})]


def _window_hidden(gen: torch.Generator) -> list[Case]:
    return [Case("L=4, S=12, window 5", {"L": 4, "S": 12, "window": 5}),
            Case("a window longer than the text: L = S = 5, window 9", {"L": 5, "S": 5, "window": 9})]


_SHORTCUT = (r"asks you to write it yourself",
             "Write the function with torch operations: the attnkit function that does this exercise's job is "
             "switched off while it is checked (the chapter uses it as a black box; here you build it).", "shortcut")

# A block of exp(scores) (B, L, block) multiplied by all of `values` (B, S, Dv) instead of the same block of them.
_VALUES_BLOCK = (r"Expected size for first two dimensions of batch2 tensor|size mismatch|cannot be multiplied",
                 "Multiply each block's exp(scores - m), (B, L, block), by the SAME block of values, "
                 "values[..., j0:j1, :] of shape (B, block, Dv), not by all S rows of the values.", "values-block")

EXERCISES = [
    Exercise(
        id="7.1", notebook=NOTEBOOK, function="online_softmax",
        title="softmax(scores) @ values one block of keys at a time, with a running max and a running sum",
        reference=_online_ref, make_cases=_online_cases, make_hidden_cases=_online_hidden,
        output_names=("output", "row_max", "row_sum"), call=_call_online,
        error_hints=(_VALUES_BLOCK, _SHORTCUT, (r"did not work tile by tile",
                      "Work one block of keys at a time: exp(scores[..., j0:j1] - m_new) is (B, L, block_size); "
                      "never torch.softmax or exp over a whole row of S scores at once.", "whole-row")),
        misconceptions=(
            Misconception(lambda scores, values, block_size: _online(scores, values, block_size, rescale_sum=False,
                                                                     rescale_acc=False),
                          "You did not rescale when the max changed: the running sum and the output so far were "
                          "computed with exp(score - old max). When the max grows to m_new, multiply both by "
                          "exp(old max - m_new) before adding this block's exp(score - m_new).",
                          name="no-rescale"),
            Misconception(lambda scores, values, block_size: _online(scores, values, block_size, rescale_sum=False),
                          "You rescaled the output accumulator but not the running sum. Both were measured against "
                          "the old max: l = l * exp(old max - m_new) + sum(exp(block - m_new)), with the same "
                          "correction factor as the output.", name="sum-not-rescaled"),
            Misconception(lambda scores, values, block_size: _online(scores, values, block_size, rescale_acc=False),
                          "You rescaled the running sum but not the output accumulator: O = O * exp(old max - m_new) "
                          "+ exp(block - m_new) @ values, the same correction as the sum.",
                          name="output-not-rescaled"),
            Misconception(lambda scores, values, block_size: _online(scores, values, block_size, start=0.0),
                          "Your running max starts at 0, so rows whose scores are all negative report a max of 0 "
                          "instead of their largest score (and a sum measured against the wrong max; with scores "
                          "far below 0, every exp underflows to 0 and the output becomes 0 / 0). Start the max at "
                          "-inf: nothing has been seen yet.", name="max-starts-at-zero"),
            Misconception(lambda scores, values, block_size: _online(scores, values, block_size, inverted=True),
                          "Your correction factor is upside down: the old values must SHRINK when the max grows, "
                          "so multiply by exp(old max - new max) (<= 1), not exp(new max - old max) (which is "
                          "inf at the first block, where the old max is -inf).", name="inverted-correction"),
            Misconception(lambda scores, values, block_size: _online(scores, values, block_size, block_max=True),
                          "You subtracted each block's own max and never corrected the earlier blocks: the "
                          "exponentials of different blocks are then on different scales. Keep ONE running max, "
                          "m_new = max(m, max of this block), and rescale what came before by exp(m - m_new).",
                          name="block-local-max"),
            Misconception(lambda scores, values, block_size: _online(scores, values, block_size, keep_max="block"),
                          "Your running max is overwritten by each block's own max (m = block max), so it can go "
                          "DOWN and the next correction is measured against the wrong value. Keep the running "
                          "one: m = m_new = torch.maximum(m, block max).", name="max-overwritten"),
            Misconception(lambda scores, values, block_size: _online(scores, values, block_size, max_from="block"),
                          "Your m_new is the block's own max, not the running max: row_max then reports the LAST "
                          "block's max. m_new = torch.maximum(m, block max) never decreases.",
                          name="max-not-running"),
            Misconception(lambda scores, values, block_size: _online(scores, values, block_size, stats="l, m"),
                          "row_max and row_sum are swapped: return output, row_max (the running max m), row_sum "
                          "(the running sum l), in that order.", name="stats-swapped"),
            Misconception(lambda scores, values, block_size: _online(scores, values, block_size, stats="m, lse"),
                          "Your row_sum is the log-sum-exp m + log(l). The exercise asks for l itself: the sum of "
                          "exp(score - row_max) over the row (the lse belongs to 7.2).", name="lse-as-row-sum"),
            Misconception(lambda scores, values, block_size: _online(scores, values, block_size, skip_short=True),
                          "Your loop stops one block early: range(0, S - block_size, block_size) misses the last "
                          "block. Use range(0, S, block_size); the last block may be shorter, and "
                          "scores[..., j0:j0 + block_size] simply stops at S.", name="last-block-skipped"),
            Misconception(_online_block_average,
                          "You averaged each block's own softmax @ values: blocks are not worth the same. A block "
                          "counts in proportion to its share of the row's total exp; keep one running max and "
                          "sum and let the correction factor reweight what came before.", name="block-average"),
        ),
    ),
    Exercise(
        id="7.2", notebook=NOTEBOOK, function="tiled_attention",
        title="Masked attention over blocks of keys without the (L, S) matrix: the output and each row's log-sum-exp",
        reference=_tiled_ref, make_cases=_tiled_cases, make_hidden_cases=_tiled_hidden,
        output_names=("output", "lse"), call=_call_tiled,
        error_hints=(_VALUES_BLOCK, _SHORTCUT, (r"did not work tile by tile",
                      "Compute the scores one tile at a time: for each block of keys, q @ k_tile^T is (B, L, "
                      "block_size); never the whole q @ k^T, nor a softmax over all S keys at once (no "
                      "F.scaled_dot_product_attention, no torch.logsumexp over every score).", "full-scores"),),
        misconceptions=(
            Misconception(lambda query, key, value, attn_mask, block_size: _tiled(query, key, value, attn_mask,
                                                                                  block_size, use_mask="none"),
                          "The mask is not applied: in every tile, set the scores of the blocked keys to -inf "
                          "(masked_fill(~mask_tile, -inf)) before the running max and the exponentials.",
                          name="mask-ignored"),
            Misconception(lambda query, key, value, attn_mask, block_size: _tiled(query, key, value, attn_mask,
                                                                                  block_size, use_mask="first-tile"),
                          "Every tile used the FIRST tile's columns of the mask. The mask must be cut exactly like "
                          "the keys: attn_mask[..., j0:j1] for the keys j0 .. j1 - 1 of this tile.",
                          name="mask-same-tile"),
            Misconception(lambda query, key, value, attn_mask, block_size: _tiled(query, key, value, attn_mask,
                                                                                  block_size, use_mask="inverted"),
                          "Your mask is inverted: True means the query MAY attend to the key (as in "
                          "F.scaled_dot_product_attention); set the scores to -inf where the mask is False.",
                          name="inverted-mask"),
            Misconception(lambda query, key, value, attn_mask, block_size: _tiled(query, key, value, attn_mask,
                                                                                  block_size, safe_divide=False),
                          "A query whose every key is masked ends with l = 0 and O = 0, and O / l is 0 / 0 = NaN. "
                          "Like F.scaled_dot_product_attention, return zeros for such a row (divide by 1 where "
                          "l == 0) and lse = -inf.", name="fully-masked-row-nan"),
            Misconception(lambda query, key, value, attn_mask, block_size: _tiled(query, key, value, attn_mask,
                                                                                  block_size, safe_shift=False),
                          "A fully masked TILE gives NaN: while a row has seen only blocked keys its max is -inf, "
                          "and exp(-inf - (-inf)) = exp(NaN). Shift by 0 where the running max is still -inf "
                          "(torch.where(torch.isneginf(m_new), 0, m_new)): those exponentials are then exactly 0.",
                          name="fully-masked-tile-nan"),
            Misconception(lambda query, key, value, attn_mask, block_size: _tiled(query, key, value, attn_mask,
                                                                                  block_size, lse="log(l)"),
                          "Your lse is log(l), but l was measured against the running max m: the log-sum-exp of "
                          "the row's scores is m + log(l).", name="lse-without-max"),
            Misconception(lambda query, key, value, attn_mask, block_size: _tiled(query, key, value, attn_mask,
                                                                                  block_size, scaled=False),
                          "Your scores are not scaled: divide each tile of q @ k^T by sqrt(D), D the query/key "
                          "width (query.shape[-1]), as scaled dot-product attention does.", name="unscaled"),
            Misconception(lambda query, key, value, attn_mask, block_size: _tiled(query, key, value, attn_mask,
                                                                                  block_size, fill=-1e9),
                          "A finite fill such as -1e9 instead of -inf: a query that may attend to NO key then has "
                          "all its scores equal to -1e9, so it averages all the values (and gets a finite lse) "
                          "instead of returning zeros and lse = -inf. Fill with -inf and guard the -inf max.",
                          name="finite-fill"),
            Misconception(lambda query, key, value, attn_mask, block_size: _tiled(query, key, value, attn_mask,
                                                                                  block_size, use_mask="added"),
                          "You ADDED the bool mask to the scores (+1 where allowed, +0 where blocked): that is "
                          "how a float mask of 0 / -inf works. A bool mask selects: masked_fill(~mask_tile, "
                          "-inf).", name="bool-mask-added"),
            Misconception(lambda query, key, value, attn_mask, block_size: _tiled(query, key, value, attn_mask,
                                                                                  block_size, lse="zero-if-empty"),
                          "A query with no visible key has lse = log(0) = -inf (the log of an empty sum), as "
                          "torch.logsumexp gives for a row of -inf; your lse is 0 there.",
                          name="lse-zero-if-empty"),
            Misconception(_tiled_nan_hidden,
                          "Rows whose first tiles were fully masked came out as zeros: exp(-inf - (-inf)) made a "
                          "NaN there, it spread into every later tile of the row, and replacing NaN at the end "
                          "hid it. Guard the shift instead: torch.where(torch.isneginf(m_new), 0, m_new).",
                          name="nan-replaced-at-end"),
        ),
    ),
    Exercise(
        id="7.3", notebook=NOTEBOOK, function="linear_attention_recurrent",
        title="Causal linear attention as an RNN: a (D, Dv) state and a (D,) normaliser updated once per token",
        reference=_linear_ref, make_cases=_linear_cases, make_hidden_cases=_linear_hidden,
        output_names=("output",), call=_call_linear, error_hints=(_SHORTCUT,),
        nan_causes=("0 / 0: a normaliser phi(q_t).z_t that is 0, as when z is still empty (read before token t "
                    "is added) or when phi is not applied and q.k can be 0 or negative"),
        misconceptions=(
            Misconception(lambda query, key, value: _linear_rnn(query, key, value, accumulate=False),
                          "Your state is not accumulated: it holds only the current token's phi(k_t) v_t^T, so "
                          "each output is just v_t. The state is a running SUM: S_t = S_{t-1} + phi(k_t) v_t^T, "
                          "z_t = z_{t-1} + phi(k_t).", name="state-not-accumulated"),
            Misconception(lambda query, key, value: _linear_rnn(query, key, value, normalise=False),
                          "The normaliser is missing: divide phi(q_t)^T S_t by phi(q_t)^T z_t, with z_t the running "
                          "sum of phi(k_j), so that the weights phi(q_t).phi(k_j) / sum_j phi(q_t).phi(k_j) sum "
                          "to 1 like softmax weights.", name="normaliser-missing"),
            Misconception(lambda query, key, value: _linear_rnn(query, key, value, accumulate_z=False),
                          "The normaliser z is not accumulated: z_t = z_{t-1} + phi(k_t) is a running sum, like "
                          "the state S_t.", name="normaliser-not-accumulated"),
            Misconception(lambda query, key, value: _linear_rnn(query, key, value, feature=lambda x: x),
                          "You used q and k as they are: apply the feature map phi(x) = elu(x) + 1 "
                          "(F.elu(x) + 1) to both, so that every phi(q).phi(k) is positive.",
                          name="no-feature-map"),
            Misconception(lambda query, key, value: _linear_rnn(query, key, value, causal=False),
                          "Every query used the whole sequence's sums: that is non-causal linear attention. Token "
                          "t may only see keys 0 .. t: update the state with token t, then read it for query t.",
                          name="not-causal"),
            Misconception(lambda query, key, value: _linear_rnn(query, key, value, read_first=True),
                          "You read the state before adding token t, so token t does not see itself (and token 0 "
                          "divides 0 by 0). Update S and z with token t first, then compute output t.",
                          name="read-before-update"),
            Misconception(lambda query, key, value: _linear_rnn(query, key, value, accumulate_s=False),
                          "Your state S is not accumulated (only z is): S_t = S_{t-1} + phi(k_t) v_t^T is a running "
                          "sum over the tokens 0 .. t, like z_t.", name="state-only-not-accumulated"),
            Misconception(lambda query, key, value: _linear_rnn(query, key, value, key_feature=lambda x: x),
                          "You applied phi to the query only: the keys need it too, phi(k_t) in the state and in "
                          "z, so that every phi(q).phi(k) is positive.", name="phi-on-query-only"),
            Misconception(lambda query, key, value: _linear_rnn(query, key, value, z_raw=True),
                          "Your normaliser sums the raw keys k_t: z_t = z_{t-1} + phi(k_t), the same phi(k_t) as "
                          "in the state, so that phi(q).z is the sum of the weights.", name="z-raw-keys"),
            Misconception(lambda query, key, value: _linear_rnn(query, key, value,
                                                                q_scale=1 / math.sqrt(query.shape[-1])),
                          "No 1/sqrt(D) here: linear attention uses phi(q).phi(k) as it is (scaling q before phi "
                          "changes phi's values; a factor after phi would cancel in the division).",
                          name="scaled-query"),
        ),
    ),
    Exercise(
        id="7.4", notebook=NOTEBOOK, function="sliding_window_mask",
        title="A causal sliding-window mask: each query sees its own token and the window - 1 before it",
        reference=_window_ref, make_cases=_window_cases, make_hidden_cases=_window_hidden,
        output_names=("mask",), call=_call_window, error_hints=(_SHORTCUT,),
        misconceptions=(
            Misconception(lambda L, S, window: _window(L, S, window, extra=1),
                          "Off by one: your window holds window + 1 keys. Query at position p sees the `window` "
                          "keys p - window + 1 .. p (its own token included): p - j < window, not <=.",
                          name="off-by-one-window"),
            Misconception(lambda L, S, window: _window(L, S, window, extra=-1),
                          "Off by one: your window holds window - 1 keys. Query at position p sees the `window` "
                          "keys p - window + 1 .. p, its own token INCLUDED: 0 <= p - j < window.",
                          name="window-one-too-narrow"),
            Misconception(lambda L, S, window: _window(L, S, window, top_left=True),
                          "Wrong causal alignment: with S > L the L queries are the LAST L tokens, so query i sits "
                          "at position S - L + i (bottom-right, like attnkit.causal_mask), not at i.",
                          name="top-left-alignment"),
            Misconception(lambda L, S, window: _window(L, S, window, symmetric=True),
                          "Your window is symmetric, so queries see keys in their future. A causal window looks "
                          "only back: 0 <= p - j < window.", name="symmetric-window"),
            Misconception(lambda L, S, window: _window(L, S, window, causal_only=True),
                          "That is the plain causal mask: the window is missing. Also block keys more than "
                          "window - 1 positions behind the query.", name="window-ignored"),
            Misconception(lambda L, S, window: ~_window(L, S, window),
                          "Your mask is inverted: True must mean the query MAY attend to the key (as in "
                          "F.scaled_dot_product_attention).", name="inverted-mask"),
            Misconception(lambda L, S, window: _window(L, S, window, no_causal_bound=True),
                          "Your window has no causal bound: every query also sees ALL the keys after it. Keep "
                          "both limits: p - j < window AND p - j >= 0 (j <= p).", name="no-causal-bound"),
            Misconception(_window_slices,
                          "The first rows came out empty: a slice mask[i, p - window + 1 : p + 1] whose start is "
                          "negative counts from the END of the row (Python slicing), so it selects nothing. Clamp "
                          "the start: max(0, p - window + 1).", name="negative-slice-start"),
        ),
    ),
]
