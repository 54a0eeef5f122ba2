"""Interactive explorers for the chapters: move a control, see the attention change.

Each explorer returns an `ipywidgets.VBox` of controls above an `ipywidgets.Output` that holds the
figure as a PNG, redrawn whenever a control moves. Each has a pure `*_explorer_data` function that
computes what is drawn, so it can be tested without a browser; the controls' `description`s are
stable (a browser test finds them by it). Random inputs come from a seeded generator: every explorer
is deterministic. ipywidgets, matplotlib and torch load inside the functions, so importing this
module is instant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ipywidgets
    import torch
    from matplotlib.figure import Figure

__all__ = [
    "temperature_explorer",
    "temperature_explorer_data",
    "local_attention_explorer",
    "local_attention_explorer_data",
    "attention_explorer",
    "attention_explorer_data",
    "mask_explorer",
    "mask_explorer_data",
    "heads_explorer",
    "heads_explorer_data",
    "decoding_explorer",
    "decoding_explorer_data",
]

MAX_D_K = 512  # the d_k slider's range; sampled vectors use the first d_k of MAX_D_K random dimensions


# ----------------------------------------------------------------------------------------------------
# Shared machinery: a Figure outside pyplot (never shown twice, nothing to close) rendered into an Output


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _render(out: ipywidgets.Output, fig: Figure, text: str) -> None:
    """Replace the Output's content by the figure as a PNG (and `text` as its plain-text form)."""
    import base64
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    out.outputs = ({"output_type": "display_data", "metadata": {},
                    "data": {"image/png": png, "text/plain": text}},)


def _explorer(
    controls: Sequence[ipywidgets.Widget],
    draw: Callable[[], tuple[Figure, str]],
    shown: Sequence[ipywidgets.Widget] | None = None,
) -> ipywidgets.VBox:
    """`shown` (default: the controls) above an Output; `draw()` runs now and whenever a control changes."""
    import ipywidgets as widgets

    out = widgets.Output()

    def redraw(_change: object = None) -> None:
        fig, text = draw()
        _render(out, fig, text)

    for control in controls:
        control.observe(redraw, names="value")
        if "description_width" in getattr(control.style, "keys", ()):
            control.style.description_width = "initial"  # show "temperature", not "temperat..."
    redraw()
    return widgets.VBox([*(controls if shown is None else shown), out])


def _entropy(weights: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of each row of weights, with 0 log 0 = 0 (attnkit.entropy)."""
    from attnkit.attention import entropy

    return entropy(weights)  # (..., S) -> (...)


def _labels(labels: Sequence[object] | None, n: int, name: str) -> list[str]:
    if labels is None:
        return [str(i) for i in range(n)]
    if len(labels) != n:
        raise ValueError(f"Expected {n} `{name}` (one per position) but got {len(labels)}")
    return [str(label) for label in labels]


def _bars(ax: Any, values: torch.Tensor, labels: list[str], ylabel: str, title: str) -> None:
    ax.bar(range(len(labels)), values.tolist())
    ax.set_xticks(range(len(labels)), labels=labels, rotation=90 if max(map(len, labels)) > 2 else 0)
    ax.axhline(0, color="black", lw=0.6)
    ax.set(ylabel=ylabel, title=title)


# ----------------------------------------------------------------------------------------------------
# Temperature and scaling


def temperature_explorer_data(
    d_k: int = 16,
    temperature: float = 1.0,
    scaled: bool = True,
    scores: torch.Tensor | Sequence[float] | None = None,
    S: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """What the temperature explorer draws: logits = scores (/ sqrt(d_k) if scaled) / temperature, their softmax.

    Without `scores`, q . k_j for a seeded query q of length sqrt(d_k) and S keys of width d_k whose components
    along q are drawn once, the same for every d_k (their other d_k - 1 entries are random and add nothing to
    the score). So the scores are sqrt(d_k) times a fixed pattern: the same keys win at every width, the
    spread grows like sqrt(d_k) (as for random unit-variance vectors), and scaling undoes exactly that.

    Shapes: scores (S,) -> dict: "scores", "logits", "weights" (S,); "entropy", "max_entropy" floats (nats).

    See chapters/01_attention.ipynb.
    """
    import math

    import torch

    from attnkit.attention import softmax

    if not 1 <= d_k <= MAX_D_K or temperature <= 0:
        raise ValueError(f"Expected 1 <= `d_k` <= {MAX_D_K} and `temperature` > 0 but got {d_k}, {temperature}")
    if scores is None:
        generator = torch.Generator().manual_seed(seed)
        along = torch.randn(S, generator=generator)  # (S,): each key's component along the query, fixed
        direction = torch.randn(MAX_D_K, generator=generator)[:d_k]  # (d_k,)
        direction = direction / direction.norm()  # the query's direction, a unit vector
        rest = torch.randn(S, MAX_D_K, generator=generator)[:, :d_k]  # (S, d_k): random entries
        rest = rest - (rest @ direction)[:, None] * direction  # (S, d_k): their part across the query only
        keys = rest + along[:, None] * direction  # (S, d_k)
        query = math.sqrt(d_k) * direction  # (d_k,): the length of a random unit-variance vector
        scores = keys @ query  # (S, d_k) x (d_k,) -> (S,): sqrt(d_k) * along
    scores = torch.as_tensor(scores, dtype=torch.float32).detach()  # (S,)
    logits = scores / (math.sqrt(d_k) if scaled else 1.0) / temperature  # (S,)
    weights = softmax(logits)  # (S,)
    return {"scores": scores, "logits": logits, "weights": weights,
            "entropy": _entropy(weights).item(), "max_entropy": math.log(len(weights))}


def temperature_explorer(
    scores: torch.Tensor | Sequence[float] | None = None,
    labels: Sequence[object] | None = None,
    *,
    S: int = 8,
    seed: int = 0,
) -> ipywidgets.VBox:
    """Sliders for d_k, 1/sqrt(d_k) scaling and temperature over a row of scores: watch the softmax sharpen.

    Controls: "d_k" (sampled scores only), "scale by 1/sqrt(d_k)" (sampled scores only), "temperature".
    Draws the logits and the weights as bars, with the weights' entropy against its maximum log S.

    Shapes: scores (S,) or None (S seeded samples), labels S items -> widget.

    See chapters/01_attention.ipynb.
    """
    import ipywidgets as widgets

    n = S if scores is None else len(scores)
    names = _labels(labels, n, "labels")
    d_k = widgets.SelectionSlider(description="d_k", options=[2**i for i in range(10)], value=16)
    scaled = widgets.Checkbox(description="scale by 1/sqrt(d_k)", value=True)
    temperature = widgets.FloatLogSlider(description="temperature", base=10, min=-1, max=1, step=0.05,
                                         value=1.0)
    controls = [d_k, scaled, temperature] if scores is None else [temperature]

    def draw() -> tuple[Figure, str]:
        data = temperature_explorer_data(d_k.value, temperature.value, scaled.value and scores is None,
                                         scores, S, seed)
        fig = _figure(8, 3)
        ax_logits, ax_weights = fig.subplots(1, 2)
        _bars(ax_logits, data["logits"], names, "score", "logits: scores after scaling and temperature")
        (raw,) = ax_logits.plot(range(n), data["scores"].tolist(), "k_", ms=14, mew=2)  # the raw scores
        ax_logits.legend([ax_logits.containers[0], raw], ["logit", "raw score q.k"], fontsize=7)
        _bars(ax_weights, data["weights"], names, "weight",
              f"softmax: entropy {data['entropy']:.2f} of max {data['max_entropy']:.2f} nats")
        ax_weights.set_ylim(0, 1)
        spread = f"std of the raw scores {data['scores'].std():.2f}, of the logits {data['logits'].std():.2f}"
        return fig, (f"{spread}; weights "
                     f"{[round(w, 3) for w in data['weights'].tolist()]}, entropy {data['entropy']:.3f}")

    return _explorer(controls, draw)


# ----------------------------------------------------------------------------------------------------
# Local attention


def local_attention_explorer_data(
    D: int = 2,
    alignment: str = "monotonic",
    query_index: int = 0,
    gaussian: bool = True,
    L: int = 12,
    S: int = 12,
    E: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """What the local-attention explorer draws: Luong local attention over seeded random queries and keys.

    "predictive" centres come from `predictive_alignment` with seeded W_p, v_p and the queries as h_t.

    Shapes: -> dict: "centers" (L,), "window" (L, S) bool, "weights" (L, S), and for the chosen query
        "row" (S,), "center" float, "gaussian" (200,), its Gaussian factor at "gaussian_positions" (200,).

    See chapters/01b_classic_attention.ipynb.
    """
    import torch

    from attnkit.local_attention import (
        gaussian_window,
        local_window_mask,
        luong_local_attention,
        monotonic_alignment,
        predictive_alignment,
    )

    if not 0 <= query_index < L:
        raise ValueError(f"Expected `query_index` in [0, {L}) but got {query_index}")
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(L, E, generator=generator)  # (L, E)
    key = torch.randn(S, E, generator=generator)  # (S, E)
    value = torch.randn(S, E, generator=generator)  # (S, E)
    W_p = torch.randn(E, E, generator=generator)  # (A, E), A = E
    v_p = torch.randn(E, generator=generator)  # (A,)
    if alignment == "monotonic":
        centers = monotonic_alignment(L)  # (L,)
    elif alignment == "predictive":
        centers = predictive_alignment(query, W_p, v_p, S)  # (L,)
    else:
        raise ValueError(f'Expected `alignment` to be "monotonic" or "predictive" but got {alignment!r}')
    _, weights = luong_local_attention(query, key, value, D, centers, gaussian)  # (L, S)
    fine = torch.linspace(-0.5, S - 0.5, 200)  # (200,): a smooth curve across the keys
    return {"centers": centers, "window": local_window_mask(L, S, D, centers), "weights": weights,
            "row": weights[query_index], "center": centers[query_index].item(), "gaussian_positions": fine,
            "gaussian": gaussian_window(fine, centers[query_index : query_index + 1], D)[0]}  # (1, 200) -> (200,)


def local_attention_explorer(L: int = 12, S: int = 12, E: int = 8, seed: int = 0) -> ipywidgets.VBox:
    """Luong local attention, live: the window half-width D, monotonic or predictive centres, one query up close.

    Controls: "D", "alignment" (monotonic / predictive), "query" (whose row and centre p_t are drawn),
    "gaussian". Left, the (L, S) weights with each centre marked; right, the chosen query's row.

    Shapes: L queries, S keys of width E (seeded random) -> widget.

    See chapters/01b_classic_attention.ipynb.
    """
    import ipywidgets as widgets
    from matplotlib.patches import Rectangle

    from attnkit.plot import show_attention

    D = widgets.IntSlider(description="D", min=1, max=S, value=2)
    alignment = widgets.Dropdown(description="alignment", options=["monotonic", "predictive"], value="monotonic")
    query = widgets.IntSlider(description="query", min=0, max=L - 1, value=L // 2)
    gaussian = widgets.Checkbox(description="gaussian", value=True)

    def draw() -> tuple[Figure, str]:
        data = local_attention_explorer_data(D.value, alignment.value, query.value, gaussian.value, L, S, E, seed)
        t, p = query.value, data["center"]
        fig = _figure(10, 4)
        ax_matrix, ax_row = fig.subplots(1, 2)
        show_attention(data["weights"], ax=ax_matrix, annotate=False, title=f"{alignment.value} alignment, D={D.value}")
        ax_matrix.plot(data["centers"].tolist(), range(L), "rx", label="centre p_t")
        ax_matrix.add_patch(Rectangle((-0.5, t - 0.5), S, 1, fill=False, edgecolor="red", lw=1.5))
        ax_matrix.legend(loc="lower right", fontsize=7)
        ax_row.bar(range(S), data["row"].tolist(), label="weight")
        if gaussian.value:
            ax_row.plot(data["gaussian_positions"].tolist(), data["gaussian"].tolist(), "k--", lw=1,
                        label="gaussian, sigma = D/2")
        ax_row.axvspan(p - D.value, p + D.value, color="orange", alpha=0.2, label="window [p_t - D, p_t + D]")
        ax_row.axvline(p, color="red", lw=1)
        ax_row.set(xlim=(-0.5, S - 0.5), ylim=(0, 1.05), xlabel="key",
                   title=f"query {t}: p_t = {p:.2f}, weights sum to {data['row'].sum().item():.2f}")
        ax_row.legend(loc="upper right", fontsize=7)
        return fig, f"query {t}: p_t={p:.3f}, row {[round(w, 3) for w in data['row'].tolist()]}"

    return _explorer([D, alignment, query, gaussian], draw)


# ----------------------------------------------------------------------------------------------------
# One query, step by step


def attention_explorer_data(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, index: int, scale: float | None = None
) -> dict[str, torch.Tensor]:
    """The four steps for one query: scores q . k_j * scale, softmax weights, the weighted values, their sum.

    The rows of "contributions" (alpha_j v_j) add up to "output": that sum is the attention output.

    Shapes: query (L, E), key (S, E), value (S, Ev) -> dict: "scores" (S,), "weights" (S,),
        "contributions" (S, Ev), "output" (Ev,).

    See chapters/02_self_attention.ipynb.
    """
    import torch

    from attnkit.attention import scaled_dot_product_attention
    from attnkit.scoring import scaled_dot_product_scores

    query, key, value = (torch.as_tensor(x, dtype=torch.float32).detach() for x in (query, key, value))
    if query.dim() != 2 or not 0 <= index < query.shape[0]:
        raise ValueError(f"Expected `query` (L, E) and `index` in [0, L) but got {tuple(query.shape)}, {index}")
    q = query[index : index + 1]  # (1, E)
    scores = scaled_dot_product_scores(q, key, scale)[0]  # (1, S) -> (S,)
    output, weights = scaled_dot_product_attention(q, key, value, scale=scale)  # (1, Ev), (1, S)
    contributions = weights[0, :, None] * value  # (S, 1) * (S, Ev) -> (S, Ev)
    return {"scores": scores, "weights": weights[0], "contributions": contributions, "output": output[0]}


def attention_explorer(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    labels: Sequence[object] | None = None,
    *,
    query_labels: Sequence[object] | None = None,
    scale: float | None = None,
    index: int = 0,
) -> ipywidgets.VBox:
    """Pick a query token and see its scores, its softmax weights and the weighted sum of the values.

    Control: "query" (a dropdown of query tokens, starting at row `index`). `labels` name the keys, and
    the queries too unless `query_labels` is given (self-attention: L == S).

    Shapes: query (L, E), key (S, E), value (S, Ev), labels S items, query_labels L items -> widget.

    See chapters/02_self_attention.ipynb.
    """
    import ipywidgets as widgets
    import torch

    L, S = len(query), len(key)
    key_names = _labels(labels, S, "labels")
    query_names = _labels(query_labels if query_labels is not None else (labels if L == S else None), L,
                          "query_labels")
    if not isinstance(index, int) or not 0 <= index < L:
        raise ValueError(f"Expected `index` (the query shown first) to be an int in [0, {L}) but got {index!r}")
    picker = widgets.Dropdown(description="query", options=[(name, i) for i, name in enumerate(query_names)],
                              value=index)

    def draw() -> tuple[Figure, str]:
        data = attention_explorer_data(query, key, value, picker.value, scale)
        name = query_names[picker.value]
        fig = _figure(11, 3.4)
        ax_scores, ax_weights, ax_sum = fig.subplots(1, 3)
        _bars(ax_scores, data["scores"], key_names, "score", f"1. scores of {name!r}: q . k_j * scale")
        _bars(ax_weights, data["weights"], key_names, "weight", "2. softmax weights (sum to 1)")
        ax_weights.set_ylim(0, 1)
        table = torch.cat([data["contributions"], data["output"][None]])  # (S, Ev) + (1, Ev) -> (S + 1, Ev)
        limit = table.abs().max().item()
        ax_sum.imshow(table.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        ax_sum.axhline(S - 0.5, color="black", lw=2)
        ax_sum.set_yticks(range(S + 1), labels=[f"{n} x w" for n in key_names] + ["output (sum)"])
        ax_sum.set_xticks(range(table.shape[1]))
        ax_sum.set(xlabel="value dimension", title="3. weighted values and their sum")
        return fig, f"query {name!r}: weights {[round(w, 3) for w in data['weights'].tolist()]}"

    return _explorer([picker], draw)


# ----------------------------------------------------------------------------------------------------
# Masks


MASK_MODES = ("none", "padding", "causal", "both")


def mask_explorer_data(
    lengths: Sequence[int], mode: str = "both", S: int | None = None, E: int = 8, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Self-attention weights of a padded batch under no mask, a padding mask, a causal mask or both.

    Masks are True = may attend (padding: keys past each length; causal: keys after the query). A query
    whose keys are all masked (length 0 with padding) gets zero weights, as in PyTorch's SDPA.

    Shapes: lengths (B,) -> dict: "mask" (B, S, S) bool, "weights" (B, S, S); S defaults to max(lengths).

    See chapters/03_masking.ipynb.
    """
    import torch

    from attnkit.attention import scaled_dot_product_attention
    from attnkit.masks import causal_mask, padding_mask

    if mode not in MASK_MODES:
        raise ValueError(f"Expected `mode` in {MASK_MODES} but got {mode!r}")
    B = len(lengths)
    S = max(lengths) if S is None else S
    keys_real = padding_mask(lengths, S)  # (B, S)
    mask = torch.ones(B, S, S, dtype=torch.bool)  # (B, L=S, S)
    if mode in ("padding", "both"):
        mask = mask & keys_real[:, None, :]  # (B, 1, S): the same keys hidden from every query
    if mode in ("causal", "both"):
        mask = mask & causal_mask(S)  # (S, S): query i sees keys 0..i
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(B, S, E, generator=generator)  # (B, S, E), padding positions hold random junk
    _, weights = scaled_dot_product_attention(x, x, x, attn_mask=mask)  # (B, S, S)
    return {"mask": mask, "weights": weights}


def mask_explorer(lengths: Sequence[int] = (5, 3), *, E: int = 8, seed: int = 0) -> ipywidgets.VBox:
    """Toggle padding and causal masks on a padded batch and shorten or lengthen each sequence.

    Controls: "mask" (none / padding / causal / both) and "length 0", "length 1", ... (one per sequence,
    0 .. max(lengths)). Masked cells are drawn dark grey; each panel is one sequence's (S, S) weights.

    Shapes: lengths (B,) -> widget showing B panels of (S, S), S = max(lengths).

    See chapters/03_masking.ipynb.
    """
    import ipywidgets as widgets

    from attnkit.plot import show_heads

    S = max(lengths)
    mode = widgets.ToggleButtons(description="mask", options=list(MASK_MODES), value="both")
    sliders = [widgets.IntSlider(description=f"length {b}", min=0, max=S, value=n) for b, n in enumerate(lengths)]

    def draw() -> tuple[Figure, str]:
        current = [s.value for s in sliders]
        data = mask_explorer_data(current, mode.value, S, E, seed)
        fig = _figure(1 + 3.2 * len(current), 3.6)
        show_heads(data["weights"], titles=[f"sequence {b}, length {n}" for b, n in enumerate(current)], fig=fig,
                   mask=data["mask"])  # (B, S, S): blocked cells in the course's "blocked" colour
        fig.suptitle(f"mask: {mode.value} (dark grey cells are masked out, weight 0)")
        return fig, f"mask {mode.value}, lengths {current}, allowed cells {int(data['mask'].sum())}"

    return _explorer([mode, *sliders], draw)


# ----------------------------------------------------------------------------------------------------
# Heads


def _as_stack(weights: torch.Tensor) -> torch.Tensor:
    """(layers, H, L, S) as is, (H, L, S) as one layer; anything else is an error."""
    import torch

    stack = torch.as_tensor(weights).detach()
    stack = stack[None] if stack.dim() == 3 else stack  # (H, L, S) -> (1, H, L, S)
    if stack.dim() != 4:
        raise ValueError(
            f"Expected `weights` shape (layers, H, L, S) or (H, L, S) but got {tuple(torch.as_tensor(weights).shape)}"
        )
    return stack


def heads_explorer_data(weights: torch.Tensor, layer: int, head: int) -> dict[str, torch.Tensor]:
    """One head's weights out of a stack of layers and heads, with the entropy of each query's row.

    Low entropy: the head focuses on few keys; high (up to log S): it spreads evenly.

    Shapes: weights (layers, H, L, S) or (H, L, S) -> dict: "weights" (L, S), "entropy" (L,) nats.

    See chapters/04_multi_head_attention.ipynb.
    """
    stack = _as_stack(weights)  # (layers, H, L, S)
    if not (0 <= layer < stack.shape[0] and 0 <= head < stack.shape[1]):
        raise ValueError(
            f"Expected `layer` in [0, {stack.shape[0]}) and `head` in [0, {stack.shape[1]}) but got {layer}, {head}"
        )
    one = stack[layer, head]  # (L, S)
    return {"weights": one, "entropy": _entropy(one)}


def heads_explorer(weights: torch.Tensor, labels: Sequence[object] | None = None) -> ipywidgets.VBox:
    """Step through the attention maps of every layer and head of a model.

    Controls: "layer" and "head" sliders (each only if there is more than one). Draws the chosen
    head's (L, S) weights, token-labelled.

    Shapes: weights (layers, H, L, S) or (H, L, S), labels S items (queries too when L == S) -> widget.

    See chapters/04_multi_head_attention.ipynb.
    """
    import ipywidgets as widgets

    from attnkit.plot import show_attention

    layers, H, L, S = _as_stack(weights).shape
    key_names = _labels(labels, S, "labels")
    query_names = key_names if L == S else None
    layer = widgets.IntSlider(description="layer", min=0, max=layers - 1, value=0)
    head = widgets.IntSlider(description="head", min=0, max=H - 1, value=0)
    controls = [slider for slider in (layer, head) if slider.max > 0]  # no slider with nothing to choose

    def draw() -> tuple[Figure, str]:
        data = heads_explorer_data(weights, layer.value, head.value)
        entropy = data["entropy"].mean().item()
        fig = _figure(1.5 + 0.45 * max(S, 6), 1.2 + 0.45 * max(L, 5))
        show_attention(data["weights"], query_names, key_names, ax=fig.subplots(),
                       title=f"layer {layer.value}, head {head.value}: mean entropy {entropy:.2f} nats")
        return fig, f"layer {layer.value}, head {head.value}, mean entropy {entropy:.3f}"

    return _explorer(controls, draw)


# ----------------------------------------------------------------------------------------------------
# Decoding with a KV cache


def decoding_explorer_data(
    tokens: Sequence[object],
    weights_per_step: Sequence[torch.Tensor],
    step: int,
    cache_lengths: Sequence[int] | None = None,
) -> dict[str, Any]:
    """What decoding step `step` looks like: the cache's tokens, the new token and its attention row.

    At step t the cache holds S_t keys and values, the new token's own included (it is the last one),
    so its row has S_t weights. "history" holds the rows of steps 0..t, head-averaged; NaN elsewhere.

    Shapes: weights_per_step[t] (S_t,) or (H, S_t), T steps; tokens at least max(S_t) items -> dict:
        "cache_tokens" S_t strings, "new_token" str, "step_tokens" T strings (each step's new token),
        "row" (S_t,) or (H, S_t), "history" (T, max S_t), "cache_length" S_t.

    See chapters/05_kv_cache.ipynb.
    """
    import torch

    lengths = [w.shape[-1] for w in weights_per_step] if cache_lengths is None else list(cache_lengths)
    if len(lengths) != len(weights_per_step):
        raise ValueError(f"Expected {len(weights_per_step)} `cache_lengths` (one per step) but got {len(lengths)}")
    for t, (w, n) in enumerate(zip(weights_per_step, lengths, strict=True)):
        if w.dim() not in (1, 2) or w.shape[-1] != n or not 1 <= n <= len(tokens):
            raise ValueError(
                f"Expected `weights_per_step[{t}]` shape (S_t,) or (H, S_t) with 1 <= S_t = {n} <= {len(tokens)} "
                f"tokens but got {tuple(w.shape)}"
            )
    if not 0 <= step < len(weights_per_step):
        raise ValueError(f"Expected `step` in [0, {len(weights_per_step)}) but got {step}")
    history = torch.full((len(lengths), max(lengths)), torch.nan)  # (T, max S_t): blank until decoded
    for t in range(step + 1):
        w = weights_per_step[t].detach().float()
        history[t, : lengths[t]] = w if w.dim() == 1 else w.mean(dim=0)  # (H, S_t) -> (S_t,)
    n = lengths[step]
    return {"cache_tokens": [str(tok) for tok in tokens[:n]], "new_token": str(tokens[n - 1]),
            "step_tokens": [str(tokens[m - 1]) for m in lengths], "row": weights_per_step[step].detach(),
            "history": history, "cache_length": n}


def decoding_explorer(
    tokens: Sequence[object],
    weights_per_step: Sequence[torch.Tensor],
    cache_lengths: Sequence[int] | None = None,
) -> ipywidgets.VBox:
    """Replay decoding with a KV cache: each step caches one more token, and the new token attends to them all.

    Controls: "step" slider, and a "play" button that advances it. Top: each step's row (rows of
    earlier steps stay, so the cache's growth draws a triangle); bottom: the current step's row.

    Shapes: weights_per_step[t] (S_t,) or (H, S_t) over the S_t tokens cached at step t -> widget.

    See chapters/05_kv_cache.ipynb.
    """
    import ipywidgets as widgets
    from matplotlib.patches import Rectangle

    from attnkit.plot import show_attention

    T = len(weights_per_step)
    decoding_explorer_data(tokens, weights_per_step, T - 1, cache_lengths)  # validate everything once
    step = widgets.IntSlider(description="step", min=0, max=T - 1, value=0)
    play = widgets.Play(description="play", min=0, max=T - 1, interval=700)
    widgets.jslink((play, "value"), (step, "value"))  # the browser advances the slider

    def draw() -> tuple[Figure, str]:
        t = step.value
        data = decoding_explorer_data(tokens, weights_per_step, t, cache_lengths)
        history, n = data["history"], data["cache_length"]  # (T, max S_t), S_t
        rows = data["row"] if data["row"].dim() == 2 else data["row"][None]  # (H, S_t) or (1, S_t)
        row_names = [f"head {h}" for h in range(len(rows))] if data["row"].dim() == 2 else [data["new_token"]]
        fig = _figure(max(6.0, 2.5 + 0.5 * history.shape[1]), 2.5 + 0.35 * (T + len(rows)))
        ax_history, ax_row = fig.subplots(2, 1, height_ratios=[T, max(len(rows), 1.5)])
        # Steps not decoded yet stay unnamed: their tokens would give the rest of the text away.
        step_labels = [f"{s}: {tok}" if s <= t else f"{s}: ..." for s, tok in enumerate(data["step_tokens"])]
        key_labels = [str(tok) if j < n else "" for j, tok in enumerate(tokens[: history.shape[1]])]
        show_attention(history, step_labels, key_labels, ax=ax_history, annotate=False,
                       title="each step's new token over its cache (head mean)")
        ax_history.add_patch(Rectangle((-0.5, t - 0.5), n, 1, fill=False, edgecolor="red", lw=1.5))
        ax_history.set_ylabel("step: new token")
        ax_history.set_aspect("auto")  # fill the width, so that long titles fit
        show_attention(rows, row_names, data["cache_tokens"], ax=ax_row,
                       title=f"step {t}: {data['new_token']!r} attends to {n} cached tokens")
        ax_row.set_aspect("auto")
        return fig, f"step {t}: cache {data['cache_tokens']}"

    return _explorer([step], draw, shown=[widgets.HBox([play, step])])


# ---------------------------------------------------------------------------------------------------
# Explorers moved out of chapter cells (issue 9): chapters 2-3 add below this line
# ---------------------------------------------------------------------------------------------------

__all__ += ["projection_explorer", "projection_explorer_data", "prefix_explorer", "prefix_explorer_data"]


def projection_explorer_data(
    x: torch.Tensor, seed: int = 0, gain: float = 1.0, D: int = 4
) -> dict[str, torch.Tensor]:
    """Self-attention weights of `x` under seeded random projections W_Q, W_K scaled by `gain`.

    A stand-in for "another point in training": the same inputs give a different map under other
    projections, and larger projections give larger scores, so sharper rows (gain 0: uniform rows).

    Shapes: x (L, E) -> dict: "W_q", "W_k" (D, E), "weights" (L, L).

    See chapters/02_self_attention.ipynb.
    """
    import math

    import torch

    from attnkit.attention import scaled_dot_product_attention

    x = torch.as_tensor(x, dtype=torch.float32).detach()
    if x.dim() != 2 or gain < 0 or D < 1:
        raise ValueError(f"Expected `x` (L, E), `gain` >= 0 and `D` >= 1 but got {tuple(x.shape)}, {gain}, {D}")
    E = x.shape[-1]
    generator = torch.Generator().manual_seed(seed)
    W_q, W_k = (torch.randn(D, E, generator=generator) / math.sqrt(E) * gain for _ in range(2))  # (D, E) each
    q, k = x @ W_q.T, x @ W_k.T  # (L, E) x (E, D) -> (L, D)
    _, weights = scaled_dot_product_attention(q, k, k)  # (L, L); the values do not matter here
    return {"W_q": W_q, "W_k": W_k, "weights": weights}


def projection_explorer(x: torch.Tensor, labels: Sequence[object] | None = None, D: int = 4) -> ipywidgets.VBox:
    """Re-seed the query and key projections and scale them: the same tokens, another attention map.

    Controls: "projection seed" (0 .. 20) and "W_q, W_k gain" (0 .. 4). Draws the (L, L) weights.

    Shapes: x (L, E), labels L items -> widget.

    See chapters/02_self_attention.ipynb.
    """
    import ipywidgets as widgets

    from attnkit.plot import show_attention

    names = _labels(labels, len(x), "labels")
    seed = widgets.IntSlider(description="projection seed", min=0, max=20, value=0)
    gain = widgets.FloatSlider(description="W_q, W_k gain", min=0.0, max=4.0, step=0.25, value=1.0)

    def draw() -> tuple[Figure, str]:
        A = projection_explorer_data(x, seed.value, gain.value, D)["weights"]  # (L, L)
        fig = _figure(5.2, 4.2)
        show_attention(A, names, names, ax=fig.add_subplot(), title=f"seed {seed.value}, gain {gain.value:g}")
        return fig, f"largest weight per row: {[round(w, 2) for w in A.max(-1).values.tolist()]}"

    return _explorer([seed, gain], draw)


def prefix_explorer_data(weights: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
    """The first n words of a causal pass: what the prefix of length n sees, and its newest word's row.

    Shapes: weights (L, L) causal weights -> dict: "weights" (n, n), "mask" (n, n) bool (True = may
        attend), "row" (n,) the weights of word n - 1 over the n words it may see.

    See chapters/03_masking.ipynb.
    """
    import torch

    from attnkit.masks import causal_mask

    weights = torch.as_tensor(weights).detach()
    if weights.dim() != 2 or weights.shape[0] != weights.shape[1] or not 1 <= n <= weights.shape[0]:
        raise ValueError(f"Expected `weights` (L, L) and `n` in [1, L] but got {tuple(weights.shape)}, {n}")
    return {"weights": weights[:n, :n], "mask": causal_mask(n), "row": weights[n - 1, :n]}


def prefix_explorer(weights: torch.Tensor, words: Sequence[object]) -> ipywidgets.VBox:
    """Slide through the growing prefixes of a sentence: each is a top-left corner of one causal pass.

    Control: "prefix length" (1 .. L). Left, the prefix's causal weights with blocked cells in the
    "blocked" colour and the newest word's row framed; right, that row as bars.

    Shapes: weights (L, L) causal weights, words L items -> widget.

    See chapters/03_masking.ipynb.
    """
    import ipywidgets as widgets
    from matplotlib.patches import Rectangle

    from attnkit.plot import show_attention

    names = _labels(words, len(weights), "words")
    slider = widgets.IntSlider(description="prefix length", min=1, max=len(names), value=2)

    def draw() -> tuple[Figure, str]:
        n = slider.value
        data = prefix_explorer_data(weights, n)
        row = data["row"].tolist()
        fig = _figure(10, 3.8)
        ax_map, ax_row = fig.subplots(1, 2)
        show_attention(data["weights"], names[:n], names[:n], ax=ax_map, mask=data["mask"],
                       title=f"prefix: {' '.join(names[:n])}")
        ax_map.add_patch(Rectangle((-0.5, n - 1.5), n, 1, fill=False, edgecolor="red", lw=2.5))
        ax_row.bar(range(n), row, color="tab:red")
        ax_row.set_xticks(range(n), labels=names[:n])
        ax_row.set(ylim=(0, 1.1), ylabel="weight", title=f"attention of {names[n - 1]!r} (the newest word)")
        for j, w in enumerate(row):
            ax_row.text(j, w + 0.02, f"{w:.0%}", ha="center")
        return fig, f"{' '.join(names[:n])}: " + ", ".join(f"{names[j]} {w:.0%}" for j, w in enumerate(row))

    return _explorer([slider], draw)



# ---------------------------------------------------------------------------------------------------
# Explorers moved out of chapter cells (issue 9): chapters 4-5 add below this line
# ---------------------------------------------------------------------------------------------------


CACHE_KINDS = ("full", "sliding window", "window + sink")


def cache_growth_explorer_data(
    step: int, cache: str = "full", *, prompt_len: int = 5, window: int = 4, sinks: int = 1, B: int = 1,
    H: int = 4, D: int = 12,
) -> dict[str, Any]:
    """What a layer's KV cache holds after the prefill of `prompt_len` tokens and `step` decode steps.

    "full" keeps every position; "sliding window" the last `window`; "window + sink" the first `sinks`
    positions and the last `window - sinks` (StreamingLLM's attention sinks). The newest query attends
    to every position held.

    Shapes: -> dict: "seen", "held", "new", "evicted" (position lists), "shape" (B, H, S, D), S = len(held).

    See chapters/05_kv_cache.ipynb.
    """
    from attnkit.diagrams import cache_positions

    if cache not in CACHE_KINDS:
        raise ValueError(f"Expected `cache` in {CACHE_KINDS} but got {cache!r}")
    kept = {"full": (None, 0), "sliding window": (window, 0), "window + sink": (window, sinks)}[cache]
    data: dict[str, Any] = dict(cache_positions(step, prompt_len, window=kept[0], sinks=kept[1]))
    data["shape"] = (B, H, len(data["held"]), D)
    return data


def cache_growth_explorer(
    tokens: Sequence[object] | None = None, *, prompt_len: int = 5, steps: int = 8, window: int = 4, sinks: int = 1,
    H: int = 4, D: int = 12,
) -> ipywidgets.VBox:
    """Step through decoding with a KV cache: after the prefill, each step writes one more key and value.

    Controls: "step" (0 = after the prefill, k = after k decode steps) and "cache" (full, sliding
    window of `window` positions, or `sinks` first positions + the last window - sinks). Draws the
    layer's K and V, H slabs deep, with the keys the newest query attends to.

    Shapes: tokens prompt_len + steps items (names of the positions) -> widget; cache (1, H, S, D).

    See chapters/05_kv_cache.ipynb.
    """
    import ipywidgets as widgets

    from attnkit.diagrams import cache_panel

    names = _labels(tokens, prompt_len + steps, "tokens")
    step = widgets.IntSlider(description="step", min=0, max=steps, value=0)
    kind = widgets.Dropdown(description="cache", options=list(CACHE_KINDS), value="full")

    def draw() -> tuple[Figure, str]:
        data = cache_growth_explorer_data(step.value, kind.value, prompt_len=prompt_len, window=window, sinks=sinks,
                                          H=H, D=D)
        col = 0.55
        width, height = 2.2 + (prompt_len + steps) * col + 1.6, 4.4
        fig = _figure(width * 0.85, height * 0.85)
        ax = fig.subplots()
        ax.set(xlim=(0, width), ylim=(0, height), aspect="equal")
        ax.axis("off")
        what = "prefill: the whole prompt" if step.value == 0 else f"decode step {step.value}: one new token"
        if data["evicted"]:
            what += f" ({len(data['evicted'])} evicted: dashed)"
        cache_panel(ax, 1.0, 0.1, data, H=H, D=D, labels=names, title=f"{kind.value} cache, {what}", col=col)
        held = [names[p] for p in data["held"]]
        return fig, f"step {step.value}, {kind.value}: shape {data['shape']}, newest query attends to {held}"

    return _explorer([step, kind], draw)


__all__ += ["cache_growth_explorer", "cache_growth_explorer_data"]


def show_head_origin(heads: Sequence[torch.Tensor], titles: Sequence[str]) -> Figure:
    """Side by side, each (L, D) head of a labelled tensor (entry 10 l + e = token l, feature e), coloured by token.

    Shows where a split put each number: in a right split every row of a head is one token (one colour).

    Shapes: heads: (L, D) tensors of labels -> a Figure with one panel each.

    See chapters/04_multi_head_attention.ipynb.
    """
    fig = _figure(3 * len(heads), 3)
    import numpy as np

    for ax, t, title in zip(fig.subplots(1, len(heads)), heads, titles, strict=True):
        t = np.asarray(t.detach().cpu() if hasattr(t, "detach") else t)  # (L, D) labels
        ax.imshow(t // 10, cmap="tab10", vmin=0, vmax=9)
        for i in range(t.shape[0]):
            for j in range(t.shape[1]):
                ax.text(j, i, f"{int(t[i, j]):02d}", ha="center", va="center", fontsize=9)
        ax.set(title=title, xlabel="feature within the head (D)", ylabel="row of the head (L)",
               xticks=range(t.shape[1]), yticks=range(t.shape[0]))
    fig.suptitle("colour = source token (label 23 = token 2, feature 3)")
    return fig


def decoding_rows(model: Any, prompt: torch.Tensor, max_new_tokens: int) -> tuple[torch.Tensor, list[list[Any]]]:
    """Greedy decoding with a KVCache, recording the newest token's attention over the cache in every layer.

    The rows are recomputed from each layer's input (a forward pre-hook) and its cached keys, since
    the model's fused attention never materialises its weights. Feed them to `decoding_explorer`.

    Shapes: prompt (1, L) -> tokens (1, L + max_new_tokens), rows[layer][step] (H, S_t), S_t = L + step.

    See chapters/05_kv_cache.ipynb.
    """
    import math

    import torch

    from attnkit.kv_cache import KVCache
    from attnkit.mha import split_heads

    c = model.config
    E, H = c.n_embd, c.n_head
    kv = KVCache(c.n_layer, 1, H, c.block_size, E // H)
    seen: dict[int, torch.Tensor] = {}
    hooks = [block.attn.register_forward_pre_hook(lambda module, args, i=i: seen.__setitem__(i, args[0]))
             for i, block in enumerate(model.transformer.h)]
    tokens, rows = prompt, [[] for _ in range(c.n_layer)]
    try:
        with torch.no_grad():
            logits = model(prompt, kv)  # prefill: (1, L, V)
            for step in range(max_new_tokens + 1):
                for layer, block in enumerate(model.transformer.h):
                    q = block.attn.c_attn(seen[layer][:, -1:]).split(E, dim=2)[0]  # (1, 1, E): newest query
                    keys = kv.keys[layer][:, :, :kv.seq_len]  # (1, H, S_t, D): the whole cache
                    scores = split_heads(q, H) @ keys.transpose(-2, -1) / math.sqrt(E // H)  # (1, H, 1, S_t)
                    rows[layer].append(torch.softmax(scores, dim=-1)[0, :, 0])  # (H, S_t)
                if step == max_new_tokens:
                    break
                next_token = logits[:, -1].argmax(dim=-1, keepdim=True)  # (1, 1)
                tokens = torch.cat([tokens, next_token], dim=1)  # (1, L + step + 1)
                logits = model(next_token, kv)  # one step: the cache grows by one position
    finally:
        for hook in hooks:
            hook.remove()
    return tokens, rows


__all__ += ["show_head_origin", "decoding_rows"]

# ---------------------------------------------------------------------------------------------------
# Explorers moved out of chapter 1
# ---------------------------------------------------------------------------------------------------

__all__ += ["training_explorer", "training_explorer_data"]


def training_explorer_data(
    snapshots: dict[int, torch.Tensor], step: int, example: int, where: torch.Tensor
) -> dict[str, Any]:
    """One probe example's attention at one training step, with its entropy and the weight on the right key.

    Shapes: snapshots {step: (N, S)} (N probe examples), where (N,) the matching key's position -> dict:
        "weights" (S,), "entropy" float (nats), "on_match" float, "match" int.

    See chapters/01b_classic_attention.ipynb.
    """
    import torch

    if step not in snapshots:
        raise ValueError(f"Expected `step` to be one of {sorted(snapshots)} but got {step!r}")
    weights = torch.as_tensor(snapshots[step]).detach()  # (N, S)
    if weights.dim() != 2 or not 0 <= example < weights.shape[0]:
        raise ValueError(f"Expected snapshots of shape (N, S) and `example` in [0, N) but got "
                         f"{tuple(weights.shape)}, {example!r}")
    row = weights[example]  # (S,)
    match = int(where[example])
    return {"weights": row, "entropy": _entropy(row).item(), "on_match": row[match].item(), "match": match}


def training_explorer(
    snapshots: dict[int, torch.Tensor],
    query_tokens: torch.Tensor,
    key_tokens: torch.Tensor,
    where: torch.Tensor,
) -> ipywidgets.VBox:
    """Scrub through training: one probe example's attention over its keys at a chosen step.

    Controls: "step" (the training steps in `snapshots`), "example" (the probe example). The bar of the key
    that matches the query is red.

    Shapes: snapshots {step: (N, S)}, query_tokens (N,), key_tokens (N, S), where (N,) -> widget.

    See chapters/01b_classic_attention.ipynb.
    """
    import ipywidgets as widgets

    steps = sorted(snapshots)
    N, S = key_tokens.shape
    step = widgets.SelectionSlider(description="step", options=steps, value=steps[0])
    example = widgets.IntSlider(description="example", min=0, max=N - 1, value=0)

    def draw() -> tuple[Figure, str]:
        data = training_explorer_data(snapshots, step.value, example.value, where)
        colours = ["tab:red" if j == data["match"] else "tab:blue" for j in range(S)]
        fig = _figure(7, 2.8)
        ax = fig.subplots()
        ax.bar(range(S), data["weights"].tolist(), color=colours)
        ax.set_xticks(range(S), labels=[f"k={t}" for t in key_tokens[example.value].tolist()])
        ax.set(ylim=(0, 1), ylabel="weight", title=f"query token {int(query_tokens[example.value])}, "
               f"step {step.value}: entropy {data['entropy']:.2f} nats (red: the matching key)")
        return fig, f"example {example.value}, step {step.value}: weight on the match {data['on_match']:.3f}"

    return _explorer([step, example], draw, shown=[widgets.HBox([step, example])])


# ---------------------------------------------------------------------------------------------------
# Chapter 6: positions and sampling (explorers for chapters/06_transformer_block.ipynb)
# ---------------------------------------------------------------------------------------------------

__all__ += ["rope_offset_explorer", "rope_offset_explorer_data", "sampling_explorer", "sampling_explorer_data"]


def rope_offset_explorer_data(offset: int, cache_bug: bool = False, *, S: int = 8, D: int = 16,
                              seed: int = 0) -> dict[str, Any]:
    """Scores of the newest query against S keys whose positions all start at `offset`: sinusoidal vs RoPE.

    Sinusoidal: position vectors are added to q and k, so the scores change when every position shifts.
    RoPE: q and k are rotated by their positions, so the scores depend only on the offsets and stay put;
    with `cache_bug` the query is rotated as position S - 1 (as if the cache started at 0) while the
    cached keys kept their true positions offset .. offset + S - 1, and the scores change.

    Shapes: -> dict: "sinusoidal", "sinusoidal_at_0", "rope", "rope_at_0" (S,) scores, "key_positions" (S,),
    "query_position" int (where the query was rotated).

    See chapters/06_transformer_block.ipynb.
    """
    import torch

    from attnkit.positions import apply_rope, sinusoidal_positions

    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"Expected `offset` to be a non-negative int but got {offset!r}")
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(1, 1, 1, D, generator=gen), torch.randn(1, 1, S, D, generator=gen)  # (1, 1, 1, D), (1, 1, S, D)
    pe = sinusoidal_positions(offset + S, D)[offset:]  # (S, D): the positions offset .. offset + S - 1
    pe_0 = sinusoidal_positions(S, D)  # (S, D): the positions 0 .. S - 1
    sinusoidal = ((q[0, 0] + 2 * pe[-1]) @ (k[0, 0] + 2 * pe).T)[0] / D ** 0.5  # (S,): positions added (x 2: visible)
    sinusoidal_at_0 = ((q[0, 0] + 2 * pe_0[-1]) @ (k[0, 0] + 2 * pe_0).T)[0] / D ** 0.5  # (S,)
    query_position = S - 1 if cache_bug else offset + S - 1
    rope = (apply_rope(q, query_position) @ apply_rope(k, offset).transpose(-2, -1))[0, 0, 0] / D ** 0.5  # (S,)
    rope_at_0 = (apply_rope(q, S - 1) @ apply_rope(k, 0).transpose(-2, -1))[0, 0, 0] / D ** 0.5  # (S,)
    return {"sinusoidal": sinusoidal, "sinusoidal_at_0": sinusoidal_at_0, "rope": rope, "rope_at_0": rope_at_0,
            "key_positions": torch.arange(offset, offset + S), "query_position": query_position}


def rope_offset_explorer(*, S: int = 8, D: int = 16, max_offset: int = 64) -> ipywidgets.VBox:
    """Slide every position by an offset and watch the newest query's scores: sinusoidal moves, RoPE does not.

    Controls: "offset" (where the sequence starts) and "cache bug" (the query rotated as if the cache
    started at position 0). The grey dots are each method's scores at offset 0.

    Shapes: one query (D,) against S keys (S, D) -> widget.

    See chapters/06_transformer_block.ipynb.
    """
    import ipywidgets as widgets

    offset = widgets.IntSlider(description="offset", min=0, max=max_offset, value=0)
    bug = widgets.Checkbox(description="cache bug", value=False)

    def draw() -> tuple[Figure, str]:
        data = rope_offset_explorer_data(offset.value, bug.value, S=S, D=D)
        fig = _figure(9, 3)
        ax_sin, ax_rope = fig.subplots(1, 2)
        keys = list(range(S))
        ax_sin.bar(keys, data["sinusoidal"].tolist(), color="tab:blue")
        ax_sin.plot(keys, data["sinusoidal_at_0"].tolist(), "o--", color="grey", label="at offset 0")
        ax_sin.legend(loc="lower left", fontsize=8)
        ax_sin.set(title=f"sinusoidal (added): keys at {offset.value}..{offset.value + S - 1}",
                   xlabel="key (j-th of the S keys)", ylabel="score q . k / sqrt(D)")
        ax_rope.bar(keys, data["rope"].tolist(), color="tab:red" if bug.value else "tab:green")
        ax_rope.plot(keys, data["rope_at_0"].tolist(), "o--", color="grey", label="RoPE at offset 0")
        where = f"query rotated as position {data['query_position']}"
        ax_rope.set(title=f"RoPE: {where}" + (" (bug!)" if bug.value else ""), xlabel="key (j-th of the S keys)")
        ax_rope.legend(loc="lower left", fontsize=8)
        change = float((data["rope"] - data["rope_at_0"]).abs().max())
        return fig, (f"offset {offset.value}, cache bug {bug.value}: RoPE scores moved by at most {change:.3f}; "
                     f"sinusoidal scores {[round(v, 2) for v in data['sinusoidal'].tolist()]}")

    return _explorer([offset, bug], draw, shown=[widgets.HBox([offset, bug])])


def sampling_explorer_data(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0,
                           top_p: float = 1.0) -> dict[str, Any]:
    """The distribution a sampler draws the next token from, after temperature, top-k (0 = off) and top-p.

    "tempered" is the distribution after the temperature alone, before the filters.

    Shapes: logits (V,) -> dict: "probs" (V,), "tempered" (V,), "kept" (V,) bool, "entropy" float (nats).

    See chapters/06_transformer_block.ipynb.
    """
    from attnkit.sampling import sampling_probs

    probs = sampling_probs(logits[None], temperature, top_k or None, top_p if top_p < 1.0 else None)[0]  # (V,)
    tempered = sampling_probs(logits[None], temperature)[0]  # (V,)
    return {"probs": probs, "tempered": tempered, "kept": probs > 0, "entropy": float(_entropy(probs))}


def sampling_explorer(logits: torch.Tensor, labels: Sequence[str]) -> ipywidgets.VBox:
    """Move temperature, top-k and top-p and watch which next tokens stay possible, and how likely.

    Controls: "temperature", "top-k" (0 = off), "top-p" (1 = off). Bars of dropped tokens vanish.

    Shapes: logits (V,), labels V strings -> widget.

    See chapters/06_transformer_block.ipynb.
    """
    import ipywidgets as widgets

    names = _labels(labels, logits.shape[-1], "labels")
    temperature = widgets.FloatSlider(description="temperature", min=0.1, max=3.0, step=0.1, value=1.0)
    top_k = widgets.IntSlider(description="top-k", min=0, max=len(names), value=0)
    top_p = widgets.FloatSlider(description="top-p", min=0.05, max=1.0, step=0.05, value=1.0)

    def draw() -> tuple[Figure, str]:
        data = sampling_explorer_data(logits, temperature.value, top_k.value, top_p.value)
        fig = _figure(9, 2.8)
        ax = fig.subplots()
        ax.bar(range(len(names)), data["tempered"].tolist(), color="none", edgecolor="grey", ls="--",
               label="after temperature only")
        ax.bar(range(len(names)), data["probs"].tolist(), color="tab:blue", label="what is sampled from")
        ax.legend(loc="upper right", fontsize=8)
        ax.set_xticks(range(len(names)), labels=names)
        ax.set(ylim=(0, 1), ylabel="probability", title=f"T = {temperature.value:.1f}, top-k = {top_k.value or 'off'}, "
               f"top-p = {top_p.value:.2f}: {int(data['kept'].sum())} tokens possible, entropy "
               f"{data['entropy']:.2f} nats")
        kept = [n for n, k in zip(names, data["kept"].tolist(), strict=True) if k]
        return fig, f"T {temperature.value:.1f}, top-k {top_k.value}, top-p {top_p.value:.2f}: possible {kept}"

    return _explorer([temperature, top_k, top_p], draw, shown=[widgets.HBox([temperature, top_k, top_p])])


# ---------------------------------------------------------------------------------------------------
# Chapter 7: the online softmax, tile by tile (explorer for chapters/07_efficient_attention.ipynb)
# ---------------------------------------------------------------------------------------------------

__all__ += ["online_softmax_explorer", "online_softmax_explorer_data"]


def online_softmax_explorer_data(tile: int, block_size: int = 4, *, S: int = 16, seed: int = 0) -> dict[str, Any]:
    """The online softmax of one row of S scores after `tile` tiles of `block_size` keys (1 = the first).

    "steps" are attnkit.tile_steps' records up to this tile, "step" the current one (its max before and
    after, the correction exp(max_before - max_after), the rescaled sum, the tile's own sum, the new sum);
    "softmax" the whole row's softmax, which the weights reach at the last tile. The scores drift upward,
    so the max moves (and the sum is corrected) several times.

    Shapes: -> dict: "scores" (S,), "softmax" (S,), "weights" (S,), "n_tiles" int, "steps" list, "step" dict.

    See chapters/07_efficient_attention.ipynb.
    """
    import torch

    from attnkit.tiled_attention import tile_steps

    if not isinstance(block_size, int) or not 1 <= block_size <= S:
        raise ValueError(f"Expected `block_size` to be an int in [1, {S}] but got {block_size!r}")
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(S, generator=gen) * 1.2 + torch.linspace(0, 2.5, S)  # (S,): rising, so the max moves
    steps = tile_steps(scores, block_size)
    if not isinstance(tile, int) or not 1 <= tile <= len(steps):
        raise ValueError(f"Expected `tile` to be an int in [1, {len(steps)}] but got {tile!r}")
    return {"scores": scores, "softmax": torch.softmax(scores, dim=-1), "weights": steps[tile - 1]["weights"],
            "n_tiles": len(steps), "steps": steps[:tile], "step": steps[tile - 1]}


def online_softmax_explorer(*, S: int = 16, seed: int = 0) -> ipywidgets.VBox:
    """Step through the tiles of one row: the running max jumps, and the running sum is corrected by e^(old - new).

    Controls: "tile" (how many tiles have been read) and "block size" (keys per tile). Left: the scores,
    read tiles coloured, the running max before (dashed) and after (solid). Middle: the running sum at
    each step, split into the rescaled old sum and this tile's share. Right: the weights so far against
    the final softmax (dots).

    Shapes: one row of S scores -> widget.

    See chapters/07_efficient_attention.ipynb.
    """
    import ipywidgets as widgets

    block = widgets.IntSlider(description="block size", min=2, max=8, value=4)
    tile = widgets.IntSlider(description="tile", min=1, max=-(-S // block.value), value=1)

    def on_block(change: dict) -> None:
        was_last = tile.value >= -(-S // change["old"])  # at the last tile: stay there, the final numbers
        tile.max = -(-S // block.value)  # clamps tile.value too
        if was_last:
            tile.value = tile.max

    block.observe(on_block, names="value")  # registered first: runs before the redraw

    def draw() -> tuple[Figure, str]:
        n_tiles = -(-S // block.value)
        data = online_softmax_explorer_data(min(tile.value, n_tiles), block.value, S=S, seed=seed)
        step, steps = data["step"], data["steps"]
        every = online_softmax_explorer_data(n_tiles, block.value, S=S, seed=seed)["steps"]  # fixed axes
        fig = _figure(12, 3.2)
        ax_s, ax_l, ax_w = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.3, 1, 1.3]})
        seen = int(step["block"][-1]) + 1
        colors = ["tab:blue" if j < int(step["block"][0]) else "tab:orange" if j < seen else "lightgrey"
                  for j in range(S)]
        ax_s.bar(range(S), data["scores"].tolist(), color=colors)
        for edge in range(0, S + 1, block.value):
            ax_s.axvline(edge - 0.5, color="grey", lw=0.5)
        if step["max_before"].isfinite():
            before = float(step["max_before"])
            ax_s.axhline(before, color="grey", ls="--", label=f"max before {before:.2f}")
        ax_s.axhline(float(step["max_after"]), color="tab:red", label=f"max after {float(step['max_after']):.2f}")
        ax_s.legend(loc="upper left", fontsize=7)
        ax_s.set(title=f"scores: tile {tile.value} of {data['n_tiles']} (orange)", xlabel="key", ylabel="score",
                 xticks=list(range(0, S, 2)))  # keys are whole numbers
        xs = range(1, len(steps) + 1)
        rescaled = [float(s["sum_rescaled"]) for s in steps]
        shares = [float(s["tile_sum"]) for s in steps]
        ax_l.bar(xs, rescaled, color="tab:blue", label="old sum x e^(old max - new max)")
        ax_l.bar(xs, shares, bottom=rescaled, color="tab:orange", label="this tile's sum")
        ax_l.plot(xs, [float(s["sum_before"]) for s in steps], "k_", ms=14, label="old sum before the correction")
        top = max(max(float(s["sum_after"]), float(s["sum_before"])) for s in every)  # the same at every step
        ax_l.set(title="running sum l, step by step", xlabel="tile", ylabel="l", xticks=list(range(1, n_tiles + 1)),
                 xlim=(0.4, n_tiles + 0.6), ylim=(0, top * 1.7))
        ax_l.legend(loc="upper left", fontsize=7)
        ax_w.bar(range(S), data["weights"].tolist(), color=colors)
        ax_w.plot(range(S), data["softmax"].tolist(), "k.", label="final softmax")
        highest = max(float(data["softmax"].max()), max(float(s["weights"].max()) for s in every))
        ax_w.set(title="weights so far: exp(s - m) / l", xlabel="key", ylabel="weight", ylim=(0, 1.3 * highest),
                 xticks=list(range(0, S, 2)))
        ax_w.legend(loc="upper left", fontsize=7)
        return fig, (f"tile {tile.value}/{data['n_tiles']} (block size {block.value}): max "
                     f"{float(step['max_before']):.2f} -> {float(step['max_after']):.2f}; sum "
                     f"{float(step['sum_before']):.3f} x {float(step['correction']):.3f} = "
                     f"{float(step['sum_rescaled']):.3f}, + {float(step['tile_sum']):.3f} = "
                     f"{float(step['sum_after']):.3f}")

    return _explorer([block, tile], draw, shown=[widgets.HBox([tile, block])])
# Chapter 8: serving (explorers for chapters/08_serving.ipynb)
# ---------------------------------------------------------------------------------------------------

__all__ += ["paging_explorer", "paging_explorer_data", "serving_schedule"]

_PAGING_POSITIONS, _PAGING_BATCH = 64, 4  # the explorer's pool (in positions, whatever the block size), batch limit


def serving_schedule(n_requests: int = 8, seed: int = 0) -> list[Any]:
    """The explorer's requests: seeded arrivals (steps 0..11), prompts of 3..14 tokens, 3..12 new tokens each.

    Shapes: -> list of `attnkit.Request`, prompts (L_i,) of ids < 32.

    See chapters/08_serving.ipynb.
    """
    import torch

    from attnkit.batching import Request

    gen = torch.Generator().manual_seed(seed)
    arrivals = sorted(torch.randint(0, 12, (n_requests,), generator=gen).tolist())
    lengths = torch.randint(3, 15, (n_requests,), generator=gen).tolist()
    new = torch.randint(3, 13, (n_requests,), generator=gen).tolist()
    return [Request(a, torch.randint(0, 32, (n,), generator=gen), m) for a, n, m in zip(arrivals, lengths, new,
                                                                                         strict=True)]


_SERVE_LOGS: dict[int, Any] = {}


def _serve_log(block_size: int) -> Any:
    """serve_continuous on the fixed schedule with a tiny seeded GPT, computed once per block size."""
    if block_size not in _SERVE_LOGS:
        import torch

        from attnkit.batching import serve_continuous
        from attnkit.gpt import GPT, GPTConfig

        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = GPT(GPTConfig(vocab_size=32, block_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
        _SERVE_LOGS[block_size] = serve_continuous(model, serving_schedule(), max_batch=_PAGING_BATCH,
                                                   num_blocks=_PAGING_POSITIONS // block_size,
                                                   block_size=block_size)
    return _SERVE_LOGS[block_size]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def paging_explorer_data(step: int, block_size: int = 4) -> dict[str, Any]:
    """The paged cache of the continuous-batching run after scheduler step `step`: who holds which block.

    "owner" gives each physical block's request (-1 = free); "events" says who arrived, joined, finished;
    "free_history" is the free-block count after every step; "used" / "allocated" count positions held and
    block slots taken (their difference is at most block_size - 1 per running request).

    Shapes: -> dict: "owner" (num_blocks,) int, "tables" {request: block ids}, "lengths", "running",
    "waiting", "events" list of str, "free_history" (n_steps,), "n_steps", "used", "allocated".

    See chapters/08_serving.ipynb.
    """
    import torch

    log = _serve_log(block_size)
    if not isinstance(step, int) or not 0 <= step < len(log.steps):
        raise ValueError(f"Expected `step` in [0, {len(log.steps) - 1}] but got {step!r}")
    s = log.steps[step]
    owner = torch.full((log.num_blocks,), -1)
    for request, table in s.tables.items():
        owner[table] = request
    arrived = [i for i, r in enumerate(serving_schedule()) if r.arrival == step]
    events = [f"request {i} arrives" for i in arrived]
    events += [f"request {i} joins: {_plural(len(s.tables[i]), 'block')}" if i in s.tables else
               f"request {i} joins and finishes" for i in s.admitted]
    events += [f"request {i} finishes: its blocks are freed" for i in s.finished]
    if s.wait is not None:  # why the first waiting request did not join at this step
        w = s.wait
        events.append(f"request {w.request} waits: " + ("the batch is full" if w.seats_full else
                      f"needs {_plural(w.blocks_needed, 'block')}, {w.blocks_available} free after reserving "
                      "the running requests' growth"))
    used = sum(s.lengths.values())
    return {"owner": owner, "tables": s.tables, "lengths": s.lengths, "running": s.running, "waiting": s.waiting,
            "events": events, "free_history": torch.tensor([t.free_blocks for t in log.steps]),
            "n_steps": len(log.steps), "used": used, "allocated": block_size * sum(map(len, s.tables.values()))}


def paging_explorer() -> ipywidgets.VBox:
    """Step through a continuous-batching run and watch the paged cache's blocks being allocated and freed.

    Controls: "step" (scheduler step of a fixed seeded schedule of 8 requests; its range follows the run of
    the chosen block size) and "block size" (positions per block; the pool holds 64 positions, so 32, 16 or
    8 blocks). Left: the pool's blocks coloured by the request holding them, after the step's frees;
    right: free blocks over time; above them, what happened at the step.

    Shapes: -> widget.

    See chapters/08_serving.ipynb.
    """
    import ipywidgets as widgets
    import matplotlib as mpl

    sizes = [2, 4, 8]
    steps = widgets.IntSlider(description="step", min=0, max=len(_serve_log(4).steps) - 1, value=0)
    block_size = widgets.Dropdown(description="block size", options=sizes, value=4)
    events = widgets.HTML()  # what happened at the step, at normal size and wrapped
    colors = mpl.colormaps["tab10"]

    def follow_block_size(change: dict) -> None:  # registered before the redraw: the slider's range first
        steps.max = len(_serve_log(change["new"]).steps) - 1  # clamps the value if the run is shorter

    block_size.observe(follow_block_size, names="value")

    def draw() -> tuple[Figure, str]:
        n_steps = len(_serve_log(block_size.value).steps)
        step = min(steps.value, n_steps - 1)
        data = paging_explorer_data(step, block_size.value)
        fig = _figure(10, 3.4)
        ax_pool, ax_free = fig.subplots(1, 2, width_ratios=[1.5, 1])
        cols = 8
        for b, who in enumerate(data["owner"].tolist()):
            r, c = divmod(b, cols)
            face = "#eeeeee" if who < 0 else colors(who % 10)
            ax_pool.add_patch(mpl.patches.Rectangle((c, -r), 0.92, 0.92, facecolor=face, edgecolor="#444444"))
            ax_pool.text(c + 0.46, -r + 0.46, "free" if who < 0 else f"r{who}", ha="center", va="center",
                         fontsize=8, color="#222222")
        rows = -(-len(data["owner"]) // cols)
        lines = [f"r{i}: {data['lengths'][i]} positions, block table {t}" for i, t in data["tables"].items()]
        for n, line in enumerate(lines):
            ax_pool.text(0, -rows + 0.5 - 0.55 * n, line, fontsize=8, va="top", family="monospace")
        ax_pool.set(xlim=(-0.1, cols), ylim=(-rows - 0.55 * max(len(lines), 1), 1.0), aspect="equal",
                    title=f"after step {step}: {len(data['running'])} running, {len(data['waiting'])} waiting; "
                          f"{data['used']} positions in {data['allocated']} slots")
        ax_pool.axis("off")
        history = data["free_history"]
        ax_free.plot(range(len(history)), history.tolist(), color="tab:blue")
        ax_free.axvline(step, color="tab:red", ls="--")
        ax_free.set(xlabel="scheduler step", ylabel="free blocks", ylim=(0, len(data["owner"]) + 1),
                    title="free blocks after each step", xlim=(0, max(n_steps - 1, 1)))
        fig.tight_layout()
        said = "; ".join(data["events"]) or "every running request decodes one token"
        events.value = f"<div style='white-space: normal'><b>step {step}</b>: {said}</div>"
        tables = ", ".join(f"r{i}: {t}" for i, t in data["tables"].items())
        return fig, f"step {step}, block size {block_size.value}: tables {tables or 'none'}; events {data['events']}"

    return _explorer([steps, block_size], draw, shown=[widgets.HBox([steps, block_size]), events])

