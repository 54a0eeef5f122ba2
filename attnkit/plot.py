"""Pictures of attention: heatmaps of weights with token labels, one panel per head.

Every function takes torch tensors or numpy arrays, draws into the Axes/Figure you pass (or a new
pyplot one), returns it and never calls `plt.show()`, so a notebook shows it once and you may
`plt.close(fig)` whenever you like. Rows are queries (L), columns are keys (S).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from attnkit._validate import shape_str
from attnkit.diagrams import COLORS
from attnkit.scoring import softmax_saturation

__all__ = ["show_attention", "show_heads", "show_mask", "show_matrix", "plot_softmax_saturation"]

ANNOTATE_MAX = 12  # annotate each cell with its value when L and S are both at most this


def _as_array(name: str, x: object) -> np.ndarray:
    """A float numpy copy of a tensor (detached, on the CPU) or of anything array-like."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    try:
        return np.array(x, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            f"Expected `{name}` to be a torch.Tensor or a numpy array but got {type(x).__name__}"
        ) from None


def _expect_labels(name: str, labels: Sequence[object] | None, n: int, what: str) -> list[str]:
    if labels is None:
        return [str(i) for i in range(n)]
    if len(labels) != n:
        raise ValueError(f"Expected {n} `{name}` (one per {what}) but got {len(labels)}")
    return [str(label) for label in labels]


def _color_range(w: np.ndarray, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    """Weights in [0, 1] get the fixed range 0..1 so that pictures compare; anything else its own range."""
    finite = w[np.isfinite(w)]
    if finite.size and finite.min() >= 0 and finite.max() <= 1:
        lo, hi = 0.0, 1.0
    else:
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return (lo if vmin is None else vmin), (hi if vmax is None else vmax)


def _allowed(mask: torch.Tensor | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A boolean mask (True = may attend) as a numpy bool array broadcast to `shape`."""
    m = _as_array("mask", mask).astype(bool)
    try:
        return np.broadcast_to(m, shape)
    except ValueError:
        raise ValueError(
            f"Expected `mask` to broadcast to the weights' shape {shape_str(shape)} but got {shape_str(m.shape)}"
        ) from None


def show_attention(
    weights: torch.Tensor | np.ndarray,
    query_labels: Sequence[object] | None = None,
    key_labels: Sequence[object] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    annotate: bool | None = None,
    cmap: str = "viridis",
    *,
    colorbar: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    mask: torch.Tensor | np.ndarray | None = None,
) -> Axes:
    """Heatmap of one attention matrix, queries down the side and keys along the bottom, labelled by token.

    Values are written in the cells when the matrix is small (`annotate=None`: L, S <= 12). The colour
    range is 0..1 for weights (so pictures compare) unless `vmin`/`vmax` say otherwise; NaN cells are blank.
    With a boolean `mask` (True = may attend) the blocked cells are drawn in the course's "blocked" colour.

    Shapes: weights (L, S), query_labels L items, key_labels S items, mask broadcastable to (L, S)
        -> the Axes drawn on.

    See chapters/01_attention.ipynb.
    """
    w = _as_array("weights", weights)
    if w.ndim != 2:
        raise ValueError(
            f"Expected `weights` shape to be (L, S) but got {shape_str(w.shape)}; "
            "use show_heads for (H, L, S) or (layers, H, L, S)"
        )
    L, S = w.shape
    if mask is not None:
        w = np.where(_allowed(mask, w.shape), w, np.nan)  # (L, S): NaN where blocked ...
        cmap = plt.get_cmap(cmap).with_extremes(bad=COLORS["blocked"])  # ... drawn in the "blocked" colour
    ylabels = _expect_labels("query_labels", query_labels, L, "query")
    xlabels = _expect_labels("key_labels", key_labels, S, "key")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 + 0.5 * max(S, 4), 0.8 + 0.5 * max(L, 3)))
    lo, hi = _color_range(w, vmin, vmax)

    image = ax.imshow(w, cmap=cmap, vmin=lo, vmax=hi)
    ax.set_xticks(range(S), labels=xlabels, rotation=90 if max(map(len, xlabels), default=0) > 2 else 0)
    ax.set_yticks(range(L), labels=ylabels)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if title is not None:
        ax.set_title(title)
    if annotate is None:
        annotate = L <= ANNOTATE_MAX and S <= ANNOTATE_MAX
    if annotate:
        for i in range(L):
            for j in range(S):
                if np.isfinite(w[i, j]):
                    r, g, b, _ = image.cmap(image.norm(w[i, j]))
                    dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # perceived brightness of the cell
                    ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if dark else "black")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def show_heads(
    weights: torch.Tensor | np.ndarray,
    query_labels: Sequence[object] | None = None,
    key_labels: Sequence[object] | None = None,
    titles: Sequence[str] | None = None,
    *,
    annotate: bool | None = None,
    cmap: str = "viridis",
    fig: Figure | None = None,
    mask: torch.Tensor | np.ndarray | None = None,
) -> Figure:
    """A grid of heatmaps, one row per layer and one column per head, sharing one colour scale.

    Comparing heads side by side shows that each learns its own pattern; `titles` (one per panel,
    row by row) default to "head h" or "layer l, head h". Only the outer panels carry tick labels.
    A boolean `mask` (True = may attend) paints the cells it blocks in the "blocked" colour, as in show_mask.

    Shapes: weights (H, L, S) or (layers, H, L, S), query_labels L items, key_labels S items,
        mask broadcastable to weights -> the Figure drawn on.

    See chapters/01_attention.ipynb.
    """
    w = _as_array("weights", weights)
    if w.ndim == 3:
        w = w[None]  # (H, L, S) -> (1, H, L, S)
    if w.ndim != 4:
        raise ValueError(
            f"Expected `weights` shape to be (H, L, S) or (layers, H, L, S) but got {shape_str(w.shape)}"
        )
    allowed = None if mask is None else _allowed(mask, w.shape)  # (layers, H, L, S)
    layers, H, L, S = w.shape
    if titles is None:
        titles = [f"head {h}" if layers == 1 else f"layer {l}, head {h}" for l in range(layers) for h in range(H)]
    elif len(titles) != layers * H:
        raise ValueError(f"Expected {layers * H} `titles` (one per panel, layers x heads) but got {len(titles)}")
    if fig is None:
        fig = plt.figure(figsize=(0.6 + H * (0.8 + 0.35 * max(S, 4)), layers * (0.8 + 0.35 * max(L, 4))))
    axes = fig.subplots(layers, H, squeeze=False)  # (layers, H) grid of Axes
    lo, hi = _color_range(w if allowed is None else np.where(allowed, w, np.nan), None, None)
    for l in range(layers):
        for h in range(H):
            show_attention(w[l, h], query_labels, key_labels, ax=axes[l, h], title=titles[l * H + h],
                           annotate=annotate, cmap=cmap, colorbar=False, vmin=lo, vmax=hi,
                           mask=None if allowed is None else allowed[l, h])
            axes[l, h].label_outer()
    fig.colorbar(axes[0, 0].images[0], ax=axes, shrink=0.8)
    return fig


def show_mask(
    mask: torch.Tensor | np.ndarray,
    query_labels: Sequence[object] | None = None,
    key_labels: Sequence[object] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    *,
    legend: bool = True,
) -> Axes:
    """A boolean mask in the course's two mask colours: "may attend" (True) pale, "blocked" (False) dark.

    The same colours as every diagram (`attnkit.diagrams.COLORS`), with a legend instead of a colour bar.

    Shapes: mask (L, S) bool, query_labels L items, key_labels S items -> the Axes drawn on.

    See chapters/03_masking.ipynb.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    m = _as_array("mask", mask)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 + 0.5 * max(m.shape[-1], 4), 0.8 + 0.5 * max(m.shape[0], 3)))
    colors = ListedColormap([COLORS["blocked"], COLORS["allowed"]])  # 0 = blocked, 1 = may attend
    show_attention(m, query_labels, key_labels, ax=ax, title=title, annotate=False, cmap=colors,
                   colorbar=False, vmin=0, vmax=1)
    if legend:
        ax.legend(handles=[Patch(facecolor=COLORS["allowed"], edgecolor="black", label="may attend (True)"),
                           Patch(facecolor=COLORS["blocked"], edgecolor="black", label="blocked (False)")],
                  loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    return ax


def show_matrix(
    values: torch.Tensor | np.ndarray,
    row_labels: Sequence[object] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    *,
    col_label: str = "dimension",
    limit: float | None = None,
) -> Axes:
    """A small matrix that is not attention weights (vectors, projections), each cell annotated; red > 0 > blue.

    The colour scale runs -limit .. limit (default: the largest |value|): pass one `limit` to several
    panels to compare them.

    Shapes: values (N, M), row_labels N items -> the Axes drawn on.

    See chapters/02_self_attention.ipynb.
    """
    m = _as_array("values", values)
    if m.ndim != 2:
        raise ValueError(f"Expected `values` shape to be (N, M) but got {shape_str(m.shape)}")
    labels = _expect_labels("row_labels", row_labels, m.shape[0], "row")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 + 0.5 * m.shape[1], 0.8 + 0.5 * m.shape[0]))
    limit = limit or float(np.abs(m).max(initial=0.0)) or 1.0
    ax.imshow(m, cmap="RdBu_r", vmin=-limit, vmax=limit)
    for (i, j), value in np.ndenumerate(m):
        ax.text(j, i, f"{value:g}", ha="center", va="center", fontsize=9,
                color="white" if abs(value) > 0.6 * limit else "black")
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.set_xticks(range(m.shape[1]))
    ax.set(title=title, xlabel=col_label)
    return ax


def plot_softmax_saturation(
    d_ks: Sequence[int] = (1, 4, 16, 64, 256, 1024),
    S: int = 16,
    num_samples: int = 256,
    generator: torch.Generator | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Plot why dot products are scaled: unscaled, the softmax turns one-hot and its gradient shrinks as d_k grows.

    Left: the mean largest weight of a row; right: the mean size of the softmax Jacobian, which scales
    every gradient flowing back to the scores. The numbers come from `attnkit.softmax_saturation`.

    Shapes: d_ks (K,) -> the Figure drawn on (two panels, d_k on a log axis).

    See chapters/01_attention.ipynb.
    """
    stats = softmax_saturation(d_ks, S=S, num_samples=num_samples, generator=generator)
    if fig is None:
        fig = plt.figure(figsize=(9, 3.2))
    ax_max, ax_grad = fig.subplots(1, 2)
    for kind, style in (("unscaled", "o-"), ("scaled", "s--")):
        label = "q.k" if kind == "unscaled" else "q.k / sqrt(d_k)"
        ax_max.plot(stats["d_k"], stats[f"max_weight_{kind}"], style, label=label)
        ax_grad.plot(stats["d_k"], stats[f"grad_norm_{kind}"], style, label=label)
    ax_max.axhline(1.0 / S, color="grey", lw=0.8, ls=":", label=f"uniform 1/S = {1 / S:.3f}")
    ax_max.set(xscale="log", xlabel="d_k", ylabel="largest weight in a row", ylim=(0, 1.05),
               title="softmax saturates")
    ax_grad.set(xscale="log", xlabel="d_k", ylabel="|| d softmax / d scores ||", ylim=(0, None),
                title="its gradient shrinks at large d_k")
    ax_max.legend(fontsize=8)
    ax_grad.legend(fontsize=8)
    fig.tight_layout()
    return fig
