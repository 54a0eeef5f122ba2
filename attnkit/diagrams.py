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
