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

__all__ += ["four_steps", "four_steps_numbers"]

# The running example of chapter 1 (its section 2): four fruits described by (sweet, sour, red), each with a
# price as its value, and the query "sweet and red". The chapter types the same numbers in a cell;
# tests/test_diagrams_ch01.py checks that the two agree.
_FRUITS = ("apple", "lemon", "cherry", "banana")
_FEATURES = ("sweet", "sour", "red")
_FRUIT_KEYS = ((0.8, 0.3, 0.9), (0.1, 1.0, 0.0), (0.9, 0.2, 1.0), (0.9, 0.0, 0.0))
_FRUIT_VALUES = ((1.0,), (0.5,), (4.0,), (0.3,))
_FRUIT_QUERY = (1.0, 0.0, 1.0)


def _tint(color: str, amount: float = 0.55) -> str:
    """`color` mixed with white (amount 0: unchanged, 1: white), so that dark text on it stays readable."""
    rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * amount):02x}" for c in rgb)


def four_steps_numbers() -> dict[str, Any]:
    """The four steps of scaled dot-product attention for chapter 1's fruit query, computed with torch.

    Shapes: query (3,), keys (4, 3), values (4, 1) -> scores, scaled, weights (4,); products (4, 1); output (1,).
    See chapters/01_attention.ipynb.
    """
    import math

    import torch

    query = torch.tensor(_FRUIT_QUERY)  # (d_k,) with d_k = 3
    keys = torch.tensor(_FRUIT_KEYS)  # (S, d_k) with S = 4
    values = torch.tensor(_FRUIT_VALUES)  # (S, Dv) with Dv = 1
    scores = keys @ query  # step 1: (S, d_k) x (d_k,) -> (S,)
    scaled = scores / math.sqrt(len(query))  # step 2: (S,)
    weights = torch.softmax(scaled, dim=-1)  # step 3: (S,), sums to 1
    products = weights[:, None] * values  # (S, 1) * (S, Dv) -> (S, Dv): each value times its weight
    output = products.sum(dim=0)  # step 4: (S, Dv) -> (Dv,)
    return {"fruits": _FRUITS, "features": _FEATURES, "query": query, "keys": keys, "values": values,
            "scores": scores, "scaled": scaled, "weights": weights, "products": products, "output": output}


@figure("01_four_steps")
def four_steps():
    """The four steps for one query, with the numbers of chapter 1's fruit lookup: scores, scale, softmax, sum.

    Shapes: query (3,), keys (4, 3), values (4, 1) -> scores (4,), weights (4,), output (1,).
    See chapters/01_attention.ipynb.
    """
    n = four_steps_numbers()
    S, cell = len(n["fruits"]), 0.6
    fig, ax = canvas(15.4, 4.6)
    y0 = 0.7  # bottom of the key rows; row i of every column sits at the same height

    def column(x: float, values, color: str, label: str, fmt: str = "{:.2f}") -> None:
        grid(ax, x, y0, [[v] for v in values], cell=cell, color=color, fmt=fmt, label=label, fontsize=9)

    def step(x0: float, x1: float, text: str) -> None:
        arrow(ax, (x0, y0 + S * cell / 2), (x1, y0 + S * cell / 2), text, fontsize=10)

    # the query above the keys, the features named over both
    grid(ax, 1.2, y0 + S * cell + 0.5, [n["query"].tolist()], cell=cell, color=_tint(COLORS["query"]), fmt="{:g}",
         fontsize=9)
    for j, feature in enumerate(n["features"]):
        ax.text(1.2 + (j + 0.5) * cell, y0 + S * cell + 0.5 + cell + 0.1, feature, ha="center", va="bottom",
                fontsize=9, color=COLORS["text"])
    ax.text(1.1, y0 + S * cell + 0.5 + cell / 2, "query q", ha="right", va="center", fontsize=10)
    grid(ax, 1.2, y0, n["keys"].tolist(), cell=cell, color=_tint(COLORS["key"]), fmt="{:g}", fontsize=9)
    for i, fruit in enumerate(n["fruits"]):
        ax.text(1.1, y0 + (S - 0.5 - i) * cell, fruit, ha="right", va="center", fontsize=10)
    ax.text(1.2 + 1.5 * cell, y0 - 0.15, "keys K", ha="center", va="top", fontsize=10)

    step(3.1, 4.5, r"1. $q \cdot k_j$")
    column(4.5, n["scores"].tolist(), _tint(COLORS["score"]), "scores")
    step(5.2, 6.6, r"2. $\div \sqrt{3}$")
    column(6.6, n["scaled"].tolist(), _tint(COLORS["score"]), "scaled")
    step(7.3, 8.7, "3. softmax")
    # three decimals, so that the weights as shown add up to the sum shown (with two: 0.32 + 0.13 + 0.36 + 0.20)
    column(8.7, n["weights"].tolist(), _tint(COLORS["weight"]), "weights", fmt="{:.3f}")
    ax.text(8.7 + cell / 2, y0 - 0.15, f"sum: {n['weights'].sum().item():.3f}", ha="center", va="top", fontsize=9)
    ax.text(9.75, y0 + S * cell / 2, r"$\times$", ha="center", va="center", fontsize=14)
    column(10.2, n["values"][:, 0].tolist(), _tint(COLORS["value"]), "values", fmt="{:g}")
    ax.text(10.2 + cell / 2, y0 - 0.15, "(prices)", ha="center", va="top", fontsize=9)
    ax.text(11.25, y0 + S * cell / 2, "=", ha="center", va="center", fontsize=14)
    column(11.7, n["products"][:, 0].tolist(), _tint(COLORS["weight"], 0.8), "products")
    step(12.4, 13.6, "4. sum")
    box(ax, 13.6, y0 + S * cell / 2 - 0.5, 1.5, 1.0, f"output\n{n['output'].item():.2f}",
        color=_tint(COLORS["output"]), fontsize=11)
    return fig



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


def _column(ax, x: float, y: float, n: int, *, cell: float, color: str, labels: Sequence[str] = (),
            gaps_every: int = 0, gap: float = 0.0, fontsize: float = 7) -> list[tuple[float, float]]:
    """A vertical vector of n cells, top to bottom (cell 0 on top), with a gap after every `gaps_every`
    cells; returns the (bottom, top) y-range of each group of cells."""
    from matplotlib.patches import Rectangle

    groups, top = [], y
    size = gaps_every or n
    for g in range(0, n, size):
        group_top = top
        for i in range(g, min(g + size, n)):
            ax.add_patch(Rectangle((x, top - cell), cell, cell, facecolor=color, edgecolor=COLORS["text"], lw=0.6))
            if labels:
                ax.text(x + cell / 2, top - cell / 2, labels[i], ha="center", va="center", fontsize=fontsize,
                        color=COLORS["text"])
            top -= cell
        groups.append((top, group_top))
        top -= gap
    return groups


@figure("04_heads_split_merge")
def heads_split_merge(E: int = 8, H: int = 2):
    """One token's vector cut into H heads of D = E / H features, attended per head, concatenated, times W_O^T.

    Shapes: x (E,) -> q = x W_Q^T (E,) -> H pieces q_h (D,) -> head_h (D,) -> Concat (E,) -> Concat W_O^T (E,).
    See chapters/04_multi_head_attention.ipynb.
    """
    import torch
    from matplotlib.patches import Rectangle

    from attnkit.mha import split_heads

    D = E // H
    # Which feature of the token goes to which head: split_heads on the feature numbers themselves.
    owner = split_heads(torch.arange(E, dtype=torch.float32).view(1, 1, E), H)[0, :, 0]  # (H, D)
    features = [str(int(f)) for f in owner.flatten()]
    cell, gap = 0.42, 0.35
    height = E * cell + (H - 1) * gap
    fig, ax = canvas(15.0, height + 2.6)
    top = height + 1.3
    tint = ["#fbd3a8", "#f28e2b", "#fde3c7", "#d9731a"]  # alternating shades of the query colour

    ax.text(0.75, top + 0.35, f"token x\n(E = {E})", ha="center", va="bottom", fontsize=9)
    _column(ax, 0.55, top, E, cell=cell, color=COLORS["neutral"], labels=[str(e) for e in range(E)])
    arrow(ax, (1.1, top - height / 2), (2.9, top - height / 2), r"$q = x\,W_Q^\top$", fontsize=10)
    ax.text(2.0, top - height / 2 - 0.45, "(and k, v for\nevery token)", ha="center", va="top", fontsize=7)

    # q, cut into H pieces: head h owns features hD .. (h+1)D - 1
    ax.text(3.2, top + 0.35, f"q (E = {E}),\ncut into H = {H}", ha="center", va="bottom", fontsize=9)
    groups = _column(ax, 3.0, top, E, cell=cell, color=COLORS["query"], gaps_every=D, gap=gap)
    for h, (bottom, group_top) in enumerate(groups):
        for i in range(D):  # shades alternate between heads, so the cut shows
            ax.add_patch(Rectangle((3.0, group_top - (i + 1) * cell), cell, cell,
                                   facecolor=tint[h % len(tint)], edgecolor=COLORS["text"], lw=0.6))
            ax.text(3.0 + cell / 2, group_top - (i + 0.5) * cell, features[h * D + i], ha="center", va="center",
                    fontsize=7)
        mid = (bottom + group_top) / 2
        ax.text(2.9, mid, f"$q_{h}$", ha="right", va="center", fontsize=10)
        arrow(ax, (3.5, mid), (4.9, mid))
        formula = rf"$\mathrm{{softmax}}(q_{h} K_{h}^\top / \sqrt{{{D}}})\, V_{h}$"
        box(ax, 4.9, mid - 0.55, 4.0, 1.1, f"head {h}:  {formula}\n"
            f"$K_{h}, V_{h}$: features {h * D}..{(h + 1) * D - 1} of every token's k, v",
            color=COLORS["weight"], fontsize=7.5, alpha=0.55)
        arrow(ax, (8.9, mid), (10.5, mid), f"head$_{h}$ (D = {D})")

    ax.text(10.75, top + 0.35, f"Concat\n(H x D = {E})", ha="center", va="bottom", fontsize=9)
    _column(ax, 10.55, top, E, cell=cell, color=COLORS["output"], labels=features, gaps_every=D, gap=gap)
    arrow(ax, (11.1, top - height / 2), (13.0, top - height / 2), r"$\cdot\, W_O^\top$", fontsize=10)
    ax.text(12.05, top - height / 2 - 0.2, f"W_O: (E, E) = ({E}, {E})\nmixes the heads", ha="center",
            va="top", fontsize=7)
    ax.text(13.3, top + 0.35, f"output\n(E = {E})", ha="center", va="bottom", fontsize=9)
    _column(ax, 13.1, top, E, cell=cell, color=COLORS["neutral"], labels=[""] * E)
    ax.text(7.5, 0.25, f"E = {E} features, H = {H} heads of D = E / H = {D}; weights in nn.Linear's layout "
            r"(out, in), applied as $x\,W^\top$", ha="center", va="bottom", fontsize=8)
    return fig


__all__ += ["heads_split_merge"]


# ---------------------------------------------------------------------------------------------------
# Chapter 5: the KV cache
# ---------------------------------------------------------------------------------------------------


def cache_positions(step: int, prompt_len: int, *, window: int | None = None, sinks: int = 0) -> dict[str, list[int]]:
    """Which positions a KV cache holds after prefilling `prompt_len` tokens and `step` decode steps.

    Full cache: every position. With `window`: the first `sinks` positions (attention sinks) and the
    last `window - sinks`. "new" are the positions this step added; the newest query attends to "held".

    Shapes: -> dict of position lists: "seen" (prompt_len + step), "held" (S), "new", "evicted".
    See chapters/05_kv_cache.ipynb.
    """
    if not (isinstance(step, int) and step >= 0 and prompt_len >= 1):
        raise ValueError(f"Expected `step` >= 0 and `prompt_len` >= 1 but got {step!r}, {prompt_len!r}")
    if window is not None and not 0 <= sinks < window:
        raise ValueError(f"Expected 0 <= `sinks` < `window` but got sinks={sinks}, window={window}")
    seen = list(range(prompt_len + step))
    held = seen if window is None or len(seen) <= window else seen[:sinks] + seen[len(seen) - (window - sinks):]
    new = seen[:prompt_len] if step == 0 else [seen[-1]]
    return {"seen": seen, "held": held, "new": [p for p in new if p in held],
            "evicted": [p for p in seen if p not in held]}


def cache_panel(ax, x: float, y: float, positions: dict[str, list[int]], *, H: int, D: int, B: int = 1,
                labels: Sequence[str] | None = None, title: str = "", col: float = 0.55) -> None:
    """Draw one moment of a layer's KV cache at (x, y) (lower left): keys above values, H slabs deep.

    Each column is one position (D numbers per head); new positions have a red edge, evicted ones
    are dashed outlines, and the newest token's query (orange) points at the keys it attends to.
    Shapes: positions from `cache_positions`; the cache is (B, H, S, D), S = len(held).
    See chapters/05_kv_cache.ipynb.
    """
    from matplotlib.patches import Rectangle

    seen, held, new = positions["seen"], positions["held"], set(positions["new"])
    names = [str(p) for p in seen] if labels is None else [str(labels[p]) for p in seen]
    slab_h, depth = 0.7, 0.08  # height of a head's (S, D) slab; offset between heads
    for row, (name, role) in enumerate([("V", "value"), ("K", "key")]):
        y0 = y + 0.6 + row * (slab_h + 0.3 + depth * H)
        for h in reversed(range(H)):  # back slabs first
            dx, dy = h * depth, h * depth
            for i, p in enumerate(seen):
                cx = x + i * col + dx
                if p in held:
                    ax.add_patch(Rectangle((cx, y0 + dy), col, slab_h, facecolor=COLORS[role],
                                           alpha=1.0 if h == 0 else 0.45, edgecolor=COLORS["text"], lw=0.5))
                elif h == 0:
                    ax.add_patch(Rectangle((cx, y0), col, slab_h, fill=False, edgecolor="#999999", lw=0.8,
                                           linestyle="--"))
        for i, p in enumerate(seen):
            if p in new:
                ax.add_patch(Rectangle((x + i * col, y0), col, slab_h, fill=False, edgecolor=COLORS["output"], lw=2))
        ax.text(x - 0.15, y0 + slab_h / 2, name, ha="right", va="center", fontsize=11, color=COLORS[role],
                fontweight="bold")
    for i, name in enumerate(names):
        ax.text(x + (i + 0.5) * col, y + 0.5, name, ha="center", va="top", fontsize=7, rotation=60
                if max(map(len, names)) > 3 else 0, color="#999999" if seen[i] not in held else COLORS["text"])
    # the newest token's query: one arrow per attended key, drawn above the K slabs
    key_top = y + 0.6 + 2 * slab_h + 0.3 + depth * H + 0.05
    qx = x + (len(seen) - 0.5) * col
    qy = key_top + 0.75
    ax.add_patch(Rectangle((qx - col / 2, qy), col, 0.35, facecolor=COLORS["query"], edgecolor=COLORS["text"], lw=0.6))
    ax.text(qx + col * 0.7, qy + 0.17, "q of the newest token", ha="left", va="center", fontsize=7)
    for i, p in enumerate(seen):
        if p in held:
            ax.annotate("", xy=(x + (i + 0.5) * col, key_top), xytext=(qx, qy),
                        arrowprops={"arrowstyle": "-|>", "color": COLORS["query"], "lw": 0.7, "shrinkA": 0,
                                    "shrinkB": 1, "alpha": 0.8})
    S = len(held)
    ax.text(x - 0.5, qy + 0.5, f"{title}\nK and V: (B, H, S, D) = ({B}, {H}, {S}, {D})", ha="left", va="bottom",
            fontsize=8.5)


@figure("05_cache_growth")
def cache_growth(prompt: Sequence[str] = ("the", "robots", "that", "the", "child"), steps: int = 3):
    """A layer's KV cache after the prefill of the prompt and after each of `steps` decode steps (toy GPT sizes).

    Shapes: keys and values (B, H, S, D) with S = len(prompt) + step, H and D those of attnkit's toy GPT.
    See chapters/05_kv_cache.ipynb.
    """
    import inspect

    from attnkit.toy_grammar import train_toy_gpt

    defaults = inspect.signature(train_toy_gpt).parameters  # the chapter's model: n_head, n_embd
    H, E = defaults["n_head"].default, defaults["n_embd"].default
    D = E // H
    L = len(prompt)
    labels = [*prompt, *(f"new {i}" for i in range(1, steps + 1))]
    col, panel_h = 0.55, 4.4
    panel_w = 1.0 + (L + steps) * col + 1.6
    rows = (steps + 2) // 2
    fig, ax = canvas(2 * panel_w, rows * panel_h + 0.7)
    for step in range(steps + 1):
        x, y = 0.7 + (step % 2) * panel_w, 0.7 + (rows - 1 - step // 2) * panel_h
        title = ("prefill: the whole prompt at once" if step == 0
                 else f"decode step {step}: one new token")
        cache_panel(ax, x, y, cache_positions(step, L), H=H, D=D, labels=labels, title=title, col=col)
    ax.text(panel_w, 0.1, f"one column = one position: D = {D} numbers in each of H = {H} heads (drawn one "
            "behind the other);\nred edge = written in this step; the newest query attends to every cached key",
            ha="center", va="bottom", fontsize=8)
    return fig


__all__ += ["cache_positions", "cache_panel", "cache_growth"]


# ---------------------------------------------------------------------------------------------------
# Chapter 6: positions, cross-attention and the Transformer block
# ---------------------------------------------------------------------------------------------------


def _add_node(ax, x: float, y: float) -> None:
    from matplotlib.patches import Circle

    ax.add_patch(Circle((x, y), 0.22, facecolor="white", edgecolor=COLORS["text"], lw=1.2))
    ax.text(x, y, "+", ha="center", va="center", fontsize=12)


def _block_flow(ax, x: float, title: str, steps: Sequence[tuple[str, str, str]], residual_from: dict[int, int],
                note: str) -> None:
    """A column of boxes, bottom to top; `steps` are (kind, text, colour) with kind "box" or "add";
    residual_from maps the index of an "add" step to the index of the step whose input it adds back."""
    y, width, centres = 0.9, 3.4, []
    ax.text(x + width / 2, 0.35, "x (B, L, E)", ha="center", va="center", fontsize=9)
    for kind, text, color in steps:
        if kind == "add":
            centres.append(y + 0.3)
            _add_node(ax, x + width / 2, y + 0.3)
            y += 0.6
        else:
            centres.append(y + 0.35)
            box(ax, x, y, width, 0.7, text, color=color, fontsize=8.5)
            y += 0.7
        y += 0.45
    for i in range(len(steps) - 1):  # the main path
        top_i = centres[i] + (0.22 if steps[i][0] == "add" else 0.35)
        bottom_next = centres[i + 1] - (0.22 if steps[i + 1][0] == "add" else 0.35)
        arrow(ax, (x + width / 2, top_i), (x + width / 2, bottom_next))
    arrow(ax, (x + width / 2, 0.5), (x + width / 2, centres[0] - (0.22 if steps[0][0] == "add" else 0.35)))
    for add, source in residual_from.items():  # the residual: around the sublayer, to the + node
        start_y = centres[source] - (0.22 if steps[source][0] == "add" else 0.35) - 0.2
        side = x + width + 0.35
        ax.plot([x + width / 2, side, side], [start_y, start_y, centres[add]], color=COLORS["output"], lw=1.4)
        arrow(ax, (side, centres[add]), (x + width / 2 + 0.22, centres[add]), color=COLORS["output"])
    arrow(ax, (x + width / 2, centres[-1] + (0.22 if steps[-1][0] == "add" else 0.35)), (x + width / 2, y + 0.05))
    ax.text(x + width / 2, y + 0.1, "output (B, L, E)", ha="center", va="bottom", fontsize=9)
    ax.text(x + width / 2, y + 0.55, title, ha="center", va="bottom", fontsize=11, weight="bold")
    ax.text(x + width / 2, 0.05, note, ha="center", va="top", fontsize=8)


@figure("06_pre_post_norm")
def pre_post_norm():
    """GPT-2's pre-norm block beside the original post-norm one, with the chapter's sizes; red = the residual path.

    Shapes: x (B, L, E) -> attention (H heads of D = E / H) -> MLP (E -> 4E -> E) -> (B, L, E).
    See chapters/06_transformer_block.ipynb.
    """
    from attnkit.char_gpt import CHAR_GPT_CONFIG

    E, H = CHAR_GPT_CONFIG["n_embd"], CHAR_GPT_CONFIG["n_head"]
    attention = f"causal self-attention\nH = {H} heads of D = {E // H}"
    mlp = f"MLP: E = {E} -> 4E = {4 * E} -> {E}\n(GELU in between)"
    ln = COLORS["weight"]
    fig, ax = canvas(10.4, 8.6)
    ax.set_ylim(-0.9, 8.6)
    _block_flow(ax, 0.5, "pre-norm (GPT-2)",
                [("box", "LayerNorm ln_1", ln), ("box", attention, COLORS["query"]), ("add", "", ""),
                 ("box", "LayerNorm ln_2", ln), ("box", mlp, COLORS["value"]), ("add", "", "")],
                {2: 0, 5: 3}, "x = x + attn(ln_1(x))\nx = x + mlp(ln_2(x))\nthe stream x is never normalised")
    _block_flow(ax, 5.9, "post-norm (2017)",
                [("box", attention, COLORS["query"]), ("add", "", ""), ("box", "LayerNorm ln_1", ln),
                 ("box", mlp, COLORS["value"]), ("add", "", ""), ("box", "LayerNorm ln_2", ln)],
                {1: 0, 4: 3}, "x = ln_1(x + attn(x))\nx = ln_2(x + mlp(x))\nevery sum passes through a norm")
    return fig


__all__ += ["pre_post_norm"]



# ---------------------------------------------------------------------------------------------------
# Chapter 7: FlashAttention's tiles
# ---------------------------------------------------------------------------------------------------

# The tiling the chapter's section 3 runs: L = S = 12 tokens, tiles of 3 queries x 3 keys, causal.
TILES = {"L": 12, "S": 12, "block_q": 3, "block_k": 3, "query_block": 2, "key_block": 1}


@figure("07_flash_tiles")
def flash_tiles():
    """The (L, S) scores cut into tiles: one block of queries walks over the key tiles keeping m, l and O.

    Shapes: Q (L, D) in blocks of block_q rows, K and V (S, D) in blocks of block_k rows; per query row
    the state m (1), l (1), O (Dv); causal tiles above the diagonal are skipped.
    See chapters/07_efficient_attention.ipynb.
    """
    from matplotlib.patches import Rectangle

    L, S, bq, bk = TILES["L"], TILES["S"], TILES["block_q"], TILES["block_k"]
    qb, kb = TILES["query_block"], TILES["key_block"]
    nq, nk = L // bq, S // bk
    cell = 0.42
    fig, ax = canvas(15.0, 7.2)
    x0, y0 = 1.2, 0.9  # lower-left corner of the (L, S) grid
    top = y0 + L * cell
    for i in range(nq):
        for j in range(nk):
            x, y = x0 + j * bk * cell, top - (i + 1) * bq * cell
            future = j > i  # causal, L == S: every key of the tile is after every query of the block
            if future:
                fill = COLORS["blocked"]
            elif i == qb and j < kb:
                fill = _tint(COLORS["key"], 0.35)  # done: folded into m, l, O
            elif i == qb and j == kb:
                fill = COLORS["score"]  # the tile being computed now
            elif i == qb:
                fill = _tint(COLORS["key"], 0.75)  # still to come
            else:
                fill = COLORS["allowed"]
            ax.add_patch(Rectangle((x, y), bk * cell, bq * cell, facecolor=fill, edgecolor=COLORS["text"], lw=1.0))
    ax.add_patch(Rectangle((x0, top - (qb + 1) * bq * cell), S * cell, bq * cell, fill=False,
                           edgecolor=COLORS["query"], lw=2.5))
    ax.text(x0 + S * cell / 2, top + 0.55, f"scores (L, S) = ({L}, {S}), never stored whole", ha="center",
            fontsize=10, weight="bold")
    ax.text(x0 + S * cell / 2, top + 0.15, f"tiles of {bq} queries x {bk} keys; dark = skipped (causal)",
            ha="center", fontsize=8.5)
    ax.text(x0 + S * cell / 2, y0 - 1.05, "in the orange row: blue = done (folded into m, l, O), yellow = now,\n"
            "pale blue = still to read; diagonal tiles are masked inside", ha="center", va="top", fontsize=8)
    for i in range(nq):  # every block of query rows named by its rows; the one walking in orange
        ax.text(x0 - 0.12, top - (i + 0.5) * bq * cell, f"queries\n{i * bq}-{(i + 1) * bq - 1}", ha="right",
                va="center", fontsize=7.5 if i != qb else 8.5, color=COLORS["query"] if i == qb else COLORS["text"],
                weight="bold" if i == qb else "normal")
    for j in range(nk):
        ax.text(x0 + (j + 0.5) * bk * cell, y0 - 0.3, f"keys\n{j * bk}-{(j + 1) * bk - 1}", ha="center",
                va="top", fontsize=7.5)
    cx = x0 + (kb + 0.5) * bk * cell
    ax.text(cx, top - (qb + 0.5) * bq * cell, "now", ha="center", va="center", fontsize=8)
    # the state kept per query row, and the update
    sx = x0 + S * cell + 1.0
    arrow(ax, (cx, top - qb * bq * cell), (sx - 0.1, 5.8))  # from the "now" tile to the state it updates
    box(ax, sx, 5.4, 2.0, 0.8, "m: running max\n(one per row)", color=_tint(COLORS["key"], 0.55), fontsize=8.5)
    box(ax, sx + 2.2, 5.4, 2.0, 0.8, "l: running sum\n(one per row)", color=COLORS["weight"], fontsize=8.5)
    box(ax, sx + 4.4, 5.4, 2.4, 0.8, "O: unnormalised\noutput (Dv per row)", color=COLORS["output"], fontsize=8.5)
    lines = ["for each key tile (S_tile = Q_block K_tile^T * scale, masked):",
             "  1. the new running max takes the tile's row maxima in",
             "  2. l and O, measured against the old max,",
             "     are brought to the new one",
             "  3. the tile's exponentials are added to l,",
             "     and their product with V_tile to O",
             "after the last tile: output = O / l,",
             "keep lse = m + log l per row (for the backward)"]
    for n, line in enumerate(lines):
        ax.text(sx, 4.85 - n * 0.42, line, ha="left", va="center", fontsize=9, family="monospace")
    ax.text(sx, 1.2, f"memory: one tile ({bq} x {bk}) + O + m + l,\nnot the {L} x {S} matrix", ha="left",
            va="center", fontsize=9, color=COLORS["text"])
    return fig


__all__ += ["TILES", "flash_tiles"]
# Chapter 8: serving
# ---------------------------------------------------------------------------------------------------

# Two requests that share a prompt of one full block: P = 4 positions per block, a pool of 8 blocks.
BLOCK_TABLE_EXAMPLE = {
    "block_size": 4,
    "num_blocks": 8,
    "sequences": {
        "A": (["The", "cat", "sat", "on", "the", "mat", "and", "then", "slept"], [5, 1, 3]),
        "B": (["The", "cat", "sat", "on", "a", "hat"], [5, 6]),
    },
}


@figure("08_block_table")
def block_table():
    """Two sequences' logical blocks, their block tables, and the physical pool they point into (shared block: ref 2).

    Shapes: pool (N, H, P, D) drawn as N blocks of P slots; block tables (n,) per sequence.
    See chapters/08_serving.ipynb.
    """
    P, N = BLOCK_TABLE_EXAMPLE["block_size"], BLOCK_TABLE_EXAMPLE["num_blocks"]
    seqs = BLOCK_TABLE_EXAMPLE["sequences"]
    colors = {"A": COLORS["query"], "B": COLORS["key"]}
    refs = [0] * N
    for _, table in seqs.values():
        for b in table:
            refs[b] += 1
    cell = 0.62
    small = 0.5  # the logical blocks' cells
    fig, ax = canvas(15.8, 7.6)
    ax.text(0.2, 7.3, "logical blocks (positions in order)", fontsize=10, weight="bold", va="center")
    ax.text(8.4, 7.3, "block tables", fontsize=10, weight="bold", va="center", ha="center")
    ax.text(12.6, 7.3, f"physical pool: {N} blocks of P = {P}", fontsize=10, weight="bold", va="center")
    pool_x, pool_top = 11.9, 6.5
    slot_of = {}  # physical block -> y of its row in the pool

    def pool_y(b: int) -> float:
        return pool_top - b * 0.8

    owners = {}
    for name, (tokens, table) in seqs.items():
        for i, b in enumerate(table):
            owners.setdefault(b, []).append((name, tokens[i * P:(i + 1) * P]))
    for b in range(N):
        y = pool_y(b)
        slot_of[b] = y
        held = owners.get(b)
        words = held[0][1] if held else []
        fill = COLORS["neutral"] if not held else (_tint(COLORS["weight"], 0.3) if refs[b] > 1
                                                   else _tint(colors[held[0][0]], 0.35))
        grid(ax, pool_x, y, [[w if j < len(words) else "" for j, w in enumerate(words + [""] * (P - len(words)))]],
             cell=cell, color=[[fill if j < len(words) else "white" for j in range(P)]], fontsize=7)
        ax.text(pool_x - 0.15, y + cell / 2, f"block {b}", ha="right", va="center", fontsize=8)
        note = "free" if not held else (f"ref {refs[b]}: shared" if refs[b] > 1 else f"ref 1 ({held[0][0]})")
        ax.text(pool_x + P * cell + 0.12, y + cell / 2, note, ha="left", va="center", fontsize=8)
    y = 6.0
    for name, (tokens, table) in seqs.items():
        ax.text(0.2, y + 0.95, f"sequence {name}: {len(tokens)} tokens", fontsize=9, va="center")
        for i in range(len(table)):
            words = tokens[i * P:(i + 1) * P]
            x = 0.2 + i * (P * small + 0.2)
            grid(ax, x, y, [words + [""] * (P - len(words))], cell=small, fontsize=6.5,
                 color=[[_tint(colors[name], 0.35) if j < len(words) else "white" for j in range(P)]])
            ax.text(x + P * small / 2, y - 0.2, f"logical {i}", ha="center", va="top", fontsize=7)
        tx, ty = 7.9, y + 0.45  # the table sits above every block it points to: each arrow leaves its cell's
        grid(ax, tx, ty, [table], cell=cell, color=_tint(colors[name], 0.35), fontsize=9)  # bottom going down
        ax.text(tx - 0.1, ty + cell / 2, f"{name}:", ha="right", va="center", fontsize=9)
        for i, b in enumerate(table):
            arrow(ax, (tx + (i + 0.5) * cell, ty), (pool_x - 1.05, slot_of[b] + cell / 2),
                  color=colors[name])
        y -= 2.6
    ax.text(0.2, 0.55, "Position p of a sequence lives in physical block table[p // P], at slot p % P. Only the "
            "last block of a sequence is partly empty.", fontsize=8.5, va="center")
    ax.text(0.2, 0.15, "B forked A's prompt: block 5 is shared (ref 2); B's next token went to a new block 6 "
            "(copy-on-write copies a shared block only if written into).", fontsize=8.5, va="center")
    return fig


__all__ += ["BLOCK_TABLE_EXAMPLE", "block_table"]


if __name__ == "__main__":
    import matplotlib

    matplotlib.use("Agg")
    stale = write_figures(check="--check" in sys.argv)
    for path in stale:
        print(("stale: " if "--check" in sys.argv else "wrote ") + str(path))
    sys.exit(1 if stale and "--check" in sys.argv else 0)
