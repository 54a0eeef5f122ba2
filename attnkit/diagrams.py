"""Schematic diagrams of what flows where, drawn from code so they stay in step with the chapters' numbers.

Each public function draws one picture on a matplotlib figure and returns it; `@figure(name)` also
registers it, so that `python -m attnkit.diagrams` writes every registered picture to
chapters/figures/<name>.svg, the files the chapters' markdown links to (they show on GitHub, where
no outputs are committed). tests/test_diagrams.py checks that the committed files are current.
See chapters/01_attention.ipynb.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["COLORS"]  # and each diagram function (registered with @figure), added below

FIGURES_DIR = Path(__file__).resolve().parents[1] / "chapters" / "figures"

# One colour per role, used by every diagram (and by attnkit.plot for masks): a learner who has seen
# a query in orange sees every query in orange.
COLORS = {
    "query": "#f28e2b",  # orange
    "key": "#4e79a7",  # blue
    "value": "#59a14f",  # green
    "score": "#edc948",  # yellow
    "weight": "#b07aa1",  # purple
    "output": "#e15759",  # red
    "allowed": "#d4e8d0",  # a mask's "may attend": pale green
    "blocked": "#555555",  # a mask's "blocked": dark grey
    "neutral": "#f0f0f0",
    "text": "#222222",
}

FIGURES: dict[str, Callable[[], Any]] = {}  # name -> function drawing it with the chapter's numbers


def figure(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a diagram function (called with no arguments) as chapters/figures/<name>.svg."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in FIGURES:
            raise ValueError(f"figure {name!r} is registered twice")
        FIGURES[name] = fn
        return fn

    return register


# ---------------------------------------------------------------------------------------------------
# Drawing primitives shared by every diagram
# ---------------------------------------------------------------------------------------------------


def canvas(width: float, height: float, *, figsize: tuple[float, float] | None = None):
    """A blank figure whose data coordinates run 0..width and 0..height (y up), no axes drawn."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize or (width * 0.9, height * 0.9))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def box(ax, x: float, y: float, w: float, h: float, text: str = "", *, color: str = COLORS["neutral"],
        fontsize: float = 10, **kwargs: Any):
    """A rounded box with centred text; (x, y) is its lower-left corner."""
    from matplotlib.patches import FancyBboxPatch

    patch = FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", facecolor=color,
                           edgecolor=COLORS["text"], linewidth=1.0, **kwargs)
    ax.add_patch(patch)
    if text:
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, color=COLORS["text"])
    return patch


def arrow(ax, start: tuple[float, float], end: tuple[float, float], text: str = "", *, fontsize: float = 9,
          color: str = COLORS["text"]):
    """An arrow from `start` to `end`, with an optional label at its middle."""
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.2,
                                                      "shrinkA": 2, "shrinkB": 2})
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12, text, ha="center", va="bottom",
                fontsize=fontsize, color=color)


def grid(ax, x: float, y: float, values: Sequence[Sequence[Any]], *, cell: float = 0.5,
         color: str | Sequence[Sequence[str]] = COLORS["neutral"], fmt: str = "{}", label: str = "",
         fontsize: float = 8):
    """A matrix as a grid of cells (row 0 on top), each showing its value; (x, y) is the lower-left corner."""
    from matplotlib.patches import Rectangle

    rows = len(values)
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            fill = color if isinstance(color, str) else color[i][j]
            cx, cy = x + j * cell, y + (rows - 1 - i) * cell
            ax.add_patch(Rectangle((cx, cy), cell, cell, facecolor=fill, edgecolor=COLORS["text"], linewidth=0.6))
            if value is not None and value != "":
                ax.text(cx + cell / 2, cy + cell / 2, fmt.format(value), ha="center", va="center",
                        fontsize=fontsize, color=COLORS["text"])
    if label:
        ax.text(x + len(values[0]) * cell / 2, y + rows * cell + 0.1, label, ha="center", va="bottom",
                fontsize=fontsize + 1, color=COLORS["text"])


def svg(fig) -> str:
    """The figure as SVG text, byte-for-byte reproducible (no date, fixed ids)."""
    import matplotlib as mpl

    buffer = io.StringIO()
    with mpl.rc_context({"svg.hashsalt": "attnkit", "svg.fonttype": "path"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()


def write_figures(folder: Path = FIGURES_DIR, *, check: bool = False) -> list[Path]:
    """Draw every registered figure into `folder`/<name>.svg; return the files written (or, with
    `check`, the stale ones, writing nothing)."""
    import matplotlib.pyplot as plt

    folder = Path(folder)
    changed = []
    for name, draw in sorted(FIGURES.items()):
        fig = draw()
        text = svg(fig)
        plt.close(fig)
        path = folder / f"{name}.svg"
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            changed.append(path)
            if not check:
                folder.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    return changed


# ---------------------------------------------------------------------------------------------------
# Chapter 1: attention in four steps
# ---------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------
# Chapter 2: self-attention (x -> q, k, v)
# ---------------------------------------------------------------------------------------------------

__all__ += ["THINKING_MACHINES", "qkv_thinking_machines"]

# The chapter's "Thinking Machines" numbers (chapters/02_self_attention.ipynb, section 3): two word
# vectors of width E = 6 and integer projections in nn.Linear's (out, in) = (D, E) layout, D = Dv = 4.
# tests/test_diagrams_ch02.py checks that the chapter defines the very same numbers.
THINKING_MACHINES: dict[str, list] = {
    "tokens": ["Thinking", "Machines"],
    "x": [[0.0, 0.0, 0.0, 2.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]],
    "W_q": [[0.0, -1.0, 0.0, 1.0, -1.0, 0.0], [0.0, -1.0, 0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, -1.0, 0.0, 0.0], [0.0, 1.0, -1.0, 0.0, 1.0, 0.0]],
    "W_k": [[1.0, -1.0, 1.0, 1.0, 0.0, -1.0], [1.0, 1.0, -1.0, 1.0, -1.0, 1.0],
            [1.0, -1.0, 0.0, -1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0, 0.0, -1.0]],
    "W_v": [[1.0, 0.0, 1.0, 1.0, -1.0, -1.0], [1.0, -1.0, 0.0, -1.0, 1.0, 0.0],
            [1.0, 1.0, 1.0, 0.0, 1.0, 0.0], [-1.0, -1.0, 0.0, -1.0, 1.0, 1.0]],
}


def _number(value: float) -> str:
    """A number as short as it can be written to three decimals: 12, -2, 0.5, 0.881."""
    return f"{round(float(value), 3):g}"


@figure("02_qkv_thinking_machines")
def qkv_thinking_machines(index: int = 0):
    """One token of "Thinking Machines" through W_Q, W_K, W_V, then its query against every key.

    Shapes: x_i (E,) = (6,); W_Q, W_K, W_V (D, E) = (4, 6); q_i, k_j, v_i (D,) = (4,); scores, weights (S,) = (2,).
    See chapters/02_self_attention.ipynb.
    """
    import math

    import torch

    from attnkit.attention import scaled_dot_product_attention

    tm = THINKING_MACHINES
    X = torch.tensor(tm["x"])  # (L, E) = (2, 6)
    Q, K, V = (X @ torch.tensor(tm[w]).T for w in ("W_q", "W_k", "W_v"))  # (L, E) x (E, D) -> (L, D) each
    scores = Q @ K.T  # (L, D) x (D, S) -> (L, S)
    _, weights = scaled_dot_product_attention(Q, K, V)  # (L, S), scale 1 / sqrt(D)
    d_k = K.shape[-1]
    words, other = tm["tokens"], 1 - index
    sub = "\u2081\u2082"  # subscripts 1, 2
    i, o = sub[index], sub[other]

    fig, ax = canvas(14.2, 7.2)
    cell, fs = 0.5, 10
    row = lambda v: [[_number(float(a)) for a in v]]  # noqa: E731 - one row of a grid
    on_arrow = {"ha": "center", "va": "center", "fontsize": fs,
                "bbox": {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"}}
    # the token's input vector, and the other token's (it only contributes its key)
    grid(ax, 0.2, 4.9, row(X[index]), cell=cell, label=f"x{i}  \u201c{words[index]}\u201d  (E = 6)", fontsize=fs)
    grid(ax, 0.2, 0.6, row(X[other]), cell=cell, label=f"x{o}  \u201c{words[other]}\u201d", fontsize=fs)
    # its query, key and value, each through its own learned (D, E) = (4, 6) matrix
    targets = [("q", "W_Q", Q, "query", 6.2), ("k", "W_K", K, "key", 4.9), ("v", "W_V", V, "value", 3.6)]
    for name, matrix, M, role, y in targets:
        grid(ax, 5.9, y, row(M[index]), cell=cell, color=COLORS[role], fontsize=fs)
        ax.text(5.8, y + cell / 2, f"{name}{i} =", ha="right", va="center", fontsize=fs + 1)
        arrow(ax, (3.25, 5.15), (4.95, y + cell / 2))
        ax.text(4.1, 5.15 + (y + cell / 2 - 5.15) / 2, f"{matrix} x{i}", **on_arrow)
    grid(ax, 5.9, 0.6, row(K[other]), cell=cell, color=COLORS["key"], fontsize=fs)
    ax.text(5.8, 0.6 + cell / 2, f"k{o} =", ha="right", va="center", fontsize=fs + 1)
    arrow(ax, (3.25, 0.85), (4.95, 0.85))
    ax.text(4.1, 0.85, f"W_K x{o}", **on_arrow)
    ax.text(6.9, 3.45, "(v waits for the weights)", ha="center", va="top", fontsize=8.5, color="#555555")
    ax.text(3.0, 2.6, "W_Q, W_K, W_V: learned (D, E) = (4, 6) matrices", ha="center", va="center",
            fontsize=9, color="#555555")

    # the query against every key: dot product, scale, softmax
    left = 9.1
    header = ["key", f"q{i} \u00b7 k", f"\u00f7 \u221a{d_k}", "softmax"]
    widths = [1.75, 1.1, 0.95, 1.15]
    xs = [left + sum(widths[:c]) for c in range(len(widths))]
    for x, w, text in zip(xs, widths, header, strict=True):
        ax.text(x + w / 2, 5.15, text, ha="center", va="bottom", fontsize=fs, fontweight="bold")
    ys = {index: 4.25, other: 3.3}
    for j in (index, other):
        y = ys[j]
        values = [f"k{sub[j]} {words[j]}", _number(scores[index, j].item()),
                  _number(scores[index, j].item() / math.sqrt(d_k)), f"{weights[index, j].item():.3f}"]
        fills = [COLORS["key"], COLORS["score"], COLORS["score"], COLORS["weight"]]
        for x, w, text, fill in zip(xs, widths, values, fills, strict=True):
            box(ax, x + 0.05, y, w - 0.1, 0.7, text, color=fill, fontsize=fs)
    ax.text(left + sum(widths) / 2, 6.35, f"q{i} meets every key (k{sub[index]} and k{sub[other]})",
            ha="center", va="center", fontsize=fs + 1)
    arrow(ax, (5.9 + 4 * cell, 6.45), (left - 0.1, 6.35))
    arrow(ax, (5.9 + 4 * cell, 5.15), (left, ys[index] + 0.35))
    arrow(ax, (5.9 + 4 * cell, 0.85), (left, ys[other] + 0.35))
    total = float(weights[index].sum())
    ax.text(xs[3] + widths[3] / 2, 3.15, f"sum = {total:g}", ha="center", va="top", fontsize=fs)
    ax.text(left + sum(widths) / 2, 2.3, f"d_k = D = {d_k}, the key width (not E = 6)",
            ha="center", va="top", fontsize=9, color="#555555")
    return fig


# ---------------------------------------------------------------------------------------------------
# Chapter 3: masking
# ---------------------------------------------------------------------------------------------------

__all__ += ["MASK_EXAMPLE", "ROBOT_SCORES", "mask_before_softmax", "robot_prefixes"]

# The chapter's numbers (chapters/03_masking.ipynb): section 1's one query over S = 4 keys, the last of
# which is padding, and section 4's scaled scores for "robot must obey orders" (L = S = 4).
# tests/test_diagrams_ch03.py checks that the chapter uses the very same numbers.
MASK_EXAMPLE: dict[str, list] = {"scores": [2.0, 1.0, 0.5, 3.0], "keep": [True, True, True, False]}
ROBOT_WORDS = ["robot", "must", "obey", "orders"]
ROBOT_SCORES: list[list[float]] = [[0.90, 0.35, -0.20, 0.70],
                                   [0.40, 0.48, 0.95, -0.10],
                                   [0.10, 0.70, 0.60, 0.85],
                                   [0.55, 0.20, 0.95, 0.30]]


def _mask_cell(allowed: bool, role: str) -> str:
    return COLORS[role] if allowed else COLORS["blocked"]


def _white_on_blocked(ax, fills: Sequence[str]) -> None:
    """After a one-row `grid` with a label: write its numbers on dark "blocked" cells in white."""
    cells = ax.texts[-1 - len(fills) : -1]  # the cells' numbers, in order; the last text is the label
    for text, fill in zip(cells, fills, strict=True):
        if fill == COLORS["blocked"]:
            text.set_color("white")


@figure("03_mask_before_softmax")
def mask_before_softmax():
    """Mask the scores, then softmax: blocked keys get -inf, so weight exactly 0, and the rest sum to 1.

    Shapes: scores (S,) = (4,), keep (S,) bool (True = may attend) -> weights (S,); the wrong order below.
    See chapters/03_masking.ipynb.
    """
    import torch

    from attnkit.attention import softmax
    from attnkit.masks import to_additive

    scores = torch.tensor(MASK_EXAMPLE["scores"])  # (S,)
    keep = torch.tensor(MASK_EXAMPLE["keep"])  # (S,) bool
    additive = to_additive(keep)  # (S,): 0 where allowed, -inf where blocked
    masked = scores + additive  # (S,)
    weights = softmax(masked)  # (S,)
    wrong = torch.softmax(scores, dim=-1) * keep  # (S,): zeroing after the softmax
    S = len(scores)

    def show(value: float) -> str:
        return "\u2212\u221e" if value == float("-inf") else f"{value:.2f}".rstrip("0").rstrip(".")

    fig, ax = canvas(15.0, 5.6)
    cell, fs, top = 0.62, 10.5, 3.3
    gap = 1.35
    xs = [0.3 + k * (S * cell + gap) for k in range(5)]
    allowed = keep.tolist()
    steps = [
        ("scores", [show(v) for v in scores.tolist()], [COLORS["score"]] * S),
        ("mask (added)", [show(v) for v in additive.tolist()], [_mask_cell(a, "allowed") for a in allowed]),
        ("masked scores", [show(v) for v in masked.tolist()], [_mask_cell(a, "score") for a in allowed]),
        ("weights", [f"{v:.2f}" for v in weights.tolist()], [_mask_cell(a, "weight") for a in allowed]),
    ]
    for k, (label, values, fills) in enumerate(steps):
        grid(ax, xs[k], top, [values], cell=cell, color=[fills], label=label, fontsize=fs)
        _white_on_blocked(ax, fills)
    ops = ["+", "=", "softmax"]
    for k, op in enumerate(ops):
        start, end = xs[k] + S * cell + 0.1, xs[k + 1] - 0.1
        if op == "softmax":
            arrow(ax, (start, top + cell / 2), (end, top + cell / 2))
            ax.text((start + end) / 2, top + cell / 2 + 0.15, op, ha="center", va="bottom", fontsize=fs)
        else:
            ax.text((start + end) / 2, top + cell / 2, op, ha="center", va="center", fontsize=fs + 6)
    ax.text(xs[3] + S * cell + 0.2, top + cell / 2, f"sum = {weights.sum().item():g}", ha="left",
            va="center", fontsize=fs)
    ax.text(xs[0], top + cell + 0.75, "key 3 is padding: the mask blocks it before the softmax, "
            "so e^(\u2212\u221e) = 0 and the other three share all the weight", ha="left", va="bottom",
            fontsize=fs)

    # the mistake: softmax first, then zero the blocked weight
    low = 0.7
    grid(ax, xs[0], low, [[show(v) for v in scores.tolist()]], cell=cell, color=[[COLORS["score"]] * S],
         label="scores", fontsize=fs)
    probs = torch.softmax(scores, dim=-1).tolist()
    arrow(ax, (xs[0] + S * cell + 0.1, low + cell / 2), (xs[1] - 0.1, low + cell / 2))
    ax.text((xs[0] + S * cell + xs[1]) / 2, low + cell / 2 + 0.15, "softmax", ha="center", va="bottom",
            fontsize=fs)
    grid(ax, xs[1], low, [[f"{v:.2f}" for v in probs]], cell=cell, color=[[COLORS["weight"]] * S],
         label="weights over all 4 keys", fontsize=fs)
    arrow(ax, (xs[1] + S * cell + 0.1, low + cell / 2), (xs[2] - 0.1, low + cell / 2))
    ax.text((xs[1] + S * cell + xs[2]) / 2, low + cell / 2 + 0.15, "\u00d7 keep", ha="center", va="bottom",
            fontsize=fs)
    grid(ax, xs[2], low, [[f"{v:.2f}" for v in wrong.tolist()]], cell=cell,
         color=[[_mask_cell(a, "weight") for a in allowed]], label="zeroed afterwards", fontsize=fs)
    _white_on_blocked(ax, [_mask_cell(a, "weight") for a in allowed])
    ax.text(xs[2] + S * cell + 0.2, low + cell / 2, f"sum = {wrong.sum().item():.2f}: not a distribution",
            ha="left", va="center", fontsize=fs, color=COLORS["output"])
    ax.text(xs[0], low + cell + 0.55, "the wrong order, for comparison:", ha="left", va="bottom",
            fontsize=fs, style="italic")
    return fig


@figure("03_robot_prefixes")
def robot_prefixes():
    """Four growing prefixes of "robot must obey orders", each read at its last word, are the rows of one causal pass.

    Shapes: scores (L, S) = (4, 4), causal mask (L, S) bool -> weights (L, S); prefix i is row i.
    See chapters/03_masking.ipynb.
    """
    import torch

    from attnkit.attention import softmax
    from attnkit.masks import causal_mask

    scores = torch.tensor(ROBOT_SCORES)  # (L, S)
    L = len(ROBOT_WORDS)
    allowed = causal_mask(L)  # (L, S) bool
    weights = softmax(scores.masked_fill(~allowed, float("-inf")))  # (L, S)

    fig, ax = canvas(14.6, 5.3)
    cell_w, cell_h, fs = 0.95, 0.62, 10.5
    top = 3.7  # y of row 0
    # left: the batch of four prefixes, each a sequence of its own, read at its last word
    ax.text(0.2, top + cell_h + 0.85, "4 prefixes, each read at its last word",
            ha="left", va="bottom", fontsize=fs)
    for i in range(L):
        y = top - i * (cell_h + 0.35)
        ax.text(2.4, y + cell_h / 2, " ".join(ROBOT_WORDS[: i + 1]) if i < 3 else "robot must obey orders",
                ha="right", va="center", fontsize=fs)
        for j in range(i + 1):
            box(ax, 2.6 + j * cell_w, y, cell_w - 0.08, cell_h, f"{weights[i, j].item():.2f}",
                color=COLORS["weight"], fontsize=fs)
        for j in range(i + 1):
            ax.text(2.6 + j * cell_w + (cell_w - 0.08) / 2, y + cell_h + 0.03, ROBOT_WORDS[j], ha="center",
                    va="bottom", fontsize=8.5, color="#555555")
    ax.text(7.0, top - 1.5 * (cell_h + 0.35) + cell_h / 2, "=", ha="center", va="center", fontsize=28)

    # right: one causal pass over the whole sentence, blocked cells dark
    x0 = 8.6
    ax.text(x0 + 2 * cell_w, top + cell_h + 0.85, "= one causal pass over the sentence",
            ha="center", va="bottom", fontsize=fs)
    for i in range(L):
        y = top - i * (cell_h + 0.35)
        ax.text(x0 - 0.1, y + cell_h / 2, ROBOT_WORDS[i], ha="right", va="center", fontsize=fs)
        for j in range(L):
            ok = bool(allowed[i, j])
            box(ax, x0 + j * cell_w, y, cell_w - 0.08, cell_h, f"{weights[i, j].item():.2f}" if ok else "",
                color=COLORS["weight"] if ok else COLORS["blocked"], fontsize=fs)
    for j in range(L):
        ax.text(x0 + j * cell_w + (cell_w - 0.08) / 2, top + cell_h + 0.08, ROBOT_WORDS[j], ha="center",
                va="bottom", fontsize=fs)
    bottom = top - (L - 1) * (cell_h + 0.35)
    ax.text(x0 + 2 * cell_w, bottom - 0.35, "query (row) \u2193    key (column) \u2192", ha="center", va="top",
            fontsize=9, color="#555555")
    box(ax, x0 + 4 * cell_w + 0.3, top - 0.2, 0.35, 0.35, color=COLORS["blocked"])
    ax.text(x0 + 4 * cell_w + 0.75, top - 0.03, "blocked (the future)", ha="left", va="center", fontsize=9)
    box(ax, x0 + 4 * cell_w + 0.3, top - 0.75, 0.35, 0.35, color=COLORS["weight"])
    ax.text(x0 + 4 * cell_w + 0.75, top - 0.58, "may attend: its weight", ha="left", va="center", fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------------------
# Chapter 4: multi-head attention
# ---------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------
# Chapter 5: the KV cache
# ---------------------------------------------------------------------------------------------------


if __name__ == "__main__":
    import matplotlib

    matplotlib.use("Agg")
    stale = write_figures(check="--check" in sys.argv)
    for path in stale:
        print(("stale: " if "--check" in sys.argv else "wrote ") + str(path))
    sys.exit(1 if stale and "--check" in sys.argv else 0)
