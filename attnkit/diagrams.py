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
    column(8.7, n["weights"].tolist(), _tint(COLORS["weight"]), "weights")
    ax.text(8.7 + cell / 2, y0 - 0.15, f"sum: {n['weights'].sum().item():.2f}", ha="center", va="top", fontsize=9)
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


# ---------------------------------------------------------------------------------------------------
# Chapter 3: masking
# ---------------------------------------------------------------------------------------------------


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
